//! `kubewasm run`: the controller host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubewasm::manager::{Manager, ManagerOptions};
use kubewasm::plugins::ReloadOptions;
use kubewasm::runtime::RuntimeOptions;
use kubewasm::sandbox::SandboxConfig;

/// Where the host connects and what it serves.
#[derive(Debug, Args)]
pub struct RunArgs {
    /// Directory of plugins: NAME.wasm beside its grant NAME.yaml.
    #[arg(long, env = "KUBEWASM_PLUGINS")]
    pub plugins: PathBuf,
    /// kubeconfig file (default: as kubectl resolves it: $KUBECONFIG, ~/.kube/config,
    /// then the in-cluster service account).
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
    /// kubeconfig context (default: the current context).
    #[arg(long)]
    pub context: Option<String>,
    /// Address of the Prometheus metrics endpoint.
    #[arg(long, default_value = "0.0.0.0:8080", env = "KUBEWASM_METRICS_ADDR")]
    pub metrics_addr: SocketAddr,
    /// Address of the /healthz and /readyz probes.
    #[arg(long, default_value = "0.0.0.0:8081", env = "KUBEWASM_PROBE_ADDR")]
    pub probe_addr: SocketAddr,
    /// Objects per page of each watch's initial list.
    #[arg(long, default_value_t = 500)]
    pub page_size: u32,
    /// Load the plugins directory once instead of watching it for changes.
    #[arg(long)]
    pub no_reload: bool,
    /// Milliseconds of quiet after a file change before it is applied.
    #[arg(long, default_value_t = 20)]
    pub reload_debounce_ms: u64,
    /// Seconds shutdown waits for running reconciles.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
}

/// Resolves the client configuration as kubectl does, or from `kubeconfig`.
pub async fn kube_config(
    kubeconfig: Option<&Path>,
    context: Option<&str>,
) -> anyhow::Result<kube::Config> {
    let options = KubeConfigOptions {
        context: context.map(str::to_string),
        ..KubeConfigOptions::default()
    };
    match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path)
                .with_context(|| format!("reading {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(file, &options)
                .await
                .with_context(|| format!("using {}", path.display()))
        }
        None if context.is_some() => kube::Config::from_kubeconfig(&options)
            .await
            .context("reading the kubeconfig"),
        None => kube::Config::infer()
            .await
            .context("no kubeconfig ($KUBECONFIG, ~/.kube/config) and not running in a cluster"),
    }
}

impl RunArgs {
    /// The manager's options.
    pub fn manager_options(&self, sandbox: SandboxConfig) -> ManagerOptions {
        ManagerOptions {
            plugins_dir: self.plugins.clone(),
            sandbox,
            runtime: RuntimeOptions {
                page_size: self.page_size,
                shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
                instance: None,
            },
            metrics_addr: Some(self.metrics_addr),
            probe_addr: Some(self.probe_addr),
            reload: (!self.no_reload).then(|| ReloadOptions {
                debounce: Duration::from_millis(self.reload_debounce_ms),
                ..ReloadOptions::default()
            }),
        }
    }
}

/// Runs the host until SIGINT or SIGTERM, then shuts down gracefully.
pub async fn run(args: RunArgs, sandbox: SandboxConfig) -> anyhow::Result<()> {
    let config = kube_config(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    tracing::info!(server = %config.cluster_url, plugins = %args.plugins.display(), "starting");
    let manager = Manager::start(config, args.manager_options(sandbox)).await?;
    let running = manager.runtime().plugin_names().await;
    tracing::info!(plugins = ?running, "host running; stop with Ctrl-C");
    super::super::shutdown_signal().await;
    tracing::info!("shutting down: no new reconciles, waiting for running ones");
    manager.shutdown().await;
    tracing::info!("stopped");
    Ok(())
}
