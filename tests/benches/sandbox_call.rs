//! One `apply` of the mirror plugin on a 5 KB ConfigMap: a fresh Store, instantiation
//! and the call, with the pooling and the on-demand allocator, against the same logic
//! as a native Rust reconciler. Run with `cargo bench -p kubewasm-tests --bench
//! sandbox_call`; prints the figures BENCHMARKS.md quotes. With `-- languages`, the
//! same apply by the Python, JavaScript, C and Go mirror plugins; with `-- failing`, one
//! call of tests/guests/misbehave per behaviour (returning, failing, trapping).

use std::sync::Arc;
use std::time::{Duration, Instant};

use kubewasm::memory_host::MemoryHost;
use kubewasm::reconciler::Reconciler;
use kubewasm::sandbox::{Allocator, EngineConfig, PluginOptions, Sandbox, SandboxConfig};
use kubewasm_tests::native_mirror::NativeMirror;
use kubewasm_tests::plugins::{example_bytes, test_guest_bytes};
use serde_json::json;

const WARMUP: usize = 2_000;

/// A component of the contract's world with no imports and one core module, whose
/// `apply` returns `await-change` at once.
const MINIMAL_COMPONENT_WAT: &str = r#"(module
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
    (i32.store8 (i32.const 3000) (i32.const 0))
    (i32.store8 (i32.const 3008) (i32.const 1))
    (i32.const 3000))
  (func (export "kubewasm:controller/plugin@0.1.0#cleanup") (param i32 i32) (result i32)
    (i32.store8 (i32.const 3000) (i32.const 0))
    (i32.store8 (i32.const 3008) (i32.const 1))
    (i32.const 3000))
  (func (export "cabi_realloc") (param i32 i32 i32 i32) (result i32) (i32.const 8192)))"#;
const SAMPLES: usize = 20_000;

/// A labelled ConfigMap of about 5 KB.
fn five_kb_config_map() -> String {
    let data: serde_json::Map<String, serde_json::Value> = (0..50)
        .map(|i| (format!("key-{i:02}"), json!("x".repeat(90))))
        .collect();
    let object = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {
            "name": "settings", "namespace": "bench", "uid": "3f1c6c2e-1d0c-4a57-9a8e-0f3c2b9d8a11",
            "resourceVersion": "12345", "labels": {"kubewasm.dev/mirror": "true"},
            "finalizers": ["kubewasm.dev/mirror"],
        },
        "data": data,
    })
    .to_string();
    assert!(
        (4_900..6_000).contains(&object.len()),
        "{} bytes",
        object.len()
    );
    object
}

struct Figures {
    median: Duration,
    p90: Duration,
    p99: Duration,
}

async fn measure<R: Reconciler + 'static>(
    reconciler: R,
    object: &str,
    host: &Arc<MemoryHost>,
) -> Figures {
    measure_n(reconciler, object, host, WARMUP, SAMPLES).await
}

/// Times `samples_wanted` applies after `warmup`, from where the host calls: a task on
/// the runtime the reconciler's controller runs on (the guest threads, for a plugin).
async fn measure_n<R: Reconciler + 'static>(
    reconciler: R,
    object: &str,
    host: &Arc<MemoryHost>,
    warmup: usize,
    samples_wanted: usize,
) -> Figures {
    let runtime = reconciler
        .runtime()
        .unwrap_or_else(tokio::runtime::Handle::current);
    let (object, host) = (object.to_string(), host.clone());
    runtime
        .spawn(async move {
            for _ in 0..warmup {
                reconciler
                    .apply(&object, host.clone())
                    .await
                    .expect("apply succeeds");
            }
            let mut samples = Vec::with_capacity(samples_wanted);
            for _ in 0..samples_wanted {
                let started = Instant::now();
                reconciler
                    .apply(&object, host.clone())
                    .await
                    .expect("apply succeeds");
                samples.push(started.elapsed());
            }
            Figures::of(samples)
        })
        .await
        .expect("the measuring task finishes")
}

impl Figures {
    /// The median and tail of `samples`.
    fn of(mut samples: Vec<Duration>) -> Self {
        samples.sort();
        let at = |q: f64| samples[((samples.len() as f64 - 1.0) * q) as usize];
        Self {
            median: at(0.5),
            p90: at(0.9),
            p99: at(0.99),
        }
    }
}

fn print(name: &str, figures: &Figures, native: Option<&Figures>) {
    let ratio = native
        .map(|native| {
            format!(
                "{:6.1}x",
                figures.median.as_secs_f64() / native.median.as_secs_f64()
            )
        })
        .unwrap_or_else(|| "      -".into());
    println!(
        "{name:<28} median {:>8.2} µs   p90 {:>8.2} µs   p99 {:>8.2} µs   vs native {ratio}",
        figures.median.as_secs_f64() * 1e6,
        figures.p90.as_secs_f64() * 1e6,
        figures.p99.as_secs_f64() * 1e6,
    );
}

async fn wasm(allocator: Allocator) -> kubewasm::sandbox::WasmPlugin {
    guest("configmap-mirror", allocator).await
}

async fn guest(name: &str, allocator: Allocator) -> kubewasm::sandbox::WasmPlugin {
    let sandbox = Sandbox::new(SandboxConfig {
        engine: EngineConfig {
            allocator,
            ..EngineConfig::default()
        },
        cache_dir: None,
    })
    .expect("a sandbox");
    sandbox
        .load(
            name,
            if name == "misbehave" {
                test_guest_bytes(name)
            } else {
                example_bytes(name)
            },
            unthrottled(),
        )
        .await
        .expect("the mirror plugin loads")
        .0
}

/// Plugin options whose CPU budget never throttles a benchmark's back-to-back calls.
fn unthrottled() -> PluginOptions {
    let mut options = PluginOptions::default();
    options.limits.cpu_millicores = 16_000;
    options
}

/// The mirror plugin in Python, JavaScript, C and Go: compile time, then calls.
async fn languages(object: &str, host: &Arc<MemoryHost>) {
    const LANGUAGE_SAMPLES: usize = 500;
    println!("one apply of the mirror plugin per language, {LANGUAGE_SAMPLES} samples");
    for name in [
        "configmap-mirror-py",
        "configmap-mirror-js",
        "configmap-mirror-c",
        "configmap-mirror-go",
    ] {
        let bytes = example_bytes(name);
        for (allocator_name, allocator) in [
            ("pooling", Allocator::Pooling),
            ("on-demand", Allocator::OnDemand),
        ] {
            let started = Instant::now();
            let plugin = guest(name, allocator).await;
            let load = started.elapsed();
            let figures = measure_n(plugin, object, host, 20, LANGUAGE_SAMPLES).await;
            print(&format!("{name}, {allocator_name}"), &figures, None);
            println!(
                "    {:.1} MB component, compiled and loaded in {:.2} s",
                bytes.len() as f64 / 1e6,
                load.as_secs_f64()
            );
        }
    }
}

/// A call of the misbehave guest per behaviour, failing ones included.
async fn failing(host: &Arc<MemoryHost>) {
    const FAILING_SAMPLES: usize = 2_000;
    let plugin = guest("misbehave", Allocator::Pooling).await;
    println!("one apply of tests/guests/misbehave per behaviour, {FAILING_SAMPLES} samples");
    for behaviour in ["ok", "fail", "panic", "recurse"] {
        let object = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"},
            "data": {"behaviour": behaviour}})
        .to_string();
        let mut samples = Vec::with_capacity(FAILING_SAMPLES);
        for _ in 0..FAILING_SAMPLES {
            let started = Instant::now();
            let _ = plugin.apply(&object, host.clone()).await;
            samples.push(started.elapsed());
        }
        print(behaviour, &Figures::of(samples), None);
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let object = five_kb_config_map();
    let host = MemoryHost::new("bench/settings");
    if std::env::args().any(|arg| arg == "failing") {
        failing(&host).await;
        return;
    }
    if std::env::args().any(|arg| arg == "languages") {
        languages(&object, &host).await;
        return;
    }
    let only_overhead = std::env::args().any(|arg| arg == "overhead");
    if !only_overhead {
        println!(
            "one apply of plugins/configmap-mirror on a {} byte ConfigMap, {SAMPLES} samples",
            object.len()
        );
        let native = measure(NativeMirror::default(), &object, &host).await;
        print("native Rust reconciler", &native, None);
        let pooling = measure(wasm(Allocator::Pooling).await, &object, &host).await;
        print("wasm, pooling allocator", &pooling, Some(&native));
        let on_demand = measure(wasm(Allocator::OnDemand).await, &object, &host).await;
        print("wasm, on-demand allocator", &on_demand, Some(&native));
    }

    println!("the sandbox alone: fresh Store + instantiate + a call that returns at once");
    println!(
        "(tests/guests/misbehave, a Rust wasm32-wasip2 component: 3 core modules, WASI imports)"
    );
    let tiny =
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "x"}}).to_string();
    for (name, allocator) in [
        ("pooling", Allocator::Pooling),
        ("on-demand", Allocator::OnDemand),
    ] {
        let plugin = guest("misbehave", allocator).await;
        let figures = measure(plugin, &tiny, &host).await;
        print(&format!("wasm, {name} allocator"), &figures, None);
    }
    // The floor: a component with no WASI imports and one core module.
    let floor = kubewasm_tests::components::contract_component(MINIMAL_COMPONENT_WAT)
        .expect("the minimal component builds");
    let sandbox = Sandbox::new(SandboxConfig::default()).expect("a sandbox");
    let plugin = sandbox
        .load("floor", floor, unthrottled())
        .await
        .expect("the minimal component loads")
        .0;
    let figures = measure(plugin, &tiny, &host).await;
    print("minimal component, pooling", &figures, None);
}
