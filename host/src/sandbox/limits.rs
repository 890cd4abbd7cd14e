//! What one call may use: memory, time and fuel.

use std::time::Duration;

/// Default memory cap per call.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 << 20;
/// Default deadline per call.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(1);
/// Default CPU budget of a plugin, across all its calls.
pub const DEFAULT_CPU_MILLICORES: u32 = 100;

/// Per-plugin limits on every call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// The most linear memory (all memories of the instance together) a call may use.
    pub memory_bytes: u64,
    /// How long a call may take, guest code and host calls together.
    pub timeout: Duration,
    /// Fuel per call (roughly, WebAssembly instructions), if metered.
    pub fuel: Option<u64>,
    /// The plugin's CPU budget across all its calls, in millicores.
    pub cpu_millicores: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            memory_bytes: DEFAULT_MEMORY_BYTES,
            timeout: DEFAULT_TIMEOUT,
            fuel: None,
            cpu_millicores: DEFAULT_CPU_MILLICORES,
        }
    }
}

/// The error a failed memory growth traps with; recognised when classifying traps.
#[derive(Debug, thiserror::Error)]
#[error("memory limit of {limit_bytes} bytes reached (growing to {desired_bytes} bytes)")]
pub struct MemoryLimitHit {
    /// The cap.
    pub limit_bytes: u64,
    /// What the guest asked for.
    pub desired_bytes: u64,
}

/// Enforces the memory cap across every memory of one instance, trapping on a failed
/// grow (a guest that cannot allocate cannot do anything useful, and a trap names the
/// cause where a failed `memory.grow` would surface as an opaque abort).
#[derive(Debug)]
pub struct CallLimiter {
    limit_bytes: u64,
    used_bytes: u64,
}

impl CallLimiter {
    /// A limiter for `limit_bytes` of memory.
    pub fn new(limit_bytes: u64) -> Self {
        Self {
            limit_bytes,
            used_bytes: 0,
        }
    }
}

const MAX_TABLE_ELEMENTS: usize = 1_000_000;

impl wasmtime::ResourceLimiter for CallLimiter {
    fn memory_growing(
        &mut self,
        current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        let growth = (desired - current) as u64;
        let total = self.used_bytes + growth;
        if total > self.limit_bytes {
            return Err(MemoryLimitHit {
                limit_bytes: self.limit_bytes,
                desired_bytes: total,
            }
            .into());
        }
        self.used_bytes = total;
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= MAX_TABLE_ELEMENTS)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wasmtime::ResourceLimiter;

    #[test]
    fn the_cap_counts_every_memory_of_the_instance() {
        let mut limiter = CallLimiter::new(100);
        assert!(limiter.memory_growing(0, 60, None).unwrap());
        let err = limiter.memory_growing(0, 60, None).unwrap_err();
        let hit = err
            .downcast_ref::<MemoryLimitHit>()
            .expect("a MemoryLimitHit");
        assert_eq!((hit.limit_bytes, hit.desired_bytes), (100, 120));
        assert!(limiter.memory_growing(60, 100, None).unwrap());
    }
}
