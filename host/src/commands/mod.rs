//! The `kubewasm` subcommands.

pub mod check;
pub mod cluster;
pub mod dev;
pub mod new;
pub mod rebuild;
pub mod run;
