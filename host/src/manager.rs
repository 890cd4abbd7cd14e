//! The assembled host: sandbox, runtime, the plugins directory, the metrics and probe
//! servers, and leader election, started and stopped together.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context as _;
use kube::runtime::events::Reporter;
use tokio_util::sync::CancellationToken;
use tokio_util::task::AbortOnDropHandle;

use crate::ops::leader::{LeaderElectionOptions, Leadership, Role};
use crate::ops::lifecycle_events::{HostPod, LifecycleEvents};
use crate::ops::metrics::Metrics;
use crate::ops::server;
use crate::plugins::{self, PluginDir, ReloadOptions};
use crate::runtime::{Runtime, RuntimeOptions};
use crate::sandbox::{Sandbox, SandboxConfig};

/// Everything the manager is configured with.
#[derive(Debug, Clone)]
pub struct ManagerOptions {
    /// The plugins directory.
    pub plugins_dir: PathBuf,
    /// How large the files in it may be.
    pub plugin_files: crate::plugins::FileLimits,
    /// Sandbox settings.
    pub sandbox: SandboxConfig,
    /// Runtime settings.
    pub runtime: RuntimeOptions,
    /// Where to serve `/metrics`; `None` serves nothing.
    pub metrics_addr: Option<SocketAddr>,
    /// Where to serve `/healthz` and `/readyz`; `None` serves nothing.
    pub probe_addr: Option<SocketAddr>,
    /// Watch the plugins directory and apply changes; `None` loads it once.
    pub reload: Option<ReloadOptions>,
    /// Run plugins only while holding the leader lease; `None` runs them at once.
    pub leader_election: Option<LeaderElectionOptions>,
    /// The Pod the host runs in, which Events about the plugins' lifecycle regard;
    /// `None` records none.
    pub host_pod: Option<HostPod>,
}

/// A running host.
pub struct Manager {
    sandbox: Arc<Sandbox>,
    runtime: Arc<Runtime>,
    plugins: Arc<PluginDir>,
    metrics: Arc<Metrics>,
    leadership: Option<Leadership>,
    servers: CancellationToken,
    server_tasks: Vec<tokio::task::JoinHandle<()>>,
}

impl std::fmt::Debug for Manager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Manager")
            .field("plugins", &self.plugins)
            .finish_non_exhaustive()
    }
}

impl Manager {
    /// Starts the servers, then, once this replica leads (at once without leader
    /// election), every plugin of the directory.
    ///
    /// With leader election this waits for the lease for as long as another replica
    /// holds it; a standby replica serves its probes meanwhile and reports ready, so
    /// that rolling updates can proceed.
    pub async fn start(kube_config: kube::Config, options: ManagerOptions) -> anyhow::Result<Self> {
        Self::start_unless_stopped(kube_config, options, &CancellationToken::new())
            .await?
            .context("stopped before it could lead")
    }

    /// [`Manager::start`], giving up (`None`) if `stop` is cancelled while it stands by
    /// for the leader lease. Once this replica leads, it starts regardless; the caller
    /// then shuts it down.
    pub async fn start_unless_stopped(
        kube_config: kube::Config,
        options: ManagerOptions,
        stop: &CancellationToken,
    ) -> anyhow::Result<Option<Self>> {
        anyhow::ensure!(
            options.plugins_dir.is_dir(),
            "the plugins directory {} does not exist",
            options.plugins_dir.display()
        );
        let metrics = Arc::new(Metrics::new());
        let sandbox = Sandbox::new(options.sandbox.clone())?;
        let lease_config = kube_config.clone();
        let runtime = Runtime::new(kube_config, options.runtime.clone(), metrics.clone())
            .context("connecting to the API server")?;
        let mut plugin_dir = PluginDir::new(
            &options.plugins_dir,
            sandbox.clone(),
            runtime.clone(),
            metrics.clone(),
        )
        .with_file_limits(options.plugin_files);
        if let Some(pod) = &options.host_pod {
            let reporter = Reporter {
                controller: "kubewasm".into(),
                instance: Some(pod.name.clone()),
            };
            plugin_dir = plugin_dir.with_lifecycle_events(LifecycleEvents::new(
                runtime.client().clone(),
                reporter,
                pod,
            ));
        }
        let plugins = Arc::new(plugin_dir);
        let servers = CancellationToken::new();
        let leadership = match options.leader_election {
            Some(election) => Some(Leadership::campaign(
                lease_config,
                election,
                metrics.leader.clone(),
            )?),
            None => {
                metrics.leader.set(1);
                None
            }
        };
        // Not ready until every plugin of the directory has been tried and every watch
        // they opened has synced; ready while standing by for the lease.
        let loaded = Arc::new(AtomicBool::new(false));
        let role = leadership.as_ref().map(Leadership::role_watch);
        let mut server_tasks = Vec::new();
        if let Some(addr) = options.metrics_addr {
            let listener = server::bind(addr)
                .await
                .with_context(|| format!("serving metrics on {addr}"))?;
            let stop = servers.clone().cancelled_owned();
            let metrics = metrics.clone();
            server_tasks.push(tokio::spawn(async move {
                if let Err(err) = server::serve_metrics(listener, metrics, stop).await {
                    tracing::error!("metrics server failed: {err}");
                }
            }));
        }
        if let Some(addr) = options.probe_addr {
            let listener = server::bind(addr)
                .await
                .with_context(|| format!("serving probes on {addr}"))?;
            let stop = servers.clone().cancelled_owned();
            let runtime = runtime.clone();
            let loaded = loaded.clone();
            let ready = move || {
                role.as_ref()
                    .is_some_and(|role| *role.borrow() == Role::Standby)
                    || (loaded.load(Ordering::Acquire) && runtime.ready())
            };
            server_tasks.push(tokio::spawn(async move {
                if let Err(err) = server::serve_probes(listener, ready, stop).await {
                    tracing::error!("probe server failed: {err}");
                }
            }));
        }
        if let Some(leadership) = &leadership {
            // While standing by, compile the plugins into the disk cache: taking over then
            // reads an artifact per plugin instead of compiling each.
            let precompiling = AbortOnDropHandle::new(tokio::spawn({
                let plugins = plugins.clone();
                async move { plugins.precompile_all().await }
            }));
            tokio::select! {
                acquired = leadership.acquired() => acquired?,
                () = stop.cancelled() => {
                    stop_servers(&servers, server_tasks).await;
                    return Ok(None);
                }
            }
            // Loading would compile again whatever is being compiled now.
            let _ = precompiling.await;
        }
        plugins.load_all().await.with_context(|| {
            format!(
                "reading the plugins directory {}",
                options.plugins_dir.display()
            )
        })?;
        loaded.store(true, Ordering::Release);
        if let Some(reload) = options.reload {
            server_tasks.push(
                plugins::watch(plugins.clone(), reload, servers.clone())
                    .context("watching the plugins directory")?,
            );
        }
        Ok(Some(Self {
            sandbox,
            runtime,
            plugins,
            metrics,
            leadership,
            servers,
            server_tasks,
        }))
    }

    /// The sandbox.
    pub fn sandbox(&self) -> &Arc<Sandbox> {
        &self.sandbox
    }

    /// The runtime.
    pub fn runtime(&self) -> &Arc<Runtime> {
        &self.runtime
    }

    /// The plugins directory.
    pub fn plugins(&self) -> &Arc<PluginDir> {
        &self.plugins
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// This replica's identity in the leader lease, with leader election.
    pub fn leader_identity(&self) -> Option<&str> {
        self.leadership.as_ref().map(Leadership::identity)
    }

    /// Resolves when this replica has lost the leader lease (never without leader
    /// election); the caller should then [`Manager::shutdown`] and exit, for another
    /// replica leads now.
    pub async fn leadership_lost(&self) {
        match &self.leadership {
            Some(leadership) => leadership.lost().await,
            None => std::future::pending().await,
        }
    }

    /// Stops taking work, lets running reconciles finish (bounded by the runtime's
    /// shutdown grace), gives up the leader lease, then stops the servers.
    pub async fn shutdown(self) {
        self.runtime.shutdown().await;
        if let Some(leadership) = self.leadership {
            leadership.release().await;
        }
        stop_servers(&self.servers, self.server_tasks).await;
    }
}

/// Stops the metrics and probe servers and the plugins directory watch, and waits for
/// them to end.
async fn stop_servers(servers: &CancellationToken, tasks: Vec<tokio::task::JoinHandle<()>>) {
    servers.cancel();
    for task in tasks {
        let _ = task.await;
    }
}
