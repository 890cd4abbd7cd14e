//! A kubewasm host running in the test process against the test control plane, on a
//! plugins directory of its own.

use std::path::{Path, PathBuf};

use kubewasm::manager::{Manager, ManagerOptions};
use kubewasm::ops::lifecycle_events::HostPod;
use kubewasm::plugins::ReloadOptions;
use kubewasm::runtime::RuntimeOptions;

/// A plugin to put in the host's directory.
#[derive(Debug, Clone)]
pub struct PluginFiles {
    /// `NAME` of `NAME.wasm` and `NAME.yaml`.
    pub name: String,
    /// The component.
    pub wasm: Vec<u8>,
    /// The grant, `None` for no grant file.
    pub grant: Option<String>,
}

impl PluginFiles {
    /// A plugin with a grant.
    pub fn new(name: &str, wasm: Vec<u8>, grant: impl Into<String>) -> Self {
        Self {
            name: name.to_string(),
            wasm,
            grant: Some(grant.into()),
        }
    }
}

/// A grant for ConfigMaps in `namespace` only, with everything allowed on them and the
/// mirror's finalizer, without a ServiceAccount.
pub fn config_map_grant(namespace: &str) -> String {
    format!(
        "apiVersion: kubewasm.dev/v1\nnamespaces: [{namespace}]\nfinalizers: [kubewasm.dev/mirror]\npermissions:\n  - apiGroups: [\"\"]\n    resources: [configmaps]\n    verbs: [\"*\"]\n"
    )
}

/// A host and its plugins directory.
pub struct TestHost {
    /// Holds the plugins directory; removed when the host is dropped.
    _root: tempfile::TempDir,
    plugins_dir: PathBuf,
    sandbox: kubewasm::sandbox::SandboxConfig,
    host_pod: Option<HostPod>,
    runtime: RuntimeOptions,
    /// The host's identity; `None` is the admin's.
    identity: Option<kube::Config>,
    manager: Option<Manager>,
}

impl TestHost {
    /// Writes `plugins` into a fresh directory and starts a host on it.
    pub async fn start(plugins: &[PluginFiles]) -> anyhow::Result<Self> {
        Self::start_with(plugins, crate::sandbox_config()).await
    }

    /// [`TestHost::start`] with sandbox settings of its own.
    pub async fn start_with(
        plugins: &[PluginFiles],
        sandbox: kubewasm::sandbox::SandboxConfig,
    ) -> anyhow::Result<Self> {
        let root = directory_of(plugins)?;
        let plugins_dir = root.path().to_path_buf();
        Self::launch(root, plugins_dir, sandbox, None).await
    }

    /// [`TestHost::start`] as if in Pod `pod`, which Events about its plugins then
    /// regard.
    pub async fn start_in_pod(plugins: &[PluginFiles], pod: HostPod) -> anyhow::Result<Self> {
        let root = directory_of(plugins)?;
        let plugins_dir = root.path().to_path_buf();
        Self::launch(root, plugins_dir, crate::sandbox_config(), Some(pod)).await
    }

    /// Starts a host on `plugins_dir`, a path within `root` that the caller has laid
    /// out (a symlink to a directory, say); `root` is removed with the host.
    pub async fn start_at(root: tempfile::TempDir, plugins_dir: PathBuf) -> anyhow::Result<Self> {
        Self::launch(root, plugins_dir, crate::sandbox_config(), None).await
    }

    async fn launch(
        root: tempfile::TempDir,
        plugins_dir: PathBuf,
        sandbox: kubewasm::sandbox::SandboxConfig,
        host_pod: Option<HostPod>,
    ) -> anyhow::Result<Self> {
        let mut host = Self {
            _root: root,
            plugins_dir,
            sandbox,
            host_pod,
            runtime: crate::runtime_options(),
            identity: None,
            manager: None,
        };
        host.restart().await?;
        Ok(host)
    }

    /// Writes `plugins` into a fresh directory and starts a host on it that refuses
    /// grants without a ServiceAccount, as `kubewasm run` does by default.
    pub async fn start_strict(plugins: &[PluginFiles]) -> anyhow::Result<Self> {
        Self::start_strict_as(plugins, None).await
    }

    /// [`TestHost::start_strict`] with `identity` (`None`: the admin's) as the host's
    /// own.
    pub async fn start_strict_as(
        plugins: &[PluginFiles],
        identity: Option<kube::Config>,
    ) -> anyhow::Result<Self> {
        let root = directory_of(plugins)?;
        let mut host = Self {
            plugins_dir: root.path().to_path_buf(),
            _root: root,
            sandbox: crate::sandbox_config(),
            host_pod: None,
            runtime: RuntimeOptions::default(),
            identity,
            manager: None,
        };
        host.restart().await?;
        Ok(host)
    }

    /// Starts the host again on the same directory (after [`TestHost::stop`]).
    pub async fn restart(&mut self) -> anyhow::Result<()> {
        assert!(self.manager.is_none(), "the host is running");
        let options = ManagerOptions {
            plugins_dir: self.plugins_dir.clone(),
            plugin_files: Default::default(),
            sandbox: self.sandbox.clone(),
            runtime: self.runtime.clone(),
            metrics_addr: None,
            probe_addr: None,
            reload: Some(ReloadOptions::default()),
            leader_election: None,
            host_pod: self.host_pod.clone(),
        };
        let config = match &self.identity {
            Some(config) => config.clone(),
            None => crate::admin_config().await?,
        };
        self.manager = Some(Manager::start(config, options).await?);
        Ok(())
    }

    /// Stops the host gracefully.
    pub async fn stop(&mut self) {
        if let Some(manager) = self.manager.take() {
            manager.shutdown().await;
        }
    }

    /// The running manager.
    pub fn manager(&self) -> &Manager {
        self.manager.as_ref().expect("the host is running")
    }

    /// The plugins directory.
    pub fn dir(&self) -> &Path {
        &self.plugins_dir
    }

    /// Path of `NAME.wasm`.
    pub fn wasm_path(&self, name: &str) -> PathBuf {
        self.plugins_dir.join(format!("{name}.wasm"))
    }

    /// The host's metrics, in the text format.
    pub fn metrics(&self) -> String {
        self.manager().metrics().encode()
    }

    /// Asserts that no reconcile of `plugin` has failed.
    pub fn assert_no_reconcile_errors(&self, plugin: &str) {
        assert_eq!(
            self.metric(
                "controller_runtime_reconcile_errors_total",
                &format!("controller=\"{plugin}\"")
            ),
            0.0,
            "reconciles of {plugin} failed"
        );
    }

    /// The value of the sample `name{labels}` (labels exactly as encoded, e.g.
    /// `controller="mirror",result="success"`), 0 when absent.
    pub fn metric(&self, name: &str, labels: &str) -> f64 {
        metric_value(&self.metrics(), name, labels)
    }
}

/// A fresh directory holding `plugins`' files.
fn directory_of(plugins: &[PluginFiles]) -> std::io::Result<tempfile::TempDir> {
    let dir = tempfile::tempdir()?;
    for plugin in plugins {
        write_plugin(dir.path(), plugin)?;
    }
    Ok(dir)
}

/// Writes a plugin's files into `dir`.
pub fn write_plugin(dir: &Path, plugin: &PluginFiles) -> std::io::Result<()> {
    std::fs::write(dir.join(format!("{}.wasm", plugin.name)), &plugin.wasm)?;
    if let Some(grant) = &plugin.grant {
        std::fs::write(dir.join(format!("{}.yaml", plugin.name)), grant)?;
    }
    Ok(())
}

/// The value of sample `name{labels}` in `text`, 0 when absent.
pub fn metric_value(text: &str, name: &str, labels: &str) -> f64 {
    let prefix = if labels.is_empty() {
        format!("{name} ")
    } else {
        format!("{name}{{{labels}}} ")
    };
    text.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|value| value.trim().parse().ok())
        .unwrap_or(0.0)
}
