//! `kubewasm run` as an operator runs it: serves metrics and probes, becomes ready,
//! logs JSON lines when asked, records its plugins' lifecycle on its Pod, and exits 0 on
//! SIGTERM after a graceful shutdown; with `--leader-elect`, two replicas of which one
//! runs plugins at a time.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::events::v1::Event;
use kubewasm::cluster::ControlPlane;

const KUBEWASM: &str = env!("CARGO_BIN_EXE_kubewasm");

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// GET `path` on `port`; the status code and body, or `None` if nothing answers.
fn get(port: u16, path: &str) -> Option<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: localhost\r\n\r\n").ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).ok()?;
    let status = response.split_whitespace().nth(1)?.parse().ok()?;
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_string())?;
    Some((status, body))
}

/// Kills the child when a failed assertion unwinds past it.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn copy_mirror_plugin(dir: &Path) {
    let built = Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins");
    for file in ["configmap-mirror.wasm", "configmap-mirror.yaml"] {
        let source = built.join(file);
        assert!(
            source.is_file(),
            "run `make plugins` first: {} is missing",
            source.display()
        );
        std::fs::copy(&source, dir.join(file)).unwrap();
    }
}

/// An admin client of `control_plane`.
async fn client(control_plane: &ControlPlane) -> anyhow::Result<kube::Client> {
    let kubeconfig = kube::config::Kubeconfig::read_from(control_plane.kubeconfig())?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default()).await?;
    Ok(kube::Client::try_from(config)?)
}

/// A `kubewasm run` child and the ports it serves on.
struct Host {
    child: KillOnDrop,
    metrics_port: u16,
    probe_port: u16,
}

impl Host {
    fn spawn(plugins: &Path, kubeconfig: &Path, extra: &[&str]) -> Self {
        Self::spawn_with(plugins, kubeconfig, extra, |command| {
            command.stderr(Stdio::inherit());
        })
    }

    /// [`Host::spawn`], its command `configure`d further (its environment, where its
    /// log goes).
    fn spawn_with(
        plugins: &Path,
        kubeconfig: &Path,
        extra: &[&str],
        configure: impl FnOnce(&mut Command),
    ) -> Self {
        let (metrics_port, probe_port) = (free_port(), free_port());
        let mut command = Command::new(KUBEWASM);
        command
            .arg("run")
            .arg("--plugins")
            .arg(plugins)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
            .args(["--probe-addr", &format!("127.0.0.1:{probe_port}")])
            .arg("--compile-cache")
            .arg(plugins.join("cache"))
            // The example grants name no ServiceAccount.
            .arg("--allow-host-identity")
            .args(extra);
        configure(&mut command);
        let child = command.spawn().unwrap();
        Self {
            child: KillOnDrop(child),
            metrics_port,
            probe_port,
        }
    }

    /// Polls until `check` holds, failing if the host exits first or after 60 s.
    fn wait_until(&mut self, what: &str, mut check: impl FnMut(&mut Self) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(60);
        while !check(self) {
            assert!(
                self.child.0.try_wait().unwrap().is_none(),
                "kubewasm run exited before {what}"
            );
            assert!(Instant::now() < deadline, "not {what} within 60 s");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn wait_ready(&mut self) {
        self.wait_until("ready", |host| {
            get(host.probe_port, "/readyz").is_some_and(|(status, body)| {
                status == 200 && {
                    assert_eq!(body, "ok");
                    true
                }
            })
        });
    }

    /// The metrics text, once the server answers.
    fn try_metrics(&self) -> Option<String> {
        get(self.metrics_port, "/metrics")
            .filter(|(status, _)| *status == 200)
            .map(|(_, metrics)| metrics)
    }

    fn metrics(&self) -> String {
        self.try_metrics().expect("metrics are served")
    }

    /// Whether the metrics hold the sample line `sample` (`name{labels} value`).
    fn has_sample(metrics: &str, sample: &str) -> bool {
        metrics.lines().any(|line| line == sample)
    }

    fn signal(&self, signal: libc::c_int) {
        // SAFETY: plain kill(2) on our own child.
        unsafe { libc::kill(self.child.0.id() as libc::pid_t, signal) };
    }

    /// Waits (at most 60 s) for the host to exit.
    fn exit_status(&mut self) -> std::process::ExitStatus {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "kubewasm run did not exit within 60 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// A control plane of its own and a plugins directory holding the mirror plugin.
struct Setup {
    runtime: tokio::runtime::Runtime,
    _cluster_dir: tempfile::TempDir,
    control_plane: ControlPlane,
    plugins: tempfile::TempDir,
}

impl Setup {
    fn new() -> Self {
        let runtime = tokio::runtime::Runtime::new().unwrap();
        let cluster_dir = tempfile::tempdir().unwrap();
        let control_plane = runtime
            .block_on(ControlPlane::start(cluster_dir.path()))
            .expect("a control plane (run scripts/assets.sh)");
        let plugins = tempfile::tempdir().unwrap();
        copy_mirror_plugin(plugins.path());
        Self {
            runtime,
            _cluster_dir: cluster_dir,
            control_plane,
            plugins,
        }
    }
}

#[test]
fn run_serves_metrics_and_probes_logs_json_and_exits_cleanly_on_sigterm() {
    let Setup {
        runtime,
        _cluster_dir,
        control_plane,
        plugins,
    } = Setup::new();

    let log_path = plugins.path().join("host.log");
    let log = std::fs::File::create(&log_path).unwrap();
    let mut host = Host::spawn_with(
        plugins.path(),
        control_plane.kubeconfig(),
        &["--log-format", "json"],
        |command| {
            command.stderr(log).env("POD_NAME", "kubewasm-0");
        },
    );
    host.wait_ready();
    assert_eq!(
        get(host.probe_port, "/healthz").map(|(status, _)| status),
        Some(200)
    );
    let metrics = host.metrics();
    assert!(
        Host::has_sample(&metrics, "kubewasm_watches 1"),
        "{metrics}"
    );
    assert!(Host::has_sample(&metrics, "kubewasm_leader 1"), "{metrics}");
    assert!(
        metrics.contains(
            "controller_runtime_max_concurrent_reconciles{controller=\"configmap-mirror\"} 4"
        ),
        "{metrics}"
    );

    // In a Pod, the plugin's start is an Event regarding it (sent in the background).
    runtime
        .block_on(async {
            let events = kube::Api::<Event>::namespaced(client(&control_plane).await?, "default");
            let deadline = Instant::now() + Duration::from_secs(60);
            loop {
                let listed = events.list(&Default::default()).await?;
                if listed.items.iter().any(|event| {
                    event.reason.as_deref() == Some("PluginStarted")
                        && event.regarding.as_ref().and_then(|pod| pod.name.as_deref())
                            == Some("kubewasm-0")
                }) {
                    return anyhow::Ok(());
                }
                anyhow::ensure!(
                    Instant::now() < deadline,
                    "no PluginStarted Event on Pod kubewasm-0 within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .unwrap();

    host.signal(libc::SIGTERM);
    let status = host.exit_status();
    assert!(status.success(), "kubewasm run exited with {status}");
    control_plane.stop();

    // One JSON object a line, the event's fields at the top level.
    let log = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|err| panic!("{err}: {line}")))
        .collect();
    assert!(
        lines
            .iter()
            .all(|line| line["level"].is_string() && line["message"].is_string()),
        "{log}"
    );
    assert!(
        lines
            .iter()
            .any(|line| line["plugin"] == "configmap-mirror"),
        "{log}"
    );
}

#[test]
fn two_replicas_elect_one_leader_and_a_deposed_leader_exits_1() {
    use k8s_openapi::api::coordination::v1::Lease;
    use kube::api::{Patch, PatchParams};

    let Setup {
        runtime,
        _cluster_dir,
        control_plane,
        plugins,
    } = Setup::new();
    let electing = |identity: &'static str| {
        Host::spawn(
            plugins.path(),
            control_plane.kubeconfig(),
            &[
                "--leader-elect",
                "--leader-elect-namespace",
                "default",
                "--leader-elect-identity",
                identity,
                "--leader-elect-lease-seconds",
                "3",
                "--leader-elect-renew-seconds",
                "2",
            ],
        )
    };

    let mut first = electing("first");
    first.wait_until("leading", |host| {
        host.try_metrics()
            .is_some_and(|metrics| Host::has_sample(&metrics, "kubewasm_leader 1"))
    });
    first.wait_ready();
    // The standby is ready too (so that rolling updates proceed) but runs no plugin.
    let mut second = electing("second");
    second.wait_ready();
    let standby = second.metrics();
    assert!(Host::has_sample(&standby, "kubewasm_leader 0"), "{standby}");
    assert!(
        Host::has_sample(&standby, "kubewasm_plugins 0"),
        "{standby}"
    );

    // A graceful stop hands the lease over.
    first.signal(libc::SIGTERM);
    let status = first.exit_status();
    assert!(status.success(), "the first replica exited with {status}");
    second.wait_until("leading after the first stopped", |host| {
        let metrics = host.metrics();
        Host::has_sample(&metrics, "kubewasm_leader 1")
            && Host::has_sample(&metrics, "kubewasm_plugins 1")
    });

    // Deposed (the lease now someone else's), the leader stops and exits 1.
    let client = runtime.block_on(client(&control_plane)).unwrap();
    let taken = serde_json::json!({
        "spec": {"holderIdentity": "intruder", "leaseDurationSeconds": 600}
    });
    runtime
        .block_on(kube::Api::<Lease>::namespaced(client, "default").patch(
            "kubewasm",
            &PatchParams::default(),
            &Patch::Merge(&taken),
        ))
        .unwrap();
    let status = second.exit_status();
    assert_eq!(
        status.code(),
        Some(1),
        "the deposed leader exited with {status}"
    );
    control_plane.stop();
}
