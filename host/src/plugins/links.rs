//! Plugins directories that are swapped rather than written to.
//!
//! Two common ways of publishing files replace many at once with one rename of a
//! symlink, and write none of the files the host watches:
//!
//! - a Kubernetes ConfigMap or Secret volume: each `NAME.wasm` is a symlink through
//!   `..data`, itself a symlink to a directory of that version's files, and an update
//!   writes a new directory and renames a new `..data` over the old;
//! - a syncing sidecar such as git-sync: the plugins directory lies behind a symlink to
//!   a checkout, and a sync checks out a new directory and renames a new symlink over
//!   the old one.
//!
//! The first shows as a symlink or directory appearing in the plugins directory, which
//! the host answers by looking at every plugin again; the second as a change in a
//! directory holding a symlink on the way to it, which the host answers by resolving
//! the path again, and, when it leads elsewhere, watching the new directory and looking
//! at every plugin again.

use std::collections::BTreeSet;
use std::io;
use std::path::{Path, PathBuf};

/// The plugins directory as configured, and where it leads now.
#[derive(Debug)]
pub struct ResolvedDir {
    configured: PathBuf,
    resolved: PathBuf,
    link_parents: BTreeSet<PathBuf>,
}

impl ResolvedDir {
    /// Resolves `configured` (relative to the working directory if it is relative).
    pub fn resolve(configured: &Path) -> io::Result<Self> {
        let configured = std::path::absolute(configured)?;
        let resolved = std::fs::canonicalize(&configured)?;
        let link_parents = link_parents(&configured);
        Ok(Self {
            configured,
            resolved,
            link_parents,
        })
    }

    /// The directory the configured path leads to.
    pub fn resolved(&self) -> &Path {
        &self.resolved
    }

    /// The directories holding a symlink on the configured path, whose renames may lead
    /// it elsewhere.
    pub fn link_parents(&self) -> &BTreeSet<PathBuf> {
        &self.link_parents
    }

    /// Resolves the configured path again; the directory it led to before, if it now
    /// leads elsewhere.
    pub fn re_resolve(&mut self) -> io::Result<Option<PathBuf>> {
        let resolved = std::fs::canonicalize(&self.configured)?;
        self.link_parents = link_parents(&self.configured);
        if resolved == self.resolved {
            return Ok(None);
        }
        Ok(Some(std::mem::replace(&mut self.resolved, resolved)))
    }
}

/// The parents of the symlinks among `path` and its ancestors.
fn link_parents(path: &Path) -> BTreeSet<PathBuf> {
    path.ancestors()
        .filter(|ancestor| {
            std::fs::symlink_metadata(ancestor).is_ok_and(|meta| meta.file_type().is_symlink())
        })
        .filter_map(|link| link.parent().map(Path::to_path_buf))
        .collect()
}

/// Whether an event at `path`, within the plugins directory but naming no plugin file,
/// may stand for a swap of every plugin's files: a symlink or a directory there (as a
/// ConfigMap volume's `..data` and the versions it points to).
pub fn may_be_a_swap(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|meta| meta.is_symlink() || meta.is_dir())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn a_directory_behind_a_symlink_is_followed_when_the_symlink_is_swapped() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let root = std::fs::canonicalize(root.path()).expect("canonical");
        for version in ["v1", "v2"] {
            std::fs::create_dir_all(root.join(version).join("plugins")).expect("created");
        }
        symlink("v1", root.join("current")).expect("linked");
        let mut dir = ResolvedDir::resolve(&root.join("current/plugins")).expect("resolved");
        assert_eq!(dir.resolved(), root.join("v1/plugins"));
        assert_eq!(dir.link_parents(), &BTreeSet::from([root.clone()]));
        assert_eq!(dir.re_resolve().expect("resolved"), None);

        // As git-sync publishes a new checkout: a new symlink renamed over the old.
        symlink("v2", root.join("current.tmp")).expect("linked");
        std::fs::rename(root.join("current.tmp"), root.join("current")).expect("renamed");
        assert_eq!(
            dir.re_resolve().expect("resolved"),
            Some(root.join("v1/plugins"))
        );
        assert_eq!(dir.resolved(), root.join("v2/plugins"));
    }

    #[test]
    fn only_symlinks_and_directories_may_be_swaps() {
        let root = tempfile::tempdir().expect("a temporary directory");
        let root = root.path();
        std::fs::create_dir(root.join("..2026_12_07")).expect("created");
        symlink("..2026_12_07", root.join("..data")).expect("linked");
        std::fs::write(root.join("notes.txt"), "").expect("written");
        assert!(may_be_a_swap(&root.join("..data")));
        assert!(may_be_a_swap(&root.join("..2026_12_07")));
        assert!(!may_be_a_swap(&root.join("notes.txt")));
        assert!(!may_be_a_swap(&root.join("gone")));
    }
}
