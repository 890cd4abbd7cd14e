//! `kubewasm dev`'s rebuild loop: when a plugin's sources change, run the build
//! command; the build writes the plugins directory, and hot reload does the rest.

use std::path::{Path, PathBuf};
use std::time::Duration;

use notify::RecursiveMode;
use notify_debouncer_full::new_debouncer;
use tokio::sync::mpsc;

/// Quiet time after a source change before building (editors save in bursts).
const DEBOUNCE: Duration = Duration::from_millis(300);

/// Whether a changed path is a source worth rebuilding for (not build output, not an
/// editor's swap or backup file).
fn is_source(path: &Path) -> bool {
    let hidden_or_output = path.components().any(|part| {
        let part = part.as_os_str().to_string_lossy();
        part == "target"
            || part == "node_modules"
            || part == "__pycache__"
            || (part.starts_with('.') && part.len() > 1)
    });
    let name = path
        .file_name()
        .map(|name| name.to_string_lossy())
        .unwrap_or_default();
    !hidden_or_output && !name.ends_with('~') && !name.ends_with(".swp")
}

/// Watches `sources` and runs `command` (through `sh -c`) after each change, until the
/// returned task is aborted.
pub fn watch(sources: PathBuf, command: String) -> anyhow::Result<tokio::task::JoinHandle<()>> {
    let (changed, mut received) = mpsc::unbounded_channel();
    let mut debouncer = new_debouncer(
        DEBOUNCE,
        None,
        move |result: notify_debouncer_full::DebounceEventResult| {
            if let Ok(events) = result
                && events
                    .iter()
                    .flat_map(|event| event.paths.iter())
                    .any(|path| is_source(path))
            {
                let _ = changed.send(());
            }
        },
    )?;
    debouncer.watch(&sources, RecursiveMode::Recursive)?;
    tracing::info!(sources = %sources.display(), %command, "rebuilding plugins when their sources change");
    Ok(tokio::spawn(async move {
        let _debouncer = debouncer;
        while received.recv().await.is_some() {
            // Changes made during a build are picked up by one more build after it.
            while received.try_recv().is_ok() {}
            tracing::info!(%command, "sources changed; rebuilding");
            match tokio::process::Command::new("sh")
                .arg("-c")
                .arg(&command)
                .output()
                .await
            {
                Ok(output) if output.status.success() => {
                    tracing::info!("rebuilt; the plugins directory reloads what changed")
                }
                Ok(output) => tracing::error!(
                    status = %output.status,
                    "build failed; the running plugins keep serving:\n{}{}",
                    String::from_utf8_lossy(&output.stdout),
                    String::from_utf8_lossy(&output.stderr)
                ),
                Err(err) => tracing::error!("could not run the build command: {err}"),
            }
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_output_and_editor_files_are_not_sources() {
        assert!(is_source(Path::new("plugins/mirror/src/lib.rs")));
        assert!(is_source(Path::new("plugins/mirror/app.py")));
        assert!(!is_source(Path::new("plugins/mirror/target/debug/x")));
        assert!(!is_source(Path::new("plugins/mirror/src/.lib.rs.swp")));
        assert!(!is_source(Path::new("plugins/mirror/src/lib.rs~")));
        assert!(!is_source(Path::new("plugins/js/node_modules/a.js")));
    }
}
