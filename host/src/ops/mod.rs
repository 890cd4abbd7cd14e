//! Operations: metrics, health probes and their HTTP servers, leader election.

pub mod leader;
pub mod metrics;
pub mod server;
