//! One plugin's controller over one watch: kube-runtime's Controller schedules (no two
//! reconciles of one object at once, deduplication, requeues), the finalizer step is
//! kube-runtime's finalizer helper, and each reconcile waits for one of the plugin's
//! concurrency slots before it calls the plugin.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DynamicObject};
use kube::core::Selector;
use kube::runtime::controller::{self, Action as KubeAction, Controller};
use kube::runtime::events::{Event, EventType};
use kube::runtime::finalizer::{self, Event as FinalizerEvent};
use kube::{Resource, ResourceExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tokio_util::sync::CancellationToken;

use super::access::{self, Request};
use super::backlog::Backlog;
use super::backoff;
use super::host_calls::KubeHostCalls;
use super::plugin::{PluginShared, PluginVersion};
use super::wakes::{wake_hash, wakes};
use super::watches::{SharedWatch, matches};
use crate::grant::Verb;
use crate::ops::metrics::ReconcileResult;
use crate::rate::LineAdmitted;
use crate::reconciler::{Action, HostError, ReconcileError};
use crate::thread_cpu::{Charging, Metered};

/// Why one reconcile failed.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileFailure {
    /// The plugin failed.
    #[error("plugin {0}")]
    Plugin(#[source] ReconcileError),
    /// Adding or removing the finalizer failed.
    #[error("finalizer: {0}")]
    Finalizer(String),
    /// The plugin's ServiceAccount may not see the object: it is not handed over.
    #[error("{0}")]
    NotAllowed(#[source] HostError),
}

impl ReconcileFailure {
    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            Self::Plugin(err) => err.retry_after(),
            Self::Finalizer(_) | Self::NotAllowed(_) => None,
        }
    }

    /// Whether the call was ended because its plugin was stopping: no failure of the
    /// object's, so no Event and no backoff (the plugin's next version, if any,
    /// reconciles the object afresh).
    fn is_stop(&self) -> bool {
        matches!(self, Self::Plugin(ReconcileError::Stopped { .. }))
    }
}

impl From<finalizer::Error<ReconcileError>> for ReconcileFailure {
    fn from(err: finalizer::Error<ReconcileError>) -> Self {
        match err {
            finalizer::Error::ApplyFailed(err) | finalizer::Error::CleanupFailed(err) => {
                Self::Plugin(err)
            }
            other => Self::Finalizer(other.to_string()),
        }
    }
}

/// A running controller of one plugin over one watch.
pub struct ScopeController {
    /// The shared watch, held open for as long as the controller runs.
    watch: Arc<SharedWatch>,
    filter: Option<Selector>,
    backlog: Arc<Backlog>,
    requeue_all: mpsc::UnboundedSender<()>,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl ScopeController {
    /// Starts a controller of `plugin` over `watch`, of whose objects it reconciles
    /// those matching `filter` (when the watch is wider than the plugin's selector). It
    /// stops taking new work when `shutdown` is cancelled and ends once running
    /// reconciles have finished.
    pub fn spawn(
        plugin: Arc<PluginShared>,
        watch: Arc<SharedWatch>,
        filter: Option<Selector>,
        shutdown: CancellationToken,
    ) -> Self {
        let (requeue_all, requeue_rx) = mpsc::unbounded_channel();
        let backlog = Arc::new(Backlog::new(
            plugin.controller_series().workqueue_depth.clone(),
        ));
        let resource = watch.key().resource.clone();
        // kube-runtime's own cap keeps queued objects in its scheduler; the plugin's
        // slots then cap its reconciles across all its scopes.
        let concurrency = plugin.version.load().grant.limits.concurrency;
        let own_plugin = plugin.clone();
        let changes = wakes(watch.subscribe(filter.clone()), move |object| {
            let version = own_plugin.version.load();
            wake_hash(
                object,
                version.reconciler.description().finalizer.as_deref(),
            )
        })
        .inspect({
            let backlog = backlog.clone();
            move |object| backlog.queued(object)
        });
        let controller =
            Controller::for_shared_stream_with(changes, watch.store().clone(), resource)
                .with_config(controller::Config::default().concurrency(concurrency))
                .reconcile_all_on(UnboundedReceiverStream::new(requeue_rx))
                .graceful_shutdown_on(shutdown.clone().cancelled_owned());
        let scope = watch.key().to_string();
        let name = plugin.name.clone();
        let failures = plugin.clone();
        let context = Arc::new(ScopeContext {
            plugin,
            filter: filter.clone(),
            backlog: backlog.clone(),
            stopping: shutdown.clone(),
        });
        let runtime = plugin_runtime(&context.plugin);
        // The controller's own work (scheduling, backoff, recording outcomes) is the
        // plugin's cost too; each reconcile is a task of its own, metered apart.
        let charged = context.plugin.clone();
        let charge = move |spent| {
            charged.version.load().reconciler.charge_host_time(spent);
        };
        let unqueued = backlog.clone();
        let run = async move {
            controller
                .run(reconcile, error_policy, context)
                .for_each(|result| {
                    match result {
                        Ok(_) => {}
                        // The object went away between being queued and being reconciled.
                        Err(controller::Error::ObjectNotFound(object)) => {
                            unqueued.gone(&object);
                            tracing::debug!(plugin = %name, %object, "object gone before its reconcile")
                        }
                        Err(controller::Error::ReconcilerFailed(err, object)) if err.is_stop() => {
                            tracing::info!(plugin = %name, object = %object, "reconcile {err}")
                        }
                        Err(controller::Error::ReconcilerFailed(err, object)) => {
                            log_failure(&failures, &object, &err)
                        }
                        Err(err) => tracing::warn!(plugin = %name, watch = %scope, "controller: {err}"),
                    }
                    std::future::ready(())
                })
                .await;
        };
        let task = runtime.spawn(Charging::new(run, charge));
        let controller = Self {
            watch,
            filter,
            backlog,
            requeue_all,
            shutdown,
            task,
        };
        // A shared watch may have listed its objects before this controller subscribed:
        // those already in its store are queued once at the start (the subscription,
        // opened first, brings everything after).
        controller.requeue_all();
        controller
    }

    /// The watch it runs over.
    pub fn watch(&self) -> &Arc<SharedWatch> {
        &self.watch
    }

    /// Queues every object of its watch for a reconcile.
    pub fn requeue_all(&self) {
        for object in self.watch.store().state() {
            if self
                .filter
                .as_ref()
                .is_none_or(|filter| matches(filter, &object))
            {
                self.backlog.queued(&object);
            }
        }
        let _ = self.requeue_all.send(());
    }

    /// Stops taking new work and waits up to `grace` for running reconciles to finish.
    /// Those still running then are cancelled where they stand (a guest's call with
    /// them), so that a plugin whose calls never end still stops: the object is
    /// reconciled afresh by whichever controller takes it next.
    pub async fn stop(mut self, grace: Duration) {
        self.shutdown.cancel();
        if !self.watch.is_synced() {
            // kube-runtime holds a controller's reconciles until its store is ready, and
            // a graceful shutdown waits out that hold: over a watch that cannot list
            // (an unreachable API server, a kind the host may not list) it would wait
            // for ever. No reconcile can have started, so there is nothing to wait for.
            self.task.abort();
        }
        let ended = match tokio::time::timeout(grace, &mut self.task).await {
            Ok(ended) => ended,
            Err(_) => {
                tracing::warn!(
                    watch = %self.watch.key(),
                    "reconciles still running {grace:?} after their controller stopped; \
                     cancelling them"
                );
                // Dropping kube-runtime's applier aborts the reconciles' tasks.
                self.task.abort();
                (&mut self.task).await
            }
        };
        if let Err(err) = ended
            && err.is_panic()
        {
            tracing::error!("a controller task panicked: {err}");
        }
    }
}

/// Where a plugin's controller runs: its reconciler's runtime, or else the caller's.
fn plugin_runtime(plugin: &PluginShared) -> tokio::runtime::Handle {
    plugin
        .version
        .load()
        .reconciler
        .runtime()
        .unwrap_or_else(tokio::runtime::Handle::current)
}

fn subject_of(object: &DynamicObject) -> ObjectReference {
    let types = object.types.clone().unwrap_or_default();
    ObjectReference {
        api_version: Some(types.api_version),
        kind: Some(types.kind),
        name: object.metadata.name.clone(),
        namespace: object.metadata.namespace.clone(),
        uid: object.metadata.uid.clone(),
        resource_version: object.metadata.resource_version.clone(),
        ..Default::default()
    }
}

/// What a reconcile's calls into its plugin share.
struct CallContext<'a> {
    plugin: &'a Arc<PluginShared>,
    version: &'a Arc<PluginVersion>,
    /// Cancelled when the controller stops taking work.
    stopping: &'a CancellationToken,
    /// Set when the plugin asked to be called again after a delay.
    requeue_requested: &'a AtomicBool,
}

async fn call_plugin(
    context: &CallContext<'_>,
    object: &DynamicObject,
    cleanup: bool,
) -> Result<KubeAction, ReconcileError> {
    let version = context.version;
    let json = serde_json::to_string(object)
        .map_err(|err| ReconcileError::Host(format!("serializing the object: {err}")))?;
    let host = Arc::new(KubeHostCalls::new(
        context.plugin.clone(),
        version.clone(),
        subject_of(object),
        context.stopping.clone(),
    ));
    let action = if cleanup {
        version.reconciler.cleanup(&json, host).await?
    } else {
        version.reconciler.apply(&json, host).await?
    };
    Ok(match action {
        Action::RequeueAfter(delay) => {
            context.requeue_requested.store(true, Ordering::Relaxed);
            KubeAction::requeue(delay)
        }
        Action::AwaitChange => KubeAction::await_change(),
        Action::Default => KubeAction::requeue(backoff::after_success()),
    })
}

/// Counts a gauge up for as long as it lives.
struct GaugeGuard(prometheus_client::metrics::gauge::Gauge);

impl GaugeGuard {
    fn new(gauge: prometheus_client::metrics::gauge::Gauge) -> Self {
        gauge.inc();
        Self(gauge)
    }
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// What every reconcile of one [`ScopeController`] shares.
struct ScopeContext {
    plugin: Arc<PluginShared>,
    /// The plugin's label selector, when its watch is wider.
    filter: Option<Selector>,
    /// Objects queued and not yet started on.
    backlog: Arc<Backlog>,
    /// Cancelled when the controller stops taking work.
    stopping: CancellationToken,
}

/// Reconciles one object, and charges the host's CPU time on it to the plugin's budget.
/// Its guest's own time is charged by the sandbox, whose clock this meter leaves out
/// when the call runs within this task (see `thread_cpu`).
async fn reconcile(
    object: Arc<DynamicObject>,
    context: Arc<ScopeContext>,
) -> Result<KubeAction, ReconcileFailure> {
    let plugin = context.plugin.clone();
    let (result, spent) = Metered::new(reconcile_object(object, context)).await;
    plugin.version.load().reconciler.charge_host_time(spent);
    result
}

async fn reconcile_object(
    object: Arc<DynamicObject>,
    context: Arc<ScopeContext>,
) -> Result<KubeAction, ReconcileFailure> {
    context
        .backlog
        .started(object.metadata.namespace.as_deref(), &object.name_any());
    if let Some(filter) = &context.filter
        && !matches(filter, &object)
    {
        // Requeued, or queued before its labels changed: with its own watch, the plugin
        // would not have the object at all.
        return Ok(KubeAction::await_change());
    }
    let plugin = context.plugin.clone();
    let version = plugin.version.load_full();
    let finalizer_name = version.reconciler.description().finalizer.clone();
    if object.meta().deletion_timestamp.is_some() && finalizer_name.is_none() {
        // A plugin without a finalizer never sees deleted objects.
        return Ok(KubeAction::await_change());
    }

    let slots = plugin.slots.load_full();
    let permit = {
        // Still waiting, now for a slot: counted with the objects queued behind it.
        let _waiting = GaugeGuard::new(context.backlog.gauge().clone());
        // A stopping controller waits only for reconciles already in the plugin, not
        // for every object queued behind the concurrency cap.
        tokio::select! {
            permit = slots.acquire_owned() => permit.expect("plugin slots are never closed"),
            () = context.stopping.cancelled() => return Ok(KubeAction::await_change()),
        }
    };
    let _active = GaugeGuard::new(plugin.controller_series().active_workers.clone());
    let started = Instant::now();
    let requeue_requested = AtomicBool::new(false);
    let calls = CallContext {
        plugin: &plugin,
        version: &version,
        stopping: &context.stopping,
        requeue_requested: &requeue_requested,
    };
    let result = if let Err(err) = review_delivery(&plugin, &version, &object).await {
        Err(err)
    } else if version.grant.drain {
        drain(&calls, &object, finalizer_name.as_deref()).await
    } else {
        match &finalizer_name {
            Some(name) => finalizer::finalizer(
                &api_for(&version, &object),
                name,
                object.clone(),
                |event| async {
                    match event {
                        FinalizerEvent::Apply(object) => call_plugin(&calls, &object, false).await,
                        FinalizerEvent::Cleanup(object) => call_plugin(&calls, &object, true).await,
                    }
                },
            )
            .await
            .map_err(ReconcileFailure::from),
            None => call_plugin(&calls, &object, false)
                .await
                .map_err(ReconcileFailure::Plugin),
        }
    };
    drop(permit);

    plugin
        .controller_series()
        .reconcile_time
        .observe(started.elapsed().as_secs_f64());
    let outcome = match &result {
        Ok(_) if requeue_requested.load(Ordering::Relaxed) => ReconcileResult::RequeueAfter,
        Ok(_) => ReconcileResult::Success,
        Err(_) => ReconcileResult::Error,
    };
    plugin.controller_series().reconciles(outcome).inc();
    match &result {
        Ok(_) => {
            if let Some(uid) = object.uid() {
                plugin.backoff.on_success(&uid);
            }
        }
        Err(err) => {
            plugin.controller_series().reconcile_errors.inc();
            if !err.is_stop() {
                publish_failure(&plugin, &object, err).await;
            }
        }
    }
    result
}

/// The object came through a watch made with the host's identity: it goes to the guest
/// only if the plugin's ServiceAccount could list and watch it itself.
async fn review_delivery(
    plugin: &PluginShared,
    version: &PluginVersion,
    object: &DynamicObject,
) -> Result<(), ReconcileFailure> {
    for verb in [Verb::List, Verb::Watch] {
        let request = Request {
            kind: &version.kind,
            verb,
            namespace: object.metadata.namespace.as_deref(),
            name: None,
            subresource: None,
        };
        access::review_store_read(&plugin.reviews, &version.grant, request)
            .await
            .map_err(ReconcileFailure::NotAllowed)?;
    }
    Ok(())
}

fn api_for(version: &PluginVersion, object: &DynamicObject) -> Api<DynamicObject> {
    match object.namespace() {
        Some(namespace) => {
            Api::namespaced_with(version.client.clone(), &namespace, &version.kind.resource)
        }
        None => Api::all_with(version.client.clone(), &version.kind.resource),
    }
}

/// Draining (`drain: true` in the grant): every object that carries the plugin's
/// finalizer gets `cleanup`, then loses the finalizer; `apply` is never called. This is
/// how an operator retires a plugin without leaving objects that cannot be deleted.
async fn drain(
    calls: &CallContext<'_>,
    object: &DynamicObject,
    finalizer_name: Option<&str>,
) -> Result<KubeAction, ReconcileFailure> {
    let Some(finalizer_name) = finalizer_name else {
        return Ok(KubeAction::await_change());
    };
    let Some(index) = object.finalizers().iter().position(|f| f == finalizer_name) else {
        return Ok(KubeAction::await_change());
    };
    call_plugin(calls, object, true)
        .await
        .map_err(ReconcileFailure::Plugin)?;
    let path = format!("/metadata/finalizers/{index}");
    // As kube-runtime's finalizer helper does: test that the index still holds our
    // finalizer, so that a concurrent change fails the patch instead of removing
    // someone else's.
    let patch: json_patch::Patch = serde_json::from_value(serde_json::json!([
        {"op": "test", "path": path, "value": finalizer_name},
        {"op": "remove", "path": path},
    ]))
    .expect("a static JSON patch");
    api_for(calls.version, object)
        .patch(
            &object.name_any(),
            &kube::api::PatchParams::default(),
            &kube::api::Patch::Json::<()>(patch),
        )
        .await
        .map_err(|err| {
            ReconcileFailure::Finalizer(format!("removing {finalizer_name} while draining: {err}"))
        })?;
    tracing::info!(plugin = %calls.plugin.name, object = %object.name_any(), "drained");
    Ok(KubeAction::await_change())
}

/// Logs a failed reconcile, within the plugin's [`super::FAILURE_LINES_PER_SECOND`]; the
/// rest go to the debug log.
fn log_failure(
    plugin: &PluginShared,
    object: &kube::runtime::reflector::ObjectRef<DynamicObject>,
    err: &ReconcileFailure,
) {
    let name = plugin.name.as_str();
    match plugin.failure_lines.admit() {
        LineAdmitted::Write { held_back: 0 } => {
            tracing::warn!(plugin = name, %object, "reconcile failed: {err}")
        }
        LineAdmitted::Write { held_back } => tracing::warn!(
            plugin = name,
            %object,
            held_back,
            "reconcile failed: {err} (and {held_back} more since the last one logged)"
        ),
        LineAdmitted::FirstHeldBack => {
            tracing::warn!(
                plugin = name,
                "more than {} failed reconciles a second: the rest only at debug level, \
                 counted in controller_runtime_reconcile_errors_total",
                super::FAILURE_LINES_PER_SECOND
            );
            tracing::debug!(plugin = name, %object, "reconcile failed: {err}")
        }
        LineAdmitted::HeldBack => {
            tracing::debug!(plugin = name, %object, "reconcile failed: {err}")
        }
    }
}

async fn publish_failure(plugin: &PluginShared, object: &DynamicObject, err: &ReconcileFailure) {
    let event = Event {
        type_: EventType::Warning,
        reason: "ReconcileFailed".to_string(),
        note: Some(crate::sandbox::truncate(&format!("{}: {err}", plugin.name), 1024).to_string()),
        action: "Reconcile".to_string(),
        secondary: None,
    };
    plugin.events.publish(&event, &subject_of(object)).await;
}

fn error_policy(
    object: Arc<DynamicObject>,
    err: &ReconcileFailure,
    context: Arc<ScopeContext>,
) -> KubeAction {
    if err.is_stop() {
        return KubeAction::await_change();
    }
    let plugin = &context.plugin;
    let uid = object.uid().unwrap_or_else(|| object.name_any());
    let backoff = plugin.backoff.on_failure(&uid);
    KubeAction::requeue(err.retry_after().unwrap_or(backoff))
}
