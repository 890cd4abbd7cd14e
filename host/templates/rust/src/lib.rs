//! {{name}}: a kubewasm plugin.

use kubewasm_guest::k8s_openapi::api::core::v1::ConfigMap;
use kubewasm_guest::{Action, Reconciler, Result, log};

/// The plugin.
pub struct Plugin;

impl Reconciler for Plugin {
    type Resource = ConfigMap;
    const LABEL_SELECTOR: Option<&'static str> = Some("example.com/{{name}}=true");

    fn apply(object: ConfigMap) -> Result<Action> {
        let name = object.metadata.name.unwrap_or_default();
        log::info(format!("reconciling {name}"));
        Ok(Action::Default)
    }
}

kubewasm_guest::export!(Plugin);
