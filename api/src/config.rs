//! Service configuration from flags and `CDP_*` variables, and the `CDP_CONFIG` TOML file that declares
//! workspaces and their credentials.

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::{bail, Context};
use cdp_domain::consent::{ConsentPolicy, Policy};
use cdp_domain::ident::PhoneRegion;
use cdp_domain::identity::{IdentifierRule, IdentityRules};
use serde::Deserialize;

/// How `cdp serve` (and the in-process servers of `demo`, `bench` and the tests) is configured.
#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address to listen on; port 0 picks a free port.
    #[arg(long, env = "CDP_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory of the embedded SQLite database, used when no database URL is given.
    #[arg(long, env = "CDP_DATA_DIR", default_value = "./cdp-data")]
    pub data_dir: PathBuf,
    /// `postgres://…` for production (or `sqlite://…`); the embedded default when absent.
    #[arg(long, env = "CDP_DATABASE_URL")]
    pub database_url: Option<String>,
    /// `nats://…`: ingest from JetStream stream `CDP_INGEST`, subjects `cdp.ingest.<workspace>`.
    #[arg(long, env = "CDP_NATS_URL")]
    pub nats_url: Option<String>,
    /// Prefix of the NATS subjects and suffix of the stream name, to run several isolated instances
    /// (tests) on one NATS server. Empty in production.
    #[arg(long, env = "CDP_NATS_NAMESPACE", default_value = "")]
    pub nats_namespace: String,
    /// TOML file declaring workspaces and credentials.
    #[arg(long, env = "CDP_CONFIG")]
    pub config_file: Option<PathBuf>,
    /// Ensure this workspace exists at start, with the two credentials below.
    #[arg(long, env = "CDP_BOOTSTRAP_WORKSPACE")]
    pub bootstrap_workspace: Option<String>,
    #[arg(long, env = "CDP_BOOTSTRAP_WRITE_KEY", hide_env_values = true)]
    pub bootstrap_write_key: Option<String>,
    #[arg(long, env = "CDP_BOOTSTRAP_ADMIN_TOKEN", hide_env_values = true)]
    pub bootstrap_admin_token: Option<String>,
    /// Seconds between runs of the batch side (every profile's computed traits recomputed from the log
    /// up to a watermark, then tags and segments re-evaluated); 0 never runs it.
    #[arg(long, env = "CDP_BATCH_INTERVAL", default_value_t = 86_400)]
    pub batch_interval: u64,
    /// Ingestion budget of each workspace, in messages per second (every message of a batch counts);
    /// over it, 429 with `Retry-After`. 0 is unlimited.
    #[arg(long, env = "CDP_RATE_INGEST", default_value_t = DEFAULT_RATE_INGEST)]
    pub rate_ingest: u32,
    /// Query and admin API budget of each workspace, in requests per second. 0 is unlimited.
    #[arg(long, env = "CDP_RATE_API", default_value_t = DEFAULT_RATE_API)]
    pub rate_api: u32,
    /// Seconds of either budget a quiet workspace may spend at once.
    #[arg(long, env = "CDP_RATE_BURST", default_value_t = DEFAULT_RATE_BURST)]
    pub rate_burst: f64,
    /// Profiles whose state the resolver keeps in memory between batches (~5 KB of heap each for a
    /// retail profile); the others are read from the database when next touched.
    #[arg(long, env = "CDP_HELD_PROFILES", default_value_t = cdp_projections::identity::HELD_PROFILES)]
    pub held_profiles: usize,
    /// Megabytes of memory for hot profiles' 360° views, answered without the database (0: none).
    #[arg(long, env = "CDP_VIEW_CACHE_MB", default_value_t = DEFAULT_VIEW_CACHE_MB)]
    pub view_cache_mb: u64,
    /// This instance's name among those sharing the database: the owner of the engine's partition
    /// leases it holds. Default: the host's name and the listening port (so a restarted instance
    /// takes its leases back at once), with a random suffix when the port is picked at start.
    #[arg(long, env = "CDP_INSTANCE")]
    pub instance: Option<String>,
    /// How many parts the engine is split into (1–64): the workspaces, by a hash of their id, each part
    /// run by one instance at a time (its lease), spread over the instances sharing the database. The
    /// count is stored: a different one is taken only when no instance runs the engine and every part
    /// has caught up (else the stored one is kept and the reason logged).
    #[arg(long, env = "CDP_ENGINE_PARTITIONS", default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=64))]
    pub engine_partitions: u32,
}

/// The default memory for profiles' views (`CDP_VIEW_CACHE_MB`).
pub const DEFAULT_VIEW_CACHE_MB: u64 = 256;

/// Above what `cdp bench` pushes from one workspace (100,000 events/s, 5,000 profile reads/s), so only a
/// flood is limited; set them to a workspace's fair share of the machine.
pub const DEFAULT_RATE_INGEST: u32 = 200_000;
pub const DEFAULT_RATE_API: u32 = 20_000;
pub const DEFAULT_RATE_BURST: f64 = 5.0;

impl Config {
    /// A configuration for an in-process server on a free loopback port over the given data directory.
    pub fn local(data_dir: PathBuf) -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            data_dir,
            database_url: None,
            nats_url: None,
            nats_namespace: String::new(),
            config_file: None,
            bootstrap_workspace: None,
            bootstrap_write_key: None,
            bootstrap_admin_token: None,
            batch_interval: 0,
            rate_ingest: DEFAULT_RATE_INGEST,
            rate_api: DEFAULT_RATE_API,
            rate_burst: DEFAULT_RATE_BURST,
            held_profiles: cdp_projections::identity::HELD_PROFILES,
            view_cache_mb: DEFAULT_VIEW_CACHE_MB,
            instance: None,
            engine_partitions: 1,
        }
    }

    /// [`Config::instance`], or its default.
    pub fn instance_name(&self) -> String {
        if let Some(name) = self
            .instance
            .as_deref()
            .map(str::trim)
            .filter(|n| !n.is_empty())
        {
            return name.to_owned();
        }
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
            .or_else(|_| std::env::var("HOSTNAME"))
            .map(|h| h.trim().to_owned())
            .ok()
            .filter(|h| !h.is_empty())
            .unwrap_or_else(|| "localhost".to_owned());
        match self.listen.port() {
            0 => format!(
                "{host}:{}",
                &uuid::Uuid::new_v4().simple().to_string()[..12]
            ),
            port => format!("{host}:{port}"),
        }
    }

    /// The per-workspace budgets these settings make.
    pub fn limits(&self) -> crate::limits::Limits {
        use crate::limits::Budget;
        let burst = if self.rate_burst.is_finite() && self.rate_burst > 0.0 {
            self.rate_burst
        } else {
            DEFAULT_RATE_BURST
        };
        crate::limits::Limits::new(
            Budget {
                rate: self.rate_ingest,
                burst,
            },
            Budget {
                rate: self.rate_api,
                burst,
            },
        )
    }

    pub fn has_credentials(&self) -> bool {
        self.config_file.is_some() || self.bootstrap_workspace.is_some()
    }

    pub fn ingest_subject_prefix(&self) -> String {
        if self.nats_namespace.is_empty() {
            "cdp.ingest.".to_owned()
        } else {
            format!("{}.cdp.ingest.", self.nats_namespace)
        }
    }

    /// Where outgoing messages go: `cdp.out.` (or `<namespace>.cdp.out.`).
    pub fn out_subject_prefix(&self) -> String {
        if self.nats_namespace.is_empty() {
            "cdp.out.".to_owned()
        } else {
            format!("{}.cdp.out.", self.nats_namespace)
        }
    }

    /// The JetStream stream of outgoing messages: `CDP_OUT` (or `CDP_OUT_<namespace>`).
    pub fn out_stream_name(&self) -> String {
        if self.nats_namespace.is_empty() {
            "CDP_OUT".to_owned()
        } else {
            format!("CDP_OUT_{}", self.nats_namespace.replace(['.', '-'], "_"))
        }
    }

    /// The JetStream stream ingested from: `CDP_INGEST` (or `CDP_INGEST_<namespace>`).
    pub fn ingest_stream_name(&self) -> String {
        if self.nats_namespace.is_empty() {
            "CDP_INGEST".to_owned()
        } else {
            format!(
                "CDP_INGEST_{}",
                self.nats_namespace.replace(['.', '-'], "_")
            )
        }
    }
}

/// The `CDP_CONFIG` file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConfigFile {
    #[serde(default, rename = "workspace")]
    pub workspaces: Vec<WorkspaceConfig>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WorkspaceConfig {
    pub id: String,
    #[serde(default)]
    pub write_keys: Vec<String>,
    #[serde(default, rename = "token")]
    pub tokens: Vec<TokenConfig>,
    /// Identity rules; Segment's defaults where absent.
    #[serde(default)]
    pub identity: Option<IdentityConfig>,
    /// Computed traits by name, as `PUT /v1/traits/{name}` takes them:
    /// `[workspace.traits.spend_30d]` with `event`, `function`, `property`, `window`, `where`.
    #[serde(default)]
    pub traits: std::collections::BTreeMap<String, serde_json::Value>,
    /// Tags by name, as `PUT /v1/tags/{name}` takes them: `[workspace.tags.big_spender]` with `type`, ….
    #[serde(default)]
    pub tags: std::collections::BTreeMap<String, serde_json::Value>,
    /// The consent policy: `[workspace.consent]` with `default = "opt_in"` (or `"opt_out"`) and
    /// `[workspace.consent.policy]` entries per channel (`push = "opt_out"`) or channel and purpose
    /// (`"email:service" = "opt_out"`).
    #[serde(default)]
    pub consent: Option<ConsentConfig>,
}

/// `[workspace.consent]`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsentConfig {
    pub default: Option<String>,
    #[serde(default)]
    pub policy: std::collections::BTreeMap<String, String>,
}

impl ConsentConfig {
    pub fn policy(&self) -> Result<ConsentPolicy, String> {
        let default = match self.default.as_deref() {
            None => Policy::OptIn,
            Some(raw) => Policy::parse(raw)
                .ok_or_else(|| format!("consent default {raw:?} is not opt_in or opt_out"))?,
        };
        ConsentPolicy::new(default, &self.policy)
    }
}

/// `[workspace.identity]`: traits declared as identifiers (in priority order, after the built-in types)
/// and rules replacing a type's defaults, e.g. `[workspace.identity.types.phone]` with
/// `priority = 3`, `limit = 5`, `may_merge = false` (a shared family phone links, never merges).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IdentityConfig {
    #[serde(default)]
    pub declare: Vec<String>,
    #[serde(default)]
    pub types: std::collections::BTreeMap<String, IdentifierRule>,
    pub max_merges: Option<u32>,
    pub max_identifiers: Option<u32>,
    /// Channels whose trait values win, strongest first.
    #[serde(default)]
    pub source_priority: Vec<String>,
    /// The region phone numbers without a country code are read in (`CN` when absent): ingestion
    /// normalises them in its numbering plan (see `ident::PhoneRegion`).
    pub phone_region: Option<String>,
}

impl IdentityConfig {
    /// The rules these settings make, on top of the defaults.
    pub fn rules(&self) -> IdentityRules {
        let mut rules = IdentityRules::default();
        for id_type in &self.declare {
            rules = rules.declare(id_type);
        }
        for (id_type, rule) in &self.types {
            rules = rules.with(id_type, rule.clone());
        }
        if let Some(n) = self.max_merges {
            rules.max_merges = n;
        }
        if let Some(n) = self.max_identifiers {
            rules.max_identifiers = n;
        }
        rules.source_priority = self.source_priority.clone();
        rules
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenConfig {
    pub token: String,
    pub scopes: Vec<String>,
}

impl ConfigFile {
    /// Each configured workspace's phone region (`[workspace.identity] phone_region`); a workspace not
    /// named reads phones in the default region.
    pub fn phone_regions(&self) -> std::collections::HashMap<String, PhoneRegion> {
        self.workspaces
            .iter()
            .filter_map(|w| {
                let raw = w.identity.as_ref()?.phone_region.as_deref()?;
                Some((w.id.clone(), PhoneRegion::parse(raw).ok()?))
            })
            .collect()
    }

    pub fn load(path: &std::path::Path) -> anyhow::Result<Self> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("failed to read CDP_CONFIG file {}", path.display()))?;
        Self::parse(&text).with_context(|| format!("invalid CDP_CONFIG file {}", path.display()))
    }

    pub fn parse(text: &str) -> anyhow::Result<Self> {
        let file: ConfigFile = toml::from_str(text)?;
        for w in &file.workspaces {
            cdp_domain::ident::WorkspaceId::parse(&w.id)?;
            if let Some(identity) = &w.identity {
                if let Some(region) = &identity.phone_region {
                    PhoneRegion::parse(region)
                        .map_err(|e| anyhow::anyhow!("workspace {}: {e}", w.id))?;
                }
                for id_type in identity.declare.iter().chain(identity.types.keys()) {
                    let valid = !id_type.is_empty()
                        && id_type.len() <= 64
                        && id_type
                            .bytes()
                            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
                    if !valid {
                        bail!(
                            "workspace {}: identifier type {id_type:?} must be 1-64 characters of a-z, 0-9 and '_'",
                            w.id
                        );
                    }
                }
            }
            if let Some(consent) = &w.consent {
                consent
                    .policy()
                    .map_err(|e| anyhow::anyhow!("workspace {}: {e}", w.id))?;
            }
            for t in &w.tokens {
                for s in &t.scopes {
                    if cdp_domain::workspace::Scope::parse(s).is_none() {
                        bail!(
                            "workspace {}: unknown scope {s:?} (read, write or admin)",
                            w.id
                        );
                    }
                }
            }
        }
        Ok(file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_file_parses() {
        let file = ConfigFile::parse(
            r#"
            [[workspace]]
            id = "shop_a"
            write_keys = ["wk_a"]
            [[workspace.token]]
            token = "tok_a"
            scopes = ["read"]
            "#,
        )
        .unwrap();
        assert_eq!(file.workspaces[0].tokens[0].scopes, ["read"]);
    }

    #[test]
    fn identity_settings_declare_types_and_replace_rules() {
        let file = ConfigFile::parse(
            r#"
            [[workspace]]
            id = "shop_a"
            [workspace.identity]
            declare = ["member_card", "wechat_unionid"]
            source_priority = ["crm", "pos"]
            [workspace.identity.types.phone]
            priority = 3
            limit = 5
            may_merge = false
            "#,
        )
        .unwrap();
        let rules = file.workspaces[0].identity.as_ref().unwrap().rules();
        assert!(!rules.may_merge("phone"));
        assert_eq!(rules.source_priority, ["crm", "pos"]);
        assert!(rules.priority("member_card") < rules.priority("wechat_unionid"));
        assert!(rules.priority("device_id") < rules.priority("member_card"));
        assert!(ConfigFile::parse(
            "[[workspace]]\nid = \"a\"\n[workspace.identity]\ndeclare = [\"Bad Type\"]"
        )
        .is_err());
    }

    #[test]
    fn the_consent_policy_is_per_workspace_and_checked() {
        let file = ConfigFile::parse(
            "[[workspace]]\nid = \"eu\"\n[workspace.consent]\ndefault = \"opt_in\"\n\
             [workspace.consent.policy]\n\"email:service\" = \"opt_out\"\npush = \"opt_out\"",
        )
        .unwrap();
        let policy = file.workspaces[0]
            .consent
            .as_ref()
            .unwrap()
            .policy()
            .unwrap();
        assert_eq!(policy.of("email", "service"), Policy::OptOut);
        assert_eq!(policy.of("email", "marketing"), Policy::OptIn);
        for bad in [
            "[workspace.consent]\ndefault = \"maybe\"",
            "[workspace.consent.policy]\nfax = \"opt_out\"",
        ] {
            assert!(
                ConfigFile::parse(&format!("[[workspace]]\nid = \"a\"\n{bad}")).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn the_phone_region_is_per_workspace_and_checked() {
        let file = ConfigFile::parse(
            "[[workspace]]\nid = \"hk\"\n[workspace.identity]\nphone_region = \"HK\"\n\
             [[workspace]]\nid = \"cn\"",
        )
        .unwrap();
        let regions = file.phone_regions();
        assert_eq!(regions.get("hk"), Some(&PhoneRegion::Hk));
        assert_eq!(regions.get("cn"), None);
        let err = ConfigFile::parse(
            "[[workspace]]\nid = \"a\"\n[workspace.identity]\nphone_region = \"Mars\"",
        )
        .unwrap_err();
        assert!(err.to_string().contains("unknown phone region"), "{err}");
    }

    #[test]
    fn unknown_scopes_and_bad_ids_are_refused() {
        assert!(ConfigFile::parse("[[workspace]]\nid = \"Bad Id\"").is_err());
        assert!(ConfigFile::parse(
            "[[workspace]]\nid = \"a\"\n[[workspace.token]]\ntoken = \"t\"\nscopes = [\"root\"]"
        )
        .is_err());
    }
}
