//! The profiles stage's derived rows: what each touched profile is worth (`profile_spend`) and when it
//! must be looked at again (`profile_due`), as a batch changed them (`DerivedWrites`), written in its
//! transaction — each backend's statements in `sqlite` and `postgres`.

use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};

mod postgres;
mod sqlite;

/// A profile's row of one derived table: `(workspace, profile, value)`; `None`: the row goes.
pub type DerivedRow = (String, String, Option<f64>);

/// The derived rows a batch writes.
#[derive(Debug, Default)]
pub struct DerivedWrites {
    /// `(workspace, profile, spend)`; `None`: the profile is gone.
    pub spend: Vec<DerivedRow>,
    /// `(workspace, profile, due_at)` (ms); `None`: nothing due.
    pub due: Vec<DerivedRow>,
}

impl DerivedWrites {
    /// Appends `other`'s rows after these, in their order.
    pub fn append(&mut self, other: DerivedWrites) {
        self.spend.extend(other.spend);
        self.due.extend(other.due);
    }

    pub fn is_empty(&self) -> bool {
        self.spend.is_empty() && self.due.is_empty()
    }
}

/// The derived tables and the column each holds its value in.
fn tables(w: &DerivedWrites) -> [(&'static str, &'static str, &[DerivedRow]); 2] {
    [
        ("profile_spend", "spend", &w.spend),
        ("profile_due", "due_at", &w.due),
    ]
}

/// Writes `w` inside `tx`: spend, then due times.
pub(crate) async fn write(tx: &mut ModelTx<'_>, w: &DerivedWrites) -> Result<(), ProjectionError> {
    match &mut tx.0 {
        Tx::Sqlite(tx) => sqlite::write_rows(tx, w).await,
        Tx::Postgres(tx) => postgres::write_rows(tx, w).await,
    }
}
