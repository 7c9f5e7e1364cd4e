//! The profile model as a batch changes it, in memory until written: the documents, where each event
//! and identifier belongs, the merges — and the fold of a run of customer events in parts over the
//! cores (`super::partition` keeps the steps touching the same profile or identifier in one part).

use std::collections::HashMap;
use std::ops::Range;

use cdp_domain::catalog::Catalog;
use cdp_domain::fastmap::{map_with_capacity, FastMap, FastSet};
use cdp_domain::identity::{identifiers_of, Identifier, IdentityEvent, IdentityRules, ProfileId};
use cdp_domain::json::Json;
use cdp_domain::message::MessageKind;
use cdp_domain::profile::{
    channel_of, split_docs, EventSummary, FoldRules, OwnedEvent, ProfileDoc,
};
use cdp_domain::store::Store;

use super::partition::{partition, Plan};
use super::step::Step;
use crate::profiles::{self, ModelWrites, ProfileKey, Reassign};
use crate::runner::ProjectionError;

/// What folding a batch records besides the model, each with the step it came from: the profiles to
/// evaluate (with the message that caused it), the merges and the track events.
#[derive(Default)]
pub(super) struct Folded {
    /// With the step of the message that caused it (the batch's last for the profile); its message
    /// id is copied once per profile, when the batch is done folding.
    pub(super) touched: FastMap<ProfileKey, usize>,
    /// `(step, workspace, absorbed, survivor)`.
    pub(super) merged: Vec<(usize, String, ProfileId, ProfileId)>,
    pub(super) subscribed: Vec<(usize, ProfileId)>,
}

impl Folded {
    /// What decision `d` of step `i` makes the batch evaluate.
    pub(super) fn record(&mut self, i: usize, ws: &str, d: &IdentityEvent) {
        match d {
            IdentityEvent::ProfilesMerged {
                survivor, absorbed, ..
            } => {
                self.merged
                    .push((i, ws.to_owned(), absorbed.clone(), survivor.clone()));
                self.touched.insert((ws.to_owned(), survivor.clone()), i);
            }
            IdentityEvent::ProfileSplit { from, into, .. } => {
                for p in [from, into] {
                    self.touched.insert((ws.to_owned(), p.clone()), i);
                }
            }
            _ => {}
        }
    }

    /// Takes in what another part of the batch recorded (of other profiles).
    fn absorb(&mut self, part: Folded) {
        self.touched.extend(part.touched);
        self.merged.extend(part.merged);
        self.subscribed.extend(part.subscribed);
    }
}

/// The rules and the catalogs in force, by workspace, at a step of the batch.
pub(super) type InForce<'r> = (
    &'r HashMap<String, IdentityRules>,
    &'r HashMap<String, Catalog>,
);

/// Folds the customer steps `run`: in parts on threads of their own when there are enough of them
/// (each part's profiles apart from the others'), else in turn; the same model either way.
pub(super) fn fold_run<'a>(
    model: &mut Model<'a>,
    steps: &[Step<'_>],
    run: Range<usize>,
    parts: usize,
    (rules, catalogs): InForce<'_>,
    folded: &mut Folded,
) {
    let Some(plan) = partition(steps, run.clone(), parts) else {
        for i in run {
            model.fold_customer(i, &steps[i], rules, catalogs, folded);
        }
        return;
    };
    let threads = run.len() >= crate::parallel::MIN_PARALLEL;
    let models: Vec<Model<'a>> = (0..plan.parts.len())
        .map(|part| model.take_part(&plan, part, run.len() / plan.parts.len()))
        .collect();
    let work: Vec<(Model<'a>, &Vec<usize>)> = models.into_iter().zip(&plan.parts).collect();
    let done = crate::parallel::each(work, threads, |(mut part, indexes)| {
        let mut out = Folded::default();
        for &i in indexes {
            part.fold_customer(i, &steps[i], rules, catalogs, &mut out);
        }
        (part, out)
    });
    for (part, out) in done {
        model.absorb(part);
        folded.absorb(out);
    }
}

/// The documents as a batch leaves them, by profile.
pub(super) type HeldDocs = FastMap<ProfileKey, ProfileDoc>;

/// The profile model as the batch changes it, in memory until written.
pub(super) struct Model<'a> {
    pub(super) store: &'a Store,
    pub(super) docs: FastMap<ProfileKey, ProfileDoc>,
    pub(super) gone: FastSet<ProfileKey>,
    /// Where each event the batch touched belongs now.
    pub(super) owners: FastMap<i64, (String, ProfileId)>,
    /// The summary of each customer event of the batch (the 360 view's recent events).
    pub(super) summaries: FastMap<i64, EventSummary>,
    /// The events of `owners` by owner, and the identifiers of `holders` by holder (an entry may be
    /// stale: checked against `owners` / `holders` when used), so a merge moves what it must without a
    /// scan of the batch.
    pub(super) owned_by: FastMap<ProfileKey, Vec<i64>>,
    pub(super) held_by: FastMap<ProfileKey, Vec<Identifier>>,
    /// Who holds each identifier the batch touched.
    pub(super) holders: FastMap<(String, Identifier), ProfileId>,
    /// Profiles merged away in this batch, to the profile that absorbed them.
    pub(super) merged_in_batch: FastMap<ProfileKey, ProfileId>,
    /// With the step of the merge, so that parts folded apart are put back in log order.
    pub(super) reassigns: Vec<(usize, Reassign)>,
    /// The step of each customer event of the batch, by its sequence number.
    pub(super) in_batch: FastMap<i64, usize>,
}

impl<'a> Model<'a> {
    /// An empty model for about `events` events.
    pub(super) fn new(store: &'a Store, events: usize) -> Model<'a> {
        Model {
            store,
            docs: FastMap::default(),
            gone: FastSet::default(),
            owners: map_with_capacity(events),
            summaries: map_with_capacity(events),
            owned_by: map_with_capacity(events),
            held_by: FastMap::default(),
            holders: FastMap::default(),
            merged_in_batch: FastMap::default(),
            reassigns: Vec::new(),
            in_batch: map_with_capacity(events),
        }
    }

    /// What part `part` of `plan` folds: the documents of its profiles, and what the batch so far
    /// says they own and hold (a merge moves it).
    fn take_part(&mut self, plan: &Plan, part: usize, events: usize) -> Model<'a> {
        let mine = |key: &ProfileKey| plan.part_of(key) == Some(part);
        let mut m = Model::new(self.store, events);
        m.docs.extend(self.docs.extract_if(|k, _| mine(k)));
        m.owned_by.extend(self.owned_by.extract_if(|k, _| mine(k)));
        m.held_by.extend(self.held_by.extract_if(|k, _| mine(k)));
        for ((ws, profile), seqs) in &m.owned_by {
            for seq in seqs {
                if self
                    .owners
                    .get(seq)
                    .is_some_and(|o| o.0 == *ws && o.1 == *profile)
                {
                    if let Some(owner) = self.owners.remove(seq) {
                        m.owners.insert(*seq, owner);
                    }
                }
            }
        }
        for ((ws, profile), ids) in &m.held_by {
            for id in ids {
                let key = (ws.clone(), id.clone());
                if self.holders.get(&key) == Some(profile) {
                    self.holders.remove(&key);
                    m.holders.insert(key, profile.clone());
                }
            }
        }
        m
    }

    /// Takes in a part folded apart (other profiles, other events, other identifiers).
    fn absorb(&mut self, part: Model<'_>) {
        self.docs.extend(part.docs);
        self.gone.extend(part.gone);
        self.owners.extend(part.owners);
        self.summaries.extend(part.summaries);
        self.owned_by.extend(part.owned_by);
        self.held_by.extend(part.held_by);
        self.holders.extend(part.holders);
        self.merged_in_batch.extend(part.merged_in_batch);
        self.reassigns.extend(part.reassigns);
        self.in_batch.extend(part.in_batch);
    }

    /// Folds customer step `i`: its decisions, then its event into its profile.
    fn fold_customer(
        &mut self,
        i: usize,
        step: &Step<'_>,
        rules: &HashMap<String, IdentityRules>,
        catalogs: &HashMap<String, Catalog>,
        out: &mut Folded,
    ) {
        let e = &step.event.event;
        for d in &step.decisions {
            self.apply_decision(i, &e.workspace, d, rules, catalogs);
            out.record(i, &e.workspace, d);
        }
        self.fold_event(i, step, rules, catalogs, out);
    }

    /// Folds the event of step `i` into the profile it was decided for (nothing for a command).
    pub(super) fn fold_event(
        &mut self,
        i: usize,
        step: &Step<'_>,
        rules: &HashMap<String, IdentityRules>,
        catalogs: &HashMap<String, Catalog>,
        out: &mut Folded,
    ) {
        let (Some(target), Some(payload)) = (&step.target, &step.payload) else {
            return;
        };
        let e = &step.event.event;
        let seq = step.event.position.seq;
        let fold = FoldRules {
            source_priority: &rules[&e.workspace].source_priority,
            traits: catalogs[&e.workspace].folded(),
        };
        let channel = channel_of(payload);
        self.docs
            .entry((e.workspace.clone(), target.clone()))
            .or_default()
            .apply_in_channel(e, payload, &step.carried, fold, &channel);
        self.set_owner(seq, &e.workspace, target);
        self.summaries
            .insert(seq, EventSummary::in_channel(e, payload, channel));
        self.in_batch.insert(seq, i);
        out.touched.insert((e.workspace.clone(), target.clone()), i);
        if e.kind == MessageKind::Track {
            out.subscribed.push((i, target.clone()));
        }
    }

    /// Event `seq` belongs to `profile` now.
    fn set_owner(&mut self, seq: i64, ws: &str, profile: &ProfileId) {
        self.owners.insert(seq, (ws.to_owned(), profile.clone()));
        self.owned_by
            .entry((ws.to_owned(), profile.clone()))
            .or_default()
            .push(seq);
    }

    /// `profile` holds identifier `id` now.
    fn set_holder(&mut self, ws: &str, id: Identifier, profile: &ProfileId) {
        self.held_by
            .entry((ws.to_owned(), profile.clone()))
            .or_default()
            .push(id.clone());
        self.holders.insert((ws.to_owned(), id), profile.clone());
    }

    /// Applies decision `decision` of step `i` to the model; a split is [`Model::split`]'s.
    pub(super) fn apply_decision(
        &mut self,
        i: usize,
        ws: &str,
        decision: &IdentityEvent,
        rules: &HashMap<String, IdentityRules>,
        catalogs: &HashMap<String, Catalog>,
    ) {
        match decision {
            IdentityEvent::ProfileCreated { profile, .. } => {
                self.docs
                    .entry((ws.to_owned(), profile.clone()))
                    .or_default();
            }
            IdentityEvent::IdentifierLinked {
                profile,
                id_type,
                value,
                ..
            } => {
                let id = Identifier::new(id_type, value);
                let doc = self
                    .docs
                    .entry((ws.to_owned(), profile.clone()))
                    .or_default();
                if !doc.linked.contains(&id) {
                    doc.linked.push(id.clone());
                }
                self.set_holder(ws, id, profile);
            }
            IdentityEvent::ProfilesMerged {
                survivor, absorbed, ..
            } => {
                let gone = (ws.to_owned(), absorbed.clone());
                let absorbed_doc = self.docs.remove(&gone).unwrap_or_default();
                let fold = FoldRules {
                    source_priority: &rules[ws].source_priority,
                    traits: catalogs[ws].folded(),
                };
                self.docs
                    .entry((ws.to_owned(), survivor.clone()))
                    .or_default()
                    .absorb(absorbed_doc, fold);
                // Through the reverse indexes: what the absorbed profile owns and holds in the batch.
                let absorbed_key = (ws.to_owned(), absorbed.clone());
                for seq in self.owned_by.remove(&absorbed_key).unwrap_or_default() {
                    if self.owners.get(&seq).is_some_and(|o| o.1 == *absorbed) {
                        self.set_owner(seq, ws, survivor);
                    }
                }
                for id in self.held_by.remove(&absorbed_key).unwrap_or_default() {
                    let key = (ws.to_owned(), id);
                    if self.holders.get(&key) == Some(absorbed) {
                        self.set_holder(ws, key.1, survivor);
                    }
                }
                self.reassigns.push((
                    i,
                    Reassign {
                        workspace: ws.to_owned(),
                        from: absorbed.clone(),
                        to: survivor.clone(),
                    },
                ));
                self.merged_in_batch.insert(gone.clone(), survivor.clone());
                self.gone.insert(gone);
            }
            IdentityEvent::ProfileSplit { .. }
            | IdentityEvent::MergeRejected { .. }
            | IdentityEvent::LinkRejected { .. }
            | IdentityEvent::ProfileErased { .. }
            | IdentityEvent::CommandRejected { .. } => {}
        }
    }

    /// Re-folds both sides of a split from the events that belong to `from` at this point of the batch.
    pub(super) async fn split(
        &mut self,
        ws: &str,
        from: &ProfileId,
        into: &ProfileId,
        moved: &[Identifier],
        steps: &[Step<'_>],
        (rules, catalogs): InForce<'_>,
    ) -> Result<(), ProjectionError> {
        // In the database, `from`'s events may still belong to profiles it absorbed in this batch.
        let mut stored_owners = vec![from.clone()];
        for (absorbed_key, _) in self.merged_in_batch.iter() {
            if absorbed_key.0 == ws && self.resolve_in_batch(ws, &absorbed_key.1) == *from {
                stored_owners.push(absorbed_key.1.clone());
            }
        }
        for seq in profiles::events_of(self.store, ws, &stored_owners).await? {
            if !self.owners.contains_key(&seq) {
                self.set_owner(seq, ws, from);
            }
        }
        let mut members: Vec<i64> = self
            .owners
            .iter()
            .filter(|(_, (w, p))| w == ws && p == from)
            .map(|(seq, _)| *seq)
            .collect();
        members.sort_unstable();

        let earlier: Vec<i64> = members
            .iter()
            .copied()
            .filter(|s| !self.in_batch.contains_key(s))
            .collect();
        let rules = &rules[ws];
        let store = self.store;
        let mut fetched = store.events_by_seq(&earlier).await?;
        fetched.retain(|stored| !cdp_domain::shred::is_erased(&stored.event));
        let parsed = fetched
            .iter()
            .map(|stored| {
                let payload =
                    Json::parse(&stored.event.payload).map_err(ProjectionError::corrupt)?;
                let carried = identifiers_of(
                    &payload,
                    stored.event.user_id.as_deref(),
                    stored.event.anonymous_id.as_deref(),
                    rules,
                );
                Ok((payload, carried))
            })
            .collect::<Result<Vec<_>, ProjectionError>>()?;
        let mut owned: Vec<(i64, OwnedEvent<'_, Json<'_>>)> = fetched
            .iter()
            .zip(&parsed)
            .map(|(stored, (payload, carried))| {
                (
                    stored.position.seq,
                    OwnedEvent {
                        event: &stored.event,
                        payload,
                        carried,
                    },
                )
            })
            .collect();
        for seq in &members {
            if let Some(step) = self.in_batch.get(seq).map(|i| &steps[*i]) {
                if let Some(payload) = &step.payload {
                    owned.push((
                        *seq,
                        OwnedEvent {
                            event: &step.event.event,
                            payload,
                            carried: &step.carried,
                        },
                    ));
                }
            }
        }
        let from_key = (ws.to_owned(), from.clone());
        let linked = self
            .docs
            .get(&from_key)
            .map(|d| d.linked.clone())
            .unwrap_or_default();
        let events: Vec<OwnedEvent<'_, Json<'_>>> = owned.iter().map(|(_, e)| e.clone()).collect();
        let fold = FoldRules {
            source_priority: &rules.source_priority,
            traits: catalogs[ws].folded(),
        };
        let (stays, leaves, went) = split_docs(&linked, moved, &events, rules, fold);
        let moved_seqs: Vec<i64> = owned
            .iter()
            .zip(went)
            .filter(|(_, went)| *went)
            .map(|((seq, _), _)| *seq)
            .collect();
        drop(events);
        drop(owned);
        for seq in moved_seqs {
            self.set_owner(seq, ws, into);
        }
        for id in moved {
            self.set_holder(ws, id.clone(), into);
        }
        self.docs.insert(from_key, stays);
        self.docs.insert((ws.to_owned(), into.clone()), leaves);
        Ok(())
    }

    pub(super) fn resolve_in_batch(&self, ws: &str, profile: &ProfileId) -> ProfileId {
        let mut current = profile.clone();
        for _ in 0..=self.merged_in_batch.len() {
            match self.merged_in_batch.get(&(ws.to_owned(), current.clone())) {
                Some(next) => current = next.clone(),
                None => break,
            }
        }
        current
    }

    /// The rows to write, the states to keep in memory (every document's, encoded once) and the
    /// documents themselves. A document whose state is what was read (`as_read`) is not written again.
    pub(super) fn into_writes(
        self,
        as_read: &FastMap<ProfileKey, Vec<u8>>,
        parts: usize,
    ) -> (ModelWrites, Vec<(ProfileKey, Vec<u8>)>, HeldDocs) {
        let held: Vec<(&ProfileKey, &ProfileDoc)> = self.docs.iter().collect();
        let states: Vec<(ProfileKey, Vec<u8>)> =
            crate::parallel::map(&held, parts, |(key, doc)| ((*key).clone(), doc.to_state()));
        drop(held);
        let (mut writes, docs) = self.into_rows();
        let mut changed: Vec<(ProfileKey, Vec<u8>)> = states
            .iter()
            .filter(|(key, state)| as_read.get(key) != Some(state))
            .cloned()
            .collect();
        changed.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        writes.docs = changed;
        (writes, states, docs)
    }

    /// The rows to write but the documents' states, and the documents as the batch leaves them.
    pub(super) fn into_rows(self) -> (ModelWrites, FastMap<ProfileKey, ProfileDoc>) {
        let mut gone: Vec<ProfileKey> = self
            .gone
            .into_iter()
            .filter(|k| !self.docs.contains_key(k))
            .collect();
        // Sorted before the summaries join them (moving the short rows, not the long), and unstably:
        // every key is unique (a map's or a set's).
        let mut summaries = self.summaries;
        let mut owners: Vec<(i64, (String, ProfileId))> = self.owners.into_iter().collect();
        owners.sort_unstable_by_key(|o| o.0);
        let owners: Vec<crate::profiles::OwnerRow> = owners
            .into_iter()
            .map(|(seq, (w, p))| (seq, w, p, summaries.remove(&seq)))
            .collect();
        let mut holders: Vec<(String, Identifier, ProfileId)> = self
            .holders
            .into_iter()
            .map(|((w, id), p)| (w, id, p))
            .collect();
        holders.sort_unstable();
        gone.sort_unstable();
        let mut reassigns = self.reassigns;
        reassigns.sort_by_key(|r| r.0);
        let writes = ModelWrites {
            reassigns: reassigns.into_iter().map(|r| r.1).collect(),
            owners,
            holders,
            docs: Vec::new(),
            gone,
        };
        (writes, self.docs)
    }
}
