//! The runtime on a real API server: backoff and recovery, shared watches, grants.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::events::v1::Event;
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use kubewasm::grant::Grant;
use kubewasm::ops::metrics::Metrics;
use kubewasm::reconciler::{
    Action as ReconcileAction, Description, HostCalls, ReconcileError, Reconciler,
};
use kubewasm::runtime::{Runtime, RuntimeOptions};
use kubewasm_tests::host::{PluginFiles, TestHost, config_map_grant};
use kubewasm_tests::plugins::test_guest_bytes;
use kubewasm_tests::{admin_client, config_map, test_namespace, wait};

const WAIT: Duration = Duration::from_secs(60);

fn misbehave(name: &str, namespace: &str) -> PluginFiles {
    PluginFiles::new(
        name,
        test_guest_bytes("misbehave"),
        config_map_grant(namespace),
    )
}

#[tokio::test]
async fn a_plugin_that_fails_twice_backs_off_then_recovers() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "backoff").await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let host = TestHost::start(&[misbehave("flaky", &namespace)]).await?;

    let started = Instant::now();
    api.create(
        &PostParams::default(),
        &config_map("subject", &[("behaviour", "fail-times"), ("times", "2")]),
    )
    .await?;
    wait::until("the third attempt to succeed", WAIT, || async {
        let count = api
            .get_opt("subject-attempts")
            .await?
            .and_then(|cm| cm.data?.get("count").cloned());
        let succeeded = host.metric(
            "controller_runtime_reconcile_total",
            "controller=\"flaky\",result=\"success\"",
        );
        Ok((count.as_deref() == Some("3") && succeeded >= 1.0).then_some(()))
    })
    .await?;
    // Two failures: the first retry waits at least 1 s, the second at least 2 s.
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "retried after {:?}",
        started.elapsed()
    );
    assert_eq!(
        host.metric(
            "controller_runtime_reconcile_errors_total",
            "controller=\"flaky\""
        ),
        2.0
    );
    assert_eq!(
        host.metric(
            "kubewasm_plugin_calls_total",
            "plugin=\"flaky\",outcome=\"reported\""
        ),
        2.0
    );

    let events: Api<Event> = Api::namespaced(client, &namespace);
    let failures = wait::until("the failures as Events on the object", WAIT, || async {
        let failures: Vec<Event> = events
            .list(&ListParams::default())
            .await?
            .items
            .into_iter()
            .filter(|event| {
                event.reason.as_deref() == Some("ReconcileFailed")
                    && event.regarding.as_ref().and_then(|r| r.name.as_deref()) == Some("subject")
            })
            .collect();
        Ok((!failures.is_empty()).then_some(failures))
    })
    .await?;
    let note = failures[0].note.clone().unwrap_or_default();
    assert!(note.contains("failing attempt"), "{note}");
    assert_eq!(failures[0].type_.as_deref(), Some("Warning"));
    Ok(())
}

#[tokio::test]
async fn two_plugins_watching_config_maps_in_one_scope_share_one_watch() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "shared").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let host = TestHost::start(&[
        misbehave("first", &namespace),
        misbehave("second", &namespace),
    ])
    .await?;
    assert_eq!(host.metric("kubewasm_watches", ""), 1.0);
    assert_eq!(host.metric("kubewasm_plugins", ""), 2.0);

    api.create(
        &PostParams::default(),
        &config_map("both", &[("behaviour", "ok")]),
    )
    .await?;
    wait::until("both plugins to reconcile the object", WAIT, || async {
        let first = host.metric(
            "controller_runtime_reconcile_total",
            "controller=\"first\",result=\"success\"",
        );
        let second = host.metric(
            "controller_runtime_reconcile_total",
            "controller=\"second\",result=\"success\"",
        );
        Ok((first >= 1.0 && second >= 1.0).then_some(()))
    })
    .await?;

    let runtime = host.manager().runtime();
    runtime.stop_plugin("second").await?;
    assert_eq!(
        host.metric("kubewasm_watches", ""),
        1.0,
        "the first plugin still holds the watch"
    );
    runtime.stop_plugin("first").await?;
    assert_eq!(host.metric("kubewasm_watches", ""), 0.0);
    Ok(())
}

#[tokio::test]
async fn plugins_without_a_valid_grant_are_not_started() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "grants").await?;
    let ungranted = PluginFiles {
        name: "ungranted".into(),
        wasm: test_guest_bytes("misbehave"),
        grant: None,
    };
    let invalid = PluginFiles::new(
        "invalid",
        test_guest_bytes("misbehave"),
        "apiVersion: kubewasm.dev/v1\nnamespaces: [a]\nlimits: {memoryMiB: 0}\n",
    );
    let host = TestHost::start(&[ungranted, invalid, misbehave("granted", &namespace)]).await?;
    assert_eq!(
        host.manager().runtime().plugin_names().await,
        vec!["granted".to_string()]
    );

    let plugins = host.manager().plugins();
    let missing = plugins.load("ungranted").await.unwrap_err().to_string();
    assert!(
        missing.contains("no grant file") && missing.contains("ungranted.yaml"),
        "{missing}"
    );
    let invalid = plugins.load("invalid").await.unwrap_err().to_string();
    assert!(
        invalid.contains("invalid.yaml:3:") && invalid.contains("memoryMiB"),
        "{invalid}"
    );
    Ok(())
}

#[tokio::test]
async fn the_host_is_ready_once_its_watches_have_synced() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "ready").await?;
    let host = TestHost::start(&[misbehave("ready", &namespace)]).await?;
    let runtime = host.manager().runtime().clone();
    wait::until("readiness", WAIT, || {
        let runtime = runtime.clone();
        async move { Ok(runtime.ready().then_some(())) }
    })
    .await?;
    Ok(())
}

#[tokio::test]
async fn a_plugin_with_a_selector_shares_the_watch_of_every_object_in_its_scope()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "selector").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let host = TestHost::start(&[misbehave("every-object", &namespace)]).await?;
    // One object before the plugin with the selector starts, one after; and one
    // without the label, which it must never see.
    let labelled = |name: &str| {
        let mut object = config_map(name, &[("behaviour", "ok")]);
        object.metadata.labels = Some(BTreeMap::from([(
            "kubewasm.dev/mirror".to_string(),
            "true".to_string(),
        )]));
        object
    };
    api.create(&PostParams::default(), &labelled("before"))
        .await?;
    api.create(
        &PostParams::default(),
        &config_map("unlabelled", &[("behaviour", "ok")]),
    )
    .await?;
    kubewasm_tests::host::write_plugin(
        host.dir(),
        &PluginFiles::new(
            "mirror",
            kubewasm_tests::plugins::example_bytes("configmap-mirror"),
            config_map_grant(&namespace),
        ),
    )?;
    wait::until("the mirror plugin to start", WAIT, || async {
        Ok((host.metric("kubewasm_plugins", "") == 2.0).then_some(()))
    })
    .await?;
    assert_eq!(
        host.metric("kubewasm_watches", ""),
        1.0,
        "one watch for both"
    );
    api.create(&PostParams::default(), &labelled("after"))
        .await?;

    for source in ["before", "after"] {
        wait::until(&format!("{source} mirrored"), WAIT, || async {
            Ok(api.get_opt(&format!("{source}-mirror")).await?.map(|_| ()))
        })
        .await?;
    }
    let unlabelled = api.get("unlabelled").await?;
    assert!(
        unlabelled
            .metadata
            .finalizers
            .unwrap_or_default()
            .is_empty(),
        "the mirror plugin took an object outside its selector"
    );
    assert!(api.get_opt("unlabelled-mirror").await?.is_none());
    host.assert_no_reconcile_errors("mirror");
    Ok(())
}

/// Records its reconciles, the threads they ran on and the host time charged to it; its
/// controller may ask for a runtime of its own.
#[derive(Default)]
struct Recorder {
    reconciles: AtomicUsize,
    /// The names of the objects reconciled, in order.
    names: std::sync::Mutex<Vec<String>>,
    charges: AtomicUsize,
    charged_nanos: AtomicU64,
    threads: std::sync::Mutex<Vec<Option<String>>>,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Recorder {
    /// The name of the threads of [`Recorder::with_own_runtime`].
    const OWN_THREAD: &str = "plugin-runtime";

    fn with_own_runtime() -> std::io::Result<Self> {
        let mut recorder = Self::default();
        recorder.runtime = Some(
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(1)
                .thread_name(Self::OWN_THREAD)
                .enable_all()
                .build()?,
        );
        Ok(recorder)
    }

    fn reconciles_of(&self, name: &str) -> usize {
        self.names
            .lock()
            .unwrap()
            .iter()
            .filter(|n| *n == name)
            .count()
    }

    fn threads(&self) -> Vec<Option<String>> {
        self.threads.lock().unwrap().clone()
    }

    /// Runs as plugin `name` until it has reconciled, and been charged for, `objects`
    /// new ConfigMaps.
    async fn run(self: &Arc<Self>, name: &str, objects: &[&str]) -> anyhow::Result<()> {
        let client = admin_client().await?;
        let namespace = test_namespace(&client, name).await?;
        let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
        let runtime = Runtime::new(
            kubewasm_tests::admin_config().await?,
            kubewasm_tests::runtime_options(),
            Arc::new(Metrics::new()),
        )?;
        runtime
            .start_plugin(
                name,
                self.clone(),
                Grant::parse(&config_map_grant(&namespace), "test")?,
            )
            .await?;
        for object in objects {
            api.create(&PostParams::default(), &config_map(object, &[]))
                .await?;
        }
        wait::until("every object reconciled and charged", WAIT, || {
            let done = self.reconciles.load(Ordering::SeqCst) >= objects.len()
                && self.charges.load(Ordering::SeqCst) >= objects.len();
            async move { Ok(done.then_some(())) }
        })
        .await?;
        runtime.stop_plugin(name).await?;
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which the test's own runtime does not allow.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for Recorder {
    fn description(&self) -> &Description {
        kubewasm_tests::every_config_map()
    }

    async fn apply(
        &self,
        object: &str,
        _: Arc<dyn HostCalls>,
    ) -> Result<ReconcileAction, ReconcileError> {
        let object: serde_json::Value = serde_json::from_str(object).expect("an object");
        let name = object["metadata"]["name"].as_str().unwrap_or_default();
        self.names.lock().unwrap().push(name.to_string());
        let thread = std::thread::current().name().map(str::to_string);
        self.threads.lock().unwrap().push(thread);
        self.reconciles.fetch_add(1, Ordering::SeqCst);
        Ok(ReconcileAction::AwaitChange)
    }

    async fn cleanup(
        &self,
        _: &str,
        _: Arc<dyn HostCalls>,
    ) -> Result<ReconcileAction, ReconcileError> {
        Ok(ReconcileAction::AwaitChange)
    }

    fn charge_host_time(&self, spent: Duration) {
        self.charged_nanos
            .fetch_add(spent.as_nanos() as u64, Ordering::SeqCst);
        self.charges.fetch_add(1, Ordering::SeqCst);
    }

    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.runtime
            .as_ref()
            .map(|runtime| runtime.handle().clone())
    }
}

#[tokio::test]
async fn a_controller_runs_on_the_runtime_its_reconciler_names() -> anyhow::Result<()> {
    let recorder = Arc::new(Recorder::with_own_runtime()?);
    recorder.run("own-runtime", &["one", "two"]).await?;
    let threads = recorder.threads();
    assert!(
        threads
            .iter()
            .all(|thread| thread.as_deref() == Some(Recorder::OWN_THREAD)),
        "reconciled on {threads:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_host_time_of_its_reconciles_and_its_controller_is_charged_to_a_plugin()
-> anyhow::Result<()> {
    let recorder = Arc::new(Recorder::default());
    recorder.run("charged", &["one", "two", "three"]).await?;
    // One charge when each reconcile ends, and one for each time the controller's own
    // task ran (scheduling, backoff, recording outcomes).
    assert!(
        recorder.charges.load(Ordering::SeqCst) > recorder.reconciles.load(Ordering::SeqCst),
        "{} charges for {} reconciles: the controller's own work went uncharged",
        recorder.charges.load(Ordering::SeqCst),
        recorder.reconciles.load(Ordering::SeqCst)
    );
    let charged = Duration::from_nanos(recorder.charged_nanos.load(Ordering::SeqCst));
    assert!(
        charged > Duration::ZERO && charged < Duration::from_secs(1),
        "{charged:?}"
    );
    Ok(())
}

#[tokio::test]
async fn a_plugin_is_woken_by_what_it_can_act_on_not_by_others_bookkeeping() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "wakes").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let runtime = Runtime::new(
        kubewasm_tests::admin_config().await?,
        kubewasm_tests::runtime_options(),
        Arc::new(Metrics::new()),
    )?;
    let recorder = Arc::new(Recorder::default());
    let grant = Grant::parse(&config_map_grant(&namespace), "test")?;
    runtime
        .start_plugin("wakes", recorder.clone(), grant)
        .await?;
    api.create(&PostParams::default(), &config_map("watched", &[]))
        .await?;
    let reconciled = |times: usize| {
        let recorder = recorder.clone();
        async move {
            wait::until(&format!("watched reconciled {times} times"), WAIT, || {
                let done = recorder.reconciles_of("watched") == times;
                async move { Ok(done.then_some(())) }
            })
            .await
        }
    };
    reconciled(1).await?;

    // The watch delivers changes in order: once a marker object created after a change
    // has been reconciled, the change has been through the plugin's controller.
    let mut markers = 0;
    let mut change_then_mark = async |patch: serde_json::Value| -> anyhow::Result<usize> {
        api.patch("watched", &PatchParams::default(), &Patch::Merge(patch))
            .await?;
        markers += 1;
        let marker = format!("marker-{markers}");
        api.create(&PostParams::default(), &config_map(&marker, &[]))
            .await?;
        wait::until(&format!("{marker} reconciled"), WAIT, || {
            let done = recorder.reconciles_of(&marker) == 1;
            async move { Ok(done.then_some(())) }
        })
        .await?;
        Ok(recorder.reconciles_of("watched"))
    };
    let others_finalizer = serde_json::json!({"metadata": {"finalizers": ["example.com/other"]}});
    assert_eq!(
        change_then_mark(others_finalizer).await?,
        1,
        "woken by another's finalizer"
    );
    let removed = serde_json::json!({"metadata": {"finalizers": null}});
    assert_eq!(
        change_then_mark(removed).await?,
        1,
        "woken by another's finalizer going"
    );
    let labelled = serde_json::json!({"metadata": {"labels": {"tier": "web"}}});
    change_then_mark(labelled).await?;
    reconciled(2).await?;
    let edited = serde_json::json!({"data": {"key": "value"}});
    change_then_mark(edited).await?;
    reconciled(3).await?;
    runtime.stop_plugin("wakes").await?;
    Ok(())
}

#[tokio::test]
async fn a_plugin_whose_watch_cannot_list_stops_at_once() -> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "cannot-list").await?;
    let mut config = kubewasm_tests::admin_config().await?;
    // An identity the API server lets discover kinds but not list them: the plugin's
    // watch fails and retries, and never syncs.
    config.auth_info.impersonate = Some(format!("system:serviceaccount:{namespace}:nobody"));
    let options = RuntimeOptions {
        shutdown_grace: Duration::from_secs(3600),
        ..kubewasm_tests::runtime_options()
    };
    let runtime = Runtime::new(config, options, Arc::new(Metrics::new()))?;
    let recorder = Arc::new(Recorder::default());
    for name in ["cannot-list", "cannot-list-either"] {
        let grant = Grant::parse(&config_map_grant(&namespace), "test")?;
        runtime.start_plugin(name, recorder.clone(), grant).await?;
    }
    Api::<ConfigMap>::namespaced(client, &namespace)
        .create(&PostParams::default(), &config_map("present", &[]))
        .await?;
    // Stopping one plugin, then the runtime with the other.
    tokio::time::timeout(WAIT, runtime.stop_plugin("cannot-list"))
        .await
        .map_err(|_| anyhow::anyhow!("stopping waited for a watch that cannot sync"))??;
    tokio::time::timeout(WAIT, runtime.shutdown())
        .await
        .map_err(|_| anyhow::anyhow!("shutting down waited for a watch that cannot sync"))?;
    assert_eq!(recorder.reconciles.load(Ordering::SeqCst), 0);
    Ok(())
}

/// Holds every reconcile until let through.
struct Gate {
    entered: AtomicUsize,
    through: tokio::sync::Semaphore,
}

impl Default for Gate {
    fn default() -> Self {
        Self {
            entered: AtomicUsize::new(0),
            through: tokio::sync::Semaphore::new(0),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for Gate {
    fn description(&self) -> &Description {
        kubewasm_tests::every_config_map()
    }

    async fn apply(
        &self,
        _: &str,
        _: Arc<dyn HostCalls>,
    ) -> Result<ReconcileAction, ReconcileError> {
        self.entered.fetch_add(1, Ordering::SeqCst);
        self.through
            .acquire()
            .await
            .expect("the gate is never closed")
            .forget();
        Ok(ReconcileAction::AwaitChange)
    }

    async fn cleanup(
        &self,
        _: &str,
        _: Arc<dyn HostCalls>,
    ) -> Result<ReconcileAction, ReconcileError> {
        Ok(ReconcileAction::AwaitChange)
    }
}

#[tokio::test]
async fn objects_waiting_behind_a_plugins_concurrency_show_in_its_workqueue_depth()
-> anyhow::Result<()> {
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "depth").await?;
    let api: Api<ConfigMap> = Api::namespaced(client, &namespace);
    let metrics = Arc::new(Metrics::new());
    let runtime = Runtime::new(
        kubewasm_tests::admin_config().await?,
        // The held reconcile is cancelled soon after the stop.
        RuntimeOptions {
            shutdown_grace: Duration::from_millis(200),
            ..kubewasm_tests::runtime_options()
        },
        metrics.clone(),
    )?;
    let depth = || {
        metrics
            .workqueue_depth
            .get_or_create(&kubewasm::ops::metrics::QueueLabels {
                name: "gated".into(),
            })
            .get()
    };
    let gate = Arc::new(Gate::default());
    let grant = format!(
        "{}limits: {{concurrency: 1}}\n",
        config_map_grant(&namespace)
    );
    runtime
        .start_plugin("gated", gate.clone(), Grant::parse(&grant, "test")?)
        .await?;
    for name in ["one", "two", "three", "four"] {
        api.create(&PostParams::default(), &config_map(name, &[]))
            .await?;
    }
    // One reconcile held in the plugin, three objects queued behind it in
    // kube-runtime's scheduler.
    wait::until("three objects waiting", WAIT, || async {
        Ok((gate.entered.load(Ordering::SeqCst) == 1 && depth() == 3).then_some(()))
    })
    .await?;
    // Two let through: the third is held, the fourth still waits.
    gate.through.add_permits(2);
    wait::until("one object waiting", WAIT, || async {
        Ok((gate.entered.load(Ordering::SeqCst) == 3 && depth() == 1).then_some(()))
    })
    .await?;
    runtime.stop_plugin("gated").await?;
    assert_eq!(depth(), 0, "a stopped plugin has nothing waiting");
    Ok(())
}
