//! The CPU time of the calling thread, and futures metered by it: what a piece of work
//! cost the machine, leaving out the time its thread was off the core (the operating
//! system running someone else) or the work was waiting.
//!
//! Meters nest: what a meter within another took (a guest's clock inside a reconcile's
//! poll, say) is left out of the enclosing one, so that no time is charged twice.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

thread_local! {
    /// How much of this thread's CPU time meters have taken so far (it only grows).
    static METERED: Cell<Duration> = const { Cell::new(Duration::ZERO) };
}

/// Records that `spent` of the calling thread's CPU time, just measured, is charged by
/// a meter of its own (a guest's clock), so that an enclosing [`run_measured`] leaves
/// it out.
pub fn record_metered(spent: Duration) {
    METERED.set(METERED.get().saturating_add(spent));
}

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

/// Runs `work` and returns the calling thread's CPU time spent in it, less what meters
/// within it took (zero if the platform has no thread clock).
pub fn run_measured<T>(work: impl FnOnce() -> T) -> (T, Duration) {
    let before = now();
    let metered_before = METERED.get();
    let result = work();
    let Some((before, after)) = before.zip(now()) else {
        return (result, Duration::ZERO);
    };
    let spent = after.saturating_sub(before);
    let within = METERED.get().saturating_sub(metered_before);
    METERED.set(metered_before.saturating_add(spent.max(within)));
    (result, spent.saturating_sub(within))
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

/// A future that hands the CPU time of each of its polls to `charge` as it goes: for
/// long-lived work (a plugin's controller task) whose cost is paid while it runs, not
/// once at the end.
pub struct Charging<F, C> {
    inner: Pin<Box<F>>,
    charge: C,
}

impl<F: Future, C: Fn(Duration)> Charging<F, C> {
    /// Charges the polls of `inner` to `charge`.
    pub fn new(inner: F, charge: C) -> Self {
        Self {
            inner: Box::pin(inner),
            charge,
        }
    }
}

impl<F: Future, C: Fn(Duration) + Unpin> Future for Charging<F, C> {
    type Output = F::Output;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        let (poll, spent) = run_measured(|| this.inner.as_mut().poll(cx));
        (this.charge)(spent);
        poll
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

    #[test]
    fn what_a_meter_within_takes_is_left_out_of_the_enclosing_one() {
        let before = now().expect("a thread clock");
        let mut inner = Duration::ZERO;
        let ((), outer) = run_measured(|| {
            spin(Duration::from_millis(20));
            inner = run_measured(|| spin(Duration::from_millis(40))).1;
        });
        let whole = now().expect("a thread clock").saturating_sub(before);
        assert!(inner > Duration::ZERO && outer > Duration::ZERO);
        // Charged twice, the inner spin would make the sum exceed the whole.
        assert!(
            outer + inner <= whole,
            "outer {outer:?} + inner {inner:?} > whole {whole:?}"
        );
    }

    #[tokio::test]
    async fn every_poll_is_charged_as_it_happens() {
        let charged = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(Charging::new(
            async move {
                spin(Duration::from_millis(20));
                rx.await.unwrap();
                spin(Duration::from_millis(20));
            },
            {
                let charged = charged.clone();
                move |spent| charged.lock().unwrap().push(spent)
            },
        ));
        tokio::time::timeout(Duration::from_secs(10), async {
            while charged.lock().unwrap().is_empty() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await
        .expect("the first poll was not charged");
        assert_eq!(
            charged.lock().unwrap().len(),
            1,
            "the first poll, charged before the end"
        );
        tx.send(()).unwrap();
        task.await.unwrap();
        let charged = charged.lock().unwrap();
        assert_eq!(charged.len(), 2);
        assert!(
            charged.iter().all(|spent| *spent > Duration::ZERO),
            "{charged:?}"
        );
    }
}
