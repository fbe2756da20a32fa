//! `rswarm`: the node daemon (`init`, `join`, `daemon`) and the client of a manager's
//! control API (every other command).
//!
//! # Layout
//! - [`args`]: the command line (clap).
//! - [`client`]: connecting to a manager (local Unix socket or mTLS TCP).
//! - [`commands`]: one module per command group; build request, call, print.
//! - [`output`]: tables and JSON.
//! - [`daemon`]: running a node.

mod args;
mod client;
mod commands;
mod daemon;
mod output;

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use tracing_subscriber::EnvFilter;

use crate::args::{Cli, Command};
use crate::commands::{Context, Reported, cluster, image, join_token, node, service, volume};

#[tokio::main]
async fn main() -> ExitCode {
    let cli = Cli::parse();
    init_tracing(cli.command.is_daemon());
    match run(cli).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            // Commands acting on several objects print each failure as it happens.
            if !err.is::<Reported>() {
                eprintln!("Error: {err:#}");
            }
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr, so that stdout holds only the command's output. `RUST_LOG`
/// overrides the default level: `info` for a node daemon, `warn` for a client.
fn init_tracing(daemon: bool) {
    let default = if daemon { "info,openraft=warn" } else { "warn" };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    // Fails only if a subscriber is already set, which nothing else here does.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// Dispatches the command.
async fn run(cli: Cli) -> anyhow::Result<()> {
    let ctx = Context {
        host: cli.host,
        cert_dir: cli.cert_dir,
        format: cli.format,
        tty: std::io::stdout().is_terminal(),
    };
    let mut out = std::io::stdout().lock();
    match cli.command {
        Command::Init(args) => {
            args.raft.validate()?;
            daemon::init(args).await
        }
        Command::Join(args) => {
            args.raft.validate()?;
            daemon::join(args).await
        }
        Command::Daemon(args) => daemon::run(args).await,
        Command::JoinToken(args) => join_token::run(&ctx, args, &mut out).await,
        Command::Cluster { command } => cluster::run(&ctx, command, &mut out).await,
        Command::Node { command } => node::run(&ctx, command, &mut out).await,
        Command::Service { command } => service::run(&ctx, command, &mut out).await,
        Command::Image { command } => image::run(&ctx, command, &mut out).await,
        Command::Volume { command } => volume::run(&ctx, command, &mut out).await,
    }
}
