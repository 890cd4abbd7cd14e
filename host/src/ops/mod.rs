//! Operations: metrics, health probes and their HTTP servers, leader election, and
//! Events about the plugins' lifecycle.

pub mod leader;
pub mod lifecycle_events;
pub mod metrics;
pub mod server;
