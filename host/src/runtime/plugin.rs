//! The state one running plugin shares across its controllers and calls.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::sync::Semaphore;

use super::access_review::AccessReviews;
use super::backoff::Backoff;
use super::events::PluginEvents;
use super::kinds::{Kinds, ResolvedKind};
use super::watches::Watches;
use crate::grant::Grant;
use crate::ops::metrics::{ControllerSeries, PluginSeries};
use crate::rate::LineLimit;
use crate::reconciler::Reconciler;

/// Failed reconciles a second the host logs for one plugin, sustained; the rest go to
/// the debug log (every one is counted in `controller_runtime_reconcile_errors_total`).
pub const FAILURE_LINES_PER_SECOND: u64 = 1;
/// Failed reconciles the host logs for one plugin at once.
pub const FAILURE_LINES_BURST: u64 = 20;

/// One version of a plugin: its logic, its grant and what follows from them. Swapped
/// whole on reload; calls in flight finish on the version they started with.
pub struct PluginVersion {
    /// The logic.
    pub reconciler: Arc<dyn Reconciler>,
    /// The grant.
    pub grant: Grant,
    /// The watched kind.
    pub kind: ResolvedKind,
    /// Client for its API calls (impersonating its ServiceAccount when granted one).
    pub client: kube::Client,
    /// Counts versions, starting at 1.
    pub generation: u64,
    /// Its requests to the API server, at the grant's rate.
    pub requests: crate::rate::TokenBucket,
}

impl std::fmt::Debug for PluginVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginVersion")
            .field("description", self.reconciler.description())
            .field("grant", &self.grant)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

/// What a running plugin's controllers and host calls share.
pub struct PluginShared {
    /// The plugin's name.
    pub name: String,
    /// The version serving new calls.
    pub version: ArcSwap<PluginVersion>,
    /// Field manager for its writes: `kubewasm/<name>`.
    pub field_manager: String,
    /// Kind resolution.
    pub kinds: Arc<Kinds>,
    /// The shared watches (for reads from the stores).
    pub watches: Arc<Watches>,
    /// The ServiceAccounts' own access to what the stores hold.
    pub reviews: Arc<AccessReviews>,
    /// Events, recorded with the host's identity.
    pub events: PluginEvents,
    /// Its series (denied calls and dropped Events are counted here).
    pub plugin_series: Arc<PluginSeries>,
    /// Its concurrency cap (resized on reload).
    pub slots: ArcSwap<Semaphore>,
    /// Per-object failure backoff.
    pub backoff: Backoff,
    /// The host's log lines for its failed reconciles.
    pub failure_lines: LineLimit,
}

impl PluginShared {
    /// Its controller-runtime series.
    pub fn controller_series(&self) -> &ControllerSeries {
        self.plugin_series.controller()
    }
}

impl std::fmt::Debug for PluginShared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginShared")
            .field("name", &self.name)
            .field("version", &self.version.load())
            .finish_non_exhaustive()
    }
}
