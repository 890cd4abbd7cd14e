//! Shared watches: one kube-runtime watcher and reflector store per distinct
//! (kind, namespace scope, label selector), shared by every plugin that needs it.
//!
//! Each watch fans the objects it sees out to its subscribers (the plugins'
//! controllers) over a broadcast channel; a subscriber that falls behind is handed the
//! whole store instead of the events it missed, so nothing is lost. Subscribers may
//! come and go while the watch runs (plugins are reloaded), which kube-runtime's own
//! shared reflector does not allow.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, Weak};

use futures::{Stream, StreamExt, TryStreamExt};
use kube::api::{Api, ApiResource, DynamicObject, TypeMeta};
use kube::core::{Selector, SelectorExt};
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use kube::runtime::{WatchStreamExt, reflector::ObjectRef};
use tokio::sync::broadcast;
use tokio_stream::wrappers::BroadcastStream;
use tokio_stream::wrappers::errors::BroadcastStreamRecvError;

use crate::ops::metrics::Metrics;

/// The annotation `kubectl apply` keeps, stripped from cached objects.
const LAST_APPLIED: &str = "kubectl.kubernetes.io/last-applied-configuration";
/// Objects a subscriber may fall behind by before it is resynchronised from the store.
const FAN_OUT_BUFFER: usize = 4096;

/// What a shared watch covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WatchKey {
    /// The kind.
    pub resource: ApiResource,
    /// The namespace, `None` for all (or for a cluster-scoped kind).
    pub namespace: Option<String>,
    /// The label selector, `None` for every object.
    pub label_selector: Option<String>,
}

impl std::fmt::Display for WatchKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.resource.api_version, self.resource.kind)?;
        match &self.namespace {
            Some(namespace) => write!(f, " in {namespace}")?,
            None => write!(f, " cluster-wide")?,
        }
        if let Some(selector) = &self.label_selector {
            write!(f, " matching {selector}")?;
        }
        Ok(())
    }
}

/// One running watch and its store.
pub struct SharedWatch {
    key: WatchKey,
    store: Store<DynamicObject>,
    fan_out: broadcast::Sender<Arc<DynamicObject>>,
    synced: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for SharedWatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedWatch")
            .field("key", &self.key)
            .field("synced", &self.synced.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl Drop for SharedWatch {
    fn drop(&mut self) {
        self.task.abort();
        self.metrics.watches.dec();
        tracing::info!(watch = %self.key, "watch closed");
    }
}

impl SharedWatch {
    /// What it covers.
    pub fn key(&self) -> &WatchKey {
        &self.key
    }

    /// Its store (filled once [`SharedWatch::is_synced`]).
    pub fn store(&self) -> &Store<DynamicObject> {
        &self.store
    }

    /// Whether the initial list has completed at least once.
    pub fn is_synced(&self) -> bool {
        self.synced.load(Ordering::Acquire)
    }

    /// Objects as they change (and, after falling behind, every cached object), only
    /// those matching `filter` when there is one.
    pub fn subscribe(
        &self,
        filter: Option<Selector>,
    ) -> impl Stream<Item = Arc<DynamicObject>> + Send + 'static {
        let store = self.store.clone();
        let key = self.key.to_string();
        BroadcastStream::new(self.fan_out.subscribe()).flat_map(move |item| {
            let mut objects = match item {
                Ok(object) => vec![object],
                Err(BroadcastStreamRecvError::Lagged(missed)) => {
                    tracing::warn!(watch = %key, missed, "a controller fell behind its watch; resynchronising it from the store");
                    store.state()
                }
            };
            if let Some(filter) = &filter {
                objects.retain(|object| matches(filter, object));
            }
            futures::stream::iter(objects)
        })
    }

    /// Reads one object from the store.
    pub fn get(&self, namespace: Option<&str>, name: &str) -> Option<Arc<DynamicObject>> {
        let mut reference = ObjectRef::new_with(name, self.key.resource.clone());
        if let Some(namespace) = namespace {
            reference = reference.within(namespace);
        }
        self.store.get(&reference)
    }
}

/// Every shared watch of the process.
pub struct Watches {
    client: kube::Client,
    page_size: u32,
    metrics: Arc<Metrics>,
    watches: Mutex<HashMap<WatchKey, Weak<SharedWatch>>>,
}

impl std::fmt::Debug for Watches {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Watches")
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl Watches {
    /// A registry whose watches list `page_size` objects per page.
    pub fn new(client: kube::Client, page_size: u32, metrics: Arc<Metrics>) -> Self {
        Self {
            client,
            page_size,
            metrics,
            watches: Mutex::new(HashMap::new()),
        }
    }

    /// The watch serving `key`, started if nobody holds one yet; it stops when the last
    /// holder drops it. A key with a label selector is served by a running watch of every
    /// object of the same kind and namespace when there is one, rather than by a second
    /// API-server watch that sends the same objects again; the selector is then returned
    /// for the holder to apply in the host.
    pub fn acquire(&self, key: WatchKey) -> (Arc<SharedWatch>, Option<Selector>) {
        let mut watches = self.watches.lock().expect("watch registry poisoned");
        watches.retain(|_, watch| watch.strong_count() > 0);
        if let Some(watch) = watches.get(&key).and_then(Weak::upgrade) {
            return (watch, None);
        }
        let wider = WatchKey {
            label_selector: None,
            ..key.clone()
        };
        let selector = key.label_selector.as_deref().map(crate::selector::parse);
        if let (Some(watch), Some(Ok(selector))) =
            (watches.get(&wider).and_then(Weak::upgrade), selector)
        {
            tracing::info!(watch = %key, "served by the watch of every object in its scope");
            return (watch, Some(selector));
        }
        let watch = Arc::new(self.start(key.clone()));
        watches.insert(key, Arc::downgrade(&watch));
        (watch, None)
    }

    /// Running watches of `resource` that cover `namespace` (`None`: all namespaces),
    /// those without a label selector first.
    pub fn covering(
        &self,
        resource: &ApiResource,
        namespace: Option<&str>,
    ) -> Vec<Arc<SharedWatch>> {
        let watches = self.watches.lock().expect("watch registry poisoned");
        let mut found: Vec<Arc<SharedWatch>> = watches
            .values()
            .filter_map(Weak::upgrade)
            .filter(|watch| {
                watch.key.resource == *resource
                    && watch.is_synced()
                    && (watch.key.namespace.is_none()
                        || watch.key.namespace.as_deref() == namespace)
            })
            .collect();
        found.sort_by_key(|watch| watch.key.label_selector.is_some());
        found
    }

    /// Whether every running watch has synced.
    pub fn all_synced(&self) -> bool {
        let watches = self.watches.lock().expect("watch registry poisoned");
        watches
            .values()
            .filter_map(Weak::upgrade)
            .all(|watch| watch.is_synced())
    }

    fn start(&self, key: WatchKey) -> SharedWatch {
        let api: Api<DynamicObject> = match &key.namespace {
            Some(namespace) => Api::namespaced_with(self.client.clone(), namespace, &key.resource),
            None => Api::all_with(self.client.clone(), &key.resource),
        };
        let mut config = watcher::Config::default().page_size(self.page_size);
        if let Some(selector) = &key.label_selector {
            config = config.labels(selector);
        }
        let writer = reflector::store::Writer::new(key.resource.clone());
        let store = writer.as_reader();
        let (fan_out, _) = broadcast::channel(FAN_OUT_BUFFER);
        let synced = Arc::new(AtomicBool::new(false));
        let types = TypeMeta {
            api_version: key.resource.api_version.clone(),
            kind: key.resource.kind.clone(),
        };
        let events = watcher::watcher(api, config)
            .default_backoff()
            .modify(move |object: &mut DynamicObject| strip(object, &types));
        let task = tokio::spawn(run(
            key.clone(),
            reflector::reflector(writer, events),
            fan_out.clone(),
            synced.clone(),
        ));
        self.metrics.watches.inc();
        tracing::info!(watch = %key, "watch opened");
        SharedWatch {
            key,
            store,
            fan_out,
            synced,
            task,
            metrics: self.metrics.clone(),
        }
    }
}

async fn run(
    key: WatchKey,
    events: impl Stream<Item = Result<Event<DynamicObject>, watcher::Error>>,
    fan_out: broadcast::Sender<Arc<DynamicObject>>,
    synced: Arc<AtomicBool>,
) {
    let mut events = std::pin::pin!(events.into_stream());
    while let Some(event) = events.next().await {
        match event {
            Ok(Event::Apply(object) | Event::Delete(object) | Event::InitApply(object)) => {
                // No subscribers is fine: the store is updated all the same.
                let _ = fan_out.send(Arc::new(object));
            }
            Ok(Event::Init) => {}
            Ok(Event::InitDone) => {
                if !synced.swap(true, Ordering::AcqRel) {
                    tracing::info!(watch = %key, "watch synced");
                }
            }
            Err(err) => tracing::warn!(watch = %key, "watch failed, retrying with backoff: {err}"),
        }
    }
}

/// Whether `object`'s labels match `selector`.
pub fn matches(selector: &Selector, object: &DynamicObject) -> bool {
    selector.matches(
        object
            .metadata
            .labels
            .as_ref()
            .unwrap_or(&Default::default()),
    )
}

/// Removes what no plugin needs and every plugin would pay to copy: managed fields and
/// the last-applied annotation. Fills in `apiVersion` and `kind`, which list responses
/// leave out of their items.
fn strip(object: &mut DynamicObject, types: &TypeMeta) {
    object.metadata.managed_fields = None;
    if let Some(annotations) = object.metadata.annotations.as_mut() {
        annotations.remove(LAST_APPLIED);
        if annotations.is_empty() {
            object.metadata.annotations = None;
        }
    }
    if object.types.is_none() {
        object.types = Some(types.clone());
    }
}
