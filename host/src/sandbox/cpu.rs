//! A plugin's CPU budget: a token bucket of guest running time shared by all its
//! calls. A guest that runs past its budget (a loop, heavy work on every object) is
//! made to sleep at its next epoch tick instead of spinning, so it cannot take the
//! host's cores from other plugins or from the API server beside it. Guests that run
//! for a few milliseconds now and then never notice.
//!
//! A plugin in debt (its calls ran past the budget) starts its next call only once the
//! debt is paid, so guests whose calls are all short are held to the budget too.
//!
//! Only time the guest actually runs is charged (instantiation included): not the time
//! it waits in a host call for the API server, nor the time it waits for the executor
//! after yielding.
//!
//! A plugin that runs into debt, or whose guest breaks call after call (traps, runs
//! out of memory or fuel, loops until its deadline, returns garbage, floods its log),
//! is also demoted
//! for [`DEMOTION`]: its calls run on the guest threads that get only the cores nothing
//! else wants (see `guest_threads`). The budget caps what a plugin may take; demotion
//! decides who waits when the cores are busy, so that a plugin spending its whole budget
//! on every object (a loop, a memory bomb, a panic) takes the time it is granted from
//! idle cores, not from the API server and the plugins that stay within their burst.
//! While its guest keeps breaking, a plugin is held to [`BROKEN_SHARE`] of its budget as
//! well.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::thread_cpu;

/// How much guest time may be spent at once before the rate applies.
const BURST: Duration = Duration::from_millis(200);

/// How long a plugin stays demoted after it last ran into debt (or broke
/// [`BROKEN_STREAK`] calls in a row). Long against the burst (a plugin earns its burst
/// back in 2 s at 100 millicores), so that a plugin in debt on every burst stays
/// demoted, instead of taking a burst at full priority each time it has earned one.
pub const DEMOTION: Duration = Duration::from_secs(10);

/// Calls in a row whose guest broke (see [`GuestFared::Broke`]) that demote a plugin: a
/// guest that breaks on every object, not one bad object among good ones, whose other
/// objects would otherwise wait at idle priority.
pub const BROKEN_STREAK: u32 = 4;

/// The share of its budget a plugin keeps while its guest breaks call after call
/// ([`BROKEN_STREAK`] calls in a row or more), until a call comes through: a guest that
/// traps on every object gets nothing done with the rest of the budget, which idle cores
/// on a busy machine are better without.
pub const BROKEN_SHARE: f64 = 0.25;

/// How a call's guest fared, for [`CpuBudget::record_call`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestFared {
    /// It trapped, ran out of memory or fuel, was interrupted at its deadline running
    /// its own code (a loop), returned something that could not be lifted, or flooded
    /// its log (more output in the call than the log rate's whole burst).
    Broke,
    /// It returned a result (success or a reported error).
    CameThrough,
    /// The call says nothing about the guest: it reached its deadline waiting in a host
    /// call (as likely the API server's doing), or the host could not run it.
    Unknown,
}

/// A run of broken calls beginning or ending (see [`CpuBudget::record_call`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokenStreak {
    /// The guest broke on [`BROKEN_STREAK`] calls in a row.
    Began,
    /// A call came through after such a run.
    Ended,
}

/// The budget of one plugin.
#[derive(Debug)]
pub struct CpuBudget {
    /// Guest seconds per wall-clock second (cores).
    cores: f64,
    bucket: Mutex<Bucket>,
    demotion: Duration,
}

#[derive(Debug)]
struct Bucket {
    /// Seconds of guest time available; negative is debt.
    seconds: f64,
    refilled: Instant,
    /// Until when the plugin is demoted, if it ran into debt or broke lately.
    demoted_until: Option<Instant>,
    /// Calls in a row whose guest broke.
    broken_streak: u32,
}

impl Bucket {
    fn is_breaking(&self) -> bool {
        self.broken_streak >= BROKEN_STREAK
    }

    /// Guest seconds earned per second: the plugin's cores, or [`BROKEN_SHARE`] of them
    /// while its guest keeps breaking.
    fn rate(&self, cores: f64) -> f64 {
        if self.is_breaking() {
            cores * BROKEN_SHARE
        } else {
            cores
        }
    }
}

impl CpuBudget {
    /// A budget of `millicores` (1000 is one core).
    pub fn new(millicores: u32) -> Self {
        Self::with_demotion(millicores, DEMOTION)
    }

    fn with_demotion(millicores: u32, demotion: Duration) -> Self {
        Self {
            cores: f64::from(millicores) / 1000.0,
            bucket: Mutex::new(Bucket {
                seconds: BURST.as_secs_f64(),
                refilled: Instant::now(),
                demoted_until: None,
                broken_streak: 0,
            }),
            demotion,
        }
    }

    /// Charges `ran` of guest running time; returns how long the guest must pause to
    /// stay within the budget, if at all.
    pub fn charge(&self, ran: Duration) -> Option<Duration> {
        let mut bucket = self.bucket.lock().expect("cpu budget poisoned");
        let now = self.refill(&mut bucket);
        bucket.seconds -= ran.as_secs_f64();
        let in_debt = bucket.seconds < 0.0;
        if in_debt {
            bucket.demoted_until = Some(now + self.demotion);
        }
        in_debt.then(|| Duration::from_secs_f64(-bucket.seconds / bucket.rate(self.cores)))
    }

    /// Adds what the plugin earned since the bucket was last refilled; returns now.
    fn refill(&self, bucket: &mut Bucket) -> Instant {
        let now = Instant::now();
        let earned = now.duration_since(bucket.refilled).as_secs_f64() * bucket.rate(self.cores);
        bucket.seconds = (bucket.seconds + earned).min(BURST.as_secs_f64());
        bucket.refilled = now;
        now
    }

    /// Records how a call's guest fared. [`BROKEN_STREAK`] broken calls in a row demote
    /// the plugin for [`DEMOTION`] from now, as if it had run into debt, and hold it to
    /// [`BROKEN_SHARE`] of its budget until a call comes through; calls that say nothing
    /// about the guest neither add to such a run nor end it. Says when the call began or
    /// ended a run.
    pub fn record_call(&self, guest: GuestFared) -> Option<BrokenStreak> {
        let mut bucket = self.bucket.lock().expect("cpu budget poisoned");
        // What the plugin earned until now, it earned at the rate it had until now.
        let now = self.refill(&mut bucket);
        let was_broken = bucket.is_breaking();
        match guest {
            GuestFared::Unknown => None,
            GuestFared::CameThrough => {
                bucket.broken_streak = 0;
                was_broken.then_some(BrokenStreak::Ended)
            }
            GuestFared::Broke => {
                bucket.broken_streak = bucket.broken_streak.saturating_add(1);
                if bucket.broken_streak < BROKEN_STREAK {
                    return None;
                }
                bucket.demoted_until = Some(now + self.demotion);
                (!was_broken).then_some(BrokenStreak::Began)
            }
        }
    }

    /// Whether the plugin's guest broke on its last [`BROKEN_STREAK`] calls or more
    /// that said how it fared, and is held to [`BROKEN_SHARE`] of its budget.
    pub fn is_breaking(&self) -> bool {
        self.bucket
            .lock()
            .expect("cpu budget poisoned")
            .is_breaking()
    }

    /// Whether the plugin ran into debt (or was demoted) within the last [`DEMOTION`],
    /// so that its calls run demoted.
    pub fn is_demoted(&self) -> bool {
        let bucket = self.bucket.lock().expect("cpu budget poisoned");
        bucket
            .demoted_until
            .is_some_and(|until| Instant::now() < until)
    }

    /// How long a new call must wait before it starts, if the plugin is in debt.
    ///
    /// Calls too short to reach an epoch tick (a guest that traps at once, on every
    /// object) are paused only when a tick happens to land inside one; without this,
    /// their debt would be paid in rare lumps rather than call by call.
    pub fn debt(&self) -> Option<Duration> {
        self.charge(Duration::ZERO)
    }
}

/// `duration` in nanoseconds, saturating.
pub fn nanos(duration: Duration) -> u64 {
    u64::try_from(duration.as_nanos()).unwrap_or(u64::MAX)
}

/// Measures how long one call's guest has been running, between the points where it
/// stops (a host call, a yield) and resumes: the CPU time of the thread it ran on, so
/// that time the operating system gave the core to someone else (the API server, the
/// host, other guests) is not charged to the guest.
#[derive(Debug, Clone)]
pub struct GuestClock(Arc<Mutex<ClockState>>);

#[derive(Debug)]
struct ClockState {
    running_since: Option<Mark>,
    ran: Duration,
}

/// A point in a guest's running time.
#[derive(Debug)]
struct Mark {
    thread: std::thread::ThreadId,
    thread_cpu: Option<Duration>,
    wall: Instant,
}

impl Mark {
    fn now() -> Self {
        Self {
            thread: std::thread::current().id(),
            thread_cpu: thread_cpu::now(),
            wall: Instant::now(),
        }
    }

    /// The running time since the mark: the thread's CPU time when still on the same
    /// thread (the usual case: a guest runs within one poll), wall time otherwise.
    /// Thread time is recorded as metered, so that the poll around it (a reconcile, when
    /// the call runs within its task) does not charge it again.
    fn elapsed(&self) -> Duration {
        match (self.thread_cpu, thread_cpu::now()) {
            (Some(then), Some(now)) if self.thread == std::thread::current().id() => {
                let ran = now.saturating_sub(then);
                thread_cpu::record_metered(ran);
                ran
            }
            _ => self.wall.elapsed(),
        }
    }
}

impl GuestClock {
    /// A clock that starts running now.
    pub fn start() -> Self {
        Self(Arc::new(Mutex::new(ClockState {
            running_since: Some(Mark::now()),
            ran: Duration::ZERO,
        })))
    }

    fn state(&self) -> std::sync::MutexGuard<'_, ClockState> {
        self.0.lock().expect("guest clock poisoned")
    }

    /// The guest stopped running.
    pub fn stop(&self) {
        let mut state = self.state();
        if let Some(since) = state.running_since.take() {
            state.ran += since.elapsed();
        }
    }

    /// The guest runs again.
    pub fn resume(&self) {
        self.state().running_since = Some(Mark::now());
    }

    /// Runs the clock from now if it is stopped (work charged to the guest follows).
    pub fn keep_running(&self) {
        let mut state = self.state();
        if state.running_since.is_none() {
            state.running_since = Some(Mark::now());
        }
    }

    /// Stops the clock and returns the running time not yet taken.
    pub fn take_ran(&self) -> Duration {
        self.stop();
        std::mem::take(&mut self.state().ran)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_guest_within_its_burst_never_waits_and_one_past_it_does() {
        let budget = CpuBudget::new(500);
        for _ in 0..20 {
            assert_eq!(budget.charge(Duration::from_millis(9)), None);
        }
        // 180 ms of the 200 ms burst spent; 30 ms more is 10 ms of debt, earned back at
        // half speed.
        let wait = budget
            .charge(Duration::from_millis(30))
            .expect("over budget");
        assert!(
            wait > Duration::from_millis(15) && wait <= Duration::from_millis(21),
            "{wait:?}"
        );
    }

    #[test]
    fn a_plugin_is_demoted_from_its_first_debt_until_the_demotion_has_passed() {
        let budget = CpuBudget::with_demotion(100, Duration::from_millis(300));
        assert!(budget.charge(Duration::from_millis(150)).is_none());
        assert!(!budget.is_demoted(), "within its burst");
        assert!(budget.charge(Duration::from_millis(200)).is_some());
        assert!(budget.is_demoted(), "in debt");
        // The debt (150 ms at 100 millicores) is paid after 1.5 s, the demotion ends
        // after 0.3 s: demotion does not wait for the debt to be paid.
        let demoted_since = Instant::now();
        while budget.is_demoted() {
            assert!(
                demoted_since.elapsed() < Duration::from_secs(5),
                "still demoted"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        assert!(
            budget.debt().is_some(),
            "still in debt when the demotion ends"
        );
        assert!(budget.is_demoted(), "and a call in debt demotes it again");
    }

    #[test]
    fn a_guest_that_keeps_breaking_earns_its_budget_back_slower_until_a_call_comes_through() {
        let budget = CpuBudget::new(1000);
        // A second in debt: a second to pay at the full rate of one core.
        assert!(budget.charge(Duration::from_millis(1200)).is_some());
        let full_rate = budget.debt().expect("in debt");
        assert!(full_rate <= Duration::from_secs(1), "{full_rate:?}");
        for broken in 1..BROKEN_STREAK {
            assert_eq!(
                budget.record_call(GuestFared::Broke),
                None,
                "{broken} broken"
            );
        }
        assert_eq!(
            budget.record_call(GuestFared::Broke),
            Some(BrokenStreak::Began)
        );
        assert!(budget.is_demoted());
        // The same debt (less what a moment earned) at a quarter of the rate. Allowing
        // 250 ms for a busy machine between the two.
        let cut = budget.debt().expect("in debt");
        assert!(cut >= Duration::from_secs(3), "{cut:?}");
        assert_eq!(
            budget.record_call(GuestFared::Broke),
            None,
            "the streak goes on"
        );
        assert_eq!(
            budget.record_call(GuestFared::Unknown),
            None,
            "a deadline does not end it"
        );
        assert!(budget.debt().expect("in debt") >= Duration::from_secs(2));
        assert_eq!(
            budget.record_call(GuestFared::CameThrough),
            Some(BrokenStreak::Ended)
        );
        let restored = budget.debt().expect("in debt");
        assert!(restored <= full_rate, "{restored:?}");
        assert_eq!(budget.record_call(GuestFared::CameThrough), None);
    }

    /// Keeps the calling thread busy for `duration` of wall time.
    fn spin(duration: Duration) {
        let started = Instant::now();
        while started.elapsed() < duration {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn the_clock_counts_running_time_and_leaves_out_host_calls() {
        let clock = GuestClock::start();
        spin(Duration::from_millis(20)); // the guest running
        clock.stop();
        std::thread::sleep(Duration::from_millis(500)); // a host call
        clock.resume();
        let ran = clock.take_ran();
        // Had the host call been counted, the clock would show at least 520 ms. (Spinning
        // on a loaded machine may get less than 20 ms of CPU.)
        assert!(
            ran > Duration::ZERO && ran < Duration::from_millis(500),
            "{ran:?}"
        );
        assert_eq!(clock.take_ran(), Duration::ZERO, "taken, and stopped");
    }

    #[test]
    fn keep_running_restarts_a_stopped_clock_and_leaves_a_running_one_alone() {
        let clock = GuestClock::start();
        spin(Duration::from_millis(30));
        clock.keep_running();
        assert!(
            clock.take_ran() >= Duration::from_millis(1),
            "the time before keep_running is kept"
        );
        clock.keep_running(); // stopped by take_ran: runs again
        spin(Duration::from_millis(30));
        assert!(
            clock.take_ran() >= Duration::from_millis(1),
            "and counts on"
        );
    }

    #[test]
    fn a_guests_running_time_is_left_out_of_the_poll_around_it() {
        let before = thread_cpu::now().expect("a thread clock");
        let mut ran = Duration::ZERO;
        let ((), host) = thread_cpu::run_measured(|| {
            spin(Duration::from_millis(20)); // the host's side of a reconcile
            let clock = GuestClock::start();
            spin(Duration::from_millis(40)); // the guest, called within its task
            ran = clock.take_ran();
        });
        let whole = thread_cpu::now()
            .expect("a thread clock")
            .saturating_sub(before);
        assert!(ran > Duration::ZERO && host > Duration::ZERO);
        assert!(
            host + ran <= whole,
            "host {host:?} + guest {ran:?} > whole {whole:?}: charged twice"
        );
    }

    #[test]
    fn time_the_thread_does_not_run_is_not_charged() {
        let clock = GuestClock::start();
        // The thread off its core (here: asleep), as when the OS runs someone else.
        std::thread::sleep(Duration::from_millis(300));
        let ran = clock.take_ran();
        assert!(ran < Duration::from_millis(100), "{ran:?}");
        let ((), busy) = thread_cpu::run_measured(|| spin(Duration::from_millis(30)));
        assert!(busy > Duration::ZERO, "spinning is charged");
    }
}
