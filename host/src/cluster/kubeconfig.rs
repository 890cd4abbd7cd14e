//! The admin kubeconfig of a local control plane.

use std::path::Path;

use kube::config::{KubeConfigOptions, Kubeconfig};

use super::ClusterError;
use super::credentials::{ADMIN_USER, Credentials};

const CONTEXT: &str = "kubewasm-local";

/// Writes a kubeconfig for the admin user.
pub fn write(path: &Path, server: &str, credentials: &Credentials) -> Result<(), ClusterError> {
    let yaml = format!(
        "apiVersion: v1
kind: Config
clusters:
- name: {CONTEXT}
  cluster:
    server: {server}
    certificate-authority: {ca}
users:
- name: {ADMIN_USER}
  user:
    token: {token}
contexts:
- name: {CONTEXT}
  context:
    cluster: {CONTEXT}
    user: {ADMIN_USER}
    namespace: default
current-context: {CONTEXT}
",
        ca = credentials.ca_cert.display(),
        token = credentials.admin_token,
    );
    std::fs::write(path, yaml)?;
    Ok(())
}

/// A client for the kubeconfig at `path`.
pub async fn client(path: &Path) -> Result<kube::Client, ClusterError> {
    let kubeconfig = Kubeconfig::read_from(path)?;
    let config =
        kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?;
    Ok(kube::Client::try_from(config)?)
}
