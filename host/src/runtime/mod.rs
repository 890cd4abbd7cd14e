//! The native controller machinery, on kube-runtime: shared watches and stores, one
//! controller per plugin and watch scope, the finalizer step, backoff, and the host
//! imports served over the Kubernetes API.
//!
//! The runtime drives [`Reconciler`]s and knows nothing of wasmtime.

mod access;
mod access_review;
mod backlog;
pub mod backoff;
mod controller;
pub mod events;
mod expiring;
mod host_calls;
mod kinds;
mod plugin;
mod wakes;
mod watches;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use kube::runtime::events::{Recorder, Reporter};
use tokio::sync::{Mutex, Semaphore};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::grant::Grant;
use crate::ops::metrics::Metrics;
use crate::rate::LineLimit;
use crate::reconciler::Reconciler;
use access_review::AccessReviews;
use controller::ScopeController;
use events::PluginEvents;
pub use host_calls::{MAX_LIST_OBJECTS, host_error};
pub use kinds::{KindError, Kinds, MAX_UNKNOWN_KINDS, ResolvedKind};
pub use plugin::{FAILURE_LINES_BURST, FAILURE_LINES_PER_SECOND};
use plugin::{PluginShared, PluginVersion};
pub use watches::{WatchKey, Watches};

/// Runtime settings.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    /// Objects per page of a watch's initial list.
    pub page_size: u32,
    /// How long running reconciles may take to finish when their controller stops (the
    /// host shuts down, the plugin is removed, or a new version moves it to other
    /// watches); those still running then are cancelled.
    pub shutdown_grace: Duration,
    /// Reported as the Events' reporting instance (default: the host name).
    pub instance: Option<String>,
    /// Whether a grant without a ServiceAccount may run, its plugin's API calls then
    /// made with the host's own identity (default: no; `kubewasm dev` allows it).
    pub allow_host_identity: bool,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            page_size: 500,
            shutdown_grace: Duration::from_secs(30),
            instance: None,
            allow_host_identity: false,
        }
    }
}

/// Why a plugin could not be started or updated.
#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    /// The watched kind could not be resolved.
    #[error(transparent)]
    Kind(#[from] KindError),
    /// The grant and the watched kind do not fit together.
    #[error("{0}")]
    Scope(String),
    /// The grant does not allow what the plugin describes (its watch, its finalizer,
    /// or running without a ServiceAccount).
    #[error("{0}")]
    NotGranted(String),
    /// A client for the plugin's identity could not be built.
    #[error("building the plugin's client: {0}")]
    Client(#[source] kube::Error),
    /// The plugin is not running.
    #[error("no plugin named {0} is running")]
    NotRunning(String),
    /// The plugin is running already.
    #[error("plugin {0} is running already")]
    AlreadyRunning(String),
}

struct RunningPlugin {
    shared: Arc<PluginShared>,
    controllers: Vec<ScopeController>,
    watch_keys: Vec<WatchKey>,
}

impl RunningPlugin {
    /// The finalizer its serving version declares.
    fn finalizer(&self) -> Option<String> {
        self.shared
            .version
            .load()
            .reconciler
            .description()
            .finalizer
            .clone()
    }
}

/// The controller host: watches, controllers and the plugins they run.
pub struct Runtime {
    config: kube::Config,
    client: kube::Client,
    kinds: Arc<Kinds>,
    watches: Arc<Watches>,
    reviews: Arc<AccessReviews>,
    metrics: Arc<Metrics>,
    recorder_reporter: Reporter,
    options: RuntimeOptions,
    shutdown: CancellationToken,
    plugins: Mutex<HashMap<String, RunningPlugin>>,
    /// Controllers replaced by a plugin's new version, stopping in the background.
    draining: TaskTracker,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime whose own identity (watches, discovery, Events) is `config`'s.
    pub fn new(
        config: kube::Config,
        options: RuntimeOptions,
        metrics: Arc<Metrics>,
    ) -> Result<Arc<Self>, kube::Error> {
        let client = kube::Client::try_from(config.clone())?;
        Ok(Arc::new(Self {
            kinds: Arc::new(Kinds::new(client.clone())),
            reviews: Arc::new(AccessReviews::new(client.clone())),
            watches: Arc::new(Watches::new(
                client.clone(),
                options.page_size,
                metrics.clone(),
            )),
            recorder_reporter: Reporter {
                controller: "kubewasm".into(),
                instance: options.instance.clone(),
            },
            config,
            client,
            metrics,
            options,
            shutdown: CancellationToken::new(),
            plugins: Mutex::new(HashMap::new()),
            draining: TaskTracker::new(),
        }))
    }

    /// The host's own client.
    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// How many kinds discovery has answered and the host keeps: (served, not served).
    pub fn cached_kinds(&self) -> (usize, usize) {
        self.kinds.cached()
    }

    /// Whether every watch has completed its initial list.
    pub fn ready(&self) -> bool {
        self.watches.all_synced()
    }

    /// Names of the running plugins.
    pub async fn plugin_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.plugins.lock().await.keys().cloned().collect();
        names.sort();
        names
    }

    async fn version(
        &self,
        name: &str,
        reconciler: Arc<dyn Reconciler>,
        grant: Grant,
        generation: u64,
    ) -> Result<(PluginVersion, Vec<WatchKey>), RuntimeError> {
        let description = reconciler.description().clone();
        let watch = &description.watch;
        let kind = self.kinds.resolve(&watch.api_version, &watch.kind).await?;
        if !kind.namespaced && grant.is_namespaced() {
            return Err(RuntimeError::Scope(format!(
                "plugin {name} watches {}, which is cluster-scoped, but its grant names namespaces",
                kind.resource.kind
            )));
        }
        self.check_granted(name, &description, &grant, &kind)
            .await?;
        let scopes: Vec<Option<String>> = match (grant.namespace_list(), kind.namespaced) {
            (Some(namespaces), true) => namespaces
                .iter()
                .map(|ns| Some(ns.as_str().to_string()))
                .collect(),
            _ => vec![None],
        };
        let watch_keys = scopes
            .into_iter()
            .map(|namespace| WatchKey {
                resource: kind.resource.clone(),
                namespace,
                label_selector: watch.label_selector.clone(),
            })
            .collect();
        let client = match &grant.service_account {
            Some(account) => {
                // The user alone: the API server gives an impersonated ServiceAccount its
                // own groups, so the host needs no right to impersonate groups.
                let mut config = self.config.clone();
                config.auth_info.impersonate = Some(account.username());
                config.auth_info.impersonate_groups = None;
                kube::Client::try_from(config).map_err(RuntimeError::Client)?
            }
            None => self.client.clone(),
        };
        Ok((
            PluginVersion {
                requests: crate::rate::TokenBucket::new(
                    grant.limits.api_requests_per_second.into(),
                    grant.limits.api_request_burst.into(),
                ),
                reconciler,
                grant,
                kind,
                client,
                generation,
            },
            watch_keys,
        ))
    }

    /// Checks that `grant` allows what `description` asks for: running without a
    /// ServiceAccount only where the host allows it, its finalizer, and `list` and
    /// `watch` (and for a finalizer `patch` or `update`) on the kind it watches and the
    /// kinds it owns.
    async fn check_granted(
        &self,
        name: &str,
        description: &crate::reconciler::Description,
        grant: &Grant,
        kind: &ResolvedKind,
    ) -> Result<(), RuntimeError> {
        if grant.service_account.is_none() && !self.options.allow_host_identity {
            return Err(RuntimeError::NotGranted(format!(
                "plugin {name}'s grant names no serviceAccount: add `serviceAccount: \
                 NAMESPACE/NAME` for its API calls to impersonate, or start the host with \
                 --allow-host-identity to let them use the host's own identity"
            )));
        }
        if let Some(finalizer) = &description.finalizer
            && !grant.allows_finalizer(finalizer)
        {
            return Err(RuntimeError::NotGranted(format!(
                "plugin {name} declares finalizer {finalizer}, which its grant does not list: \
                 add it to the grant's `finalizers` if the plugin is to own it"
            )));
        }
        let mut missing = access::missing_for_watch(grant, kind, description.finalizer.is_some());
        for owned in &description.owns {
            let owned = self.kinds.resolve(&owned.api_version, &owned.kind).await?;
            // An owned kind may be the watched one: each missing rule is named once.
            for rule in access::missing_for_watch(grant, &owned, false) {
                if !missing.contains(&rule) {
                    missing.push(rule);
                }
            }
        }
        if missing.is_empty() {
            return Ok(());
        }
        Err(RuntimeError::NotGranted(format!(
            "plugin {name} watches {}{}, and its grant does not allow {}: add {} to its \
             permissions",
            watch_display(&description.watch),
            if description.owns.is_empty() {
                ""
            } else {
                " and owns other kinds"
            },
            missing.join(", "),
            if missing.len() == 1 { "it" } else { "them" },
        )))
    }

    /// Starts plugin `name`: one controller per watch scope of its grant.
    pub async fn start_plugin(
        &self,
        name: &str,
        reconciler: Arc<dyn Reconciler>,
        grant: Grant,
    ) -> Result<(), RuntimeError> {
        let mut plugins = self.plugins.lock().await;
        if plugins.contains_key(name) {
            return Err(RuntimeError::AlreadyRunning(name.to_string()));
        }
        let (version, watch_keys) = self.version(name, reconciler, grant, 1).await?;
        check_finalizer_free(name, &version, &plugins)?;
        if version.grant.service_account.is_none() {
            tracing::warn!(
                plugin = name,
                "no serviceAccount in the grant: the plugin's API calls use the host's own identity"
            );
        }
        let concurrency = version.grant.limits.concurrency;
        let plugin_series = self.metrics.plugin_series(name);
        let shared = Arc::new(PluginShared {
            name: name.to_string(),
            version: ArcSwap::from_pointee(version),
            field_manager: format!("kubewasm/{name}"),
            kinds: self.kinds.clone(),
            watches: self.watches.clone(),
            reviews: self.reviews.clone(),
            events: PluginEvents::new(
                name,
                Recorder::new(self.client.clone(), self.recorder_reporter.clone()),
                plugin_series.events_dropped().clone(),
            ),
            plugin_series,
            slots: ArcSwap::from_pointee(Semaphore::new(concurrency.into())),
            backoff: Default::default(),
            failure_lines: LineLimit::new(FAILURE_LINES_PER_SECOND, FAILURE_LINES_BURST),
        });
        shared
            .controller_series()
            .max_concurrent
            .set(concurrency.into());
        let controllers = self.spawn_controllers(&shared, &watch_keys);
        tracing::info!(
            plugin = name,
            watches = %watch_keys.iter().map(ToString::to_string).collect::<Vec<_>>().join("; "),
            concurrency,
            "plugin started"
        );
        plugins.insert(
            name.to_string(),
            RunningPlugin {
                shared,
                controllers,
                watch_keys,
            },
        );
        self.metrics.plugins.set(plugins.len() as i64);
        Ok(())
    }

    fn spawn_controllers(
        &self,
        shared: &Arc<PluginShared>,
        keys: &[WatchKey],
    ) -> Vec<ScopeController> {
        keys.iter()
            .map(|key| {
                let (watch, filter) = self.watches.acquire(key.clone());
                ScopeController::spawn(shared.clone(), watch, filter, self.shutdown.child_token())
            })
            .collect()
    }

    /// Replaces plugin `name`'s logic and grant atomically: reconciles already running
    /// finish on the old version, new ones use the new. When the watched kind, selector,
    /// namespaces or concurrency changed, its controllers move to the new watches; the
    /// old ones stop in the background (see [`Runtime::stop_plugin`]), so that neither
    /// this call nor any other plugin waits for their reconciles. Every object is then
    /// requeued so that the new logic converges them.
    pub async fn update_plugin(
        &self,
        name: &str,
        reconciler: Arc<dyn Reconciler>,
        grant: Grant,
    ) -> Result<(), RuntimeError> {
        let mut plugins = self.plugins.lock().await;
        let generation = plugins
            .get(name)
            .ok_or_else(|| RuntimeError::NotRunning(name.to_string()))?
            .shared
            .version
            .load()
            .generation
            + 1;
        let (version, watch_keys) = self.version(name, reconciler, grant, generation).await?;
        check_finalizer_free(name, &version, &plugins)?;
        let running = plugins.get_mut(name).expect("looked up above");
        let concurrency = version.grant.limits.concurrency;
        let concurrency_changed =
            concurrency != running.shared.version.load().grant.limits.concurrency;
        if concurrency_changed {
            running
                .shared
                .slots
                .store(Arc::new(Semaphore::new(concurrency.into())));
            running
                .shared
                .controller_series()
                .max_concurrent
                .set(concurrency.into());
        }
        running.shared.version.store(Arc::new(version));
        // Controllers carry the concurrency cap too, so a new cap means new controllers.
        if watch_keys != running.watch_keys || concurrency_changed {
            let new_controllers = self.spawn_controllers(&running.shared, &watch_keys);
            let old = std::mem::replace(&mut running.controllers, new_controllers);
            running.watch_keys = watch_keys;
            // In the background: the old controllers' reconciles may take up to the
            // grace to finish, and no other plugin waits for them.
            self.draining
                .spawn(stop_controllers(old, self.options.shutdown_grace));
            tracing::info!(
                plugin = name,
                generation,
                "plugin controllers restarted on its new watches or concurrency"
            );
        }
        for controller in &running.controllers {
            controller.requeue_all();
        }
        tracing::info!(plugin = name, generation, "plugin updated");
        Ok(())
    }

    /// Plugin `name`'s finalizer and how many cached objects carry it.
    pub async fn finalizer_holders(&self, name: &str) -> Option<(String, usize)> {
        let plugins = self.plugins.lock().await;
        let running = plugins.get(name)?;
        let finalizer = running.finalizer()?;
        let holders = running
            .controllers
            .iter()
            .map(|controller| {
                controller
                    .watch()
                    .store()
                    .state()
                    .iter()
                    .filter(|object| {
                        object
                            .metadata
                            .finalizers
                            .as_ref()
                            .is_some_and(|finalizers| finalizers.contains(&finalizer))
                    })
                    .count()
            })
            .sum();
        Some((finalizer, holders))
    }

    /// Queues every object of plugin `name` for a reconcile.
    pub async fn requeue_all(&self, name: &str) -> Result<(), RuntimeError> {
        let plugins = self.plugins.lock().await;
        let running = plugins
            .get(name)
            .ok_or_else(|| RuntimeError::NotRunning(name.to_string()))?;
        for controller in &running.controllers {
            controller.requeue_all();
        }
        Ok(())
    }

    /// Stops plugin `name`, letting its running reconciles finish within the shutdown
    /// grace; those still running then are cancelled.
    pub async fn stop_plugin(&self, name: &str) -> Result<(), RuntimeError> {
        self.remove_plugin(name).await?.await;
        Ok(())
    }

    /// Removes plugin `name` at once (the name is free for a new start from here on)
    /// and returns its stopping, as [`Runtime::stop_plugin`], for the caller to await.
    pub async fn remove_plugin(
        &self,
        name: &str,
    ) -> Result<impl Future<Output = ()> + Send + use<>, RuntimeError> {
        let mut plugins = self.plugins.lock().await;
        let running = plugins
            .remove(name)
            .ok_or_else(|| RuntimeError::NotRunning(name.to_string()))?;
        self.metrics.plugins.set(plugins.len() as i64);
        let grace = self.options.shutdown_grace;
        let name = name.to_string();
        Ok(async move {
            stop_controllers(running.controllers, grace).await;
            match running.shared.failure_lines.take_held_back() {
                0 => tracing::info!(plugin = name, "plugin stopped"),
                held_back => tracing::info!(
                    plugin = name,
                    held_back,
                    "plugin stopped; {held_back} of its failed reconciles since the last \
                     one logged were over the log's limit"
                ),
            }
        })
    }

    /// Stops taking work and waits (at most the shutdown grace) for running reconciles,
    /// cancelling those still running then.
    pub async fn shutdown(&self) {
        self.shutdown.cancel();
        let controllers: Vec<ScopeController> = self
            .plugins
            .lock()
            .await
            .drain()
            .flat_map(|(_, plugin)| plugin.controllers)
            .collect();
        stop_controllers(controllers, self.options.shutdown_grace).await;
        self.draining.close();
        self.draining.wait().await;
    }
}

/// Stops `controllers` together, each given `grace` for its running reconciles.
async fn stop_controllers(controllers: Vec<ScopeController>, grace: Duration) {
    futures::future::join_all(
        controllers
            .into_iter()
            .map(|controller| controller.stop(grace)),
    )
    .await;
}

/// `apiVersion` `kind`, as a plugin names what it watches.
fn watch_display(watch: &crate::reconciler::WatchSpec) -> String {
    format!("{} {}", watch.api_version, watch.kind)
}

/// Checks that no other running plugin declares `version`'s finalizer: two plugins
/// sharing one would each run their cleanup and remove it for the other.
fn check_finalizer_free(
    name: &str,
    version: &PluginVersion,
    plugins: &HashMap<String, RunningPlugin>,
) -> Result<(), RuntimeError> {
    let Some(finalizer) = &version.reconciler.description().finalizer else {
        return Ok(());
    };
    let holder = plugins.iter().find(|(other, running)| {
        other.as_str() != name && running.finalizer().as_ref() == Some(finalizer)
    });
    match holder {
        Some((other, _)) => Err(RuntimeError::NotGranted(format!(
            "plugin {name} declares finalizer {finalizer}, which running plugin {other} \
             declares already: two plugins never share a finalizer"
        ))),
        None => Ok(()),
    }
}
