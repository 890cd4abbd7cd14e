//! The objects a controller has been woken for and not yet started on: what waits in
//! kube-runtime's scheduler, behind its concurrency cap or behind a reconcile of the
//! same object still running. kube-runtime keeps no count of them, so the controller
//! keeps one beside it for the plugin's `workqueue_depth`.

use std::collections::HashSet;
use std::sync::Mutex;

use kube::api::DynamicObject;
use kube::runtime::reflector::ObjectRef;
use prometheus_client::metrics::gauge::Gauge;

/// An object by namespace and name: a controller watches one kind.
type Key = (Option<String>, String);

/// Objects waiting for their reconcile to start, counted into a gauge that several
/// backlogs (a plugin's controllers, one per namespace) may share.
#[derive(Debug)]
pub struct Backlog {
    waiting: Mutex<HashSet<Key>>,
    gauge: Gauge,
}

impl Backlog {
    /// An empty backlog counted into `gauge`.
    pub fn new(gauge: Gauge) -> Self {
        Self {
            waiting: Mutex::new(HashSet::new()),
            gauge,
        }
    }

    /// `object` was queued: a change woke it, or every object was queued.
    pub fn queued(&self, object: &DynamicObject) {
        let key = (
            object.metadata.namespace.clone(),
            object.metadata.name.clone().unwrap_or_default(),
        );
        if self.lock().insert(key) {
            self.gauge.inc();
        }
    }

    /// The reconcile of `object` started, or the object went away before it could.
    pub fn started(&self, namespace: Option<&str>, name: &str) {
        let key = (namespace.map(str::to_string), name.to_string());
        if self.lock().remove(&key) {
            self.gauge.dec();
        }
    }

    /// [`Backlog::started`] for kube-runtime's reference to the object.
    pub fn gone(&self, object: &ObjectRef<DynamicObject>) {
        self.started(object.namespace.as_deref(), &object.name);
    }

    /// The gauge it counts into.
    pub fn gauge(&self) -> &Gauge {
        &self.gauge
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashSet<Key>> {
        // The set stays whole whatever panicked while it was held.
        self.waiting
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Backlog {
    /// A stopped controller's objects no longer wait in it.
    fn drop(&mut self) {
        let left = self.lock().len() as i64;
        self.gauge.dec_by(left);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kube::api::ObjectMeta;

    fn object(namespace: &str, name: &str) -> DynamicObject {
        DynamicObject {
            types: None,
            metadata: ObjectMeta {
                namespace: Some(namespace.to_string()),
                name: Some(name.to_string()),
                ..Default::default()
            },
            data: serde_json::Value::Null,
        }
    }

    #[test]
    fn an_object_queued_twice_waits_once_until_it_starts() {
        let gauge = Gauge::default();
        let backlog = Backlog::new(gauge.clone());
        backlog.queued(&object("a", "one"));
        backlog.queued(&object("a", "one"));
        backlog.queued(&object("b", "one"));
        assert_eq!(gauge.get(), 2);
        backlog.started(Some("a"), "one");
        backlog.started(Some("a"), "one");
        assert_eq!(gauge.get(), 1);
    }

    #[test]
    fn backlogs_sharing_a_gauge_take_their_objects_with_them_when_dropped() {
        let gauge = Gauge::default();
        let first = Backlog::new(gauge.clone());
        let second = Backlog::new(gauge.clone());
        first.queued(&object("a", "one"));
        second.queued(&object("b", "one"));
        second.queued(&object("b", "two"));
        assert_eq!(gauge.get(), 3);
        drop(second);
        assert_eq!(gauge.get(), 1);
        first.started(Some("a"), "one");
        assert_eq!(gauge.get(), 0);
    }
}
