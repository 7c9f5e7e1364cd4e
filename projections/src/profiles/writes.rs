//! The resolver's writes of the profile read model, in its transaction: the merges of a batch applied
//! as moves to the end of their chains (`event_profiles`, `identifier_owners`, `profile_aliases`), the
//! profiles merged away deleted, then where the batch's events belong, who holds its identifiers and the
//! states it changed — one statement per table over arrays on PostgreSQL (`postgres`), multi-row inserts
//! on SQLite (`sqlite`).

use std::collections::HashMap;

use cdp_domain::identity::ProfileId;

use super::{ModelWrites, Reassign};
use crate::model_tx::Tx;
use crate::runner::{ModelTx, ProjectionError};

mod postgres;
mod sqlite;

/// A merged-away profile's rows moved to its survivor: `(workspace, from, survivor)`.
type Move<'w> = (&'w str, &'w ProfileId, &'w ProfileId);

/// Where each profile a batch merged away ends up: `(workspace, from, survivor)`, the chains of the
/// batch's merges followed to their end (a→b then b→c gives a→c and b→c), in the order first met.
/// Applying these at once leaves the rows as applying the merges one by one would.
fn final_survivors(reassigns: &[Reassign]) -> Vec<Move<'_>> {
    let mut next: HashMap<(&str, &ProfileId), &ProfileId> = HashMap::new();
    let mut order = Vec::new();
    for r in reassigns {
        if next
            .insert((r.workspace.as_str(), &r.from), &r.to)
            .is_none()
        {
            order.push((r.workspace.as_str(), &r.from));
        }
    }
    order
        .into_iter()
        .map(|(w, from)| {
            let mut to = next[&(w, from)];
            // A merged-away profile never survives a later merge, so chains end; bounded all the same.
            for _ in 0..next.len() {
                match next.get(&(w, to)) {
                    Some(further) => to = further,
                    None => break,
                }
            }
            (w, from, to)
        })
        .collect()
}

/// Writes `writes` inside `tx`: the merges' moves, the profiles merged away, then where the batch's
/// events belong, who holds its identifiers and its states.
#[tracing::instrument(
    name = "profiles.write",
    skip_all,
    fields(docs = writes.docs.len(), owners = writes.owners.len())
)]
pub async fn write(tx: &mut ModelTx<'_>, writes: &ModelWrites) -> Result<(), ProjectionError> {
    let moves = final_survivors(&writes.reassigns);
    match &mut tx.0 {
        Tx::Sqlite(tx) => sqlite::write_model(tx, writes, &moves).await,
        Tx::Postgres(tx) => postgres::write_model(tx, writes, &moves).await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reassign(w: &str, from: &str, to: &str) -> Reassign {
        Reassign {
            workspace: w.to_owned(),
            from: ProfileId::parse(from).unwrap(),
            to: ProfileId::parse(to).unwrap(),
        }
    }

    #[test]
    fn merges_of_a_batch_move_rows_to_the_end_of_their_chain() {
        let merges = [
            reassign("w", "p_a", "p_b"),
            reassign("v", "p_b", "p_x"),
            reassign("w", "p_b", "p_c"),
            reassign("w", "p_d", "p_a"),
        ];
        let moves: Vec<(&str, &str, &str)> = final_survivors(&merges)
            .into_iter()
            .map(|(w, f, t)| (w, f.as_str(), t.as_str()))
            .collect();
        // Chains are followed within a workspace only, whatever order the merges came in.
        assert_eq!(
            moves,
            [
                ("w", "p_a", "p_c"),
                ("v", "p_b", "p_x"),
                ("w", "p_b", "p_c"),
                ("w", "p_d", "p_c")
            ]
        );
    }
}
