//! `kubewasm check` as a user runs it.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KUBEWASM: &str = env!("CARGO_BIN_EXE_kubewasm");

fn mirror_plugin() -> PathBuf {
    let path =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/plugins/configmap-mirror.wasm");
    assert!(
        path.is_file(),
        "run `make plugins` first: {} is missing",
        path.display()
    );
    path
}

fn check(file: &Path, cache: &Path) -> Output {
    Command::new(KUBEWASM)
        .arg("check")
        .arg(file)
        .arg("--compile-cache")
        .arg(cache)
        .output()
        .expect("running kubewasm check")
}

#[test]
fn check_prints_the_mirror_plugins_description() {
    let cache = tempfile::tempdir().unwrap();
    let output = check(&mirror_plugin(), cache.path());
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_norway::Value = serde_norway::from_slice(&output.stdout).unwrap();
    assert_eq!(report["plugin"], "configmap-mirror");
    assert_eq!(report["contract"], "kubewasm:controller@0.1.0");
    assert_eq!(report["watch"]["apiVersion"], "v1");
    assert_eq!(report["watch"]["kind"], "ConfigMap");
    assert_eq!(report["watch"]["labelSelector"], "kubewasm.dev/mirror=true");
    assert_eq!(report["finalizer"], "kubewasm.dev/mirror");
    let digest = report["digest"].as_str().unwrap();
    assert!(
        digest.starts_with("sha256:") && digest.len() == 71,
        "{digest}"
    );
}

#[test]
fn check_refuses_bad_files_each_with_its_own_message_and_status() {
    let dir = tempfile::tempdir().unwrap();
    let component = std::fs::read(mirror_plugin()).unwrap();
    let cases: [(&str, Vec<u8>, i32, &str); 4] = [
        (
            "truncated.wasm",
            component[..component.len() / 3].to_vec(),
            5,
            "malformed or truncated component",
        ),
        (
            "notes.wasm",
            b"these are not the bytes you are looking for\n".to_vec(),
            3,
            "a text file",
        ),
        (
            "core.wasm",
            // The smallest core module: magic and version 1.
            b"\0asm\x01\0\0\0".to_vec(),
            4,
            "a core WebAssembly module, not a component",
        ),
        ("empty.wasm", Vec::new(), 3, "the file is empty"),
    ];
    for (name, bytes, status, message) in cases {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let output = check(&path, &dir.path().join("cache"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(status), "{name}: {stderr}");
        assert!(stderr.contains(message), "{name}: {stderr}");
        assert!(
            stderr.contains(name),
            "{name}: the message names the file: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{name}: nothing on stdout");
    }
}
