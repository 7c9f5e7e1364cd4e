//! `cdp replay`: the operators' rebuilds — the whole read model into a shadow and switched in
//! (`rebuild`), where every projection stands (`status`), one profile from its events (`profile`), and
//! the batch side of the lambda merge (`profiles`, `batch`).

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cdp_domain::store::sql::query;
use cdp_domain::store::Store;
use cdp_projections::identity::IdentityResolver;
use cdp_projections::runner::checkpoint;
use cdp_replay::rebuild::{self, Phase, RebuildProgress};
use indicatif::{ProgressBar, ProgressStyle};

mod sql;

/// `cdp replay …`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    #[command(subcommand)]
    pub command: ReplayCommand,
    /// Directory of the embedded SQLite database, used when no database URL is given.
    #[arg(
        long,
        env = "CDP_DATA_DIR",
        default_value = "./cdp-data",
        global = true
    )]
    pub data_dir: std::path::PathBuf,
    /// `postgres://…` (or `sqlite://…`); the embedded database in `--data-dir` when absent.
    #[arg(long, env = "CDP_DATABASE_URL", global = true)]
    pub database_url: Option<String>,
}

#[derive(Debug, clap::Subcommand)]
pub enum ReplayCommand {
    /// Rebuilds read models from the log into new tables while the service keeps serving the old
    /// ones, and switches to them atomically once caught up (resumes an interrupted rebuild).
    Rebuild {
        /// The projection to rebuild: `identity` (the OneID graph, profiles, computed traits, tags,
        /// segments and their history: one model, rebuilt together).
        #[arg(long, value_parser = [IdentityResolver::NAME], conflicts_with = "all")]
        projection: Option<String>,
        /// Every projection.
        #[arg(long)]
        all: bool,
        /// Profiles whose state the rebuild keeps in memory (~3 KB each). A model with more is rebuilt
        /// in slices of workspaces, one after the other, each within the bound; a single workspace
        /// with more writes every batch's states and reads profiles back from the database, slower.
        /// Set it above the largest workspace's profiles when memory allows (the rebuild's first
        /// line says how many there are and the memory it will hold). The same variable bounds
        /// `serve`'s resolver.
        #[arg(long, env = "CDP_HELD_PROFILES", default_value_t = cdp_projections::identity::HELD_PROFILES)]
        held_profiles: usize,
    },
    /// Every projection's checkpoint, its lag behind the log, the code version that built it, and any
    /// rebuild in progress.
    Status,
    /// Re-folds one profile from its events and re-evaluates its tags and segments.
    Profile {
        /// The profile id (a profile merged away stands for its survivor).
        id: String,
        #[arg(long)]
        workspace: String,
    },
    /// Every 360° profile document recomputed up to the resolver's watermark (the batch side).
    Profiles,
    /// `profiles`, then every tag and segment re-evaluated by the resolver (a `batch` job); `serve`
    /// runs it every `CDP_BATCH_INTERVAL` seconds.
    Batch,
}

pub async fn run(args: ReplayArgs) -> anyhow::Result<()> {
    let store = match &args.database_url {
        Some(url) => Store::connect(url).await,
        None => Store::open_embedded(&args.data_dir).await,
    }
    .context("failed to open the database")?;
    match args.command {
        ReplayCommand::Rebuild {
            projection,
            all,
            held_profiles,
        } => {
            if projection.is_none() && !all {
                bail!("say which projection to rebuild: --projection identity, or --all");
            }
            rebuild_all(&store, held_profiles).await
        }
        ReplayCommand::Status => status(&store).await,
        ReplayCommand::Profile { id, workspace } => {
            let started = Instant::now();
            // A workspace id that does not parse holds no profile: the same answer as an unknown one.
            let Ok(ws) = cdp_domain::ident::WorkspaceId::parse(&workspace) else {
                bail!("no profile {id} in workspace {workspace}");
            };
            match cdp_replay::rebuild_profile(&store, &ws, &id).await? {
                Some(done) => println!(
                    "rebuilt profile {} from {} events in {} ms; its tags and segments are re-evaluated by \
                     the resolver's next round",
                    done.profile,
                    done.events,
                    started.elapsed().as_millis()
                ),
                None => bail!("no profile {id} in workspace {workspace}"),
            }
            Ok(())
        }
        ReplayCommand::Profiles | ReplayCommand::Batch => {
            let started = Instant::now();
            let run = cdp_replay::batch(&store)
                .await
                .context("the rebuild failed")?;
            println!(
                "rebuilt the profiles from {} events up to the watermark {}:{} in {:.2} s; tags and \
                 segments are re-evaluated by the resolver (a `batch` job) when the service runs",
                run.folded,
                run.watermark.tx,
                run.watermark.seq,
                started.elapsed().as_secs_f64(),
            );
            Ok(())
        }
    }
}

/// Rebuilds with a progress bar (rate, ETA) on a terminal, log lines every few seconds otherwise,
/// holding at most `held_profiles` profiles' state in memory.
pub async fn rebuild_all(store: &Store, held_profiles: usize) -> anyhow::Result<()> {
    let reporter = Reporter::new();
    let resolver = IdentityResolver::default().holding(held_profiles);
    let report = rebuild::rebuild_with(store, &resolver, &|p| reporter.report(p))
        .await
        .context("the rebuild failed")?;
    reporter.finish();
    println!(
        "rebuilt the read model from the log{}: {} events applied, {} rows switched in, caught up at \
         {}:{}, in {:.2} s ({:.0} events/s)",
        if report.resumed_from.seq > 0 {
            format!(" (resumed after {})", report.resumed_from.seq)
        } else {
            String::new()
        },
        report.applied,
        report.rows,
        report.through.tx,
        report.through.seq,
        report.seconds,
        report.applied as f64 / report.seconds.max(1e-9),
    );
    Ok(())
}

/// Shows a rebuild's progress: indicatif on a terminal, a log line every 5 s otherwise.
struct Reporter {
    bar: Option<ProgressBar>,
    last_line: Mutex<Instant>,
    /// Whether the memory estimate was told.
    told: std::sync::atomic::AtomicBool,
}

impl Reporter {
    fn new() -> Reporter {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{msg} [{bar:40}] {pos}/{len} events {per_sec} eta {eta}",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Reporter {
            bar,
            last_line: Mutex::new(Instant::now()),
            told: std::sync::atomic::AtomicBool::new(false),
        }
    }

    fn report(&self, p: &RebuildProgress) {
        let phase = match p.phase {
            Phase::CatchingUp => "catching up",
            Phase::Switching => "switching",
            Phase::Done => "done",
        };
        if !self.told.swap(true, std::sync::atomic::Ordering::Relaxed) {
            let sliced = if p.slices > 1 {
                format!(
                    "; more than it may hold: rebuilt in {} slices of workspaces, one after the other",
                    p.slices
                )
            } else {
                String::new()
            };
            eprintln!(
                "rebuild: {} profiles in the live model{sliced}; the rebuild holds at most ~{} MB in memory",
                p.profiles,
                p.memory_bytes.div_ceil(1_000_000)
            );
        }
        // In slices, each reads the log through: the bar runs over all of them.
        let per_slice = (p.target - p.resumed_from).max(0) as u64;
        let done = u64::from(p.slice.saturating_sub(1)) * per_slice
            + (p.position - p.resumed_from).max(0) as u64;
        let total = per_slice * u64::from(p.slices.max(1));
        match &self.bar {
            Some(bar) => {
                if p.slices > 1 && p.phase == Phase::CatchingUp {
                    bar.set_message(format!("{phase} (slice {} of {})", p.slice, p.slices));
                } else {
                    bar.set_message(phase);
                }
                bar.set_length(total.max(done));
                bar.set_position(done);
            }
            None => {
                let mut last = self.last_line.lock().expect("reporter lock");
                if last.elapsed() >= Duration::from_secs(5) || p.phase != Phase::CatchingUp {
                    tracing::info!(
                        phase,
                        slice = p.slice,
                        slices = p.slices,
                        position = p.position,
                        target = p.target,
                        applied = p.applied,
                        "rebuild"
                    );
                    *last = Instant::now();
                }
            }
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

async fn status(store: &Store) -> anyhow::Result<()> {
    let head = log_head(store).await?;
    println!("log: {head} events (last sequence)");
    println!(
        "{:<12} {:>12} {:>12} {:>8}",
        "projection", "checkpoint", "lag events", "version"
    );
    let at = checkpoint(store, IdentityResolver::NAME).await?;
    println!(
        "{:<12} {:>12} {:>12} {:>8}",
        IdentityResolver::NAME,
        at.seq,
        events_after(store, at.seq).await?,
        format!(
            "{}/{}",
            rebuild::built_version(store, IdentityResolver::NAME).await?,
            IdentityResolver::VERSION
        ),
    );
    // In parts, each one's checkpoint (the line above is the lowest of them).
    let mark = cdp_projections::partitions::Watermark::read(store).await?;
    for (part, at) in mark
        .parts()
        .iter()
        .filter(|(p, _)| p != IdentityResolver::NAME)
    {
        println!(
            "{:<12} {:>12} {:>12} {:>8}",
            part,
            at.seq,
            events_after(store, at.seq).await?,
            "-"
        );
    }
    let published = checkpoint(store, crate::publish::PUBLISHER).await?;
    let outbox_head = outbox_head(store).await?;
    println!(
        "{:<12} {:>12} {:>12} {:>8}",
        "publisher",
        published.seq,
        format!("{} msgs", (outbox_head - published.seq).max(0)),
        "-"
    );
    let now = chrono::Utc::now().timestamp_millis();
    for lease in cdp_projections::lease::holders(store).await? {
        if let Some(instance) = lease.part.strip_prefix(crate::publish::PUBLISHES_PREFIX) {
            if lease.live_at(now) {
                println!("instance {instance} publishes to NATS");
            }
            continue;
        }
        if let Some(instance) = lease
            .part
            .strip_prefix(cdp_projections::lease::INSTANCES_PREFIX)
        {
            if lease.live_at(now) {
                println!("instance {instance} shares the engine's parts");
            }
            continue;
        }
        println!(
            "partition {}: {} by {} (fence {})",
            lease.part,
            if lease.live_at(now) {
                "run"
            } else {
                "was run (lease expired)"
            },
            lease.owner,
            lease.fence
        );
    }
    match rebuild::shadow_status(store).await? {
        Some(shadow) => println!(
            "rebuild in progress (or interrupted; `cdp replay rebuild --all` resumes it): code version {}, \
             at {} of the log, {} events behind the live resolver, started {}",
            shadow.version,
            shadow.position.seq,
            (at.seq - shadow.position.seq).max(0),
            cdp_domain::message::rfc3339(cdp_domain::event::from_millis(shadow.started_at_ms)),
        ),
        None => println!("no rebuild in progress"),
    }
    Ok(())
}

/// The one number `text` answers (0 for none), with `bind` bound if given.
async fn scalar(store: &Store, text: &str, bind: Option<i64>) -> anyhow::Result<i64> {
    let value: Option<i64> = query(text).bind_each(bind).scalar(store.reader()).await?;
    Ok(value.unwrap_or(0))
}

async fn log_head(store: &Store) -> anyhow::Result<i64> {
    scalar(store, sql::LOG_HEAD, None).await
}

async fn events_after(store: &Store, seq: i64) -> anyhow::Result<i64> {
    scalar(store, sql::EVENTS_AFTER, Some(seq)).await
}

async fn outbox_head(store: &Store) -> anyhow::Result<i64> {
    scalar(store, sql::OUTBOX_HEAD, None).await
}
