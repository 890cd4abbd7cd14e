//! Where kubewasm keeps files of its own.

use std::path::PathBuf;

/// `$XDG_CACHE_HOME/kubewasm`, or `~/.cache/kubewasm`.
pub fn cache_dir() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|path| path.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("kubewasm")
}
