//! A grant's `limits`: what one plugin's calls may spend, with defaults and maxima.

use std::time::Duration;

use serde::Deserialize;

use crate::sandbox::Limits;

/// Largest memory a grant may give one call.
pub const MAX_MEMORY_MIB: u64 = 1024;
/// Longest deadline a grant may give one call.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Most concurrent reconciles a grant may allow.
pub const MAX_CONCURRENCY: u16 = 256;
/// Default concurrent reconciles.
pub const DEFAULT_CONCURRENCY: u16 = 4;

/// Limits from a grant, with defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrantLimits {
    /// Memory per call, in MiB (default 64, at most 1024).
    #[serde(default = "default_memory", rename = "memoryMiB")]
    #[serde(deserialize_with = "memory_mib")]
    pub memory_mib: u64,
    /// Deadline per call, in milliseconds (default 1000, at most 60000).
    #[serde(default = "default_timeout", deserialize_with = "timeout_ms")]
    pub timeout_ms: u64,
    /// Reconciles running at once (default 4, at most 256).
    #[serde(default = "default_concurrency", deserialize_with = "concurrency")]
    pub concurrency: u16,
    /// Fuel per call (roughly, WebAssembly instructions); unmetered when absent.
    #[serde(default, deserialize_with = "fuel")]
    pub fuel: Option<u64>,
    /// CPU the plugin's guest code may use, across all its calls, in millicores
    /// (default 100, at most 16000).
    #[serde(default = "default_cpu", deserialize_with = "cpu_millicores")]
    pub cpu_millicores: u32,
}

impl Default for GrantLimits {
    fn default() -> Self {
        Self {
            memory_mib: default_memory(),
            timeout_ms: default_timeout(),
            concurrency: default_concurrency(),
            fuel: None,
            cpu_millicores: default_cpu(),
        }
    }
}

impl GrantLimits {
    /// The sandbox limits these give.
    pub fn sandbox(&self) -> Limits {
        Limits {
            memory_bytes: self.memory_mib << 20,
            timeout: Duration::from_millis(self.timeout_ms),
            fuel: self.fuel,
            cpu_millicores: self.cpu_millicores,
        }
    }
}

fn default_memory() -> u64 {
    crate::sandbox::DEFAULT_MEMORY_BYTES >> 20
}
fn default_timeout() -> u64 {
    crate::sandbox::DEFAULT_TIMEOUT.as_millis() as u64
}
fn default_concurrency() -> u16 {
    DEFAULT_CONCURRENCY
}
fn default_cpu() -> u32 {
    crate::sandbox::DEFAULT_CPU_MILLICORES
}

fn in_range<'de, D, T>(
    deserializer: D,
    field: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + std::fmt::Display + Copy,
{
    let value = T::deserialize(deserializer)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!(
            "{field} must be between {} and {}, not {value}",
            range.start(),
            range.end()
        )))
    }
}

fn memory_mib<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "memoryMiB", 1..=MAX_MEMORY_MIB)
}
fn timeout_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "timeoutMs", 10..=MAX_TIMEOUT_MS)
}
fn concurrency<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    in_range(d, "concurrency", 1..=MAX_CONCURRENCY)
}
fn cpu_millicores<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, "cpuMillicores", 10..=16_000)
}
fn fuel<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    in_range(d, "fuel", 1..=u64::MAX).map(Some)
}
