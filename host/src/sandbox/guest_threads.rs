//! The threads guest code runs on: a runtime of their own, apart from the host's
//! watches, controllers and API calls, at a lower CPU priority. However busy the
//! plugins are, the host's own work (and the API server beside it) is scheduled first,
//! and never waits in a queue behind a guest's time slice.

use std::future::Future;

use tokio::runtime::{Builder, Runtime};
use tokio::task::JoinHandle;

/// How much lower than the host's the priority of guest threads is (Linux nice).
pub const GUEST_NICE: i32 = 10;

/// The guest runtime.
#[derive(Debug)]
pub struct GuestThreads {
    runtime: Option<Runtime>,
}

impl GuestThreads {
    /// One worker thread per core.
    pub fn new() -> std::io::Result<Self> {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let runtime = Builder::new_multi_thread()
            .worker_threads(threads)
            .thread_name("kubewasm-guest")
            .on_thread_start(lower_priority)
            .enable_all()
            .build()?;
        Ok(Self {
            runtime: Some(runtime),
        })
    }

    /// Runs `work` on a guest thread.
    pub fn spawn<F>(&self, work: F) -> JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.runtime
            .as_ref()
            .expect("the guest runtime lives as long as the sandbox")
            .spawn(work)
    }
}

impl Drop for GuestThreads {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which is not allowed inside the host's runtime.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

fn lower_priority() {
    #[cfg(target_os = "linux")]
    // SAFETY: setpriority on the calling thread's own id has no memory effects.
    unsafe {
        let thread = libc::syscall(libc::SYS_gettid) as libc::id_t;
        if libc::setpriority(libc::PRIO_PROCESS, thread, GUEST_NICE) != 0 {
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
            .spawn(async {
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
}
