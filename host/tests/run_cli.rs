//! `kubewasm run` as an operator runs it: serves metrics and probes, becomes ready,
//! and exits 0 on SIGTERM after a graceful shutdown.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

#[test]
fn run_serves_metrics_and_probes_and_exits_cleanly_on_sigterm() {
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let cluster_dir = tempfile::tempdir().unwrap();
    let control_plane = runtime
        .block_on(ControlPlane::start(cluster_dir.path()))
        .expect("a control plane (run scripts/assets.sh)");
    let plugins = tempfile::tempdir().unwrap();
    copy_mirror_plugin(plugins.path());

    let (metrics_port, probe_port) = (free_port(), free_port());
    let host = Command::new(KUBEWASM)
        .arg("run")
        .arg("--plugins")
        .arg(plugins.path())
        .arg("--kubeconfig")
        .arg(control_plane.kubeconfig())
        .args(["--metrics-addr", &format!("127.0.0.1:{metrics_port}")])
        .args(["--probe-addr", &format!("127.0.0.1:{probe_port}")])
        .arg("--compile-cache")
        .arg(plugins.path().join("cache"))
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut host = KillOnDrop(host);

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some((200, body)) = get(probe_port, "/readyz") {
            assert_eq!(body, "ok");
            break;
        }
        assert!(
            host.0.try_wait().unwrap().is_none(),
            "kubewasm run exited early"
        );
        assert!(Instant::now() < deadline, "not ready within 60 s");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(
        get(probe_port, "/healthz").map(|(status, _)| status),
        Some(200)
    );
    let (status, metrics) = get(metrics_port, "/metrics").expect("metrics are served");
    assert_eq!(status, 200);
    assert!(metrics.contains("kubewasm_watches 1"), "{metrics}");
    assert!(
        metrics.contains(
            "controller_runtime_max_concurrent_reconciles{controller=\"configmap-mirror\"} 4"
        ),
        "{metrics}"
    );

    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(host.0.id() as libc::pid_t, libc::SIGTERM) };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = host.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "kubewasm run did not stop within 60 s of SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "kubewasm run exited with {status}");
    control_plane.stop();
}
