//! The seam between the controller runtime and whatever runs a plugin's logic.
//!
//! The runtime drives a [`Reconciler`] and serves its [`HostCalls`]; the sandbox
//! implements [`Reconciler`] for WebAssembly components, and a native Rust reconciler can
//! implement it too. Neither side needs to know the other: objects cross as JSON text,
//! exactly as they cross the WIT boundary.

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;

/// Shortest requeue or retry delay a plugin may ask for.
pub const MIN_REQUEUE: Duration = Duration::from_millis(100);
/// Longest requeue or retry delay a plugin may ask for.
pub const MAX_REQUEUE: Duration = Duration::from_secs(30 * 24 * 3600);

/// What a plugin watches: one kind, optionally filtered by labels.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchSpec {
    /// `apiVersion` of the watched kind, such as `v1`.
    pub api_version: String,
    /// The watched kind, such as `ConfigMap`.
    pub kind: String,
    /// A label selector; `None` watches every object of the kind.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_selector: Option<String>,
}

/// A kind, by `apiVersion` and `kind`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct KindRef {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Description {
    /// The objects it reconciles.
    pub watch: WatchSpec,
    /// Its finalizer, if it has cleanup to do.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub finalizer: Option<String>,
    /// Kinds it creates (informational).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub owns: Vec<KindRef>,
}

/// What to do after a successful reconcile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long.
    RequeueAfter(Duration),
    /// Reconcile again only when the object changes in a way that wakes the plugin (its
    /// content, labels, annotations, owner references, deletion or the plugin's own
    /// finalizer; not a new resourceVersion alone).
    AwaitChange,
    /// The host's default: again after a random 40-60 minutes.
    Default,
}

/// Why a reconcile failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReconcileError {
    /// The plugin returned an error.
    #[error("{message}")]
    Reported {
        /// The plugin's message.
        message: String,
        /// The plugin's requested retry delay.
        retry_after: Option<Duration>,
    },
    /// The plugin trapped (a panic, an `unreachable`, a stack overflow...).
    #[error("trapped: {message}")]
    Trap {
        /// Which trap, in snake case: `unreachable_code_reached`, `stack_overflow`,
        /// `memory_out_of_bounds`, `exit`...
        code: String,
        /// The trap and what the guest last wrote to stderr.
        message: String,
    },
    /// The plugin ran past its per-call deadline.
    #[error("exceeded its deadline of {limit:?}")]
    Deadline {
        /// The deadline.
        limit: Duration,
    },
    /// The plugin tried to grow its memory past its cap.
    #[error("exceeded its memory limit of {limit_bytes} bytes")]
    MemoryLimit {
        /// The cap.
        limit_bytes: u64,
    },
    /// The plugin used up its fuel.
    #[error("ran out of fuel ({limit} units)")]
    FuelExhausted {
        /// The fuel it had.
        limit: u64,
    },
    /// The plugin returned something that is not a valid result.
    #[error("returned an invalid result: {0}")]
    InvalidResult(String),
    /// The host could not run the plugin at all.
    #[error("could not be run: {0}")]
    Host(String),
    /// The plugin was stopping (removed, reloaded onto new watches, or the host shutting
    /// down), and the call, paused for its CPU budget, was ended at its deadline
    /// counting those pauses; the guest itself had not run past it.
    #[error(
        "ended at its deadline of {limit:?}, its CPU budget pauses counted, as it was stopping"
    )]
    Stopped {
        /// The deadline.
        limit: Duration,
    },
}

impl ReconcileError {
    /// A short label for metrics: `reported`, `trap`, `deadline`, `memory`, `fuel`,
    /// `invalid_result`, `host` or `stopped`.
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Reported { .. } => "reported",
            Self::Trap { .. } => "trap",
            Self::Deadline { .. } => "deadline",
            Self::MemoryLimit { .. } => "memory",
            Self::FuelExhausted { .. } => "fuel",
            Self::InvalidResult(_) => "invalid_result",
            Self::Host(_) => "host",
            Self::Stopped { .. } => "stopped",
        }
    }

    /// The retry delay the plugin asked for, if any.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Reported { retry_after, .. } => *retry_after,
            _ => None,
        }
    }
}

/// Why a host call failed, as the guest sees it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HostError {
    /// The object or kind does not exist.
    #[error("not found: {0}")]
    NotFound(String),
    /// Denied by the grant or by the API server's RBAC.
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// A conflicting change or field owner.
    #[error("conflict: {0}")]
    Conflict(String),
    /// A malformed or rejected request.
    #[error("invalid: {0}")]
    Invalid(String),
    /// The API server is unreachable or overloaded.
    #[error("unavailable: {0}")]
    Unavailable(String),
    /// Anything else.
    #[error("{0}")]
    Other(String),
}

/// One object, by kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ObjectRef {
    /// `apiVersion`.
    pub api_version: String,
    /// `kind`.
    pub kind: String,
    /// The namespace, `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    /// The name.
    pub name: String,
}

/// Log levels a plugin can log at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogLevel {
    /// `trace`.
    Trace,
    /// `debug`.
    Debug,
    /// `info`.
    Info,
    /// `warn`.
    Warn,
    /// `error`.
    Error,
}

/// The two Kubernetes Event types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    /// Something expected happened.
    Normal,
    /// Something to look at.
    Warning,
}

/// The capabilities a plugin gets during one call, bound to the object being reconciled.
///
/// The runtime implements this over the Kubernetes API, its caches and the plugin's
/// grant; tests implement it in memory. JSON goes in and out as text.
#[async_trait::async_trait]
pub trait HostCalls: Send + Sync {
    /// Reads one object.
    async fn get(&self, target: ObjectRef) -> Result<String, HostError>;
    /// Lists objects as a JSON array.
    async fn list(
        &self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> Result<String, HostError>;
    /// Server-side applies an object.
    async fn apply(&self, object: String) -> Result<String, HostError>;
    /// Merges into an object's status.
    async fn patch_status(&self, target: ObjectRef, status: String) -> Result<String, HostError>;
    /// Creates an object.
    async fn create(&self, object: String) -> Result<String, HostError>;
    /// Deletes an object.
    async fn delete(&self, target: ObjectRef) -> Result<(), HostError>;
    /// Records an Event on the object being reconciled.
    async fn publish_event(&self, event_type: EventType, reason: String, note: String);
    /// The object being reconciled, as `namespace/name`, to tag the plugin's log lines.
    fn subject(&self) -> String;
    /// Cancelled once the controller running this call stops taking work (its plugin
    /// stopping or moving to new watches, or the host shutting down). A sandboxed call
    /// then counts the time it is paused for its CPU budget against its deadline, so
    /// that a throttled call ends within its deadline, not the stop's grace period.
    /// Never cancelled, by default.
    fn stopping(&self) -> CancellationToken {
        CancellationToken::new()
    }
}

/// A controller's logic for one object at a time.
#[async_trait::async_trait]
pub trait Reconciler: Send + Sync {
    /// What it watches and its finalizer.
    fn description(&self) -> &Description;
    /// Reconciles one object (JSON).
    async fn apply(&self, object: &str, host: Arc<dyn HostCalls>)
    -> Result<Action, ReconcileError>;
    /// Cleans up after one deleted object (JSON).
    async fn cleanup(
        &self,
        object: &str,
        host: Arc<dyn HostCalls>,
    ) -> Result<Action, ReconcileError>;
    /// Told of CPU time the host spent on one of its reconciles outside its own calls
    /// (scheduling, serializing the object, the finalizer, recording the outcome), so
    /// that a CPU budget can count what the reconciler costs the host, not only what it
    /// runs itself. Ignored by default.
    fn charge_host_time(&self, _spent: std::time::Duration) {}
    /// The async runtime its controller (scheduling and every reconcile's host side)
    /// runs on, when not the host's own. A sandboxed plugin's controller runs on the
    /// guest threads beside its calls: a reconcile then reaches the guest without a
    /// wake-up of another thread, and a plugin's wakes are scheduled below the host's
    /// watches and the API server like its guest code. `None` (the default): the host's.
    fn runtime(&self) -> Option<tokio::runtime::Handle> {
        None
    }
}
