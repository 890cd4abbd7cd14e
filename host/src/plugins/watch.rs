//! Hot reload: the plugins directory is watched (notify, debounced), and a plugin is
//! started, reloaded or stopped when its files change.
//!
//! Writers such as editors and `cp` write a file in several steps. Changes are
//! debounced, the result is validated before it replaces anything, and a failure keeps
//! the running version until the next change. A removed file stops its plugin only if
//! it is still gone after a grace period, so that a file removed and written again (an
//! editor's save, a `rm` and `cp`) does not interrupt the plugin.
//!
//! Each plugin's changes are applied in order by a task of its own, so that a plugin
//! whose new version takes seconds to compile holds up no other plugin's change; the
//! task ends once it has nothing left to do (`ordering`). A directory published by
//! swapping a symlink rather than writing files is followed too (`links`).

use std::collections::BTreeSet;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::PluginDir;
use super::links::{ResolvedDir, may_be_a_swap};
use super::ordering::{ChangeWorkers, Changes};

/// How the directory is watched.
#[derive(Debug, Clone, Copy)]
pub struct ReloadOptions {
    /// Changes to one file closer together than this are taken as one.
    pub debounce: Duration,
    /// A plugin whose files are gone for this long is stopped.
    pub removal_grace: Duration,
}

impl Default for ReloadOptions {
    fn default() -> Self {
        Self {
            debounce: Duration::from_millis(20),
            removal_grace: Duration::from_secs(2),
        }
    }
}

/// The plugin a changed path belongs to: `NAME` of `DIR/NAME.wasm` or `DIR/NAME.yaml`.
fn plugin_of(dir: &Path, path: &Path) -> Option<String> {
    if path.parent()? != dir {
        return None;
    }
    let extension = path.extension()?.to_str()?;
    if extension != "wasm" && extension != "yaml" {
        return None;
    }
    Some(path.file_stem()?.to_str()?.to_string())
}

/// Watches `plugins`' directory until `shutdown` and applies every change.
pub fn watch(
    plugins: Arc<PluginDir>,
    options: ReloadOptions,
    shutdown: CancellationToken,
) -> notify::Result<tokio::task::JoinHandle<()>> {
    let mut dir = ResolvedDir::resolve(plugins.dir())?;
    let (changes, mut received) = mpsc::unbounded_channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(options.debounce, None, move |result| {
        let _ = changes.send(result);
    })?;
    debouncer.watch(dir.resolved(), RecursiveMode::NonRecursive)?;
    watch_link_parents(&mut debouncer, &dir);
    tracing::info!(dir = %dir.resolved().display(), "watching the plugins directory for changes");
    Ok(tokio::spawn(async move {
        let mut workers = ChangeWorkers::new({
            let (plugins, shutdown) = (plugins.clone(), shutdown.clone());
            move |changes| {
                apply_changes(
                    plugins.clone(),
                    changes,
                    options.removal_grace,
                    shutdown.clone(),
                )
            }
        });
        // Every plugin once at the start: changes made while the directory was being
        // loaded, and loads that failed for a reason outside their files, are applied.
        look_at_every_plugin(&plugins, &mut workers);
        loop {
            let batch = tokio::select! {
                _ = shutdown.cancelled() => break,
                batch = received.recv() => match batch {
                    Some(batch) => batch,
                    None => break,
                },
            };
            let events = match batch {
                Ok(events) => events,
                Err(errors) => {
                    for error in errors {
                        tracing::warn!(dir = %dir.resolved().display(), "watching the plugins directory: {error}");
                    }
                    continue;
                }
            };
            let paths = events.iter().flat_map(|event| event.paths.iter());
            let mut names = BTreeSet::new();
            let (mut swapped, mut link_changed) = (false, false);
            for path in paths {
                let parent = path.parent();
                if parent == Some(dir.resolved()) {
                    match plugin_of(dir.resolved(), path) {
                        Some(name) => {
                            names.insert(name);
                        }
                        None => swapped |= may_be_a_swap(path),
                    }
                }
                link_changed |= parent.is_some_and(|parent| dir.link_parents().contains(parent));
            }
            if link_changed && follow_moved_dir(&mut debouncer, &mut dir) {
                swapped = true;
            }
            if swapped {
                look_at_every_plugin(&plugins, &mut workers);
            }
            for name in names {
                workers.changed(&name);
            }
        }
        // The debouncer stops watching when dropped: it lives as long as the task.
        drop(debouncer);
        workers.finish().await;
    }))
}

/// Has every plugin of the directory, and every one running, looked at again; those
/// whose files are what their last load tried are left alone.
fn look_at_every_plugin<S, F>(plugins: &PluginDir, workers: &mut ChangeWorkers<S>)
where
    S: FnMut(Changes) -> F,
    F: std::future::Future<Output = ()> + Send + 'static,
{
    let mut names: BTreeSet<String> = plugins.scan().unwrap_or_default().into_iter().collect();
    names.extend(plugins.loaded().into_keys());
    for name in names {
        workers.changed(&name);
    }
}

type Debouncer = notify_debouncer_full::Debouncer<
    notify::RecommendedWatcher,
    notify_debouncer_full::RecommendedCache,
>;

/// Watches the directories holding a symlink on the way to the plugins directory, so
/// that a swap of one is seen. Watching one twice is harmless.
fn watch_link_parents(debouncer: &mut Debouncer, dir: &ResolvedDir) {
    for parent in dir.link_parents() {
        if let Err(err) = debouncer.watch(parent, RecursiveMode::NonRecursive) {
            tracing::warn!(dir = %parent.display(), "not watching for the plugins directory being swapped: {err}");
        }
    }
}

/// Resolves the plugins directory again after a change beside a symlink on its path;
/// when it now leads elsewhere, watches the new directory instead of the old, and says
/// so (`true`).
fn follow_moved_dir(debouncer: &mut Debouncer, dir: &mut ResolvedDir) -> bool {
    let moved_from = match dir.re_resolve() {
        Ok(Some(old)) => old,
        Ok(None) => return false,
        Err(err) => {
            tracing::warn!(dir = %dir.resolved().display(), "the plugins directory cannot be resolved again; still watching it: {err}");
            return false;
        }
    };
    // The old directory may be gone already, and its watch with it.
    let _ = debouncer.unwatch(&moved_from);
    if let Err(err) = debouncer.watch(dir.resolved(), RecursiveMode::NonRecursive) {
        tracing::error!(dir = %dir.resolved().display(), "cannot watch the plugins directory; changes will go unseen: {err}");
    }
    watch_link_parents(debouncer, dir);
    tracing::info!(
        from = %moved_from.display(),
        to = %dir.resolved().display(),
        "the plugins directory was swapped; looking at every plugin again"
    );
    true
}

/// A plugin's worker: applies each change until none is left or the host shuts down. A
/// load that failed for a reason outside the files (the kind it watches not served yet,
/// the API server unreachable) is tried again after a backoff, unless a change comes
/// first; the worker stays for as long as such a load is to be tried again.
async fn apply_changes(
    plugins: Arc<PluginDir>,
    mut changes: Changes,
    grace: Duration,
    shutdown: CancellationToken,
) {
    let name = changes.name().to_string();
    let mut retry = RetryBackoff::default();
    loop {
        if retry.current().is_none() && changes.leave_if_idle() {
            return;
        }
        let retry_due = async {
            match retry.current() {
                Some(delay) => tokio::time::sleep(delay).await,
                None => std::future::pending().await,
            }
        };
        let next = tokio::select! {
            change = changes.next() => change,
            () = retry_due => Some(()),
            () = shutdown.cancelled() => None,
        };
        if next.is_none() || shutdown.is_cancelled() {
            return;
        }
        if apply_change(&plugins, &name, grace, &shutdown).await {
            retry.failed();
            tracing::info!(
                plugin = name,
                "trying its files again in {:?}",
                retry.current().unwrap_or_default()
            );
        } else {
            retry.reset();
        }
    }
}

/// The first wait before trying again files whose load failed for a reason outside
/// them; it doubles on each failure up to [`RETRY_MAX`].
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// The longest such wait.
const RETRY_MAX: Duration = Duration::from_secs(60);

/// When to try a plugin's files again, if at all.
#[derive(Debug, Default)]
struct RetryBackoff(Option<Duration>);

impl RetryBackoff {
    fn current(&self) -> Option<Duration> {
        self.0
    }

    fn failed(&mut self) {
        self.0 = Some(self.0.map_or(RETRY_FIRST, |last| (last * 2).min(RETRY_MAX)));
    }

    fn reset(&mut self) {
        self.0 = None;
    }
}

/// Applies plugin `name`'s files as they are now; whether its load failed for a reason
/// outside them, and should be tried again.
async fn apply_change(
    plugins: &Arc<PluginDir>,
    name: &str,
    grace: Duration,
    shutdown: &CancellationToken,
) -> bool {
    // A file being written is empty for a moment (truncated, not yet written): that
    // is never a plugin, and the write's next event will come.
    if std::fs::metadata(plugins.wasm_path(name)).is_ok_and(|meta| meta.len() == 0) {
        return false;
    }
    if plugins.files_present(name) {
        // load() logs and counts how it went; a running version serves on if it failed.
        return plugins
            .load_if_changed(name)
            .await
            .is_err_and(|err| err.is_transient());
    }
    plugins.forget_attempt(name);
    if !plugins.is_loaded(name) {
        return false;
    }
    // Gone, perhaps only for a moment: check again after the grace period, meanwhile
    // applying the plugin's next change (its files written back) as it comes.
    let plugins = plugins.clone();
    let name = name.to_string();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(grace) => {}
        }
        if let Err(err) = plugins.unload_if_removed(&name).await {
            tracing::warn!(plugin = %name, "stopping: {err}");
        }
    });
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_back_off_doubling_to_a_minute_and_start_over_once_a_load_succeeds() {
        let mut retry = RetryBackoff::default();
        assert_eq!(retry.current(), None);
        let waits: Vec<u64> = (0..9)
            .map(|_| {
                retry.failed();
                retry.current().expect("a wait").as_secs()
            })
            .collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        retry.reset();
        assert_eq!(retry.current(), None);
    }

    #[test]
    fn only_wasm_and_yaml_files_of_the_directory_name_plugins() {
        let dir = Path::new("/plugins");
        assert_eq!(
            plugin_of(dir, Path::new("/plugins/mirror.wasm")).as_deref(),
            Some("mirror")
        );
        assert_eq!(
            plugin_of(dir, Path::new("/plugins/mirror.yaml")).as_deref(),
            Some("mirror")
        );
        assert_eq!(plugin_of(dir, Path::new("/plugins/mirror.wasm.swp")), None);
        assert_eq!(plugin_of(dir, Path::new("/plugins/sub/mirror.wasm")), None);
        assert_eq!(plugin_of(dir, Path::new("/plugins/README.md")), None);
    }
}
