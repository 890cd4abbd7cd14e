//! `kubewasm cluster up`.

use std::path::Path;

use anyhow::Context as _;
use kubewasm::cluster::ControlPlane;

/// Starts a local control plane and keeps it until SIGINT or SIGTERM.
pub async fn up(dir: &Path) -> anyhow::Result<()> {
    let control_plane = ControlPlane::start(dir)
        .await
        .context("starting the local control plane")?;
    println!("{}", control_plane.kubeconfig().display());
    tracing::info!(
        server = control_plane.server(),
        kubeconfig = %control_plane.kubeconfig().display(),
        "control plane ready; stop with Ctrl-C"
    );
    super::super::shutdown_signal().await;
    tracing::info!("stopping the control plane");
    control_plane.stop();
    Ok(())
}
