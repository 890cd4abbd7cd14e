//! `kubewasm new` as a user runs it: for every language, the scaffolded folder builds
//! with scripts/build-plugin.sh and passes `kubewasm check` unchanged.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const KUBEWASM: &str = env!("CARGO_BIN_EXE_kubewasm");

fn checkout() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("host/ is inside the checkout")
        .to_path_buf()
}

fn succeed(what: &str, output: Output) -> String {
    assert!(
        output.status.success(),
        "{what} failed:\n{}\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("UTF-8 output")
}

/// Scaffolds `lang`, builds it and checks it; returns `kubewasm check`'s report.
fn scaffold_build_check(lang: &str) -> serde_norway::Value {
    let checkout = checkout();
    // Inside the checkout, as a user's plugin would be, but in a folder of its own.
    let target = checkout.join("target");
    std::fs::create_dir_all(&target).unwrap();
    let work = tempfile::Builder::new()
        .prefix("scaffold-")
        .tempdir_in(&target)
        .unwrap();
    let name = format!("hello-{lang}");
    succeed(
        "kubewasm new",
        Command::new(KUBEWASM)
            .args(["new", "--lang", lang, "--dir"])
            .arg(work.path())
            .arg(&name)
            .output()
            .unwrap(),
    );
    let out = work.path().join("out");
    succeed(
        "scripts/build-plugin.sh",
        Command::new(checkout.join("scripts/build-plugin.sh"))
            .arg(work.path().join(&name))
            .arg(&out)
            // `cargo test` may hold the checkout's target directory: build elsewhere.
            .env("CARGO_TARGET_DIR", target.join("scaffold-target"))
            .output()
            .unwrap(),
    );
    assert!(
        out.join(format!("{name}.yaml")).is_file(),
        "grant not copied"
    );
    let report = succeed(
        "kubewasm check",
        Command::new(KUBEWASM)
            .arg("check")
            .arg(out.join(format!("{name}.wasm")))
            .arg("--no-compile-cache")
            .output()
            .unwrap(),
    );
    let report: serde_norway::Value = serde_norway::from_str(&report).unwrap();
    assert_eq!(report["plugin"], name.as_str());
    assert_eq!(report["watch"]["kind"], "ConfigMap");
    assert_eq!(
        report["watch"]["labelSelector"],
        format!("example.com/{name}=true").as_str()
    );
    report
}

#[test]
fn a_new_rust_plugin_builds_and_checks() {
    scaffold_build_check("rust");
}

#[test]
fn a_new_python_plugin_builds_and_checks() {
    scaffold_build_check("python");
}

#[test]
fn a_new_js_plugin_builds_and_checks() {
    scaffold_build_check("js");
}

#[test]
fn a_new_c_plugin_builds_and_checks() {
    scaffold_build_check("c");
}

#[test]
fn a_new_go_plugin_builds_and_checks() {
    scaffold_build_check("go");
}

#[test]
fn new_refuses_to_overwrite_and_to_leave_the_checkout() {
    let work = tempfile::Builder::new()
        .prefix("scaffold-")
        .tempdir_in(checkout().join("target"))
        .unwrap();
    let new = |dir: &Path| {
        Command::new(KUBEWASM)
            .args(["new", "--lang", "c", "--dir"])
            .arg(dir)
            .arg("twice")
            .output()
            .unwrap()
    };
    succeed("the first kubewasm new", new(work.path()));
    let source = work.path().join("twice/app.c");
    std::fs::write(&source, "/* edited */").unwrap();

    let again = new(work.path());
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("already exists"));
    assert_eq!(std::fs::read_to_string(&source).unwrap(), "/* edited */");

    let outside = tempfile::tempdir().unwrap();
    let elsewhere = new(outside.path());
    assert!(!elsewhere.status.success());
    assert!(String::from_utf8_lossy(&elsewhere.stderr).contains("not inside a kubewasm checkout"));
    assert!(!outside.path().join("twice").exists());
}
