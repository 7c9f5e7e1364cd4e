//! The profile model's reads, one text for both backends (`?` placeholders, `IN (?...)` for a list;
//! run with `cdp_domain::store::sql`) except where PostgreSQL has a better form, which stands beside
//! SQLite's. The resolver's writes keep their statements in `writes/sqlite.rs` and `writes/postgres.rs`.

/// A profile's stored state and document.
pub(crate) const LOAD: &str = "SELECT state, doc FROM profiles WHERE workspace = ? AND profile = ?";

/// SQLite: the stored profiles among a list of one workspace's (`workspace = ? AND profile IN (…)`
/// per workspace: SQLite answers a row-value `IN (VALUES …)` with a scan of the whole table).
pub(crate) const LOAD_MANY_SQLITE: &str =
    "SELECT workspace, profile, state, doc FROM profiles WHERE workspace = ? AND profile IN (?...)";
/// PostgreSQL: the stored profiles among a list of (workspace, profile) pairs, as two arrays.
pub(crate) const LOAD_MANY_POSTGRES: &str =
    "SELECT d.workspace, d.profile, d.state, d.doc FROM profiles d \
     JOIN UNNEST($1::text[], $2::text[]) AS k(w, p) \
       ON d.workspace = k.w AND d.profile = k.p";

/// The events of a list of profiles.
pub(crate) const EVENTS_OF: &str =
    "SELECT log_seq FROM event_profiles WHERE workspace = ? AND profile IN (?...)";

/// The events of a list of profiles, with their profile.
pub(crate) const EVENTS_BY_PROFILE: &str =
    "SELECT profile, log_seq FROM event_profiles WHERE workspace = ? AND profile IN (?...)";

/// A profile, if it is live.
pub(crate) const LIVE: &str = "SELECT profile FROM profiles WHERE workspace = ? AND profile = ?";

/// The profile a merged-away profile was merged into.
pub(crate) const SURVIVOR_OF: &str =
    "SELECT survivor FROM profile_aliases WHERE workspace = ? AND profile = ?";

/// The profiles merged into a live profile.
pub(crate) const ALIASES_OF: &str =
    "SELECT profile FROM profile_aliases WHERE workspace = ? AND survivor = ? ORDER BY profile";

/// The profile holding an identifier.
pub(crate) const HOLDER: &str =
    "SELECT profile FROM identifier_owners WHERE workspace = ? AND id_type = ? AND value = ?";

/// A page of a profile's events below a sequence number, newest first.
pub(crate) const TIMELINE_PAGE: &str =
    "SELECT log_seq FROM event_profiles WHERE workspace = ? AND profile = ? \
     AND log_seq < ? ORDER BY log_seq DESC LIMIT ?";

/// A profile's most recent event summaries: every event at or after the time of the one that many
/// (bound last) before the newest (binds: workspace, profile, workspace, profile, skip).
pub(crate) const RECENT_EVENTS: &str =
    "SELECT message_id, kind, name, channel, event_time, received_at FROM event_profiles \
     WHERE workspace = ? AND profile = ? AND event_time >= coalesce((SELECT event_time \
     FROM event_profiles WHERE workspace = ? AND profile = ? AND event_time IS NOT NULL \
     ORDER BY event_time DESC LIMIT 1 OFFSET ?), -9223372036854775807)";

/// PostgreSQL: the 360° view in one statement (one round trip, one snapshot): the profile (part 0),
/// its recent events as [`RECENT_EVENTS`] (1) and its tags (2), in shared slots. The recent events in
/// one backward walk of the profile's index: the newest `$3` by event time and every other at the
/// last one's time (`WITH TIES`), the same set [`RECENT_EVENTS`] reads in two.
pub(crate) const VIEW_POSTGRES: &str =
    "SELECT 0, state, doc, NULL, NULL, NULL, NULL::bigint, NULL::bigint, NULL::boolean \
       FROM profiles WHERE workspace = $1 AND profile = $2 \
     UNION ALL \
     (SELECT 1, NULL, message_id, kind, name, channel, event_time, received_at, NULL \
       FROM event_profiles WHERE workspace = $1 AND profile = $2 AND event_time IS NOT NULL \
       ORDER BY event_time DESC FETCH FIRST $3 ROWS WITH TIES) \
     UNION ALL \
     SELECT 2, NULL, tag, value, detail, caused_by, changed_at, NULL, manual \
       FROM profile_tags WHERE workspace = $1 AND profile = $2";

/// How many live profiles the model holds.
pub(crate) const COUNT_ALL: &str = "SELECT count(*) FROM profiles";
pub(crate) const COUNT_BY_WORKSPACE: &str =
    "SELECT workspace, count(*) FROM profiles GROUP BY workspace ORDER BY workspace";

/// Every resolved event's owner (`refold`).
pub(crate) const ALL_OWNERS: &str = "SELECT log_seq, workspace, profile FROM event_profiles";

/// Every stored profile, before a refold writes them all again.
pub(crate) const DELETE_ALL_PROFILES: &str = "DELETE FROM profiles";
