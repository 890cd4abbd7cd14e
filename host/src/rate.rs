//! Rate limits: a token bucket, behind a plugin's log output and its Events, and the
//! limit on the lines the host itself writes about each plugin's failures.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

// tokio's clock is the system's, except in tests that pause it.
use tokio::time::Instant;

/// Admits work at `rate` units per second, with bursts of up to `burst` units.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate: u64, burst: u64) -> Self {
        Self {
            rate: rate as f64,
            burst: burst as f64,
            state: Mutex::new(State {
                tokens: burst as f64,
                refilled: Instant::now(),
            }),
        }
    }

    /// Takes one unit, now or, when the bucket is empty, as soon as one is earned, if
    /// that is within `max_wait`: returns how long the caller must wait before it acts
    /// (zero when a unit was there), or `None` (nothing taken) when it would have to
    /// wait longer. Units taken ahead are owed: callers after it wait their turn.
    pub fn reserve(&self, max_wait: Duration) -> Option<Duration> {
        let mut state = self.refilled();
        let wait = Duration::from_secs_f64(((1.0 - state.tokens) / self.rate).max(0.0));
        if wait > max_wait {
            return None;
        }
        state.tokens -= 1.0;
        Some(wait)
    }

    /// Takes `cost` units if that many are available.
    pub fn admit(&self, cost: u64) -> bool {
        let mut state = self.refilled();
        if state.tokens >= cost as f64 {
            state.tokens -= cost as f64;
            true
        } else {
            false
        }
    }

    /// The state, with what was earned since it was last refilled added.
    fn refilled(&self) -> MutexGuard<'_, State> {
        let mut state = self.state.lock().expect("token bucket poisoned");
        let now = Instant::now();
        let earned = now.duration_since(state.refilled).as_secs_f64() * self.rate;
        state.tokens = (state.tokens + earned).min(self.burst);
        state.refilled = now;
        state
    }
}

/// What [`LineLimit::admit`] allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineAdmitted {
    /// Write the line, and say how many were held back since the last one written.
    Write {
        /// Lines held back since the last one written.
        held_back: u64,
    },
    /// Hold this line back: the first since one was written, so say that from here on
    /// lines are held back.
    FirstHeldBack,
    /// Hold this line back.
    HeldBack,
}

/// Lines the host writes for each failure of one plugin: at most `rate` a second with
/// bursts of `burst`, the rest held back and counted, so that a plugin failing on
/// thousands of objects cannot flood the host's log.
#[derive(Debug)]
pub struct LineLimit {
    bucket: TokenBucket,
    held_back: AtomicU64,
}

impl LineLimit {
    /// A limit with its whole burst available.
    pub fn new(rate: u64, burst: u64) -> Self {
        Self {
            bucket: TokenBucket::new(rate, burst),
            held_back: AtomicU64::new(0),
        }
    }

    /// Whether the next line may be written.
    pub fn admit(&self) -> LineAdmitted {
        if self.bucket.admit(1) {
            LineAdmitted::Write {
                held_back: self.take_held_back(),
            }
        } else if self.held_back.fetch_add(1, Ordering::Relaxed) == 0 {
            LineAdmitted::FirstHeldBack
        } else {
            LineAdmitted::HeldBack
        }
    }

    /// Lines held back since the last one written; counting starts again.
    pub fn take_held_back(&self) -> u64 {
        self.held_back.swap(0, Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_burst_is_admitted_and_what_exceeds_it_is_not() {
        // A rate so low that nothing refills during the test.
        let bucket = TokenBucket::new(1, 10);
        assert!(bucket.admit(4));
        assert!(bucket.admit(6));
        assert!(!bucket.admit(1));
    }

    #[tokio::test(start_paused = true)]
    async fn a_reservation_waits_its_turn_within_its_limit_or_takes_nothing() {
        let bucket = TokenBucket::new(1, 2);
        assert_eq!(bucket.reserve(Duration::ZERO), Some(Duration::ZERO));
        assert_eq!(bucket.reserve(Duration::ZERO), Some(Duration::ZERO));
        assert_eq!(bucket.reserve(Duration::from_millis(500)), None);
        assert_eq!(
            bucket.reserve(Duration::from_secs(2)),
            Some(Duration::from_secs(1))
        );
        // The unit owed above: the next caller waits a second longer.
        assert_eq!(bucket.reserve(Duration::from_millis(1500)), None);
        assert_eq!(
            bucket.reserve(Duration::from_secs(3)),
            Some(Duration::from_secs(2))
        );
        // A second later one unit is earned: the debt is one unit less.
        tokio::time::advance(Duration::from_secs(1)).await;
        assert_eq!(
            bucket.reserve(Duration::from_secs(3)),
            Some(Duration::from_secs(2))
        );
    }

    #[test]
    fn lines_over_the_limit_are_held_back_and_counted() {
        let lines = LineLimit::new(1, 2);
        let admitted: Vec<_> = (0..5).map(|_| lines.admit()).collect();
        assert_eq!(
            admitted,
            [
                LineAdmitted::Write { held_back: 0 },
                LineAdmitted::Write { held_back: 0 },
                LineAdmitted::FirstHeldBack,
                LineAdmitted::HeldBack,
                LineAdmitted::HeldBack,
            ]
        );
        assert_eq!(lines.take_held_back(), 3);
        assert_eq!(lines.take_held_back(), 0);
    }

    #[test]
    fn the_next_line_written_says_how_many_were_held_back() {
        // A line every 50 ms: the second comes sooner, and the third after one is earned.
        let lines = LineLimit::new(20, 1);
        assert_eq!(lines.admit(), LineAdmitted::Write { held_back: 0 });
        assert_eq!(lines.admit(), LineAdmitted::FirstHeldBack);
        std::thread::sleep(std::time::Duration::from_millis(60));
        assert_eq!(lines.admit(), LineAdmitted::Write { held_back: 1 });
    }
}
