//! The CPU time of the calling thread, and futures metered by it: what a piece of work
//! cost the machine, leaving out the time its thread was off the core (the operating
//! system running someone else) or the work was waiting.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

/// The calling thread's CPU time (user and system), if the platform has a thread clock.
pub fn now() -> Option<Duration> {
    let mut time = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes into the timespec it is given, and nothing else.
    let status = unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut time) };
    (status == 0).then(|| {
        Duration::new(
            u64::try_from(time.tv_sec).unwrap_or(0),
            u32::try_from(time.tv_nsec).unwrap_or(0),
        )
    })
}

/// Runs `work` and returns the calling thread's CPU time spent in it (zero if the
/// platform has no thread clock).
pub fn run_measured<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let before = now();
    let result = work();
    let spent = match (before, now()) {
        (Some(before), Some(after)) => after.saturating_sub(before),
        _ => Duration::ZERO,
    };
    (result, spent)
}

/// A future that adds up the CPU time of its polls, whichever threads they run on;
/// it outputs the inner future's output and that time.
pub struct Metered<F> {
    inner: Pin<Box<F>>,
    spent: Duration,
}

impl<F: Future> Metered<F> {
    /// Meters `inner`.
    pub fn new(inner: F) -> Self {
        Self {
            inner: Box::pin(inner),
            spent: Duration::ZERO,
        }
    }
}

impl<F: Future> Future for Metered<F> {
    type Output = (F::Output, Duration);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let (poll, spent) = run_measured(|| this.inner.as_mut().poll(cx));
        this.spent += spent;
        poll.map(|output| (output, this.spent))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn spin(duration: Duration) {
        let started = Instant::now();
        while started.elapsed() < duration {
            std::hint::spin_loop();
        }
    }

    #[tokio::test]
    async fn polls_are_counted_and_waiting_is_not() {
        let (value, spent) = Metered::new(async {
            spin(Duration::from_millis(20));
            tokio::time::sleep(Duration::from_millis(300)).await;
            spin(Duration::from_millis(20));
            7
        })
        .await;
        assert_eq!(value, 7);
        // Spinning on a loaded machine may get less CPU than its wall time.
        assert!(
            spent > Duration::ZERO && spent < Duration::from_millis(300),
            "{spent:?}"
        );
    }
}
