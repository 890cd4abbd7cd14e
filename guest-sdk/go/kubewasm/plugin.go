// Package kubewasm is the Go guest SDK: a plugin declares a Plugin value named Plugin
// in its package app, and the SDK exports it as the kubewasm:controller/plugin
// interface. scripts/build-plugin.sh puts the plugin, this package and wit-bindgen's
// bindings into one Go module and builds it for wasip1.
package kubewasm

import (
	"errors"
	"fmt"
	"time"

	witTypes "go.bytecodealliance.org/pkg/wit/types"
	types "wit_component/kubewasm_controller_types"
)

// Watch names the objects a plugin reconciles.
type Watch struct {
	// APIVersion is the group and version of the watched kind: "v1", "apps/v1".
	APIVersion string
	// Kind is the watched kind: "ConfigMap".
	Kind string
	// LabelSelector limits reconciles to matching objects; empty watches them all.
	LabelSelector string
}

// Plugin is what a plugin implements: what it watches, its finalizer and its two
// functions.
type Plugin struct {
	Watch Watch
	// Finalizer such as "example.com/cleanup"; empty: no finalizer, Cleanup is never
	// called and deleted objects are not seen.
	Finalizer string
	// Apply brings the world in line with one watched object. It must be idempotent.
	Apply func(object Object) (Action, error)
	// Cleanup cleans up after one deleted object (only with a Finalizer), treating
	// what is already gone as done.
	Cleanup func(object Object) (Action, error)
}

// Action is what the host does after a successful Apply or Cleanup.
type Action struct {
	action types.Action
}

// Default lets the host decide: reconcile again after a random 40 to 60 minutes.
var Default = Action{types.MakeActionDefault()}

// AwaitChange reconciles again only when the object changes.
var AwaitChange = Action{types.MakeActionAwaitChange()}

// RequeueAfter reconciles again after d (at least 100 ms), even if nothing changes.
func RequeueAfter(d time.Duration) Action {
	return Action{types.MakeActionRequeueAfter(uint64(d.Milliseconds()))}
}

// ReconcileError is a failed Apply or Cleanup with its own retry delay. Any other
// error is retried with the host's per-object exponential backoff.
type ReconcileError struct {
	Err        error
	RetryAfter time.Duration
}

func (e *ReconcileError) Error() string { return e.Err.Error() }
func (e *ReconcileError) Unwrap() error { return e.Err }

// RetryAfter wraps err so that the host retries after d rather than backing off.
func RetryAfter(err error, d time.Duration) error {
	return &ReconcileError{Err: err, RetryAfter: d}
}

func option(text string) witTypes.Option[string] {
	if text == "" {
		return witTypes.None[string]()
	}
	return witTypes.Some(text)
}

// Describe converts a Plugin to the WIT description. Called by the export glue.
func Describe(plugin Plugin) types.Description {
	return types.Description{
		Watch: types.Watch{
			ApiVersion:    plugin.Watch.APIVersion,
			Kind:          plugin.Watch.Kind,
			LabelSelector: option(plugin.Watch.LabelSelector),
		},
		Finalizer: option(plugin.Finalizer),
	}
}

// Reconcile runs Apply or Cleanup on the JSON the host sent and converts the outcome,
// turning a panic into a reconcile error. Called by the export glue.
func Reconcile(
	function func(Object) (Action, error), objectJSON string,
) (result witTypes.Result[types.Action, types.ReconcileError]) {
	defer func() {
		if recovered := recover(); recovered != nil {
			result = failed(fmt.Errorf("panic: %v", recovered))
		}
	}()
	if function == nil {
		return failed(errors.New("this plugin does not implement the call"))
	}
	object, err := parseObject(objectJSON)
	if err != nil {
		return failed(fmt.Errorf("the host sent an object that is not valid JSON: %w", err))
	}
	action, err := function(object)
	if err != nil {
		return failed(err)
	}
	if action.action == (types.Action{}) {
		action = Default
	}
	return witTypes.Ok[types.Action, types.ReconcileError](action.action)
}

func failed(err error) witTypes.Result[types.Action, types.ReconcileError] {
	reconcileError := types.ReconcileError{
		Message:      err.Error(),
		RetryAfterMs: witTypes.None[uint64](),
	}
	var withDelay *ReconcileError
	if errors.As(err, &withDelay) && withDelay.RetryAfter > 0 {
		reconcileError.RetryAfterMs = witTypes.Some(uint64(withDelay.RetryAfter.Milliseconds()))
	}
	return witTypes.Err[types.Action](reconcileError)
}
