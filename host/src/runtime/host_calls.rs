//! The host imports a plugin gets while it reconciles one object: reads from the shared
//! stores or the API, writes to the API as the plugin's ServiceAccount, every call
//! checked against the grant first.

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ObjectReference;
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams};
use kube::runtime::events::{Event, EventType as KubeEventType};
use tokio_util::sync::CancellationToken;

use super::access::{self, Request};
use super::kinds::{KindError, ResolvedKind};
use super::plugin::{PluginShared, PluginVersion};
use super::watches;
use crate::grant::Verb;
use crate::names;
use crate::ops::metrics::Throttled;
use crate::reconciler::{EventType, HostCalls, HostError, ObjectRef};

/// Objects per page of a `kube.list` the API server answers.
const LIST_PAGE: u32 = 500;
/// Most objects one `kube.list` returns; a longer list is an error, never cut short (a
/// reconciler would take what seems missing for gone).
pub const MAX_LIST_OBJECTS: usize = 5_000;
/// Most bytes of JSON one `kube.list` returns.
pub const MAX_LIST_BYTES: usize = 32 << 20;

/// Longest Event reason and note the API server accepts.
const MAX_REASON: usize = 128;
const MAX_NOTE: usize = 1024;

/// [`HostCalls`] for one reconcile of one object.
pub struct KubeHostCalls {
    plugin: Arc<PluginShared>,
    version: Arc<PluginVersion>,
    subject: ObjectReference,
    stopping: CancellationToken,
}

impl KubeHostCalls {
    /// Host calls for reconciling `subject` with `version` of `plugin`, by a controller
    /// that cancels `stopping` when it stops taking work.
    pub fn new(
        plugin: Arc<PluginShared>,
        version: Arc<PluginVersion>,
        subject: ObjectReference,
        stopping: CancellationToken,
    ) -> Self {
        Self {
            plugin,
            version,
            subject,
            stopping,
        }
    }

    async fn resolve(&self, api_version: &str, kind: &str) -> Result<ResolvedKind, HostError> {
        self.plugin
            .kinds
            .resolve(api_version, kind)
            .await
            .map_err(|err| match err {
                KindError::Unknown { .. } => HostError::NotFound(err.to_string()),
                KindError::Invalid(_) => HostError::Invalid(err.to_string()),
                KindError::Discovery { .. } => HostError::Unavailable(err.to_string()),
            })
    }

    /// The namespace a call on `kind` acts in: the given one, or for a namespaced
    /// kind the reconciled object's.
    fn namespace<'a>(&'a self, kind: &ResolvedKind, given: Option<&'a str>) -> Option<&'a str> {
        if !kind.namespaced {
            return None;
        }
        given.or(self.subject.namespace.as_deref())
    }

    fn check(&self, request: Request<'_>) -> Result<(), HostError> {
        access::check(
            &self.plugin.name,
            &self.version.grant,
            &self.plugin.plugin_series,
            request,
        )
    }

    /// Waits for the plugin's request rate to allow one more request to the API server,
    /// and counts it; a call that would wait more than half its deadline is refused as
    /// `unavailable` at once.
    async fn admit_request(&self) -> Result<(), HostError> {
        let limits = &self.version.grant.limits;
        let series = &self.plugin.plugin_series;
        match self
            .version
            .requests
            .reserve(Duration::from_millis(limits.timeout_ms / 2))
        {
            Some(wait) => {
                if !wait.is_zero() {
                    series.count_throttled(Throttled::Delayed);
                    tokio::time::sleep(wait).await;
                }
                series.count_api_request();
                Ok(())
            }
            None => {
                series.count_throttled(Throttled::Refused);
                Err(HostError::Unavailable(format!(
                    "plugin {} is over its rate of {} API requests a second (bursts of {}): \
                     try again later",
                    self.plugin.name, limits.api_requests_per_second, limits.api_request_burst
                )))
            }
        }
    }

    /// Checks that the plugin's ServiceAccount may itself make `request`, which the host
    /// answers from a store filled with its own identity.
    async fn review_store_read(&self, request: Request<'_>) -> Result<(), HostError> {
        access::review_store_read(&self.plugin.reviews, &self.version.grant, request).await
    }

    fn api(&self, kind: &ResolvedKind, namespace: Option<&str>) -> Api<DynamicObject> {
        match namespace {
            Some(namespace) => {
                Api::namespaced_with(self.version.client.clone(), namespace, &kind.resource)
            }
            None => Api::all_with(self.version.client.clone(), &kind.resource),
        }
    }

    fn parse_object(json: &str) -> Result<DynamicObject, HostError> {
        let object: DynamicObject = serde_json::from_str(json)
            .map_err(|err| HostError::Invalid(format!("the object is not valid JSON: {err}")))?;
        let Some(types) = &object.types else {
            return Err(HostError::Invalid(
                "the object has no apiVersion and kind".into(),
            ));
        };
        let Some(name) = &object.metadata.name else {
            return Err(HostError::Invalid("the object has no metadata.name".into()));
        };
        check_names(
            &types.api_version,
            &types.kind,
            object.metadata.namespace.as_deref(),
            Some(name),
        )?;
        Ok(object)
    }

    /// Reads `kind` objects in one scope, from a store when one covers it.
    async fn list_scope(
        &self,
        kind: &ResolvedKind,
        namespace: Option<&str>,
        selector: Option<&(String, kube::core::Selector)>,
    ) -> Result<Vec<Arc<DynamicObject>>, HostError> {
        for watch in self.plugin.watches.covering(&kind.resource, namespace) {
            let same_selector =
                watch.key().label_selector.as_deref() == selector.map(|(text, _)| text.as_str());
            if watch.key().label_selector.is_some() && !same_selector {
                continue;
            }
            let in_scope = |object: &DynamicObject| {
                namespace
                    .is_none_or(|namespace| object.metadata.namespace.as_deref() == Some(namespace))
            };
            let matches = |object: &DynamicObject| match selector {
                Some((_, parsed)) if !same_selector => watches::matches(parsed, object),
                _ => true,
            };
            self.review_store_read(Request {
                kind,
                verb: Verb::List,
                namespace,
                name: None,
                subresource: None,
            })
            .await?;
            return Ok(watch
                .store()
                .state_filter(|object| in_scope(object) && matches(object)));
        }
        let mut params = ListParams::default().limit(LIST_PAGE);
        if let Some((text, _)) = selector {
            params = params.labels(text);
        }
        let api = self.api(kind, namespace);
        let mut items = Vec::new();
        loop {
            self.admit_request().await?;
            let page = api.list(&params).await.map_err(host_error)?;
            items.extend(page.items.into_iter().map(Arc::new));
            check_list_length(items.len())?;
            match page.metadata.continue_ {
                Some(token) if !token.is_empty() => params = params.continue_token(&token),
                _ => return Ok(items),
            }
        }
    }
}

/// Checks what a guest names before anything else is done with it: each becomes part of
/// a request path, or of a discovery request.
fn check_names(
    api_version: &str,
    kind: &str,
    namespace: Option<&str>,
    name: Option<&str>,
) -> Result<(), HostError> {
    names::check_api_version(api_version)
        .and_then(|()| names::check_kind(kind))
        .and_then(|()| namespace.map_or(Ok(()), names::check_namespace))
        .and_then(|()| name.map_or(Ok(()), names::check_object_name))
        .map_err(HostError::Invalid)
}

fn check_ref(target: &ObjectRef) -> Result<(), HostError> {
    check_names(
        &target.api_version,
        &target.kind,
        target.namespace.as_deref(),
        Some(&target.name),
    )
}

fn check_list_length(objects: usize) -> Result<(), HostError> {
    if objects > MAX_LIST_OBJECTS {
        return Err(HostError::Unavailable(format!(
            "the list has more than {MAX_LIST_OBJECTS} objects: narrow it with a namespace or \
             a label selector"
        )));
    }
    Ok(())
}

fn to_json(object: &DynamicObject) -> String {
    let mut object = object.clone();
    object.metadata.managed_fields = None;
    serde_json::to_string(&object).expect("objects serialize")
}

/// The guest's view of an API error.
pub fn host_error(err: kube::Error) -> HostError {
    match err {
        kube::Error::Api(status) => {
            let message = status.message.clone();
            match status.code {
                404 => HostError::NotFound(message),
                403 | 401 => HostError::Forbidden(message),
                409 => HostError::Conflict(message),
                400 | 422 => HostError::Invalid(message),
                429 | 500..=599 => HostError::Unavailable(message),
                _ => HostError::Other(message),
            }
        }
        kube::Error::HyperError(_) | kube::Error::Service(_) | kube::Error::HttpError(_) => {
            HostError::Unavailable(err.to_string())
        }
        other => HostError::Other(other.to_string()),
    }
}

#[async_trait::async_trait]
impl HostCalls for KubeHostCalls {
    async fn get(&self, target: ObjectRef) -> Result<String, HostError> {
        check_ref(&target)?;
        let kind = self.resolve(&target.api_version, &target.kind).await?;
        let namespace = self.namespace(&kind, target.namespace.as_deref());
        let request = Request {
            kind: &kind,
            verb: Verb::Get,
            namespace,
            name: Some(&target.name),
            subresource: None,
        };
        self.check(request)?;
        for watch in self.plugin.watches.covering(&kind.resource, namespace) {
            let found = watch.get(namespace, &target.name);
            if found.is_none() && watch.key().label_selector.is_some() {
                continue;
            }
            // Found or not, the store answers; not-found too says what the host's
            // identity can see, so the account's own right is asked first.
            self.review_store_read(request).await?;
            return match found {
                Some(object) => Ok(to_json(&object)),
                None => Err(HostError::NotFound(format!(
                    "{} {} not found",
                    kind.resource.kind, target.name
                ))),
            };
        }
        self.admit_request().await?;
        let object = self
            .api(&kind, namespace)
            .get(&target.name)
            .await
            .map_err(host_error)?;
        Ok(to_json(&object))
    }

    async fn list(
        &self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> Result<String, HostError> {
        check_names(&api_version, &kind, namespace.as_deref(), None)?;
        let kind = self.resolve(&api_version, &kind).await?;
        let selector = label_selector
            .map(|text| crate::selector::parse(&text).map(|parsed| (text, parsed)))
            .transpose()
            .map_err(|err| HostError::Invalid(err.to_string()))?;
        let scopes: Vec<Option<String>> = match (
            kind.namespaced,
            namespace,
            self.version.grant.namespace_list(),
        ) {
            (false, _, _) => vec![None],
            (true, Some(namespace), _) => vec![Some(namespace)],
            (true, None, None) => vec![None],
            // "Every namespace the plugin may see": each granted one.
            (true, None, Some(granted)) => granted
                .iter()
                .map(|ns| Some(ns.as_str().to_string()))
                .collect(),
        };
        let mut items: Vec<Arc<DynamicObject>> = Vec::new();
        for scope in &scopes {
            self.check(Request {
                kind: &kind,
                verb: Verb::List,
                namespace: scope.as_deref(),
                name: None,
                subresource: None,
            })?;
            items.extend(
                self.list_scope(&kind, scope.as_deref(), selector.as_ref())
                    .await?,
            );
            check_list_length(items.len())?;
        }
        // Each object serialized once, straight into the array.
        let mut json = String::from("[");
        for (index, object) in items.iter().enumerate() {
            if index > 0 {
                json.push(',');
            }
            json.push_str(&to_json(object));
            if json.len() > MAX_LIST_BYTES {
                return Err(HostError::Unavailable(format!(
                    "the list is larger than {} MiB: narrow it with a namespace or a label \
                     selector",
                    MAX_LIST_BYTES >> 20
                )));
            }
        }
        json.push(']');
        Ok(json)
    }

    async fn apply(&self, object: String) -> Result<String, HostError> {
        let object = Self::parse_object(&object)?;
        let types = object.types.clone().expect("checked by parse_object");
        let kind = self.resolve(&types.api_version, &types.kind).await?;
        let namespace = self.namespace(&kind, object.metadata.namespace.as_deref());
        let name = object
            .metadata
            .name
            .clone()
            .expect("checked by parse_object");
        self.check(Request {
            kind: &kind,
            verb: Verb::Patch,
            namespace,
            name: Some(&name),
            subresource: None,
        })?;
        self.admit_request().await?;
        let params = PatchParams::apply(&self.plugin.field_manager).force();
        let stored = self
            .api(&kind, namespace)
            .patch(&name, &params, &Patch::Apply(&object))
            .await
            .map_err(host_error)?;
        Ok(to_json(&stored))
    }

    async fn patch_status(&self, target: ObjectRef, status: String) -> Result<String, HostError> {
        check_ref(&target)?;
        let kind = self.resolve(&target.api_version, &target.kind).await?;
        let namespace = self.namespace(&kind, target.namespace.as_deref());
        self.check(Request {
            kind: &kind,
            verb: Verb::Patch,
            namespace,
            name: Some(&target.name),
            subresource: Some("status"),
        })?;
        let status: serde_json::Value = serde_json::from_str(&status)
            .map_err(|err| HostError::Invalid(format!("status is not valid JSON: {err}")))?;
        self.admit_request().await?;
        let params = PatchParams {
            field_manager: Some(self.plugin.field_manager.clone()),
            ..PatchParams::default()
        };
        let stored = self
            .api(&kind, namespace)
            .patch_status(
                &target.name,
                &params,
                &Patch::Merge(serde_json::json!({ "status": status })),
            )
            .await
            .map_err(host_error)?;
        Ok(to_json(&stored))
    }

    async fn create(&self, object: String) -> Result<String, HostError> {
        let mut object = Self::parse_object(&object)?;
        let types = object.types.clone().expect("checked by parse_object");
        let kind = self.resolve(&types.api_version, &types.kind).await?;
        let namespace = self
            .namespace(&kind, object.metadata.namespace.as_deref())
            .map(str::to_string);
        let name = object
            .metadata
            .name
            .clone()
            .expect("checked by parse_object");
        self.check(Request {
            kind: &kind,
            verb: Verb::Create,
            namespace: namespace.as_deref(),
            name: Some(&name),
            subresource: None,
        })?;
        object.metadata.namespace = namespace.clone();
        self.admit_request().await?;
        let params = PostParams {
            field_manager: Some(self.plugin.field_manager.clone()),
            ..PostParams::default()
        };
        let stored = self
            .api(&kind, namespace.as_deref())
            .create(&params, &object)
            .await
            .map_err(host_error)?;
        Ok(to_json(&stored))
    }

    async fn delete(&self, target: ObjectRef) -> Result<(), HostError> {
        check_ref(&target)?;
        let kind = self.resolve(&target.api_version, &target.kind).await?;
        let namespace = self.namespace(&kind, target.namespace.as_deref());
        self.check(Request {
            kind: &kind,
            verb: Verb::Delete,
            namespace,
            name: Some(&target.name),
            subresource: None,
        })?;
        self.admit_request().await?;
        self.api(&kind, namespace)
            .delete(&target.name, &DeleteParams::default())
            .await
            .map(|_| ())
            .map_err(host_error)
    }

    async fn publish_event(&self, event_type: EventType, reason: String, note: String) {
        let event = Event {
            type_: match event_type {
                EventType::Normal => KubeEventType::Normal,
                EventType::Warning => KubeEventType::Warning,
            },
            reason: crate::sandbox::truncate(&reason, MAX_REASON).to_string(),
            note: Some(crate::sandbox::truncate(&note, MAX_NOTE).to_string()),
            action: "Reconcile".to_string(),
            secondary: None,
        };
        self.plugin.events.publish(&event, &self.subject).await;
    }

    fn subject(&self) -> String {
        match &self.subject.namespace {
            Some(namespace) => {
                format!("{namespace}/{}", self.subject.name.as_deref().unwrap_or(""))
            }
            None => self.subject.name.clone().unwrap_or_default(),
        }
    }

    fn stopping(&self) -> CancellationToken {
        self.stopping.clone()
    }
}
