//! What one wake of a plugin costs the host: plugins that return at once are started
//! beside 1,000 ConfigMaps already cached by a running watch, so every reconcile is the
//! host's work alone (kube-runtime's scheduling, the object's serialization, the hop to
//! a guest thread, a fresh instance and the call), with no API request in it. Prints the
//! host's CPU time per reconcile, for a WebAssembly plugin and for a native reconciler
//! that does nothing (the runtime's share). Run with
//! `cargo bench -p kubewasm-tests --bench wake`.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use kube::Api;
use kubewasm::grant::Grant;
use kubewasm::reconciler::{Action, Description, HostCalls, ReconcileError, Reconciler};
use kubewasm::sandbox::PluginOptions;
use kubewasm_tests::cpu_usage::CpuSeconds;
use kubewasm_tests::host::config_map_grant;
use kubewasm_tests::mirror_round::{Bench, chosen_hostile, create_sources, median, rounds};
use kubewasm_tests::plugins::test_guest_bytes;

const OBJECTS: usize = 1_000;
/// Plugins started at once in a round.
const PLUGINS: usize = 5;
const ROUNDS: usize = 5;

/// Counts the reconciles of the plugin it wraps.
struct Counted {
    inner: Arc<dyn Reconciler>,
    calls: Arc<AtomicUsize>,
}

#[async_trait::async_trait]
impl Reconciler for Counted {
    fn description(&self) -> &Description {
        self.inner.description()
    }

    async fn apply(
        &self,
        object: &str,
        host: Arc<dyn HostCalls>,
    ) -> Result<Action, ReconcileError> {
        let result = self.inner.apply(object, host).await;
        self.calls.fetch_add(1, Ordering::Relaxed);
        result
    }

    async fn cleanup(
        &self,
        object: &str,
        host: Arc<dyn HostCalls>,
    ) -> Result<Action, ReconcileError> {
        self.inner.cleanup(object, host).await
    }

    fn charge_host_time(&self, spent: Duration) {
        self.inner.charge_host_time(spent);
    }

    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        self.inner.runtime()
    }
}

/// A reconciler that returns at once without looking at the object.
struct Idle(Description);

impl Idle {
    fn new() -> Self {
        Self(kubewasm_tests::every_config_map().clone())
    }
}

#[async_trait::async_trait]
impl Reconciler for Idle {
    fn description(&self) -> &Description {
        &self.0
    }

    async fn apply(&self, _: &str, _: Arc<dyn HostCalls>) -> Result<Action, ReconcileError> {
        Ok(Action::AwaitChange)
    }

    async fn cleanup(&self, _: &str, _: Arc<dyn HostCalls>) -> Result<Action, ReconcileError> {
        Ok(Action::AwaitChange)
    }
}

/// One round: `PLUGINS` plugins started together, timed until each has reconciled every
/// object; returns the host's CPU time per reconcile and the wall time.
async fn round(
    bench: &Bench,
    namespace: &str,
    plugins: &[Arc<dyn Reconciler>],
) -> anyhow::Result<(Duration, Duration)> {
    let calls = Arc::new(AtomicUsize::new(0));
    let cpu_before = CpuSeconds::now();
    let started = Instant::now();
    let mut names = Vec::new();
    for plugin in plugins {
        let counted: Arc<dyn Reconciler> = Arc::new(Counted {
            inner: plugin.clone(),
            calls: calls.clone(),
        });
        let name = kubewasm_tests::unique_name("wake");
        let grant = Grant::parse(&config_map_grant(namespace), "bench")?;
        bench.runtime.start_plugin(&name, counted, grant).await?;
        names.push(name);
    }
    let expected = PLUGINS * OBJECTS;
    kubewasm_tests::wait::until(
        "every plugin to see every object",
        Duration::from_secs(120),
        || {
            let done = calls.load(Ordering::Relaxed) >= expected;
            async move { Ok(done.then_some(())) }
        },
    )
    .await?;
    let elapsed = started.elapsed();
    let cpu = CpuSeconds::now().since(&cpu_before).host;
    for name in names {
        bench.runtime.stop_plugin(&name).await?;
    }
    let per_call = Duration::from_secs_f64(cpu / calls.load(Ordering::Relaxed) as f64);
    Ok((per_call, elapsed))
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Bench::new().await?;
    let namespace = kubewasm_tests::test_namespace(&bench.client, "wake").await?;
    create_sources(
        Api::<ConfigMap>::namespaced(bench.client.clone(), &namespace),
        OBJECTS,
    )
    .await?;
    // Each its own plugin, with its own CPU budget.
    let mut wasm: Vec<Arc<dyn Reconciler>> = Vec::new();
    for _ in 0..PLUGINS {
        let (plugin, _) = bench
            .sandbox
            .load(
                "well-behaved",
                test_guest_bytes("well-behaved"),
                PluginOptions::default(),
            )
            .await?;
        wasm.push(Arc::new(plugin));
    }
    let idle: Arc<dyn Reconciler> = Arc::new(Idle::new());
    let idle = vec![idle; PLUGINS];
    // Holds the namespace's watch open, so that the rounds' plugins join it and find
    // every object cached.
    let anchor = kubewasm_tests::unique_name("anchor");
    bench
        .runtime
        .start_plugin(
            &anchor,
            idle[0].clone(),
            Grant::parse(&config_map_grant(&namespace), "bench")?,
        )
        .await?;
    // A first round to warm up.
    round(&bench, &namespace, &wasm).await?;

    let rounds = rounds(ROUNDS);
    println!(
        "{PLUGINS} plugins started beside {OBJECTS} cached ConfigMaps, each reconciling every \
         one; host CPU time per reconcile, {rounds} rounds, alternating"
    );
    let (mut native, mut sandboxed) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        let (idle_cpu, idle_wall) = round(&bench, &namespace, &idle).await?;
        let (wasm_cpu, wasm_wall) = round(&bench, &namespace, &wasm).await?;
        println!(
            "round {}: native no-op {:>6.1} µs ({:.2} s)   wasm well-behaved {:>6.1} µs ({:.2} s)",
            i + 1,
            micros(idle_cpu),
            idle_wall.as_secs_f64(),
            micros(wasm_cpu),
            wasm_wall.as_secs_f64(),
        );
        native.push(idle_cpu);
        sandboxed.push(wasm_cpu);
    }
    if rounds > 0 {
        println!(
            "median host CPU per reconcile: native no-op {:.1} µs, wasm {:.1} µs",
            micros(median(native)),
            micros(median(sandboxed)),
        );
    }
    println!(
        "one hostile plugin at a time beside the same objects for {} s (its budget: {} \
         millicores): the host's CPU per second",
        HOSTILE_SECONDS.as_secs(),
        kubewasm::sandbox::DEFAULT_CPU_MILLICORES
    );
    for behaviour in chosen_hostile() {
        let name = format!("hostile-{behaviour}");
        let (plugin, _) = bench
            .sandbox
            .load(&name, test_guest_bytes(&name), PluginOptions::default())
            .await?;
        let plugin: Arc<dyn Reconciler> = Arc::new(plugin);
        let mut shares = Vec::new();
        for _ in 0..3 {
            shares.push(hostile_share(&bench, &namespace, &plugin).await?);
        }
        shares.sort_by(f64::total_cmp);
        println!("{behaviour:<10} {:>6.0} millicores", shares[1] * 1000.0);
    }
    bench.runtime.stop_plugin(&anchor).await?;
    Ok(())
}

const HOSTILE_SECONDS: Duration = Duration::from_secs(5);

/// The host's CPU per second while `plugin` runs beside the cached objects.
async fn hostile_share(
    bench: &Bench,
    namespace: &str,
    plugin: &Arc<dyn Reconciler>,
) -> anyhow::Result<f64> {
    let name = kubewasm_tests::unique_name("hostile");
    let grant = Grant::parse(&config_map_grant(namespace), "bench")?;
    let before = CpuSeconds::now();
    let started = Instant::now();
    bench
        .runtime
        .start_plugin(&name, plugin.clone(), grant)
        .await?;
    tokio::time::sleep(HOSTILE_SECONDS).await;
    bench.runtime.stop_plugin(&name).await?;
    Ok(CpuSeconds::now().since(&before).host / started.elapsed().as_secs_f64())
}

fn micros(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e6
}
