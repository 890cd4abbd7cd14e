// Package export_kubewasm_controller_plugin is what wit-bindgen's exports call: it hands
// every call to the plugin's app.Plugin through the SDK.
package export_kubewasm_controller_plugin

import (
	witTypes "go.bytecodealliance.org/pkg/wit/types"
	"wit_component/app"
	"wit_component/kubewasm"
	types "wit_component/kubewasm_controller_types"
)

// Describe describes the plugin.
func Describe() types.Description {
	return kubewasm.Describe(app.Plugin)
}

// Apply runs the plugin's Apply.
func Apply(object string) witTypes.Result[types.Action, types.ReconcileError] {
	return kubewasm.Reconcile(app.Plugin.Apply, object)
}

// Cleanup runs the plugin's Cleanup.
func Cleanup(object string) witTypes.Result[types.Action, types.ReconcileError] {
	return kubewasm.Reconcile(app.Plugin.Cleanup, object)
}
