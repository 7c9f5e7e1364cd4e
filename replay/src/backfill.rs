//! `cdp backfill`: history from a file — NDJSON of Segment messages, or CSV with a column mapping (a POS
//! or CRM export) — through the validation live ingestion runs (`cdp_domain::message::validate`),
//! appended in batches with `EventStore::append` (one UNNEST insert per batch on PostgreSQL), refused
//! rows quarantined with their line. Idempotent: every row has a stable message id (its own `messageId`,
//! else derived from the workspace, the row and how often the same row came before), so a rerun stores
//! nothing new. Resumable: after each committed batch the last line is recorded (`backfill_progress`),
//! and a rerun of the same file starts after it. Event times are the rows' own: no clock-skew correction.
//!
//! The file is read and validated on a blocking thread while the previous batch is written.

mod mapping;
mod rows;
mod sql;

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use cdp_domain::event::NewEvent;
use cdp_domain::ident::{PhoneRegion, WorkspaceId};
use cdp_domain::message::{validate_in, Envelope, MessageError, Validated, MAX_BATCH_BYTES};
use cdp_domain::store::sql::query;
use cdp_domain::store::QualityFinding;
use cdp_domain::store::{EventStore, QuarantineEntry, Store, StoreError};
use chrono::{DateTime, Utc};
use serde_json::Value;
use sha2::{Digest, Sha256};

pub use mapping::{Mapping, MappingError, ValueType};
use rows::{Lines, RawRow};

/// The `source` of quarantined rows.
pub const QUARANTINE_SOURCE: &str = "backfill";
/// How much of the file's beginning identifies it, with its path and size.
const HEAD_BYTES: u64 = 64 * 1024;

/// How the rows of a file are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Format {
    /// One Segment message per line.
    Ndjson,
    /// A header row, then one row per message, turned into one by the mapping.
    Csv(Mapping),
}

/// The file to backfill.
#[derive(Debug, Clone)]
pub struct Source {
    pub path: PathBuf,
    pub format: Format,
}

/// How to run.
#[derive(Debug, Clone)]
pub struct Options {
    /// Rows per committed batch.
    pub batch_size: usize,
    /// Read from the first line even when an earlier run of the same file recorded progress.
    pub restart: bool,
    /// The arrival time of every event (`receivedAt`); the clock is read by the caller.
    pub received_at: DateTime<Utc>,
    /// The region phone numbers without a country code are read in (the workspace's `phone_region`).
    pub phone_region: PhoneRegion,
}

/// What the caller is told while the backfill runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    /// An earlier run of this file committed up to `after_line`; this run starts after it.
    Resuming { after_line: u64, finished: bool },
    /// A batch was committed.
    Committed(Progress),
}

/// Counts of this run so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Progress {
    /// Rows read in this run (rows skipped on resume not included).
    pub rows: u64,
    pub stored: u64,
    pub duplicates: u64,
    pub rejected: u64,
    /// The last line committed.
    pub last_line: u64,
    /// Bytes of the file read so far (including skipped ones), and its size.
    pub bytes_read: u64,
    pub total_bytes: u64,
}

/// What a backfill did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackfillReport {
    /// The line an earlier run had committed up to, when this run resumed after it.
    pub resumed_after: Option<u64>,
    /// This run's counts: events new to the log, rows already there, rows quarantined.
    pub progress: Progress,
    pub batches: u64,
    /// Values of this run's rows kept but not used as identifiers (`GET /v1/quality`).
    pub dropped_identifiers: u64,
}

/// Why a backfill stopped. Rows that are refused do not stop it: they are quarantined.
#[derive(Debug, thiserror::Error)]
pub enum BackfillError {
    #[error("failed to read {path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error(transparent)]
    Mapping(#[from] MappingError),
    #[error("workspace {0:?} does not exist")]
    UnknownWorkspace(String),
    #[error("--batch-size must be at least 1")]
    BatchSize,
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("failed to record the progress: {0}")]
    Progress(#[from] sqlx::Error),
    #[error("the reading thread failed: {0}")]
    Reader(String),
}

/// Reads `source` into the log of `workspace`; see the module's documentation. `on_update` is called
/// when the run resumes and after every committed batch.
#[tracing::instrument(name = "backfill", skip_all, fields(workspace = %workspace))]
pub async fn backfill(
    store: &Store,
    workspace: &WorkspaceId,
    source: Source,
    options: &Options,
    on_update: &(dyn Fn(&Update) + Sync),
) -> Result<BackfillReport, BackfillError> {
    // The log and the progress rows hold the workspace as text.
    let workspace = workspace.as_str();
    if options.batch_size == 0 {
        return Err(BackfillError::BatchSize);
    }
    if !store.workspace_exists(workspace).await? {
        return Err(BackfillError::UnknownWorkspace(workspace.to_owned()));
    }
    let path = source.path.display().to_string();
    let io = |e| BackfillError::Io {
        path: path.clone(),
        source: e,
    };
    let file = FileId::of(&source.path).map_err(io)?;
    let saved = if options.restart {
        None
    } else {
        load_progress(store, workspace, &file).await?
    };
    if let Some(saved) = &saved {
        on_update(&Update::Resuming {
            after_line: saved.last_line,
            finished: saved.finished,
        });
    }
    let skip_through = saved.as_ref().map_or(0, |s| s.last_line);
    let input = File::open(&source.path).map_err(io)?;
    let file_name = source
        .path
        .file_name()
        .map_or_else(|| path.clone(), |n| n.to_string_lossy().into_owned());
    let mut reader = Reader::new(
        BufReader::with_capacity(1 << 20, input),
        &source.format,
        ReaderContext {
            workspace: workspace.to_owned(),
            file_name,
            path: path.clone(),
            received_at: options.received_at,
            phone_region: options.phone_region,
            skip_through,
        },
    )?;

    // The reader validates the next batch on a blocking thread while this task writes the last one.
    let (sender, mut batches) = tokio::sync::mpsc::channel::<Result<Batch, BackfillError>>(2);
    let batch_size = options.batch_size;
    let reading = tokio::task::spawn_blocking(move || loop {
        match reader.next_batch(batch_size) {
            Ok(None) => return,
            Ok(Some(batch)) => {
                if sender.blocking_send(Ok(batch)).is_err() {
                    return;
                }
            }
            Err(e) => {
                let _ = sender.blocking_send(Err(e));
                return;
            }
        }
    });

    let earlier = saved.map(|s| s.counts).unwrap_or_default();
    let mut progress = Progress {
        last_line: skip_through,
        total_bytes: file.size,
        ..Progress::default()
    };
    let mut committed = 0;
    let mut dropped_identifiers = 0;
    let written = async {
        while let Some(batch) = batches.recv().await {
            let batch = batch?;
            let report = store.append(&batch.events).await?;
            store.quarantine(&batch.rejected).await?;
            store.record_findings(&batch.findings).await?;
            dropped_identifiers += batch.findings.len() as u64;
            progress.rows += batch.rows;
            progress.stored += report.inserted;
            progress.duplicates += report.duplicates;
            progress.rejected += batch.rejected.len() as u64;
            progress.last_line = batch.last_line;
            progress.bytes_read = batch.bytes_read;
            // After the batch: a crash before this write repeats the batch, which stores nothing twice.
            save_progress(store, workspace, &file, &earlier.plus(&progress, false)).await?;
            committed += 1;
            on_update(&Update::Committed(progress));
        }
        Ok::<(), BackfillError>(())
    }
    .await;
    drop(batches);
    let joined = reading.await;
    written?;
    joined.map_err(|e| BackfillError::Reader(e.to_string()))?;
    progress.bytes_read = file.size;
    save_progress(store, workspace, &file, &earlier.plus(&progress, true)).await?;
    tracing::info!(
        workspace,
        file = %path,
        rows = progress.rows,
        stored = progress.stored,
        duplicates = progress.duplicates,
        rejected = progress.rejected,
        dropped_identifiers,
        "backfill finished"
    );
    Ok(BackfillReport {
        resumed_after: (skip_through > 0).then_some(skip_through),
        progress,
        batches: committed,
        dropped_identifiers,
    })
}

/// A file as the progress table knows it: its canonical path, size and the SHA-256 of its beginning.
#[derive(Debug, Clone, PartialEq, Eq)]
struct FileId {
    path: String,
    size: u64,
    head_sha256: String,
}

impl FileId {
    fn of(path: &Path) -> std::io::Result<Self> {
        let canonical = std::fs::canonicalize(path)?;
        let mut file = File::open(&canonical)?;
        let size = file.metadata()?.len();
        let mut head = Vec::new();
        (&mut file).take(HEAD_BYTES).read_to_end(&mut head)?;
        Ok(Self {
            path: canonical.display().to_string(),
            size,
            head_sha256: hex(&Sha256::digest(&head)),
        })
    }
}

/// The recorded progress of a file.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Saved {
    last_line: u64,
    finished: bool,
    counts: Counts,
}

/// Counts over every run of a file since it was last restarted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    stored: u64,
    duplicates: u64,
    rejected: u64,
}

impl Counts {
    fn plus(&self, run: &Progress, finished: bool) -> Saved {
        Saved {
            last_line: run.last_line,
            finished,
            counts: Counts {
                stored: self.stored + run.stored,
                duplicates: self.duplicates + run.duplicates,
                rejected: self.rejected + run.rejected,
            },
        }
    }
}

type ProgressRow = (i64, i64, i64, i64, i64);

async fn load_progress(
    store: &Store,
    workspace: &str,
    file: &FileId,
) -> Result<Option<Saved>, sqlx::Error> {
    let size = i64::try_from(file.size).unwrap_or(i64::MAX);
    // Through the writer on SQLite, like the progress it saves.
    let row: Option<ProgressRow> = query(sql::PROGRESS)
        .bind(workspace)
        .bind(&file.path)
        .bind(size)
        .bind(&file.head_sha256)
        .fetch_optional(store.writer())
        .await?;
    let count = |n: i64| u64::try_from(n).unwrap_or(0);
    Ok(row.map(
        |(last_line, finished, stored, duplicates, rejected)| Saved {
            last_line: count(last_line),
            finished: finished != 0,
            counts: Counts {
                stored: count(stored),
                duplicates: count(duplicates),
                rejected: count(rejected),
            },
        },
    ))
}

async fn save_progress(
    store: &Store,
    workspace: &str,
    file: &FileId,
    saved: &Saved,
) -> Result<(), sqlx::Error> {
    let n = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
    let now = Utc::now().timestamp_millis();
    query(sql::SAVE_PROGRESS)
        .bind(workspace)
        .bind(&file.path)
        .bind(n(file.size))
        .bind(&file.head_sha256)
        .bind(n(saved.last_line))
        .bind(i64::from(saved.finished))
        .bind(n(saved.counts.stored))
        .bind(n(saved.counts.duplicates))
        .bind(n(saved.counts.rejected))
        .bind(now)
        .execute(store.writer())
        .await?;
    Ok(())
}

/// One batch of checked rows.
#[derive(Debug, Default)]
struct Batch {
    events: Vec<NewEvent>,
    rejected: Vec<QuarantineEntry>,
    /// Values of the batch's events dropped as identifiers (kept in the event, marked invalid).
    findings: Vec<QualityFinding>,
    rows: u64,
    /// The last line of the batch's last row.
    last_line: u64,
    bytes_read: u64,
}

#[derive(Debug, Clone)]
struct ReaderContext {
    workspace: String,
    /// For quarantine reasons: `line 17 of pos.csv: …`.
    file_name: String,
    /// For IO errors.
    path: String,
    received_at: DateTime<Utc>,
    phone_region: PhoneRegion,
    /// Rows ending on or before this line were committed by an earlier run.
    skip_through: u64,
}

#[derive(Debug)]
enum Kind {
    Ndjson,
    Csv(mapping::Bound),
}

/// Reads rows and checks them into batches; apart from reading, pure (the clock is in the context).
#[derive(Debug)]
struct Reader<R> {
    lines: Lines<R>,
    kind: Kind,
    context: ReaderContext,
    /// How often each row's content has come so far (by the first 8 bytes of its digest), so that
    /// identical rows get distinct, stable ids. One entry per distinct row.
    seen: HashMap<u64, u32>,
}

impl<R: BufRead> Reader<R> {
    /// Reads the CSV header and binds the mapping to it.
    fn new(input: R, format: &Format, context: ReaderContext) -> Result<Self, BackfillError> {
        let mut lines = Lines::new(input);
        let kind = match format {
            Format::Ndjson => Kind::Ndjson,
            Format::Csv(mapping) => {
                let header = lines
                    .next_csv()
                    .map_err(|e| context.io(e))?
                    .ok_or(MappingError::NoHeader)?;
                if header.too_long {
                    return Err(MappingError::Header("it is too long".into()).into());
                }
                let names =
                    rows::fields(&header.bytes).map_err(|e| MappingError::Header(e.to_string()))?;
                Kind::Csv(mapping.bind(&names)?)
            }
        };
        Ok(Self {
            lines,
            kind,
            context,
            seen: HashMap::new(),
        })
    }

    /// Up to `size` rows after the resume point, checked; `None` at the end of the file.
    fn next_batch(&mut self, size: usize) -> Result<Option<Batch>, BackfillError> {
        let mut batch = Batch::default();
        while batch.rows < size as u64 {
            let row = match self.kind {
                Kind::Ndjson => self.lines.next_ndjson(),
                Kind::Csv(_) => self.lines.next_csv(),
            }
            .map_err(|e| self.context.io(e))?;
            let Some(row) = row else {
                break;
            };
            let digest = row_digest(&self.context.workspace, &row.bytes);
            let key = u64::from_be_bytes(digest[..8].try_into().unwrap_or_default());
            let count = self.seen.entry(key).or_insert(0);
            let occurrence = *count;
            *count += 1;
            if row.last_line <= self.context.skip_through {
                continue;
            }
            batch.rows += 1;
            batch.last_line = row.last_line;
            match self.check(&row, &digest, occurrence) {
                Ok(valid) => {
                    for finding in valid.findings {
                        batch.findings.push(QualityFinding {
                            id: 0,
                            workspace: self.context.workspace.clone(),
                            message_id: valid.event.message_id.clone(),
                            field: finding.field,
                            code: finding.code.to_owned(),
                            reason: finding.reason,
                            source: QUARANTINE_SOURCE.into(),
                            received_at_ms: self.context.received_at.timestamp_millis(),
                        });
                    }
                    batch.events.push(valid.event);
                }
                Err(error) => batch.rejected.push(self.quarantine_entry(&row, &error)),
            }
        }
        batch.bytes_read = self.lines.bytes_read();
        Ok((batch.rows > 0).then_some(batch))
    }

    fn check(
        &self,
        row: &RawRow,
        digest: &[u8; 32],
        occurrence: u32,
    ) -> Result<Validated, MessageError> {
        if row.too_long {
            return Err(MessageError::new(
                "message_too_large",
                "",
                format!("the row is longer than {} bytes", rows::MAX_ROW_BYTES),
            ));
        }
        let value = match &self.kind {
            Kind::Ndjson => serde_json::from_slice::<Value>(&row.bytes).map_err(|e| {
                MessageError::new("invalid_json", "", format!("the row is not JSON: {e}"))
            })?,
            Kind::Csv(bound) => {
                let cells = rows::fields(&row.bytes)
                    .map_err(|e| MessageError::new("invalid_row", "", e.to_string()))?;
                bound.message(&cells)?
            }
        };
        let envelope = Envelope {
            workspace: &self.context.workspace,
            received_at: self.context.received_at,
            batch_sent_at: None,
            implied_kind: None,
        };
        validate_in(
            historical(value),
            &envelope,
            self.context.phone_region,
            || derived_message_id(digest, occurrence),
        )
    }

    fn quarantine_entry(&self, row: &RawRow, error: &MessageError) -> QuarantineEntry {
        let lines = if row.first_line == row.last_line {
            format!("line {}", row.first_line)
        } else {
            format!("lines {}-{}", row.first_line, row.last_line)
        };
        // PostgreSQL text cannot hold U+0000; a row may be any bytes.
        let mut payload = String::from_utf8_lossy(&row.bytes).replace('\0', "\u{FFFD}");
        if payload.len() > MAX_BATCH_BYTES {
            let mut cut = MAX_BATCH_BYTES;
            while !payload.is_char_boundary(cut) {
                cut -= 1;
            }
            payload.truncate(cut);
        }
        let field = if error.field.is_empty() {
            String::new()
        } else {
            error.field.clone()
        };
        QuarantineEntry {
            id: 0,
            workspace: Some(self.context.workspace.clone()),
            source: QUARANTINE_SOURCE.into(),
            received_at_ms: self.context.received_at.timestamp_millis(),
            code: error.code.into(),
            field,
            reason: format!("{lines} of {}: {}", self.context.file_name, error.message),
            payload,
        }
    }
}

impl ReaderContext {
    fn io(&self, source: std::io::Error) -> BackfillError {
        BackfillError::Io {
            path: self.path.clone(),
            source,
        }
    }
}

/// A backfill keeps historical times as they are: Segment's skew correction (`timestamp + receivedAt -
/// sentAt`) would move a years-old event to today, so `sentAt` is taken out, and serves as the time of
/// a message that has no other.
fn historical(value: Value) -> Value {
    let Value::Object(mut msg) = value else {
        return value;
    };
    if let Some(sent_at) = msg.remove("sentAt") {
        let has_time = ["timestamp", "originalTimestamp"]
            .iter()
            .any(|k| msg.get(*k).is_some_and(|v| !v.is_null()));
        if !has_time && !sent_at.is_null() {
            msg.insert("timestamp".into(), sent_at);
        }
    }
    Value::Object(msg)
}

fn row_digest(workspace: &str, row: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(workspace.as_bytes());
    hasher.update([0]);
    hasher.update(row);
    hasher.finalize().into()
}

/// `bf_` and 128 bits of the row's digest; the n-th repetition of the same row gets `-n` on top.
fn derived_message_id(digest: &[u8; 32], occurrence: u32) -> String {
    let mut id = format!("bf_{}", hex(&digest[..16]));
    if occurrence > 0 {
        id.push_str(&format!("-{occurrence}"));
    }
    id
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests;
