//! Fresh stores for one measurement: a new SQLite directory, or a new PostgreSQL database
//! (`cdp_bench_<random>`) on the server the user named, dropped afterwards, so runs are comparable.

use std::path::PathBuf;
use std::str::FromStr;

use anyhow::Context;
use cdp_api::Config;
use cdp_domain::store::Store;
use rand::distributions::Alphanumeric;
use rand::Rng;
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection};

/// Which kind of store a measurement runs on.
#[derive(Debug, Clone)]
pub enum Backend {
    Sqlite,
    /// The server's URL as given: a fresh database is created on it for every measurement.
    Postgres {
        server_url: String,
    },
}

impl Backend {
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres { .. } => "postgres",
        }
    }
}

/// A store nobody has written to yet. Call [`FreshStore::remove`] when done.
pub struct FreshStore {
    /// The SQLite directory (unused but harmless for PostgreSQL).
    dir: tempfile::TempDir,
    postgres: Option<FreshDatabase>,
}

struct FreshDatabase {
    server_url: String,
    name: String,
    url: String,
}

impl FreshStore {
    pub async fn create(backend: &Backend) -> anyhow::Result<Self> {
        let dir = tempfile::Builder::new()
            .prefix("cdp-bench-")
            .tempdir()
            .context("failed to create a temporary directory")?;
        let postgres = match backend {
            Backend::Sqlite => None,
            Backend::Postgres { server_url } => Some(FreshDatabase::create(server_url).await?),
        };
        Ok(Self { dir, postgres })
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }

    /// A service configuration on this store: loopback, port 0, no NATS, no credentials yet.
    pub fn config(&self) -> Config {
        let mut config = Config::local(self.data_dir());
        config.database_url = self.postgres.as_ref().map(|p| p.url.clone());
        config
    }

    /// Opens the store directly (migrations applied), for physical references.
    pub async fn open(&self) -> anyhow::Result<Store> {
        match &self.postgres {
            Some(p) => Store::connect(&p.url)
                .await
                .with_context(|| format!("failed to open PostgreSQL database {}", p.name)),
            None => Store::open_embedded(self.dir.path())
                .await
                .with_context(|| format!("failed to open SQLite in {}", self.dir.path().display())),
        }
    }

    /// Drops the database (PostgreSQL) and deletes the directory.
    pub async fn remove(self) -> anyhow::Result<()> {
        if let Some(p) = self.postgres {
            p.drop().await?;
        }
        let path = self.dir.path().display().to_string();
        self.dir
            .close()
            .with_context(|| format!("failed to delete {path}"))
    }
}

impl FreshDatabase {
    async fn create(server_url: &str) -> anyhow::Result<Self> {
        let suffix: String = rand::thread_rng()
            .sample_iter(&Alphanumeric)
            .take(10)
            .map(|b| char::from(b).to_ascii_lowercase())
            .collect();
        let name = format!("cdp_bench_{suffix}");
        let mut url = reqwest::Url::parse(server_url)
            .with_context(|| format!("--database-url {} is not a URL", redacted(server_url)))?;
        if !matches!(url.scheme(), "postgres" | "postgresql") {
            anyhow::bail!(
                "--database-url must be postgres://…, not {:?}",
                url.scheme()
            );
        }
        url.set_path(&format!("/{name}"));
        let mut admin = admin_connection(server_url).await?;
        sqlx::query(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
            .with_context(|| format!("failed to create database {name}"))?;
        admin.close().await.ok();
        Ok(Self {
            server_url: server_url.to_owned(),
            name,
            url: url.into(),
        })
    }

    async fn drop(self) -> anyhow::Result<()> {
        let mut admin = admin_connection(&self.server_url).await?;
        // FORCE ends connections of pools that are still closing.
        sqlx::query(&format!(
            "DROP DATABASE IF EXISTS {} WITH (FORCE)",
            self.name
        ))
        .execute(&mut admin)
        .await
        .with_context(|| format!("failed to drop database {}", self.name))?;
        admin.close().await.ok();
        Ok(())
    }
}

/// A connection to the server for CREATE and DROP DATABASE (which may be slow: not logged as such).
/// The PostgreSQL server's version and the settings that size its writing (shared buffers, WAL between
/// checkpoints), as a line of the report's header: the same engine runs at a different speed under
/// other settings.
pub async fn postgres_settings(server_url: &str) -> anyhow::Result<String> {
    let mut admin = admin_connection(server_url).await?;
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT name, current_setting(name) FROM unnest(ARRAY['server_version', 'shared_buffers', \
         'max_wal_size', 'checkpoint_timeout', 'synchronous_commit', 'autovacuum']) AS s(name)",
    )
    .fetch_all(&mut admin)
    .await
    .context("failed to read PostgreSQL's settings")?;
    admin.close().await.ok();
    Ok(rows
        .iter()
        .map(|(name, value)| format!("{name}={value}"))
        .collect::<Vec<_>>()
        .join(", "))
}

async fn admin_connection(server_url: &str) -> anyhow::Result<sqlx::PgConnection> {
    let options = PgConnectOptions::from_str(server_url)
        .with_context(|| format!("--database-url {} is not valid", redacted(server_url)))?
        .disable_statement_logging();
    sqlx::PgConnection::connect_with(&options)
        .await
        .with_context(|| {
            format!(
                "failed to connect to PostgreSQL at {}",
                redacted(server_url)
            )
        })
}

/// The URL without its password, for messages.
fn redacted(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some("***"));
            }
            u.into()
        }
        Err(_) => "(an unparsable URL)".to_owned(),
    }
}
