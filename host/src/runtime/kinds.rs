//! Resolving `apiVersion` + `kind` to an API resource through discovery, cached.
//!
//! Guests name kinds, and every new name would cost a discovery request as the host: so
//! names are checked before discovery, kinds the API server serves are kept (bounded),
//! and kinds it does not serve are answered from a short-lived negative cache.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::api::ApiResource;
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};

use super::expiring::Expiring;

/// How long "not served" is remembered for a kind: a CRD installed meanwhile is found
/// within that.
pub const UNKNOWN_KIND_TTL: Duration = Duration::from_secs(10);
/// Most kinds kept as served; past it the cache starts afresh.
pub const MAX_KINDS: usize = 4_096;
/// Most kinds kept as not served.
pub const MAX_UNKNOWN_KINDS: usize = 1_024;

/// A kind the API server serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedKind {
    /// Its API resource (group, version, kind, plural).
    pub resource: ApiResource,
    /// Whether its objects live in namespaces.
    pub namespaced: bool,
}

impl ResolvedKind {
    /// `plural`, or `group/plural` outside the core group: how grants and logs name it.
    pub fn display_resource(&self) -> String {
        if self.resource.group.is_empty() {
            self.resource.plural.clone()
        } else {
            format!("{}/{}", self.resource.group, self.resource.plural)
        }
    }
}

/// Why a kind could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum KindError {
    /// Not a valid `apiVersion` or kind.
    #[error("{0}")]
    Invalid(String),
    /// The API server does not serve it.
    #[error("the API server does not serve {kind} in {api_version}")]
    Unknown {
        /// `apiVersion`.
        api_version: String,
        /// `kind`.
        kind: String,
    },
    /// Discovery itself failed.
    #[error("discovery of {kind} in {api_version} failed: {source}")]
    Discovery {
        /// `apiVersion`.
        api_version: String,
        /// `kind`.
        kind: String,
        /// Why.
        source: kube::Error,
    },
}

/// Discovery results, cached for the life of the process (kinds rarely change
/// meaning; a kind that appears later is found on its first use).
pub struct Kinds {
    client: kube::Client,
    cache: Mutex<HashMap<(String, String), ResolvedKind>>,
    unknown: Expiring<(String, String), ()>,
}

impl std::fmt::Debug for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kinds")
            .field("cache", &self.cache)
            .field("unknown", &self.unknown.len())
            .finish_non_exhaustive()
    }
}

impl Kinds {
    /// A resolver using `client` for discovery.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
            unknown: Expiring::new(UNKNOWN_KIND_TTL, MAX_UNKNOWN_KINDS),
        }
    }

    /// How many kinds are kept: (served, not served).
    pub fn cached(&self) -> (usize, usize) {
        (
            self.cache.lock().expect("kind cache poisoned").len(),
            self.unknown.len(),
        )
    }

    /// Resolves `kind` in `api_version`.
    pub async fn resolve(&self, api_version: &str, kind: &str) -> Result<ResolvedKind, KindError> {
        let cache_key = (api_version.to_string(), kind.to_string());
        if let Some(found) = self
            .cache
            .lock()
            .expect("kind cache poisoned")
            .get(&cache_key)
        {
            return Ok(found.clone());
        }
        crate::names::check_api_version(api_version)
            .and_then(|()| crate::names::check_kind(kind))
            .map_err(KindError::Invalid)?;
        let unknown = || KindError::Unknown {
            api_version: api_version.to_string(),
            kind: kind.to_string(),
        };
        if self.unknown.get(&cache_key).is_some() {
            return Err(unknown());
        }
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = match discovery::pinned_kind(&self.client, &gvk).await {
            Ok(found) => found,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                self.unknown.insert(cache_key, ());
                return Err(unknown());
            }
            Err(kube::Error::Discovery(_)) => {
                self.unknown.insert(cache_key, ());
                return Err(unknown());
            }
            Err(source) => {
                return Err(KindError::Discovery {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                    source,
                });
            }
        };
        let resolved = ResolvedKind {
            resource,
            namespaced: capabilities.scope == Scope::Namespaced,
        };
        let mut cache = self.cache.lock().expect("kind cache poisoned");
        if cache.len() >= MAX_KINDS {
            cache.clear();
        }
        cache.insert(cache_key, resolved.clone());
        Ok(resolved)
    }
}
