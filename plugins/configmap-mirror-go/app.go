// Package app mirrors every ConfigMap labelled kubewasm.dev/mirror=true into
// <name>-mirror in the same namespace, and deletes the mirror when the source goes
// away (the Go twin of plugins/configmap-mirror).
package app

import "wit_component/kubewasm"

// Plugin is what the host runs.
var Plugin = kubewasm.Plugin{
	Watch: kubewasm.Watch{
		APIVersion:    "v1",
		Kind:          "ConfigMap",
		LabelSelector: "kubewasm.dev/mirror=true",
	},
	Finalizer: "kubewasm.dev/mirror",
	Apply:     apply,
	Cleanup:   cleanup,
}

func apply(source kubewasm.Object) (kubewasm.Action, error) {
	data, _ := source["data"].(map[string]any)
	if data == nil {
		data = map[string]any{}
	}
	_, err := kubewasm.Apply(map[string]any{
		"apiVersion": "v1",
		"kind":       "ConfigMap",
		"metadata": map[string]any{
			"name":      source.Name() + "-mirror",
			"namespace": source.Namespace(),
			"labels":    map[string]string{"kubewasm.dev/mirror-of": source.Name()},
		},
		"data": data,
	})
	return kubewasm.Default, err
}

func cleanup(source kubewasm.Object) (kubewasm.Action, error) {
	err := kubewasm.DeleteIfExists(kubewasm.Ref{
		APIVersion: "v1",
		Kind:       "ConfigMap",
		Namespace:  source.Namespace(),
		Name:       source.Name() + "-mirror",
	})
	return kubewasm.Default, err
}
