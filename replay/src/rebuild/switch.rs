//! The switch of a rebuild: the shadow catches up to exactly the held live resolver's position, then
//! its tables replace the live ones (SQLite: rows copied in; PostgreSQL: tables moved into the live
//! schema) and tags and memberships are reconciled, in one transaction.

use super::*;
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
/// switch's transaction `tx` (a `&mut sqlx::Transaction` of either backend).
macro_rules! fetch_differences {
    ($tx:expr, $live:expr, $shadow:expr) => {{
        let (tx, live, shadow): (_, &str, &str) = ($tx, $live, $shadow);
        let tags_sql = |from: &str, other: &str| {
            format!(
                "SELECT a.workspace, a.profile, a.tag, a.value, a.detail, a.manual, a.changed_at, \
                 a.caused_by FROM {from}.profile_tags a LEFT JOIN {other}.profile_tags b \
                 ON b.workspace = a.workspace AND b.profile = a.profile AND b.tag = a.tag \
                 WHERE b.tag IS NULL OR b.value <> a.value \
                 OR coalesce(b.detail, '') <> coalesce(a.detail, '') OR b.manual <> a.manual"
            )
        };
        let members_sql = |from: &str, other: &str| {
            format!(
                "SELECT a.workspace, a.segment, a.profile FROM {from}.segment_members a \
                 WHERE NOT EXISTS (SELECT 1 FROM {other}.segment_members b WHERE \
                 b.workspace = a.workspace AND b.segment = a.segment AND b.profile = a.profile)"
            )
        };
        let rebuilt: Vec<WorkspaceTagRow> = sqlx::query_as(&tags_sql(shadow, live))
            .fetch_all(&mut **tx)
            .await?;
        let stale: Vec<WorkspaceTagRow> = sqlx::query_as(&tags_sql(live, shadow))
            .fetch_all(&mut **tx)
            .await?;
        let entered: Vec<(String, String, String)> = sqlx::query_as(&members_sql(shadow, live))
            .fetch_all(&mut **tx)
            .await?;
        let exited: Vec<(String, String, String)> = sqlx::query_as(&members_sql(live, shadow))
            .fetch_all(&mut **tx)
            .await?;
        let differences: Differences = (rebuilt, stale, entered, exited);
        differences
    }};
}

/// Applies the shadow's events up to exactly `through` (the live resolver is held meanwhile).
async fn finish_through(
    shadow: &Store,
    resolver: &IdentityResolver,
    through: Position,
) -> Result<u64, ProjectionError> {
    let mut applied = 0;
    loop {
        let step = run_once_through(shadow, resolver, REBUILD_BATCH, through).await?;
        applied += step.applied as u64;
        if step.applied == 0 {
            resolver.flush(shadow).await?;
            let at = checkpoint(shadow, IdentityResolver::NAME).await?;
            if at != through && through != Position::START {
                return Err(ProjectionError::Corrupt(format!(
                    "the rebuild stopped at {}:{} short of the live resolver's {}:{}",
                    at.tx, at.seq, through.tx, through.seq
                )));
            }
            return Ok(applied);
        }
    }
}

pub(super) async fn switch_sqlite(
    live: &SqliteStore,
    shadow: &Shadow,
    resolver: &IdentityResolver,
) -> Result<(Position, u64, u64), ProjectionError> {
    let path = shadow_path(live).await?;
    let mut conn = live.write_pool().acquire().await?;
    sqlx::query("ATTACH DATABASE ? AS shadow")
        .bind(path.to_string_lossy().into_owned())
        .execute(&mut *conn)
        .await?;
    let outcome = switch_attached(&mut conn, shadow, resolver).await;
    if sqlx::query("DETACH DATABASE shadow")
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
    resolver: &IdentityResolver,
) -> Result<(Position, u64, u64), ProjectionError> {
    // A deferred transaction whose first write takes the live database's write lock only: the shadow
    // (attached here too) stays free for the shadow resolver's last batches.
    let mut tx = conn.begin().await?;
    sqlx::query("UPDATE main.projection_checkpoints SET updated_at = updated_at WHERE name = ?")
        .bind(IdentityResolver::NAME)
        .execute(&mut *tx)
        .await?;
    let at: Option<(i64, i64)> =
        sqlx::query_as("SELECT tx, seq FROM main.projection_checkpoints WHERE name = ?")
            .bind(IdentityResolver::NAME)
            .fetch_optional(&mut *tx)
            .await?;
    let through = at.map_or(Position::START, |(tx, seq)| Position { tx, seq });
    let applied = finish_through(&shadow.store, resolver, through).await?;
    // Only now does this transaction read the shadow: its first read of the attached shadow fixes the
    // snapshot every later read here sees (WAL), so a read before `finish_through` would switch in
    // tables without the shadow's last batches under a checkpoint that claims them.
    let erased: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM main.erasures WHERE at >= (SELECT started_at FROM shadow.rebuild_meta)",
    )
    .fetch_one(&mut *tx)
    .await?;
    if erased > 0 {
        return Err(erased_meanwhile());
    }
    // What this transaction will copy must be the shadow at exactly the live position.
    let seen: Option<i64> =
        sqlx::query_scalar("SELECT seq FROM shadow.projection_checkpoints WHERE name = ?")
            .bind(IdentityResolver::NAME)
            .fetch_optional(&mut *tx)
            .await?;
    if seen.unwrap_or(0) != through.seq {
        return Err(ProjectionError::Corrupt(format!(
            "the switch sees the shadow at {} instead of the live resolver's {}",
            seen.unwrap_or(0),
            through.seq
        )));
    }
    let changes = reconcile(
        fetch_differences!(&mut tx, "main", "shadow"),
        resolver.now(),
    )?;
    let mut rows = 0;
    for t in replaced_tables() {
        // The append-only triggers (identity_events) would refuse the replacement: set aside and
        // restored in the same transaction.
        let triggers: Vec<(String, String)> = sqlx::query_as(
            "SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger' AND tbl_name = ?",
        )
        .bind(t)
        .fetch_all(&mut *tx)
        .await?;
        for (name, _) in &triggers {
            sqlx::query(&format!("DROP TRIGGER main.{}", quoted(name)))
                .execute(&mut *tx)
                .await?;
        }
        sqlx::query(&format!("DELETE FROM main.{t}"))
            .execute(&mut *tx)
            .await?;
        rows += sqlx::query(&format!("INSERT INTO main.{t} SELECT * FROM shadow.{t}"))
            .execute(&mut *tx)
            .await?
            .rows_affected();
        for (_, sql) in &triggers {
            sqlx::query(sql).execute(&mut *tx).await?;
        }
    }
    finish_switch(ModelTx::from(tx), resolver.version(), &changes).await?;
    Ok((through, rows, applied))
}

pub(super) async fn switch_postgres(
    live: &PostgresStore,
    shadow: &Shadow,
    resolver: &IdentityResolver,
) -> Result<(Position, u64, u64), ProjectionError> {
    let live_schema = quoted(
        &shadow
            .postgres
            .as_ref()
            .expect("a PostgreSQL shadow holds its lock session")
            .1,
    );
    let mut tx = live.pool().begin().await?;
    sqlx::query(&format!(
        "INSERT INTO {live_schema}.projection_checkpoints (name, tx, seq, updated_at) \
         VALUES ($1, 0, 0, 0) ON CONFLICT (name) DO NOTHING"
    ))
    .bind(IdentityResolver::NAME)
    .execute(&mut *tx)
    .await?;
    // Held to the commit: the live resolver waits for this row before each batch.
    let row = sqlx::query(&format!(
        "SELECT tx, seq FROM {live_schema}.projection_checkpoints WHERE name = $1 FOR UPDATE"
    ))
    .bind(IdentityResolver::NAME)
    .fetch_one(&mut *tx)
    .await?;
    let through = Position {
        tx: row.get(0),
        seq: row.get(1),
    };
    let erased: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM {live_schema}.erasures \
         WHERE at >= (SELECT started_at FROM {SHADOW_SCHEMA}.rebuild_meta)"
    ))
    .fetch_one(&mut *tx)
    .await?;
    if erased > 0 {
        return Err(erased_meanwhile());
    }
    let applied = finish_through(&shadow.store, resolver, through).await?;
    let changes = reconcile(
        fetch_differences!(&mut tx, &live_schema, SHADOW_SCHEMA),
        resolver.now(),
    )?;
    let mut rows = 0;
    for t in replaced_tables() {
        rows += move_into(&mut tx, &live_schema, t).await?;
    }
    finish_switch(ModelTx::from(tx), resolver.version(), &changes).await?;
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
    let triggers: Vec<String> = sqlx::query_scalar(
        "SELECT pg_get_triggerdef(oid) FROM pg_trigger \
         WHERE tgrelid = $1::regclass AND NOT tgisinternal",
    )
    .bind(&live_table)
    .fetch_all(&mut **tx)
    .await?;
    let owned: Vec<(String, String)> = sqlx::query_as(
        "SELECT format('%I.%I', n.nspname, s.relname), format('%I', a.attname) \
         FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
         JOIN pg_namespace n ON n.oid = s.relnamespace \
         JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
         WHERE d.classid = 'pg_class'::regclass AND d.refobjid = $1::regclass AND d.deptype = 'a'",
    )
    .bind(&live_table)
    .fetch_all(&mut **tx)
    .await?;
    for (sequence, _) in &owned {
        sqlx::query(&format!("ALTER SEQUENCE {sequence} OWNED BY NONE"))
            .execute(&mut **tx)
            .await?;
    }
    sqlx::query(&format!("DROP TABLE {table}"))
        .execute(&mut **tx)
        .await?;
    sqlx::query(&format!(
        "ALTER TABLE {SHADOW_SCHEMA}.{t} SET SCHEMA {live_schema}"
    ))
    .execute(&mut **tx)
    .await?;
    for (sequence, column) in &owned {
        sqlx::query(&format!(
            "ALTER SEQUENCE {sequence} OWNED BY {table}.{column}"
        ))
        .execute(&mut **tx)
        .await?;
    }
    for trigger in &triggers {
        sqlx::query(trigger).execute(&mut **tx).await?;
    }
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(&mut **tx)
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
