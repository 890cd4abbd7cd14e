//! 1,000 labelled ConfigMaps created -> all mirrored, on the real control plane: the
//! WebAssembly mirror plugin against the same logic as a native Rust reconciler, in the
//! same host, rounds alternating. Run with `cargo bench -p kubewasm-tests --bench
//! end_to_end`; prints the figures BENCHMARKS.md quotes.

use std::sync::Arc;

use kubewasm::grant::Grant;
use kubewasm::reconciler::Reconciler;
use kubewasm::sandbox::PluginOptions;
use kubewasm_tests::mirror_round::{Bench, CREATORS, median, mirror_round};
use kubewasm_tests::native_mirror::NativeMirror;
use kubewasm_tests::plugins::{example_bytes, example_grant};

const OBJECTS: usize = 1_000;
const ROUNDS: usize = 5;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let Bench {
        client,
        runtime,
        sandbox,
    } = Bench::new().await?;
    // PLUGIN=configmap-mirror-py (or -js, -c, -go) runs another language's mirror plugin, with
    // the limits of its example grant.
    let plugin = std::env::var("PLUGIN").unwrap_or_else(|_| "configmap-mirror".into());
    let grant = Grant::parse(&example_grant(&plugin), "example grant")?;
    let options = PluginOptions {
        limits: grant.limits.sandbox(),
        ..PluginOptions::default()
    };
    let (wasm, _) = sandbox
        .load(&plugin, example_bytes(&plugin), options)
        .await?;
    let wasm: Arc<dyn Reconciler> = Arc::new(wasm);
    let native: Arc<dyn Reconciler> = Arc::new(NativeMirror::default());

    println!(
        "{OBJECTS} labelled ConfigMaps created ({CREATORS} at a time) -> all mirrored by {plugin}; {ROUNDS} rounds each, alternating"
    );
    let (mut wasm_times, mut native_times) = (Vec::new(), Vec::new());
    for i in 0..ROUNDS {
        let native_time = mirror_round(&client, &runtime, OBJECTS, native.clone(), &[])
            .await?
            .elapsed;
        let wasm_time = mirror_round(&client, &runtime, OBJECTS, wasm.clone(), &[])
            .await?
            .elapsed;
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
