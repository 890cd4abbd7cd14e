//! The threads guest code runs on: runtimes of their own, apart from the host's
//! watches and API calls, at a lower CPU priority. However busy the plugins are, the
//! host's own work (and the API server beside it) is scheduled first, and never waits
//! in a queue behind a guest's time slice. Each plugin's controller (kube-runtime's
//! scheduling and the host's side of its reconciles) runs here too, beside its calls:
//! a call then starts on the thread that asked for it, with no wake-up of another.
//!
//! Calls of plugins demoted (for running past their CPU budget, or breaking call after
//! call) run on threads of a second runtime at the lowest priority there is (Linux `SCHED_IDLE`): they get the
//! cores nothing else wants, and never queue in front of a call of a plugin that stays
//! within its budget.

use std::future::Future;

use tokio::runtime::{Builder, Handle, Runtime};
use tokio::task::JoinHandle;

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
    pub fn spawn<F>(&self, priority: Priority, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime(priority).spawn(work)
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
