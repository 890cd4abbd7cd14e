//! The mirror plugin's 1,000-object end-to-end time with hostile plugins (endless
//! loop, memory bomb, panic on every call, 10 MB of log output per call, deep
//! recursion) running beside it in the same namespace, against running alone; rounds
//! alternate. Run with `cargo bench -p kubewasm-tests --bench hostile`; prints the
//! figures BENCHMARKS.md quotes.

use std::sync::Arc;

use kubewasm::reconciler::Reconciler;
use kubewasm::sandbox::PluginOptions;
use kubewasm_tests::mirror_round::{Bench, Companion, median, mirror_round};
use kubewasm_tests::plugins::{example_bytes, test_guest_bytes};

const OBJECTS: usize = 1_000;
const ROUNDS: usize = 5;
/// Rounds to run: `ROUNDS=3` overrides the default.
fn rounds() -> usize {
    std::env::var("ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS)
}

/// The hostile behaviours; `HOSTILE=loop,panic` runs only those.
const HOSTILE: [&str; 5] = ["loop", "allocate", "panic", "log-flood", "recurse"];

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Bench {
        client,
        runtime,
        sandbox,
    } = Bench::new().await?;
    let load = |name: String, bytes: Vec<u8>| {
        let sandbox = &sandbox;
        async move {
            let (plugin, _) = sandbox.load(&name, bytes, PluginOptions::default()).await?;
            anyhow::Ok(Arc::new(plugin) as Arc<dyn Reconciler>)
        }
    };
    let mirror = load("configmap-mirror".into(), example_bytes("configmap-mirror")).await?;
    let chosen = std::env::var("HOSTILE").unwrap_or_else(|_| HOSTILE.join(","));
    let chosen: Vec<&str> = chosen.split(',').filter(|b| HOSTILE.contains(b)).collect();
    let mut hostile = Vec::new();
    for &behaviour in &chosen {
        let name = format!("hostile-{behaviour}");
        hostile.push(Companion {
            reconciler: load(name.clone(), test_guest_bytes(&name)).await?,
            name,
        });
    }

    println!(
        "{OBJECTS} labelled ConfigMaps -> all mirrored by the WebAssembly mirror plugin, alone \
         and beside hostile plugins ({}) with default limits; {} rounds each, alternating",
        chosen.join(", "),
        rounds()
    );
    let (mut alone_times, mut hostile_times) = (Vec::new(), Vec::new());
    for i in 0..rounds() {
        let alone = mirror_round(&client, &runtime, OBJECTS, mirror.clone(), &[]).await?;
        let beside = mirror_round(&client, &runtime, OBJECTS, mirror.clone(), &hostile).await?;
        println!(
            "round {}: alone {:>6.2} s   beside hostile plugins {:>6.2} s",
            i + 1,
            alone.as_secs_f64(),
            beside.as_secs_f64()
        );
        alone_times.push(alone);
        hostile_times.push(beside);
    }
    let (alone, beside) = (median(alone_times), median(hostile_times));
    println!(
        "median: alone {:.2} s, beside hostile plugins {:.2} s, ratio {:.3}",
        alone.as_secs_f64(),
        beside.as_secs_f64(),
        beside.as_secs_f64() / alone.as_secs_f64()
    );
    Ok(())
}
