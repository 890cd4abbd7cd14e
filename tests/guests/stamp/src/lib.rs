//! Stamps annotation `kubewasm.dev/version: <STAMP_VERSION>` (set at build time) on
//! every ConfigMap labelled `kubewasm.dev/stamp=true`: two builds are two versions of
//! one plugin, for hot-reload tests.

use std::collections::BTreeMap;

use kubewasm_guest::k8s_openapi::api::core::v1::ConfigMap;
use kubewasm_guest::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubewasm_guest::{Action, Reconciler, Result, kube};

/// The version this build stamps.
const VERSION: &str = match option_env!("STAMP_VERSION") {
    Some(version) => version,
    None => "dev",
};

/// The plugin.
pub struct Stamp;

impl Reconciler for Stamp {
    type Resource = ConfigMap;
    const LABEL_SELECTOR: Option<&'static str> = Some("kubewasm.dev/stamp=true");

    fn apply(object: ConfigMap) -> Result<Action> {
        let stamped = object
            .metadata
            .annotations
            .as_ref()
            .and_then(|annotations| annotations.get("kubewasm.dev/version"))
            .is_some_and(|version| version == VERSION);
        if !stamped {
            kube::apply(&ConfigMap {
                metadata: ObjectMeta {
                    name: object.metadata.name,
                    namespace: object.metadata.namespace,
                    annotations: Some(BTreeMap::from([(
                        "kubewasm.dev/version".to_string(),
                        VERSION.to_string(),
                    )])),
                    ..Default::default()
                },
                ..Default::default()
            })?;
        }
        Ok(Action::AwaitChange)
    }
}

kubewasm_guest::export!(Stamp);
