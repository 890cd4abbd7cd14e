//! The kinds a reconciler can watch and handle.

use serde::de::DeserializeOwned;

/// A Kubernetes kind that can cross the boundary as JSON.
///
/// Every k8s-openapi type implements it; for a custom resource, implement it on the
/// serde type that models it.
pub trait Object: DeserializeOwned {
    /// `apiVersion`, such as `v1` or `example.com/v1alpha1`.
    const API_VERSION: &'static str;
    /// `kind`, such as `ConfigMap`.
    const KIND: &'static str;
}

impl<K: k8s_openapi::Resource + DeserializeOwned> Object for K {
    const API_VERSION: &'static str = K::API_VERSION;
    const KIND: &'static str = K::KIND;
}
