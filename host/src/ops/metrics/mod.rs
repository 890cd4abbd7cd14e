//! Prometheus metrics: controller-runtime's names, with the plugin as `controller`, and
//! kubewasm's own under `kubewasm_*`.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

mod controller;
mod plugin;

pub use controller::{ControllerSeries, ReconcileResult};
pub use plugin::{CALL_OUTCOMES, PluginSeries, Throttled};

/// `controller`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// The plugin.
    pub controller: String,
}

/// `controller` and `result` (`success`, `error`, `requeue_after`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResultLabels {
    /// The plugin.
    pub controller: String,
    /// The outcome.
    pub result: &'static str,
}

/// `name`, as client-go's workqueue metrics have it.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct QueueLabels {
    /// The plugin.
    pub name: String,
}

/// `plugin`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PluginLabels {
    /// The plugin.
    pub plugin: String,
}

/// `plugin` and `result` (`ok`, `error`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReloadLabels {
    /// The plugin.
    pub plugin: String,
    /// `ok` or `error`.
    pub result: &'static str,
}

/// `plugin` and `outcome` of a sandbox call.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct CallLabels {
    /// The plugin.
    pub plugin: String,
    /// `ok`, `reported`, `trap`, `deadline`, `memory`, `fuel`, `invalid_result`, `host`.
    pub outcome: &'static str,
}

/// `plugin` and `trap` (the trap's name, such as `stack_overflow`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TrapLabels {
    /// The plugin.
    pub plugin: String,
    /// The trap.
    pub trap: String,
}

/// `plugin`, `verb` and `resource` of a call the grant denied.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DeniedLabels {
    /// The plugin.
    pub plugin: String,
    /// The verb.
    pub verb: &'static str,
    /// The resource, `group/resource` (core group: just the resource).
    pub resource: String,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn reconcile_histogram() -> Histogram {
    // controller-runtime's buckets.
    Histogram::new([
        0.005, 0.01, 0.025, 0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.45, 0.5, 0.6, 0.7, 0.8,
        0.9, 1.0, 1.25, 1.5, 1.75, 2.0, 2.5, 3.0, 3.5, 4.0, 4.5, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0,
        15.0, 20.0, 25.0, 30.0, 40.0, 50.0, 60.0,
    ])
}

fn call_histogram() -> Histogram {
    // 10 µs to about 80 s.
    Histogram::new(exponential_buckets(0.00001, 2.5, 18))
}

/// Every metric the host exports.
pub struct Metrics {
    registry: Registry,
    /// `controller_runtime_reconcile_total`.
    pub reconcile_total: Family<ResultLabels, Counter>,
    /// `controller_runtime_reconcile_errors_total`.
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    /// `controller_runtime_reconcile_time_seconds`.
    pub reconcile_time: Histograms<ControllerLabels>,
    /// `controller_runtime_active_workers`.
    pub active_workers: Family<ControllerLabels, Gauge>,
    /// `controller_runtime_max_concurrent_reconciles`.
    pub max_concurrent: Family<ControllerLabels, Gauge>,
    /// `workqueue_depth`: objects woken and not yet reconciled, queued in kube-runtime's
    /// scheduler or waiting for one of the plugin's slots.
    pub workqueue_depth: Family<QueueLabels, Gauge>,
    /// `kubewasm_watches`: open watch streams.
    pub watches: Gauge,
    /// `kubewasm_plugins`: plugins running.
    pub plugins: Gauge,
    /// `kubewasm_leader`: 1 while this replica holds the leader lease (or runs without
    /// leader election), else 0.
    pub leader: Gauge,
    /// `kubewasm_plugin_reloads_total`.
    pub reloads: Family<ReloadLabels, Counter>,
    /// `kubewasm_plugin_calls_total`.
    pub calls: Family<CallLabels, Counter>,
    /// `kubewasm_plugin_traps_total`.
    pub traps: Family<TrapLabels, Counter>,
    /// `kubewasm_plugin_call_duration_seconds`.
    pub call_duration: Histograms<PluginLabels>,
    /// `kubewasm_plugin_fuel_used_total`.
    pub fuel_used: Family<PluginLabels, Counter<u64, AtomicU64>>,
    /// `kubewasm_plugin_denied_calls_total`.
    pub denied_calls: Family<DeniedLabels, Counter>,
    /// `kubewasm_plugin_log_dropped_lines_total`.
    pub log_dropped_lines: Family<PluginLabels, Counter>,
    /// `kubewasm_plugin_events_dropped_total`.
    pub events_dropped: Family<PluginLabels, Counter>,
    /// `kubewasm_plugin_cpu_throttled_seconds_total`.
    pub cpu_throttled: Family<PluginLabels, Counter<f64, AtomicU64>>,
    /// `kubewasm_plugin_demoted_calls_total`.
    pub demoted_calls: Family<PluginLabels, Counter>,
    /// `kubewasm_plugin_breaking`: 1 while the plugin's guest keeps breaking.
    pub breaking: Family<PluginLabels, Gauge>,
    /// `kubewasm_plugin_api_requests_total`.
    pub api_requests: Family<PluginLabels, Counter>,
    /// `kubewasm_plugin_api_requests_throttled_total`.
    pub api_requests_throttled: Family<CallLabels, Counter>,
    /// Each plugin's series, by name.
    plugin_series: Mutex<HashMap<String, Arc<PluginSeries>>>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// Registers every metric.
    pub fn new() -> Self {
        let mut registry = Registry::default();
        let reconcile_total = Family::default();
        registry.register(
            "controller_runtime_reconcile",
            "Total number of reconciliations per controller",
            reconcile_total.clone(),
        );
        let reconcile_errors = Family::default();
        registry.register(
            "controller_runtime_reconcile_errors",
            "Total number of reconciliation errors per controller",
            reconcile_errors.clone(),
        );
        let reconcile_time: Histograms<ControllerLabels> =
            Family::new_with_constructor(reconcile_histogram);
        registry.register(
            "controller_runtime_reconcile_time_seconds",
            "Length of time per reconciliation per controller",
            reconcile_time.clone(),
        );
        let active_workers = Family::default();
        registry.register(
            "controller_runtime_active_workers",
            "Number of currently used workers per controller",
            active_workers.clone(),
        );
        let max_concurrent = Family::default();
        registry.register(
            "controller_runtime_max_concurrent_reconciles",
            "Maximum number of concurrent reconciles per controller",
            max_concurrent.clone(),
        );
        let workqueue_depth = Family::default();
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            workqueue_depth.clone(),
        );
        let watches = Gauge::default();
        registry.register(
            "kubewasm_watches",
            "Watch streams open to the API server",
            watches.clone(),
        );
        let plugins = Gauge::default();
        registry.register("kubewasm_plugins", "Plugins running", plugins.clone());
        let leader = Gauge::default();
        registry.register(
            "kubewasm_leader",
            "Whether this replica runs plugins (1): it holds the leader lease, or leader election is off",
            leader.clone(),
        );
        let reloads = Family::default();
        registry.register(
            "kubewasm_plugin_reloads",
            "Plugin reloads by result (error: the old version kept serving)",
            reloads.clone(),
        );
        let calls = Family::default();
        registry.register(
            "kubewasm_plugin_calls",
            "Calls into plugins by outcome",
            calls.clone(),
        );
        let traps = Family::default();
        registry.register(
            "kubewasm_plugin_traps",
            "Plugin calls that trapped, by trap",
            traps.clone(),
        );
        let call_duration: Histograms<PluginLabels> = Family::new_with_constructor(call_histogram);
        registry.register(
            "kubewasm_plugin_call_duration_seconds",
            "Duration of calls into plugins, instantiation included",
            call_duration.clone(),
        );
        let fuel_used = Family::default();
        registry.register(
            "kubewasm_plugin_fuel_used",
            "Fuel consumed by plugins with a fuel limit",
            fuel_used.clone(),
        );
        let denied_calls = Family::default();
        registry.register(
            "kubewasm_plugin_denied_calls",
            "Host calls refused by the plugin's grant, never sent to the API server",
            denied_calls.clone(),
        );
        let log_dropped_lines = Family::default();
        registry.register(
            "kubewasm_plugin_log_dropped_lines",
            "Plugin log lines dropped by the per-plugin rate limit",
            log_dropped_lines.clone(),
        );
        let events_dropped = Family::default();
        registry.register(
            "kubewasm_plugin_events_dropped",
            "Events not recorded because the plugin was over its Event rate",
            events_dropped.clone(),
        );
        let cpu_throttled = Family::default();
        registry.register(
            "kubewasm_plugin_cpu_throttled_seconds",
            "Time the plugin's guests were paused for running past its CPU budget",
            cpu_throttled.clone(),
        );
        let demoted_calls = Family::default();
        registry.register(
            "kubewasm_plugin_demoted_calls",
            "Calls run at idle priority (from their start, or from the pause where they ran past the budget) because the plugin lately ran past its CPU budget or broke call after call",
            demoted_calls.clone(),
        );
        let breaking = Family::default();
        registry.register(
            "kubewasm_plugin_breaking",
            "Whether the plugin's guest broke on its last calls in a row (1) and is held to a quarter of its CPU budget until a call comes through",
            breaking.clone(),
        );
        let api_requests = Family::default();
        registry.register(
            "kubewasm_plugin_api_requests",
            "Requests sent to the API server for the plugin's kube calls",
            api_requests.clone(),
        );
        let api_requests_throttled = Family::default();
        registry.register(
            "kubewasm_plugin_api_requests_throttled",
            "Kube calls over the plugin's request rate: delayed until it allowed them, or refused as unavailable",
            api_requests_throttled.clone(),
        );
        Self {
            registry,
            reconcile_total,
            reconcile_errors,
            reconcile_time,
            active_workers,
            max_concurrent,
            workqueue_depth,
            watches,
            plugins,
            leader,
            reloads,
            calls,
            traps,
            call_duration,
            fuel_used,
            denied_calls,
            log_dropped_lines,
            events_dropped,
            cpu_throttled,
            demoted_calls,
            breaking,
            api_requests,
            api_requests_throttled,
            plugin_series: Mutex::default(),
        }
    }

    /// The metrics in the OpenMetrics text format.
    pub fn encode(&self) -> String {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &self.registry)
            .expect("writing to a String cannot fail");
        text
    }

    /// `controller` labels for `plugin`.
    pub fn controller(plugin: &str) -> ControllerLabels {
        ControllerLabels {
            controller: plugin.to_string(),
        }
    }
}
