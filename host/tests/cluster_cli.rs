//! `kubewasm cluster up` as a user runs it: a real control plane in the foreground that
//! kubectl can use, gone without a trace after SIGTERM.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use kubewasm::cluster::Assets;

const KUBEWASM: &str = env!("CARGO_BIN_EXE_kubewasm");

fn kubectl(assets: &Assets, kubeconfig: &Path, args: &[&str]) -> String {
    let output = Command::new(&assets.kubectl)
        .arg("--kubeconfig")
        .arg(kubeconfig)
        .args(args)
        .output()
        .expect("running kubectl");
    assert!(
        output.status.success(),
        "kubectl {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("kubectl prints UTF-8")
}

/// Processes whose command line mentions `dir` (etcd's data dir, the apiserver's certs).
fn processes_using(dir: &Path) -> Vec<String> {
    let needle = dir.to_string_lossy().into_owned();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("reading /proc").flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) && !cmdline.contains(KUBEWASM) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[test]
fn cluster_up_serves_kubectl_and_stops_cleanly_on_sigterm() {
    let assets = Assets::locate().expect("control plane binaries (run scripts/assets.sh)");
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(KUBEWASM)
        .args(["cluster", "up", "--dir"])
        .arg(dir.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("starting kubewasm cluster up");

    let stdout = child.stdout.take().unwrap();
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = sender.send(line);
    });
    let printed = receiver
        .recv_timeout(Duration::from_secs(90))
        .expect("cluster up printed its kubeconfig path");
    let kubeconfig = PathBuf::from(printed.trim());
    assert_eq!(
        kubeconfig,
        std::fs::canonicalize(dir.path())
            .unwrap()
            .join("kubeconfig")
    );

    let namespaces = kubectl(&assets, &kubeconfig, &["get", "ns", "-o", "name"]);
    for expected in [
        "namespace/default",
        "namespace/kube-system",
        "namespace/kube-public",
    ] {
        assert!(
            namespaces.lines().any(|line| line == expected),
            "{namespaces}"
        );
    }
    let can_i = kubectl(&assets, &kubeconfig, &["auth", "can-i", "*", "*"]);
    assert_eq!(can_i.trim(), "yes");
    assert_eq!(
        processes_using(dir.path()).len(),
        2,
        "etcd and kube-apiserver run"
    );

    // SAFETY: plain kill(2) on our own child.
    unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    let status = child.wait().unwrap();
    assert!(status.success(), "cluster up exited with {status}");
    let left = processes_using(dir.path());
    assert!(left.is_empty(), "processes left after SIGTERM: {left:?}");
}

#[test]
fn cluster_up_without_binaries_fails_naming_what_is_missing() {
    let dir = tempfile::tempdir().unwrap();
    let output = Command::new(KUBEWASM)
        .args(["cluster", "up", "--dir"])
        .arg(dir.path())
        .env("KUBEBUILDER_ASSETS", "/nonexistent")
        .output()
        .unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    for expected in [
        "kube-apiserver",
        "etcd",
        "KUBEBUILDER_ASSETS",
        "/nonexistent",
        "scripts/assets.sh",
    ] {
        assert!(
            stderr.contains(expected),
            "missing {expected:?} in: {stderr}"
        );
    }
}
