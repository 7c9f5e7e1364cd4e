//! The `cdp` command line: `serve`, `demo`, `bench`, `replay`.

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
    /// Rebuild a read model from the event log and the recorded identity decisions.
    Replay(ReplayArgs),
}

/// `cdp replay profiles|batch`: what to rebuild, and the database to rebuild it in.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// `profiles`: every 360° profile document (under the current trait precedence and catalog);
    /// `batch`: the batch side of the lambda merge — the same recomputation up to the resolver's
    /// watermark, then every tag and segment re-evaluated by the resolver (run in `serve` every
    /// `CDP_BATCH_INTERVAL` seconds too).
    #[arg(value_parser = ["profiles", "batch"])]
    pub model: String,
    /// Directory of the embedded SQLite database, used when no database URL is given.
    #[arg(long, env = "CDP_DATA_DIR", default_value = "./cdp-data")]
    pub data_dir: std::path::PathBuf,
    /// `postgres://…` (or `sqlite://…`); the embedded database in `--data-dir` when absent.
    #[arg(long, env = "CDP_DATABASE_URL")]
    pub database_url: Option<String>,
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
        Command::Replay(args) => replay(args).await,
    }
}

async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    use anyhow::Context;
    let store = match &args.database_url {
        Some(url) => cdp_domain::store::Store::connect(url).await,
        None => cdp_domain::store::Store::open_embedded(&args.data_dir).await,
    }
    .context("failed to open the database")?;
    let started = std::time::Instant::now();
    let run = cdp_replay::batch(&store)
        .await
        .context("the rebuild failed")?;
    println!(
        "rebuilt the profiles from {} events up to the watermark {}:{} in {:.2} s{}",
        run.folded,
        run.watermark.tx,
        run.watermark.seq,
        started.elapsed().as_secs_f64(),
        if args.model == "batch" {
            "; tags and segments are re-evaluated by the resolver (a `batch` job) when the service runs"
        } else {
            ""
        }
    );
    Ok(())
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
