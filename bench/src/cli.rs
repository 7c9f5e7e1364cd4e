//! The `cdp-bench` command line: `bench` and `demo`, with the flags `cdp bench` and `cdp demo` forward.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

#[derive(Debug, Parser)]
#[command(
    name = "cdp-bench",
    version,
    about = "The benchmark and the demo of cdp (run as `cdp bench` and `cdp demo`)"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Generate a retail data set, ingest it through the real HTTP path, and print what cdp made of it.
    Demo(crate::demo::DemoArgs),
    /// Run the benchmark scenarios and print the table.
    Bench(crate::bench::BenchArgs),
}

/// Parses the command line and runs the command.
pub async fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("CDP_LOG").unwrap_or_else(|_| EnvFilter::new("info,sqlx=warn")),
        )
        .with_target(false)
        .init();
    match cli.command {
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
    }
}
