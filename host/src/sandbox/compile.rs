//! Compiling components off the async executor, with precompiled artifacts cached on
//! disk by the component's sha256 and the engine's configuration.
//!
//! Deserializing an artifact runs code that trusts it completely, so only artifacts this
//! host wrote are ever deserialized: the cache directory must be owned by the host's
//! user and closed to everyone else, and every artifact carries a checksum the host
//! recorded when it wrote it (a truncated or altered file is recompiled, not loaded).

use std::hash::{Hash, Hasher};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};
use wasmtime::Engine;
use wasmtime::component::Component;

use super::LoadError;

/// Whether a component came from the disk cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    /// Deserialized from a cached artifact.
    Hit,
    /// Compiled (and cached, when the cache is on).
    Compiled,
}

/// The on-disk cache of precompiled components.
#[derive(Debug, Clone)]
pub struct CompileCache {
    dir: Option<PathBuf>,
}

/// The sha256 of `bytes`, in hex.
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl CompileCache {
    /// No disk cache: every load compiles.
    pub fn disabled() -> Self {
        Self { dir: None }
    }

    /// A cache in `dir`, created with mode 0700. A directory that is not owned by this
    /// user, or that its group or others may write, is refused and left as it is (the
    /// cache stays off, with a warning that says how to fix it): someone else who can
    /// write there could plant an artifact, and the host deserializes artifacts.
    pub fn in_dir(dir: &Path) -> Self {
        match prepare_dir(dir) {
            Ok(()) => Self {
                dir: Some(dir.to_path_buf()),
            },
            Err(reason) => {
                tracing::warn!(dir = %dir.display(), "compile cache disabled: {reason}");
                Self::disabled()
            }
        }
    }

    /// The directory, when the cache is on.
    pub fn dir(&self) -> Option<&Path> {
        self.dir.as_deref()
    }

    /// The compiled component for `bytes` (whose sha256 is `digest`), from the cache or
    /// compiled on a blocking thread.
    pub async fn load(
        &self,
        engine: &Engine,
        bytes: Arc<[u8]>,
        digest: &str,
    ) -> Result<(Component, CacheOutcome), LoadError> {
        let engine = engine.clone();
        let paths = self
            .dir
            .as_ref()
            .map(|dir| ArtifactPaths::new(dir, digest, &engine));
        tokio::task::spawn_blocking(move || {
            if let Some(paths) = &paths
                && let Some(component) = paths.read(&engine)
            {
                return Ok((component, CacheOutcome::Hit));
            }
            let artifact = engine
                .precompile_component(&bytes)
                .map_err(|err| LoadError::Malformed(format!("{err:#}")))?;
            if let Some(paths) = &paths
                && let Err(err) = paths.write(&artifact)
            {
                tracing::warn!(path = %paths.artifact.display(), "could not cache a compiled plugin: {err}");
            }
            // SAFETY: the artifact was produced by this engine a moment ago, in memory.
            let component = unsafe { Component::deserialize(&engine, &artifact) }
                .map_err(|err| LoadError::Malformed(format!("{err:#}")))?;
            Ok((component, CacheOutcome::Compiled))
        })
        .await
        .map_err(|err| LoadError::Malformed(format!("the compiler thread failed: {err}")))?
    }
}

fn prepare_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| format!("cannot create it: {err}"))?;
    let meta = std::fs::metadata(dir).map_err(|err| format!("cannot stat it: {err}"))?;
    // SAFETY: getuid has no preconditions.
    let uid = unsafe { libc::getuid() };
    if meta.uid() != uid {
        return Err(format!("it is owned by uid {}, not {uid}", meta.uid()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o022 != 0 {
        return Err(format!(
            "its group or others may write it (mode {mode:o}): `chmod go-w` it, or give \
             another directory"
        ));
    }
    Ok(())
}

struct ArtifactPaths {
    artifact: PathBuf,
    checksum: PathBuf,
}

impl ArtifactPaths {
    fn new(dir: &Path, digest: &str, engine: &Engine) -> Self {
        let mut hasher = std::hash::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        let stem = format!("{digest}-{:016x}", hasher.finish());
        Self {
            artifact: dir.join(format!("{stem}.cwasm")),
            checksum: dir.join(format!("{stem}.sha256")),
        }
    }

    fn read(&self, engine: &Engine) -> Option<Component> {
        let expected = std::fs::read_to_string(&self.checksum).ok()?;
        let artifact = std::fs::read(&self.artifact).ok()?;
        if digest(&artifact) != expected.trim() {
            tracing::warn!(path = %self.artifact.display(), "cached artifact does not match its checksum; recompiling");
            return None;
        }
        // SAFETY: the artifact is one this host wrote (see the module docs): the directory
        // is private to this user and the bytes match the checksum recorded on write.
        match unsafe { Component::deserialize(engine, &artifact) } {
            Ok(component) => Some(component),
            Err(err) => {
                tracing::warn!(path = %self.artifact.display(), "cached artifact unusable ({err}); recompiling");
                None
            }
        }
    }

    fn write(&self, artifact: &[u8]) -> std::io::Result<()> {
        write_atomically(&self.artifact, artifact)?;
        write_atomically(&self.checksum, digest(artifact).as_bytes())
    }
}

/// Writes `contents` to a file of its own beside `path` (mode 0600, removed again if
/// anything fails) and renames it over `path`: readers see the old file or the whole new
/// one, and two writers at once (two plugins of the same bytes, two hosts sharing the
/// directory) never write into the same file.
fn write_atomically(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut file = tempfile::Builder::new()
        .prefix(".partial-")
        .permissions(std::fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)?;
    file.write_all(contents)?;
    file.as_file().sync_all()?;
    file.persist(path).map_err(|err| err.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writers_at_once_each_replace_the_file_whole_and_leave_nothing_behind() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("artifact.cwasm");
        let writers: Vec<_> = (0..8u8)
            .map(|writer| {
                let path = path.clone();
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        write_atomically(&path, &[writer; 64 * 1024]).unwrap();
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.join().unwrap();
        }
        let contents = std::fs::read(&path).unwrap();
        assert_eq!(contents.len(), 64 * 1024);
        assert!(
            contents.iter().all(|byte| *byte == contents[0]),
            "two writers' bytes in one file"
        );
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name())
            .collect();
        assert_eq!(names, ["artifact.cwasm"]);
    }

    #[test]
    fn a_cache_directory_others_may_write_is_refused_and_left_alone() {
        let root = tempfile::tempdir().unwrap();
        let created = root.path().join("new");
        assert!(CompileCache::in_dir(&created).dir.is_some());
        let mode = std::fs::metadata(&created).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);

        let open = root.path().join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o777)).unwrap();
        assert!(CompileCache::in_dir(&open).dir.is_none());
        let mode = std::fs::metadata(&open).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o777, "changed behind the operator's back");
        let reason = prepare_dir(&open).unwrap_err();
        assert!(reason.contains("chmod go-w"), "{reason}");
    }
}
