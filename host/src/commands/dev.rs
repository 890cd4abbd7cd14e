//! `kubewasm dev`: a local control plane and the host on a plugins directory, for the
//! edit -> save -> reconciled loop.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use clap::Args;
use kubewasm::cluster::ControlPlane;
use kubewasm::manager::{Manager, ManagerOptions};
use kubewasm::plugins::ReloadOptions;
use kubewasm::runtime::RuntimeOptions;
use kubewasm::sandbox::SandboxConfig;

/// A grant that allows everything, for local development only.
const PERMISSIVE_GRANT: &str = "\
# Written by `kubewasm dev` for local development: everything is allowed, with the
# host's own identity. Never use a grant like this in a shared cluster.
apiVersion: kubewasm.dev/v1
namespaces: [\"*\"]
permissions:
  - apiGroups: [\"*\"]
    resources: [\"*\"]
    verbs: [\"*\"]
";

/// Options of `kubewasm dev`.
#[derive(Debug, Args)]
pub struct DevArgs {
    /// Directory for the control plane's data, logs and kubeconfig.
    #[arg(long, default_value = "target/dev-cluster")]
    pub dir: PathBuf,
    /// Directory of plugins (NAME.wasm, NAME.yaml).
    #[arg(long, default_value = "target/plugins")]
    pub plugins: PathBuf,
    /// Address of the Prometheus metrics endpoint.
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub metrics_addr: SocketAddr,
    /// Address of the /healthz and /readyz probes.
    #[arg(long, default_value = "127.0.0.1:8081")]
    pub probe_addr: SocketAddr,
    /// Plugin sources: a change under this directory runs the build command.
    #[arg(long, default_value = "plugins")]
    pub sources: PathBuf,
    /// Builds the plugins into the plugins directory; empty turns rebuilding off.
    #[arg(long, default_value = "scripts/build-plugins.sh examples")]
    pub build_command: String,
}

/// Writes a permissive grant for every plugin that has none, and says so.
fn grant_everything_ungranted(plugins: &Path) -> anyhow::Result<()> {
    for entry in
        std::fs::read_dir(plugins).with_context(|| format!("reading {}", plugins.display()))?
    {
        let path = entry?.path();
        if path.extension().is_some_and(|ext| ext == "wasm") {
            let grant = path.with_extension("yaml");
            if !grant.exists() {
                std::fs::write(&grant, PERMISSIVE_GRANT)?;
                tracing::warn!(grant = %grant.display(), "no grant: wrote a permissive one for local development");
            }
        }
    }
    Ok(())
}

/// Runs the control plane and the host until SIGINT or SIGTERM.
pub async fn run(args: DevArgs, sandbox: SandboxConfig) -> anyhow::Result<()> {
    std::fs::create_dir_all(&args.plugins)?;
    grant_everything_ungranted(&args.plugins)?;
    let control_plane = ControlPlane::start(&args.dir)
        .await
        .context("starting the local control plane")?;
    let kubeconfig = control_plane.kubeconfig().to_path_buf();
    let config = super::run::kube_config(Some(&kubeconfig), None).await?;
    let options = ManagerOptions {
        plugins_dir: args.plugins.clone(),
        plugin_files: Default::default(),
        sandbox,
        // A local cluster of one developer: grants without a ServiceAccount may run.
        runtime: RuntimeOptions {
            allow_host_identity: true,
            ..RuntimeOptions::default()
        },
        metrics_addr: Some(args.metrics_addr),
        probe_addr: Some(args.probe_addr),
        reload: Some(ReloadOptions::default()),
        leader_election: None,
        host_pod: None,
    };
    let manager = match Manager::start(config, options).await {
        Ok(manager) => manager,
        Err(err) => {
            control_plane.stop();
            return Err(err);
        }
    };
    let rebuild = if args.build_command.is_empty() || !args.sources.is_dir() {
        None
    } else {
        Some(super::rebuild::watch(
            args.sources.clone(),
            args.build_command.clone(),
        )?)
    };
    let plugins = manager.runtime().plugin_names().await;
    println!(
        "\nkubewasm dev: a local control plane and {} plugin(s) running: {}\n\n\
         Try it in another terminal:\n\n  \
         export KUBECONFIG={}\n  \
         kubectl create configmap demo --from-literal=greeting=hello\n  \
         kubectl label configmap demo kubewasm.dev/mirror=true\n  \
         kubectl get configmap demo-mirror -o yaml\n  \
         kubectl delete configmap demo && kubectl get configmaps\n\n\
         Edit plugins/configmap-mirror/src/lib.rs and save: it is rebuilt and reloaded.\n\
         Grants without a serviceAccount run here with the host's identity \
         (--allow-host-identity); `kubewasm run` refuses them unless told so.\n\
         Metrics: http://{}/metrics   Readiness: http://{}/readyz\n\
         Stop with Ctrl-C.\n",
        plugins.len(),
        plugins.join(", "),
        kubeconfig.display(),
        args.metrics_addr,
        args.probe_addr,
    );
    super::super::shutdown_signal().await;
    if let Some(rebuild) = rebuild {
        rebuild.abort();
    }
    tracing::info!("stopping the host, then the control plane");
    manager.shutdown().await;
    control_plane.stop();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_permissive_grant_is_a_valid_cluster_wide_grant() {
        let grant = kubewasm::grant::Grant::parse(PERMISSIVE_GRANT, "dev").unwrap();
        assert_eq!(grant.namespaces, kubewasm::grant::Namespaces::All);
        assert!(grant.allows("apps", "deployments", kubewasm::grant::Verb::Delete, None));
    }
}
