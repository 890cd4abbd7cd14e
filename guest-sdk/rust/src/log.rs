//! Log lines, tagged by the host with the plugin and the object being reconciled.

use crate::bindings::kubewasm::controller::log::{Level, log};

/// Logs at `trace`.
pub fn trace(message: impl AsRef<str>) {
    log(Level::Trace, message.as_ref());
}

/// Logs at `debug`.
pub fn debug(message: impl AsRef<str>) {
    log(Level::Debug, message.as_ref());
}

/// Logs at `info`.
pub fn info(message: impl AsRef<str>) {
    log(Level::Info, message.as_ref());
}

/// Logs at `warn`.
pub fn warn(message: impl AsRef<str>) {
    log(Level::Warn, message.as_ref());
}

/// Logs at `error`.
pub fn error(message: impl AsRef<str>) {
    log(Level::Error, message.as_ref());
}
