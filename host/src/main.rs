//! The `kubewasm` command line.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use kubewasm::cluster::ControlPlane;

#[derive(Debug, Parser)]
#[command(name = "kubewasm", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// A local control plane (etcd + kube-apiserver) for development and tests.
    Cluster {
        #[command(subcommand)]
        command: ClusterCommand,
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

#[tokio::main]
async fn main() -> ExitCode {
    init_tracing();
    let result = match Cli::parse().command {
        Command::Cluster {
            command: ClusterCommand::Up { dir },
        } => cluster_up(dir).await,
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // The chain of causes on one line each; no backtrace, this is for users.
            eprintln!("error: {err}");
            for cause in err.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

async fn cluster_up(dir: PathBuf) -> anyhow::Result<()> {
    let control_plane = ControlPlane::start(&dir)
        .await
        .context("starting the local control plane")?;
    println!("{}", control_plane.kubeconfig().display());
    tracing::info!(
        server = control_plane.server(),
        kubeconfig = %control_plane.kubeconfig().display(),
        "control plane ready; stop with Ctrl-C"
    );
    wait_for_shutdown_signal().await;
    tracing::info!("stopping the control plane");
    control_plane.stop();
    Ok(())
}

async fn wait_for_shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut interrupt = signal(SignalKind::interrupt()).expect("installing a SIGINT handler");
    let mut terminate = signal(SignalKind::terminate()).expect("installing a SIGTERM handler");
    tokio::select! {
        _ = interrupt.recv() => {}
        _ = terminate.recv() => {}
    }
}

fn init_tracing() {
    use tracing_subscriber::EnvFilter;
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
}
