//! [`HostCalls`] over an in-memory object store: for sandbox tests, benchmarks, and
//! `kubewasm check`'s dry runs. No grant is enforced; everything succeeds that would on
//! an empty cluster with an all-powerful user.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::reconciler::{EventType, HostCalls, HostError, ObjectRef};

type Key = (String, String, Option<String>, String);

/// Objects by (apiVersion, kind, namespace, name), and what the guest did.
#[derive(Debug, Default)]
pub struct MemoryHost {
    subject: String,
    objects: Mutex<BTreeMap<Key, Value>>,
    events: Mutex<Vec<RecordedEvent>>,
}

/// An Event a guest published.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Normal or Warning.
    pub event_type: EventType,
    /// The reason.
    pub reason: String,
    /// The note.
    pub note: String,
}

fn key(target: &ObjectRef) -> Key {
    (
        target.api_version.clone(),
        target.kind.clone(),
        target.namespace.clone(),
        target.name.clone(),
    )
}

fn key_of(object: &Value) -> Result<Key, HostError> {
    let field = |pointer: &str| object.pointer(pointer).and_then(Value::as_str);
    let missing = |what: &str| HostError::Invalid(format!("the object has no {what}"));
    Ok((
        field("/apiVersion")
            .ok_or_else(|| missing("apiVersion"))?
            .to_string(),
        field("/kind").ok_or_else(|| missing("kind"))?.to_string(),
        field("/metadata/namespace").map(str::to_string),
        field("/metadata/name")
            .ok_or_else(|| missing("metadata.name"))?
            .to_string(),
    ))
}

fn parse(json: &str) -> Result<Value, HostError> {
    serde_json::from_str(json).map_err(|err| HostError::Invalid(format!("not JSON: {err}")))
}

impl MemoryHost {
    /// An empty store; `subject` tags log lines (`namespace/name`).
    pub fn new(subject: impl Into<String>) -> Arc<Self> {
        Arc::new(Self {
            subject: subject.into(),
            ..Default::default()
        })
    }

    /// Puts an object into the store.
    pub fn insert(&self, object: Value) {
        let key = key_of(&object).expect("inserted objects need apiVersion, kind and name");
        self.objects.lock().unwrap().insert(key, object);
    }

    /// An object from the store.
    pub fn object(&self, target: &ObjectRef) -> Option<Value> {
        self.objects.lock().unwrap().get(&key(target)).cloned()
    }

    /// How many objects the store holds.
    pub fn len(&self) -> usize {
        self.objects.lock().unwrap().len()
    }

    /// Whether the store is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The Events published so far.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.events.lock().unwrap().clone()
    }
}

#[async_trait::async_trait]
impl HostCalls for MemoryHost {
    async fn get(&self, target: ObjectRef) -> Result<String, HostError> {
        self.object(&target)
            .map(|object| object.to_string())
            .ok_or_else(|| HostError::NotFound(format!("{} {}", target.kind, target.name)))
    }

    async fn list(
        &self,
        api_version: String,
        kind: String,
        namespace: Option<String>,
        label_selector: Option<String>,
    ) -> Result<String, HostError> {
        let selector = label_selector
            .as_deref()
            .map(crate::selector::parse)
            .transpose()
            .map_err(|err| HostError::Invalid(err.to_string()))?;
        let objects = self.objects.lock().unwrap();
        let items: Vec<&Value> = objects
            .iter()
            .filter(|((v, k, ns, _), _)| {
                *v == api_version && *k == kind && (namespace.is_none() || *ns == namespace)
            })
            .filter(|(_, object)| {
                selector.as_ref().is_none_or(|selector| {
                    use kube::core::SelectorExt;
                    let labels = object
                        .pointer("/metadata/labels")
                        .cloned()
                        .and_then(|labels| serde_json::from_value(labels).ok())
                        .unwrap_or_default();
                    selector.matches(&labels)
                })
            })
            .map(|(_, object)| object)
            .collect();
        Ok(serde_json::to_string(&items).expect("values serialize"))
    }

    async fn apply(&self, object: String) -> Result<String, HostError> {
        let object = parse(&object)?;
        let key = key_of(&object)?;
        self.objects.lock().unwrap().insert(key, object.clone());
        Ok(object.to_string())
    }

    async fn patch_status(&self, target: ObjectRef, status: String) -> Result<String, HostError> {
        let status = parse(&status)?;
        let mut objects = self.objects.lock().unwrap();
        let object = objects
            .get_mut(&key(&target))
            .ok_or_else(|| HostError::NotFound(format!("{} {}", target.kind, target.name)))?;
        object["status"] = status;
        Ok(object.to_string())
    }

    async fn create(&self, object: String) -> Result<String, HostError> {
        let object = parse(&object)?;
        let key = key_of(&object)?;
        let mut objects = self.objects.lock().unwrap();
        if objects.contains_key(&key) {
            return Err(HostError::Conflict(format!("{} {} exists", key.1, key.3)));
        }
        objects.insert(key, object.clone());
        Ok(object.to_string())
    }

    async fn delete(&self, target: ObjectRef) -> Result<(), HostError> {
        self.objects
            .lock()
            .unwrap()
            .remove(&key(&target))
            .map(|_| ())
            .ok_or_else(|| HostError::NotFound(format!("{} {}", target.kind, target.name)))
    }

    async fn publish_event(&self, event_type: EventType, reason: String, note: String) {
        self.events.lock().unwrap().push(RecordedEvent {
            event_type,
            reason,
            note,
        });
    }

    fn subject(&self) -> String {
        self.subject.clone()
    }
}
