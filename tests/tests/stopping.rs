//! Stopping a plugin whose reconciles never end, on a real API server: its running
//! reconciles get the shutdown grace, then are cancelled (a guest's call with them),
//! no other plugin waits for them meanwhile, and a guest throttled by its CPU budget
//! ends at its deadline rather than the grace.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, ObjectMeta, PostParams};
use kubewasm::grant::Grant;
use kubewasm::ops::metrics::Metrics;
use kubewasm::reconciler::{Action, Description, HostCalls, ReconcileError, Reconciler};
use kubewasm::runtime::{Runtime, RuntimeOptions};
use kubewasm::sandbox::{Limits, PluginOptions, Sandbox, WasmPlugin};
use kubewasm_tests::host::config_map_grant;
use kubewasm_tests::plugins::test_guest_bytes;
use kubewasm_tests::{admin_client, admin_config, test_namespace, wait};

const WAIT: Duration = Duration::from_secs(60);

/// Counts when dropped.
struct CountOnDrop(Arc<AtomicUsize>);

impl Drop for CountOnDrop {
    fn drop(&mut self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
}

/// A plugin whose every reconcile waits for ever; counts those started and those
/// dropped unfinished (cancelled).
#[derive(Default)]
struct Stuck {
    started: Arc<AtomicUsize>,
    cancelled: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Reconciler for Stuck {
    fn description(&self) -> &Description {
        kubewasm_tests::every_config_map()
    }

    async fn apply(&self, _: &str, _: Arc<dyn HostCalls>) -> Result<Action, ReconcileError> {
        self.started.fetch_add(1, Ordering::SeqCst);
        let _cancelled = CountOnDrop(self.cancelled.clone());
        std::future::pending().await
    }

    async fn cleanup(&self, _: &str, _: Arc<dyn HostCalls>) -> Result<Action, ReconcileError> {
        Ok(Action::AwaitChange)
    }
}

/// Counts its reconciles, which end at once.
#[derive(Default)]
struct Counting(Arc<AtomicUsize>);

#[async_trait::async_trait]
impl Reconciler for Counting {
    fn description(&self) -> &Description {
        kubewasm_tests::every_config_map()
    }

    async fn apply(&self, _: &str, _: Arc<dyn HostCalls>) -> Result<Action, ReconcileError> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Ok(Action::AwaitChange)
    }

    async fn cleanup(&self, _: &str, _: Arc<dyn HostCalls>) -> Result<Action, ReconcileError> {
        Ok(Action::AwaitChange)
    }
}

fn runtime_with_grace(config: kube::Config, grace: Duration) -> anyhow::Result<Arc<Runtime>> {
    let options = RuntimeOptions {
        shutdown_grace: grace,
        ..kubewasm_tests::runtime_options()
    };
    Ok(Runtime::new(config, options, Arc::new(Metrics::new()))?)
}

/// A fresh namespace holding one ConfigMap, whose data is `data`.
async fn namespace_with_object(prefix: &str, data: &[(&str, &str)]) -> anyhow::Result<String> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, prefix).await?;
    let object = ConfigMap {
        metadata: ObjectMeta {
            name: Some("subject".into()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect(),
        ),
        ..Default::default()
    };
    Api::<ConfigMap>::namespaced(client, &namespace)
        .create(&PostParams::default(), &object)
        .await?;
    Ok(namespace)
}

async fn until_counted(what: &str, counter: &AtomicUsize, at_least: usize) -> anyhow::Result<()> {
    wait::until(what, WAIT, || {
        let done = counter.load(Ordering::SeqCst) >= at_least;
        async move { Ok(done.then_some(())) }
    })
    .await
}

fn active_workers(runtime: &Runtime, plugin: &str) -> i64 {
    runtime
        .metrics()
        .active_workers
        .get_or_create(&Metrics::controller(plugin))
        .get()
}

/// Starts the misbehave guest as plugin `name` over `namespace`, whose object makes it
/// loop, and waits for its call to start.
async fn start_looping(
    runtime: &Runtime,
    sandbox: &Arc<Sandbox>,
    name: &str,
    namespace: &str,
    options: PluginOptions,
) -> anyhow::Result<Arc<WasmPlugin>> {
    let (plugin, _) = sandbox
        .load(name, test_guest_bytes("misbehave"), options)
        .await?;
    let plugin = Arc::new(plugin);
    runtime
        .start_plugin(
            name,
            plugin.clone(),
            Grant::parse(&config_map_grant(namespace), "test")?,
        )
        .await?;
    wait::until("the looping call to start", WAIT, || {
        let running = active_workers(runtime, name) == 1;
        async move { Ok(running.then_some(())) }
    })
    .await?;
    Ok(plugin)
}

/// Cancelled reconciles are dropped by their runtime soon after the stop returns.
async fn until_no_active_workers(runtime: &Runtime, plugin: &str) -> anyhow::Result<()> {
    wait::until("no reconcile of the plugin left running", WAIT, || {
        let idle = active_workers(runtime, plugin) == 0;
        async move { Ok(idle.then_some(())) }
    })
    .await
}

#[tokio::test]
async fn a_reconcile_that_never_ends_is_cancelled_once_the_grace_is_over() -> anyhow::Result<()> {
    let namespace = namespace_with_object("stuck", &[]).await?;
    let runtime = runtime_with_grace(admin_config().await?, Duration::from_secs(1))?;
    let stuck = Arc::new(Stuck::default());
    let grant = Grant::parse(&config_map_grant(&namespace), "test")?;
    runtime.start_plugin("stuck", stuck.clone(), grant).await?;
    until_counted("the reconcile to start", &stuck.started, 1).await?;

    tokio::time::timeout(WAIT, runtime.stop_plugin("stuck"))
        .await
        .map_err(|_| anyhow::anyhow!("stopping waited for a reconcile that never ends"))??;
    until_counted("the reconcile to be cancelled", &stuck.cancelled, 1).await?;
    until_no_active_workers(&runtime, "stuck").await?;
    Ok(())
}

#[tokio::test]
async fn a_plugin_moving_to_new_watches_holds_up_neither_its_update_nor_other_plugins()
-> anyhow::Result<()> {
    let namespace = namespace_with_object("moving", &[]).await?;
    let other_namespace = namespace_with_object("other", &[]).await?;
    // A grace far longer than the test: the old controller's reconcile stays running.
    let runtime = runtime_with_grace(admin_config().await?, Duration::from_secs(3600))?;
    let stuck = Arc::new(Stuck::default());
    let grant = |namespace: &str, extra: &str| {
        Grant::parse(&format!("{}{extra}", config_map_grant(namespace)), "test")
    };
    runtime
        .start_plugin("moving", stuck.clone(), grant(&namespace, "")?)
        .await?;
    until_counted("the reconcile to start", &stuck.started, 1).await?;

    // A new concurrency means new controllers; the old one drains in the background.
    let update = runtime.update_plugin(
        "moving",
        stuck.clone(),
        grant(&namespace, "limits: {concurrency: 2}\n")?,
    );
    tokio::time::timeout(WAIT, update)
        .await
        .map_err(|_| anyhow::anyhow!("the update waited for the old reconcile"))??;
    let other = Arc::new(Counting::default());
    let start = runtime.start_plugin("other", other.clone(), grant(&other_namespace, "")?);
    tokio::time::timeout(WAIT, start)
        .await
        .map_err(|_| anyhow::anyhow!("starting another plugin waited for the old reconcile"))??;
    until_counted("the other plugin's reconcile", &other.0, 1).await?;
    assert_eq!(
        stuck.cancelled.load(Ordering::SeqCst),
        0,
        "the old reconcile is given its grace, not cancelled at once"
    );
    runtime.stop_plugin("other").await?;
    Ok(())
}

#[tokio::test]
async fn a_looping_guest_is_cancelled_when_its_plugin_stops() -> anyhow::Result<()> {
    let namespace = namespace_with_object("looping", &[("behaviour", "loop")]).await?;
    let runtime = runtime_with_grace(admin_config().await?, Duration::from_secs(1))?;
    let sandbox = Sandbox::new(kubewasm_tests::sandbox_config())?;
    // A minute of guest time at a tenth of a core: ten minutes a call, unless cancelled.
    let options = PluginOptions {
        limits: Limits {
            timeout: Duration::from_secs(60),
            ..Limits::default()
        },
        ..PluginOptions::default()
    };
    let plugin = start_looping(&runtime, &sandbox, "looping", &namespace, options).await?;

    tokio::time::timeout(WAIT, runtime.stop_plugin("looping"))
        .await
        .map_err(|_| anyhow::anyhow!("stopping waited for the looping call"))??;
    until_no_active_workers(&runtime, "looping").await?;
    // The sandbox serves the plugin's next calls as before.
    let object = serde_json::json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "fine", "namespace": namespace},
        "data": {"behaviour": "ok"},
    });
    let host = kubewasm::memory_host::MemoryHost::new("test/fine");
    let action = plugin.apply(&object.to_string(), host).await?;
    assert_eq!(action, Action::AwaitChange);
    Ok(())
}

/// The outcome of every call the sandbox reports.
#[derive(Default)]
struct Outcomes(std::sync::Mutex<Vec<&'static str>>);

impl kubewasm::sandbox::CallObserver for Outcomes {
    fn call_finished(&self, _: Duration, outcome: &'static str, _: Option<&str>, _: Option<u64>) {
        self.0.lock().unwrap().push(outcome);
    }
    fn log_lines_dropped(&self, _: u64) {}
    fn cpu_throttled(&self, _: Duration) {}
}

#[tokio::test]
async fn a_throttled_looping_guest_ends_at_its_deadline_once_its_plugin_stops() -> anyhow::Result<()>
{
    let namespace = namespace_with_object("throttled", &[("behaviour", "loop")]).await?;
    // A grace far longer than the test waits: only the call's own deadline can end it.
    let runtime = runtime_with_grace(admin_config().await?, Duration::from_secs(600))?;
    let sandbox = Sandbox::new(kubewasm_tests::sandbox_config())?;
    // At 10 millicores, once its 200 ms burst is spent the loop runs a 10 ms tick and is
    // paused about a second: 5 s of deadline, which those pauses do not count, would
    // last some 500 s.
    let outcomes = Arc::new(Outcomes::default());
    let options = PluginOptions {
        limits: Limits {
            timeout: Duration::from_secs(5),
            cpu_millicores: 10,
            ..Limits::default()
        },
        observer: Some(outcomes.clone()),
        ..PluginOptions::default()
    };
    start_looping(&runtime, &sandbox, "throttled", &namespace, options).await?;

    tokio::time::timeout(WAIT, runtime.stop_plugin("throttled"))
        .await
        .map_err(|_| anyhow::anyhow!("stopping waited for the throttled call's pauses"))??;
    assert_eq!(
        *outcomes.0.lock().unwrap(),
        ["stopped"],
        "the call ended at its deadline, not cancelled, and as stopped: its guest had not \
         run for its deadline"
    );
    // Being stopped is no failure of the object's: nothing to tell its owner. A failure's
    // Event is recorded before its reconcile ends, so before the stop returns.
    let events: Api<Event> = Api::namespaced(admin_client().await?, &namespace);
    let failures: Vec<String> = events
        .list(&ListParams::default())
        .await?
        .items
        .into_iter()
        .filter(|event| event.reason.as_deref() == Some("ReconcileFailed"))
        .map(|event| event.note.unwrap_or_default())
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    Ok(())
}
