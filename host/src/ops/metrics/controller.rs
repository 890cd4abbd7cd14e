//! One plugin's controller-runtime series (`controller_runtime_*`, `workqueue_depth`),
//! looked up once with the rest of its series ([`super::PluginSeries`]) rather than on
//! every reconcile.

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::{Metrics, QueueLabels, ResultLabels};

/// One plugin's controller-runtime series; like controller-runtime's, every `result`
/// reads 0 from the start, so that a rate of errors is there before the first error.
#[derive(Debug, Clone)]
pub struct ControllerSeries {
    /// `controller_runtime_active_workers`.
    pub active_workers: Gauge,
    /// `controller_runtime_max_concurrent_reconciles`.
    pub max_concurrent: Gauge,
    /// `workqueue_depth`, shared by the plugin's controllers.
    pub workqueue_depth: Gauge,
    /// `controller_runtime_reconcile_time_seconds`.
    pub reconcile_time: Histogram,
    /// `controller_runtime_reconcile_errors_total`.
    pub reconcile_errors: Counter,
    success: Counter,
    requeue_after: Counter,
    error: Counter,
}

/// How a reconcile ended, as `controller_runtime_reconcile_total` counts it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReconcileResult {
    /// It succeeded.
    Success,
    /// It succeeded and the plugin asked to be called again after a delay.
    RequeueAfter,
    /// It failed.
    Error,
}

impl ControllerSeries {
    /// `controller_runtime_reconcile_total` for `result`.
    pub fn reconciles(&self, result: ReconcileResult) -> &Counter {
        match result {
            ReconcileResult::Success => &self.success,
            ReconcileResult::RequeueAfter => &self.requeue_after,
            ReconcileResult::Error => &self.error,
        }
    }
}

/// Every `result` of `controller_runtime_reconcile_total`.
const RESULTS: [&str; 3] = ["success", "requeue_after", "error"];

impl Metrics {
    /// `plugin`'s controller series, each `result` of a reconcile at 0 until it happens.
    pub(super) fn controller_series(&self, plugin: &str) -> ControllerSeries {
        let labels = Self::controller(plugin);
        let [success, requeue_after, error] = RESULTS.map(|result| {
            self.reconcile_total.get_or_create_owned(&ResultLabels {
                controller: plugin.to_string(),
                result,
            })
        });
        ControllerSeries {
            active_workers: self.active_workers.get_or_create_owned(&labels),
            max_concurrent: self.max_concurrent.get_or_create_owned(&labels),
            workqueue_depth: self.workqueue_depth.get_or_create_owned(&QueueLabels {
                name: plugin.to_string(),
            }),
            reconcile_time: self.reconcile_time.get_or_create_owned(&labels),
            reconcile_errors: self.reconcile_errors.get_or_create_owned(&labels),
            success,
            requeue_after,
            error,
        }
    }

    /// Removes every controller series of `plugin`.
    pub(super) fn forget_controller(&self, plugin: &str) {
        let labels = Self::controller(plugin);
        for result in RESULTS {
            self.reconcile_total.remove(&ResultLabels {
                controller: plugin.to_string(),
                result,
            });
        }
        self.reconcile_errors.remove(&labels);
        self.reconcile_time.remove(&labels);
        self.active_workers.remove(&labels);
        self.max_concurrent.remove(&labels);
        self.workqueue_depth.remove(&QueueLabels {
            name: plugin.to_string(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_plugins_controller_series_read_zero_from_its_start_and_count_into_the_registry() {
        let metrics = Metrics::new();
        let series = metrics.plugin_series("mirror").controller().clone();
        let text = metrics.encode();
        for result in ["success", "requeue_after", "error"] {
            let sample = format!(
                "controller_runtime_reconcile_total{{controller=\"mirror\",result=\"{result}\"}} 0"
            );
            assert!(text.contains(&sample), "no {sample} in:\n{text}");
        }
        series.reconciles(ReconcileResult::Error).inc();
        series.reconcile_errors.inc();
        // A second lookup (the plugin reloaded) shares the same series.
        let again = metrics.plugin_series("mirror").controller().clone();
        again.reconciles(ReconcileResult::Error).inc();
        let text = metrics.encode();
        assert!(
            text.contains(
                "controller_runtime_reconcile_total{controller=\"mirror\",result=\"error\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("controller_runtime_reconcile_errors_total{controller=\"mirror\"} 1"),
            "{text}"
        );
    }
}
