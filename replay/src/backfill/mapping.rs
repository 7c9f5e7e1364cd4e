//! The column mapping of a CSV backfill: which column (or constant) goes to which path of a Segment
//! message, with its JSON type — `userId=member_no,traits.phone=mobile,properties.total=amount:number`.

use chrono::{NaiveDate, NaiveDateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Number, Value};

use cdp_domain::message::MessageError;

/// The top-level fields a mapping may write; the last three only below themselves (`traits.email`).
const SCALAR_ROOTS: [&str; 10] = [
    "type",
    "userId",
    "anonymousId",
    "previousId",
    "groupId",
    "event",
    "name",
    "timestamp",
    "originalTimestamp",
    "messageId",
];
const OBJECT_ROOTS: [&str; 3] = ["traits", "context", "properties"];

/// A mapping that cannot be used, found before any row is read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MappingError {
    #[error("mapping entry {0:?} is not target=column")]
    Syntax(String),
    #[error("mapping target {0:?} is not a message field (type, userId, anonymousId, previousId, groupId, event, name, timestamp, messageId, traits.*, context.*, properties.*)")]
    Target(String),
    #[error("mapping targets {0:?} and {1:?} overlap")]
    Overlap(String, String),
    #[error("column {column:?} of the mapping is not in the CSV header ({header})")]
    MissingColumn { column: String, header: String },
    #[error("the mapping is empty: give --map or --map-file for a CSV file")]
    Empty,
    #[error("the CSV file has no header row")]
    NoHeader,
    #[error("the CSV header cannot be read: {0}")]
    Header(String),
}

/// The JSON type a cell becomes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueType {
    String,
    Number,
    Boolean,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Origin {
    Column(String),
    /// `'Order Completed'`: the same value in every row.
    Constant(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Entry {
    target: String,
    path: Vec<String>,
    from: Origin,
    ty: ValueType,
}

/// Target paths and where their values come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mapping {
    entries: Vec<Entry>,
}

impl Mapping {
    /// `target=column[:number|:boolean|:string]` pairs separated by commas; a column in single quotes
    /// is a constant (`event='Order Completed'`).
    pub fn parse(spec: &str) -> Result<Self, MappingError> {
        let pairs = spec
            .split(',')
            .filter(|p| !p.trim().is_empty())
            .map(|pair| {
                pair.split_once('=')
                    .map(|(t, c)| (t.trim().to_owned(), c.trim().to_owned()))
                    .ok_or_else(|| MappingError::Syntax(pair.trim().to_owned()))
            })
            .collect::<Result<Vec<_>, _>>()?;
        Self::from_pairs(pairs)
    }

    /// The same pairs from elsewhere (a mapping file's table).
    pub fn from_pairs(
        pairs: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Self, MappingError> {
        let mut entries: Vec<Entry> = Vec::new();
        for (target, source) in pairs {
            let path: Vec<String> = target.split('.').map(str::to_owned).collect();
            let valid_root = match path.as_slice() {
                [root] => SCALAR_ROOTS.contains(&root.as_str()),
                [root, rest @ ..] => {
                    OBJECT_ROOTS.contains(&root.as_str()) && rest.iter().all(|s| !s.is_empty())
                }
                [] => false,
            };
            if !valid_root {
                return Err(MappingError::Target(target));
            }
            if source.is_empty() {
                return Err(MappingError::Syntax(format!("{target}=")));
            }
            let (column, ty) = match source.rsplit_once(':') {
                Some((column, "number")) => (column, ValueType::Number),
                Some((column, "boolean")) => (column, ValueType::Boolean),
                Some((column, "string")) => (column, ValueType::String),
                _ => (source.as_str(), ValueType::String),
            };
            let from = match column.strip_prefix('\'').and_then(|c| c.strip_suffix('\'')) {
                Some(constant) if column.len() >= 2 => Origin::Constant(constant.to_owned()),
                _ => Origin::Column(column.to_owned()),
            };
            for other in &entries {
                let shorter = other.path.len().min(path.len());
                if other.path[..shorter] == path[..shorter] {
                    return Err(MappingError::Overlap(other.target.clone(), target));
                }
            }
            entries.push(Entry {
                target,
                path,
                from,
                ty,
            });
        }
        if entries.is_empty() {
            return Err(MappingError::Empty);
        }
        Ok(Self { entries })
    }

    /// The mapping against a file's header: each column by its index.
    pub(super) fn bind(&self, header: &[String]) -> Result<Bound, MappingError> {
        let mut entries = Vec::with_capacity(self.entries.len());
        for entry in &self.entries {
            let source = match &entry.from {
                Origin::Constant(value) => Source::Constant(value.clone()),
                Origin::Column(column) => {
                    let index =
                        header
                            .iter()
                            .position(|h| h.trim() == column)
                            .ok_or_else(|| MappingError::MissingColumn {
                                column: column.clone(),
                                header: header.join(","),
                            })?;
                    Source::Column(index, column.clone())
                }
            };
            entries.push((entry.clone(), source));
        }
        let default_type = if self.entries.iter().any(|e| e.target == "event") {
            "track"
        } else {
            "identify"
        };
        Ok(Bound {
            entries,
            columns: header.len(),
            default_type,
        })
    }
}

#[derive(Debug, Clone)]
enum Source {
    Column(usize, String),
    Constant(String),
}

/// A mapping bound to a header.
#[derive(Debug, Clone)]
pub(super) struct Bound {
    entries: Vec<(Entry, Source)>,
    columns: usize,
    default_type: &'static str,
}

impl Bound {
    /// The Segment message of one row. Empty cells are left out; a cell that is not of its type refuses
    /// the row, naming the target and the column.
    pub(super) fn message(&self, cells: &[String]) -> Result<Value, MessageError> {
        if cells.len() != self.columns {
            return Err(MessageError::new(
                "invalid_row",
                "",
                format!(
                    "the row has {} fields, the header {}",
                    cells.len(),
                    self.columns
                ),
            ));
        }
        let mut msg = Map::new();
        for (entry, source) in &self.entries {
            let (raw, column) = match source {
                Source::Column(i, column) => (cells[*i].as_str(), Some(column.as_str())),
                Source::Constant(value) => (value.as_str(), None),
            };
            if raw.trim().is_empty() {
                continue;
            }
            let value = typed(raw, entry, column)?;
            insert(&mut msg, &entry.path, value);
        }
        msg.entry("type")
            .or_insert_with(|| Value::String(self.default_type.into()));
        Ok(Value::Object(msg))
    }
}

fn typed(raw: &str, entry: &Entry, column: Option<&str>) -> Result<Value, MessageError> {
    let from = || match column {
        Some(c) => format!("column {c:?}"),
        None => "the constant".to_owned(),
    };
    let text = raw.trim();
    match entry.ty {
        ValueType::String => {
            if matches!(entry.target.as_str(), "timestamp" | "originalTimestamp") {
                Ok(Value::String(timestamp(text)))
            } else {
                Ok(Value::String(raw.to_owned()))
            }
        }
        ValueType::Number => {
            let number = text
                .parse::<i64>()
                .ok()
                .map(Number::from)
                .or_else(|| text.parse::<f64>().ok().and_then(Number::from_f64));
            number.map(Value::Number).ok_or_else(|| {
                MessageError::new(
                    "invalid_value",
                    entry.target.clone(),
                    format!("{} value {text:?} is not a number", from()),
                )
            })
        }
        ValueType::Boolean => match text.to_ascii_lowercase().as_str() {
            "true" | "1" | "yes" | "y" | "t" => Ok(Value::Bool(true)),
            "false" | "0" | "no" | "n" | "f" => Ok(Value::Bool(false)),
            _ => Err(MessageError::new(
                "invalid_value",
                entry.target.clone(),
                format!("{} value {text:?} is not a boolean", from()),
            )),
        },
    }
}

/// Exports write local date-times without a zone (`2024-03-01 14:05:00`); they are read as UTC. A value
/// with a zone is left as it is, and anything else too, for validation to refuse with its reason.
fn timestamp(text: &str) -> String {
    if chrono::DateTime::parse_from_rfc3339(text).is_ok() {
        return text.to_owned();
    }
    let naive = [
        "%Y-%m-%d %H:%M:%S%.f",
        "%Y-%m-%dT%H:%M:%S%.f",
        "%Y-%m-%d %H:%M",
    ]
    .iter()
    .find_map(|f| NaiveDateTime::parse_from_str(text, f).ok())
    .or_else(|| {
        NaiveDate::parse_from_str(text, "%Y-%m-%d")
            .ok()
            .and_then(|d| d.and_hms_opt(0, 0, 0))
    });
    match naive {
        Some(t) => Utc
            .from_utc_datetime(&t)
            .to_rfc3339_opts(SecondsFormat::Millis, true),
        None => text.to_owned(),
    }
}

/// Sets `path` in `msg`, creating the objects on the way (targets never overlap, see `from_pairs`).
fn insert(msg: &mut Map<String, Value>, path: &[String], value: Value) {
    let Some((last, parents)) = path.split_last() else {
        return;
    };
    let mut node = msg;
    for key in parents {
        let child = node
            .entry(key.clone())
            .or_insert_with(|| Value::Object(Map::new()));
        if !child.is_object() {
            *child = Value::Object(Map::new());
        }
        let Value::Object(map) = child else {
            return;
        };
        node = map;
    }
    node.insert(last.clone(), value);
}
