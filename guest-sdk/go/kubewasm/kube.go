package kubewasm

import (
	"encoding/json"
	"errors"
	"fmt"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	kube "wit_component/kubewasm_controller_kube"
	types "wit_component/kubewasm_controller_types"
)

// Object is one Kubernetes object as decoded JSON.
type Object map[string]any

func parseObject(text string) (Object, error) {
	var object Object
	err := json.Unmarshal([]byte(text), &object)
	return object, err
}

func (o Object) metadata() map[string]any {
	metadata, _ := o["metadata"].(map[string]any)
	return metadata
}

// Name is metadata.name.
func (o Object) Name() string {
	name, _ := o.metadata()["name"].(string)
	return name
}

// Namespace is metadata.namespace; empty for cluster-scoped objects.
func (o Object) Namespace() string {
	namespace, _ := o.metadata()["namespace"].(string)
	return namespace
}

// Decode fills a typed value (a struct with json tags) from the object.
func (o Object) Decode(into any) error {
	text, err := json.Marshal(o)
	if err != nil {
		return err
	}
	return json.Unmarshal(text, into)
}

// Ref names one object. Namespace is empty for cluster-scoped kinds.
type Ref struct {
	APIVersion, Kind, Namespace, Name string
}

func (r Ref) wit() types.ObjectRef {
	return types.ObjectRef{
		ApiVersion: r.APIVersion,
		Kind:       r.Kind,
		Namespace:  option(r.Namespace),
		Name:       r.Name,
	}
}

// ErrorKind is which way a Kubernetes call failed.
type ErrorKind uint8

// The kinds of KubeError, as in the WIT `kube.error` variant.
const (
	NotFound    ErrorKind = iota // the object (or its kind) does not exist
	Forbidden                    // the grant or the API server's RBAC does not allow it
	Conflict                     // changed since read, or another manager owns a field
	Invalid                      // malformed: bad JSON, a missing field, a rejected value
	Unavailable                  // the API server is unreachable or overloaded
	Other                        // anything else
)

var errorKindNames = [...]string{"not-found", "forbidden", "conflict", "invalid", "unavailable", "other"}

func (k ErrorKind) String() string {
	if int(k) < len(errorKindNames) {
		return errorKindNames[k]
	}
	return "unknown"
}

// KubeError is a failed Kubernetes call.
type KubeError struct {
	Kind    ErrorKind
	Message string
}

func (e *KubeError) Error() string { return fmt.Sprintf("%s: %s", e.Kind, e.Message) }

// IsKind reports whether err is a KubeError of the given kind.
func IsKind(err error, kind ErrorKind) bool {
	var kubeError *KubeError
	return errors.As(err, &kubeError) && kubeError.Kind == kind
}

// IsNotFound reports whether err says the object does not exist.
func IsNotFound(err error) bool { return IsKind(err, NotFound) }

func fromWit(err kube.Error) error {
	var message string
	switch err.Tag() {
	case kube.Error_NotFound:
		message = err.NotFound()
	case kube.Error_Forbidden:
		message = err.Forbidden()
	case kube.Error_Conflict:
		message = err.Conflict()
	case kube.Error_Invalid:
		message = err.Invalid()
	case kube.Error_Unavailable:
		message = err.Unavailable()
	default:
		message = err.Other()
	}
	return &KubeError{Kind: ErrorKind(err.Tag()), Message: message}
}

func objectResult(result witTypes.Result[string, kube.Error]) (Object, error) {
	if result.IsErr() {
		return nil, fromWit(result.Err())
	}
	return parseObject(result.Ok())
}

func encode(object any) (string, error) {
	if text, ok := object.(string); ok {
		return text, nil
	}
	text, err := json.Marshal(object)
	return string(text), err
}

// Get reads one object.
func Get(ref Ref) (Object, error) {
	return objectResult(kube.Get(ref.wit()))
}

// List lists objects of one kind; an empty namespace lists every namespace the plugin
// may see, an empty selector every object.
func List(apiVersion, kind, namespace, labelSelector string) ([]Object, error) {
	result := kube.List(apiVersion, kind, option(namespace), option(labelSelector))
	if result.IsErr() {
		return nil, fromWit(result.Err())
	}
	var objects []Object
	err := json.Unmarshal([]byte(result.Ok()), &objects)
	return objects, err
}

// Apply creates or updates an object with server-side apply. object is anything
// encoding/json can encode (or JSON text) with apiVersion, kind and metadata.name.
func Apply(object any) (Object, error) {
	text, err := encode(object)
	if err != nil {
		return nil, err
	}
	return objectResult(kube.Apply(text))
}

// PatchStatus merges status into the object's status subresource.
func PatchStatus(ref Ref, status any) (Object, error) {
	text, err := encode(status)
	if err != nil {
		return nil, err
	}
	return objectResult(kube.PatchStatus(ref.wit(), text))
}

// Create creates an object; a Conflict KubeError if it exists.
func Create(object any) (Object, error) {
	text, err := encode(object)
	if err != nil {
		return nil, err
	}
	return objectResult(kube.Create(text))
}

// Delete deletes an object; a NotFound KubeError if it does not exist.
func Delete(ref Ref) error {
	result := kube.Delete(ref.wit())
	if result.IsErr() {
		return fromWit(result.Err())
	}
	return nil
}

// DeleteIfExists deletes an object, treating one already gone as deleted.
func DeleteIfExists(ref Ref) error {
	if err := Delete(ref); err != nil && !IsNotFound(err) {
		return err
	}
	return nil
}
