//! The `kubewasm` command line.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use kubewasm::sandbox::{Allocator, EngineConfig, SandboxConfig};

#[derive(Debug, Parser)]
#[command(name = "kubewasm", version, about)]
struct Cli {
    /// Log format on stderr: `text` for people, `json` (one object a line, fields at the
    /// top level) for log collectors.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value_t = LogFormat::Text,
        env = "KUBEWASM_LOG_FORMAT"
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A local control plane (etcd + kube-apiserver) for development and tests.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
    },
    /// Validate a plugin component against the contract and print its description.
    ///
    /// Exit status: 0 valid; 2 unreadable; 3 not WebAssembly; 4 a core module, not a
    /// component; 5 malformed or truncated; 6 another world or missing exports; 7 an
    /// unsupported contract version; 8 wrong export types or unknown imports;
    /// 9 describe() failed or returned an invalid description.
    Check {
        /// The component (`NAME.wasm`).
        file: PathBuf,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Create a plugin folder: a reconciler in LANG on its SDK, a grant and a README.
    ///
    /// The result builds with scripts/build-plugin.sh and passes `kubewasm check` as is.
    New(commands::new::NewArgs),
    /// Run a local control plane and the host on the example plugins, for development.
    Dev {
        #[command(flatten)]
        dev: commands::dev::DevArgs,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
    /// Run the controller host on a directory of plugins.
    Run {
        #[command(flatten)]
        run: commands::run::RunArgs,
        #[command(flatten)]
        sandbox: SandboxArgs,
    },
}

#[derive(Debug, Subcommand)]
enum ClusterCommand {
    /// Start etcd and kube-apiserver, write DIR/kubeconfig, and run until SIGINT or SIGTERM.
    Up {
        /// Directory for data, logs, credentials and the kubeconfig.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// Settings of the WebAssembly sandbox.
#[derive(Debug, Args)]
struct SandboxArgs {
    /// Instance allocator: `pooling` (fastest instantiation) or `on-demand`.
    #[arg(long, value_enum, default_value_t = Allocator::Pooling, env = "KUBEWASM_ALLOCATOR")]
    allocator: Allocator,
    /// Directory for precompiled components (default ~/.cache/kubewasm/compiled).
    #[arg(long, env = "KUBEWASM_COMPILE_CACHE")]
    compile_cache: Option<PathBuf>,
    /// Do not cache precompiled components on disk.
    #[arg(long, conflicts_with = "compile_cache")]
    no_compile_cache: bool,
    /// Meter fuel, so that grants may limit it (costs every plugin about a fifth more
    /// compile and run time).
    #[arg(long, env = "KUBEWASM_FUEL")]
    fuel: bool,
}

impl SandboxArgs {
    fn config(&self) -> SandboxConfig {
        SandboxConfig {
            engine: EngineConfig {
                allocator: self.allocator,
                fuel: self.fuel,
                ..EngineConfig::default()
            },
            cache_dir: if self.no_compile_cache {
                None
            } else {
                Some(
                    self.compile_cache
                        .clone()
                        .unwrap_or_else(SandboxConfig::default_cache_dir),
                )
            },
        }
    }
}

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.log_format);
    let result = match cli.command {
        Command::Cluster {
            command: ClusterCommand::Up { dir },
        } => commands::cluster::up(&dir)
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Check { file, sandbox } => commands::check::run(&file, sandbox.config()).await,
        Command::New(args) => commands::new::run(&args).map(|()| ExitCode::SUCCESS),
        Command::Dev { dev, sandbox } => commands::dev::run(dev, sandbox.config())
            .await
            .map(|()| ExitCode::SUCCESS),
        Command::Run { run, sandbox } => commands::run::run(run, sandbox.config())
            .await
            .map(|()| ExitCode::SUCCESS),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            // The chain of causes, one per line; no backtrace, this is for users.
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}

fn init_tracing(format: LogFormat) {
    use tracing_subscriber::EnvFilter;
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => subscriber.init(),
        LogFormat::Json => subscriber.json().flatten_event(true).init(),
    }
}
