//! The erasure's statements, one text for both backends (`?` placeholders, `IN (?...)` for a list;
//! run with `cdp_domain::store::sql` in the erasure's transaction), and the append-only triggers of
//! `identity_events` set aside and restored around the redaction, which differ by backend.

use cdp_domain::store::sql::{query, verbatim};

use crate::runner::{ModelTx, ProjectionError};

// Whom it forgets (`cluster`).

/// The profile a merged-away profile was merged into.
pub(super) const SURVIVOR_OF: &str =
    "SELECT survivor FROM profile_aliases WHERE workspace = ? AND profile = ?";

/// Whether a profile is live.
pub(super) const LIVE_PROFILE: &str =
    "SELECT profile FROM profiles WHERE workspace = ? AND profile = ?";

/// The profiles merged into a survivor.
pub(super) const MERGED_INTO: &str =
    "SELECT profile FROM profile_aliases WHERE workspace = ? AND survivor = ? ORDER BY profile";

/// The identifiers in the cluster's decisions.
pub(super) const DECIDED_IDENTIFIERS: &str =
    "SELECT id_type, value FROM identity_events WHERE workspace = ? AND value IS NOT NULL \
     AND id_type IS NOT NULL AND profile IN (?...)";

/// The identifiers the survivor holds.
pub(super) const HELD_IDENTIFIERS: &str =
    "SELECT id_type, value FROM identifier_owners WHERE workspace = ? AND profile = ?";

/// Which of some identifiers a profile outside the cluster holds; followed by
/// [`any_identifier`]`(n)`.
pub(super) const HELD_ELSEWHERE: &str =
    "SELECT id_type, value FROM identifier_owners WHERE workspace = ? AND profile NOT IN (?...) AND ";

/// Profiles outside the cluster that hold, or were refused, one of some identifiers; each followed
/// by [`any_identifier`]`(n)`.
pub(super) const HOLDING_OR_REFUSED: [&str; 2] = [
    "SELECT DISTINCT profile FROM identifier_owners WHERE workspace = ? \
     AND profile NOT IN (?...) AND ",
    "SELECT DISTINCT profile FROM identity_events WHERE kind = 'link_rejected' AND workspace = ? \
     AND profile NOT IN (?...) AND ",
];

/// `((id_type = ? AND value = ?) OR …)` for `n` identifiers.
pub(super) fn any_identifier(n: usize) -> String {
    format!("({})", vec!["(id_type = ? AND value = ?)"; n].join(" OR "))
}

// Keys and events.

/// The events of a list of profiles.
pub(super) const EVENTS_OF: &str =
    "SELECT log_seq FROM event_profiles WHERE workspace = ? AND profile IN (?...)";

/// The subject keys of a list of events.
pub(super) const KEYS_OF_EVENTS: &str =
    "SELECT DISTINCT key_id FROM events WHERE key_id IS NOT NULL AND seq IN (?...)";

/// Each of a list of events with its subject key.
pub(super) const EVENT_KEYS: &str =
    "SELECT seq, key_id FROM events WHERE key_id IS NOT NULL AND seq IN (?...)";

/// Destroys a list of subject keys.
pub(super) const DESTROY_KEYS: &str =
    "UPDATE subject_keys SET key = NULL, subject = NULL, erased_at = ? \
     WHERE key IS NOT NULL AND id IN (?...)";

/// The profiles outside the cluster that some events belong to.
pub(super) const OTHER_OWNERS: &str =
    "SELECT DISTINCT profile FROM event_profiles WHERE workspace = ? \
     AND log_seq IN (?...) AND profile NOT IN (?...)";

/// Files some events under no profile.
pub(super) const DROP_EVENT_OWNERS: &str =
    "DELETE FROM event_profiles WHERE workspace = ? AND log_seq IN (?...)";

// Messages.

/// The outbox messages whose payload contains a pattern.
pub(super) const DROP_OUTBOX_LIKE: &str =
    "DELETE FROM outbox WHERE workspace = ? AND payload LIKE ? ESCAPE '\\'";

/// The refused messages whose payload contains a pattern.
pub(super) const DROP_QUARANTINE_LIKE: &str =
    "DELETE FROM quarantine WHERE workspace = ? AND payload LIKE ? ESCAPE '\\'";

// Read models.

/// The survivor's segments.
pub(super) const SEGMENTS_OF: &str =
    "SELECT segment FROM segment_members WHERE workspace = ? AND profile = ? ORDER BY segment";

/// The survivor's tags.
pub(super) const TAGS_OF: &str =
    "SELECT tag FROM profile_tags WHERE workspace = ? AND profile = ? ORDER BY tag";

/// The rows of a list of profiles, table by table.
pub(super) const DELETE_OF_CLUSTER: [&str; 4] = [
    "DELETE FROM profiles WHERE workspace = ? AND profile IN (?...)",
    "DELETE FROM event_profiles WHERE workspace = ? AND profile IN (?...)",
    "DELETE FROM profile_spend WHERE workspace = ? AND profile IN (?...)",
    "DELETE FROM profile_due WHERE workspace = ? AND profile IN (?...)",
];

/// The rows of the survivor, table by table.
pub(super) const DELETE_OF_SURVIVOR: [&str; 3] = [
    "DELETE FROM identifier_owners WHERE workspace = ? AND profile = ?",
    "DELETE FROM profile_tags WHERE workspace = ? AND profile = ?",
    "DELETE FROM segment_members WHERE workspace = ? AND profile = ?",
];

/// The aliases from or to a list of profiles.
pub(super) const DELETE_ALIASES: &str =
    "DELETE FROM profile_aliases WHERE workspace = ? AND (profile IN (?...) OR survivor IN (?...))";

// Decisions and the record.

/// The decisions about or naming a list of profiles.
pub(super) const DECISIONS_OF: &str =
    "SELECT seq, value, body FROM identity_events WHERE workspace = ? \
     AND (profile IN (?...) OR other IN (?...))";

/// Rewrites a decision's value and body (`''`: no value).
pub(super) const REDACT_DECISION: &str =
    "UPDATE identity_events SET value = nullif(?, ''), body = ? WHERE seq = ?";

/// Records the erasure; its number.
pub(super) const RECORD_ERASURE: &str =
    "INSERT INTO erasures (workspace, profile, profiles, actor, at, events, keys) \
     VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING seq";

/// The decision that takes the profile out of the graph.
pub(super) const PROFILE_ERASED: &str =
    "INSERT INTO identity_events (workspace, log_seq, caused_by, kind, profile, other, id_type, \
     value, recorded_at, body) VALUES (?, ?, ?, 'profile_erased', ?, NULL, NULL, NULL, ?, ?)";

/// SQLite: the triggers on `identity_events`, with their text.
const SQLITE_DECISION_TRIGGERS: &str = "SELECT name, sql FROM main.sqlite_master \
     WHERE type = 'trigger' AND tbl_name = 'identity_events'";
/// PostgreSQL: the user triggers of `identity_events`, off and on.
const POSTGRES_DISABLE_DECISION_TRIGGERS: &str = "ALTER TABLE identity_events DISABLE TRIGGER USER";
const POSTGRES_ENABLE_DECISION_TRIGGERS: &str = "ALTER TABLE identity_events ENABLE TRIGGER USER";

/// A `LIKE` pattern matching `needle` anywhere, with `\` as the escape.
pub(super) fn containing(needle: &str) -> String {
    let escaped = needle
        .replace('\\', "\\\\")
        .replace('%', "\\%")
        .replace('_', "\\_");
    format!("%{escaped}%")
}

/// Sets the append-only triggers of `identity_events` aside (restored by [`restore_triggers`] in the
/// same transaction, as a rebuild's switch does): an erasure is the one rewrite the decisions allow.
/// SQLite drops them (keeping their text), PostgreSQL disables them.
pub(super) async fn set_triggers_aside(
    tx: &mut ModelTx<'_>,
) -> Result<Vec<(String, String)>, ProjectionError> {
    if !tx.is_sqlite() {
        verbatim(POSTGRES_DISABLE_DECISION_TRIGGERS)
            .execute(tx.exec())
            .await?;
        return Ok(Vec::new());
    }
    let triggers: Vec<(String, String)> =
        query(SQLITE_DECISION_TRIGGERS).fetch_all(tx.exec()).await?;
    for (name, _) in &triggers {
        // The name comes from the schema, quoted as an identifier.
        let drop = format!("DROP TRIGGER main.\"{}\"", name.replace('"', "\"\""));
        query(drop).execute(tx.exec()).await?;
    }
    Ok(triggers)
}

pub(super) async fn restore_triggers(
    tx: &mut ModelTx<'_>,
    triggers: Vec<(String, String)>,
) -> Result<(), ProjectionError> {
    if !tx.is_sqlite() {
        verbatim(POSTGRES_ENABLE_DECISION_TRIGGERS)
            .execute(tx.exec())
            .await?;
        return Ok(());
    }
    for (_, create) in triggers {
        verbatim(create).execute(tx.exec()).await?;
    }
    Ok(())
}
