//! A plugin's grant: what the operator allows it to do, in `NAME.yaml` beside
//! `NAME.wasm`. A plugin never grants itself anything; without a grant file it does
//! not run.
//!
//! ```yaml
//! namespaces: [team-a, team-b]   # where it may watch and act; omit for cluster-wide
//! serviceAccount: team-a/mirror  # its API calls impersonate this ServiceAccount
//! permissions:                   # what its kube imports may do
//!   - apiGroups: [""]
//!     resources: [configmaps]
//!     verbs: [get, list, watch, create, update, patch, delete]
//! limits: {memoryMiB: 64, timeoutMs: 1000, concurrency: 4, cpuMillicores: 100}
//! drain: false                   # true: cleanup everywhere, remove the finalizer, stop applying
//! ```

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;

use crate::sandbox::Limits;

/// Largest memory a grant may give one call.
pub const MAX_MEMORY_MIB: u64 = 1024;
/// Longest deadline a grant may give one call.
pub const MAX_TIMEOUT_MS: u64 = 60_000;
/// Most concurrent reconciles a grant may allow.
pub const MAX_CONCURRENCY: u16 = 256;
/// Default concurrent reconciles.
pub const DEFAULT_CONCURRENCY: u16 = 4;

/// Why a grant file was refused.
#[derive(Debug, thiserror::Error)]
pub enum GrantError {
    /// The file could not be read.
    #[error("{file}: {source}")]
    Io {
        /// The grant file.
        file: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid grant.
    #[error("{file}:{line}:{column}: {reason}")]
    Invalid {
        /// The grant file.
        file: String,
        /// 1-based line of the problem (0 when unknown).
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        reason: String,
    },
}

/// A parsed, validated grant.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Grant {
    /// Namespaces the plugin may watch and act in; `None` is cluster-wide.
    #[serde(default)]
    pub namespaces: Option<Vec<NamespaceName>>,
    /// The ServiceAccount its API calls impersonate; `None` uses the host's identity.
    #[serde(default)]
    pub service_account: Option<ServiceAccountRef>,
    /// What its `kube` imports may do.
    #[serde(default)]
    pub permissions: Vec<Permission>,
    /// Limits on every call and on concurrency.
    #[serde(default)]
    pub limits: GrantLimits,
    /// Retire the plugin: run `cleanup` on every object carrying its finalizer and
    /// remove the finalizer; never call `apply`.
    #[serde(default)]
    pub drain: bool,
}

/// A namespace name (an RFC 1123 label).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Deserialize)]
#[serde(try_from = "String")]
pub struct NamespaceName(String);

impl NamespaceName {
    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl TryFrom<String> for NamespaceName {
    type Error = String;
    fn try_from(name: String) -> Result<Self, String> {
        if is_dns_label(&name) {
            Ok(Self(name))
        } else {
            Err(format!(
                "{name:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
            ))
        }
    }
}

fn is_dns_label(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// A ServiceAccount, written `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Deserialize)]
#[serde(try_from = "String")]
pub struct ServiceAccountRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ServiceAccountRef {
    /// The Kubernetes user name: `system:serviceaccount:NS:NAME`.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }

    /// The groups a ServiceAccount's requests carry.
    pub fn groups(&self) -> Vec<String> {
        vec![
            "system:serviceaccounts".to_string(),
            format!("system:serviceaccounts:{}", self.namespace),
            "system:authenticated".to_string(),
        ]
    }
}

impl TryFrom<String> for ServiceAccountRef {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.split_once('/') {
            Some((namespace, name))
                if is_dns_label(namespace)
                    && !name.is_empty()
                    && name.len() <= 253
                    && name.chars().all(|c| {
                        c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '.'
                    }) =>
            {
                Ok(Self {
                    namespace: namespace.to_string(),
                    name: name.to_string(),
                })
            }
            _ => Err(format!(
                "serviceAccount {value:?} must be written namespace/name"
            )),
        }
    }
}

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

/// Limits from a grant, with defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct GrantLimits {
    /// Memory per call, in MiB (default 64, at most 1024).
    #[serde(default = "default_memory", rename = "memoryMiB")]
    #[serde(deserialize_with = "memory_mib")]
    pub memory_mib: u64,
    /// Deadline per call, in milliseconds (default 1000, at most 60000).
    #[serde(default = "default_timeout", deserialize_with = "timeout_ms")]
    pub timeout_ms: u64,
    /// Reconciles running at once (default 4, at most 256).
    #[serde(default = "default_concurrency", deserialize_with = "concurrency")]
    pub concurrency: u16,
    /// Fuel per call (roughly, WebAssembly instructions); unmetered when absent.
    #[serde(default, deserialize_with = "fuel")]
    pub fuel: Option<u64>,
    /// CPU the plugin's guest code may use, across all its calls, in millicores
    /// (default 100, at most 16000).
    #[serde(default = "default_cpu", deserialize_with = "cpu_millicores")]
    pub cpu_millicores: u32,
}

impl Default for GrantLimits {
    fn default() -> Self {
        Self {
            memory_mib: default_memory(),
            timeout_ms: default_timeout(),
            concurrency: default_concurrency(),
            fuel: None,
            cpu_millicores: default_cpu(),
        }
    }
}

impl GrantLimits {
    /// The sandbox limits these give.
    pub fn sandbox(&self) -> Limits {
        Limits {
            memory_bytes: self.memory_mib << 20,
            timeout: Duration::from_millis(self.timeout_ms),
            fuel: self.fuel,
            cpu_millicores: self.cpu_millicores,
        }
    }
}

fn default_memory() -> u64 {
    crate::sandbox::DEFAULT_MEMORY_BYTES >> 20
}
fn default_timeout() -> u64 {
    crate::sandbox::DEFAULT_TIMEOUT.as_millis() as u64
}
fn default_concurrency() -> u16 {
    DEFAULT_CONCURRENCY
}
fn default_cpu() -> u32 {
    crate::sandbox::DEFAULT_CPU_MILLICORES
}

fn in_range<'de, D, T>(
    deserializer: D,
    field: &str,
    range: std::ops::RangeInclusive<T>,
) -> Result<T, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de> + PartialOrd + std::fmt::Display + Copy,
{
    let value = T::deserialize(deserializer)?;
    if range.contains(&value) {
        Ok(value)
    } else {
        Err(serde::de::Error::custom(format!(
            "{field} must be between {} and {}, not {value}",
            range.start(),
            range.end()
        )))
    }
}

fn memory_mib<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "memoryMiB", 1..=MAX_MEMORY_MIB)
}
fn timeout_ms<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
    in_range(d, "timeoutMs", 10..=MAX_TIMEOUT_MS)
}
fn concurrency<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    in_range(d, "concurrency", 1..=MAX_CONCURRENCY)
}
fn cpu_millicores<'de, D: serde::Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    in_range(d, "cpuMillicores", 10..=16_000)
}
fn fuel<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    in_range(d, "fuel", 1..=u64::MAX).map(Some)
}

impl Grant {
    /// Reads and validates a grant file.
    pub fn load(path: &Path) -> Result<Self, GrantError> {
        let text = std::fs::read_to_string(path).map_err(|source| GrantError::Io {
            file: path.display().to_string(),
            source,
        })?;
        Self::parse(&text, &path.display().to_string())
    }

    /// Parses and validates a grant; `file` names it in errors.
    pub fn parse(text: &str, file: &str) -> Result<Self, GrantError> {
        let invalid = |line, column, reason: String| GrantError::Invalid {
            file: file.to_string(),
            line,
            column,
            reason,
        };
        // An empty file is an empty grant: the plugin may run but touch nothing.
        if text.trim().is_empty() {
            return Ok(Self::default());
        }
        let grant: Self = serde_norway::from_str(text).map_err(|err| {
            let (line, column) = err
                .location()
                .map(|location| (location.line(), location.column()))
                .unwrap_or((0, 0));
            // serde_norway appends " at line L column C"; the location is reported already.
            let reason = err.to_string();
            let reason = match reason.find(" at line ") {
                Some(index) => reason[..index].to_string(),
                None => reason,
            };
            invalid(line, column, reason)
        })?;
        if let Some(namespaces) = &grant.namespaces
            && namespaces.is_empty()
        {
            return Err(invalid(
                line_of(text, "namespaces"),
                1,
                "namespaces is empty: list at least one, or omit it for cluster-wide".into(),
            ));
        }
        for permission in &grant.permissions {
            if permission.api_groups.is_empty()
                || permission.resources.is_empty()
                || permission.verbs.is_empty()
            {
                return Err(invalid(
                    line_of(text, "permissions"),
                    1,
                    "every permission needs apiGroups, resources and verbs".into(),
                ));
            }
        }
        Ok(grant)
    }

    /// Whether the plugin is confined to namespaces.
    pub fn is_namespaced(&self) -> bool {
        self.namespaces.is_some()
    }

    /// Whether `namespace` is within the grant's namespaces.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        match &self.namespaces {
            None => true,
            Some(namespaces) => namespaces
                .iter()
                .any(|allowed| allowed.as_str() == namespace),
        }
    }

    /// Whether a permission allows `verb` on `resource` (plural, with an optional
    /// `/subresource`) in `group`, for the object `name` when known.
    pub fn allows(&self, group: &str, resource: &str, verb: Verb, name: Option<&str>) -> bool {
        self.permissions.iter().any(|permission| {
            let group_ok = permission
                .api_groups
                .iter()
                .any(|allowed| allowed == "*" || allowed == group);
            let resource_ok = permission.resources.iter().any(|allowed| {
                allowed == "*"
                    || allowed == resource
                    || (allowed.starts_with("*/")
                        && resource.split_once('/').map(|(_, sub)| sub)
                            == allowed.strip_prefix("*/"))
            });
            let verb_ok = permission
                .verbs
                .iter()
                .any(|allowed| *allowed == Verb::All || *allowed == verb);
            let name_ok = permission.resource_names.is_empty()
                || name.is_some_and(|name| permission.resource_names.iter().any(|n| n == name));
            group_ok && resource_ok && verb_ok && name_ok
        })
    }
}

fn line_of(text: &str, key: &str) -> usize {
    text.lines()
        .position(|line| line.trim_start().starts_with(&format!("{key}:")))
        .map(|index| index + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = "\
namespaces: [team-a, team-b]
serviceAccount: team-a/mirror
permissions:
  - apiGroups: [\"\"]
    resources: [configmaps]
    verbs: [get, list, watch, create, update, patch, delete]
limits: {memoryMiB: 32, timeoutMs: 500, concurrency: 2}
";

    #[test]
    fn the_documented_grant_parses() {
        let grant = Grant::parse(EXAMPLE, "mirror.yaml").unwrap();
        assert!(grant.allows_namespace("team-b"));
        assert!(!grant.allows_namespace("team-c"));
        assert_eq!(
            grant.service_account.as_ref().unwrap().username(),
            "system:serviceaccount:team-a:mirror"
        );
        assert!(grant.allows("", "configmaps", Verb::Patch, Some("x")));
        assert!(!grant.allows("", "secrets", Verb::Get, Some("x")));
        assert!(!grant.allows("apps", "configmaps", Verb::Get, None));
        assert_eq!(grant.limits.sandbox().memory_bytes, 32 << 20);
        assert_eq!(grant.limits.concurrency, 2);
    }

    #[test]
    fn defaults_apply_to_what_is_left_out() {
        let grant = Grant::parse("permissions: []\n", "g.yaml").unwrap();
        assert_eq!(grant.limits, GrantLimits::default());
        assert_eq!(grant.limits.concurrency, 4);
        assert!(!grant.is_namespaced());
        assert_eq!(Grant::parse("", "g.yaml").unwrap(), Grant::default());
    }

    #[test]
    fn invalid_grants_name_file_line_and_reason() {
        let cases = [
            ("namespaces: [Team_A]\n", 1, "not a namespace name"),
            (
                "permissions:\n  - apiGroups: [\"\"]\n    resources: [pods]\n    verbs: [fly]\n",
                4,
                "unknown variant `fly`",
            ),
            (
                "limits:\n  memoryMiB: 0\n",
                2,
                "memoryMiB must be between 1 and 1024",
            ),
            (
                "limits: {concurrency: 1000}\n",
                1,
                "concurrency must be between 1 and 256",
            ),
            ("serviceAccount: mirror\n", 1, "namespace/name"),
            ("namespace: [a]\n", 1, "unknown field `namespace`"),
            ("namespaces: []\n", 1, "namespaces is empty"),
        ];
        for (text, line, reason) in cases {
            match Grant::parse(text, "bad.yaml") {
                Err(GrantError::Invalid {
                    file,
                    line: l,
                    reason: r,
                    ..
                }) => {
                    assert_eq!(file, "bad.yaml");
                    assert_eq!(l, line, "{text:?}: {r}");
                    assert!(r.contains(reason), "{text:?}: {r}");
                }
                other => panic!("{text:?} should be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn wildcards_and_subresources_match() {
        let grant = Grant::parse(
            "permissions:\n  - apiGroups: [\"*\"]\n    resources: [\"*/status\"]\n    verbs: [patch]\n  - apiGroups: [apps]\n    resources: [deployments]\n    verbs: [\"*\"]\n    resourceNames: [web]\n",
            "g.yaml",
        )
        .unwrap();
        assert!(grant.allows("example.com", "widgets/status", Verb::Patch, None));
        assert!(!grant.allows("example.com", "widgets", Verb::Patch, None));
        assert!(grant.allows("apps", "deployments", Verb::Delete, Some("web")));
        assert!(!grant.allows("apps", "deployments", Verb::Delete, Some("db")));
    }
}
