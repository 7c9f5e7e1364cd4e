//! The `cdp` command line: `serve`, `demo`, `bench`, `replay`, `backfill`.

use clap::{Parser, Subcommand};
use tracing_subscriber::EnvFilter;

use crate::{Application, Config};

#[derive(Debug, Parser)]
#[command(
    name = "cdp",
    version,
    about = "Customer data platform: collect, join, and act on customer facts"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the service (HTTP, NATS ingestion, projections).
    Serve(Box<Config>),
    /// Generate a retail data set, ingest it through the real HTTP path, and print what cdp made of it.
    Demo(crate::demo::DemoArgs),
    /// Run the benchmark scenarios and print the table.
    Bench(crate::bench::BenchArgs),
    /// Rebuild read models from the event log: all of them (`rebuild`), one profile, or the batch side.
    Replay(crate::replay_cli::ReplayArgs),
    /// Import historical events from an NDJSON or CSV file: validated, idempotent, resumable.
    Backfill(crate::backfill::BackfillArgs),
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
        Command::Serve(config) => serve(*config).await,
        Command::Demo(args) => crate::demo::run(args).await,
        Command::Bench(args) => crate::bench::run(args).await,
        Command::Replay(args) => crate::replay_cli::run(args).await,
        Command::Backfill(args) => crate::backfill::run(args).await,
    }
}

async fn serve(config: Config) -> anyhow::Result<()> {
    let app = Application::build(config).await?;
    if let Some(generated) = app.generated_credentials() {
        // Printed once: only their hashes are stored.
        println!(
            "No credentials were configured, so workspace '{}' was created with:\n  write key:   {}\n  admin token: {}\nThey are shown only now; keep them.",
            generated.workspace, generated.write_key, generated.admin_token
        );
    }
    tracing::info!(address = %app.local_addr(), backend = app.state().store.backend_name(), "cdp listening");
    app.run_until_stopped().await
}
