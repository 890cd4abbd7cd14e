//! 1,000 labelled ConfigMaps created -> all mirrored, on the real control plane: the
//! WebAssembly mirror plugin against the same logic as a native Rust reconciler, in the
//! same host, rounds alternating. Run with `cargo bench -p kubewasm-tests --bench
//! end_to_end`; prints the figures BENCHMARKS.md quotes.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kubewasm::grant::Grant;
use kubewasm::ops::metrics::Metrics;
use kubewasm::reconciler::Reconciler;
use kubewasm::runtime::{Runtime, RuntimeOptions};
use kubewasm::sandbox::{PluginOptions, Sandbox};
use kubewasm_tests::host::config_map_grant;
use kubewasm_tests::native_mirror::NativeMirror;
use kubewasm_tests::plugins::example_bytes;
use kubewasm_tests::{admin_client, admin_config, sandbox_config, test_namespace};

const OBJECTS: usize = 1_000;
const ROUNDS: usize = 5;
/// Creates in flight at once.
const CREATORS: usize = 16;

/// Creates `OBJECTS` labelled ConfigMaps in a fresh namespace run by `reconciler` and
/// returns the time from the first create until every mirror exists.
async fn round(
    client: &Client,
    runtime: &Runtime,
    name: &str,
    reconciler: Arc<dyn Reconciler>,
) -> anyhow::Result<Duration> {
    let namespace = test_namespace(client, name).await?;
    let grant = Grant::parse(&config_map_grant(&namespace), "bench")?;
    let plugin = kubewasm_tests::unique_name(name);
    runtime.start_plugin(&plugin, reconciler, grant).await?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);

    // Count mirrors as they appear, from a watch opened before the first create.
    let mut mirrors = watcher::watcher(
        api.clone(),
        watcher::Config::default().labels("kubewasm.dev/mirror-of"),
    )
    .applied_objects()
    .boxed();
    let started = Instant::now();
    let creating = {
        let api = api.clone();
        tokio::spawn(async move {
            futures::stream::iter(0..OBJECTS)
                .map(|i| {
                    let api = api.clone();
                    async move {
                        let source = ConfigMap {
                            metadata: ObjectMeta {
                                name: Some(format!("source-{i:04}")),
                                labels: Some(BTreeMap::from([(
                                    "kubewasm.dev/mirror".into(),
                                    "true".into(),
                                )])),
                                ..Default::default()
                            },
                            data: Some(BTreeMap::from([("value".into(), format!("{i}"))])),
                            ..Default::default()
                        };
                        api.create(&PostParams::default(), &source)
                            .await
                            .map(|_| ())
                    }
                })
                .buffer_unordered(CREATORS)
                .try_collect::<Vec<()>>()
                .await
        })
    };
    let mut seen = std::collections::HashSet::new();
    while seen.len() < OBJECTS {
        let mirror = mirrors
            .try_next()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the mirror watch ended"))?;
        seen.insert(mirror.metadata.name.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    creating.await??;
    runtime.stop_plugin(&plugin).await?;
    Ok(elapsed)
}

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("error")
        .try_init();
    let client = admin_client().await?;
    let metrics = Arc::new(Metrics::new());
    let runtime = Runtime::new(admin_config().await?, RuntimeOptions::default(), metrics)?;
    let sandbox = Sandbox::new(sandbox_config())?;
    let (wasm, _) = sandbox
        .load(
            "configmap-mirror",
            example_bytes("configmap-mirror"),
            PluginOptions::default(),
        )
        .await?;
    let wasm: Arc<dyn Reconciler> = Arc::new(wasm);
    let native: Arc<dyn Reconciler> = Arc::new(NativeMirror::default());

    println!(
        "{OBJECTS} labelled ConfigMaps created ({CREATORS} at a time) -> all mirrored; {ROUNDS} rounds each, alternating"
    );
    let (mut wasm_times, mut native_times) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let native_time = round(&client, &runtime, "native", native.clone()).await?;
        let wasm_time = round(&client, &runtime, "wasm", wasm.clone()).await?;
        println!(
            "round {}: native {:>6.2} s   wasm {:>6.2} s",
            i + 1,
            native_time.as_secs_f64(),
            wasm_time.as_secs_f64()
        );
        native_times.push(native_time);
        wasm_times.push(wasm_time);
    }
    let (native, wasm) = (median(native_times), median(wasm_times));
    println!(
        "median: native {:.2} s, wasm {:.2} s, ratio {:.3}",
        native.as_secs_f64(),
        wasm.as_secs_f64(),
        wasm.as_secs_f64() / native.as_secs_f64()
    );
    Ok(())
}
