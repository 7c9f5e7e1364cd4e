//! The switch of a rebuild: the shadow catches up to exactly the held live resolver's position, then
//! its tables replace the live ones (SQLite: rows copied in; PostgreSQL: tables moved into the live
//! schema) and tags and memberships are reconciled, in one transaction.

use cdp_domain::store::sql::{query, verbatim, Exec};

use super::sql::{self, quoted};
use super::*;
use cdp_projections::projection::parts_pattern;
use cdp_projections::refold::finish_switch;

/// The rows on which the rebuilt model and the live one differ: tags the rebuilt one has and the live
/// one has not (or otherwise), tags the live one has and the rebuilt one has not, memberships entered,
/// memberships exited.
type Differences = (
    Vec<WorkspaceTagRow>,
    Vec<WorkspaceTagRow>,
    Vec<(String, String, String)>,
    Vec<(String, String, String)>,
);

/// Reads the [`Differences`] between the schema (or attached database) `live` and `shadow`, in the
/// switch's transaction.
async fn differences(
    mut tx: Exec<'_>,
    live: &str,
    shadow: &str,
) -> Result<Differences, ProjectionError> {
    let rebuilt = query(sql::tags_not_in(shadow, live))
        .fetch_all(tx.reborrow())
        .await?;
    let stale = query(sql::tags_not_in(live, shadow))
        .fetch_all(tx.reborrow())
        .await?;
    let entered = query(sql::memberships_not_in(shadow, live))
        .fetch_all(tx.reborrow())
        .await?;
    let exited = query(sql::memberships_not_in(live, shadow))
        .fetch_all(tx)
        .await?;
    Ok((rebuilt, stale, entered, exited))
}

/// Applies the shadow's events up to exactly `through`, slice after slice (the live resolver is held
/// meanwhile).
async fn finish_through(
    shadow: &Store,
    parts: &[IdentityResolver],
    through: Position,
) -> Result<u64, ProjectionError> {
    let mut applied = 0;
    for part in parts {
        loop {
            let step = run_once_through(shadow, part, REBUILD_BATCH, through).await?;
            applied += step.applied as u64;
            if step.applied == 0 {
                part.flush(shadow).await?;
                break;
            }
        }
    }
    let at = checkpoint(shadow, IdentityResolver::NAME).await?;
    if at != through && through != Position::START {
        return Err(ProjectionError::Corrupt(format!(
            "the rebuild stopped at {}:{} short of the live resolver's {}:{}",
            at.tx, at.seq, through.tx, through.seq
        )));
    }
    Ok(applied)
}

pub(super) async fn switch_sqlite(
    live: &SqliteStore,
    shadow: &Shadow,
    parts: &[IdentityResolver],
) -> Result<(Position, u64, u64), ProjectionError> {
    let path = shadow_path(live).await?;
    let mut conn = live.write_pool().acquire().await?;
    query(sql::SQLITE_ATTACH_SHADOW)
        .bind(path.to_string_lossy().into_owned())
        .execute(&mut *conn)
        .await?;
    let outcome = switch_attached(&mut conn, shadow, parts).await;
    if query(sql::SQLITE_DETACH_SHADOW)
        .execute(&mut *conn)
        .await
        .is_err()
    {
        // Never hand the live writer back with the shadow attached.
        conn.close_on_drop();
    }
    outcome
}

async fn switch_attached(
    conn: &mut sqlx::SqliteConnection,
    shadow: &Shadow,
    parts: &[IdentityResolver],
) -> Result<(Position, u64, u64), ProjectionError> {
    // A deferred transaction whose first write takes the live database's write lock only: the shadow
    // (attached here too) stays free for the shadow resolver's last batches.
    let mut tx = conn.begin().await?;
    query(sql::SQLITE_TOUCH_LIVE_CHECKPOINT)
        .bind(parts_pattern())
        .execute(&mut tx)
        .await?;
    // In parts, the lowest: every part's model is at or past it (see `finish_switch`).
    let at: Option<(i64, i64)> = query(sql::SQLITE_LIVE_CHECKPOINT)
        .bind(parts_pattern())
        .fetch_optional(&mut tx)
        .await?;
    let through = at.map_or(Position::START, |(tx, seq)| Position { tx, seq });
    let applied = finish_through(&shadow.store, parts, through).await?;
    // Only now does this transaction read the shadow: its first read of the attached shadow fixes the
    // snapshot every later read here sees (WAL), so a read before `finish_through` would switch in
    // tables without the shadow's last batches under a checkpoint that claims them.
    let erased: i64 = query(sql::SQLITE_ERASED_MEANWHILE).scalar(&mut tx).await?;
    if erased > 0 {
        return Err(erased_meanwhile());
    }
    // What this transaction will copy must be the shadow at exactly the live position.
    let seen: Option<i64> = query(sql::SQLITE_ATTACHED_SHADOW_CHECKPOINT)
        .bind(parts_pattern())
        .scalar_optional(&mut tx)
        .await?;
    if seen.unwrap_or(0) != through.seq {
        return Err(ProjectionError::Corrupt(format!(
            "the switch sees the shadow at {} instead of the live resolver's {}",
            seen.unwrap_or(0),
            through.seq
        )));
    }
    let changes = reconcile(
        differences((&mut tx).into(), "main", "shadow").await?,
        parts[0].now(),
    )?;
    let mut rows = 0;
    for t in replaced_tables() {
        // The append-only triggers (identity_events) would refuse the replacement: set aside and
        // restored in the same transaction.
        let triggers: Vec<(String, String)> = query(sql::SQLITE_TRIGGERS_OF)
            .bind(t)
            .fetch_all(&mut tx)
            .await?;
        for (name, _) in &triggers {
            query(sql::sqlite_drop_trigger(name))
                .execute(&mut tx)
                .await?;
        }
        query(sql::sqlite_delete_live(t)).execute(&mut tx).await?;
        rows += query(sql::sqlite_copy_from_shadow(t))
            .execute(&mut tx)
            .await?;
        for (_, create) in &triggers {
            verbatim(create.as_str()).execute(&mut tx).await?;
        }
    }
    finish_switch(ModelTx::from(tx), parts[0].version(), &changes, through).await?;
    Ok((through, rows, applied))
}

pub(super) async fn switch_postgres(
    live: &PostgresStore,
    shadow: &Shadow,
    parts: &[IdentityResolver],
) -> Result<(Position, u64, u64), ProjectionError> {
    let live_schema = quoted(
        &shadow
            .postgres
            .as_ref()
            .expect("a PostgreSQL shadow holds its lock session")
            .1,
    );
    let mut tx = live.pool().begin().await?;
    verbatim(sql::postgres_ensure_live_checkpoint(&live_schema))
        .bind(parts_pattern())
        .execute(&mut tx)
        .await?;
    // Held to the commit: the live resolver (each part) waits for its row before each batch. In
    // parts, the lowest: every part's model is at or past it (see `finish_switch`).
    let at: Vec<(i64, i64)> = verbatim(sql::postgres_lock_live_checkpoint(&live_schema))
        .bind(parts_pattern())
        .fetch_all(&mut tx)
        .await?;
    let through = at
        .into_iter()
        .map(|(tx, seq)| Position { tx, seq })
        .min()
        .unwrap_or(Position::START);
    let erased: i64 = verbatim(sql::postgres_erased_meanwhile(&live_schema))
        .scalar(&mut tx)
        .await?;
    if erased > 0 {
        return Err(erased_meanwhile());
    }
    let applied = finish_through(&shadow.store, parts, through).await?;
    let changes = reconcile(
        differences((&mut tx).into(), &live_schema, SHADOW_SCHEMA).await?,
        parts[0].now(),
    )?;
    let mut rows = 0;
    for t in replaced_tables() {
        rows += move_into(&mut tx, &live_schema, t).await?;
    }
    finish_switch(ModelTx::from(tx), parts[0].version(), &changes, through).await?;
    Ok((through, rows, applied))
}

/// Replaces the live schema's table `t` with the shadow's, in the switch's transaction: the shadow's
/// table (its rows and indexes, built while the live one served) moves into the live schema — no row
/// is copied —, takes over the sequences the live one owned (the shadow's columns draw from them
/// already: `LIKE … INCLUDING ALL` copies the defaults) and gets its triggers. Returns its rows.
async fn move_into(
    tx: &mut sqlx::Transaction<'_, sqlx::Postgres>,
    live_schema: &str,
    t: &str,
) -> Result<u64, ProjectionError> {
    let table = format!("{live_schema}.{t}");
    let live_table = format!("{live_schema}.{}", quoted(t));
    let triggers: Vec<String> = verbatim(sql::POSTGRES_TRIGGERS_OF)
        .bind(live_table.as_str())
        .scalars(&mut *tx)
        .await?;
    let owned: Vec<(String, String)> = verbatim(sql::POSTGRES_OWNED_SEQUENCES)
        .bind(live_table.as_str())
        .fetch_all(&mut *tx)
        .await?;
    for (sequence, _) in &owned {
        verbatim(sql::postgres_disown_sequence(sequence))
            .execute(&mut *tx)
            .await?;
    }
    verbatim(sql::postgres_drop_table(&table))
        .execute(&mut *tx)
        .await?;
    verbatim(sql::postgres_move_into_live(t, live_schema))
        .execute(&mut *tx)
        .await?;
    for (sequence, column) in &owned {
        verbatim(sql::postgres_own_sequence(sequence, &table, column))
            .execute(&mut *tx)
            .await?;
    }
    for trigger in &triggers {
        verbatim(trigger.as_str()).execute(&mut *tx).await?;
    }
    let rows: i64 = verbatim(sql::postgres_count_rows(&table))
        .scalar(&mut *tx)
        .await?;
    Ok(rows as u64)
}

/// A `profile_tags` row with its workspace.
type WorkspaceTagRow = (
    String,
    String,
    String,
    String,
    Option<String>,
    bool,
    i64,
    Option<String>,
);

/// The tags and memberships on which the rebuilt model (`shadow`) and the live one differ, as the
/// changes that take the live one to the rebuilt one (see [`RECONCILED_TABLES`]).
fn reconcile(
    (rebuilt, stale, entered, exited): Differences,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<StageWrites, ProjectionError> {
    let decode = |rows: Vec<WorkspaceTagRow>| {
        rows.into_iter()
            .map(
                |(w, p, tag, value, detail, manual, changed_at, caused_by)| {
                    let (p, t) = tag_of((p, tag, value, detail, manual, changed_at, caused_by))?;
                    Ok(((w, p, t.tag.clone()), t))
                },
            )
            .collect::<Result<std::collections::BTreeMap<_, _>, ProjectionError>>()
    };
    let (rebuilt, mut stale) = (decode(rebuilt)?, decode(stale)?);
    let mut out = StageWrites::default();
    for ((w, p, tag), new) in rebuilt {
        let old = stale.remove(&(w.clone(), p.clone(), tag));
        tag_change(
            &mut out,
            (&w, &p),
            old.as_ref(),
            Some(new),
            REBUILD_CAUSE,
            at,
        );
    }
    for ((w, p, _), old) in stale {
        tag_change(&mut out, (&w, &p), Some(&old), None, REBUILD_CAUSE, at);
    }
    for (rows, entering) in [(entered, true), (exited, false)] {
        for (w, segment, p) in rows {
            let key = (w, ProfileId::parse(&p).map_err(ProjectionError::corrupt)?);
            membership_change(&mut out, &key, &segment, entering, REBUILD_CAUSE, at);
        }
    }
    Ok(out)
}
