//! The Kubernetes API, as far as the plugin's grant allows.
//!
//! Objects are typed: any [`Object`] (every k8s-openapi type) goes in and comes out.
//! Reads of watched kinds are served from the host's caches.

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::Object;
use crate::bindings::kubewasm::controller::kube as wit;
pub use crate::bindings::kubewasm::controller::kube::Error;
use crate::bindings::kubewasm::controller::types::ObjectRef;

/// A `Result` whose error is the host's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

fn target<K: Object>(namespace: Option<&str>, name: &str) -> ObjectRef {
    ObjectRef {
        api_version: K::API_VERSION.to_string(),
        kind: K::KIND.to_string(),
        namespace: namespace.map(str::to_string),
        name: name.to_string(),
    }
}

fn parse<T: DeserializeOwned>(json: &str) -> Result<T> {
    serde_json::from_str(json).map_err(|err| Error::Other(format!("host returned bad JSON: {err}")))
}

/// The JSON of `object` with `apiVersion` and `kind` filled in from `K`.
fn to_json<K: Object + Serialize>(object: &K) -> Result<String> {
    let mut value = serde_json::to_value(object).map_err(|err| Error::Invalid(format!("{err}")))?;
    if let Some(fields) = value.as_object_mut() {
        fields
            .entry("apiVersion")
            .or_insert_with(|| K::API_VERSION.into());
        fields.entry("kind").or_insert_with(|| K::KIND.into());
    }
    Ok(value.to_string())
}

/// Reads one object.
pub fn get<K: Object>(namespace: Option<&str>, name: &str) -> Result<K> {
    parse(&wit::get(&target::<K>(namespace, name))?)
}

/// Reads one object, `None` if it does not exist.
pub fn get_opt<K: Object>(namespace: Option<&str>, name: &str) -> Result<Option<K>> {
    match get(namespace, name) {
        Ok(object) => Ok(Some(object)),
        Err(Error::NotFound(_)) => Ok(None),
        Err(err) => Err(err),
    }
}

/// Lists objects in `namespace` (all the plugin may see when `None`) matching
/// `label_selector`.
pub fn list<K: Object>(namespace: Option<&str>, label_selector: Option<&str>) -> Result<Vec<K>> {
    parse(&wit::list(
        K::API_VERSION,
        K::KIND,
        namespace,
        label_selector,
    )?)
}

/// Creates or updates `object` with server-side apply; returns it as stored.
pub fn apply<K: Object + Serialize>(object: &K) -> Result<K> {
    parse(&wit::apply(&to_json(object)?)?)
}

/// Creates `object`; [`Error::Conflict`] if it exists.
pub fn create<K: Object + Serialize>(object: &K) -> Result<K> {
    parse(&wit::create(&to_json(object)?)?)
}

/// Merges `status` into the object's status subresource; returns the object as stored.
pub fn patch_status<K: Object>(
    namespace: Option<&str>,
    name: &str,
    status: &impl Serialize,
) -> Result<K> {
    let status = serde_json::to_string(status).map_err(|err| Error::Invalid(format!("{err}")))?;
    parse(&wit::patch_status(&target::<K>(namespace, name), &status)?)
}

/// Deletes one object; [`Error::NotFound`] if it does not exist.
pub fn delete<K: Object>(namespace: Option<&str>, name: &str) -> Result<()> {
    wit::delete(&target::<K>(namespace, name))
}

/// Deletes one object if it exists; `true` if it did.
pub fn delete_if_exists<K: Object>(namespace: Option<&str>, name: &str) -> Result<bool> {
    match delete::<K>(namespace, name) {
        Ok(()) => Ok(true),
        Err(Error::NotFound(_)) => Ok(false),
        Err(err) => Err(err),
    }
}
