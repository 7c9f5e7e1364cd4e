//! The audience index's reads of the engine's tables, one text for both backends (`?` placeholders,
//! `IN (?...)` for a list; run with `cdp_domain::store::sql`): a whole workspace, or a list of its
//! profiles. The audiences stage's writes keep theirs in `writes/sqlite.rs` and `writes/postgres.rs`.

/// The UTC hour of `event_profiles.event_time` (µs), rounded down also before 1970, in SQL.
macro_rules! hour {
    () => {
        "CASE WHEN event_time IS NULL THEN NULL \
         ELSE (event_time - CASE WHEN event_time < 0 THEN 3599999999 ELSE 0 END) / 3600000000 END"
    };
}

/// The track events of a workspace read one by one: those with facets, and those whose facets are
/// not known (`NULL`: stored before facets were).
macro_rules! faceted {
    () => {
        "workspace = ? AND kind = 'track' AND (facets IS NULL OR facets <> '{}')"
    };
}

// A list of profiles.

/// Their stored states.
pub(super) const STATES_OF: &str =
    "SELECT profile, state, doc FROM profiles WHERE workspace = ? AND profile IN (?...)";

/// Their tags.
pub(super) const TAGS_OF: &str =
    "SELECT profile, tag, value FROM profile_tags WHERE workspace = ? AND profile IN (?...)";

/// Their segment memberships.
pub(super) const MEMBERSHIPS_OF: &str =
    "SELECT profile, segment FROM segment_members WHERE workspace = ? AND profile IN (?...)";

/// Their events' kinds, names and hours, one row an event.
pub(super) const EVENTS_OF: &str = concat!(
    "SELECT profile, kind, name, ",
    hour!(),
    ", CAST(1 AS BIGINT) FROM event_profiles WHERE workspace = ? AND profile IN (?...)"
);

/// Their track events with facets (or unknown facets).
pub(super) const FACETED_OF: &str = concat!(
    "SELECT profile, name, ",
    hour!(),
    ", facets FROM event_profiles WHERE ",
    faceted!(),
    " AND profile IN (?...)"
);

// A whole workspace.

/// Its stored states.
pub(super) const STATES: &str = "SELECT profile, state, doc FROM profiles WHERE workspace = ?";

/// Its tags.
pub(super) const TAGS: &str = "SELECT profile, tag, value FROM profile_tags WHERE workspace = ?";

/// Its segment memberships.
pub(super) const MEMBERSHIPS: &str =
    "SELECT profile, segment FROM segment_members WHERE workspace = ?";

/// Its track events (and events without a summary) counted per profile, kind, name and hour.
pub(super) const EVENT_COUNTS: &str = concat!(
    "SELECT profile, kind, name, hour, count(*) FROM (SELECT profile, kind, name, ",
    hour!(),
    " AS hour FROM event_profiles WHERE workspace = ? AND (kind = 'track' OR kind IS NULL \
     OR event_time IS NULL)) e GROUP BY profile, kind, name, hour"
);

/// Its track events with facets (or unknown facets).
pub(super) const FACETED: &str = concat!(
    "SELECT profile, name, ",
    hour!(),
    ", facets FROM event_profiles WHERE ",
    faceted!()
);
