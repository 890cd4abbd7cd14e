//! Guest log output (the `log` import, stdout and stderr) as tracing lines tagged with
//! the plugin and the object, rate-limited per plugin so that a flooding guest costs the
//! host little and drowns no one else's lines; and the limit on the host's own lines
//! about how the plugin's calls fare.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::rate::{LineAdmitted, LineLimit, TokenBucket};
use crate::reconciler::LogLevel;

/// Longest line kept; the rest of a longer line is cut.
pub const MAX_LINE_BYTES: usize = 4096;
/// Lines a second the host writes about one plugin's runs of broken calls beginning and
/// ending, sustained (a guest that breaks on most objects but not all begins and ends
/// such runs again and again); the rest go to the debug log.
const STREAK_LINES_PER_SECOND: u64 = 1;
/// Such lines at once.
const STREAK_LINES_BURST: u64 = 10;

/// Rate limit of one plugin's log output.
#[derive(Debug, Clone, Copy)]
pub struct LogRate {
    /// Sustained bytes per second.
    pub bytes_per_second: u64,
    /// Burst allowance in bytes.
    pub burst_bytes: u64,
}

impl Default for LogRate {
    fn default() -> Self {
        Self {
            bytes_per_second: 64 << 10,
            burst_bytes: 256 << 10,
        }
    }
}

/// One plugin's log sink, shared by all its calls.
#[derive(Debug)]
pub struct PluginLog {
    plugin: String,
    rate: LogRate,
    bucket: TokenBucket,
    notices: Mutex<DropNotices>,
    dropped_lines: AtomicU64,
    dropped_bytes: AtomicU64,
    dropped_unreported: AtomicU64,
    streak_lines: LineLimit,
}

/// When the log last said that lines were dropped, and how many since.
#[derive(Debug, Default)]
struct DropNotices {
    last: Option<Instant>,
    dropped_since: u64,
}

impl PluginLog {
    /// A sink for `plugin`'s lines.
    pub fn new(plugin: impl Into<String>, rate: LogRate) -> Self {
        Self {
            plugin: plugin.into(),
            rate,
            bucket: TokenBucket::new(rate.bytes_per_second, rate.burst_bytes),
            notices: Mutex::default(),
            dropped_lines: AtomicU64::new(0),
            dropped_bytes: AtomicU64::new(0),
            dropped_unreported: AtomicU64::new(0),
            streak_lines: LineLimit::new(STREAK_LINES_PER_SECOND, STREAK_LINES_BURST),
        }
    }

    /// The plugin's name.
    pub fn plugin(&self) -> &str {
        &self.plugin
    }

    /// Lines dropped by the rate limit so far.
    pub fn dropped_lines(&self) -> u64 {
        self.dropped_lines.load(Ordering::Relaxed)
    }

    /// Bytes dropped by the rate limit so far.
    pub fn dropped_bytes(&self) -> u64 {
        self.dropped_bytes.load(Ordering::Relaxed)
    }

    /// Whether one call's `output` was more than the rate limit ever lets through at
    /// once (its burst): not a chatty plugin but one flooding its log.
    pub fn flooded_by(&self, output: &CallOutput) -> bool {
        output.bytes() > self.rate.burst_bytes
    }

    /// Whether the host may write its next line about a run of broken calls beginning
    /// or ending.
    pub fn admit_streak_line(&self) -> LineAdmitted {
        self.streak_lines.admit()
    }

    /// Lines dropped since the last call of this method, for metrics.
    pub fn take_dropped_since_report(&self) -> u64 {
        self.dropped_unreported.swap(0, Ordering::Relaxed)
    }

    /// Emits one line about `object`, if the rate limit allows.
    pub fn line(&self, level: LogLevel, object: &str, line: &str) {
        let line = truncate(line.trim_end_matches(['\r', '\n']), MAX_LINE_BYTES);
        let cost = line.len().max(1) as u64;
        if !self.admit(cost) {
            return;
        }
        let line = escape_controls(line);
        let plugin = self.plugin.as_str();
        match level {
            LogLevel::Trace => tracing::trace!(target: "plugin", plugin, object, "{line}"),
            LogLevel::Debug => tracing::debug!(target: "plugin", plugin, object, "{line}"),
            LogLevel::Info => tracing::info!(target: "plugin", plugin, object, "{line}"),
            LogLevel::Warn => tracing::warn!(target: "plugin", plugin, object, "{line}"),
            LogLevel::Error => tracing::error!(target: "plugin", plugin, object, "{line}"),
        }
    }

    fn admit(&self, cost: u64) -> bool {
        if self.bucket.admit(cost) {
            return true;
        }
        self.dropped_lines.fetch_add(1, Ordering::Relaxed);
        self.dropped_unreported.fetch_add(1, Ordering::Relaxed);
        self.dropped_bytes.fetch_add(cost, Ordering::Relaxed);
        let mut notices = self.notices.lock().expect("log notices poisoned");
        notices.dropped_since += 1;
        let now = Instant::now();
        let notice_due = notices
            .last
            .is_none_or(|last| now.duration_since(last).as_secs() >= 10);
        if notice_due {
            tracing::warn!(
                plugin = self.plugin.as_str(),
                dropped_lines = notices.dropped_since,
                "plugin log output over its rate limit of {} bytes/s; lines dropped",
                self.rate.bytes_per_second
            );
            notices.last = Some(now);
            notices.dropped_since = 0;
        }
        false
    }
}

/// The log output of one call (stdout, stderr and the `log` import), in bytes, whether
/// the rate limit let it through or not.
#[derive(Debug, Clone, Default)]
pub struct CallOutput(Arc<AtomicU64>);

impl CallOutput {
    /// Counts `bytes` more.
    pub fn add(&self, bytes: usize) {
        self.0.fetch_add(bytes as u64, Ordering::Relaxed);
    }

    /// The bytes counted.
    pub fn bytes(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// `s` cut to at most `max` bytes on a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// `line` with its control characters (a newline that would forge a host log line, a
/// terminal escape sequence) written as escapes such as `\n` and `\u{1b}`; tabs stay.
fn escape_controls(line: &str) -> std::borrow::Cow<'_, str> {
    if !line.chars().any(|c| c.is_control() && c != '\t') {
        return std::borrow::Cow::Borrowed(line);
    }
    let mut escaped = String::with_capacity(line.len() + 8);
    for c in line.chars() {
        if c.is_control() && c != '\t' {
            escaped.extend(c.escape_default());
        } else {
            escaped.push(c);
        }
    }
    std::borrow::Cow::Owned(escaped)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_in_guest_lines_are_escaped() {
        assert!(matches!(
            escape_controls("plain\ttext é"),
            std::borrow::Cow::Borrowed("plain\ttext é")
        ));
        assert_eq!(
            escape_controls("ok\nWARN kubewasm: forged\u{1b}[31m"),
            "ok\\nWARN kubewasm: forged\\u{1b}[31m"
        );
    }

    #[test]
    fn output_over_the_rate_is_dropped_and_counted() {
        let log = PluginLog::new(
            "flood",
            LogRate {
                bytes_per_second: 1,
                burst_bytes: 100,
            },
        );
        for _ in 0..20 {
            log.line(LogLevel::Info, "ns/obj", "0123456789");
        }
        // The burst admits ten 10-byte lines; the refill in a few microseconds is nil.
        assert_eq!(log.dropped_lines(), 10);
        assert_eq!(log.dropped_bytes(), 100);
    }

    #[test]
    fn a_call_floods_the_log_with_more_than_the_whole_burst() {
        let log = PluginLog::new(
            "flood",
            LogRate {
                bytes_per_second: 1,
                burst_bytes: 100,
            },
        );
        let output = CallOutput::default();
        output.add(60);
        output.add(40);
        assert!(
            !log.flooded_by(&output),
            "the burst's worth is chatty at most"
        );
        output.add(1);
        assert!(log.flooded_by(&output));
    }

    #[test]
    fn truncation_respects_character_boundaries() {
        assert_eq!(truncate("héllo", 2), "h");
        assert_eq!(truncate("héllo", 3), "hé");
        assert_eq!(truncate("abc", 10), "abc");
    }
}
