//! Mirrors every ConfigMap labelled `kubewasm.dev/mirror=true` into `<name>-mirror` in
//! the same namespace, and deletes the mirror when the source goes away.

use std::collections::BTreeMap;

use kubewasm_guest::k8s_openapi::api::core::v1::ConfigMap;
use kubewasm_guest::k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use kubewasm_guest::{Action, Error, Reconciler, Result, kube};

/// The plugin.
pub struct Mirror;

fn mirror_name(source: &ConfigMap) -> Result<(Option<&str>, String)> {
    let name = source
        .metadata
        .name
        .as_deref()
        .ok_or(Error::msg("source has no name"))?;
    Ok((
        source.metadata.namespace.as_deref(),
        format!("{name}-mirror"),
    ))
}

impl Reconciler for Mirror {
    type Resource = ConfigMap;
    const LABEL_SELECTOR: Option<&'static str> = Some("kubewasm.dev/mirror=true");
    const FINALIZER_NAME: Option<&'static str> = Some("kubewasm.dev/mirror");

    fn apply(source: ConfigMap) -> Result<Action> {
        let (namespace, name) = mirror_name(&source)?;
        let source_name = source.metadata.name.clone();
        kube::apply(&ConfigMap {
            metadata: ObjectMeta {
                name: Some(name),
                namespace: namespace.map(str::to_string),
                labels: Some(BTreeMap::from([(
                    "kubewasm.dev/mirror-of".to_string(),
                    source_name.unwrap_or_default(),
                )])),
                ..Default::default()
            },
            data: source.data,
            ..Default::default()
        })?;
        Ok(Action::Default)
    }

    fn cleanup(source: ConfigMap) -> Result<Action> {
        let (namespace, name) = mirror_name(&source)?;
        kube::delete_if_exists::<ConfigMap>(namespace, &name)?;
        Ok(Action::Default)
    }
}

kubewasm_guest::export!(Mirror);
