//! The sandbox holds: deadlines, memory caps, traps and garbage results become typed
//! errors, nothing is granted, and a plugin recovers on the next call.

use std::sync::Arc;
use std::time::Duration;

use kubewasm::memory_host::MemoryHost;
use kubewasm::reconciler::{Action, EventType, ObjectRef, ReconcileError, Reconciler};
use kubewasm::sandbox::{
    CacheOutcome, Limits, LoadError, LogRate, PluginOptions, Sandbox, SandboxConfig, WasmPlugin,
};
use kubewasm_tests::components::{contract_component, contract_wit, dummy_component};
use kubewasm_tests::plugins::{example_bytes, test_guest_bytes};
use serde_json::json;

fn sandbox() -> Arc<Sandbox> {
    Sandbox::new(kubewasm_tests::sandbox_config()).expect("a sandbox")
}

async fn load(sandbox: &Arc<Sandbox>, bytes: Vec<u8>, limits: Limits) -> WasmPlugin {
    sandbox
        .load(
            "test",
            bytes,
            PluginOptions {
                limits,
                ..Default::default()
            },
        )
        .await
        .expect("the plugin loads")
        .0
}

async fn misbehave(limits: Limits) -> WasmPlugin {
    load(&sandbox(), test_guest_bytes("misbehave"), limits).await
}

/// The misbehave guest with a CPU budget of `millicores`, its throttling counted.
async fn misbehave_observed(millicores: u32, throttled: Arc<BudgetObserver>) -> WasmPlugin {
    let limits = Limits {
        cpu_millicores: millicores,
        ..Limits::default()
    };
    misbehave_observed_with(limits, throttled).await
}

/// The misbehave guest with `limits`, its throttling counted.
async fn misbehave_observed_with(limits: Limits, throttled: Arc<BudgetObserver>) -> WasmPlugin {
    sandbox()
        .load(
            "test",
            test_guest_bytes("misbehave"),
            PluginOptions {
                limits,
                observer: Some(throttled),
                ..Default::default()
            },
        )
        .await
        .expect("the plugin loads")
        .0
}

fn config_map(data: serde_json::Value) -> String {
    json!({
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "subject", "namespace": "default"},
        "data": data,
    })
    .to_string()
}

async fn apply(plugin: &WasmPlugin, behaviour: &str) -> Result<Action, ReconcileError> {
    let host = MemoryHost::new("default/subject");
    plugin
        .apply(&config_map(json!({ "behaviour": behaviour })), host)
        .await
}

#[tokio::test]
async fn an_endless_loop_is_stopped_at_its_deadline_and_the_next_call_succeeds() {
    let limits = Limits {
        timeout: Duration::from_millis(200),
        ..Limits::default()
    };
    let plugin = misbehave(limits).await;
    let started = std::time::Instant::now();
    let result = apply(&plugin, "loop").await;
    assert_eq!(
        result,
        Err(ReconcileError::Deadline {
            limit: Duration::from_millis(200)
        })
    );
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert_eq!(apply(&plugin, "ok").await, Ok(Action::AwaitChange));
}

#[tokio::test]
async fn a_looping_guest_leaves_the_executor_free() {
    // On a single-threaded runtime, a timer task still runs while the guest loops,
    // because the guest yields on every epoch tick.
    let plugin = misbehave(Limits {
        timeout: Duration::from_millis(300),
        ..Limits::default()
    })
    .await;
    let ticker = tokio::spawn(async {
        let mut ticks = 0;
        let mut interval = tokio::time::interval(Duration::from_millis(20));
        for _ in 0..5 {
            interval.tick().await;
            ticks += 1;
        }
        ticks
    });
    let result = apply(&plugin, "loop").await;
    assert!(matches!(result, Err(ReconcileError::Deadline { .. })));
    assert!(
        ticker.is_finished(),
        "the timer task was starved by the guest"
    );
    assert_eq!(ticker.await.unwrap(), 5);
}

/// Counts the CPU-budget pauses and the demoted calls the sandbox reports, and keeps
/// whether it last said the guest keeps breaking.
#[derive(Default)]
struct BudgetObserver {
    /// Nanoseconds paused.
    paused: std::sync::atomic::AtomicU64,
    /// Calls run demoted.
    demoted: std::sync::atomic::AtomicU64,
    /// As last told after a call.
    breaking: std::sync::atomic::AtomicBool,
}

impl BudgetObserver {
    fn breaking(&self) -> bool {
        self.breaking.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl kubewasm::sandbox::CallObserver for BudgetObserver {
    fn call_finished(&self, _: Duration, _: &'static str, _: Option<&str>, _: Option<u64>) {}
    fn log_lines_dropped(&self, _: u64) {}
    fn cpu_throttled(&self, paused: Duration) {
        let nanos = u64::try_from(paused.as_nanos()).unwrap_or(u64::MAX);
        self.paused
            .fetch_add(nanos, std::sync::atomic::Ordering::Relaxed);
    }
    fn call_demoted(&self) {
        self.demoted
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn breaking(&self, breaking: bool) {
        self.breaking
            .store(breaking, std::sync::atomic::Ordering::Relaxed);
    }
}

#[tokio::test]
async fn calls_too_short_to_be_paused_are_held_to_the_budget_too() {
    // A guest that traps at once on every object never reaches an epoch tick, where
    // running guests are paused; once its budget is spent, its next call waits instead.
    // At 1 millicore a call's debt takes over 0.1 s to pay: longer than its call, even
    // at idle priority (a plugin in debt is demoted) on a machine busy with other tests,
    // so every call finds the debt of the one before.
    let throttled = Arc::new(BudgetObserver::default());
    let plugin = misbehave_observed(1, throttled.clone()).await;
    // The 200 ms burst is spent after at most a few thousand calls (each costs 0.1 ms
    // or more of CPU).
    let throttled_so_far =
        || Duration::from_nanos(throttled.paused.load(std::sync::atomic::Ordering::Relaxed));
    let mut calls = 0;
    while throttled_so_far().is_zero() {
        assert!(calls < 20_000, "the plugin was never throttled");
        let result = apply(&plugin, "panic").await;
        assert!(
            matches!(result, Err(ReconcileError::Trap { .. })),
            "{result:?}"
        );
        calls += 1;
    }
    // From then on every call pays for the one before it, rather than only calls that
    // happen to be running at an epoch tick.
    for _ in 0..3 {
        let before = throttled_so_far();
        let started = std::time::Instant::now();
        let _ = apply(&plugin, "panic").await;
        let paused = throttled_so_far() - before;
        assert!(
            !paused.is_zero(),
            "a call of a plugin in debt was not paused"
        );
        assert!(
            started.elapsed() >= paused,
            "paused {paused:?}, took {:?}",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn a_looping_calls_throttling_is_counted_while_it_runs() {
    let observer = Arc::new(BudgetObserver::default());
    // At 10 millicores, a minute of running takes the call hours: it ends long after
    // its first pause.
    let limits = Limits {
        timeout: Duration::from_secs(60),
        cpu_millicores: 10,
        ..Limits::default()
    };
    let plugin = misbehave_observed_with(limits, observer.clone()).await;
    let counted = || observer.paused.load(std::sync::atomic::Ordering::Relaxed) > 0;
    tokio::select! {
        result = apply(&plugin, "loop") => panic!("the looping call ended first: {result:?}"),
        counted = kubewasm_tests::wait::until("its throttling counted", Duration::from_secs(30), || async {
            Ok(counted().then_some(()))
        }) => counted.expect("counted while the call runs"),
    }
}

#[tokio::test]
async fn host_time_spent_on_a_plugin_counts_against_its_budget() {
    let throttled = Arc::new(BudgetObserver::default());
    let plugin = misbehave_observed(1000, throttled.clone()).await;
    assert_eq!(apply(&plugin, "ok").await, Ok(Action::AwaitChange));
    assert_eq!(
        throttled.paused.load(std::sync::atomic::Ordering::Relaxed),
        0
    );
    // Past its 200 ms burst by 300 ms: its next call waits about that long, at one core.
    plugin.charge_host_time(Duration::from_millis(500));
    let started = std::time::Instant::now();
    assert_eq!(apply(&plugin, "ok").await, Ok(Action::AwaitChange));
    let paused = Duration::from_nanos(throttled.paused.load(std::sync::atomic::Ordering::Relaxed));
    assert!(paused >= Duration::from_millis(200), "paused {paused:?}");
    assert!(started.elapsed() >= paused, "took {:?}", started.elapsed());
}

#[tokio::test]
async fn a_plugin_past_its_budget_runs_demoted_and_still_gets_its_answers() {
    let observer = Arc::new(BudgetObserver::default());
    let demoted = || observer.demoted.load(std::sync::atomic::Ordering::Relaxed);
    let plugin = misbehave_observed(1000, observer.clone()).await;
    assert_eq!(apply(&plugin, "ok").await, Ok(Action::AwaitChange));
    assert_eq!(
        demoted(),
        0,
        "a plugin within its burst runs at normal priority"
    );
    plugin.charge_host_time(Duration::from_millis(300));
    for _ in 0..3 {
        assert_eq!(apply(&plugin, "ok").await, Ok(Action::AwaitChange));
    }
    assert_eq!(demoted(), 3, "every call after the debt runs demoted");
}

#[tokio::test]
async fn a_call_that_runs_into_debt_finishes_demoted() {
    // The call starts in good standing, with under 1 ms of its burst left (loading it
    // ran `describe`) and a budget of 1 millicore, so that it runs into debt within its
    // deadline even when other tests keep both cores busy: its guest thread, at nice
    // 10, may then get only a few milliseconds of the 100, less than a budget of 100
    // millicores would earn back meanwhile. Paused there, it moves to the demoted
    // threads for the rest instead of spending its budget at normal priority.
    let observer = Arc::new(BudgetObserver::default());
    let demoted = || observer.demoted.load(std::sync::atomic::Ordering::Relaxed);
    let limits = Limits {
        cpu_millicores: 1,
        timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let plugin = misbehave_observed_with(limits, observer.clone()).await;
    plugin.charge_host_time(Duration::from_millis(199));
    assert!(matches!(
        apply(&plugin, "loop").await,
        Err(ReconcileError::Deadline { .. })
    ));
    assert!(
        observer.paused.load(std::sync::atomic::Ordering::Relaxed) > 0,
        "the call ran into debt"
    );
    assert_eq!(demoted(), 1, "the call moved to the demoted threads");
}

#[tokio::test]
async fn a_guest_that_keeps_breaking_is_held_to_a_share_of_its_budget_until_a_call_comes_through() {
    kubewasm_tests::init_tracing();
    let limits = Limits {
        timeout: Duration::from_millis(100),
        ..Limits::default()
    };
    let observer = Arc::new(BudgetObserver::default());
    let plugin = sandbox()
        .load(
            "keeps-breaking",
            test_guest_bytes("misbehave"),
            PluginOptions {
                limits,
                observer: Some(observer.clone()),
                ..Default::default()
            },
        )
        .await
        .expect("the plugin loads")
        .0;
    let logged = |needles: &[&str]| {
        let mut needles = needles.to_vec();
        needles.push("plugin=keeps-breaking");
        kubewasm_tests::logs::matching(&needles).len()
    };
    let began = || logged(&["WARN", "calls in a row", "held to 25% of its CPU budget"]);
    let ended = || logged(&["INFO", "the full CPU budget is back"]);
    // Each way a guest breaks counts: a trap, the memory cap, its own code interrupted at
    // the deadline, a stack overflow.
    for behaviour in ["panic", "allocate", "loop"] {
        assert!(apply(&plugin, behaviour).await.is_err(), "{behaviour}");
        assert_eq!(began(), 0, "after {behaviour}");
        assert!(!observer.breaking(), "after {behaviour}");
    }
    assert!(apply(&plugin, "recurse").await.is_err());
    assert_eq!(began(), 1, "four broken calls in a row");
    assert!(observer.breaking(), "four broken calls in a row");
    assert!(apply(&plugin, "panic").await.is_err());
    assert_eq!(began(), 1, "told once a run");
    assert_eq!(ended(), 0);
    assert!(observer.breaking());
    // A guest that reports an error came through: it is working.
    assert!(matches!(
        apply(&plugin, "fail").await,
        Err(ReconcileError::Reported { .. })
    ));
    assert_eq!(ended(), 1, "the run ended");
    assert!(!observer.breaking(), "the run ended");
}

#[tokio::test]
async fn a_guest_flooding_its_log_on_every_call_keeps_breaking_though_its_calls_return() {
    // Time and budget enough that the floods, slow in a debug build, return unpaused.
    let limits = Limits {
        timeout: Duration::from_secs(60),
        cpu_millicores: 4000,
        ..Limits::default()
    };
    let observer = Arc::new(BudgetObserver::default());
    let plugin = sandbox()
        .load(
            "floods",
            test_guest_bytes("misbehave"),
            PluginOptions {
                limits,
                // A burst of exactly 256 of the flood's 1023-byte lines, refilled too
                // slowly to let anything more through.
                log_rate: LogRate {
                    bytes_per_second: 1,
                    burst_bytes: 256 * 1023,
                },
                observer: Some(observer.clone()),
            },
        )
        .await
        .expect("the plugin loads")
        .0;
    // 10 MB of stdout a call, against a log burst of about 256 KiB.
    for call in 1..=4 {
        assert_eq!(apply(&plugin, "log-flood").await, Ok(Action::AwaitChange));
        assert_eq!(observer.breaking(), call == 4, "after {call} floods");
    }
    // A call that writes a line or two is no flood, though the rate limit, spent by
    // the floods, drops its lines too.
    let dropped = plugin.log().dropped_lines();
    assert_eq!(apply(&plugin, "log").await, Ok(Action::AwaitChange));
    assert!(
        plugin.log().dropped_lines() > dropped,
        "the rate limit is spent"
    );
    assert!(!observer.breaking(), "a call came through");
}

#[tokio::test]
async fn allocating_past_the_cap_traps_with_a_memory_error() {
    let plugin = misbehave(Limits {
        memory_bytes: 16 << 20,
        ..Limits::default()
    })
    .await;
    assert_eq!(
        apply(&plugin, "allocate").await,
        Err(ReconcileError::MemoryLimit {
            limit_bytes: 16 << 20
        })
    );
    assert_eq!(apply(&plugin, "ok").await, Ok(Action::AwaitChange));
}

#[tokio::test]
async fn a_panic_is_a_trap_carrying_the_panic_message() {
    kubewasm_tests::init_tracing();
    let plugin = misbehave(Limits::default()).await;
    match apply(&plugin, "panic").await {
        Err(ReconcileError::Trap { code, message }) => {
            assert_eq!(code, "unreachable_code_reached");
            assert!(message.contains("deliberate panic"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
    // Where it trapped goes to the debug log, for the plugin's author.
    let backtraces =
        kubewasm_tests::logs::matching(&["guest trapped", "wasm backtrace", "plugin=test"]);
    assert!(!backtraces.is_empty(), "no backtrace logged");
}

#[tokio::test]
async fn every_call_starts_from_a_fresh_instance() {
    let plugin = misbehave(Limits::default()).await;
    // Between calls that remember, ones that leave their instance dirty: a trap, a
    // memory bomb, a stack overflow.
    for between in ["ok", "panic", "allocate", "recurse", "ok"] {
        for _ in 0..3 {
            match apply(&plugin, "remember").await {
                Err(ReconcileError::Reported { message, .. }) => {
                    assert_eq!(message, "calls 1, heap 1", "after {between}")
                }
                other => panic!("expected the guest's report, got {other:?}"),
            }
        }
        let _ = apply(&plugin, between).await;
    }
}

#[tokio::test]
async fn deep_recursion_is_a_trap() {
    let plugin = misbehave(Limits::default()).await;
    match apply(&plugin, "recurse").await {
        Err(ReconcileError::Trap { code, message }) => {
            assert_eq!(code, "stack_overflow");
            assert!(message.contains("call stack exhausted"), "{message}")
        }
        other => panic!("expected a trap, got {other:?}"),
    }
}

#[tokio::test]
async fn files_sockets_environment_and_arguments_are_not_granted() {
    let plugin = misbehave(Limits::default()).await;
    let reported = |result: Result<Action, ReconcileError>| match result {
        Err(ReconcileError::Reported { message, .. }) => message,
        other => panic!("expected the guest to report an error, got {other:?}"),
    };
    let file = reported(apply(&plugin, "open-file").await);
    assert!(file.starts_with("open-file failed"), "{file}");

    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let host = MemoryHost::new("default/subject");
    let socket = reported(
        plugin
            .apply(
                &config_map(json!({"behaviour": "socket", "address": address})),
                host,
            )
            .await,
    );
    assert!(socket.starts_with("socket failed"), "{socket}");
    listener.set_nonblocking(true).unwrap();
    assert!(
        listener.accept().is_err(),
        "the guest reached a host socket"
    );

    let environment = reported(apply(&plugin, "environment").await);
    assert_eq!(environment, "environment: 0 vars, 0 args");
}

#[tokio::test]
async fn results_that_are_not_valid_actions_are_rejected() {
    let plugin = misbehave(Limits::default()).await;
    assert!(matches!(
        apply(&plugin, "requeue-zero").await,
        Err(ReconcileError::InvalidResult(_))
    ));
    assert_eq!(
        apply(&plugin, "requeue").await,
        Ok(Action::RequeueAfter(Duration::from_millis(1500)))
    );
    assert_eq!(
        apply(&plugin, "fail").await,
        Err(ReconcileError::Reported {
            message: "failing as asked".into(),
            retry_after: Some(Duration::from_secs(2)),
        })
    );
}

/// A component whose `describe` is valid and whose `apply` and `cleanup` return
/// discriminants no variant has.
const GARBAGE_RESULTS: &str = r#"
(module
  (memory (export "memory") 1)
  (data (i32.const 2000) "v1")
  (data (i32.const 2016) "ConfigMap")
  (func (export "kubewasm:controller/plugin@0.1.0#describe") (result i32)
    (i32.store (i32.const 1024) (i32.const 2000))
    (i32.store (i32.const 1028) (i32.const 2))
    (i32.store (i32.const 1032) (i32.const 2016))
    (i32.store (i32.const 1036) (i32.const 9))
    (i32.const 1024))
  (func (export "kubewasm:controller/plugin@0.1.0#apply") (param i32 i32) (result i32)
    (i32.store8 (i32.const 3000) (i32.const 7))
    (i32.const 3000))
  (func (export "kubewasm:controller/plugin@0.1.0#cleanup") (param i32 i32) (result i32)
    (i32.store8 (i32.const 3000) (i32.const 0))
    (i32.store8 (i32.const 3008) (i32.const 9))
    (i32.const 3000))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 8192))
)
"#;

#[tokio::test]
async fn results_the_canonical_abi_cannot_lift_are_rejected() {
    let component = contract_component(GARBAGE_RESULTS).unwrap();
    let plugin = load(&sandbox(), component, Limits::default()).await;
    assert_eq!(plugin.description().watch.kind, "ConfigMap");
    let object = config_map(json!({}));
    for result in [
        plugin.apply(&object, MemoryHost::new("x")).await,
        plugin.cleanup(&object, MemoryHost::new("x")).await,
    ] {
        match result {
            Err(ReconcileError::InvalidResult(message)) => {
                assert!(message.contains("discriminant"), "{message}")
            }
            other => panic!("expected an invalid result, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn host_imports_reach_the_host_calls() {
    let plugin = misbehave(Limits::default()).await;
    let host = MemoryHost::new("default/subject");
    host.insert(json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "other", "namespace": "default"},
    }));
    let found = plugin
        .apply(
            &config_map(json!({"behaviour": "get", "namespace": "default", "name": "other"})),
            host.clone(),
        )
        .await;
    assert!(
        matches!(found, Err(ReconcileError::Reported { message, .. }) if message == "get found other")
    );
    let missing = plugin
        .apply(
            &config_map(json!({"behaviour": "get", "namespace": "default", "name": "gone"})),
            host.clone(),
        )
        .await;
    assert!(
        matches!(missing, Err(ReconcileError::Reported { message, .. }) if message.starts_with("get failed:") && message.contains("NotFound"))
    );

    plugin
        .apply(&config_map(json!({"behaviour": "event"})), host.clone())
        .await
        .unwrap();
    let events = host.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event_type, EventType::Warning);
    assert_eq!(events[0].reason, "Misbehaving");
}

#[tokio::test]
async fn the_mirror_plugin_mirrors_and_cleans_up() {
    let plugin = load(
        &sandbox(),
        example_bytes("configmap-mirror"),
        Limits::default(),
    )
    .await;
    let description = plugin.description();
    assert_eq!(
        description.finalizer.as_deref(),
        Some("kubewasm.dev/mirror")
    );
    assert_eq!(
        description.watch.label_selector.as_deref(),
        Some("kubewasm.dev/mirror=true")
    );

    let host = MemoryHost::new("team/settings");
    let source = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings", "namespace": "team",
                     "labels": {"kubewasm.dev/mirror": "true"}},
        "data": {"colour": "blue"},
    })
    .to_string();
    assert_eq!(
        plugin.apply(&source, host.clone()).await,
        Ok(Action::Default)
    );
    let mirror_ref = ObjectRef {
        api_version: "v1".into(),
        kind: "ConfigMap".into(),
        namespace: Some("team".into()),
        name: "settings-mirror".into(),
    };
    let mirror = host.object(&mirror_ref).expect("the mirror was applied");
    assert_eq!(mirror["data"], json!({"colour": "blue"}));
    assert_eq!(
        mirror["metadata"]["labels"]["kubewasm.dev/mirror-of"],
        "settings"
    );

    assert_eq!(
        plugin.cleanup(&source, host.clone()).await,
        Ok(Action::Default)
    );
    assert!(host.object(&mirror_ref).is_none());
    // Cleanup is idempotent: the mirror being gone already is fine.
    assert_eq!(
        plugin.cleanup(&source, host.clone()).await,
        Ok(Action::Default)
    );
}

#[tokio::test]
async fn components_that_do_not_fit_the_contract_are_refused_with_their_reason() {
    let sandbox = sandbox();
    let refuse = |bytes: Vec<u8>| {
        let sandbox = sandbox.clone();
        async move {
            sandbox
                .load("bad", bytes, PluginOptions::default())
                .await
                .expect_err("the component must be refused")
        }
    };

    let other_world = dummy_component(
        &[(
            "other.wit".into(),
            "package test:other; world other { export run: func(); }".into(),
        )],
        "other",
    )
    .unwrap();
    let err = refuse(other_world).await;
    assert!(
        matches!(&err, LoadError::WrongWorld { exports } if exports == &["run".to_string()]),
        "{err}"
    );

    let without_cleanup: Vec<(String, String)> = contract_wit()
        .into_iter()
        .map(|(name, text)| {
            let text = text.replace(
                "cleanup: func(object: string) -> result<action, reconcile-error>;",
                "",
            );
            (name, text)
        })
        .collect();
    let err = refuse(dummy_component(&without_cleanup, "reconciler").unwrap()).await;
    assert!(
        matches!(&err, LoadError::MissingExports { missing, .. } if missing == &["cleanup".to_string()]),
        "{err}"
    );

    let next_major: Vec<(String, String)> = contract_wit()
        .into_iter()
        .map(|(name, text)| (name, text.replace("@0.1.0", "@2.0.0")))
        .collect();
    let err = refuse(dummy_component(&next_major, "reconciler").unwrap()).await;
    let message = err.to_string();
    assert!(
        matches!(err, LoadError::UnsupportedVersion { .. }),
        "{message}"
    );
    assert!(message.contains("kubewasm:controller@2.0.0"), "{message}");
    assert!(message.contains("kubewasm:controller@0.1.0"), "{message}");
}

#[tokio::test]
async fn compiled_components_are_cached_on_disk_and_tampering_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let config = SandboxConfig {
        cache_dir: Some(dir.path().join("compiled")),
        ..SandboxConfig::default()
    };
    let bytes = test_guest_bytes("misbehave");
    let first = Sandbox::new(config.clone()).unwrap();
    let (_, outcome) = first
        .load("a", bytes.clone(), PluginOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Compiled);

    // A new sandbox (as after a restart) finds the artifact on disk.
    let second = Sandbox::new(config.clone()).unwrap();
    let (plugin, outcome) = second
        .load("a", bytes.clone(), PluginOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Hit);
    assert_eq!(apply(&plugin, "ok").await, Ok(Action::AwaitChange));

    // An altered artifact is not deserialized: it is recompiled.
    for entry in std::fs::read_dir(dir.path().join("compiled")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|ext| ext == "cwasm") {
            let mut artifact = std::fs::read(&path).unwrap();
            let middle = artifact.len() / 2;
            artifact[middle] ^= 0xff;
            std::fs::write(&path, artifact).unwrap();
        }
    }
    let third = Sandbox::new(config).unwrap();
    let (_, outcome) = third
        .load("a", bytes, PluginOptions::default())
        .await
        .unwrap();
    assert_eq!(outcome, CacheOutcome::Compiled);
}
