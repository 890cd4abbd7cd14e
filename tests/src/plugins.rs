//! Built plugins: the examples (`make plugins`) and the test guests.

use std::path::PathBuf;

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

fn built(dir: &str, name: &str) -> PathBuf {
    let path = target_dir().join(dir).join(format!("{name}.wasm"));
    assert!(
        path.is_file(),
        "{} is not built: run `make plugins` (scripts/build-plugins.sh)",
        path.display()
    );
    path
}

/// `target/plugins/NAME.wasm`, an example plugin.
pub fn example(name: &str) -> PathBuf {
    built("plugins", name)
}

/// `target/test-plugins/NAME.wasm`, a test guest.
pub fn test_guest(name: &str) -> PathBuf {
    built("test-plugins", name)
}

/// The bytes of an example plugin.
pub fn example_bytes(name: &str) -> Vec<u8> {
    std::fs::read(example(name)).expect("reading a built plugin")
}

/// The bytes of a test guest.
pub fn test_guest_bytes(name: &str) -> Vec<u8> {
    std::fs::read(test_guest(name)).expect("reading a built test guest")
}

/// The grant built beside an example plugin (`target/plugins/NAME.yaml`).
pub fn example_grant(name: &str) -> String {
    let path = example(name).with_extension("yaml");
    std::fs::read_to_string(&path).unwrap_or_else(|err| panic!("reading {}: {err}", path.display()))
}

/// The grant built beside an example plugin, narrowed from every namespace to
/// `namespace`.
pub fn example_grant_in(name: &str, namespace: &str) -> String {
    let grant = example_grant(name);
    let everywhere = "namespaces: [\"*\"]";
    assert!(
        grant.contains(everywhere),
        "{name}'s grant is not cluster-wide: {grant}"
    );
    grant.replacen(everywhere, &format!("namespaces: [{namespace}]"), 1)
}

/// Defines one `#[tokio::test]` per language, named after it, that awaits `$run(plugin)`
/// (returning `anyhow::Result<()>`) on that language's configmap-mirror example.
#[macro_export]
macro_rules! test_every_language {
    ($run:path) => {
        $crate::test_every_language!($run:
            rust = "configmap-mirror",
            python = "configmap-mirror-py",
            javascript = "configmap-mirror-js",
            c = "configmap-mirror-c",
            go = "configmap-mirror-go",
        );
    };
    ($run:path: $($language:ident = $plugin:literal),* $(,)?) => {$(
        #[tokio::test]
        async fn $language() -> anyhow::Result<()> {
            $run($plugin).await
        }
    )*};
}
