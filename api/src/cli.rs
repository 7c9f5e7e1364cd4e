//! The `cdp` command line: `serve`, `demo`, `bench`, `replay`, `backfill`.
//!
//! `demo` and `bench` are clients of the service and live in the crate `cdp-bench`: `cdp demo ARGS…` and
//! `cdp bench ARGS…` run the `cdp-bench` binary beside this one with the same arguments.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
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
    #[command(disable_help_flag = true)]
    Demo(Forwarded),
    /// Run the benchmark scenarios and print the table.
    #[command(disable_help_flag = true)]
    Bench(Forwarded),
    /// Rebuild read models from the event log: all of them (`rebuild`), one profile, or the batch side.
    Replay(crate::replay_cli::ReplayArgs),
    /// Import historical events from an NDJSON or CSV file: validated, idempotent, resumable.
    Backfill(crate::backfill::BackfillArgs),
}

/// The arguments of a command that `cdp-bench` runs, taken verbatim (`--help` included), so that the
/// flags and the help are `cdp-bench`'s own.
#[derive(Debug, clap::Args)]
pub struct Forwarded {
    /// Passed verbatim to the `cdp-bench` binary (`--help` after the command lists them).
    #[arg(
        trailing_var_arg = true,
        allow_hyphen_values = true,
        value_name = "ARGS"
    )]
    pub args: Vec<OsString>,
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
        Command::Demo(forwarded) => cdp_bench("demo", forwarded.args),
        Command::Bench(forwarded) => cdp_bench("bench", forwarded.args),
        Command::Replay(args) => crate::replay_cli::run(args).await,
        Command::Backfill(args) => crate::backfill::run(args).await,
    }
}

/// Runs `cdp-bench COMMAND ARGS…`, the binary beside the running `cdp`.
fn cdp_bench(command: &str, args: Vec<OsString>) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("failed to find the path of the running `cdp`")?;
    run_cdp_bench(&cdp_bench_beside(&exe)?, command, args)
}

/// The `cdp-bench` binary in the directory of `exe` (where cargo builds both), or why it is not there.
fn cdp_bench_beside(exe: &Path) -> anyhow::Result<PathBuf> {
    let path = exe.with_file_name(format!("cdp-bench{}", std::env::consts::EXE_SUFFIX));
    if !path.is_file() {
        bail!(
            "`cdp demo` and `cdp bench` run the `cdp-bench` binary, which is not built: expected at {}. \
             Build it with `cargo build -p cdp-bench` (or `cargo build`, which builds `cdp` and \
             `cdp-bench`; add `--release` for a release `cdp`)",
            path.display()
        );
    }
    Ok(path)
}

/// Runs `cdp-bench COMMAND ARGS…` in place of this process, so its output, exit status and signals
/// (ctrl-c, a `timeout`'s SIGTERM) are the command's own. Its `argv[0]` stays this one's, so its usage
/// lines read `cdp bench …` / `cdp demo …`.
#[cfg(unix)]
fn run_cdp_bench(path: &Path, command: &str, args: Vec<OsString>) -> anyhow::Result<()> {
    use std::os::unix::process::CommandExt;

    let mut child = std::process::Command::new(path);
    child.arg(command).args(args);
    if let Some(arg0) = std::env::args_os().next() {
        child.arg0(arg0);
    }
    // `exec` returns only when it failed.
    let error = child.exec();
    Err(error).with_context(|| format!("failed to run {}", path.display()))
}

/// Runs `cdp-bench COMMAND ARGS…` with this process's standard streams and exits with its status.
#[cfg(not(unix))]
fn run_cdp_bench(path: &Path, command: &str, args: Vec<OsString>) -> anyhow::Result<()> {
    let status = std::process::Command::new(path)
        .arg(command)
        .args(args)
        .status()
        .with_context(|| format!("failed to run {}", path.display()))?;
    std::process::exit(status.code().unwrap_or(1));
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

#[cfg(test)]
mod tests {
    use super::*;

    fn forwarded(line: &[&str]) -> (&'static str, Vec<OsString>) {
        match Cli::try_parse_from(line).expect("the line parses").command {
            Command::Demo(f) => ("demo", f.args),
            Command::Bench(f) => ("bench", f.args),
            other => panic!("not forwarded: {other:?}"),
        }
    }

    #[test]
    fn demo_and_bench_take_their_arguments_verbatim() {
        let (command, args) = forwarded(&[
            "cdp",
            "bench",
            "--scenario",
            "replay,resolve",
            "--events",
            "100",
            "--help",
        ]);
        assert_eq!(command, "bench");
        assert_eq!(
            args,
            ["--scenario", "replay,resolve", "--events", "100", "--help"].map(OsString::from)
        );
        let (command, args) = forwarded(&["cdp", "demo", "-h"]);
        assert_eq!(command, "demo");
        assert_eq!(args, [OsString::from("-h")]);
        assert_eq!(forwarded(&["cdp", "demo"]).1, Vec::<OsString>::new());
    }

    #[test]
    fn a_rebuild_holds_the_profiles_it_is_told_to() {
        let held = |line: &[&str]| match Cli::try_parse_from(line).expect("the line parses").command
        {
            Command::Replay(args) => match args.command {
                crate::replay_cli::ReplayCommand::Rebuild { held_profiles, .. } => held_profiles,
                other => panic!("not a rebuild: {other:?}"),
            },
            other => panic!("not replay: {other:?}"),
        };
        let line = [
            "cdp",
            "replay",
            "rebuild",
            "--all",
            "--held-profiles",
            "2500000",
        ];
        assert_eq!(held(&line), 2_500_000);
        if std::env::var_os("CDP_HELD_PROFILES").is_none() {
            assert_eq!(
                held(&["cdp", "replay", "rebuild", "--all"]),
                cdp_projections::identity::HELD_PROFILES
            );
        }
    }

    #[test]
    fn a_missing_cdp_bench_says_how_to_build_it() {
        let error = cdp_bench_beside(Path::new("/nonexistent/cdp/target/debug/cdp"))
            .expect_err("no cdp-bench there");
        let message = error.to_string();
        assert!(
            message.contains("/nonexistent/cdp/target/debug/cdp-bench")
                && message.contains("cargo build -p cdp-bench"),
            "{message}"
        );
    }
}
