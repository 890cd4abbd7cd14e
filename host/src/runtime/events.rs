//! The Events a plugin records (its own through the `events` import, and the host's
//! `ReconcileFailed` for each failure), rate-limited per plugin: a plugin failing on
//! thousands of objects must not flood the API server that every tenant shares.

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, Recorder};
use prometheus_client::metrics::counter::Counter;

use crate::rate::TokenBucket;

/// Events per second a plugin may record, sustained.
pub const EVENTS_PER_SECOND: u64 = 5;
/// Events a plugin may record at once.
pub const EVENTS_BURST: u64 = 50;

/// One plugin's Event sink.
pub struct PluginEvents {
    plugin: String,
    recorder: Recorder,
    bucket: TokenBucket,
    /// Its `kubewasm_plugin_events_dropped_total`.
    dropped: Counter,
}

impl PluginEvents {
    /// A sink recording through `recorder`, counting drops in `dropped`.
    pub fn new(plugin: &str, recorder: Recorder, dropped: Counter) -> Self {
        Self {
            plugin: plugin.to_string(),
            recorder,
            bucket: TokenBucket::new(EVENTS_PER_SECOND, EVENTS_BURST),
            dropped,
        }
    }

    /// Records `event` about `regarding` if the plugin's rate allows, and counts it in
    /// `kubewasm_plugin_events_dropped_total` otherwise. Failing to record is logged,
    /// never an error of the reconcile.
    pub async fn publish(&self, event: &Event, regarding: &ObjectReference) {
        if !self.bucket.admit(1) {
            self.dropped.inc();
            return;
        }
        if let Err(err) = self.recorder.publish(event, regarding).await {
            tracing::warn!(plugin = %self.plugin, reason = %event.reason, "could not record an event: {err}");
        }
    }
}
