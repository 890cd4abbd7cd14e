//! The order of each plugin's changes: a worker task per plugin with changes queued,
//! which applies them one after another, and a lock per plugin held across each load
//! and unload of it. Neither outlives its use, so that a host whose plugins come and
//! go for months keeps no task or lock for a plugin long gone.

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, Weak};

use tokio::sync::mpsc;
use tokio::task::JoinSet;

/// Each running worker's queue, by plugin name.
///
/// A queue holds one pending change at most, since a change is applied by reading the
/// files as they are then. Changes are queued, and a worker leaves, only under this
/// lock: a worker leaves when its queue is empty, so every change is either in the
/// queue of a worker that will apply it or starts a new worker.
type Queues = Arc<Mutex<HashMap<String, mpsc::Sender<()>>>>;

fn lock(queues: &Queues) -> std::sync::MutexGuard<'_, HashMap<String, mpsc::Sender<()>>> {
    queues.lock().expect("change queues poisoned")
}

/// The changes queued for one plugin's worker.
#[derive(Debug)]
pub struct Changes {
    name: String,
    pending: mpsc::Receiver<()>,
    queues: Queues,
}

impl Changes {
    /// The plugin's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Waits for the next change; `None` once the workers are finishing.
    pub async fn next(&mut self) -> Option<()> {
        self.pending.recv().await
    }

    /// Ends the worker's turn if no change is queued (`true`): from then on the
    /// plugin's next change starts a new worker. A worker with more to do later (a
    /// load to try again) keeps its turn instead.
    pub fn leave_if_idle(&mut self) -> bool {
        let mut queues = lock(&self.queues);
        if !self.pending.is_empty() {
            return false;
        }
        queues.remove(&self.name);
        true
    }
}

/// One worker task per plugin with changes to apply; `start` runs a worker over its
/// plugin's [`Changes`] until it leaves.
pub struct ChangeWorkers<S> {
    queues: Queues,
    tasks: JoinSet<()>,
    start: S,
}

impl<S, F> ChangeWorkers<S>
where
    S: FnMut(Changes) -> F,
    F: Future<Output = ()> + Send + 'static,
{
    /// No workers yet; `start` runs each one.
    pub fn new(start: S) -> Self {
        Self {
            queues: Queues::default(),
            tasks: JoinSet::new(),
            start,
        }
    }

    /// Tells plugin `name`'s worker that its files changed, starting one if need be.
    pub fn changed(&mut self, name: &str) {
        self.reap();
        let pending = {
            let mut queues = lock(&self.queues);
            if let Some(queue) = queues.get(name) {
                match queue.try_send(()) {
                    // Full: a change is pending already, and will read these files.
                    Ok(()) | Err(mpsc::error::TrySendError::Full(())) => return,
                    // Its worker ended without leaving (it panicked): start another.
                    Err(mpsc::error::TrySendError::Closed(())) => {}
                }
            }
            let (queue, pending) = mpsc::channel(1);
            queue
                .try_send(())
                .expect("a new queue has room for one change");
            queues.insert(name.to_string(), queue);
            pending
        };
        self.tasks.spawn((self.start)(Changes {
            name: name.to_string(),
            pending,
            queues: self.queues.clone(),
        }));
    }

    /// How many plugins have a worker.
    #[cfg(test)]
    pub fn running(&self) -> usize {
        lock(&self.queues).len()
    }

    /// Lets every worker finish the change it is applying, then stop.
    pub async fn finish(mut self) {
        lock(&self.queues).clear();
        while let Some(ended) = self.tasks.join_next().await {
            report_panic(ended);
        }
    }

    /// Forgets the workers that have ended.
    fn reap(&mut self) {
        while let Some(ended) = self.tasks.try_join_next() {
            report_panic(ended);
        }
    }
}

fn report_panic(ended: Result<(), tokio::task::JoinError>) {
    if let Err(err) = ended
        && err.is_panic()
    {
        tracing::error!("a plugin's change worker panicked: {err}");
    }
}

/// One lock per plugin name, held across each load and unload of it: one plugin's
/// changes apply in order, and a plugin that takes seconds to compile holds up no
/// other plugin's. A lock lives while someone holds or waits for it.
#[derive(Debug, Default)]
pub struct ChangeLocks(Mutex<HashMap<String, Weak<tokio::sync::Mutex<()>>>>);

impl ChangeLocks {
    /// The lock of plugin `name`.
    pub fn of(&self, name: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.0.lock().expect("plugin change locks poisoned");
        locks.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = locks.get(name).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::default();
        locks.insert(name.to_string(), Arc::downgrade(&lock));
        lock
    }

    /// How many plugins' locks are held or waited for.
    #[cfg(test)]
    pub fn live(&self) -> usize {
        let locks = self.0.lock().expect("plugin change locks poisoned");
        locks
            .values()
            .filter(|lock| lock.strong_count() > 0)
            .count()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    /// Polls `done` until it holds, failing after a deadline.
    async fn eventually(what: &str, mut done: impl FnMut() -> bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while !done() {
            assert!(tokio::time::Instant::now() < deadline, "never: {what}");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    type Worker = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

    /// A plugin's files as the tests' workers see them: the version last written, the
    /// version last applied, and how many workers were started.
    #[derive(Default, Clone)]
    struct Files {
        written: Arc<AtomicUsize>,
        applied: Arc<AtomicUsize>,
        started: Arc<AtomicUsize>,
    }

    impl Files {
        fn write(&self, version: usize) {
            self.written.store(version, Ordering::SeqCst);
        }

        fn applied(&self) -> usize {
            self.applied.load(Ordering::SeqCst)
        }

        fn started(&self) -> usize {
            self.started.load(Ordering::SeqCst)
        }

        /// Workers that apply a change by copying the version written into the version
        /// applied, the way a plugin's worker reads its files as they are then.
        fn workers(&self) -> ChangeWorkers<impl FnMut(Changes) -> Worker + use<>> {
            let files = self.clone();
            ChangeWorkers::new(move |mut changes: Changes| {
                files.started.fetch_add(1, Ordering::SeqCst);
                let files = files.clone();
                Box::pin(async move {
                    while !changes.leave_if_idle() {
                        if changes.next().await.is_none() {
                            return;
                        }
                        tokio::task::yield_now().await;
                        let written = files.written.load(Ordering::SeqCst);
                        files.applied.store(written, Ordering::SeqCst);
                    }
                }) as Worker
            })
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_worker_leaves_once_idle_and_the_next_change_starts_another() {
        let files = Files::default();
        let mut workers = files.workers();
        files.write(1);
        workers.changed("mirror");
        eventually("the change is applied and its worker gone", || {
            files.applied() == 1 && workers.running() == 0
        })
        .await;
        files.write(2);
        workers.changed("mirror");
        eventually("the second change is applied", || {
            files.applied() == 2 && workers.running() == 0
        })
        .await;
        assert_eq!(files.started(), 2);
        workers.finish().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn no_change_is_lost_while_a_worker_leaves() {
        let files = Files::default();
        let mut workers = files.workers();
        for version in 1..=2_000 {
            files.write(version);
            workers.changed("mirror");
            if version % 100 == 0 {
                eventually("the worker leaves", || workers.running() == 0).await;
            } else if version % 7 == 0 {
                tokio::task::yield_now().await;
            }
        }
        eventually("the last change is applied and its worker gone", || {
            workers.running() == 0
        })
        .await;
        assert_eq!(files.applied(), 2_000);
        assert!(
            files.started() >= 20,
            "a worker for each hundred changes at least, as one left after each"
        );
        workers.finish().await;
    }

    #[tokio::test]
    async fn a_plugins_lock_orders_its_changes_and_goes_when_unused() {
        let locks = ChangeLocks::default();
        let held = locks.of("mirror").lock_owned().await;
        assert!(
            locks.of("mirror").try_lock().is_err(),
            "the same plugin's lock is the one held"
        );
        assert!(
            locks.of("other").try_lock().is_ok(),
            "another plugin's lock is its own"
        );
        assert_eq!(locks.live(), 1);
        drop(held);
        assert_eq!(locks.live(), 0);
        let _next = locks.of("next");
        assert_eq!(
            locks.0.lock().unwrap().len(),
            1,
            "the unused locks of mirror and other are gone"
        );
    }
}
