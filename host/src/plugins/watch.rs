//! Hot reload: the plugins directory is watched (notify, debounced), and a plugin is
//! started, reloaded or stopped when its files change.
//!
//! Writers such as editors and `cp` write a file in several steps. Changes are
//! debounced, the result is validated before it replaces anything, and a failure keeps
//! the running version until the next change. A removed file stops its plugin only if
//! it is still gone after a grace period, so that a file removed and written again (an
//! editor's save, a `rm` and `cp`) does not interrupt the plugin.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::{DebounceEventResult, new_debouncer};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{LoadOutcome, PluginDir};

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
    let dir = std::fs::canonicalize(plugins.dir())?;
    let (changes, mut received) = mpsc::unbounded_channel::<DebounceEventResult>();
    let mut debouncer = new_debouncer(options.debounce, None, move |result| {
        let _ = changes.send(result);
    })?;
    debouncer.watch(&dir, RecursiveMode::NonRecursive)?;
    tracing::info!(dir = %dir.display(), "watching the plugins directory for changes");
    Ok(tokio::spawn(async move {
        // The debouncer stops watching when dropped: keep it for the task's life.
        let _debouncer = debouncer;
        // What each plugin's files held when last tried: a writer's several events for
        // one change, or a change back and forth, are tried once per content.
        let mut attempted: HashMap<String, String> = HashMap::new();
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
                        tracing::warn!(dir = %dir.display(), "watching the plugins directory: {error}");
                    }
                    continue;
                }
            };
            let names: BTreeSet<String> = events
                .iter()
                .flat_map(|event| event.paths.iter())
                .filter_map(|path| plugin_of(&dir, path))
                .collect();
            for name in names {
                apply_change(
                    &plugins,
                    &name,
                    &mut attempted,
                    options.removal_grace,
                    &shutdown,
                )
                .await;
            }
        }
    }))
}

/// sha256 over a plugin's component and grant, `None` if either is missing.
fn fingerprint(plugins: &PluginDir, name: &str) -> Option<String> {
    let mut both = std::fs::read(plugins.wasm_path(name)).ok()?;
    both.extend(std::fs::read(plugins.grant_path(name)).ok()?);
    Some(crate::sandbox::digest(&both))
}

async fn apply_change(
    plugins: &Arc<PluginDir>,
    name: &str,
    attempted: &mut HashMap<String, String>,
    grace: Duration,
    shutdown: &CancellationToken,
) {
    // A file being written is empty for a moment (truncated, not yet written): that
    // is never a plugin, and the write's next event will come.
    if std::fs::metadata(plugins.wasm_path(name)).is_ok_and(|meta| meta.len() == 0) {
        return;
    }
    if let Some(fingerprint) = fingerprint(plugins, name) {
        if attempted.get(name) == Some(&fingerprint) {
            return;
        }
        attempted.insert(name.to_string(), fingerprint);
        match plugins.load(name).await {
            Ok(LoadOutcome::Started) => tracing::info!(plugin = name, "new plugin started"),
            Ok(LoadOutcome::Reloaded | LoadOutcome::Unchanged) => {}
            // Not the files' fault (the API server could not be reached, say): try the
            // same files again on the next event.
            Err(err @ super::PluginError::Runtime(_)) => {
                attempted.remove(name);
                tracing::warn!(plugin = name, "could not apply the change: {err}");
            }
            // Reload failures are logged and counted by load(); the old version serves on.
            Err(err) => tracing::debug!(plugin = name, "load failed: {err}"),
        }
        return;
    }
    attempted.remove(name);
    if !plugins.loaded().await.contains_key(name) {
        return;
    }
    // Gone, perhaps only for a moment: check again after the grace period.
    let plugins = plugins.clone();
    let name = name.to_string();
    let shutdown = shutdown.clone();
    tokio::spawn(async move {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(grace) => {}
        }
        let still_gone = !plugins.wasm_path(&name).exists() || !plugins.grant_path(&name).exists();
        if still_gone && plugins.loaded().await.contains_key(&name) {
            tracing::info!(plugin = %name, "plugin files removed; stopping it");
            if let Err(err) = plugins.unload(&name).await {
                tracing::warn!(plugin = %name, "stopping: {err}");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

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
