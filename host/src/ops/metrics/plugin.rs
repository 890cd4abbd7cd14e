//! One plugin's series, looked up once and shared by its sandbox calls and its
//! controllers, and the removal of every series of a plugin that is gone.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;

use super::{
    CallLabels, ControllerSeries, DeniedLabels, Metrics, PluginLabels, ReloadLabels, TrapLabels,
};

/// Every `outcome` of `kubewasm_plugin_calls_total`: `ok`, `reported` (the plugin
/// returned an error), and each [`crate::reconciler::ReconcileError::kind`].
pub const CALL_OUTCOMES: [&str; 9] = [
    "ok",
    "reported",
    "trap",
    "deadline",
    "memory",
    "fuel",
    "invalid_result",
    "host",
    "stopped",
];

/// One plugin's series: its `kubewasm_plugin_*` series and its [`ControllerSeries`].
/// Those with fixed labels read 0 from its start; those whose
/// labels its calls choose (which trap, which denied call) and its fuel appear on first
/// use. Once the plugin is forgotten, a handle still held by one of its last calls counts
/// into series no longer exported, and never brings one back.
#[derive(Debug)]
pub struct PluginSeries {
    controller: ControllerSeries,
    calls: [Counter; CALL_OUTCOMES.len()],
    call_duration: Histogram,
    log_dropped_lines: Counter,
    cpu_throttled: Counter<f64, AtomicU64>,
    demoted_calls: Counter,
    breaking: Gauge,
    events_dropped: Counter,
    api_requests: Counter,
    api_requests_throttled: [Counter; THROTTLE_OUTCOMES.len()],
    labelled: Mutex<Labelled>,
}

/// The `outcome`s of `kubewasm_plugin_api_requests_throttled_total`.
const THROTTLE_OUTCOMES: [&str; 2] = ["delayed", "refused"];

/// How a kube call over the plugin's request rate ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Throttled {
    /// It waited until the rate allowed it.
    Delayed,
    /// It would have waited too long, and was refused.
    Refused,
}

/// The series a plugin's calls create as they go, and the families they go in.
#[derive(Debug)]
struct Labelled {
    plugin: String,
    trap_family: Family<TrapLabels, Counter>,
    denied_family: Family<DeniedLabels, Counter>,
    fuel_family: Family<PluginLabels, Counter<u64, AtomicU64>>,
    traps: HashMap<String, Counter>,
    denied: HashMap<(&'static str, String), Counter>,
    fuel_used: Option<Counter<u64, AtomicU64>>,
    /// The plugin is gone: nothing more goes into the families.
    forgotten: bool,
}

impl Labelled {
    fn counter<L, M: Clone + Default>(&self, family: &Family<L, M>, labels: impl FnOnce() -> L) -> M
    where
        L: Clone + std::hash::Hash + Eq,
    {
        if self.forgotten {
            M::default()
        } else {
            family.get_or_create_owned(&labels())
        }
    }
}

impl PluginSeries {
    fn new(metrics: &Metrics, plugin: &str) -> Self {
        let labels = PluginLabels {
            plugin: plugin.to_string(),
        };
        Self {
            controller: metrics.controller_series(plugin),
            calls: CALL_OUTCOMES.map(|outcome| {
                metrics.calls.get_or_create_owned(&CallLabels {
                    plugin: plugin.to_string(),
                    outcome,
                })
            }),
            call_duration: metrics.call_duration.get_or_create_owned(&labels),
            log_dropped_lines: metrics.log_dropped_lines.get_or_create_owned(&labels),
            cpu_throttled: metrics.cpu_throttled.get_or_create_owned(&labels),
            demoted_calls: metrics.demoted_calls.get_or_create_owned(&labels),
            breaking: metrics.breaking.get_or_create_owned(&labels),
            events_dropped: metrics.events_dropped.get_or_create_owned(&labels),
            api_requests: metrics.api_requests.get_or_create_owned(&labels),
            api_requests_throttled: THROTTLE_OUTCOMES.map(|outcome| {
                metrics
                    .api_requests_throttled
                    .get_or_create_owned(&CallLabels {
                        plugin: plugin.to_string(),
                        outcome,
                    })
            }),
            labelled: Mutex::new(Labelled {
                plugin: plugin.to_string(),
                trap_family: metrics.traps.clone(),
                denied_family: metrics.denied_calls.clone(),
                fuel_family: metrics.fuel_used.clone(),
                traps: HashMap::new(),
                denied: HashMap::new(),
                fuel_used: None,
                forgotten: false,
            }),
        }
    }

    fn labelled(&self) -> MutexGuard<'_, Labelled> {
        self.labelled.lock().expect("plugin series poisoned")
    }

    /// Its controller-runtime series.
    pub fn controller(&self) -> &ControllerSeries {
        &self.controller
    }

    /// `kubewasm_plugin_events_dropped_total`.
    pub fn events_dropped(&self) -> &Counter {
        &self.events_dropped
    }

    /// Counts a request sent to the API server for one of its kube calls.
    pub fn count_api_request(&self) {
        self.api_requests.inc();
    }

    /// Counts a kube call over its request rate.
    pub fn count_throttled(&self, how: Throttled) {
        self.api_requests_throttled[how as usize].inc();
    }

    /// Counts a call of `verb` on `resource` that the grant denied, in
    /// `kubewasm_plugin_denied_calls_total`.
    pub fn count_denied(&self, verb: &'static str, resource: &str) {
        let mut labelled = self.labelled();
        let key = (verb, resource.to_string());
        if let Some(counter) = labelled.denied.get(&key) {
            counter.inc();
            return;
        }
        let counter = labelled.counter(&labelled.denied_family, || DeniedLabels {
            plugin: labelled.plugin.clone(),
            verb,
            resource: resource.to_string(),
        });
        counter.inc();
        labelled.denied.insert(key, counter);
    }

    fn count_trap(&self, trap: &str) {
        let mut labelled = self.labelled();
        if let Some(counter) = labelled.traps.get(trap) {
            counter.inc();
            return;
        }
        let counter = labelled.counter(&labelled.trap_family, || TrapLabels {
            plugin: labelled.plugin.clone(),
            trap: trap.to_string(),
        });
        counter.inc();
        labelled.traps.insert(trap.to_string(), counter);
    }

    fn count_fuel(&self, fuel: u64) {
        let mut labelled = self.labelled();
        if labelled.fuel_used.is_none() {
            let counter = labelled.counter(&labelled.fuel_family, || PluginLabels {
                plugin: labelled.plugin.clone(),
            });
            labelled.fuel_used = Some(counter);
        }
        if let Some(counter) = &labelled.fuel_used {
            counter.inc_by(fuel);
        }
    }

    /// Removes every series of this plugin from `metrics` and keeps its calls from
    /// creating more.
    fn forget(&self, metrics: &Metrics) {
        let mut labelled = self.labelled();
        labelled.forgotten = true;
        let plugin = labelled.plugin.clone();
        for outcome in CALL_OUTCOMES {
            metrics.calls.remove(&CallLabels {
                plugin: plugin.clone(),
                outcome,
            });
        }
        for trap in labelled.traps.keys() {
            metrics.traps.remove(&TrapLabels {
                plugin: plugin.clone(),
                trap: trap.clone(),
            });
        }
        for (verb, resource) in labelled.denied.keys() {
            metrics.denied_calls.remove(&DeniedLabels {
                plugin: plugin.clone(),
                verb,
                resource: resource.clone(),
            });
        }
        let labels = PluginLabels { plugin };
        metrics.call_duration.remove(&labels);
        metrics.fuel_used.remove(&labels);
        metrics.log_dropped_lines.remove(&labels);
        metrics.cpu_throttled.remove(&labels);
        metrics.demoted_calls.remove(&labels);
        metrics.breaking.remove(&labels);
        metrics.events_dropped.remove(&labels);
        metrics.api_requests.remove(&labels);
        for outcome in THROTTLE_OUTCOMES {
            metrics.api_requests_throttled.remove(&CallLabels {
                plugin: labels.plugin.clone(),
                outcome,
            });
        }
        for result in ["ok", "error"] {
            metrics.reloads.remove(&ReloadLabels {
                plugin: labels.plugin.clone(),
                result,
            });
        }
        metrics.forget_controller(&labels.plugin);
    }
}

impl crate::sandbox::CallObserver for PluginSeries {
    fn call_finished(
        &self,
        duration: Duration,
        outcome: &'static str,
        trap: Option<&str>,
        fuel_used: Option<u64>,
    ) {
        let index = CALL_OUTCOMES.iter().position(|known| *known == outcome);
        debug_assert!(index.is_some(), "{outcome} is not in CALL_OUTCOMES");
        if let Some(index) = index {
            self.calls[index].inc();
        }
        if let Some(trap) = trap {
            self.count_trap(trap);
        }
        self.call_duration.observe(duration.as_secs_f64());
        if let Some(fuel) = fuel_used {
            self.count_fuel(fuel);
        }
    }

    fn log_lines_dropped(&self, lines: u64) {
        self.log_dropped_lines.inc_by(lines);
    }

    fn cpu_throttled(&self, paused: Duration) {
        self.cpu_throttled.inc_by(paused.as_secs_f64());
    }

    fn call_demoted(&self) {
        self.demoted_calls.inc();
    }

    fn breaking(&self, breaking: bool) {
        self.breaking.set(breaking.into());
    }
}

impl Metrics {
    /// Plugin `name`'s series: created at its first start, the same for every version of
    /// it until [`Metrics::forget_plugin`].
    pub fn plugin_series(&self, name: &str) -> Arc<PluginSeries> {
        self.plugin_series
            .lock()
            .expect("plugin series poisoned")
            .entry(name.to_string())
            .or_insert_with(|| Arc::new(PluginSeries::new(self, name)))
            .clone()
    }

    /// Removes every series of plugin `name`, its controller series included: it is gone,
    /// and a host whose plugins come and go must not export their series forever. A
    /// plugin of that name started later begins from 0.
    pub fn forget_plugin(&self, name: &str) {
        // Held throughout, so that a plugin of the same name starting meanwhile cannot
        // pick up series that are about to go.
        let mut all = self.plugin_series.lock().expect("plugin series poisoned");
        if let Some(series) = all.remove(name) {
            series.forget(self);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sandbox::CallObserver;

    fn plugin_lines(metrics: &Metrics, plugin: &str) -> Vec<String> {
        metrics
            .encode()
            .lines()
            .filter(|line| {
                line.contains(&format!("plugin=\"{plugin}\""))
                    || line.contains(&format!("controller=\"{plugin}\""))
                    || line.contains(&format!("name=\"{plugin}\""))
            })
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn a_plugins_calls_count_into_its_series() {
        let metrics = Metrics::new();
        let series = metrics.plugin_series("p");
        series.call_finished(
            Duration::from_millis(1),
            "trap",
            Some("stack_overflow"),
            None,
        );
        series.call_finished(Duration::from_millis(1), "ok", None, Some(7));
        series.count_denied("get", "secrets");
        // Every version of the plugin shares the series.
        metrics.plugin_series("p").call_finished(
            Duration::from_millis(1),
            "trap",
            Some("stack_overflow"),
            Some(3),
        );
        let text = metrics.encode();
        for sample in [
            "kubewasm_plugin_calls_total{plugin=\"p\",outcome=\"trap\"} 2",
            "kubewasm_plugin_calls_total{plugin=\"p\",outcome=\"ok\"} 1",
            "kubewasm_plugin_calls_total{plugin=\"p\",outcome=\"deadline\"} 0",
            "kubewasm_plugin_traps_total{plugin=\"p\",trap=\"stack_overflow\"} 2",
            "kubewasm_plugin_fuel_used_total{plugin=\"p\"} 10",
            "kubewasm_plugin_denied_calls_total{plugin=\"p\",verb=\"get\",resource=\"secrets\"} 1",
            "kubewasm_plugin_call_duration_seconds_count{plugin=\"p\"} 3",
        ] {
            assert!(text.contains(sample), "no {sample} in:\n{text}");
        }
    }

    #[test]
    fn a_forgotten_plugin_leaves_no_series_and_its_late_calls_bring_none_back() {
        let metrics = Metrics::new();
        let gone = metrics.plugin_series("gone");
        gone.controller().max_concurrent.set(2);
        gone.controller().workqueue_depth.set(1);
        gone.call_finished(
            Duration::from_millis(1),
            "trap",
            Some("unreachable"),
            Some(1),
        );
        gone.count_denied("create", "configmaps");
        gone.breaking(true);
        metrics.plugin_series("stays").call_demoted();
        metrics
            .reloads
            .get_or_create(&ReloadLabels {
                plugin: "gone".into(),
                result: "ok",
            })
            .inc();
        assert!(plugin_lines(&metrics, "gone").len() > 10);

        metrics.forget_plugin("gone");
        assert_eq!(plugin_lines(&metrics, "gone"), Vec::<String>::new());
        // A call of the plugin still running as it was removed.
        gone.call_finished(
            Duration::from_millis(1),
            "trap",
            Some("stack_overflow"),
            Some(1),
        );
        gone.count_denied("get", "secrets");
        gone.breaking(true);
        assert_eq!(plugin_lines(&metrics, "gone"), Vec::<String>::new());
        assert!(
            metrics
                .encode()
                .contains("kubewasm_plugin_demoted_calls_total{plugin=\"stays\"} 1"),
            "another plugin's series went too"
        );
        // Started again: from 0.
        metrics.plugin_series("gone");
        assert!(
            metrics
                .encode()
                .contains("kubewasm_plugin_calls_total{plugin=\"gone\",outcome=\"trap\"} 0")
        );
    }
}
