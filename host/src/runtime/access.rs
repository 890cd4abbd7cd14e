//! The grant check every `kube` import call passes before anything is sent.

use crate::grant::{Grant, Verb};
use crate::ops::metrics::PluginSeries;
use crate::reconciler::HostError;

use super::kinds::ResolvedKind;

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
                "plugin {plugin} may not {} {}{}{}: {reason}",
                request.verb.as_str(),
                display(&request.kind.resource.group, &resource),
                request
                    .name
                    .map(|name| format!(" {name}"))
                    .unwrap_or_default(),
                request
                    .namespace
                    .map(|namespace| format!(" in {namespace}"))
                    .unwrap_or_default(),
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
            "namespaces: [team-a]\npermissions:\n  - apiGroups: [\"\"]\n    resources: [configmaps]\n    verbs: [get, create]\n",
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
