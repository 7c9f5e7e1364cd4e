//! The resolver's own rows in its transaction: a batch's identity decisions (`identity_events`, in
//! order: one multi-row insert per 500 on SQLite, one statement over arrays on PostgreSQL), and how a
//! group of batches keeps only the last row of each key that holds a last value.

use cdp_domain::fastmap::FastSet;
use cdp_domain::identity::{IdentityEvent, ProfileId};
use sqlx::QueryBuilder;

use super::RecordedDecision;
use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};

/// Decisions a multi-row insert holds on SQLite.
const ROWS_PER_STATEMENT: usize = 500;

/// Appends a batch's decisions to `identity_events`, in their order.
pub(super) async fn write_decisions(
    tx: &mut ModelTx<'_>,
    decisions: &[RecordedDecision],
) -> Result<(), ProjectionError> {
    let mut bodies = Vec::with_capacity(decisions.len());
    for d in decisions {
        bodies.push(serde_json::to_string(&d.event).map_err(ProjectionError::corrupt)?);
    }
    let rows: Vec<(&RecordedDecision, &String)> = decisions.iter().zip(&bodies).collect();
    match tx {
        ModelTx(Tx::Sqlite(tx)) => {
            for chunk in rows.chunks(ROWS_PER_STATEMENT) {
                let mut q: QueryBuilder<sqlx::Sqlite> = QueryBuilder::new(
                    "INSERT INTO identity_events (workspace, log_seq, caused_by, kind, profile, \
                     other, id_type, value, recorded_at, body) ",
                );
                q.push_values(chunk, |mut row, (d, body)| {
                    let (kind, profile, other, id_type, value) = columns(&d.event);
                    row.push_bind(&d.workspace)
                        .push_bind(d.log_seq)
                        .push_bind(d.event.caused_by())
                        .push_bind(kind)
                        .push_bind(profile)
                        .push_bind(other)
                        .push_bind(id_type)
                        .push_bind(value)
                        .push_bind(d.recorded_at_ms)
                        .push_bind(*body);
                });
                q.build().execute(&mut **tx).await?;
            }
        }
        ModelTx(Tx::Postgres(tx)) if !rows.is_empty() => {
            // One statement over arrays; the decisions keep their order (their `seq`).
            let n = rows.len();
            let mut cols: [Vec<Option<&str>>; 7] = Default::default();
            let (mut seqs, mut at) = (Vec::with_capacity(n), Vec::with_capacity(n));
            for (d, _) in &rows {
                let (kind, profile, other, id_type, value) = columns(&d.event);
                let row = [
                    Some(d.workspace.as_str()),
                    Some(d.event.caused_by()),
                    Some(kind),
                    profile,
                    other,
                    id_type,
                    value,
                ];
                for (col, v) in cols.iter_mut().zip(row) {
                    col.push(v);
                }
                seqs.push(d.log_seq);
                at.push(d.recorded_at_ms);
            }
            let bodies: Vec<&str> = rows.iter().map(|(_, b)| b.as_str()).collect();
            let [ws, caused_by, kinds, profiles, others, id_types, values] = cols;
            sqlx::query(
                "INSERT INTO identity_events (workspace, log_seq, caused_by, kind, profile, other, \
                 id_type, value, recorded_at, body) \
                 SELECT w, s, c, k, p, o, t, v, r, b FROM UNNEST($1::text[], $2::bigint[], \
                 $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], \
                 $9::bigint[], $10::text[]) WITH ORDINALITY AS d(w, s, c, k, p, o, t, v, r, b, n) \
                 ORDER BY n",
            )
            .bind(&ws)
            .bind(&seqs)
            .bind(&caused_by)
            .bind(&kinds)
            .bind(&profiles)
            .bind(&others)
            .bind(&id_types)
            .bind(&values)
            .bind(&at)
            .bind(&bodies)
            .execute(&mut **tx)
            .await?;
        }
        ModelTx(Tx::Postgres(_)) => {}
    }
    Ok(())
}

fn columns(
    event: &IdentityEvent,
) -> (
    &'static str,
    Option<&str>,
    Option<&str>,
    Option<&str>,
    Option<&str>,
) {
    match event {
        IdentityEvent::ProfileCreated { profile, .. } => {
            ("profile_created", Some(profile.as_str()), None, None, None)
        }
        IdentityEvent::IdentifierLinked {
            profile,
            id_type,
            value,
            ..
        } => (
            "identifier_linked",
            Some(profile.as_str()),
            None,
            Some(id_type),
            Some(value),
        ),
        IdentityEvent::ProfilesMerged {
            survivor, absorbed, ..
        } => (
            "profiles_merged",
            Some(survivor.as_str()),
            Some(absorbed.as_str()),
            None,
            None,
        ),
        IdentityEvent::MergeRejected { profiles, .. } => (
            "merge_rejected",
            profiles.first().map(ProfileId::as_str),
            profiles.get(1).map(ProfileId::as_str),
            None,
            None,
        ),
        IdentityEvent::LinkRejected {
            profile,
            id_type,
            value,
            ..
        } => (
            "link_rejected",
            Some(profile.as_str()),
            None,
            Some(id_type),
            Some(value),
        ),
        IdentityEvent::ProfileSplit { from, into, .. } => (
            "profile_split",
            Some(from.as_str()),
            Some(into.as_str()),
            None,
            None,
        ),
        IdentityEvent::ProfileErased { profile, .. } => {
            ("profile_erased", Some(profile.as_str()), None, None, None)
        }
        IdentityEvent::CommandRejected { .. } => ("command_rejected", None, None, None, None),
    }
}

/// Drops from `rows` (a batch's, met from the last batch of a group back) those whose key a later batch
/// writes (`later`), then adds this batch's keys to `later`. Within a batch the last row of a key wins
/// when written, so a batch keeps all of its own.
pub(super) fn keep_last<T, K: Eq + std::hash::Hash>(
    rows: &mut Vec<T>,
    later: &mut FastSet<K>,
    key: impl Fn(&T) -> K,
) {
    if !later.is_empty() {
        rows.retain(|row| !later.contains(&key(row)));
    }
    later.extend(rows.iter().map(key));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_group_keeps_the_last_batch_s_row_of_each_key() {
        let mut later = FastSet::default();
        let mut newest = vec![("a", 3), ("b", 3)];
        let mut oldest = vec![("a", 1), ("c", 1), ("a", 2)];
        keep_last(&mut newest, &mut later, |r| r.0);
        keep_last(&mut oldest, &mut later, |r| r.0);
        assert_eq!(newest, vec![("a", 3), ("b", 3)]);
        assert_eq!(oldest, vec![("c", 1)]);
    }
}
