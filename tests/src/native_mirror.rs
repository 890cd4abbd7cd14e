//! The configmap-mirror logic as a native Rust [`Reconciler`], for benchmarks that
//! compare it with the WebAssembly plugin under the same host.

use std::collections::BTreeMap;
use std::sync::Arc;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::ObjectMeta;
use kubewasm::reconciler::{
    Action, Description, HostCalls, HostError, ObjectRef, ReconcileError, Reconciler, WatchSpec,
};

/// Mirrors `kubewasm.dev/mirror=true` ConfigMaps into `<name>-mirror`, like
/// `plugins/configmap-mirror`, parsing and serializing JSON the same way.
pub struct NativeMirror {
    description: Description,
}

impl Default for NativeMirror {
    fn default() -> Self {
        Self {
            description: Description {
                watch: WatchSpec {
                    api_version: "v1".into(),
                    kind: "ConfigMap".into(),
                    label_selector: Some("kubewasm.dev/mirror=true".into()),
                },
                finalizer: Some("kubewasm.dev/mirror".into()),
                owns: Vec::new(),
            },
        }
    }
}

fn reported(err: impl std::fmt::Display) -> ReconcileError {
    ReconcileError::Reported {
        message: err.to_string(),
        retry_after: None,
    }
}

fn parse(object: &str) -> Result<(ConfigMap, String), ReconcileError> {
    let source: ConfigMap = serde_json::from_str(object).map_err(reported)?;
    let name = source
        .metadata
        .name
        .clone()
        .ok_or_else(|| reported("no name"))?;
    Ok((source, format!("{name}-mirror")))
}

#[async_trait::async_trait]
impl Reconciler for NativeMirror {
    fn description(&self) -> &Description {
        &self.description
    }

    async fn apply(
        &self,
        object: &str,
        host: Arc<dyn HostCalls>,
    ) -> Result<Action, ReconcileError> {
        let (source, mirror_name) = parse(object)?;
        let mut mirror = serde_json::to_value(ConfigMap {
            metadata: ObjectMeta {
                name: Some(mirror_name),
                namespace: source.metadata.namespace.clone(),
                labels: Some(BTreeMap::from([(
                    "kubewasm.dev/mirror-of".to_string(),
                    source.metadata.name.clone().unwrap_or_default(),
                )])),
                ..Default::default()
            },
            data: source.data,
            ..Default::default()
        })
        .map_err(reported)?;
        mirror["apiVersion"] = "v1".into();
        mirror["kind"] = "ConfigMap".into();
        let stored = host.apply(mirror.to_string()).await.map_err(reported)?;
        let _: ConfigMap = serde_json::from_str(&stored).map_err(reported)?;
        Ok(Action::Default)
    }

    async fn cleanup(
        &self,
        object: &str,
        host: Arc<dyn HostCalls>,
    ) -> Result<Action, ReconcileError> {
        let (source, mirror_name) = parse(object)?;
        match host
            .delete(ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: source.metadata.namespace,
                name: mirror_name,
            })
            .await
        {
            Ok(()) | Err(HostError::NotFound(_)) => Ok(Action::Default),
            Err(err) => Err(reported(err)),
        }
    }
}
