//! Events about the plugins themselves (started, reloaded, a load that failed, stopped),
//! recorded regarding the host's own Pod: no Kubernetes object stands for a plugin, and
//! `kubectl describe pod` is where an operator looks first.

use std::sync::Arc;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// The Pod the host runs in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostPod {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl HostPod {
    /// The Pod named by `POD_NAME` (`deploy/deployment.yaml` sets it from the downward
    /// API) in `namespace`, the in-cluster one; `None` outside a Pod.
    pub fn from_env(namespace: &str) -> Option<Self> {
        let name = std::env::var("POD_NAME")
            .ok()
            .filter(|name| !name.is_empty())?;
        Some(Self {
            namespace: namespace.to_string(),
            name,
        })
    }

    fn reference(&self) -> ObjectReference {
        ObjectReference {
            api_version: Some("v1".into()),
            kind: Some("Pod".into()),
            namespace: Some(self.namespace.clone()),
            name: Some(self.name.clone()),
            ..ObjectReference::default()
        }
    }
}

/// What happened to a plugin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lifecycle {
    /// It started.
    Started,
    /// A new version replaced the running one.
    Reloaded,
    /// Its files could not be loaded (a running version keeps serving).
    LoadFailed,
    /// Its files were removed, and it stopped.
    Stopped,
}

impl Lifecycle {
    fn reason(self) -> &'static str {
        match self {
            Self::Started => "PluginStarted",
            Self::Reloaded => "PluginReloaded",
            Self::LoadFailed => "PluginLoadFailed",
            Self::Stopped => "PluginStopped",
        }
    }

    fn event_type(self) -> EventType {
        match self {
            Self::LoadFailed => EventType::Warning,
            Self::Started | Self::Reloaded | Self::Stopped => EventType::Normal,
        }
    }
}

/// Records [`Lifecycle`] Events regarding the host's Pod.
pub struct LifecycleEvents {
    recorder: Recorder,
    pod: ObjectReference,
}

impl std::fmt::Debug for LifecycleEvents {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LifecycleEvents")
            .field("pod", &self.pod)
            .finish_non_exhaustive()
    }
}

/// Longest Event note the API server accepts.
const MAX_NOTE: usize = 1024;

impl LifecycleEvents {
    /// Events regarding `pod`, recorded with `client`'s identity as `reporter`.
    pub fn new(client: kube::Client, reporter: Reporter, pod: &HostPod) -> Arc<Self> {
        Arc::new(Self {
            recorder: Recorder::new(client, reporter),
            pod: pod.reference(),
        })
    }

    /// Records that `what` happened to plugin `plugin`, with `note` saying more. Sent in
    /// the background: a slow or unreachable API server holds up no plugin's change.
    pub fn record(self: &Arc<Self>, plugin: &str, what: Lifecycle, note: &str) {
        let event = Event {
            type_: what.event_type(),
            reason: what.reason().to_string(),
            note: Some(
                crate::sandbox::truncate(&format!("{plugin}: {note}"), MAX_NOTE).to_string(),
            ),
            action: what.reason().to_string(),
            secondary: None,
        };
        let events = self.clone();
        let plugin = plugin.to_string();
        tokio::spawn(async move {
            if let Err(err) = events.recorder.publish(&event, &events.pod).await {
                tracing::warn!(plugin, reason = %event.reason, "could not record an event: {err}");
            }
        });
    }
}
