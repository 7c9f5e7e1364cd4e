//! Answers from an index brought up to date first (`Audiences::current`, `segment_sizes`,
//! `tag_values`): the stored token read, the staged batches followed back to the index's token, the
//! profiles they touched (and those whose computed values changed by themselves) read again; when the
//! way back is lost or a definition changed the index's columns, no answer, and the builder is woken.

use std::collections::BTreeSet;

use cdp_domain::audience::AudienceIndex;
use cdp_domain::catalog::Catalog;
use cdp_domain::ident::WorkspaceId;
use cdp_domain::store::Store;
use chrono::{DateTime, Utc};

use super::{load, stored_token, Audiences, Refreshed, Slot};
use crate::runner::ProjectionError;

impl Audiences {
    /// The index of `workspace`, current with every batch committed before the call, locked for the
    /// caller; `None` when this process holds none that the staged batches bring up to date (it is
    /// being built, or must be read whole again: the background builder is woken).
    pub async fn current(
        &self,
        store: &Store,
        workspace: &WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<Option<(tokio::sync::OwnedMutexGuard<Slot>, Refreshed)>, ProjectionError> {
        self.current_in(store, workspace, now).await
    }

    /// [`Audiences::current`] for the engine, which holds workspaces as the events' text.
    pub(crate) async fn current_in(
        &self,
        store: &Store,
        workspace: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(tokio::sync::OwnedMutexGuard<Slot>, Refreshed)>, ProjectionError> {
        let found = self.refresh(store, workspace, now).await?;
        if found.is_none() {
            self.wake.notify_one();
        }
        Ok(found)
    }

    /// The members of each saved segment of `workspace` from the index's bitmaps, when this process
    /// holds an index of it that a few rows bring up to date; `None` otherwise (the caller counts the
    /// stored rows instead).
    pub async fn segment_sizes(
        &self,
        store: &Store,
        workspace: &WorkspaceId,
        now: DateTime<Utc>,
    ) -> Result<Option<std::collections::BTreeMap<String, u64>>, ProjectionError> {
        self.held_answer(store, workspace, now, |i| Some(i.segment_sizes()))
            .await
    }

    /// A tag's population per value (each value's live profiles and their spend) from the index's
    /// bitmaps, when this process holds an index of `workspace` that a few rows bring up to date and
    /// it can say (see [`AudienceIndex::tag_values`]); `None` otherwise (the caller counts the stored
    /// rows instead).
    pub async fn tag_values(
        &self,
        store: &Store,
        workspace: &WorkspaceId,
        tag: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<Vec<(serde_json::Value, u64, f64)>>, ProjectionError> {
        self.held_answer(store, workspace, now, |i| i.tag_values(tag))
            .await
    }

    /// What `answer` says of the index of `workspace`, brought up to date by a few rows, when this
    /// process holds one; `None` when it holds none, the index needs to be read whole, or `answer`
    /// cannot say.
    async fn held_answer<T>(
        &self,
        store: &Store,
        workspace: &str,
        now: DateTime<Utc>,
        answer: impl FnOnce(&AudienceIndex) -> Option<T>,
    ) -> Result<Option<T>, ProjectionError> {
        let held = self
            .slots
            .lock()
            .expect("audience slots lock")
            .contains_key(workspace);
        if !held {
            return Ok(None);
        }
        let found = self.refresh(store, workspace, now).await?;
        Ok(found.and_then(|(slot, _)| slot.index().and_then(answer)))
    }

    /// Brings the index of `workspace` up to date; `None` when there is none or that needs it read
    /// whole.
    pub(super) async fn refresh(
        &self,
        store: &Store,
        workspace: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(tokio::sync::OwnedMutexGuard<Slot>, Refreshed)>, ProjectionError> {
        let slot = self.slot(workspace);
        let mut slot = slot.lock_owned().await;
        if slot.index.is_none() {
            return Ok(None);
        }
        let stored = stored_token(store).await?;
        let mut refreshed = Refreshed::default();
        let (mut profiles, catalog) = if slot.token == stored {
            (Vec::new(), None)
        } else {
            match self
                .follow(store, workspace, &slot, stored.as_deref())
                .await?
            {
                Some(found) => found,
                None => {
                    slot.asked = true;
                    return Ok(None);
                }
            }
        };
        if let Some(catalog) = catalog {
            slot.catalog = catalog;
        }
        if let Some(index) = &slot.index {
            profiles.extend(index.stale_at(now));
        }
        profiles.sort_unstable();
        profiles.dedup();
        refreshed.profiles = profiles.len();
        read_again(store, workspace, &mut slot, &profiles, now).await?;
        slot.token = stored;
        Ok(Some((slot, refreshed)))
    }

    /// The profiles of `workspace` the batches after the slot's token up to `to` touched, and the
    /// catalog in force when one of them changed definitions; `None` when the chain does not lead
    /// back to the slot's token, or a definition changed what the index's columns are (a computed
    /// trait folded (not a segment's hidden one), a tag defined or deleted: names resolve differently, values are computed
    /// differently; the consent policy: every row's reachable channels) — then the index is read
    /// whole. A segment's definition changes no column (its event conditions' hidden traits are
    /// read by no column): its members are staged as any membership.
    pub(super) async fn follow(
        &self,
        store: &Store,
        workspace: &str,
        slot: &Slot,
        to: Option<&str>,
    ) -> Result<Option<(Vec<String>, Option<Catalog>)>, ProjectionError> {
        let Some((profiles, redefined)) =
            self.touched_between(workspace, slot.token.as_deref(), to)
        else {
            return Ok(None);
        };
        if !redefined {
            return Ok(Some((profiles, None)));
        }
        let catalog = crate::catalog::load_in(store, workspace).await?;
        // The catalog read must be the one in force at `to`: no batch committed since redefined
        // the workspace (else it may be newer than the rows, and the next look would compare with it).
        let since = stored_token(store).await?;
        if since.as_deref() != to {
            match self.touched_between(workspace, to, since.as_deref()) {
                Some((_, false)) => {}
                _ => return Ok(None),
            }
        }
        // A segment's hidden traits are no column the index reads (saved segments are their stored
        // members, a preview's event conditions read the summaries): they may change under it. The
        // consent policy decides every row's reachable channels, as it does the engine's.
        let columns = |c: &Catalog| {
            c.folded()
                .iter()
                .filter(|(name, _)| !cdp_domain::segments::is_segment_trait(name))
                .map(|(name, t)| (name.clone(), t.clone()))
                .collect::<Vec<_>>()
        };
        let same_columns = columns(&catalog) == columns(&slot.catalog)
            && catalog.tags.keys().eq(slot.catalog.tags.keys())
            && catalog.consent == slot.catalog.consent;
        Ok(same_columns.then_some((profiles, Some(catalog))))
    }
}

/// Reads the named profiles again: those live replace their rows, the others leave the index.
async fn read_again(
    store: &Store,
    workspace: &str,
    slot: &mut Slot,
    profiles: &[String],
    now: DateTime<Utc>,
) -> Result<(), ProjectionError> {
    if profiles.is_empty() {
        return Ok(());
    }
    let rows = load::named(store, workspace, &slot.catalog, profiles, now).await?;
    let Some(index) = slot.index.as_mut() else {
        return Ok(());
    };
    let live: BTreeSet<String> = rows.iter().map(|r| r.profile.clone()).collect();
    for p in profiles {
        if !live.contains(p) {
            index.remove(p);
        }
    }
    for row in rows {
        index.upsert(row);
    }
    Ok(())
}
