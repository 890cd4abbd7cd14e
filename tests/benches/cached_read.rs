//! What a `kube.get` served from the host's cache costs when the plugin's grant names a
//! ServiceAccount (the host then checks the account's own RBAC with a
//! SubjectAccessReview, whose answer it keeps for 10 s) against a grant without one (no
//! review), in the same run, rounds alternating. A native reconciler makes the reads
//! from inside one reconcile, so that the figures are the host import's alone. Run with
//! `cargo bench -p kubewasm-tests --bench cached_read`.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ConfigMap;
use k8s_openapi::api::rbac::v1::PolicyRule;
use kube::Api;
use kube::api::{ObjectMeta, PostParams};
use kubewasm::grant::Grant;
use kubewasm::reconciler::{Action, Description, HostCalls, ObjectRef, ReconcileError, Reconciler};
use kubewasm_tests::mirror_round::{Bench, rounds};
use kubewasm_tests::{TestUser, test_namespace, unique_name, wait};

/// Reads per round.
const READS: usize = 2_000;

/// Reads ConfigMap `target` [`READS`] times when it reconciles ConfigMap `trigger`,
/// timing each read.
struct Reader {
    description: Description,
    samples: Mutex<Option<Vec<Duration>>>,
}

#[async_trait::async_trait]
impl Reconciler for Reader {
    fn description(&self) -> &Description {
        &self.description
    }

    async fn apply(
        &self,
        object: &str,
        host: Arc<dyn HostCalls>,
    ) -> Result<Action, ReconcileError> {
        if !object.contains("\"name\":\"trigger\"") {
            return Ok(Action::AwaitChange);
        }
        let mut samples = Vec::with_capacity(READS);
        for _ in 0..READS {
            let target = ObjectRef {
                api_version: "v1".into(),
                kind: "ConfigMap".into(),
                namespace: None,
                name: "target".into(),
            };
            let started = Instant::now();
            host.get(target)
                .await
                .map_err(|err| ReconcileError::Host(format!("get: {err}")))?;
            samples.push(started.elapsed());
        }
        *self.samples.lock().unwrap() = Some(samples);
        Ok(Action::AwaitChange)
    }

    async fn cleanup(&self, _: &str, _: Arc<dyn HostCalls>) -> Result<Action, ReconcileError> {
        Ok(Action::AwaitChange)
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

fn micros(duration: Duration) -> String {
    format!("{:.1} µs", duration.as_secs_f64() * 1e6)
}

/// One round: the reader started with `grant`, its timed reads (sorted) once done.
async fn round(bench: &Bench, grant: &str) -> anyhow::Result<Vec<Duration>> {
    let reader = Arc::new(Reader {
        description: kubewasm_tests::every_config_map().clone(),
        samples: Mutex::new(None),
    });
    let name = unique_name("reader");
    bench
        .runtime
        .start_plugin(&name, reader.clone(), Grant::parse(grant, "bench")?)
        .await?;
    let samples = wait::until("the reads", Duration::from_secs(120), || async {
        Ok(reader.samples.lock().unwrap().take())
    })
    .await?;
    bench.runtime.stop_plugin(&name).await?;
    let mut samples = samples;
    samples.sort();
    Ok(samples)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let bench = Bench::new().await?;
    let namespace = test_namespace(&bench.client, "cached-read").await?;
    let api: Api<ConfigMap> = Api::namespaced(bench.client.clone(), &namespace);
    for name in ["target", "trigger"] {
        api.create(
            &PostParams::default(),
            &ConfigMap {
                metadata: ObjectMeta {
                    name: Some(name.into()),
                    ..Default::default()
                },
                ..Default::default()
            },
        )
        .await?;
    }
    let account = TestUser::with_rules(
        &bench.client,
        &namespace,
        vec![PolicyRule {
            api_groups: Some(vec![String::new()]),
            resources: Some(vec!["configmaps".into()]),
            verbs: vec!["get".into(), "list".into(), "watch".into()],
            ..Default::default()
        }],
    )
    .await?;
    let without = format!(
        "apiVersion: kubewasm.dev/v1\nnamespaces: [{namespace}]\npermissions:\n  - apiGroups: [\"\"]\n    resources: [configmaps]\n    verbs: [get, list, watch]\n"
    );
    let with = format!("{without}serviceAccount: {namespace}/{}\n", account.name);
    let rounds = rounds(5);
    let mut figures: [Vec<Vec<Duration>>; 2] = [Vec::new(), Vec::new()];
    for round_index in 0..rounds {
        // Alternate which grant goes first.
        let order = if round_index % 2 == 0 { [0, 1] } else { [1, 0] };
        for which in order {
            let grant = if which == 0 { &without } else { &with };
            figures[which].push(round(&bench, grant).await?);
        }
    }
    println!(
        "{rounds} rounds of {READS} store-served `kube.get`s each, alternating; per round the \
         median, p90 and p99; the table gives the median of the rounds' figures\n"
    );
    println!("| grant | median | p90 | p99 |");
    println!("|---|---|---|---|");
    for (which, label) in [
        (0, "no serviceAccount (no review)"),
        (1, "serviceAccount, review answer kept"),
    ] {
        let of = |p: f64| {
            let mut per_round: Vec<Duration> =
                figures[which].iter().map(|s| percentile(s, p)).collect();
            per_round.sort();
            per_round[per_round.len() / 2]
        };
        println!(
            "| {label} | {} | {} | {} |",
            micros(of(0.5)),
            micros(of(0.9)),
            micros(of(0.99))
        );
    }
    Ok(())
}
