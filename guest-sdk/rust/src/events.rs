//! Kubernetes Events on the object being reconciled.

use crate::bindings::kubewasm::controller::events::{EventType, publish};

/// Records a Normal Event: `reason` is UpperCamelCase (`MirrorUpdated`), `note` a
/// sentence.
pub fn normal(reason: &str, note: &str) {
    publish(EventType::Normal, reason, note);
}

/// Records a Warning Event.
pub fn warning(reason: &str, note: &str) {
    publish(EventType::Warning, reason, note);
}
