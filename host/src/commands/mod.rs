//! The `kubewasm` subcommands.

pub mod check;
pub mod cluster;
pub mod dev;
pub mod rebuild;
pub mod run;
