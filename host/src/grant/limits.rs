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
/// Default sustained rate of a plugin's requests to the API server, a second.
pub const DEFAULT_API_REQUESTS_PER_SECOND: u32 = 20;
/// Default burst of a plugin's requests to the API server.
pub const DEFAULT_API_REQUEST_BURST: u32 = 50;

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
    /// Requests the plugin's kube calls may send to the API server a second, sustained
    /// (default 20, at most 1000); a call over it waits for its turn within half its
    /// deadline, or else returns `unavailable`.
    #[serde(
        default = "default_api_rate",
        deserialize_with = "api_requests_per_second"
    )]
    pub api_requests_per_second: u32,
    /// Requests it may send at once above that rate (default 50, at most 10000).
    #[serde(default = "default_api_burst", deserialize_with = "api_request_burst")]
    pub api_request_burst: u32,
}

impl Default for GrantLimits {
    fn default() -> Self {
        Self {
            memory_mib: default_memory(),
            timeout_ms: default_timeout(),
            concurrency: default_concurrency(),
            fuel: None,
            cpu_millicores: default_cpu(),
            api_requests_per_second: default_api_rate(),
            api_request_burst: default_api_burst(),
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
fn default_api_rate() -> u32 {
    DEFAULT_API_REQUESTS_PER_SECOND
}
fn default_api_burst() -> u32 {
    DEFAULT_API_REQUEST_BURST
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
fn api_requests_per_second<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, "apiRequestsPerSecond", 1..=1_000)
}
fn api_request_burst<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, "apiRequestBurst", 1..=10_000)
}
fn fuel<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    in_range(d, "fuel", 1..=u64::MAX).map(Some)
}
