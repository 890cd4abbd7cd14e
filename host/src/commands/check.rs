//! `kubewasm check FILE`: validates a component against the contract and prints its
//! description.

use std::path::Path;
use std::process::ExitCode;

use kubewasm::sandbox::{
    CONTRACT_VERSION, LoadError, PACKAGE, PluginOptions, Sandbox, SandboxConfig,
};

/// Exit status for each way a file can fail the check, so that scripts can tell them
/// apart.
fn exit_code(error: &LoadError) -> u8 {
    match error {
        LoadError::Io(_) => 2,
        LoadError::NotWasm(_) => 3,
        LoadError::CoreModule => 4,
        LoadError::Malformed(_) => 5,
        LoadError::WrongWorld { .. } | LoadError::MissingExports { .. } => 6,
        LoadError::UnsupportedVersion { .. } => 7,
        LoadError::Incompatible(_) => 8,
        LoadError::Describe(_) | LoadError::InvalidDescription(_) => 9,
    }
}

#[derive(serde::Serialize)]
#[serde(rename_all = "camelCase")]
struct Report<'a> {
    plugin: &'a str,
    file: String,
    /// As a grant's `digest:` pins it.
    digest: String,
    contract: String,
    #[serde(flatten)]
    description: &'a kubewasm::reconciler::Description,
}

/// Runs the check; prints YAML on success and one clear line on failure.
pub async fn run(file: &Path, sandbox_config: SandboxConfig) -> anyhow::Result<ExitCode> {
    let sandbox = Sandbox::new(sandbox_config)?;
    let name = file
        .file_stem()
        .and_then(|stem| stem.to_str())
        .unwrap_or("plugin")
        .to_string();
    let loaded = match std::fs::read(file) {
        Ok(bytes) => sandbox.load(&name, bytes, PluginOptions::default()).await,
        Err(err) => Err(LoadError::Io(err)),
    };
    match loaded {
        Ok((plugin, _)) => {
            let report = Report {
                plugin: &name,
                file: file.display().to_string(),
                digest: format!("sha256:{}", plugin.digest()),
                contract: format!("{PACKAGE}@{CONTRACT_VERSION}"),
                description: kubewasm::reconciler::Reconciler::description(&plugin),
            };
            print!("{}", serde_norway::to_string(&report)?);
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            eprintln!("error: {}: {err}", file.display());
            Ok(ExitCode::from(exit_code(&err)))
        }
    }
}
