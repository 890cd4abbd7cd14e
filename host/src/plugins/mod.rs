//! The plugins directory: every `NAME.wasm` with its grant `NAME.yaml` is loaded into
//! the sandbox and run by the runtime. Nothing is granted by default: a plugin without
//! a grant file does not run.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::grant::{Grant, GrantError};
use crate::ops::lifecycle_events::{Lifecycle, LifecycleEvents};
use crate::ops::metrics::{Metrics, ReloadLabels};
use crate::reconciler::Reconciler;
use crate::runtime::{KindError, Runtime, RuntimeError};
use crate::sandbox::{CacheOutcome, LoadError, LogRate, PluginOptions, Sandbox};
use ordering::ChangeLocks;

mod files;
mod links;
mod ordering;
mod watch;
pub use files::{DEFAULT_MAX_COMPONENT_BYTES, DEFAULT_MAX_GRANT_BYTES, FileLimits};
pub use watch::{ReloadOptions, watch};

/// Why a plugin could not be (re)loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The file name does not make a plugin name.
    #[error("{0:?} is not a plugin name: use lowercase letters, digits and '-' (at most 63)")]
    InvalidName(String),
    /// No grant file: nothing is granted by default.
    #[error("no grant file {0}: nothing is granted by default, so the plugin is not started")]
    MissingGrant(PathBuf),
    /// The grant is invalid.
    #[error("invalid grant: {0}")]
    Grant(#[from] GrantError),
    /// The component is not a valid plugin.
    #[error("{file}: {source}")]
    Load {
        /// The component file.
        file: PathBuf,
        /// Why.
        source: LoadError,
    },
    /// The grant sets fuel, and the host does not meter it.
    #[error(
        "the grant sets a fuel limit, but this host runs without fuel metering (start it with --fuel)"
    )]
    FuelUnavailable,
    /// The grant pins another component.
    #[error(
        "the grant applies to the component with digest sha256:{pinned}, and {file} is \
         sha256:{found}: update the grant's digest to this component's (`kubewasm check` \
         prints it), or put back the component it names"
    )]
    DigestMismatch {
        /// The component file.
        file: PathBuf,
        /// The digest the grant names.
        pinned: String,
        /// The component's digest.
        found: String,
    },
    /// The runtime could not run it.
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
}

impl PluginError {
    /// Whether the failure lies outside the plugin's files and may pass by itself: the
    /// kind it watches is not served (yet: its CustomResourceDefinition may be installed
    /// later), or discovery failed (the API server could not be reached). The same files
    /// are worth trying again.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::Runtime(RuntimeError::Kind(
                KindError::Unknown { .. } | KindError::Discovery { .. }
            ))
        )
    }
}

/// What [`PluginDir::load`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoadOutcome {
    /// The plugin was not running and now is.
    Started,
    /// The plugin was running and now runs the new files.
    Reloaded,
    /// The files are what is running already (same component, same grant), or, for
    /// [`PluginDir::load_if_changed`], what the last load tried.
    Unchanged,
}

/// A plugin as loaded from the directory.
#[derive(Debug, Clone)]
pub struct Loaded {
    /// sha256 of its component.
    pub digest: String,
    /// Its grant.
    pub grant: Grant,
    /// Whether the compiled component came from the cache.
    pub cache: CacheOutcome,
}

/// The plugins of one directory, as running in the runtime.
pub struct PluginDir {
    dir: PathBuf,
    sandbox: Arc<Sandbox>,
    runtime: Arc<Runtime>,
    metrics: Arc<Metrics>,
    loaded: Mutex<BTreeMap<String, Loaded>>,
    /// Held across each load and unload of a plugin.
    changing: ChangeLocks,
    /// Where plugins starting, reloading, failing to load and stopping are recorded as
    /// Events, if anywhere.
    lifecycle: Option<Arc<LifecycleEvents>>,
    /// What each plugin's last load tried.
    attempts: Mutex<HashMap<String, Attempt>>,
    /// How large its files may be.
    file_limits: FileLimits,
}

/// A plugin's component and grant as read for one load.
struct PluginFiles {
    wasm: std::io::Result<Vec<u8>>,
    /// sha256 of the component, when it could be read.
    wasm_digest: Option<String>,
    grant: std::io::Result<String>,
}

impl PluginFiles {
    /// Names what both files hold; `None` if either could not be read.
    fn fingerprint(&self) -> Option<String> {
        let grant = self.grant.as_ref().ok()?;
        Some(format!(
            "{}/{}",
            self.wasm_digest.as_ref()?,
            crate::sandbox::digest(grant.as_bytes())
        ))
    }
}

/// The files one load of a plugin tried, and whether it failed for a reason outside
/// them.
#[derive(Debug)]
struct Attempt {
    fingerprint: String,
    transient_failure: bool,
}

impl std::fmt::Debug for PluginDir {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginDir")
            .field("dir", &self.dir)
            .finish_non_exhaustive()
    }
}

/// Whether `name` can name a plugin (it becomes a field manager and a metric label).
pub fn valid_name(name: &str) -> bool {
    crate::names::is_dns_label(name)
}

impl PluginDir {
    /// The plugins of `dir`, to be run by `runtime` in `sandbox`.
    pub fn new(
        dir: &Path,
        sandbox: Arc<Sandbox>,
        runtime: Arc<Runtime>,
        metrics: Arc<Metrics>,
    ) -> Self {
        Self {
            dir: dir.to_path_buf(),
            sandbox,
            runtime,
            metrics,
            loaded: Mutex::new(BTreeMap::new()),
            changing: ChangeLocks::default(),
            lifecycle: None,
            attempts: Mutex::new(HashMap::new()),
            file_limits: FileLimits::default(),
        }
    }

    /// Reads plugin files only up to `limits`.
    pub fn with_file_limits(mut self, limits: FileLimits) -> Self {
        self.file_limits = limits;
        self
    }

    /// Records plugins starting, reloading, failing to load and stopping in `events`.
    pub fn with_lifecycle_events(mut self, events: Arc<LifecycleEvents>) -> Self {
        self.lifecycle = Some(events);
        self
    }

    fn record(&self, plugin: &str, what: Lifecycle, note: &str) {
        if let Some(events) = &self.lifecycle {
            events.record(plugin, what, note);
        }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The component file of plugin `name`.
    pub fn wasm_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.wasm"))
    }

    /// The grant file of plugin `name`.
    pub fn grant_path(&self, name: &str) -> PathBuf {
        self.dir.join(format!("{name}.yaml"))
    }

    /// Reads plugin `name`'s files, once for one load, on a blocking thread.
    async fn read_files(&self, name: &str) -> PluginFiles {
        let (wasm_path, grant_path) = (self.wasm_path(name), self.grant_path(name));
        let limits = self.file_limits;
        let read = tokio::task::spawn_blocking(move || {
            let wasm = files::read_capped(&wasm_path, limits.max_component_bytes);
            let wasm_digest = wasm.as_deref().ok().map(crate::sandbox::digest);
            let grant = files::read_capped(&grant_path, limits.max_grant_bytes).and_then(|bytes| {
                String::from_utf8(bytes).map_err(|_| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, "not UTF-8 text")
                })
            });
            PluginFiles {
                wasm,
                wasm_digest,
                grant,
            }
        });
        read.await.unwrap_or_else(|err| {
            let failed = || std::io::Error::other(format!("reading the files failed: {err}"));
            PluginFiles {
                wasm: Err(failed()),
                wasm_digest: None,
                grant: Err(failed()),
            }
        })
    }

    /// Names of the `.wasm` files in the directory.
    pub fn scan(&self) -> std::io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let path = entry?.path();
            if path.extension().is_some_and(|ext| ext == "wasm")
                && let Some(stem) = path.file_stem().and_then(|stem| stem.to_str())
            {
                names.push(stem.to_string());
            }
        }
        names.sort();
        Ok(names)
    }

    /// Loads every plugin of the directory; a plugin that fails is logged and left out.
    pub async fn load_all(&self) -> std::io::Result<()> {
        for name in self.scan()? {
            // A plugin that fails is logged by load().
            let _ = self.load(&name).await;
        }
        Ok(())
    }

    /// Compiles every plugin of the directory into the sandbox's disk cache without
    /// starting any, as a standby replica does while it waits, so that taking over reads
    /// an artifact per plugin instead of compiling each. What fails here is left for
    /// loading to report.
    pub async fn precompile_all(&self) {
        let names = match self.scan() {
            Ok(names) => names,
            Err(err) => {
                tracing::debug!(dir = %self.dir.display(), "not precompiling: {err}");
                return;
            }
        };
        for name in names {
            let path = self.wasm_path(&name);
            let limit = self.file_limits.max_component_bytes;
            let read = tokio::task::spawn_blocking(move || files::read_capped(&path, limit))
                .await
                .unwrap_or_else(|err| Err(std::io::Error::other(err.to_string())));
            let compiled = match read {
                Ok(bytes) => self.sandbox.precompile(bytes).await,
                Err(err) => Err(LoadError::Io(err)),
            };
            match compiled {
                Ok(Some(CacheOutcome::Compiled)) => {
                    tracing::info!(plugin = %name, "compiled into the cache while standing by")
                }
                Ok(_) => {}
                Err(err) => tracing::debug!(plugin = %name, "not precompiled: {err}"),
            }
        }
    }

    /// Plugins running, with what they were loaded from.
    pub fn loaded(&self) -> BTreeMap<String, Loaded> {
        self.table().clone()
    }

    /// Whether plugin `name` is running.
    pub fn is_loaded(&self, name: &str) -> bool {
        self.table().contains_key(name)
    }

    fn table(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Loaded>> {
        self.loaded.lock().expect("plugin table poisoned")
    }

    /// Loads plugin `name` from its files: starts it, or if it runs already, replaces
    /// it in place. On any failure a running version keeps serving. Loads of other
    /// plugins go on meanwhile.
    pub async fn load(&self, name: &str) -> Result<LoadOutcome, PluginError> {
        self.load_unless_tried(name, false).await
    }

    /// [`PluginDir::load`], unless the files are those its last load tried and that did
    /// not fail for a reason outside them ([`LoadOutcome::Unchanged`] then): a writer's
    /// several events for one change, and looking again at every plugin, try each
    /// content once.
    pub async fn load_if_changed(&self, name: &str) -> Result<LoadOutcome, PluginError> {
        self.load_unless_tried(name, true).await
    }

    async fn load_unless_tried(
        &self,
        name: &str,
        skip_if_tried: bool,
    ) -> Result<LoadOutcome, PluginError> {
        if !valid_name(name) {
            return Err(PluginError::InvalidName(name.to_string()));
        }
        let change_lock = self.changing.of(name);
        let _changing = change_lock.lock().await;
        let files = self.read_files(name).await;
        let fingerprint = files.fingerprint();
        let tried = || {
            self.attempts
                .lock()
                .expect("plugin attempts poisoned")
                .get(name)
                .is_some_and(|last| {
                    Some(&last.fingerprint) == fingerprint.as_ref() && !last.transient_failure
                })
        };
        if skip_if_tried && tried() {
            return Ok(LoadOutcome::Unchanged);
        }
        // Boxed: a load's future is large and deeply nested, and its callers' futures
        // would otherwise each hold all of it.
        let loaded = Box::pin(self.load_locked(name, files)).await;
        let mut attempts = self.attempts.lock().expect("plugin attempts poisoned");
        match fingerprint {
            Some(fingerprint) => attempts.insert(
                name.to_string(),
                Attempt {
                    fingerprint,
                    transient_failure: loaded.as_ref().is_err_and(PluginError::is_transient),
                },
            ),
            None => attempts.remove(name),
        };
        loaded
    }

    /// Whether both of plugin `name`'s files are there.
    pub fn files_present(&self, name: &str) -> bool {
        self.wasm_path(name).exists() && self.grant_path(name).exists()
    }

    /// Forgets what plugin `name`'s last load tried, as its files are gone: whatever is
    /// written back is tried afresh.
    pub fn forget_attempt(&self, name: &str) {
        self.attempts
            .lock()
            .expect("plugin attempts poisoned")
            .remove(name);
    }

    /// [`PluginDir::load`] under the plugin's change lock.
    async fn load_locked(
        &self,
        name: &str,
        files: PluginFiles,
    ) -> Result<LoadOutcome, PluginError> {
        let running = self.table().get(name).cloned();
        match self.load_files(name, files, running.as_ref()).await {
            Ok(None) => Ok(LoadOutcome::Unchanged),
            Ok(Some(plugin)) => {
                let digest = format!("digest sha256:{}", plugin.digest);
                let outcome = if running.is_some() {
                    self.count_reload(name, "ok");
                    tracing::info!(plugin = name, digest = %plugin.digest, "plugin reloaded");
                    self.record(name, Lifecycle::Reloaded, &format!("reloaded, {digest}"));
                    LoadOutcome::Reloaded
                } else {
                    tracing::info!(plugin = name, digest = %plugin.digest, "plugin started");
                    self.record(name, Lifecycle::Started, &format!("started, {digest}"));
                    LoadOutcome::Started
                };
                self.table().insert(name.to_string(), plugin);
                Ok(outcome)
            }
            Err(err) => {
                let what = if running.is_some() {
                    self.count_reload(name, "error");
                    "reload failed, the running version keeps serving"
                } else {
                    // The load may have created its series; a plugin that never started
                    // exports none.
                    self.metrics.forget_plugin(name);
                    "not started"
                };
                tracing::error!(plugin = name, "{what}: {err}");
                self.record(name, Lifecycle::LoadFailed, &format!("{what}: {err}"));
                Err(err)
            }
        }
    }

    /// Loads the files; `None` when they are what `running` was loaded from.
    async fn load_files(
        &self,
        name: &str,
        files: PluginFiles,
        running: Option<&Loaded>,
    ) -> Result<Option<Loaded>, PluginError> {
        let grant_path = self.grant_path(name);
        let grant_file = grant_path.display().to_string();
        let grant = match files.grant {
            Ok(text) => Grant::parse(&text, &grant_file)?,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => {
                return Err(PluginError::MissingGrant(grant_path));
            }
            Err(source) => {
                return Err(GrantError::Io {
                    file: grant_file,
                    source,
                }
                .into());
            }
        };
        if grant.limits.fuel.is_some() && !self.sandbox.fuel_enabled() {
            return Err(PluginError::FuelUnavailable);
        }
        let wasm_path = self.wasm_path(name);
        let load_error = |source| PluginError::Load {
            file: wasm_path.clone(),
            source,
        };
        let bytes = files.wasm.map_err(|err| load_error(LoadError::Io(err)))?;
        if let (Some(pinned), Some(found)) = (&grant.digest, &files.wasm_digest)
            && pinned != found
        {
            return Err(PluginError::DigestMismatch {
                file: wasm_path,
                pinned: pinned.clone(),
                found: found.clone(),
            });
        }
        if let Some(running) = running
            && running.grant == grant
            && files.wasm_digest.as_ref() == Some(&running.digest)
        {
            return Ok(None);
        }
        let observer: Arc<dyn crate::sandbox::CallObserver> = self.metrics.plugin_series(name);
        let options = PluginOptions {
            limits: grant.limits.sandbox(),
            log_rate: LogRate::default(),
            observer: Some(observer),
        };
        let (plugin, cache) = self
            .sandbox
            .load(name, bytes, options)
            .await
            .map_err(load_error)?;
        let digest = plugin.digest().to_string();
        let reconciler: Arc<dyn Reconciler> = Arc::new(plugin);
        if running.is_some() {
            self.runtime
                .update_plugin(name, reconciler, grant.clone())
                .await?;
        } else {
            self.runtime
                .start_plugin(name, reconciler, grant.clone())
                .await?;
        }
        Ok(Some(Loaded {
            digest,
            grant,
            cache,
        }))
    }

    /// Stops plugin `name` if it runs and its component or grant file is missing:
    /// checked under its change lock, so that files written back and loaded meanwhile
    /// keep it running. Objects that still carry its finalizer are reported: they
    /// cannot be deleted until the plugin is drained.
    pub async fn unload_if_removed(&self, name: &str) -> Result<(), PluginError> {
        let change_lock = self.changing.of(name);
        let changing = change_lock.lock().await;
        let removed = !self.files_present(name);
        if !removed || !self.is_loaded(name) {
            return Ok(());
        }
        tracing::info!(plugin = name, "plugin files removed; stopping it");
        if let Some((finalizer, holders)) = self.runtime.finalizer_holders(name).await
            && holders > 0
        {
            tracing::warn!(
                plugin = name,
                finalizer = %finalizer,
                objects = holders,
                "stopping a plugin whose finalizer is still on objects: they cannot be deleted \
                 until it is removed. Put the plugin back with `drain: true` in its grant to \
                 run cleanup on every object and remove the finalizer, then remove it again"
            );
        }
        self.table().remove(name);
        self.forget_attempt(name);
        let stopping = self.runtime.remove_plugin(name).await?;
        // Under the change lock: a start of the same name, which creates its series
        // afresh, cannot come between.
        self.metrics.forget_plugin(name);
        self.record(name, Lifecycle::Stopped, "stopped: its files were removed");
        // Its running reconciles may take up to the shutdown grace: its files written
        // back meanwhile start it again at once.
        drop(changing);
        stopping.await;
        Ok(())
    }

    fn count_reload(&self, name: &str, result: &'static str) {
        self.metrics
            .reloads
            .get_or_create(&ReloadLabels {
                plugin: name.to_string(),
                result,
            })
            .inc();
    }
}
