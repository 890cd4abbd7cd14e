//! A grant's `permissions`: RBAC-like rules of what a plugin's `kube` imports may do.

use serde::Deserialize;

/// One rule of what the plugin may do, as in an RBAC PolicyRule.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Permission {
    /// API groups (`""` is the core group, `"*"` any).
    pub api_groups: Vec<String>,
    /// Resources, plural and lowercase (`configmaps`, `deployments/status`, `"*"`).
    pub resources: Vec<String>,
    /// Verbs: get, list, watch, create, update, patch, delete, or `"*"`.
    pub verbs: Vec<Verb>,
    /// When set, only these object names.
    #[serde(default)]
    pub resource_names: Vec<String>,
}

/// An RBAC verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Verb {
    /// Read one object.
    Get,
    /// List objects.
    List,
    /// Watch objects.
    Watch,
    /// Create objects.
    Create,
    /// Replace objects.
    Update,
    /// Patch (and server-side apply) objects.
    Patch,
    /// Delete objects.
    Delete,
    /// Any verb.
    #[serde(rename = "*")]
    All,
}

impl Verb {
    /// The verb as RBAC writes it.
    pub fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::All => "*",
        }
    }
}

impl Permission {
    /// Whether this rule allows `verb` on `resource` (plural, with an optional
    /// `/subresource`) in `group`, for the object `name` when known.
    pub fn allows(&self, group: &str, resource: &str, verb: Verb, name: Option<&str>) -> bool {
        let group_ok = self
            .api_groups
            .iter()
            .any(|allowed| allowed == "*" || allowed == group);
        let resource_ok = self.resources.iter().any(|allowed| {
            allowed == "*"
                || allowed == resource
                || (allowed.starts_with("*/")
                    && resource.split_once('/').map(|(_, sub)| sub) == allowed.strip_prefix("*/"))
        });
        let verb_ok = self
            .verbs
            .iter()
            .any(|allowed| *allowed == Verb::All || *allowed == verb);
        let name_ok = self.resource_names.is_empty()
            || name.is_some_and(|name| self.resource_names.iter().any(|n| n == name));
        group_ok && resource_ok && verb_ok && name_ok
    }
}
