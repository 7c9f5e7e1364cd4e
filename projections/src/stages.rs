//! What one batch of the engine writes besides the decisions and the profile model, by stage
//! (`StageWrites`: the catalog's, the profiles' derived rows, the audiences', the outbox's), and `write`,
//! which commits them in the batch's transaction in the order they have always been written: the
//! catalog (definitions, jobs, RFM cut points), tags, spend, due times, memberships, their history, then
//! the outbox (each stage's rows in the order the batch made them).

use crate::audience::writes::{self as audience_writes, AudienceWrites};
use crate::catalog::{self, CatalogWrites};
use crate::outbox::{self, OutboxWrites};
use crate::profiles::derived::{self, DerivedWrites};
use crate::runner::{ModelTx, ProjectionError};

/// The rows a batch's stages write, each stage's its own type.
#[derive(Debug, Default)]
pub struct StageWrites {
    /// Definitions, jobs and RFM cut points (`crate::catalog`).
    pub catalog: CatalogWrites,
    /// What each profile is worth and when it is due (`crate::profiles::derived`).
    pub derived: DerivedWrites,
    /// Tags, segment memberships and their history (`crate::audience::writes`).
    pub audiences: AudienceWrites,
    /// Messages for subscribers (`crate::outbox`).
    pub outbox: OutboxWrites,
}

impl StageWrites {
    /// Appends `other`'s writes after these, in their order.
    pub fn append(&mut self, other: StageWrites) {
        let StageWrites {
            catalog,
            derived,
            audiences,
            outbox,
        } = other;
        self.catalog.append(catalog);
        self.derived.append(derived);
        self.audiences.append(audiences);
        self.outbox.append(outbox);
    }

    pub fn is_empty(&self) -> bool {
        self.catalog.is_empty()
            && self.derived.is_empty()
            && self.audiences.is_empty()
            && self.outbox.is_empty()
    }
}

/// Writes `w` inside `tx`, in the order of the module's first line. The only way other crates write a
/// stage's rows: the stages' own `write` functions are the crate's.
#[tracing::instrument(
    name = "stages.write",
    skip_all,
    fields(tags = w.audiences.tags.len(), members = w.audiences.members.len(), outbox = w.outbox.len())
)]
pub(crate) async fn write(tx: &mut ModelTx<'_>, w: &StageWrites) -> Result<(), ProjectionError> {
    let now = chrono::Utc::now().timestamp_millis();
    catalog::write(tx, &w.catalog).await?;
    audience_writes::write_tags(tx, &w.audiences).await?;
    derived::write(tx, &w.derived).await?;
    audience_writes::write_memberships(tx, &w.audiences).await?;
    outbox::write(tx, &w.outbox, now).await
}
