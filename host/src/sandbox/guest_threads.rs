//! The threads guest code runs on: runtimes of their own, apart from the host's
//! watches and API calls, at a lower CPU priority. However busy the plugins are, the
//! host's own work (and the API server beside it) is scheduled first, and never waits
//! in a queue behind a guest's time slice. Each plugin's controller (kube-runtime's
//! scheduling and the host's side of its reconciles) runs here too, beside its calls:
//! a call then runs within the reconcile's own task, with no task of its own to spawn
//! and no other thread to wake.
//!
//! Calls of plugins demoted (for running past their CPU budget, or breaking call after
//! call) run on threads of a second runtime at the lowest priority there is (Linux
//! `SCHED_IDLE`): they get the cores nothing else wants, and never queue in front of a
//! call of a plugin that stays within its budget. A call that started before its plugin
//! was demoted moves there at its next pause (see [`Demotion`]), rather than spending
//! the rest of its budget at normal priority.

use std::cell::Cell;
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::task::Poll;

use futures::FutureExt;
use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinError;
use tokio_util::task::AbortOnDropHandle;

/// How much lower than the host's the priority of guest threads is (Linux nice).
pub const GUEST_NICE: i32 = 10;

/// The priority a call's guest code runs at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// Below the host's threads ([`GUEST_NICE`]).
    Normal,
    /// Only on cores nothing else wants: a demoted plugin (see `cpu::DEMOTION`).
    Demoted,
}

/// Lets a call at [`Priority::Normal`] ask to finish on the demoted threads: once
/// requested, [`GuestThreads::run`] moves it there the next time it waits.
#[derive(Debug, Clone, Default)]
pub struct Demotion(Arc<AtomicU8>);

const NOT_REQUESTED: u8 = 0;
const REQUESTED: u8 = 1;
const MOVED: u8 = 2;

impl Demotion {
    /// Asks that the call move to the demoted threads at its next wait.
    pub fn request(&self) {
        let _ = self.0.compare_exchange(
            NOT_REQUESTED,
            REQUESTED,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// Whether the call moved to the demoted threads.
    pub fn moved(&self) -> bool {
        self.0.load(Ordering::Relaxed) == MOVED
    }

    fn requested(&self) -> bool {
        self.0.load(Ordering::Relaxed) == REQUESTED
    }

    fn record_move(&self) {
        self.0.store(MOVED, Ordering::Relaxed);
    }
}

/// Why work given to the guest threads did not finish.
#[derive(Debug, thiserror::Error)]
pub enum Unfinished {
    /// The work panicked.
    #[error("it panicked: {0}")]
    Panicked(String),
    /// Its runtime shut down before it finished.
    #[error("its runtime shut down")]
    Cancelled,
}

impl From<JoinError> for Unfinished {
    fn from(err: JoinError) -> Self {
        match err.try_into_panic() {
            Ok(panic) => Self::Panicked(panic_message(panic.as_ref())),
            Err(_) => Self::Cancelled,
        }
    }
}

/// The guest runtimes, one per [`Priority`].
#[derive(Debug)]
pub struct GuestThreads {
    /// Tells this set's threads of normal priority from any other's.
    normal_threads: NormalThreads,
    normal: Option<Runtime>,
    demoted: Option<Runtime>,
}

/// Where the next [`GuestThreads`] takes its id from (0 is no set's).
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// The threads of normal priority of one [`GuestThreads`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NormalThreads(u64);

impl NormalThreads {
    /// Whether the calling thread is one of them.
    pub fn include_current(self) -> bool {
        NORMAL_THREAD_OF.get() == self.0
    }
}

thread_local! {
    /// The id of the [`GuestThreads`] whose normal-priority worker this thread is, if any.
    static NORMAL_THREAD_OF: Cell<u64> = const { Cell::new(0) };
}

impl GuestThreads {
    /// One worker thread per core at each priority.
    pub fn new() -> std::io::Result<Self> {
        let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let runtime = |name: &str, at_start: Box<dyn Fn() + Send + Sync>| {
            Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(name)
                .on_thread_start(at_start)
                .enable_all()
                .build()
        };
        let normal_thread = move || {
            NORMAL_THREAD_OF.set(id);
            set_nice(GUEST_NICE);
        };
        Ok(Self {
            normal_threads: NormalThreads(id),
            normal: Some(runtime("kubewasm-guest", Box::new(normal_thread))?),
            demoted: Some(runtime(
                "kubewasm-guest-demoted",
                Box::new(lowest_priority),
            )?),
        })
    }

    /// Runs `work` in a task of its own on a guest thread of `priority`, which is
    /// aborted if the handle is dropped before it finishes.
    fn spawn<F>(&self, priority: Priority, work: F) -> AbortOnDropHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        AbortOnDropHandle::new(self.runtime(priority).spawn(work))
    }

    /// Runs `work` on a guest thread of `priority` to the end. Work started at
    /// [`Priority::Normal`] moves to the demoted threads the first time it waits after
    /// `demotion` was requested, and finishes there.
    ///
    /// Asked from one of these threads of normal priority (a plugin's controller), work
    /// at that priority runs within the asking task until it moves, rather than in a
    /// task of its own: a spawned task would often wake another worker to steal it, a
    /// cost (in a virtual machine) as large again as the rest of a small guest's call
    /// (BENCHMARKS.md, "One sandboxed call"). A panic is caught all the same, and
    /// returned as [`Unfinished::Panicked`].
    ///
    /// Dropping the returned future cancels the work wherever it runs, moved or not: a
    /// reconcile cancelled when its plugin stops takes its call with it.
    pub async fn run<F>(
        &self,
        priority: Priority,
        demotion: Demotion,
        work: F,
    ) -> Result<F::Output, Unfinished>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if priority == Priority::Demoted {
            return Ok(self.spawn(Priority::Demoted, work).await?);
        }
        let demoted = self.handle(Priority::Demoted);
        let until_done = async move {
            let mut work = Box::pin(work);
            let until_demoted = std::future::poll_fn(|cx| match work.as_mut().poll(cx) {
                Poll::Ready(output) => Poll::Ready(Some(output)),
                Poll::Pending if demotion.requested() => Poll::Ready(None),
                Poll::Pending => Poll::Pending,
            });
            match pin!(until_demoted).await {
                Some(output) => Ok(output),
                None => {
                    demotion.record_move();
                    AbortOnDropHandle::new(demoted.spawn(work))
                        .await
                        .map_err(Unfinished::from)
                }
            }
        };
        if self.normal_threads().include_current() {
            AssertUnwindSafe(until_done)
                .catch_unwind()
                .await
                .unwrap_or_else(|panic| Err(Unfinished::Panicked(panic_message(panic.as_ref()))))
        } else {
            self.spawn(Priority::Normal, until_done).await?
        }
    }

    /// Its threads of normal priority.
    pub fn normal_threads(&self) -> NormalThreads {
        self.normal_threads
    }

    /// A handle to the runtime of `priority`.
    pub fn handle(&self, priority: Priority) -> Handle {
        self.runtime(priority).handle().clone()
    }

    fn runtime(&self, priority: Priority) -> &Runtime {
        match priority {
            Priority::Normal => &self.normal,
            Priority::Demoted => &self.demoted,
        }
        .as_ref()
        .expect("the guest runtimes live as long as the sandbox")
    }
}

impl Drop for GuestThreads {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside the host's runtime.
        for runtime in [self.normal.take(), self.demoted.take()]
            .into_iter()
            .flatten()
        {
            runtime.shutdown_background();
        }
    }
}

/// `SCHED_IDLE` where the platform has it, else the lowest nice value.
fn lowest_priority() {
    #[cfg(target_os = "linux")]
    {
        let param = libc::sched_param { sched_priority: 0 };
        // SAFETY: sched_setscheduler on the calling thread (pid 0) with a valid
        // parameter has no memory effects.
        if unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) } == 0 {
            return;
        }
        tracing::debug!(
            "could not make a demoted guest thread SCHED_IDLE: {}",
            std::io::Error::last_os_error()
        );
    }
    set_nice(19);
}

/// What a panic said, when it said it with a string.
fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|message| message.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_string())
}

fn set_nice(nice: i32) {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's own id has no memory effects.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, thread, nice) != 0 {
            tracing::debug!(
                "could not lower the priority of a guest thread: {}",
                std::io::Error::last_os_error()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn work_runs_on_a_guest_thread_at_lower_priority() {
        let threads = GuestThreads::new().unwrap();
        let (name, nice) = threads
            .spawn(Priority::Normal, async {
                let name = std::thread::current().name().map(str::to_string);
                // SAFETY: getpriority of the calling thread.
                let nice = unsafe {
                    libc::getpriority(
                        libc::PRIO_PROCESS,
                        libc::syscall(libc::SYS_gettid) as libc::id_t,
                    )
                };
                (name, nice)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("kubewasm-guest"));
        if cfg!(target_os = "linux") {
            assert!(nice >= GUEST_NICE, "nice {nice}");
        }
    }

    /// The name of the thread it runs on each time it is polled.
    fn thread_names(demotion: Demotion, polls: usize) -> impl Future<Output = Vec<String>> {
        let mut names = Vec::new();
        std::future::poll_fn(move |cx| {
            names.push(
                std::thread::current()
                    .name()
                    .unwrap_or_default()
                    .to_string(),
            );
            if names.len() == 2 {
                demotion.request();
            }
            if names.len() == polls {
                return Poll::Ready(std::mem::take(&mut names));
            }
            cx.waker().wake_by_ref();
            Poll::Pending
        })
    }

    /// Runs `ask` in a task on `threads`' own threads of normal priority, as a plugin's
    /// controller asks for its calls.
    async fn from_a_guest_thread<F, Fut>(threads: &Arc<GuestThreads>, ask: F) -> Fut::Output
    where
        F: FnOnce(Arc<GuestThreads>) -> Fut,
        Fut: Future + Send + 'static,
        Fut::Output: Send + 'static,
    {
        threads
            .handle(Priority::Normal)
            .spawn(ask(threads.clone()))
            .await
            .expect("the asking task finishes")
    }

    #[tokio::test]
    async fn work_moves_to_the_demoted_threads_at_its_first_wait_once_asked_to() {
        let threads = Arc::new(GuestThreads::new().unwrap());
        let moving = |threads: Arc<GuestThreads>| async move {
            let demotion = Demotion::default();
            let names = threads
                .run(
                    Priority::Normal,
                    demotion.clone(),
                    thread_names(demotion.clone(), 4),
                )
                .await
                .unwrap();
            (names, demotion.moved())
        };
        for (asked_from, (names, moved)) in [
            ("outside", moving(threads.clone()).await),
            (
                "a guest thread",
                from_a_guest_thread(&threads, moving).await,
            ),
        ] {
            assert_eq!(
                names,
                [
                    "kubewasm-guest",
                    "kubewasm-guest",
                    "kubewasm-guest-demoted",
                    "kubewasm-guest-demoted"
                ],
                "asked from {asked_from}"
            );
            assert!(moved, "asked from {asked_from}");
        }
    }

    #[tokio::test]
    async fn work_asked_for_from_a_guest_thread_runs_within_the_asking_task() {
        let threads = Arc::new(GuestThreads::new().unwrap());
        let task_of_work = |threads: Arc<GuestThreads>| async move {
            let work = async { tokio::task::id() };
            let ran_in = threads.run(Priority::Normal, Demotion::default(), work);
            (tokio::task::try_id(), ran_in.await.unwrap())
        };
        let (asking, working) = from_a_guest_thread(&threads, task_of_work).await;
        assert_eq!(asking, Some(working), "asked from a guest thread");
        let (asking, working) = task_of_work(threads.clone()).await;
        assert_ne!(
            asking,
            Some(working),
            "asked from outside: a task of its own"
        );
    }

    #[tokio::test]
    async fn a_panic_of_work_run_within_the_asking_task_is_returned_not_raised() {
        let threads = Arc::new(GuestThreads::new().unwrap());
        let result = from_a_guest_thread(&threads, |threads| async move {
            let work = async { panic!("deliberate panic") };
            threads
                .run(Priority::Normal, Demotion::default(), work)
                .await
        })
        .await;
        match result {
            Err(Unfinished::Panicked(message)) => assert_eq!(message, "deliberate panic"),
            other => panic!("expected the panic, got {other:?}"),
        }
    }

    /// Sets its flag when dropped.
    struct DropFlag(Arc<std::sync::atomic::AtomicBool>);

    impl Drop for DropFlag {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// Starts work that never ends through `run`, drops the run once the work has
    /// started on the thread it was headed for, and says whether the work was dropped
    /// (within a deadline: an aborted task is dropped by its own runtime).
    async fn cancelled_when_dropped(
        threads: Arc<GuestThreads>,
        priority: Priority,
        demotion: Demotion,
    ) -> (String, bool) {
        let dropped = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let flag = DropFlag(dropped.clone());
        let (started, on_thread) = tokio::sync::oneshot::channel();
        let work = async move {
            let _flag = flag;
            // A wait, at which a requested move happens.
            tokio::task::yield_now().await;
            let name = std::thread::current()
                .name()
                .unwrap_or_default()
                .to_string();
            let _ = started.send(name);
            std::future::pending::<()>().await;
        };
        let thread = tokio::select! {
            _ = threads.run(priority, demotion, work) => unreachable!("the work never ends"),
            name = on_thread => name.expect("the work started"),
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !dropped.load(Ordering::SeqCst) && std::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        (thread, dropped.load(Ordering::SeqCst))
    }

    #[tokio::test]
    async fn dropping_a_run_cancels_its_work_wherever_it_runs() {
        let threads = Arc::new(GuestThreads::new().unwrap());
        let moving = || {
            let demotion = Demotion::default();
            demotion.request();
            demotion
        };
        let cases = [
            (
                "moved, asked from a guest thread",
                from_a_guest_thread(&threads, move |threads| {
                    cancelled_when_dropped(threads, Priority::Normal, moving())
                })
                .await,
                "kubewasm-guest-demoted",
            ),
            (
                "moved, asked from outside",
                cancelled_when_dropped(threads.clone(), Priority::Normal, moving()).await,
                "kubewasm-guest-demoted",
            ),
            (
                "demoted from the start",
                cancelled_when_dropped(threads.clone(), Priority::Demoted, Demotion::default())
                    .await,
                "kubewasm-guest-demoted",
            ),
            (
                "at normal priority, asked from outside",
                cancelled_when_dropped(threads.clone(), Priority::Normal, Demotion::default())
                    .await,
                "kubewasm-guest",
            ),
        ];
        for (case, (thread, dropped), expected_thread) in cases {
            assert_eq!(thread, expected_thread, "{case}");
            assert!(
                dropped,
                "{case}: the work runs on after its run was dropped"
            );
        }
    }

    #[tokio::test]
    async fn work_not_asked_to_move_stays_where_it_started() {
        let threads = GuestThreads::new().unwrap();
        for priority in [Priority::Normal, Priority::Demoted] {
            let demotion = Demotion::default();
            let names = threads
                .run(priority, demotion.clone(), async {
                    tokio::task::yield_now().await;
                    std::thread::current()
                        .name()
                        .unwrap_or_default()
                        .to_string()
                })
                .await
                .unwrap();
            let expected = match priority {
                Priority::Normal => "kubewasm-guest",
                Priority::Demoted => "kubewasm-guest-demoted",
            };
            assert_eq!(names, expected);
            assert!(!demotion.moved());
        }
    }

    #[tokio::test]
    async fn demoted_work_runs_on_a_thread_of_its_own_at_idle_priority() {
        let threads = GuestThreads::new().unwrap();
        let (name, policy) = threads
            .spawn(Priority::Demoted, async {
                let name = std::thread::current().name().map(str::to_string);
                // SAFETY: sched_getscheduler of the calling thread.
                let policy = unsafe { libc::sched_getscheduler(0) };
                (name, policy)
            })
            .await
            .unwrap();
        assert_eq!(name.as_deref(), Some("kubewasm-guest-demoted"));
        if cfg!(target_os = "linux") {
            assert_eq!(policy, libc::SCHED_IDLE);
        }
    }
}
