//! What a plugin may reach: the grant check every `kube` import call passes before
//! anything is sent, what a grant must allow for its plugin to watch a kind at all, and
//! the ServiceAccount's own RBAC for what is read from the host's stores.

use crate::grant::{Grant, Verb};
use crate::ops::metrics::PluginSeries;
use crate::reconciler::HostError;

use super::access_review::{AccessReviews, Question};
use super::kinds::ResolvedKind;

/// What `grant` lacks for its plugin to watch `kind` (`list` and `watch`, and `patch` or
/// `update` when `finalizer`, since the host adds and removes the plugin's finalizer on
/// the objects), as phrases such as "list on secrets"; empty when nothing is missing.
/// Scope (namespaces) is checked apart.
pub fn missing_for_watch(grant: &Grant, kind: &ResolvedKind, finalizer: bool) -> Vec<String> {
    let group = &kind.resource.group;
    let plural = &kind.resource.plural;
    let resource = display(group, plural);
    let mut missing: Vec<String> = [Verb::List, Verb::Watch]
        .into_iter()
        .filter(|verb| !grant.allows(group, plural, *verb, None))
        .map(|verb| format!("{} on {resource}", verb.as_str()))
        .collect();
    if finalizer
        && !grant.allows(group, plural, Verb::Patch, None)
        && !grant.allows(group, plural, Verb::Update, None)
    {
        missing.push(format!(
            "patch (or update) on {resource}, for its finalizer"
        ));
    }
    missing
}

/// Checks that the plugin's ServiceAccount may itself `verb` `kind` objects in
/// `namespace` (the object `name`, when one is read), for a read the host serves from a
/// store it filled with its own identity. A grant without a ServiceAccount runs as the
/// host, which may read its stores: nothing to ask then.
pub async fn review_store_read(
    reviews: &AccessReviews,
    grant: &Grant,
    request: Request<'_>,
) -> Result<(), HostError> {
    let Some(account) = &grant.service_account else {
        return Ok(());
    };
    let mut question = Question {
        user: account.username(),
        verb: request.verb.as_str(),
        group: request.kind.resource.group.clone(),
        resource: request.kind.resource.plural.clone(),
        namespace: request.namespace.map(str::to_string),
        name: None,
    };
    let unavailable = |err: kube::Error| {
        HostError::Unavailable(format!("reviewing the ServiceAccount's access: {err}"))
    };
    if reviews
        .allowed(question.clone())
        .await
        .map_err(unavailable)?
    {
        return Ok(());
    }
    // RBAC may allow this object by name only (resourceNames).
    if let Some(name) = request.name {
        question.name = Some(name.to_string());
        if reviews.allowed(question).await.map_err(unavailable)? {
            return Ok(());
        }
    }
    Err(HostError::Forbidden(format!(
        "ServiceAccount {}/{} may not {} {}{} (its RBAC, asked by SubjectAccessReview)",
        account.namespace,
        account.name,
        request.verb.as_str(),
        display(&request.kind.resource.group, &request.kind.resource.plural),
        request.whereabouts(),
    )))
}

/// One call to be checked.
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The kind.
    pub kind: &'a ResolvedKind,
    /// The verb.
    pub verb: Verb,
    /// The namespace; `None` for all namespaces or a cluster-scoped kind.
    pub namespace: Option<&'a str>,
    /// The object's name, when the call names one.
    pub name: Option<&'a str>,
    /// A subresource such as `status`.
    pub subresource: Option<&'a str>,
}

impl Request<'_> {
    /// " NAME in NAMESPACE", as far as the request names them.
    fn whereabouts(&self) -> String {
        let name = self.name.map(|name| format!(" {name}")).unwrap_or_default();
        match self.namespace {
            Some(namespace) => format!("{name} in {namespace}"),
            None => name,
        }
    }
}

/// Checks `request` against `grant`; a denial is counted in `series` and returned as
/// `forbidden`.
pub fn check(
    plugin: &str,
    grant: &Grant,
    series: &PluginSeries,
    request: Request<'_>,
) -> Result<(), HostError> {
    let resource = match request.subresource {
        Some(sub) => format!("{}/{sub}", request.kind.resource.plural),
        None => request.kind.resource.plural.clone(),
    };
    let denial = if !request.kind.namespaced && grant.is_namespaced() {
        Some(format!(
            "{} is cluster-scoped and the plugin is granted only namespaces",
            request.kind.resource.kind
        ))
    } else if request.kind.namespaced {
        match request.namespace {
            Some(namespace) if !grant.allows_namespace(namespace) => {
                Some(format!("namespace {namespace} is not granted"))
            }
            None if grant.is_namespaced() => Some("all namespaces are not granted".to_string()),
            _ => None,
        }
    } else {
        None
    };
    let denial = denial.or_else(|| {
        (!grant.allows(
            &request.kind.resource.group,
            &resource,
            request.verb,
            request.name,
        ))
        .then(|| {
            format!(
                "the grant does not allow {} on {}",
                request.verb.as_str(),
                display(&request.kind.resource.group, &resource)
            )
        })
    });
    match denial {
        None => Ok(()),
        Some(reason) => {
            series.count_denied(
                request.verb.as_str(),
                &display(&request.kind.resource.group, &resource),
            );
            tracing::debug!(plugin, reason, "host call denied");
            Err(HostError::Forbidden(format!(
                "plugin {plugin} may not {} {}{}: {reason}",
                request.verb.as_str(),
                display(&request.kind.resource.group, &resource),
                request.whereabouts(),
            )))
        }
    }
}

fn display(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{group}/{resource}")
    }
}

#[cfg(test)]
mod tests {
    use kube::api::ApiResource;

    use super::*;
    use crate::ops::metrics::Metrics;

    fn kind(group: &str, plural: &str, namespaced: bool) -> ResolvedKind {
        ResolvedKind {
            resource: ApiResource {
                group: group.into(),
                version: "v1".into(),
                api_version: if group.is_empty() {
                    "v1".into()
                } else {
                    format!("{group}/v1")
                },
                kind: "Thing".into(),
                plural: plural.into(),
            },
            namespaced,
        }
    }

    fn request<'a>(kind: &'a ResolvedKind, verb: Verb, namespace: Option<&'a str>) -> Request<'a> {
        Request {
            kind,
            verb,
            namespace,
            name: Some("x"),
            subresource: None,
        }
    }

    #[test]
    fn only_granted_namespaces_resources_and_verbs_pass_and_denials_are_counted() {
        let grant = Grant::parse(
            "apiVersion: kubewasm.dev/v1\nnamespaces: [team-a]\npermissions:\n  - apiGroups: [\"\"]\n    resources: [configmaps]\n    verbs: [get, create]\n",
            "g.yaml",
        )
        .unwrap();
        let metrics = Metrics::new();
        let series = metrics.plugin_series("p");
        let configmaps = kind("", "configmaps", true);
        let secrets = kind("", "secrets", true);
        let nodes = kind("", "nodes", false);
        assert!(
            check(
                "p",
                &grant,
                &series,
                request(&configmaps, Verb::Get, Some("team-a"))
            )
            .is_ok()
        );
        for denied in [
            request(&configmaps, Verb::Get, Some("team-b")),
            request(&configmaps, Verb::Delete, Some("team-a")),
            request(&configmaps, Verb::List, None),
            request(&secrets, Verb::Get, Some("team-a")),
            request(&nodes, Verb::Get, None),
        ] {
            assert!(
                matches!(
                    check("p", &grant, &series, denied),
                    Err(HostError::Forbidden(_))
                ),
                "{denied:?}"
            );
        }
        let text = metrics.encode();
        assert!(
            text.contains("kubewasm_plugin_denied_calls_total{plugin=\"p\",verb=\"get\",resource=\"secrets\"} 1"),
            "{text}"
        );
    }
}
