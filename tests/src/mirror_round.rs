//! One round of the end-to-end benchmarks: labelled ConfigMaps created in a fresh
//! namespace, timed until every one is mirrored.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{ObjectMeta, PostParams};
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Api, Client};
use kubewasm::grant::Grant;
use kubewasm::reconciler::Reconciler;
use kubewasm::runtime::Runtime;

use crate::cpu_usage::CpuSeconds;
use crate::host::config_map_grant;

/// What a benchmark of rounds runs on: a client of the test control plane, a runtime,
/// and a sandbox to load plugins into (errors-only logging, so output stays figures).
pub struct Bench {
    /// Admin client.
    pub client: Client,
    /// The runtime the rounds start plugins in.
    pub runtime: Arc<Runtime>,
    /// The sandbox.
    pub sandbox: Arc<kubewasm::sandbox::Sandbox>,
}

impl Bench {
    /// Starts (or joins) the test control plane and builds the runtime and sandbox.
    pub async fn new() -> anyhow::Result<Self> {
        let _ = tracing_subscriber::fmt()
            .with_env_filter("error")
            .try_init();
        let metrics = Arc::new(kubewasm::ops::metrics::Metrics::new());
        Ok(Self {
            client: crate::admin_client().await?,
            runtime: Runtime::new(
                crate::admin_config().await?,
                crate::runtime_options(),
                metrics,
            )?,
            sandbox: kubewasm::sandbox::Sandbox::new(crate::sandbox_config())?,
        })
    }
}

/// Creates in flight at once.
pub const CREATORS: usize = 16;

/// A plugin to run beside the mirror for the length of a round.
pub struct Companion {
    /// Name prefix of the plugin.
    pub name: String,
    /// Its reconciler.
    pub reconciler: Arc<dyn Reconciler>,
}

/// What one round took.
#[derive(Debug, Clone, Copy)]
pub struct Round {
    /// From the first create until every mirror existed.
    pub elapsed: Duration,
    /// CPU time used by the API server, etcd and this process in that time.
    pub cpu: CpuSeconds,
}

/// Creates `objects` labelled ConfigMaps in a fresh namespace where `mirror` and the
/// `companions` run (each granted ConfigMaps there), and returns how long it took until
/// every mirror existed.
pub async fn mirror_round(
    client: &Client,
    runtime: &Runtime,
    objects: usize,
    mirror: Arc<dyn Reconciler>,
    companions: &[Companion],
) -> anyhow::Result<Round> {
    let namespace = crate::test_namespace(client, "round").await?;
    // The rounds measure the host, not a plugin's request rate (default 20 a second):
    // their plugins may send 1,000 requests a second.
    let grant = || {
        Grant::parse(
            &format!(
                "{}limits: {{apiRequestsPerSecond: 1000, apiRequestBurst: 10000}}\n",
                config_map_grant(&namespace)
            ),
            "bench",
        )
    };
    let mut plugins = Vec::new();
    for companion in companions {
        let name = crate::unique_name(&companion.name);
        runtime
            .start_plugin(&name, companion.reconciler.clone(), grant()?)
            .await?;
        plugins.push(name);
    }
    let name = crate::unique_name("mirror");
    runtime.start_plugin(&name, mirror, grant()?).await?;
    plugins.push(name);
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);

    // Count mirrors as they appear, from a watch opened before the first create.
    let mut mirrors = watcher::watcher(
        api.clone(),
        watcher::Config::default().labels("kubewasm.dev/mirror-of"),
    )
    .applied_objects()
    .boxed();
    let cpu_before = CpuSeconds::now();
    let started = Instant::now();
    let creating = tokio::spawn(create_sources(api, objects));
    let mut seen = HashSet::new();
    while seen.len() < objects {
        let mirror = mirrors
            .try_next()
            .await?
            .ok_or_else(|| anyhow::anyhow!("the mirror watch ended"))?;
        seen.insert(mirror.metadata.name.unwrap_or_default());
    }
    let elapsed = started.elapsed();
    let cpu = CpuSeconds::now().since(&cpu_before);
    creating.await??;
    for plugin in plugins {
        runtime.stop_plugin(&plugin).await?;
    }
    Ok(Round { elapsed, cpu })
}

/// Creates `objects` ConfigMaps `source-0000`... labelled `kubewasm.dev/mirror=true`,
/// [`CREATORS`] at a time.
pub async fn create_sources(api: Api<ConfigMap>, objects: usize) -> Result<(), kube::Error> {
    futures::stream::iter(0..objects)
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
        .try_collect()
        .await
}

/// Rounds a benchmark runs: `ROUNDS=3` overrides `default`.
pub fn rounds(default: usize) -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(default)
}

/// The hostile behaviours of `tests/guests/misbehave` the benchmarks run beside.
pub const HOSTILE: [&str; 5] = ["loop", "allocate", "panic", "log-flood", "recurse"];

/// The hostile behaviours to run: all of [`HOSTILE`], or those `HOSTILE=loop,panic`
/// names.
pub fn chosen_hostile() -> Vec<&'static str> {
    match std::env::var("HOSTILE") {
        Ok(chosen) => HOSTILE
            .into_iter()
            .filter(|behaviour| chosen.split(',').any(|c| c == *behaviour))
            .collect(),
        Err(_) => HOSTILE.to_vec(),
    }
}

/// The median of `samples`.
pub fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}
