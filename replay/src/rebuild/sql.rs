//! A rebuild's statements, SQLite's and PostgreSQL's side by side (run with
//! `cdp_domain::store::sql`): they differ by backend because the shadow does — an attached database
//! whose tables are copied in, or a schema whose tables move into the live one. Statements that name a
//! table or schema only known at run time are functions of that name, which comes from this crate's
//! constants or from the database's own catalog, never from input.

/// The PostgreSQL schema of a rebuild in progress, as a literal for the statements below.
macro_rules! shadow {
    () => {
        "cdp_rebuild"
    };
}

/// The PostgreSQL schema of a rebuild in progress.
pub(super) const SHADOW_SCHEMA: &str = shadow!();

/// `name` as a quoted identifier (both backends).
pub(super) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

// Opening the shadow: SQLite.

/// The shadow database's tables.
pub(super) const SQLITE_SHADOW_TABLES: &str =
    "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'";

/// Whether the shadow database has its bookkeeping table.
pub(super) const SQLITE_HAS_META: &str =
    "SELECT name FROM main.sqlite_master WHERE type = 'table' AND name = 'rebuild_meta'";

/// The code version the shadow database is built by.
pub(super) const SQLITE_META_VERSION: &str = "SELECT version FROM main.rebuild_meta";

/// Drops a table of the shadow database.
pub(super) fn sqlite_drop_table(t: &str) -> String {
    format!("DROP TABLE main.{}", quoted(t))
}

/// The definitions (tables first, then indexes and triggers) of a list of the live database's tables.
pub(super) const SQLITE_LIVE_DEFINITIONS: &str =
    "SELECT sql FROM live.sqlite_master WHERE tbl_name IN (?...) \
     AND sql IS NOT NULL ORDER BY CASE type WHEN 'table' THEN 0 ELSE 1 END";

/// The shadow database's bookkeeping: which code builds it, since when.
pub(super) const SQLITE_CREATE_META: &str =
    "CREATE TABLE main.rebuild_meta (version INTEGER NOT NULL, started_at INTEGER NOT NULL)";
pub(super) const SQLITE_INSERT_META: &str =
    "INSERT INTO main.rebuild_meta (version, started_at) VALUES (?, ?)";

// Opening the shadow: PostgreSQL.

/// One rebuild at a time on a database: its session's advisory lock.
pub(super) const POSTGRES_TRY_LOCK: &str = "SELECT pg_try_advisory_lock($1)";

/// The live schema.
pub(super) const POSTGRES_CURRENT_SCHEMA: &str = "SELECT current_schema()";

/// Whether a (schema-qualified) table exists: its name, else `NULL`.
pub(super) const POSTGRES_TABLE_EXISTS: &str = "SELECT to_regclass($1)::text";

/// The shadow schema's bookkeeping table, qualified, for [`POSTGRES_TABLE_EXISTS`].
pub(super) const POSTGRES_META_TABLE: &str = concat!(shadow!(), ".rebuild_meta");

/// The code version the shadow schema is built by.
pub(super) const POSTGRES_META_VERSION: &str =
    concat!("SELECT version FROM ", shadow!(), ".rebuild_meta");

/// The shadow schema, dropped and created empty.
pub(super) const POSTGRES_DROP_SHADOW: &str =
    concat!("DROP SCHEMA IF EXISTS ", shadow!(), " CASCADE");
pub(super) const POSTGRES_CREATE_SHADOW: &str = concat!("CREATE SCHEMA ", shadow!());

/// A shadow table like the live one (columns, defaults, constraints, indexes).
pub(super) fn postgres_create_like(t: &str, live_schema: &str) -> String {
    format!(
        "CREATE TABLE {SHADOW_SCHEMA}.{t} (LIKE {}.{t} INCLUDING ALL)",
        quoted(live_schema)
    )
}

/// A live table's storage parameters (`name=value, …`; binds: schema, table).
pub(super) const POSTGRES_STORAGE_PARAMETERS: &str =
    "SELECT array_to_string(c.reloptions, ', ') FROM pg_class c \
     JOIN pg_namespace n ON n.oid = c.relnamespace \
     WHERE n.nspname = $1 AND c.relname = $2";

/// Sets a shadow table's storage parameters (as the catalog states them: `name=value, …`).
pub(super) fn postgres_set_storage_parameters(t: &str, options: &str) -> String {
    format!("ALTER TABLE {SHADOW_SCHEMA}.{t} SET ({options})")
}

/// The shadow schema's bookkeeping: which code builds it, since when.
pub(super) const POSTGRES_CREATE_META: &str = concat!(
    "CREATE TABLE ",
    shadow!(),
    ".rebuild_meta (version BIGINT NOT NULL, started_at BIGINT NOT NULL)"
);
pub(super) const POSTGRES_INSERT_META: &str = concat!(
    "INSERT INTO ",
    shadow!(),
    ".rebuild_meta (version, started_at) VALUES ($1, $2)"
);

// The indexes a PostgreSQL rebuild builds at the end.

/// Where the definitions of the indexes left out wait.
pub(super) const POSTGRES_CREATE_DEFERRED: &str = concat!(
    "CREATE TABLE ",
    shadow!(),
    ".rebuild_deferred (definition TEXT NOT NULL)"
);

/// The deferred-index table, qualified, for [`POSTGRES_TABLE_EXISTS`].
pub(super) const POSTGRES_DEFERRED_TABLE: &str = concat!(shadow!(), ".rebuild_deferred");

/// A table's secondary indexes: qualified name and definition (bind: the qualified table).
pub(super) const POSTGRES_SECONDARY_INDEXES: &str =
    "SELECT format('%I.%I', n.nspname, i.relname), pg_get_indexdef(i.oid) \
     FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid \
     JOIN pg_namespace n ON n.oid = i.relnamespace \
     WHERE x.indrelid = $1::regclass AND NOT x.indisunique AND NOT x.indisprimary";

/// Drops an index (its name as the catalog quoted it).
pub(super) fn postgres_drop_index(index: &str) -> String {
    format!("DROP INDEX {index}")
}

pub(super) const POSTGRES_INSERT_DEFERRED: &str = concat!(
    "INSERT INTO ",
    shadow!(),
    ".rebuild_deferred (definition) VALUES ($1)"
);
pub(super) const POSTGRES_DEFERRED_DEFINITIONS: &str =
    concat!("SELECT definition FROM ", shadow!(), ".rebuild_deferred");
pub(super) const POSTGRES_CLEAR_DEFERRED: &str =
    concat!("DELETE FROM ", shadow!(), ".rebuild_deferred");

// The status of a rebuild.

/// The shadow's bookkeeping, read through the shadow's own store (SQLite).
pub(super) const SQLITE_META: &str = "SELECT version, started_at FROM rebuild_meta";
/// The shadow resolver's checkpoint — the lowest of its slices' (binds: the parts' name pattern) —,
/// read through the shadow's own store (SQLite).
pub(super) const SQLITE_SHADOW_CHECKPOINT: &str =
    "SELECT tx, seq FROM projection_checkpoints WHERE name = 'identity' OR name LIKE ? \
     ORDER BY tx, seq LIMIT 1";

/// The shadow schema's bookkeeping.
pub(super) const POSTGRES_META: &str = concat!(
    "SELECT version, started_at FROM ",
    shadow!(),
    ".rebuild_meta"
);
/// The shadow resolver's checkpoint: the lowest of its slices' (binds: the parts' name pattern).
pub(super) const POSTGRES_SHADOW_CHECKPOINT: &str = concat!(
    "SELECT tx, seq FROM ",
    shadow!(),
    ".projection_checkpoints WHERE name = 'identity' OR name LIKE $1 ORDER BY tx, seq LIMIT 1"
);

// The switch: SQLite (the shadow attached to the live writer as `shadow`).

pub(super) const SQLITE_ATTACH_SHADOW: &str = "ATTACH DATABASE ? AS shadow";
pub(super) const SQLITE_DETACH_SHADOW: &str = "DETACH DATABASE shadow";

/// Takes the live database's write lock (a write that changes nothing).
pub(super) const SQLITE_TOUCH_LIVE_CHECKPOINT: &str =
    "UPDATE main.projection_checkpoints SET updated_at = updated_at \
     WHERE name = 'identity' OR name LIKE ?";

/// The live resolver's checkpoint.
pub(super) const SQLITE_LIVE_CHECKPOINT: &str =
    "SELECT tx, seq FROM main.projection_checkpoints WHERE name = 'identity' OR name LIKE ? \
     ORDER BY tx, seq LIMIT 1";

/// Erasures since the rebuild started.
pub(super) const SQLITE_ERASED_MEANWHILE: &str =
    "SELECT count(*) FROM main.erasures WHERE at >= (SELECT started_at FROM shadow.rebuild_meta)";

/// The shadow resolver's checkpoint, as this transaction sees it.
pub(super) const SQLITE_ATTACHED_SHADOW_CHECKPOINT: &str =
    "SELECT seq FROM shadow.projection_checkpoints WHERE name = 'identity' OR name LIKE ? \
     ORDER BY tx, seq LIMIT 1";

/// A live table's triggers, with their text.
pub(super) const SQLITE_TRIGGERS_OF: &str =
    "SELECT name, sql FROM main.sqlite_master WHERE type = 'trigger' AND tbl_name = ?";

pub(super) fn sqlite_drop_trigger(name: &str) -> String {
    format!("DROP TRIGGER main.{}", quoted(name))
}

/// Empties a live table.
pub(super) fn sqlite_delete_live(t: &str) -> String {
    format!("DELETE FROM main.{t}")
}

/// Copies the shadow's rows into a live table.
pub(super) fn sqlite_copy_from_shadow(t: &str) -> String {
    format!("INSERT INTO main.{t} SELECT * FROM shadow.{t}")
}

// The switch: PostgreSQL (the live schema quoted, `live`).

/// The live resolver's checkpoint row, made if it has none (whole or in parts), so that it can be
/// locked (binds: the parts' name pattern).
pub(super) fn postgres_ensure_live_checkpoint(live: &str) -> String {
    format!(
        "INSERT INTO {live}.projection_checkpoints (name, tx, seq, updated_at) \
         SELECT 'identity', 0, 0, 0 WHERE NOT EXISTS (SELECT 1 FROM {live}.projection_checkpoints \
         WHERE name = 'identity' OR name LIKE $1) ON CONFLICT (name) DO NOTHING"
    )
}

/// The live resolver's checkpoints (every part's), their rows locked to the commit (binds: the parts'
/// name pattern).
pub(super) fn postgres_lock_live_checkpoint(live: &str) -> String {
    format!(
        "SELECT tx, seq FROM {live}.projection_checkpoints WHERE name = 'identity' OR name LIKE $1 \
         ORDER BY name FOR UPDATE"
    )
}

/// Erasures since the rebuild started.
pub(super) fn postgres_erased_meanwhile(live: &str) -> String {
    format!(
        "SELECT count(*) FROM {live}.erasures \
         WHERE at >= (SELECT started_at FROM {SHADOW_SCHEMA}.rebuild_meta)"
    )
}

/// A table's own triggers, as definitions (bind: the qualified table).
pub(super) const POSTGRES_TRIGGERS_OF: &str = "SELECT pg_get_triggerdef(oid) FROM pg_trigger \
     WHERE tgrelid = $1::regclass AND NOT tgisinternal";

/// The sequences a table's columns own: (qualified sequence, column), quoted (bind: the qualified
/// table).
pub(super) const POSTGRES_OWNED_SEQUENCES: &str =
    "SELECT format('%I.%I', n.nspname, s.relname), format('%I', a.attname) \
     FROM pg_depend d JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' \
     JOIN pg_namespace n ON n.oid = s.relnamespace \
     JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid \
     WHERE d.classid = 'pg_class'::regclass AND d.refobjid = $1::regclass AND d.deptype = 'a'";

pub(super) fn postgres_disown_sequence(sequence: &str) -> String {
    format!("ALTER SEQUENCE {sequence} OWNED BY NONE")
}

pub(super) fn postgres_own_sequence(sequence: &str, table: &str, column: &str) -> String {
    format!("ALTER SEQUENCE {sequence} OWNED BY {table}.{column}")
}

pub(super) fn postgres_drop_table(table: &str) -> String {
    format!("DROP TABLE {table}")
}

/// Moves a shadow table into the live schema.
pub(super) fn postgres_move_into_live(t: &str, live: &str) -> String {
    format!("ALTER TABLE {SHADOW_SCHEMA}.{t} SET SCHEMA {live}")
}

pub(super) fn postgres_count_rows(table: &str) -> String {
    format!("SELECT count(*) FROM {table}")
}

// The reconcile (both backends; `from` and `other` are `main`/`shadow` or the two schemas).

/// The tags `from` has and `other` has not, or has otherwise.
pub(super) fn tags_not_in(from: &str, other: &str) -> String {
    format!(
        "SELECT a.workspace, a.profile, a.tag, a.value, a.detail, a.manual, a.changed_at, \
         a.caused_by FROM {from}.profile_tags a LEFT JOIN {other}.profile_tags b \
         ON b.workspace = a.workspace AND b.profile = a.profile AND b.tag = a.tag \
         WHERE b.tag IS NULL OR b.value <> a.value \
         OR coalesce(b.detail, '') <> coalesce(a.detail, '') OR b.manual <> a.manual"
    )
}

/// The memberships `from` has and `other` has not.
pub(super) fn memberships_not_in(from: &str, other: &str) -> String {
    format!(
        "SELECT a.workspace, a.segment, a.profile FROM {from}.segment_members a \
         WHERE NOT EXISTS (SELECT 1 FROM {other}.segment_members b WHERE \
         b.workspace = a.workspace AND b.segment = a.segment AND b.profile = a.profile)"
    )
}
