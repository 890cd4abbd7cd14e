//! One call into a plugin: a fresh Store with the plugin's limits, instantiation from
//! the cached `InstancePre`, the export call, and every way it can fail turned into a
//! [`ReconcileError`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use wasmtime::component::ResourceTable;
use wasmtime::{Engine, Store, Trap, UpdateDeadline};
use wasmtime_wasi::{I32Exit, WasiCtx, WasiCtxView, WasiView};

use super::CallObserver;
use super::bindings::ReconcilerPre;
use super::cpu::{
    BROKEN_SHARE, BROKEN_STREAK, BrokenStreak, CpuBudget, GuestClock, GuestFared, nanos,
};
use super::guest_log::{CallOutput, PluginLog};
use super::guest_threads::{Demotion, NormalThreads};
use super::limits::{CallLimiter, Limits, MemoryLimitHit};
use super::wasi::{self, StderrTail};
use crate::rate::LineAdmitted;
use crate::reconciler::{HostCalls, ReconcileError};

/// Extra time the outer timeout gives a call beyond its deadline, so that a guest
/// running wasm code is stopped by its epoch deadline (a precise, cheap trap) and the
/// outer timeout only fires when the call is stuck in a host call.
const OUTER_TIMEOUT_GRACE: Duration = Duration::from_millis(250);

/// The data of one call's Store.
pub struct CallState {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: CallLimiter,
    pub(super) host: Arc<dyn HostCalls>,
    pub(super) host_runtime: Handle,
    pub(super) normal_threads: NormalThreads,
    pub(super) log: Arc<PluginLog>,
    /// The call's log output so far.
    pub(super) output: CallOutput,
    pub(super) subject: String,
    /// How long the guest has been running, for the CPU budget.
    pub(super) clock: GuestClock,
}

impl WasiView for CallState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

/// Which export to call.
#[derive(Debug, Clone)]
pub enum Export {
    /// `describe()`.
    Describe,
    /// `apply(object)`.
    Apply(String),
    /// `cleanup(object)`.
    Cleanup(String),
}

/// What an export returned.
pub enum Returned {
    /// From `describe`.
    Description(super::bindings::kubewasm::controller::types::Description),
    /// From `apply` or `cleanup`.
    Reconciled(
        Result<
            super::bindings::kubewasm::controller::types::Action,
            super::bindings::kubewasm::controller::types::ReconcileError,
        >,
    ),
}

/// Everything one call needs.
pub struct CallSetup {
    /// The engine.
    pub engine: Engine,
    /// The prepared component.
    pub pre: ReconcilerPre<CallState>,
    /// The plugin's limits.
    pub limits: Limits,
    /// Whether the engine meters fuel.
    pub fuel_enabled: bool,
    /// The plugin's log sink.
    pub log: Arc<PluginLog>,
    /// The host imports for this call.
    pub host: Arc<dyn HostCalls>,
    /// Where host imports run when the call is not on the guest threads of normal
    /// priority (see `bindings`).
    pub host_runtime: Handle,
    /// The guest threads of normal priority, where host imports run within the call.
    pub normal_threads: NormalThreads,
    /// Told how each call went.
    pub observer: Option<Arc<dyn CallObserver>>,
    /// The plugin's CPU budget.
    pub cpu: Arc<CpuBudget>,
}

/// Runs one export in a fresh instance, and tells the observer how it went. A call that
/// runs into its plugin's debt asks for `demotion` as it pauses.
pub async fn call(
    setup: CallSetup,
    export: Export,
    demotion: Demotion,
) -> Result<Returned, ReconcileError> {
    // At most a deadline's worth at a time, as pauses within a call: a plugin being
    // stopped or reloaded waits for its calls, and the next call pays the rest. A call
    // started in good standing finds debt here when another call of its plugin ran into
    // it since. A stopping controller waits for no debt.
    if let Some(debt) = setup.cpu.debt() {
        let pause = debt.min(setup.limits.timeout);
        demotion.request();
        let paused_from = Instant::now();
        let stopping = setup.host.stopping();
        tokio::select! {
            () = tokio::time::sleep(pause) => {}
            () = stopping.cancelled() => {}
        }
        report_pause(&setup.observer, paused_from.elapsed());
    }
    let started = Instant::now();
    let observer = setup.observer.clone();
    let plugin = setup.log.clone();
    let cpu = setup.cpu.clone();
    let Ended {
        result,
        fuel_used,
        guest,
    } = run(setup, export, demotion).await;
    if let Some(streak) = cpu.record_call(guest) {
        log_streak(&plugin, streak);
    }
    if let Some(observer) = observer {
        let (outcome, trap) = match &result {
            Ok(Returned::Reconciled(Err(_))) => ("reported", None),
            Ok(_) => ("ok", None),
            Err(ReconcileError::Trap { code, .. }) => ("trap", Some(code.as_str())),
            Err(err) => (err.kind(), None),
        };
        observer.call_finished(started.elapsed(), outcome, trap, fuel_used);
        let dropped = plugin.take_dropped_since_report();
        if dropped > 0 {
            observer.log_lines_dropped(dropped);
        }
        // Told after every call rather than as a run begins or ends, so that a call of
        // a version just replaced cannot leave the new version's state wrong.
        observer.breaking(cpu.is_breaking());
    }
    result
}

/// How a call ended.
struct Ended {
    result: Result<Returned, ReconcileError>,
    /// Fuel the guest used, when the plugin has a fuel limit.
    fuel_used: Option<u64>,
    guest: GuestFared,
}

async fn run(setup: CallSetup, export: Export, demotion: Demotion) -> Ended {
    let subject = setup.host.subject();
    let stopping = setup.host.stopping();
    let stderr_tail = StderrTail::default();
    let output = CallOutput::default();
    let state = CallState {
        wasi: wasi::context(&setup.log, &subject, &stderr_tail, &output),
        table: ResourceTable::new(),
        limiter: CallLimiter::new(setup.limits.memory_bytes),
        host: setup.host,
        host_runtime: setup.host_runtime,
        normal_threads: setup.normal_threads,
        log: setup.log.clone(),
        output: output.clone(),
        subject,
        clock: GuestClock::start(),
    };
    let mut store = Store::new(&setup.engine, state);
    store.limiter(|state| &mut state.limiter);
    if setup.fuel_enabled {
        let fuel = setup.limits.fuel.unwrap_or(u64::MAX);
        if let Err(err) = store.set_fuel(fuel) {
            return Ended {
                result: Err(ReconcileError::Host(format!("setting fuel: {err}"))),
                fuel_used: None,
                guest: GuestFared::Unknown,
            };
        }
    }
    let timeout = setup.limits.timeout;
    let started = Instant::now();
    store.set_epoch_deadline(1);
    // Every tick: interrupt the guest once the call's deadline has passed; otherwise
    // yield to the executor (a busy guest never holds an executor thread for long),
    // sleeping first if the plugin is over its CPU budget (which demotes it, so the call
    // moves to the demoted threads for the rest). Time paused for the budget does not
    // count against the deadline (a guest is not failed for being throttled) until its
    // controller is stopping; from then on it does, so that a stop waits for the call no
    // longer than its deadline.
    let paused = Arc::new(AtomicU64::new(0));
    let cpu = setup.cpu.clone();
    let observer = setup.observer.clone();
    let clock = store.data().clock.clone();
    let paused_in_callback = paused.clone();
    let stopping_in_callback = stopping.clone();
    store.epoch_deadline_callback(move |_| {
        let stopping = stopping_in_callback.is_cancelled();
        let elapsed = started
            .elapsed()
            .saturating_sub(excused(&paused_in_callback, stopping));
        if elapsed >= timeout {
            return Ok(UpdateDeadline::Interrupt);
        }
        let longest = if stopping { timeout - elapsed } else { timeout };
        let pause = cpu.charge(clock.take_ran()).map(|pause| pause.min(longest));
        if let Some(pause) = pause {
            report_pause(&observer, pause);
            paused_in_callback.fetch_add(nanos(pause), Ordering::Relaxed);
            demotion.request();
        }
        let clock = clock.clone();
        Ok(UpdateDeadline::YieldCustom(
            1,
            Box::pin(async move {
                match pause {
                    Some(pause) => tokio::time::sleep(pause).await,
                    None => tokio::task::yield_now().await,
                }
                clock.resume();
            }),
        ))
    });

    let run = async {
        let instance = setup.pre.instantiate_async(&mut store).await?;
        let exports = instance.kubewasm_controller_plugin();
        let returned = match export {
            Export::Describe => Returned::Description(exports.call_describe(&mut store).await?),
            Export::Apply(object) => {
                Returned::Reconciled(exports.call_apply(&mut store, &object).await?)
            }
            Export::Cleanup(object) => {
                Returned::Reconciled(exports.call_cleanup(&mut store, &object).await?)
            }
        };
        wasmtime::Result::Ok(returned)
    };
    let (result, guest) = match outer_timeout(
        started,
        timeout + OUTER_TIMEOUT_GRACE,
        &paused,
        &stopping,
        run,
    )
    .await
    {
        Some(Ok(returned)) => (Ok(returned), GuestFared::CameThrough),
        Some(Err(err)) => {
            log_backtrace(setup.log.plugin(), &err);
            let err = classify(err, &setup.limits, &stderr_tail);
            let guest = how_the_guest_fared(&err);
            (Err(err), guest)
        }
        // Past the deadline within a host call: as likely the API server's doing.
        None => (
            Err(ReconcileError::Deadline { limit: timeout }),
            GuestFared::Unknown,
        ),
    };
    // A stopping plugin's calls count their budget pauses against the deadline: one
    // ended there before its guest had run for as long did not break, it was stopped.
    let ran = started
        .elapsed()
        .saturating_sub(Duration::from_nanos(paused.load(Ordering::Relaxed)));
    let (result, guest) = match result {
        Err(ReconcileError::Deadline { limit }) if stopping.is_cancelled() && ran < limit => {
            (Err(ReconcileError::Stopped { limit }), GuestFared::Unknown)
        }
        other => (other, guest),
    };
    // Flooding the log on every call is misbehaving too, though the calls come through.
    let guest = match guest {
        GuestFared::CameThrough if setup.log.flooded_by(&output) => GuestFared::Broke,
        other => other,
    };
    let fuel_used = match (setup.fuel_enabled, setup.limits.fuel) {
        (true, Some(limit)) => store.get_fuel().ok().map(|left| limit.saturating_sub(left)),
        _ => None,
    };
    // What ran since the last tick is charged too, and so is releasing the instance (a
    // guest that filled its memory leaves the host that much to give back): the clock
    // runs on through the release. The next call pays any debt.
    let clock = store.data().clock.clone();
    clock.keep_running();
    drop(store);
    setup.cpu.charge(clock.take_ran());
    Ended {
        result,
        fuel_used,
        guest,
    }
}

/// Counts a pause imposed on a call for its plugin's CPU budget, as it begins: a
/// looping guest's calls end only at their deadline, long after.
fn report_pause(observer: &Option<Arc<dyn CallObserver>>, pause: Duration) {
    if let Some(observer) = observer {
        observer.cpu_throttled(pause);
    }
}

/// Logs a run of broken calls beginning or ending, within the plugin's limit on such
/// lines; the rest go to the debug log.
fn log_streak(log: &PluginLog, streak: BrokenStreak) {
    let plugin = log.plugin();
    let held_back = match log.admit_streak_line() {
        LineAdmitted::Write { held_back } => held_back,
        LineAdmitted::FirstHeldBack | LineAdmitted::HeldBack => {
            tracing::debug!(plugin, ?streak, "a run of broken calls began or ended");
            return;
        }
    };
    match streak {
        BrokenStreak::Began => tracing::warn!(
            plugin,
            held_back,
            "the guest broke on {BROKEN_STREAK} calls in a row: demoted, and held to {}% of \
             its CPU budget until a call comes through",
            BROKEN_SHARE * 100.0
        ),
        BrokenStreak::Ended => tracing::info!(
            plugin,
            held_back,
            "a call came through after a run of broken ones: the full CPU budget is back"
        ),
    }
}

/// Runs `work` until `limit` after `started`, extended by the time the guest was
/// `paused` for its CPU budget until `stopping` is cancelled; `None` when it ran out.
async fn outer_timeout<F: std::future::Future>(
    started: Instant,
    limit: Duration,
    paused: &AtomicU64,
    stopping: &CancellationToken,
    work: F,
) -> Option<F::Output> {
    let mut work = std::pin::pin!(work);
    loop {
        let stopped = stopping.is_cancelled();
        let excused_so_far = excused(paused, stopped);
        let deadline = started + limit + excused_so_far;
        tokio::select! {
            output = &mut work => return Some(output),
            () = tokio::time::sleep_until(deadline.into()) => {
                if excused(paused, stopped) == excused_so_far {
                    return None;
                }
            }
            () = stopping.cancelled(), if !stopped => {}
        }
    }
}

/// The time paused for the CPU budget that does not count against a call's deadline:
/// all of it, until its controller is `stopping`.
fn excused(paused: &AtomicU64, stopping: bool) -> Duration {
    if stopping {
        Duration::ZERO
    } else {
        Duration::from_nanos(paused.load(Ordering::Relaxed))
    }
}

/// What a call that failed within the guest (rather than past its deadline in a host
/// call) says about the guest. A deadline here interrupted the guest's own code.
fn how_the_guest_fared(err: &ReconcileError) -> GuestFared {
    match err {
        ReconcileError::Reported { .. } => GuestFared::CameThrough,
        ReconcileError::Trap { .. }
        | ReconcileError::Deadline { .. }
        | ReconcileError::MemoryLimit { .. }
        | ReconcileError::FuelExhausted { .. }
        | ReconcileError::InvalidResult(_) => GuestFared::Broke,
        ReconcileError::Host(_) | ReconcileError::Stopped { .. } => GuestFared::Unknown,
    }
}

/// Turns a wasmtime error from instantiation or a call into the reason it failed.
fn classify(err: wasmtime::Error, limits: &Limits, stderr: &StderrTail) -> ReconcileError {
    if err.downcast_ref::<MemoryLimitHit>().is_some() {
        return ReconcileError::MemoryLimit {
            limit_bytes: limits.memory_bytes,
        };
    }
    if let Some(exit) = err.downcast_ref::<I32Exit>() {
        return ReconcileError::Trap {
            code: "exit".to_string(),
            message: with_stderr(format!("the guest exited with status {}", exit.0), stderr),
        };
    }
    match err.downcast_ref::<Trap>() {
        Some(Trap::Interrupt) => ReconcileError::Deadline {
            limit: limits.timeout,
        },
        Some(Trap::OutOfFuel) => ReconcileError::FuelExhausted {
            limit: limits.fuel.unwrap_or(u64::MAX),
        },
        Some(trap) => ReconcileError::Trap {
            code: snake_case(&format!("{trap:?}")),
            message: with_stderr(trap.to_string(), stderr),
        },
        // Not a trap: the guest returned, but its result could not be lifted (an
        // invalid discriminant, a string that is not UTF-8, a pointer out of bounds).
        None => ReconcileError::InvalidResult(format!("{err:#}")),
    }
}

/// Logs where in the guest a trap happened, for the plugin's author: too long for the
/// error that Events and metrics carry, so at debug level only.
fn log_backtrace(plugin: &str, err: &wasmtime::Error) {
    if let Some(backtrace) = err.downcast_ref::<wasmtime::WasmBacktrace>()
        && !backtrace.frames().is_empty()
    {
        tracing::debug!(plugin, "guest trapped: {}\n{backtrace}", err.root_cause());
    }
}

/// `StackOverflow` -> `stack_overflow`.
fn snake_case(name: &str) -> String {
    let mut snake = String::new();
    for (index, c) in name.chars().enumerate() {
        if c.is_ascii_uppercase() {
            if index > 0 {
                snake.push('_');
            }
            snake.push(c.to_ascii_lowercase());
        } else if c.is_ascii_alphanumeric() {
            snake.push(c);
        }
    }
    snake
}

fn with_stderr(message: String, stderr: &StderrTail) -> String {
    let tail = stderr.get();
    if tail.is_empty() {
        message
    } else {
        format!("{message}; stderr: {tail}")
    }
}
