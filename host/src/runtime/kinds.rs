//! Resolving `apiVersion` + `kind` to an API resource through discovery, cached.

use std::collections::HashMap;
use std::sync::Mutex;

use kube::api::ApiResource;
use kube::core::GroupVersionKind;
use kube::discovery::{self, Scope};

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
    /// Not a valid `apiVersion`.
    #[error("invalid apiVersion {0:?}")]
    InvalidApiVersion(String),
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
}

impl std::fmt::Debug for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Kinds")
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}

impl Kinds {
    /// A resolver using `client` for discovery.
    pub fn new(client: kube::Client) -> Self {
        Self {
            client,
            cache: Mutex::new(HashMap::new()),
        }
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
        let (group, version) = match api_version.split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", api_version),
        };
        if version.is_empty() || api_version.matches('/').count() > 1 {
            return Err(KindError::InvalidApiVersion(api_version.to_string()));
        }
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let (resource, capabilities) = match discovery::pinned_kind(&self.client, &gvk).await {
            Ok(found) => found,
            Err(kube::Error::Api(status)) if status.code == 404 => {
                return Err(KindError::Unknown {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                });
            }
            Err(kube::Error::Discovery(_)) => {
                return Err(KindError::Unknown {
                    api_version: api_version.to_string(),
                    kind: kind.to_string(),
                });
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
        self.cache
            .lock()
            .expect("kind cache poisoned")
            .insert(cache_key, resolved.clone());
        Ok(resolved)
    }
}
