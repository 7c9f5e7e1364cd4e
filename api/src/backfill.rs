//! `cdp backfill FILE`: the command line of `cdp_replay::backfill` — the file's format and column
//! mapping, the database, a progress bar on a terminal (log lines otherwise), and the report.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use cdp_domain::ident::{PhoneRegion, WorkspaceId};
use cdp_domain::store::{EventStore, Store};
use cdp_replay::backfill::{self, Format, Mapping, Options, Source, Update};
use indicatif::{ProgressBar, ProgressStyle};

/// How often the progress is logged when stderr is not a terminal.
const LOG_EVERY: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FileFormat {
    /// One Segment message (JSON) per line.
    Ndjson,
    /// A header row, then one message per row through --map / --map-file.
    Csv,
}

/// `cdp backfill FILE`: import historical events, validated and quarantined as live ingestion does;
/// idempotent (a stable message id per row) and resumable (a rerun of the same file continues after the
/// last committed line).
#[derive(Debug, clap::Args)]
pub struct BackfillArgs {
    /// The file: NDJSON of Segment messages, or CSV with a column mapping.
    pub file: PathBuf,
    /// The workspace the events belong to (it must exist); the only one when the database has exactly
    /// one.
    #[arg(long)]
    pub workspace: Option<String>,
    /// The file's format; from its extension when absent (.csv; .ndjson, .jsonl, .json).
    #[arg(long, value_enum)]
    pub format: Option<FileFormat>,
    /// CSV column mapping, `target=column[:number|:boolean|:string]` comma-separated; a column in single
    /// quotes is a constant. Targets: type, userId, anonymousId, event, timestamp, messageId, traits.*,
    /// context.traits.*, properties.* … e.g.
    /// `userId=member_no,traits.phone=mobile,event='Order Completed',timestamp=paid_at,properties.total=amount:number`.
    #[arg(long)]
    pub map: Option<String>,
    /// A TOML file of the same pairs (`"traits.phone" = "mobile"`), combined with --map.
    #[arg(long)]
    pub map_file: Option<PathBuf>,
    /// Rows per committed batch (one insert statement on PostgreSQL).
    #[arg(long, default_value_t = 5_000)]
    pub batch_size: usize,
    /// Read from the first line even if an earlier run of this file recorded progress (rows already
    /// stored are recognised by their message ids and not stored again).
    #[arg(long)]
    pub restart: bool,
    /// Directory of the embedded SQLite database, used when no database URL is given.
    #[arg(long, env = "CDP_DATA_DIR", default_value = "./cdp-data")]
    pub data_dir: PathBuf,
    /// `postgres://…` (or `sqlite://…`); the embedded database in `--data-dir` when absent.
    #[arg(long, env = "CDP_DATABASE_URL")]
    pub database_url: Option<String>,
    /// The region phone numbers without a country code are read in (`CN`, `HK`, `US`, …); the
    /// workspace's `phone_region` in `CDP_CONFIG` when absent, else `CN`.
    #[arg(long)]
    pub phone_region: Option<String>,
    /// The `CDP_CONFIG` file `serve` reads, for the workspace's `phone_region`.
    #[arg(long = "config", env = "CDP_CONFIG")]
    pub config_file: Option<PathBuf>,
}

/// The phone region of the backfill: --phone-region, else the workspace's in `CDP_CONFIG`, else `CN`.
fn phone_region_of(args: &BackfillArgs, workspace: &str) -> anyhow::Result<PhoneRegion> {
    if let Some(raw) = &args.phone_region {
        return Ok(PhoneRegion::parse(raw)?);
    }
    let configured = match &args.config_file {
        Some(path) => crate::config::ConfigFile::load(path)?
            .phone_regions()
            .get(workspace)
            .copied(),
        None => None,
    };
    Ok(configured.unwrap_or_default())
}

/// The workspace a backfill writes to: the one named, else the database's only workspace.
async fn workspace_of(store: &Store, named: Option<&str>) -> anyhow::Result<String> {
    if let Some(named) = named {
        return Ok(named.to_owned());
    }
    let ids = store
        .workspace_ids()
        .await
        .context("failed to list the workspaces")?;
    match ids.as_slice() {
        [only] => Ok(only.clone()),
        [] => bail!(
            "the database has no workspace yet: start `cdp serve` on it once (it creates one), or \
             name one with --workspace"
        ),
        several => bail!(
            "the database has {} workspaces ({}): name one with --workspace",
            several.len(),
            several.join(", ")
        ),
    }
}

pub async fn run(args: BackfillArgs) -> anyhow::Result<()> {
    let format = format_of(&args)?;
    let store = match &args.database_url {
        Some(url) => Store::connect(url).await,
        None => Store::open_embedded(&args.data_dir).await,
    }
    .context("failed to open the database")?;
    let workspace = workspace_of(&store, args.workspace.as_deref()).await?;
    let options = Options {
        batch_size: args.batch_size,
        restart: args.restart,
        received_at: chrono::Utc::now(),
        phone_region: phone_region_of(&args, &workspace)?,
    };
    let source = Source {
        path: args.file.clone(),
        format,
    };
    let display = Display::new(std::io::stderr().is_terminal());
    let started = Instant::now();
    let report = match WorkspaceId::parse(&workspace) {
        Ok(id) => backfill::backfill(&store, &id, source, &options, &|u| display.update(u)).await,
        // Every workspace is created under a valid id: a name that is none names no workspace.
        Err(_) => Err(backfill::BackfillError::UnknownWorkspace(workspace.clone())),
    }
    .with_context(|| format!("backfill of {} failed", args.file.display()));
    display.finish();
    let report = report?;
    let p = report.progress;
    let seconds = started.elapsed().as_secs_f64();
    println!(
        "backfilled {} into workspace {:?}: {} rows read{} in {seconds:.2} s ({:.0} rows/s): stored {}, \
         already present {}, rejected {}{}{}",
        args.file.display(),
        workspace,
        p.rows,
        report
            .resumed_after
            .map_or_else(String::new, |line| format!(" after line {line}")),
        p.rows as f64 / seconds.max(1e-9),
        p.stored,
        p.duplicates,
        p.rejected,
        if p.rejected > 0 {
            " (quarantined with their line numbers: GET /v1/quarantine)"
        } else {
            ""
        },
        if report.dropped_identifiers > 0 {
            format!(
                "; {} values kept but not used as identifiers (GET /v1/quality)",
                report.dropped_identifiers
            )
        } else {
            String::new()
        }
    );
    Ok(())
}

/// The format from --format, else from the extension; the mapping for CSV.
fn format_of(args: &BackfillArgs) -> anyhow::Result<Format> {
    let extension = args
        .file
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase);
    let format = match (args.format, extension.as_deref()) {
        (Some(f), _) => f,
        (None, Some("csv")) => FileFormat::Csv,
        (None, Some("ndjson" | "jsonl" | "json")) => FileFormat::Ndjson,
        (None, _) => bail!(
            "cannot tell the format of {} from its extension: give --format ndjson or --format csv",
            args.file.display()
        ),
    };
    match format {
        FileFormat::Ndjson => {
            if args.map.is_some() || args.map_file.is_some() {
                bail!("--map and --map-file are for CSV files");
            }
            Ok(Format::Ndjson)
        }
        FileFormat::Csv => {
            let mut pairs = match &args.map_file {
                Some(path) => map_file(path)?,
                None => Vec::new(),
            };
            if let Some(spec) = &args.map {
                // Parsed on its own first so that its syntax errors name it.
                Mapping::parse(spec).context("--map")?;
                pairs.extend(spec.split(',').filter_map(|pair| {
                    pair.split_once('=')
                        .map(|(t, c)| (t.trim().to_owned(), c.trim().to_owned()))
                }));
            }
            if pairs.is_empty() {
                bail!("a CSV file needs a column mapping: --map or --map-file");
            }
            Ok(Format::Csv(Mapping::from_pairs(pairs)?))
        }
    }
}

/// A TOML table of `target = "column"` pairs.
fn map_file(path: &Path) -> anyhow::Result<Vec<(String, String)>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("failed to read {}", path.display()))?;
    let table: toml::Table =
        toml::from_str(&text).with_context(|| format!("{} is not TOML", path.display()))?;
    table
        .into_iter()
        .map(|(target, column)| match column {
            toml::Value::String(column) => Ok((target, column)),
            other => bail!(
                "{}: {target} must be a column name (a string), not a {}",
                path.display(),
                other.type_str()
            ),
        })
        .collect()
}

/// A progress bar on a terminal (bytes of the file, rows/s, ETA); log lines every few seconds otherwise.
struct Display {
    bar: Option<ProgressBar>,
    started: Instant,
    last_log: Mutex<Instant>,
}

impl Display {
    fn new(terminal: bool) -> Self {
        let bar = terminal.then(|| {
            let bar = ProgressBar::new(0);
            bar.set_style(
                ProgressStyle::with_template(
                    "{elapsed_precise} [{bar:30}] {bytes}/{total_bytes} {msg} (ETA {eta})",
                )
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
            );
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last_log: Mutex::new(Instant::now()),
        }
    }

    fn update(&self, update: &Update) {
        match update {
            Update::Resuming {
                after_line,
                finished: true,
            } => self.say(&format!(
                "this file was backfilled completely before (up to line {after_line}): nothing to read \
                 (--restart reads it again; rows already stored are not stored twice)"
            )),
            Update::Resuming { after_line, .. } => self.say(&format!(
                "resuming after line {after_line}, the last line an earlier run of this file committed \
                 (--restart reads it from the start)"
            )),
            Update::Committed(p) => {
                let rate = p.rows as f64 / self.started.elapsed().as_secs_f64().max(1e-9);
                match &self.bar {
                    Some(bar) => {
                        bar.set_length(p.total_bytes);
                        bar.set_position(p.bytes_read);
                        bar.set_message(format!(
                            "{} rows, {rate:.0} rows/s, stored {}, present {}, rejected {}",
                            p.rows, p.stored, p.duplicates, p.rejected
                        ));
                    }
                    None => {
                        let mut last = self.last_log.lock().unwrap_or_else(|e| e.into_inner());
                        if last.elapsed() >= LOG_EVERY {
                            *last = Instant::now();
                            tracing::info!(
                                rows = p.rows,
                                rows_per_s = rate.round(),
                                stored = p.stored,
                                duplicates = p.duplicates,
                                rejected = p.rejected,
                                line = p.last_line,
                                percent = (p.bytes_read * 100).checked_div(p.total_bytes).unwrap_or(100),
                                "backfill progress"
                            );
                        }
                    }
                }
            }
        }
    }

    fn say(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use cdp_domain::store::{EventStore, Store};

    use super::workspace_of;

    #[tokio::test]
    async fn without_a_name_the_only_workspace_is_taken_and_several_must_be_named() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path()).await.unwrap();
        let none = workspace_of(&store, None).await.unwrap_err().to_string();
        assert!(none.contains("no workspace"), "{none}");
        store.ensure_workspace("shop").await.unwrap();
        assert_eq!(workspace_of(&store, None).await.unwrap(), "shop");
        store.ensure_workspace("outlet").await.unwrap();
        let several = workspace_of(&store, None).await.unwrap_err().to_string();
        assert!(
            several.contains("2 workspaces (outlet, shop)") && several.contains("--workspace"),
            "{several}"
        );
        assert_eq!(workspace_of(&store, Some("shop")).await.unwrap(), "shop");
    }
}
