//! The audiences stage's writes: the tags each touched profile has (`profile_tags`), the segments it is
//! in (`segment_members`) and their enters and exits (`segment_history`, append-only), as a batch
//! changed them (`AudienceWrites`), written in its transaction — each backend's statements in `sqlite`
//! and `postgres`.

use crate::catalog::{Membership, MembershipChange, ProfileTag};
use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};

mod postgres;
mod sqlite;

/// `(workspace, profile, tag, value)`: set (`Some`) or removed.
pub type TagWrite = (String, String, String, Option<ProfileTag>);
/// `(workspace, segment, profile, membership)`: entered (`Some`) or exited.
pub type MemberWrite = (String, String, String, Option<Membership>);

/// The audience rows a batch writes.
#[derive(Debug, Default)]
pub struct AudienceWrites {
    pub tags: Vec<TagWrite>,
    pub members: Vec<MemberWrite>,
    /// Enters and exits, in order (`seq` unused), with their workspace.
    pub history: Vec<(String, MembershipChange)>,
}

impl AudienceWrites {
    /// Appends `other`'s rows after these, in their order.
    pub fn append(&mut self, other: AudienceWrites) {
        self.tags.extend(other.tags);
        self.members.extend(other.members);
        self.history.extend(other.history);
    }

    pub fn is_empty(&self) -> bool {
        self.tags.is_empty() && self.members.is_empty() && self.history.is_empty()
    }
}

/// Writes `w`'s tags inside `tx` (the last change of each profile's tag holds).
pub(crate) async fn write_tags(
    tx: &mut ModelTx<'_>,
    w: &AudienceWrites,
) -> Result<(), ProjectionError> {
    match &mut tx.0 {
        Tx::Sqlite(tx) => sqlite::write_tags(tx, w).await,
        Tx::Postgres(tx) => postgres::write_tags(tx, w).await,
    }
}

/// Writes `w`'s memberships (the last change of each holds), then their history in its order.
pub(crate) async fn write_memberships(
    tx: &mut ModelTx<'_>,
    w: &AudienceWrites,
) -> Result<(), ProjectionError> {
    match &mut tx.0 {
        Tx::Sqlite(tx) => sqlite::write_memberships(tx, w).await,
        Tx::Postgres(tx) => postgres::write_memberships(tx, w).await,
    }
}
