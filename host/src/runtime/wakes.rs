//! Which changes wake a plugin: a change to something its reconcile can act on, not
//! every new `resourceVersion` of the object.
//!
//! Every plugin watching a namespace would otherwise be woken by every write to every
//! object there, including the ones that only touch another controller's bookkeeping:
//! each plugin's finalizer, added to each object it reconciles, wakes every other
//! plugin watching that object once more for nothing. A change wakes a plugin when it
//! changes the object's content (everything outside `metadata`, status included), its
//! labels, annotations, owner references or generation, starts its deletion, or adds or
//! removes the plugin's own finalizer; once an object is being deleted, any change to
//! its finalizers wakes it too. A new object, and an object recreated under the same
//! name, always wakes it.
//!
//! The filter is kube-runtime's `predicate_filter`, fed from the shared watch's fan-out.

use std::borrow::Cow;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures::{Stream, StreamExt};
use kube::api::{ApiResource, DynamicObject, ObjectMeta};
use kube::runtime::{PredicateConfig, WatchStreamExt, watcher};

/// Passes on the objects of `changes` whose `hash` (a [`wake_hash`] with the plugin's
/// finalizer of the time, which may change on a reload) differs from the last seen.
pub fn wakes<H>(
    changes: impl Stream<Item = Arc<DynamicObject>> + Send + 'static,
    hash: H,
) -> impl Stream<Item = Arc<DynamicObject>> + Send + 'static
where
    H: Fn(&DynamicObject) -> u64 + Send + 'static,
{
    changes
        .map(|object| Ok::<_, watcher::Error>(Shared(object)))
        .predicate_filter(
            move |object: &Shared| Some(hash(&object.0)),
            PredicateConfig::default(),
        )
        .filter_map(|change| std::future::ready(change.ok().map(|shared| shared.0)))
}

/// A hash of what, in `object`, should wake a plugin whose finalizer is `finalizer`.
pub fn wake_hash(object: &DynamicObject, finalizer: Option<&str>) -> u64 {
    let mut hasher = DefaultHasher::new();
    let meta = &object.metadata;
    meta.uid.hash(&mut hasher);
    meta.generation.hash(&mut hasher);
    meta.labels.hash(&mut hasher);
    meta.annotations.hash(&mut hasher);
    meta.deletion_timestamp
        .as_ref()
        .map(|time| time.0)
        .hash(&mut hasher);
    for owner in meta.owner_references.iter().flatten() {
        (
            &owner.api_version,
            &owner.kind,
            &owner.name,
            &owner.uid,
            owner.controller,
            owner.block_owner_deletion,
        )
            .hash(&mut hasher);
    }
    hash_finalizers(meta, finalizer, &mut hasher);
    object.data.hash(&mut hasher);
    hasher.finish()
}

fn hash_finalizers(meta: &ObjectMeta, own: Option<&str>, hasher: &mut DefaultHasher) {
    let finalizers = meta.finalizers.iter().flatten();
    if meta.deletion_timestamp.is_some() {
        finalizers.for_each(|finalizer| finalizer.hash(hasher));
    } else {
        finalizers
            .filter(|finalizer| Some(finalizer.as_str()) == own)
            .for_each(|finalizer| finalizer.hash(hasher));
    }
}

/// A shared object, as kube-runtime's predicate filter takes only owned resources.
struct Shared(Arc<DynamicObject>);

impl kube::Resource for Shared {
    type DynamicType = ApiResource;
    type Scope = kube::core::DynamicResourceScope;

    fn kind(resource: &ApiResource) -> Cow<'_, str> {
        DynamicObject::kind(resource)
    }

    fn group(resource: &ApiResource) -> Cow<'_, str> {
        DynamicObject::group(resource)
    }

    fn version(resource: &ApiResource) -> Cow<'_, str> {
        DynamicObject::version(resource)
    }

    fn plural(resource: &ApiResource) -> Cow<'_, str> {
        DynamicObject::plural(resource)
    }

    fn meta(&self) -> &ObjectMeta {
        &self.0.metadata
    }

    fn meta_mut(&mut self) -> &mut ObjectMeta {
        &mut Arc::make_mut(&mut self.0).metadata
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    const OWN: &str = "example.com/own";

    fn object() -> DynamicObject {
        serde_json::from_value(serde_json::json!({
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {
                "name": "a", "namespace": "ns", "uid": "1", "resourceVersion": "10",
                "labels": {"app": "x"},
            },
            "data": {"key": "value"},
        }))
        .expect("a valid object")
    }

    fn hash(object: &DynamicObject) -> u64 {
        wake_hash(object, Some(OWN))
    }

    #[test]
    fn bookkeeping_of_others_does_not_wake() {
        let before = object();
        let mut after = before.clone();
        after.metadata.resource_version = Some("11".into());
        after.metadata.finalizers = Some(vec!["example.com/other".into()]);
        assert_eq!(hash(&before), hash(&after));
    }

    #[test]
    fn what_a_reconcile_acts_on_wakes() {
        let before = object();
        let changes: [fn(&mut DynamicObject); 7] = [
            |o| o.data["data"]["key"] = "other".into(),
            |o| o.data["status"] = serde_json::json!({"ready": true}),
            |o| o.metadata.labels = None,
            |o| o.metadata.annotations = Some([("a".into(), "b".into())].into()),
            |o| o.metadata.uid = Some("2".into()),
            |o| o.metadata.finalizers = Some(vec![OWN.into()]),
            |o| o.metadata.deletion_timestamp = Some(Time(Default::default())),
        ];
        for (i, change) in changes.into_iter().enumerate() {
            let mut after = before.clone();
            change(&mut after);
            assert_ne!(hash(&before), hash(&after), "change {i} did not wake");
        }
    }

    #[test]
    fn any_finalizer_wakes_once_the_object_is_being_deleted() {
        let mut before = object();
        before.metadata.deletion_timestamp = Some(Time(Default::default()));
        before.metadata.finalizers = Some(vec![OWN.into(), "example.com/other".into()]);
        let mut after = before.clone();
        after.metadata.finalizers = Some(vec![OWN.into()]);
        assert_ne!(hash(&before), hash(&after));
    }

    #[tokio::test]
    async fn only_changes_that_matter_pass() {
        let first = object();
        let mut bookkeeping = first.clone();
        bookkeeping.metadata.finalizers = Some(vec!["example.com/other".into()]);
        let mut edited = bookkeeping.clone();
        edited.data["data"]["key"] = "other".into();
        let passed: Vec<_> = wakes(
            futures::stream::iter([first, bookkeeping, edited.clone()].map(Arc::new)),
            hash,
        )
        .collect()
        .await;
        assert_eq!(passed.len(), 2);
        assert_eq!(*passed[1], edited);
    }
}
