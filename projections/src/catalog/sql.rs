//! The catalog's statements, one text for both backends (`?` placeholders, `IN (?...)` for a list;
//! run with `cdp_domain::store::sql`): definitions, jobs, cut points, and the reads of tags, spend,
//! due times and segment memberships.

// Definitions.

/// The newest version of each definition of a kind in a workspace (deleted ones included).
pub(crate) const NEWEST_DEFINITIONS: &str =
    "SELECT d.name, d.version, d.body, d.defined_at FROM definitions d \
     WHERE d.workspace = ? AND d.kind = ? AND d.version = (SELECT max(x.version) \
       FROM definitions x WHERE x.workspace = d.workspace AND x.kind = d.kind AND x.name = d.name) \
     ORDER BY d.name";

/// The body of a segment's newest definition before a version.
pub(crate) const SEGMENT_BODY_BEFORE: &str =
    "SELECT body FROM definitions WHERE workspace = ? AND kind = 'segment' AND name = ? \
     AND version < ? ORDER BY version DESC LIMIT 1";

/// Workspaces that define tags mentioning RFM.
pub(crate) const WORKSPACES_WITH_RFM: &str =
    "SELECT DISTINCT workspace FROM definitions WHERE kind = 'tag' AND body LIKE '%rfm%'";

/// Stores a version of a definition (a redelivered one is already there).
pub(crate) const INSERT_DEFINITION: &str =
    "INSERT INTO definitions (workspace, kind, name, version, body, defined_at) \
     VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING";

// Jobs.

/// The jobs still running, oldest first.
pub(crate) const RUNNING_JOBS: &str =
    "SELECT workspace, kind, name, version, cursor, done, total, status, started_at, finished_at \
     FROM catalog_jobs WHERE status = 'running' ORDER BY started_at, workspace, kind, name";

/// The newest job of a definition.
pub(crate) const LATEST_JOB: &str =
    "SELECT workspace, kind, name, version, cursor, done, total, status, started_at, finished_at \
     FROM catalog_jobs WHERE workspace = ? AND kind = ? AND name = ? \
     ORDER BY version DESC, started_at DESC LIMIT 1";

/// Starts a job, or moves it on.
pub(crate) const UPSERT_JOB: &str =
    "INSERT INTO catalog_jobs (workspace, kind, name, version, cursor, done, total, status, \
     started_at, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) \
     ON CONFLICT (workspace, kind, name, version) DO UPDATE SET \
     cursor = excluded.cursor, done = excluded.done, total = excluded.total, \
     status = excluded.status, finished_at = excluded.finished_at";

// RFM cut points.

/// The cut points of a workspace's quantile RFM tags.
pub(crate) const THRESHOLDS: &str =
    "SELECT tag, version, computed_at, body FROM rfm_thresholds WHERE workspace = ?";

/// Stores a tag's cut points.
pub(crate) const UPSERT_THRESHOLDS: &str =
    "INSERT INTO rfm_thresholds (workspace, tag, version, computed_at, body) \
     VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT (workspace, tag) DO UPDATE SET version = excluded.version, \
     computed_at = excluded.computed_at, body = excluded.body";

// Tags, spend, due times, profiles.

/// The tags of a list of profiles.
pub(crate) const TAGS_OF: &str =
    "SELECT profile, tag, value, detail, manual, changed_at, caused_by \
     FROM profile_tags WHERE workspace = ? AND profile IN (?...) ORDER BY profile, tag";

/// How many profiles have each value of a tag, and what they spent.
pub(crate) const TAG_STATS: &str = "SELECT t.value, count(*), sum(s.spend) FROM profile_tags t \
     LEFT JOIN profile_spend s ON s.workspace = t.workspace AND s.profile = t.profile \
     WHERE t.workspace = ? AND t.tag = ? GROUP BY t.value ORDER BY t.value";

/// A page of a workspace's live profiles after a cursor, with their states.
pub(crate) const PROFILES_AFTER: &str =
    "SELECT profile, state, doc FROM profiles WHERE workspace = ? AND profile > ? \
     ORDER BY profile LIMIT ?";

/// How many live profiles a workspace has.
pub(crate) const COUNT_PROFILES: &str = "SELECT count(*) FROM profiles WHERE workspace = ?";

/// Profiles due by a time, earliest first.
pub(crate) const DUE: &str =
    "SELECT workspace, profile FROM profile_due WHERE due_at <= ? ORDER BY due_at LIMIT ?";

/// The earliest due time.
pub(crate) const NEXT_DUE: &str = "SELECT min(due_at) FROM profile_due";

/// Profiles due by a time, of a list of workspaces (a part of the engine's), earliest first.
pub(crate) const DUE_IN: &str = "SELECT workspace, profile FROM profile_due \
     WHERE due_at <= ? AND workspace IN (?...) ORDER BY due_at LIMIT ?";

/// The earliest due time of a list of workspaces.
pub(crate) const NEXT_DUE_IN: &str =
    "SELECT min(due_at) FROM profile_due WHERE workspace IN (?...)";

/// Every workspace.
pub(crate) const ALL_WORKSPACES: &str = "SELECT id FROM workspaces ORDER BY id";

// Segment memberships.

/// The memberships of a list of profiles.
pub(crate) const MEMBERSHIPS_OF: &str =
    "SELECT profile, segment, since, caused_by FROM segment_members \
     WHERE workspace = ? AND profile IN (?...) ORDER BY profile, segment";

/// Every enter and exit of one profile, in order.
pub(crate) const MEMBERSHIP_HISTORY: &str =
    "SELECT seq, profile, segment, entered, at, caused_by FROM segment_history \
     WHERE workspace = ? AND profile = ? ORDER BY seq";

/// A segment's net change of members per UTC day from a time on.
pub(crate) const SEGMENT_CHANGES_SINCE: &str =
    "SELECT at / 86400000 AS day, SUM(CASE WHEN entered THEN 1 ELSE -1 END) \
     FROM segment_history WHERE workspace = ? AND segment = ? AND at >= ? \
     GROUP BY at / 86400000 ORDER BY day";

/// How many members each segment of a workspace has.
pub(crate) const SEGMENT_SIZES: &str =
    "SELECT segment, count(*) FROM segment_members WHERE workspace = ? GROUP BY segment";

/// A page of a segment's members after a profile id.
pub(crate) const MEMBERS_PAGE: &str = "SELECT profile, since, caused_by FROM segment_members \
     WHERE workspace = ? AND segment = ? AND profile > ? ORDER BY profile LIMIT ?";
