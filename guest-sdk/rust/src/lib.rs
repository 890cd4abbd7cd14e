//! Write kubewasm reconcilers in Rust.
//!
//! A plugin is a type implementing [`Reconciler`], exported with [`export!`] and built
//! for `wasm32-wasip2` as a `cdylib`:
//!
//! ```ignore
//! use kubewasm_guest::{Action, Reconciler, Result, k8s_openapi::api::core::v1::ConfigMap};
//!
//! struct Hello;
//!
//! impl Reconciler for Hello {
//!     type Resource = ConfigMap;
//!     fn apply(config_map: ConfigMap) -> Result<Action> {
//!         kubewasm_guest::log::info(format!("saw {:?}", config_map.metadata.name));
//!         Ok(Action::Default)
//!     }
//! }
//!
//! kubewasm_guest::export!(Hello);
//! ```
//!
//! Every call runs in a fresh instance: statics do not survive from one call to the next.

mod error;
pub mod events;
mod export;
pub mod kube;
pub mod log;
mod object;

use std::time::Duration;

pub use error::{Error, Result};
#[doc(hidden)]
pub use export::Exported;
pub use k8s_openapi;
pub use object::Object;
pub use serde_json;

/// The WIT bindings, for what the typed wrappers do not cover.
pub mod bindings {
    wit_bindgen::generate!({
        path: "../../wit",
        world: "reconciler",
        pub_export_macro: true,
        export_macro_name: "__export_reconciler_bindings",
        default_bindings_module: "::kubewasm_guest::bindings",
    });
}

/// What the host does after a successful `apply` or `cleanup`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Reconcile again after this long, even if nothing changes (100 ms to 30 days).
    RequeueAfter(Duration),
    /// Reconcile again only when the object changes.
    AwaitChange,
    /// Let the host decide (again after a random 40 to 60 minutes).
    Default,
}

/// A kind of object the plugin creates for the objects it watches, for
/// [`Reconciler::owns`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KindRef {
    /// `apiVersion`, such as `v1`.
    pub api_version: String,
    /// `kind`, such as `ConfigMap`.
    pub kind: String,
}

impl KindRef {
    /// The kind of `K`.
    pub fn of<K: Object>() -> Self {
        Self {
            api_version: K::API_VERSION.to_string(),
            kind: K::KIND.to_string(),
        }
    }
}

/// A controller's logic: what to do for one watched object.
///
/// The host watches [`Reconciler::Resource`] objects (those matching
/// [`Reconciler::LABEL_SELECTOR`]), manages [`Reconciler::FINALIZER_NAME`] on them, and
/// calls [`Reconciler::apply`] or [`Reconciler::cleanup`] with one object at a time.
pub trait Reconciler {
    /// The watched kind: a k8s-openapi type, or a serde type implementing [`Object`].
    type Resource: Object;

    /// Only objects matching this label selector are reconciled.
    const LABEL_SELECTOR: Option<&'static str> = None;

    /// A finalizer such as `example.com/cleanup`. With one, deleted objects are passed
    /// to [`Reconciler::cleanup`] and disappear once it succeeds; without one, deleted
    /// objects are not seen.
    const FINALIZER_NAME: Option<&'static str> = None;

    /// The kinds of objects this plugin creates (informational).
    fn owns() -> Vec<KindRef> {
        Vec::new()
    }

    /// Brings the world in line with `object`. Must be idempotent.
    fn apply(object: Self::Resource) -> Result<Action>;

    /// Cleans up after a deleted `object` (only with a finalizer). Must be idempotent.
    fn cleanup(object: Self::Resource) -> Result<Action> {
        let _ = object;
        Ok(Action::Default)
    }
}

/// Exports a [`Reconciler`] as the plugin's implementation of the contract.
#[macro_export]
macro_rules! export {
    ($reconciler:ty) => {
        type __KubewasmExported = $crate::Exported<$reconciler>;
        $crate::bindings::__export_reconciler_bindings!(
            __KubewasmExported with_types_in $crate::bindings
        );
    };
}
