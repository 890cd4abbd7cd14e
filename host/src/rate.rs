//! A token bucket: the rate limit behind a plugin's log output and its Events.

use std::sync::Mutex;
use std::time::Instant;

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

    /// Takes `cost` units if that many are available.
    pub fn admit(&self, cost: u64) -> bool {
        let mut state = self.state.lock().expect("token bucket poisoned");
        let now = Instant::now();
        let earned = now.duration_since(state.refilled).as_secs_f64() * self.rate;
        state.tokens = (state.tokens + earned).min(self.burst);
        state.refilled = now;
        if state.tokens >= cost as f64 {
            state.tokens -= cost as f64;
            true
        } else {
            false
        }
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
}
