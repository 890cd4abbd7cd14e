//! The wasmtime sandbox: one engine, compiled components cached on disk and in memory,
//! and every call in a fresh, limited instance.
//!
//! The sandbox knows nothing of Kubernetes: a plugin's imports are served by the
//! [`HostCalls`] the caller hands in with each call.

mod bindings;
mod call;
mod compile;
mod contract;
mod cpu;
mod engine;
mod function_cache;
mod guest_log;
mod guest_threads;
mod limits;
mod validate;
mod wasi;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};

use wasmtime::Engine;
use wasmtime::component::{Component, Linker};

use crate::reconciler::{Action, Description, HostCalls, ReconcileError, Reconciler};
use bindings::ReconcilerPre;
use call::{CallSetup, CallState, Export, Returned};
pub use compile::{CacheOutcome, CompileCache, digest};
pub use contract::{CONTRACT_VERSION, PACKAGE, PLUGIN_INTERFACE};
pub use engine::{Allocator, EPOCH_TICK, EngineConfig};
pub use guest_log::{LogRate, PluginLog, truncate};
use guest_threads::{Demotion, GuestThreads, Priority};
pub use limits::{DEFAULT_CPU_MILLICORES, DEFAULT_MEMORY_BYTES, DEFAULT_TIMEOUT, Limits};

/// Why a file could not be loaded as a plugin.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file could not be read.
    #[error("cannot read the plugin file: {0}")]
    Io(#[from] std::io::Error),
    /// Not WebAssembly at all.
    #[error("not a WebAssembly component: {0}")]
    NotWasm(String),
    /// A core module where a component is needed.
    #[error(
        "a core WebAssembly module, not a component: build for wasm32-wasip2, or wrap it \
         with `wasm-tools component new` (with the WASI adapter for wasip1 modules)"
    )]
    CoreModule,
    /// A component that fails to parse, validate or compile.
    #[error("a malformed or truncated component: {0}")]
    Malformed(String),
    /// The component does not export the plugin interface.
    #[error(
        "the component does not implement world kubewasm:controller/reconciler: it does not \
         export {PLUGIN_INTERFACE} (its exports: {})",
        if .exports.is_empty() { "none".to_string() } else { .exports.join(", ") }
    )]
    WrongWorld {
        /// What it does export.
        exports: Vec<String>,
    },
    /// The plugin interface lacks functions.
    #[error("the component's {interface} export lacks {}", .missing.join(", "))]
    MissingExports {
        /// The export's full name.
        interface: String,
        /// The functions missing.
        missing: Vec<String>,
    },
    /// Built against a contract version this host does not implement.
    #[error("the component is built against {found}; this host implements {supported}")]
    UnsupportedVersion {
        /// The component's version.
        found: String,
        /// The host's.
        supported: String,
    },
    /// Its exports have the wrong types, or it imports what the host does not provide.
    #[error("the component does not fit the contract: {0}")]
    Incompatible(String),
    /// `describe()` failed.
    #[error("describe() failed: {0}")]
    Describe(ReconcileError),
    /// `describe()` returned something unusable.
    #[error("describe() returned an invalid description: {0}")]
    InvalidDescription(String),
}

/// Told how every call into one plugin went, for metrics. The sandbox knows nothing of
/// how they are exported.
pub trait CallObserver: Send + Sync {
    /// A call finished after `duration` with `outcome` (`ok`, `reported`, or a
    /// [`ReconcileError::kind`]), `trap` naming the trap when it trapped, `fuel_used`
    /// when the plugin has a fuel limit.
    fn call_finished(
        &self,
        duration: std::time::Duration,
        outcome: &'static str,
        trap: Option<&str>,
        fuel_used: Option<u64>,
    );
    /// The plugin's log rate limit dropped `lines` lines.
    fn log_lines_dropped(&self, lines: u64);
    /// The plugin's guests were paused for `paused` for running past its CPU budget.
    fn cpu_throttled(&self, paused: std::time::Duration);
    /// A call of the plugin runs demoted: the plugin ran past its CPU budget, or its guest
    /// broke call after call, lately. Told as the call starts, or as it ends for a call
    /// that was moved to the demoted threads on the way.
    fn call_demoted(&self) {}
    /// After each call: whether the plugin's guest keeps breaking, so that it is held to
    /// a share of its CPU budget until a call comes through.
    fn breaking(&self, _breaking: bool) {}
}

/// How one plugin is run.
#[derive(Clone, Default)]
pub struct PluginOptions {
    /// Limits on every call.
    pub limits: Limits,
    /// Rate limit of its log output.
    pub log_rate: LogRate,
    /// Told how each call went.
    pub observer: Option<Arc<dyn CallObserver>>,
}

impl std::fmt::Debug for PluginOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginOptions")
            .field("limits", &self.limits)
            .field("log_rate", &self.log_rate)
            .finish_non_exhaustive()
    }
}

/// Sandbox-wide settings.
#[derive(Debug, Clone, Default)]
pub struct SandboxConfig {
    /// Engine settings.
    pub engine: EngineConfig,
    /// Where precompiled components are cached; `None` turns the disk cache off.
    pub cache_dir: Option<PathBuf>,
}

impl SandboxConfig {
    /// The default cache directory: `~/.cache/kubewasm/compiled`.
    pub fn default_cache_dir() -> PathBuf {
        crate::paths::cache_dir().join("compiled")
    }
}

struct Prepared {
    pre: ReconcilerPre<CallState>,
}

/// The engine, linker and caches shared by every plugin of the process.
pub struct Sandbox {
    engine: Engine,
    linker: Linker<CallState>,
    fuel_enabled: bool,
    compile_cache: CompileCache,
    prepared: Mutex<HashMap<String, Weak<Prepared>>>,
    guest_threads: GuestThreads,
}

impl std::fmt::Debug for Sandbox {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sandbox")
            .field("compile_cache", &self.compile_cache)
            .finish_non_exhaustive()
    }
}

impl Sandbox {
    /// Builds the engine (and starts its epoch ticker) and the linker: WASI with nothing
    /// granted, and the contract's imports.
    pub fn new(config: SandboxConfig) -> anyhow::Result<Arc<Self>> {
        let engine = engine::build(&config.engine)
            .map_err(|err| anyhow::anyhow!("configuring wasmtime: {err:#}"))?;
        engine::start_epoch_ticker(&engine);
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_async(&mut linker)
            .map_err(|err| anyhow::anyhow!("linking WASI: {err:#}"))?;
        bindings::Reconciler::add_to_linker::<_, wasmtime::component::HasSelf<CallState>>(
            &mut linker,
            |state| state,
        )
        .map_err(|err| anyhow::anyhow!("linking the contract's imports: {err:#}"))?;
        let compile_cache = match &config.cache_dir {
            Some(dir) => CompileCache::in_dir(dir),
            None => CompileCache::disabled(),
        };
        Ok(Arc::new(Self {
            engine,
            linker,
            fuel_enabled: config.engine.fuel,
            compile_cache,
            prepared: Mutex::new(HashMap::new()),
            guest_threads: GuestThreads::new()
                .map_err(|err| anyhow::anyhow!("starting the guest threads: {err}"))?,
        }))
    }

    /// Loads `bytes` as plugin `name`: checks the contract, compiles (or takes the
    /// cached artifact), prepares instantiation and calls `describe()`.
    pub async fn load(
        self: &Arc<Self>,
        name: &str,
        bytes: Vec<u8>,
        options: PluginOptions,
    ) -> Result<(WasmPlugin, CacheOutcome), LoadError> {
        contract::check_header(&bytes)?;
        let digest = digest(&bytes);
        let (prepared, outcome) = self.prepare(bytes.into(), &digest).await?;
        let log = Arc::new(PluginLog::new(name, options.log_rate));
        let cpu = Arc::new(cpu::CpuBudget::new(options.limits.cpu_millicores));
        let returned = self
            .call(
                CallSetup {
                    engine: self.engine.clone(),
                    pre: prepared.pre.clone(),
                    limits: options.limits,
                    fuel_enabled: self.fuel_enabled,
                    log: log.clone(),
                    host: Arc::new(validate::NoKubernetes),
                    host_runtime: tokio::runtime::Handle::current(),
                    normal_threads: self.guest_threads.normal_threads(),
                    observer: None,
                    cpu: cpu.clone(),
                },
                Export::Describe,
            )
            .await
            .map_err(LoadError::Describe)?;
        let Returned::Description(description) = returned else {
            unreachable!("describe returns a description");
        };
        let description = validate::description(description)?;
        Ok((
            WasmPlugin {
                sandbox: self.clone(),
                name: name.to_string(),
                digest,
                prepared,
                description,
                options,
                log,
                cpu,
            },
            outcome,
        ))
    }

    async fn prepare(
        &self,
        bytes: Arc<[u8]>,
        digest: &str,
    ) -> Result<(Arc<Prepared>, CacheOutcome), LoadError> {
        if let Some(prepared) = self.cached(digest) {
            return Ok((prepared, CacheOutcome::Hit));
        }
        let (component, outcome) = self.compile_cache.load(&self.engine, bytes, digest).await?;
        contract::check_exports(&self.engine, &component)?;
        let prepared = Arc::new(self.instance_pre(&component)?);
        self.prepared
            .lock()
            .expect("prepared cache poisoned")
            .insert(digest.to_string(), Arc::downgrade(&prepared));
        Ok((prepared, outcome))
    }

    fn cached(&self, digest: &str) -> Option<Arc<Prepared>> {
        let mut prepared = self.prepared.lock().expect("prepared cache poisoned");
        prepared.retain(|_, weak| weak.strong_count() > 0);
        prepared.get(digest).and_then(Weak::upgrade)
    }

    fn instance_pre(&self, component: &Component) -> Result<Prepared, LoadError> {
        let instance_pre = self
            .linker
            .instantiate_pre(component)
            .map_err(|err| LoadError::Incompatible(format!("{err:#}")))?;
        let pre = ReconcilerPre::new(instance_pre)
            .map_err(|err| LoadError::Incompatible(format!("{err:#}")))?;
        Ok(Prepared { pre })
    }

    /// Runs one call on the guest threads: demoted if its plugin is, or from the point
    /// where it runs into its plugin's debt.
    async fn call(&self, setup: CallSetup, export: Export) -> Result<Returned, ReconcileError> {
        let priority = if setup.cpu.is_demoted() {
            Priority::Demoted
        } else {
            Priority::Normal
        };
        let observer = setup.observer.clone();
        if let (Priority::Demoted, Some(observer)) = (priority, &observer) {
            observer.call_demoted();
        }
        let demotion = Demotion::default();
        let result = self
            .guest_threads
            .run(
                priority,
                demotion.clone(),
                call::call(setup, export, demotion.clone()),
            )
            .await
            .unwrap_or_else(|err| {
                Err(ReconcileError::Host(format!(
                    "the call could not finish on its guest thread: {err}"
                )))
            });
        if let Some(observer) = observer
            && demotion.moved()
        {
            observer.call_demoted();
        }
        result
    }

    /// Compiles `bytes` into the disk cache unless it holds them already, so that a later
    /// [`Sandbox::load`] of the same bytes only reads the artifact; `None` when the disk
    /// cache is off, as nothing compiled would be kept.
    pub async fn precompile(&self, bytes: Vec<u8>) -> Result<Option<CacheOutcome>, LoadError> {
        if self.compile_cache.dir().is_none() {
            return Ok(None);
        }
        contract::check_header(&bytes)?;
        let digest = digest(&bytes);
        let (_, outcome) = self
            .compile_cache
            .load(&self.engine, bytes.into(), &digest)
            .await?;
        Ok(Some(outcome))
    }

    /// Whether the engine meters fuel (so a grant may set a fuel limit).
    pub fn fuel_enabled(&self) -> bool {
        self.fuel_enabled
    }

    /// The disk cache.
    pub fn compile_cache(&self) -> &CompileCache {
        &self.compile_cache
    }
}

/// A loaded plugin: a prepared component and its description. Cheap to call from many
/// tasks at once; every call gets its own instance.
pub struct WasmPlugin {
    sandbox: Arc<Sandbox>,
    name: String,
    digest: String,
    prepared: Arc<Prepared>,
    description: Description,
    options: PluginOptions,
    log: Arc<PluginLog>,
    cpu: Arc<cpu::CpuBudget>,
}

impl std::fmt::Debug for WasmPlugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WasmPlugin")
            .field("name", &self.name)
            .field("digest", &self.digest)
            .field("description", &self.description)
            .field("options", &self.options)
            .finish_non_exhaustive()
    }
}

impl WasmPlugin {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The sha256 of the component.
    pub fn digest(&self) -> &str {
        &self.digest
    }

    /// Its limits.
    pub fn limits(&self) -> Limits {
        self.options.limits
    }

    /// Its log sink (for the dropped-line counters).
    pub fn log(&self) -> &Arc<PluginLog> {
        &self.log
    }

    async fn reconcile(
        &self,
        export: Export,
        host: Arc<dyn HostCalls>,
    ) -> Result<Action, ReconcileError> {
        let returned = self
            .sandbox
            .call(
                CallSetup {
                    engine: self.sandbox.engine.clone(),
                    pre: self.prepared.pre.clone(),
                    limits: self.options.limits,
                    fuel_enabled: self.sandbox.fuel_enabled,
                    log: self.log.clone(),
                    host,
                    host_runtime: tokio::runtime::Handle::current(),
                    normal_threads: self.sandbox.guest_threads.normal_threads(),
                    observer: self.options.observer.clone(),
                    cpu: self.cpu.clone(),
                },
                export,
            )
            .await?;
        match returned {
            Returned::Reconciled(result) => validate::reconcile_result(result),
            Returned::Description(_) => unreachable!("apply and cleanup return actions"),
        }
    }
}

#[async_trait::async_trait]
impl Reconciler for WasmPlugin {
    fn description(&self) -> &Description {
        &self.description
    }

    async fn apply(
        &self,
        object: &str,
        host: Arc<dyn HostCalls>,
    ) -> Result<Action, ReconcileError> {
        self.reconcile(Export::Apply(object.to_string()), host)
            .await
    }

    async fn cleanup(
        &self,
        object: &str,
        host: Arc<dyn HostCalls>,
    ) -> Result<Action, ReconcileError> {
        self.reconcile(Export::Cleanup(object.to_string()), host)
            .await
    }

    fn charge_host_time(&self, spent: std::time::Duration) {
        // A plugin in debt pays before its next call starts.
        let _ = self.cpu.charge(spent);
    }

    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        Some(self.sandbox.guest_threads.handle(Priority::Normal))
    }
}
