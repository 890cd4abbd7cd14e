//! When to reconcile an object again: after success, a random 40-60 minutes; after
//! failure, per-object exponential backoff, random in [1, 2) s on the first failure,
//! doubling up to [128, 256) s, and reset by a success.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use rand::Rng;
use tokio::time::Instant;

/// The first failure's delay is random in [FIRST, 2 * FIRST).
const FIRST: Duration = Duration::from_secs(1);
/// Doublings after which the delay stops growing: [128, 256) s.
const MAX_DOUBLINGS: u32 = 7;
/// A failure record older than this is forgotten (its object was deleted or fixed
/// without a successful reconcile we saw).
const FORGET_AFTER: Duration = Duration::from_secs(30 * 60);
/// How often forgotten records are swept out (not on every failure: a plugin failing
/// on every one of thousands of objects would walk them all each time).
const SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Resync after success: random in [SUCCESS_MIN, SUCCESS_MAX).
const SUCCESS_MIN: Duration = Duration::from_secs(40 * 60);
const SUCCESS_MAX: Duration = Duration::from_secs(60 * 60);

#[derive(Debug, Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Failures {
    fn forgotten(&self, now: Instant) -> bool {
        now.duration_since(self.last) >= FORGET_AFTER
    }
}

#[derive(Debug)]
struct Records {
    by_uid: HashMap<String, Failures>,
    swept: Instant,
}

/// Per-object failure counts, keyed by object UID.
#[derive(Debug)]
pub struct Backoff {
    failures: Mutex<Records>,
}

impl Default for Backoff {
    fn default() -> Self {
        Self {
            failures: Mutex::new(Records {
                by_uid: HashMap::new(),
                swept: Instant::now(),
            }),
        }
    }
}

impl Backoff {
    /// Records a failure of `uid` and returns how long to wait before retrying.
    pub fn on_failure(&self, uid: &str) -> Duration {
        let now = Instant::now();
        let mut failures = self.failures.lock().expect("backoff poisoned");
        if now.duration_since(failures.swept) >= SWEEP_EVERY {
            failures.by_uid.retain(|_, record| !record.forgotten(now));
            failures.swept = now;
        }
        let fresh = Failures {
            count: 0,
            last: now,
        };
        let record = failures.by_uid.entry(uid.to_string()).or_insert(fresh);
        if record.forgotten(now) {
            *record = fresh;
        }
        let base = FIRST * 2u32.pow(record.count.min(MAX_DOUBLINGS));
        record.count = record.count.saturating_add(1);
        record.last = now;
        jitter(base, base * 2)
    }

    /// Forgets `uid`'s failures after a success.
    pub fn on_success(&self, uid: &str) {
        self.failures
            .lock()
            .expect("backoff poisoned")
            .by_uid
            .remove(uid);
    }

    /// Consecutive failures recorded for `uid`.
    pub fn failures(&self, uid: &str) -> u32 {
        self.failures
            .lock()
            .expect("backoff poisoned")
            .by_uid
            .get(uid)
            .filter(|record| !record.forgotten(Instant::now()))
            .map(|record| record.count)
            .unwrap_or(0)
    }
}

/// The default delay after a success.
pub fn after_success() -> Duration {
    jitter(SUCCESS_MIN, SUCCESS_MAX)
}

/// Uniformly random in [low, high), in whole milliseconds (timers have millisecond
/// resolution: a finer delay would be rounded up, possibly onto `high`).
fn jitter(low: Duration, high: Duration) -> Duration {
    Duration::from_millis(rand::rng().random_range(low.as_millis() as u64..high.as_millis() as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sleeps through `failures` consecutive failures on tokio's paused clock and
    /// returns the time each retry fired at.
    async fn retries(backoff: &Backoff, uid: &str, failures: u32) -> Vec<Duration> {
        let start = Instant::now();
        let mut fired = Vec::new();
        for _ in 0..failures {
            tokio::time::sleep(backoff.on_failure(uid)).await;
            fired.push(start.elapsed());
        }
        fired
    }

    #[tokio::test(start_paused = true)]
    async fn delays_double_from_one_second_to_a_ceiling_of_128_to_256() {
        let backoff = Backoff::default();
        for _ in 0..50 {
            let fired = retries(&backoff, "uid", 10).await;
            let mut previous = Duration::ZERO;
            for (attempt, at) in fired.into_iter().enumerate() {
                let base = 2u64.pow((attempt as u32).min(7));
                let delay = at - previous;
                assert!(
                    delay >= Duration::from_secs(base) && delay < Duration::from_secs(2 * base),
                    "retry {attempt} after {delay:?}, expected [{base}, {}) s",
                    2 * base
                );
                previous = at;
            }
            backoff.on_success("uid");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn success_resets_and_objects_back_off_independently() {
        let backoff = Backoff::default();
        retries(&backoff, "a", 5).await;
        assert_eq!(backoff.failures("a"), 5);
        let b = backoff.on_failure("b");
        assert!(
            b >= Duration::from_secs(1) && b < Duration::from_secs(2),
            "{b:?}"
        );
        backoff.on_success("a");
        let a = backoff.on_failure("a");
        assert!(
            a >= Duration::from_secs(1) && a < Duration::from_secs(2),
            "{a:?}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn old_failures_are_forgotten() {
        let backoff = Backoff::default();
        retries(&backoff, "gone", 4).await;
        tokio::time::sleep(FORGET_AFTER).await;
        backoff.on_failure("other");
        assert_eq!(backoff.failures("gone"), 0);
        let records = backoff.failures.lock().unwrap();
        assert!(!records.by_uid.contains_key("gone"), "swept out");
    }

    #[tokio::test(start_paused = true)]
    async fn an_object_failing_again_after_a_long_pause_starts_over() {
        let backoff = Backoff::default();
        retries(&backoff, "again", 4).await;
        // A sweep while it is still remembered, then past its time but before the next.
        tokio::time::sleep(FORGET_AFTER - SWEEP_EVERY / 2).await;
        backoff.on_failure("other");
        tokio::time::sleep(SWEEP_EVERY / 2).await;
        assert_eq!(backoff.failures("again"), 0, "forgotten");
        let delay = backoff.on_failure("again");
        assert!(delay < Duration::from_secs(2), "{delay:?}");
        assert_eq!(backoff.failures("again"), 1);
    }

    #[test]
    fn success_requeues_between_40_and_60_minutes() {
        for _ in 0..1000 {
            let delay = after_success();
            assert!(delay >= SUCCESS_MIN && delay < SUCCESS_MAX, "{delay:?}");
        }
    }
}
