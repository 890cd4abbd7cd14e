//! Locating the control plane binaries, following envtest's conventions.

use std::path::{Path, PathBuf};

use super::ClusterError;

/// The Kubernetes version the provisioning script builds and the cache is keyed by.
pub const KUBERNETES_VERSION: &str = "1.20.2";

/// The revision of `scripts/assets.sh`'s recipe; the cache directory is named
/// `<version>-<revision>` so that a cache an older recipe filled is not used (revision 2
/// replaced the vendored reflect2 and json-iterator, without which the API server crashes
/// on the first custom resource).
pub const ASSETS_BUILD: &str = "2";

/// The environment variable envtest uses to point at a directory with the binaries.
pub const ASSETS_ENV: &str = "KUBEBUILDER_ASSETS";

/// The script in this repository that fills the asset cache.
pub const PROVISIONING_SCRIPT: &str = "scripts/assets.sh";

const BINARIES: [&str; 3] = ["kube-apiserver", "etcd", "kubectl"];

/// Paths of the binaries a local control plane needs.
#[derive(Debug, Clone)]
pub struct Assets {
    /// The directory they were found in.
    pub dir: PathBuf,
    /// `kube-apiserver`.
    pub kube_apiserver: PathBuf,
    /// `etcd`.
    pub etcd: PathBuf,
    /// `kubectl`, for the user's convenience; the host itself never runs it.
    pub kubectl: PathBuf,
}

impl Assets {
    /// Finds the binaries: in `$KUBEBUILDER_ASSETS` when it is set (and only there), else in
    /// the cache that `scripts/assets.sh` fills.
    pub fn locate() -> Result<Self, ClusterError> {
        let dir = match std::env::var_os(ASSETS_ENV) {
            Some(dir) => PathBuf::from(dir),
            None => default_cache_dir(),
        };
        Self::in_dir(&dir)
    }

    /// Finds the binaries in `dir`, naming every one that is missing.
    pub fn in_dir(dir: &Path) -> Result<Self, ClusterError> {
        let missing: Vec<String> = BINARIES
            .iter()
            .filter(|name| !is_executable(&dir.join(name)))
            .map(|name| name.to_string())
            .collect();
        if !missing.is_empty() {
            return Err(ClusterError::AssetsMissing {
                dir: dir.to_path_buf(),
                missing,
            });
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            kube_apiserver: dir.join("kube-apiserver"),
            etcd: dir.join("etcd"),
            kubectl: dir.join("kubectl"),
        })
    }
}

/// `~/.cache/kubewasm/assets/<version>-<revision>` (honouring `XDG_CACHE_HOME`).
pub fn default_cache_dir() -> PathBuf {
    crate::paths::cache_dir()
        .join("assets")
        .join(format!("{KUBERNETES_VERSION}-{ASSETS_BUILD}"))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binaries_are_all_named() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("etcd"), "").unwrap();
        let err = Assets::in_dir(dir.path()).unwrap_err();
        let message = err.to_string();
        assert!(message.contains("kube-apiserver"), "{message}");
        assert!(message.contains("etcd"), "{message}"); // not executable counts as missing
        assert!(message.contains(ASSETS_ENV), "{message}");
        assert!(message.contains(PROVISIONING_SCRIPT), "{message}");
    }
}
