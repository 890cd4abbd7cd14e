//! Support for kubewasm's integration tests: one real control plane (etcd +
//! kube-apiserver, started by the host's own `cluster` module) per test binary, a fresh
//! namespace per test, and users bound to given RBAC rules.

use std::path::PathBuf;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::Context as _;
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use kube::api::{ObjectMeta, PostParams};
use kube::config::{AuthInfo, KubeConfigOptions, Kubeconfig};
use kube::{Api, Client, Config};
use kubewasm::cluster::{ControlPlane, signal_group};

pub mod components;
pub mod cpu_usage;
pub mod host;
pub mod logs;
pub mod mirror_round;
pub mod native_mirror;
pub mod plugins;
pub mod proxy;
pub mod wait;

/// Sandbox settings for tests: the default engine, with compiled components cached in
/// `target/test-compile-cache` so that each test need not compile each guest again.
pub fn sandbox_config() -> kubewasm::sandbox::SandboxConfig {
    kubewasm::sandbox::SandboxConfig {
        cache_dir: Some(
            PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/test-compile-cache"),
        ),
        ..Default::default()
    }
}

/// Runtime settings for tests: the defaults, except that grants without a
/// ServiceAccount run with the host's identity (`--allow-host-identity`), as most tests
/// are about something else than identity.
pub fn runtime_options() -> kubewasm::runtime::RuntimeOptions {
    kubewasm::runtime::RuntimeOptions {
        allow_host_identity: true,
        ..Default::default()
    }
}

/// What the tests need to know of the shared control plane.
#[derive(Debug)]
struct SharedControlPlane {
    kubeconfig: PathBuf,
}

static CONTROL_PLANE: OnceLock<SharedControlPlane> = OnceLock::new();
static PROCESS_GROUPS: OnceLock<[u32; 2]> = OnceLock::new();
static DATA_DIR: OnceLock<PathBuf> = OnceLock::new();
static NEXT_NAME: AtomicU32 = AtomicU32::new(0);

/// The kubeconfig of this test binary's control plane, starting it on first use.
///
/// The control plane runs on a thread of its own (its processes die with that thread) and
/// is stopped by an `atexit` handler when the test binary exits, whether tests passed,
/// failed or panicked.
pub fn kubeconfig() -> PathBuf {
    CONTROL_PLANE.get_or_init(start_shared).kubeconfig.clone()
}

fn start_shared() -> SharedControlPlane {
    init_tracing();
    let (sender, receiver) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name("control-plane".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a tokio runtime for the control plane");
            // tmpfs keeps etcd's fsyncs cheap; the directory goes away at exit.
            let dir = tempfile::Builder::new()
                .prefix("kubewasm-test-")
                .tempdir_in(fast_temp_dir())
                .expect("a temporary directory")
                .keep();
            let started = runtime.block_on(ControlPlane::start(&dir));
            let control_plane = match started {
                Ok(control_plane) => control_plane,
                Err(err) => {
                    let _ = sender.send(Err(format!("{err}")));
                    return;
                }
            };
            let _ = PROCESS_GROUPS.set(control_plane.process_groups());
            let _ = DATA_DIR.set(dir);
            // SAFETY: registering a plain extern "C" function.
            unsafe { libc::atexit(stop_shared) };
            let _ = sender.send(Ok(control_plane.kubeconfig().to_path_buf()));
            // Keep this thread (and with it the processes) alive for the whole run.
            loop {
                std::thread::park();
            }
        })
        .expect("spawning the control plane thread");
    match receiver.recv() {
        Ok(Ok(kubeconfig)) => SharedControlPlane { kubeconfig },
        Ok(Err(message)) => panic!("the test control plane did not start: {message}"),
        Err(_) => panic!("the test control plane thread died while starting"),
    }
}

extern "C" fn stop_shared() {
    if let Some(groups) = PROCESS_GROUPS.get() {
        for group in groups {
            signal_group(*group, libc::SIGKILL);
        }
    }
    if let Some(dir) = DATA_DIR.get() {
        let _ = std::fs::remove_dir_all(dir);
    }
}

fn fast_temp_dir() -> PathBuf {
    let shm = PathBuf::from("/dev/shm");
    if shm.is_dir() {
        shm
    } else {
        std::env::temp_dir()
    }
}

/// Logs to the test output (`RUST_LOG`, default `warn`) and captures warnings and
/// errors, and the sandbox's debug lines (guest backtraces), for [`logs::matching`].
pub fn init_tracing() {
    use tracing_subscriber::Layer as _;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    let _ = tracing_subscriber::registry()
        .with(
            tracing_subscriber::fmt::layer()
                .with_test_writer()
                .with_filter(filter),
        )
        .with(
            logs::CaptureLayer.with_filter(
                tracing_subscriber::filter::Targets::new()
                    .with_default(tracing::Level::WARN)
                    .with_target("kubewasm::sandbox", tracing::Level::DEBUG)
                    .with_target("kubewasm::ops::leader", tracing::Level::INFO),
            ),
        )
        .try_init();
}

/// Admin client configuration for the shared control plane.
pub async fn admin_config() -> anyhow::Result<Config> {
    let path = kubeconfig();
    let kubeconfig = Kubeconfig::read_from(&path)?;
    Ok(Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default()).await?)
}

/// A client with admin rights. Make one per test: a client belongs to the tokio runtime
/// it was made on, and every `#[tokio::test]` has its own.
pub async fn admin_client() -> anyhow::Result<Client> {
    Ok(Client::try_from(admin_config().await?)?)
}

/// A name unique within this test binary, starting with `prefix`.
pub fn unique_name(prefix: &str) -> String {
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT_NAME.fetch_add(1, Ordering::Relaxed)
    )
}

/// Creates a fresh namespace for one test and returns its name.
pub async fn test_namespace(client: &Client, prefix: &str) -> anyhow::Result<String> {
    let name = unique_name(prefix);
    let namespace = Namespace {
        metadata: ObjectMeta {
            name: Some(name.clone()),
            ..Default::default()
        },
        ..Default::default()
    };
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {name}"))?;
    Ok(name)
}

/// A service account in `namespace` bound to `rules` there (a Role and RoleBinding of the
/// same name), with a client that authenticates as it through a TokenRequest token.
pub struct TestUser {
    /// The ServiceAccount's name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// A client authenticated as it.
    pub client: Client,
}

impl TestUser {
    /// Creates the account, its Role and RoleBinding, and a client for it.
    pub async fn with_rules(
        admin: &Client,
        namespace: &str,
        rules: Vec<PolicyRule>,
    ) -> anyhow::Result<Self> {
        let name = unique_name("user");
        let pp = PostParams::default();
        let meta = ObjectMeta {
            name: Some(name.clone()),
            namespace: Some(namespace.to_string()),
            ..Default::default()
        };
        let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
        accounts
            .create(
                &pp,
                &ServiceAccount {
                    metadata: meta.clone(),
                    ..Default::default()
                },
            )
            .await
            .context("creating the service account")?;
        Api::<Role>::namespaced(admin.clone(), namespace)
            .create(
                &pp,
                &Role {
                    metadata: meta.clone(),
                    rules: Some(rules),
                },
            )
            .await
            .context("creating the role")?;
        Api::<RoleBinding>::namespaced(admin.clone(), namespace)
            .create(
                &pp,
                &RoleBinding {
                    metadata: meta.clone(),
                    role_ref: RoleRef {
                        api_group: Some("rbac.authorization.k8s.io".into()),
                        kind: "Role".into(),
                        name: name.clone(),
                    },
                    subjects: Some(vec![Subject {
                        kind: "ServiceAccount".into(),
                        name: name.clone(),
                        namespace: Some(namespace.to_string()),
                        ..Default::default()
                    }]),
                },
            )
            .await
            .context("creating the role binding")?;
        let token = service_account_token(admin, namespace, &name).await?;
        let mut config = admin_config().await?;
        config.auth_info =
            serde_json::from_value::<AuthInfo>(serde_json::json!({ "token": token }))?;
        Ok(Self {
            name,
            namespace: namespace.to_string(),
            client: Client::try_from(config)?,
        })
    }

    /// The Kubernetes user name of the account.
    pub fn username(&self) -> String {
        format!("system:serviceaccount:{}:{}", self.namespace, self.name)
    }
}

/// A bound token for a service account, from the TokenRequest API.
pub async fn service_account_token(
    admin: &Client,
    namespace: &str,
    name: &str,
) -> anyhow::Result<String> {
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), namespace);
    let request = TokenRequest {
        spec: Some(TokenRequestSpec {
            expiration_seconds: Some(Duration::from_secs(3600).as_secs() as i64),
            ..Default::default()
        }),
        ..Default::default()
    };
    let response: TokenRequest = accounts
        .create_subresource("token", name, &PostParams::default(), &request)
        .await
        .context("requesting a service account token")?;
    response
        .status
        .and_then(|status| status.token)
        .context("the token request returned no token")
}

/// ConfigMap `name` holding `data`, for creating in a test's namespace.
pub fn config_map(name: &str, data: &[(&str, &str)]) -> k8s_openapi::api::core::v1::ConfigMap {
    k8s_openapi::api::core::v1::ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.to_string()),
            ..Default::default()
        },
        data: Some(
            data.iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        ),
        ..Default::default()
    }
}

/// ConfigMap `name`, labelled for the configmap-mirror plugin to mirror.
pub fn mirror_source(name: &str) -> k8s_openapi::api::core::v1::ConfigMap {
    let mut source = config_map(name, &[("greeting", "hello")]);
    source.metadata.labels = Some([("kubewasm.dev/mirror".to_string(), "true".to_string())].into());
    source
}

/// What a native test reconciler watching every ConfigMap describes itself as.
pub fn every_config_map() -> &'static kubewasm::reconciler::Description {
    static DESCRIPTION: std::sync::OnceLock<kubewasm::reconciler::Description> =
        std::sync::OnceLock::new();
    DESCRIPTION.get_or_init(|| kubewasm::reconciler::Description {
        watch: kubewasm::reconciler::WatchSpec {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            label_selector: None,
        },
        finalizer: None,
        owns: Vec::new(),
    })
}
