//! Operations: metrics, health probes and their HTTP servers.

pub mod metrics;
pub mod server;
