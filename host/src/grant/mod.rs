//! A plugin's grant: what the operator allows it to do, in `NAME.yaml` beside
//! `NAME.wasm`. A plugin never grants itself anything; without a grant file it does
//! not run, and a grant that leaves out what matters is refused rather than read as
//! "everything" (docs/grants.md is the reference).
//!
//! ```yaml
//! apiVersion: kubewasm.dev/v1
//! namespaces: [team-a, team-b]   # where it may watch and act; ["*"] for cluster-wide
//! serviceAccount: team-a/mirror  # its API calls impersonate this ServiceAccount
//! finalizers: [kubewasm.dev/mirror]  # the finalizers it may own
//! digest: sha256:9f86d0...       # optional: the only component this grant applies to
//! permissions:                   # what it may watch and what its kube imports may do
//!   - apiGroups: [""]
//!     resources: [configmaps]
//!     verbs: [get, list, watch, create, update, patch, delete]
//! limits: {memoryMiB: 64, timeoutMs: 1000, concurrency: 4, cpuMillicores: 100}
//! drain: false                   # true: cleanup everywhere, remove the finalizer, stop applying
//! ```

mod limits;
mod permission;

use std::path::Path;

use serde::Deserialize;

use crate::names;
pub use limits::{
    DEFAULT_CONCURRENCY, GrantLimits, MAX_CONCURRENCY, MAX_MEMORY_MIB, MAX_TIMEOUT_MS,
};
pub use permission::{Permission, Verb};

/// The grant format this host reads, the value of a grant's `apiVersion`.
pub const API_VERSION: &str = "kubewasm.dev/v1";

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
        /// What is wrong, and how to put it right.
        reason: String,
    },
}

/// A parsed, validated grant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// Namespaces the plugin may watch and act in.
    pub namespaces: Namespaces,
    /// The ServiceAccount its API calls impersonate; `None` uses the host's identity,
    /// which the host allows only when started with `--allow-host-identity`.
    pub service_account: Option<ServiceAccountRef>,
    /// The finalizers the plugin may declare.
    pub finalizers: Vec<String>,
    /// The sha256 (hex) of the only component this grant applies to, when pinned.
    pub digest: Option<String>,
    /// What it may watch, and what its `kube` imports may do.
    pub permissions: Vec<Permission>,
    /// Limits on every call and on concurrency.
    pub limits: GrantLimits,
    /// Retire the plugin: run `cleanup` on every object carrying its finalizer and
    /// remove the finalizer; never call `apply`.
    pub drain: bool,
}

/// Where a plugin may act.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Namespaces {
    /// Every namespace, and cluster-scoped kinds: written `namespaces: ["*"]`.
    All,
    /// These namespaces only.
    Only(Vec<NamespaceName>),
}

/// A namespace name (an RFC 1123 label).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
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
        if names::is_dns_label(&name) {
            Ok(Self(name))
        } else {
            Err(format!(
                "{name:?} is not a namespace name (lowercase letters, digits and '-', at most 63)"
            ))
        }
    }
}

/// A ServiceAccount, written `namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ServiceAccountRef {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
}

impl ServiceAccountRef {
    /// The Kubernetes user name: `system:serviceaccount:NS:NAME`. Impersonating it
    /// without naming groups gives the account's own groups (`system:serviceaccounts`,
    /// `system:serviceaccounts:NS`, `system:authenticated`): the API server adds them.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

impl TryFrom<String> for ServiceAccountRef {
    type Error = String;
    fn try_from(value: String) -> Result<Self, String> {
        match value.split_once('/') {
            Some((namespace, name))
                if names::is_dns_label(namespace) && names::is_dns_subdomain(name) =>
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

/// A grant file as written, before the checks that need more than one field.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct GrantFile {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    namespaces: Option<Vec<String>>,
    #[serde(default)]
    service_account: Option<String>,
    #[serde(default)]
    finalizers: Vec<String>,
    #[serde(default)]
    digest: Option<String>,
    #[serde(default)]
    permissions: Vec<Permission>,
    #[serde(default)]
    limits: GrantLimits,
    #[serde(default)]
    drain: bool,
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
        let invalid = |key: &str, reason: String| GrantError::Invalid {
            file: file.to_string(),
            line: line_of(text, key),
            column: 1,
            reason,
        };
        let blank = |line: &str| {
            let line = line.trim();
            line.is_empty() || line.starts_with('#')
        };
        if text.lines().all(blank) {
            return Err(invalid(
                "",
                format!(
                    "the grant is empty: a grant starts with `apiVersion: {API_VERSION}` and names \
                     at least its namespaces (see docs/grants.md)"
                ),
            ));
        }
        let raw: GrantFile = serde_norway::from_str(text).map_err(|err| {
            let (line, column) = err
                .location()
                .map(|location| (location.line(), location.column()))
                .unwrap_or((0, 0));
            // serde_norway appends " at line L column C"; the location is reported already.
            let reason = err.to_string();
            let reason = match reason.find(" at line ") {
                Some(index) => &reason[..index],
                None => &reason,
            };
            GrantError::Invalid {
                file: file.to_string(),
                line,
                column,
                reason: without_contents(reason),
            }
        })?;
        match raw.api_version.as_deref() {
            Some(API_VERSION) => {}
            None => {
                return Err(invalid(
                    "",
                    format!(
                        "no apiVersion: write `apiVersion: {API_VERSION}` as the grant's first \
                         line (a grant without one predates it: see docs/grants.md, \"Migrating\")"
                    ),
                ));
            }
            Some(other) => {
                return Err(invalid(
                    "apiVersion",
                    format!("apiVersion {other:?} is not one this host reads: use {API_VERSION}"),
                ));
            }
        }
        let namespaces = match raw.namespaces {
            None => {
                return Err(invalid(
                    "",
                    "no namespaces: list those the plugin may act in (`namespaces: [team-a]`), \
                     or write `namespaces: [\"*\"]` to grant every namespace and cluster-scoped \
                     kinds"
                        .into(),
                ));
            }
            Some(list) if list.iter().any(|namespace| namespace == "*") => {
                if list.len() > 1 {
                    return Err(invalid(
                        "namespaces",
                        "namespaces lists \"*\" beside names: \"*\" (every namespace) stands alone"
                            .into(),
                    ));
                }
                Namespaces::All
            }
            Some(list) if list.is_empty() => {
                return Err(invalid(
                    "namespaces",
                    "namespaces is empty: list at least one, or [\"*\"] for every namespace".into(),
                ));
            }
            Some(list) => Namespaces::Only(
                list.into_iter()
                    .map(NamespaceName::try_from)
                    .collect::<Result<_, _>>()
                    .map_err(|reason| invalid("namespaces", reason))?,
            ),
        };
        let service_account = raw
            .service_account
            .map(ServiceAccountRef::try_from)
            .transpose()
            .map_err(|reason| invalid("serviceAccount", reason))?;
        for finalizer in &raw.finalizers {
            names::check_finalizer(finalizer).map_err(|reason| invalid("finalizers", reason))?;
        }
        let digest = raw
            .digest
            .map(|digest| match digest.strip_prefix("sha256:") {
                Some(hex)
                    if hex.len() == 64
                        && hex
                            .bytes()
                            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) =>
                {
                    Ok(hex.to_string())
                }
                _ => Err(invalid(
                    "digest",
                    format!(
                        "digest {digest:?} is not `sha256:` and 64 lowercase hex digits (as \
                         `kubewasm check` prints it)"
                    ),
                )),
            })
            .transpose()?;
        for permission in &raw.permissions {
            if permission.api_groups.is_empty()
                || permission.resources.is_empty()
                || permission.verbs.is_empty()
            {
                return Err(invalid(
                    "permissions",
                    "every permission needs apiGroups, resources and verbs".into(),
                ));
            }
        }
        Ok(Self {
            namespaces,
            service_account,
            finalizers: raw.finalizers,
            digest,
            permissions: raw.permissions,
            limits: raw.limits,
            drain: raw.drain,
        })
    }

    /// Whether the plugin is confined to namespaces.
    pub fn is_namespaced(&self) -> bool {
        matches!(self.namespaces, Namespaces::Only(_))
    }

    /// The namespaces the plugin is confined to; `None` when it may act everywhere.
    pub fn namespace_list(&self) -> Option<&[NamespaceName]> {
        match &self.namespaces {
            Namespaces::All => None,
            Namespaces::Only(namespaces) => Some(namespaces),
        }
    }

    /// Whether `namespace` is within the grant's namespaces.
    pub fn allows_namespace(&self, namespace: &str) -> bool {
        self.namespace_list().is_none_or(|namespaces| {
            namespaces
                .iter()
                .any(|allowed| allowed.as_str() == namespace)
        })
    }

    /// Whether a permission allows `verb` on `resource` (plural, with an optional
    /// `/subresource`) in `group`, for the object `name` when known.
    pub fn allows(&self, group: &str, resource: &str, verb: Verb, name: Option<&str>) -> bool {
        self.permissions
            .iter()
            .any(|permission| permission.allows(group, resource, verb, name))
    }

    /// Whether the plugin may declare `finalizer`.
    pub fn allows_finalizer(&self, finalizer: &str) -> bool {
        self.finalizers.iter().any(|allowed| allowed == finalizer)
    }
}

/// A YAML error's message without what it quotes of the file, unless that is a short
/// name (a field, a variant): a grant file may be a symlink to anything, and its
/// contents must not reach logs and Events.
fn without_contents(reason: &str) -> String {
    let is_name = |quoted: &str| {
        quoted.len() <= 32
            && quoted
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '*'))
    };
    let mut kept = String::with_capacity(reason.len());
    let mut rest = reason;
    while let Some(start) = rest.find(['"', '`']) {
        let quote = rest[start..].chars().next().expect("found above");
        kept.push_str(&rest[..=start]);
        let after = &rest[start + 1..];
        let Some(end) = after.find(quote) else {
            kept.push_str("...");
            return kept;
        };
        let quoted = &after[..end];
        kept.push_str(if is_name(quoted) { quoted } else { "..." });
        kept.push(quote);
        rest = &after[end + 1..];
    }
    kept.push_str(rest);
    kept
}

/// 1-based line of the first line starting with `key:`; with an empty key, 0 (the
/// problem is the whole file).
fn line_of(text: &str, key: &str) -> usize {
    if key.is_empty() {
        return 0;
    }
    text.lines()
        .position(|line| line.trim_start().starts_with(&format!("{key}:")))
        .map(|index| index + 1)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests;
