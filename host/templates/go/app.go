// Package app is {{name}}: a kubewasm plugin.
package app

import "wit_component/kubewasm"

// Plugin is what the host runs.
var Plugin = kubewasm.Plugin{
	Watch: kubewasm.Watch{
		APIVersion:    "v1",
		Kind:          "ConfigMap",
		LabelSelector: "example.com/{{name}}=true",
	},
	Apply: func(object kubewasm.Object) (kubewasm.Action, error) {
		kubewasm.Infof("reconciling %s", object.Name())
		return kubewasm.Default, nil
	},
}
