//! File written -> new version serving: the median over 20 reloads of the mirror
//! plugin in a running host, compiling each version, then with every version already
//! in the precompile cache. Run with `cargo bench -p kubewasm-tests --bench reload`.

use std::time::{Duration, Instant};

use kubewasm_tests::host::{PluginFiles, TestHost, config_map_grant};
use kubewasm_tests::plugins::example_bytes;
use kubewasm_tests::{admin_client, test_namespace};

const RELOADS: usize = 20;

/// `component` with a custom section appended: a distinct file (and sha256) with the
/// same behaviour.
fn variant(component: &[u8], index: usize) -> Vec<u8> {
    let name = format!("kubewasm-bench-{index}");
    let mut section = vec![name.len() as u8];
    section.extend_from_slice(name.as_bytes());
    let mut bytes = component.to_vec();
    bytes.push(0); // custom section
    bytes.push(section.len() as u8);
    bytes.extend(section);
    bytes
}

/// Writes each variant over the plugin file and times until the host serves it.
async fn reload_times(host: &TestHost, variants: &[Vec<u8>]) -> anyhow::Result<Vec<Duration>> {
    let mut times = Vec::new();
    for bytes in variants {
        let digest = kubewasm::sandbox::digest(bytes);
        let started = Instant::now();
        std::fs::write(host.wasm_path("mirror"), bytes)?;
        loop {
            let serving = host
                .manager()
                .plugins()
                .loaded()
                .get("mirror")
                .map(|p| p.digest.clone());
            if serving.as_deref() == Some(digest.as_str()) {
                break;
            }
            anyhow::ensure!(
                started.elapsed() < Duration::from_secs(60),
                "reload not seen within 60 s"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        times.push(started.elapsed());
    }
    Ok(times)
}

fn median_ms(mut times: Vec<Duration>) -> f64 {
    times.sort();
    times[times.len() / 2].as_secs_f64() * 1e3
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let _ = tracing_subscriber::fmt()
        .with_env_filter("error")
        .try_init();
    let client = admin_client().await?;
    let namespace = test_namespace(&client, "reload-bench").await?;
    let base = example_bytes("configmap-mirror");
    // The test host caches compiled components under target/; distinct variants per
    // run keep the first pass a cold compile.
    let run = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos() as usize;
    let variants: Vec<Vec<u8>> = (0..RELOADS).map(|i| variant(&base, run + i)).collect();
    let host = TestHost::start(&[PluginFiles::new(
        "mirror",
        base,
        config_map_grant(&namespace),
    )])
    .await?;

    // Each variant is a new file, but its functions are the ones compiled for the first
    // version: the incremental cache serves them (as for an edit, minus the edited
    // functions).
    let incremental = reload_times(&host, &variants).await?;
    let warm = reload_times(&host, &variants).await?;
    drop(host);

    // Without the incremental cache: every reload compiles every function.
    let mut config = kubewasm_tests::sandbox_config();
    config.engine.incremental_compilation = false;
    let cold_variants: Vec<Vec<u8>> = (0..RELOADS)
        .map(|i| variant(&example_bytes("configmap-mirror"), run + 1000 + i))
        .collect();
    let host = TestHost::start_with(
        &[PluginFiles::new(
            "mirror",
            example_bytes("configmap-mirror"),
            config_map_grant(&namespace),
        )],
        config,
    )
    .await?;
    let cold = reload_times(&host, &cold_variants).await?;
    println!(
        "file written -> new version serving, plugins/configmap-mirror, {RELOADS} reloads each"
    );
    println!(
        "full compile:                       median {:>7.1} ms",
        median_ms(cold)
    );
    println!(
        "functions in the incremental cache: median {:>7.1} ms",
        median_ms(incremental)
    );
    println!(
        "warm precompile cache:              median {:>7.1} ms",
        median_ms(warm)
    );
    Ok(())
}
