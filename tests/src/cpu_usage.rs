//! CPU time used by the parts of an end-to-end round: the API server, etcd and this
//! process (the host), read from `/proc`, so that a benchmark can say where a slower
//! round's time went.

use std::path::Path;

/// CPU seconds (user and system) used so far, by part.
#[derive(Debug, Clone, Copy, Default)]
pub struct CpuSeconds {
    /// Every `kube-apiserver` process on the machine.
    pub api_server: f64,
    /// Every `etcd` process on the machine.
    pub etcd: f64,
    /// This process: the host, its guests and the benchmark's own client.
    pub host: f64,
}

impl CpuSeconds {
    /// The CPU time used until now.
    pub fn now() -> Self {
        let mut usage = Self {
            host: process_seconds(Path::new("/proc/self/stat")).map_or(0.0, |(_, s)| s),
            ..Self::default()
        };
        let Ok(processes) = std::fs::read_dir("/proc") else {
            return usage;
        };
        for process in processes.flatten() {
            match process_seconds(&process.path().join("stat")) {
                Some((name, seconds)) if name == "kube-apiserver" => usage.api_server += seconds,
                Some((name, seconds)) if name == "etcd" => usage.etcd += seconds,
                _ => {}
            }
        }
        usage
    }

    /// The CPU time used since `earlier`.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            api_server: self.api_server - earlier.api_server,
            etcd: self.etcd - earlier.etcd,
            host: self.host - earlier.host,
        }
    }

    /// All parts together.
    pub fn total(&self) -> f64 {
        self.api_server + self.etcd + self.host
    }
}

impl std::fmt::Display for CpuSeconds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "API server {:.2} s, etcd {:.2} s, host {:.2} s",
            self.api_server, self.etcd, self.host
        )
    }
}

/// A process's name and CPU seconds, from its `/proc/PID/stat`.
fn process_seconds(stat: &Path) -> Option<(String, f64)> {
    let stat = std::fs::read_to_string(stat).ok()?;
    // The name is in parentheses and may itself hold spaces or parentheses.
    let (open, close) = (stat.find('(')?, stat.rfind(')')?);
    let name = &stat[open + 1..close];
    let fields: Vec<&str> = stat[close + 2..].split_whitespace().collect();
    // utime and stime, fields 14 and 15 of the line (11 and 12 after the name).
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    Some((name.to_string(), ticks / clock_ticks_per_second()))
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf reads a system constant and has no other effect.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_time_is_measured() {
        let before = CpuSeconds::now();
        let started = std::time::Instant::now();
        let mut spin = 0u64;
        while started.elapsed() < std::time::Duration::from_millis(100) {
            spin = std::hint::black_box(spin.wrapping_add(1));
        }
        let used = CpuSeconds::now().since(&before);
        assert!(used.host > 0.0, "{used}");
    }
}
