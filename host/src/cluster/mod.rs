//! A local control plane: etcd and kube-apiserver started on free loopback ports, with
//! RBAC, token authentication and service-account tokens, for `kubewasm cluster up`,
//! `kubewasm dev` and the integration tests.

mod assets;
mod credentials;
mod kubeconfig;
mod process;

use std::net::{Ipv4Addr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::ExitStatus;
use std::time::{Duration, Instant};

pub use assets::{ASSETS_ENV, Assets, KUBERNETES_VERSION, PROVISIONING_SCRIPT, default_cache_dir};
pub use credentials::ADMIN_USER;
use credentials::Credentials;
use process::GroupProcess;
pub use process::signal_group;

/// How long starting the control plane may take before it is given up.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

/// Errors starting or running a local control plane.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The binaries are not where they were looked for.
    #[error(
        "control plane binaries missing in {dir}: {missing}. Point {ASSETS_ENV} at a directory \
         holding kube-apiserver, etcd and kubectl, or run `{PROVISIONING_SCRIPT}` to build \
         them into {cache}",
        missing = .missing.join(", "),
        cache = default_cache_dir().display(),
    )]
    AssetsMissing {
        /// Where they were looked for.
        dir: PathBuf,
        /// Which ones are missing.
        missing: Vec<String>,
    },
    /// A binary could not be started at all.
    #[error("could not start {name} ({program}): {source}")]
    Spawn {
        /// Which component.
        name: &'static str,
        /// The binary.
        program: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A process exited while the control plane was starting or running.
    #[error("{name} exited with {status}; the end of {log}:\n{log_tail}")]
    ProcessExited {
        /// Which component.
        name: &'static str,
        /// Its exit status.
        status: ExitStatus,
        /// Its log file.
        log: PathBuf,
        /// The end of its log.
        log_tail: String,
    },
    /// The control plane did not become ready in time.
    #[error("{what} not ready after {timeout:?}; the end of its log:\n{log_tail}")]
    Timeout {
        /// What was waited for.
        what: &'static str,
        /// How long.
        timeout: Duration,
        /// The end of the relevant log.
        log_tail: String,
    },
    /// Generating keys or certificates failed.
    #[error("generating control plane credentials: {0}")]
    Credentials(String),
    /// Talking to the apiserver failed in a way that is not a readiness wait.
    #[error("kube client: {0}")]
    Kube(#[from] kube::Error),
    /// The kubeconfig written could not be loaded.
    #[error("kubeconfig: {0}")]
    Kubeconfig(#[from] kube::config::KubeconfigError),
    /// Filesystem trouble under the data directory.
    #[error("I/O: {0}")]
    Io(#[from] std::io::Error),
}

/// A running etcd + kube-apiserver. Dropping it stops both.
#[derive(Debug)]
pub struct ControlPlane {
    dir: PathBuf,
    server: String,
    kubeconfig: PathBuf,
    credentials: Credentials,
    // Field order is drop order: the apiserver stops before etcd.
    apiserver: GroupProcess,
    etcd: GroupProcess,
}

impl ControlPlane {
    /// Starts a control plane with data, logs and credentials under `dir`, waits until it
    /// serves requests and namespace `default` exists, and writes `dir/kubeconfig`.
    ///
    /// The processes get SIGKILL when the calling thread exits; see [`GroupProcess::spawn`].
    pub async fn start(dir: &Path) -> Result<Self, ClusterError> {
        let assets = Assets::locate()?;
        std::fs::create_dir_all(dir)?;
        let dir = std::fs::canonicalize(dir)?;
        let credentials = Credentials::generate(&dir.join("pki"))?;

        let etcd_client_port = free_port()?;
        let etcd_peer_port = free_port()?;
        let etcd_url = format!("http://127.0.0.1:{etcd_client_port}");
        let etcd_peer_url = format!("http://127.0.0.1:{etcd_peer_port}");
        let etcd_args = vec![
            format!("--data-dir={}", dir.join("etcd").display()),
            format!("--listen-client-urls={etcd_url}"),
            format!("--advertise-client-urls={etcd_url}"),
            format!("--listen-peer-urls={etcd_peer_url}"),
            format!("--initial-advertise-peer-urls={etcd_peer_url}"),
            format!("--initial-cluster=default={etcd_peer_url}"),
            "--log-level=warn".to_string(),
        ];
        let etcd = GroupProcess::spawn("etcd", &assets.etcd, &etcd_args, &dir.join("etcd.log"))?;

        let port = free_port()?;
        let server = format!("https://127.0.0.1:{port}");
        let apiserver_args = vec![
            format!("--etcd-servers={etcd_url}"),
            "--bind-address=127.0.0.1".to_string(),
            "--advertise-address=127.0.0.1".to_string(),
            format!("--secure-port={port}"),
            "--insecure-port=0".to_string(),
            format!("--cert-dir={}", dir.join("pki").display()),
            format!("--tls-cert-file={}", credentials.serving_cert.display()),
            format!(
                "--tls-private-key-file={}",
                credentials.serving_key.display()
            ),
            format!("--token-auth-file={}", credentials.token_file.display()),
            "--authorization-mode=RBAC".to_string(),
            format!(
                "--service-account-key-file={}",
                credentials.service_account_public.display()
            ),
            format!(
                "--service-account-signing-key-file={}",
                credentials.service_account_private.display()
            ),
            "--service-account-issuer=https://kubernetes.default.svc".to_string(),
            "--service-cluster-ip-range=10.0.0.0/24".to_string(),
            "--disable-admission-plugins=ServiceAccount".to_string(),
            "--allow-privileged=true".to_string(),
        ];
        let mut apiserver = GroupProcess::spawn(
            "kube-apiserver",
            &assets.kube_apiserver,
            &apiserver_args,
            &dir.join("kube-apiserver.log"),
        )?;
        let mut etcd = etcd;

        let kubeconfig = dir.join("kubeconfig");
        kubeconfig::write(&kubeconfig, &server, &credentials)?;
        let client = kubeconfig::client(&kubeconfig).await?;
        wait_until_ready(&client, port, &mut etcd, &mut apiserver).await?;

        Ok(Self {
            dir,
            server,
            kubeconfig,
            credentials,
            apiserver,
            etcd,
        })
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The apiserver's URL.
    pub fn server(&self) -> &str {
        &self.server
    }

    /// The admin kubeconfig.
    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    /// PEM of the CA that signed the apiserver's serving certificate.
    pub fn ca_pem(&self) -> &str {
        &self.credentials.ca_pem
    }

    /// Process group ids of etcd and kube-apiserver, for stopping them from an `atexit`
    /// handler where nothing may allocate.
    pub fn process_groups(&self) -> [u32; 2] {
        [self.apiserver.pid(), self.etcd.pid()]
    }

    /// A client with admin rights.
    pub async fn client(&self) -> Result<kube::Client, ClusterError> {
        kubeconfig::client(&self.kubeconfig).await
    }

    /// An error if etcd or kube-apiserver has exited.
    pub fn ensure_running(&mut self) -> Result<(), ClusterError> {
        self.etcd.ensure_running()?;
        self.apiserver.ensure_running()
    }

    /// Stops kube-apiserver, then etcd (each as a whole process group).
    pub fn stop(mut self) {
        self.apiserver.stop();
        self.etcd.stop();
    }
}

async fn wait_until_ready(
    client: &kube::Client,
    port: u16,
    etcd: &mut GroupProcess,
    apiserver: &mut GroupProcess,
) -> Result<(), ClusterError> {
    use k8s_openapi::api::core::v1::Namespace;
    let deadline = Instant::now() + START_TIMEOUT;
    let namespaces: kube::Api<Namespace> = kube::Api::all(client.clone());
    // Probe in the order things come up, so that the client's own error logging (it logs
    // every 5xx and refused connection) stays quiet while the apiserver is still starting:
    // the port accepts, then namespace `default` exists, then /readyz says ok.
    let mut stage = 0;
    loop {
        etcd.ensure_running()?;
        apiserver.ensure_running()?;
        stage = match stage {
            0 if tokio::net::TcpStream::connect((Ipv4Addr::LOCALHOST, port))
                .await
                .is_ok() =>
            {
                1
            }
            1 if matches!(namespaces.get_opt("default").await, Ok(Some(_))) => 2,
            2 if readyz(client).await.unwrap_or(false) => return Ok(()),
            stage => stage,
        };
        if Instant::now() > deadline {
            return Err(ClusterError::Timeout {
                what: "kube-apiserver",
                timeout: START_TIMEOUT,
                log_tail: apiserver.log_tail(),
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn readyz(client: &kube::Client) -> Result<bool, kube::Error> {
    let request = http::Request::get("/readyz")
        .body(Vec::new())
        .expect("a static request is valid");
    let body = client.request_text(request).await?;
    Ok(body.trim() == "ok")
}

/// A loopback port that was free a moment ago.
fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind((Ipv4Addr::LOCALHOST, 0))?
        .local_addr()?
        .port())
}
