//! `kubewasm run`: the controller host.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use kube::config::{KubeConfigOptions, Kubeconfig};
use kubewasm::manager::{Manager, ManagerOptions};
use kubewasm::ops::leader::LeaderElectionOptions;
use kubewasm::ops::lifecycle_events::HostPod;
use kubewasm::plugins::ReloadOptions;
use kubewasm::runtime::RuntimeOptions;
use kubewasm::sandbox::SandboxConfig;
use tokio_util::sync::CancellationToken;

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
    /// Seconds running reconciles may take to finish when the host shuts down, or their
    /// plugin stops or moves to new watches; those still running then are cancelled.
    #[arg(long, default_value_t = 30)]
    pub shutdown_grace_seconds: u64,
    /// Let plugins whose grant names no serviceAccount run, their API calls made with
    /// the host's own identity. Off by default: in a shared cluster every grant names
    /// the ServiceAccount its plugin acts as.
    #[arg(long, env = "KUBEWASM_ALLOW_HOST_IDENTITY")]
    pub allow_host_identity: bool,
    /// Largest component file read, in bytes; a larger one is refused.
    #[arg(long, default_value_t = kubewasm::plugins::DEFAULT_MAX_COMPONENT_BYTES)]
    pub max_component_bytes: u64,
    /// Largest grant file read, in bytes; a larger one is refused.
    #[arg(long, default_value_t = kubewasm::plugins::DEFAULT_MAX_GRANT_BYTES)]
    pub max_grant_bytes: u64,
    #[command(flatten)]
    pub leader_election: LeaderElectionArgs,
}

/// Leader election between replicas of the host.
#[derive(Debug, Args)]
pub struct LeaderElectionArgs {
    /// Run plugins only while holding a coordination.k8s.io Lease, so that one replica
    /// of several reconciles and the others stand by.
    #[arg(long, env = "KUBEWASM_LEADER_ELECT")]
    pub leader_elect: bool,
    /// Namespace of the Lease (default: the in-cluster namespace, or the kubeconfig
    /// context's).
    #[arg(long, env = "KUBEWASM_LEADER_ELECT_NAMESPACE")]
    pub leader_elect_namespace: Option<String>,
    /// Name of the Lease.
    #[arg(long, default_value = kubewasm::ops::leader::DEFAULT_LEASE_NAME)]
    pub leader_elect_lease: String,
    /// This replica's identity in the Lease (default: $POD_NAME or the host name, and a
    /// random suffix).
    #[arg(long)]
    pub leader_elect_identity: Option<String>,
    /// Seconds the lease stays valid after a renewal: how long standby replicas wait
    /// after a leader stops without releasing it.
    #[arg(long, default_value_t = 15)]
    pub leader_elect_lease_seconds: u64,
    /// Seconds after a renewal at which the leader renews the lease again (less than
    /// the lease).
    #[arg(long, default_value_t = 10)]
    pub leader_elect_renew_seconds: u64,
}

impl LeaderElectionArgs {
    /// The election's options, `None` when it is off; `default_namespace` is the
    /// client configuration's.
    pub fn options(&self, default_namespace: &str) -> Option<LeaderElectionOptions> {
        self.leader_elect.then(|| {
            let mut options = LeaderElectionOptions::new(
                self.leader_elect_namespace
                    .clone()
                    .unwrap_or_else(|| default_namespace.to_string()),
            );
            options.lease_name = self.leader_elect_lease.clone();
            if let Some(identity) = &self.leader_elect_identity {
                options.identity = identity.clone();
            }
            options.lease_seconds = self.leader_elect_lease_seconds;
            options.renew_seconds = self.leader_elect_renew_seconds;
            options
        })
    }
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
    /// The manager's options; `default_namespace` is the client configuration's.
    pub fn manager_options(
        &self,
        sandbox: SandboxConfig,
        default_namespace: &str,
    ) -> ManagerOptions {
        ManagerOptions {
            plugins_dir: self.plugins.clone(),
            plugin_files: kubewasm::plugins::FileLimits {
                max_component_bytes: self.max_component_bytes,
                max_grant_bytes: self.max_grant_bytes,
            },
            sandbox,
            runtime: RuntimeOptions {
                page_size: self.page_size,
                shutdown_grace: Duration::from_secs(self.shutdown_grace_seconds),
                instance: None,
                allow_host_identity: self.allow_host_identity,
            },
            metrics_addr: Some(self.metrics_addr),
            probe_addr: Some(self.probe_addr),
            reload: (!self.no_reload).then(|| ReloadOptions {
                debounce: Duration::from_millis(self.reload_debounce_ms),
                ..ReloadOptions::default()
            }),
            leader_election: self.leader_election.options(default_namespace),
            host_pod: HostPod::from_env(default_namespace),
        }
    }
}

/// Runs the host until SIGINT or SIGTERM, then shuts down gracefully; with leader
/// election, also until the lease is lost, and then fails, for the process to be
/// restarted as a standby replica.
pub async fn run(args: RunArgs, sandbox: SandboxConfig) -> anyhow::Result<()> {
    let config = kube_config(args.kubeconfig.as_deref(), args.context.as_deref()).await?;
    tracing::info!(server = %config.cluster_url, plugins = %args.plugins.display(), "starting");
    let options = args.manager_options(sandbox, &config.default_namespace);
    // One token for the whole run, so that a signal during start-up is not missed.
    let stop = CancellationToken::new();
    tokio::spawn({
        let stop = stop.clone();
        async move {
            super::super::shutdown_signal().await;
            stop.cancel();
        }
    });
    let Some(manager) = Manager::start_unless_stopped(config, options, &stop).await? else {
        tracing::info!("stopped while standing by for the leader lease");
        return Ok(());
    };
    let running = manager.runtime().plugin_names().await;
    tracing::info!(plugins = ?running, "host running; stop with Ctrl-C");
    let lost = tokio::select! {
        () = stop.cancelled() => false,
        () = manager.leadership_lost() => true,
    };
    tracing::info!("shutting down: no new reconciles, waiting for running ones");
    manager.shutdown().await;
    anyhow::ensure!(
        !lost,
        "lost the leader lease: stopped so that the replica holding it reconciles alone"
    );
    tracing::info!("stopped");
    Ok(())
}
