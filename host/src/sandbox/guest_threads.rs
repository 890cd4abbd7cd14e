//! The threads guest code runs on: runtimes of their own, apart from the host's
//! watches and API calls, at a lower CPU priority. However busy the plugins are, the
//! host's own work (and the API server beside it) is scheduled first, and never waits
//! in a queue behind a guest's time slice. Each plugin's controller (kube-runtime's
//! scheduling and the host's side of its reconciles) runs here too, beside its calls:
//! a call then starts on the thread that asked for it, with no wake-up of another.
//!
//! Calls of plugins demoted (for running past their CPU budget, or breaking call after
//! call) run on threads of a second runtime at the lowest priority there is (Linux
//! `SCHED_IDLE`): they get the cores nothing else wants, and never queue in front of a
//! call of a plugin that stays within its budget. A call that started before its plugin
//! was demoted moves there at its next pause (see [`Demotion`]), rather than spending
//! the rest of its budget at normal priority.

use std::future::Future;
use std::pin::pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::task::Poll;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::{JoinError, JoinHandle};

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

/// The guest runtimes, one per [`Priority`].
#[derive(Debug)]
pub struct GuestThreads {
    normal: Option<Runtime>,
    demoted: Option<Runtime>,
}

impl GuestThreads {
    /// One worker thread per core at each priority.
    pub fn new() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let runtime = |name: &str, at_priority: fn()| {
            Builder::new_multi_thread()
                .worker_threads(threads)
                .thread_name(name)
                .on_thread_start(at_priority)
                .enable_all()
                .build()
        };
        Ok(Self {
            normal: Some(runtime("kubewasm-guest", lower_priority)?),
            demoted: Some(runtime("kubewasm-guest-demoted", lowest_priority)?),
        })
    }

    /// Runs `work` on a guest thread of `priority`. Spawned from a thread of that
    /// runtime, it is queued on the spawning thread, with no wake-up of another.
    fn spawn<F>(&self, priority: Priority, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime(priority).spawn(work)
    }

    /// Runs `work` on a guest thread of `priority` to the end. Work started at
    /// [`Priority::Normal`] moves to the demoted threads the first time it waits after
    /// `demotion` was requested, and finishes there.
    pub async fn run<F>(
        &self,
        priority: Priority,
        demotion: Demotion,
        work: F,
    ) -> Result<F::Output, JoinError>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        if priority == Priority::Demoted {
            return self.spawn(Priority::Demoted, work).await;
        }
        let demoted = self.handle(Priority::Demoted);
        self.spawn(Priority::Normal, async move {
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
                    demoted.spawn(work).await
                }
            }
        })
        .await?
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

fn lower_priority() {
    set_nice(GUEST_NICE);
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

    #[tokio::test]
    async fn work_moves_to_the_demoted_threads_at_its_first_wait_once_asked_to() {
        let threads = GuestThreads::new().unwrap();
        let demotion = Demotion::default();
        let names = threads
            .run(
                Priority::Normal,
                demotion.clone(),
                thread_names(demotion.clone(), 4),
            )
            .await
            .unwrap();
        assert_eq!(
            names,
            [
                "kubewasm-guest",
                "kubewasm-guest",
                "kubewasm-guest-demoted",
                "kubewasm-guest-demoted"
            ]
        );
        assert!(demotion.moved());
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
