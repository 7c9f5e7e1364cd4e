//! The edges of cdp — HTTP (axum) and NATS (async-nats) — and the `cdp` binary's commands.
//!
//! `Application::build` opens the store, provisions credentials, starts the appender, the projection
//! runner and the NATS consumer, and binds the listener (port 0 allowed) so tests run the real server.

pub mod appended;
pub mod audit;
pub mod audit_slot;
pub mod auth;
pub mod backfill;
pub mod catalog;
pub mod cli;
pub mod config;
pub mod consent;
pub mod console;
pub mod edge;
pub mod erasure;
pub mod error;
pub mod export;
pub mod extract;
pub mod ingest;
pub mod limits;
pub mod metrics;
pub mod nats;
pub mod openapi;
mod openapi_definitions;
mod openapi_preview;
pub mod operate;
pub mod ops;
pub mod outage;
pub mod preview;
pub mod process;
pub mod provision;
pub mod publish;
pub mod quality;
pub mod read;
pub mod replay_cli;
pub mod schema;
pub mod segments;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use cdp_domain::store::{Appender, EventStore, Store};
use cdp_domain::workspace::Credential;
use cdp_projections::identity::IdentityResolver;
use cdp_projections::lease::Presence;
use cdp_projections::partitions::Part;
use cdp_projections::{runner, RunnerHandle, RunnerStatus};
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio::task::JoinHandle;

pub use config::Config;
pub use provision::GeneratedCredentials;

/// What every handler shares.
pub struct AppState {
    /// The event log and the read models.
    pub store: Store,
    /// The group-commit writer of ingested events.
    pub appender: Appender,
    pub metrics: metrics::Metrics,
    /// SHA-256 of a secret → its credential (or its absence), for 30 s.
    pub credentials: moka::sync::Cache<String, Option<Credential>>,
    workspaces: moka::sync::Cache<String, bool>,
    pub identity: Arc<RunnerStatus>,
    /// This instance's name (`CDP_INSTANCE`): the owner of the partition leases it holds.
    pub instance: String,
    /// Wakes the projection runners after an append.
    pub wakers: Vec<Arc<Notify>>,
    pub nats: Option<async_nats::Client>,
    /// Each workspace's catalog, for a second (the profile view computes trait values with it).
    catalogs: moka::sync::Cache<String, Arc<cdp_domain::catalog::Catalog>>,
    /// Every message of the outbox as it is published (tag changes), for in-process subscribers.
    pub bus: tokio::sync::broadcast::Sender<publish::Published>,
    /// Per-workspace rate limits (`CDP_RATE_INGEST`, `CDP_RATE_API`).
    pub limits: limits::Limits,
    /// Whether the database is out of reach, and for how long it was.
    pub outage: outage::Outage,
    /// The phone region of each workspace `CDP_CONFIG` gives one (`[workspace.identity] phone_region`).
    pub phone_regions: std::collections::HashMap<String, cdp_domain::ident::PhoneRegion>,
    /// Hot profiles' 360° views in memory, kept exact by the resolver of this process.
    pub views: cdp_projections::profiles::view_cache::ViewCache,
    /// The audience index of each workspace (built in the background), told of every batch by the
    /// resolver.
    pub audiences: cdp_projections::audience::Audiences,
}

impl AppState {
    /// The region `workspace` reads phone numbers without a country code in (`CN` by default).
    pub fn phone_region(
        &self,
        workspace: &cdp_domain::ident::WorkspaceId,
    ) -> cdp_domain::ident::PhoneRegion {
        self.phone_regions
            .get(workspace.as_str())
            .copied()
            .unwrap_or_default()
    }

    /// Drops the cached catalog of `workspace` (after this instance changed it).
    pub fn forget_catalog(&self, workspace: &cdp_domain::ident::WorkspaceId) {
        self.catalogs.invalidate(workspace.as_str());
    }

    /// The catalog in force in `workspace` (at most a second old).
    pub async fn catalog(
        &self,
        workspace: &cdp_domain::ident::WorkspaceId,
    ) -> Result<Arc<cdp_domain::catalog::Catalog>, error::ApiError> {
        if let Some(c) = self.catalogs.get(workspace.as_str()) {
            return Ok(c);
        }
        let c = Arc::new(cdp_projections::catalog::load(&self.store, workspace).await?);
        self.catalogs.insert(workspace.to_string(), c.clone());
        Ok(c)
    }

    /// Whether the workspace exists, through a short cache (NATS asks this per message); an error when
    /// the database could not say.
    pub async fn workspace_known(&self, id: &str) -> Result<bool, error::ApiError> {
        if id.is_empty() {
            return Ok(false);
        }
        if let Some(known) = self.workspaces.get(id) {
            return Ok(known);
        }
        let known = self.store.workspace_exists(id).await?;
        self.workspaces.insert(id.to_owned(), known);
        Ok(known)
    }
}

/// A built, bound, not yet serving service.
pub struct Application {
    listener: TcpListener,
    router: Router,
    state: Arc<AppState>,
    generated: Option<GeneratedCredentials>,
    _runners: Vec<RunnerHandle>,
    /// This instance's row among those running the engine, when it runs in parts.
    _presence: Option<Presence>,
    nats_task: Option<JoinHandle<()>>,
    _publisher: publish::Publisher,
    /// The scheduled batch side (`CDP_BATCH_INTERVAL`).
    _batch: Option<publish::BackgroundTask>,
    /// A rebuild of a model built by another code version (or an interrupted one), started at start.
    _rebuild: Option<publish::BackgroundTask>,
    /// Builds each workspace's audience index once the resolver has caught up, and again when one
    /// cannot follow the resolver (`Audiences::keep_built`).
    _audiences: publish::BackgroundTask,
    /// Empties the profiles' views when another writer moved the model (`ViewCache::watch`).
    _view_watcher: publish::BackgroundTask,
    /// Appends announced to, and heard from, the other instances (PostgreSQL).
    _appended: Option<(publish::BackgroundTask, publish::BackgroundTask)>,
}

impl Application {
    /// Opens the store, provisions credentials, starts the appender, the resolver, the publisher and the
    /// NATS consumer, and binds the listener; serving starts with [`Application::run_until_stopped`].
    pub async fn build(config: Config) -> anyhow::Result<Self> {
        let store = match &config.database_url {
            Some(url) => Store::connect(url)
                .await
                .with_context(|| "failed to open the database at CDP_DATABASE_URL")?,
            None => Store::open_embedded(&config.data_dir)
                .await
                .with_context(|| {
                    format!(
                        "failed to open the embedded database in {}",
                        config.data_dir.display()
                    )
                })?,
        };
        let generated = provision::provision(&store, &config).await?;
        let config_file = match &config.config_file {
            Some(path) => Some(config::ConfigFile::load(path)?),
            None => None,
        };
        let phone_regions = config_file
            .as_ref()
            .map(config::ConfigFile::phone_regions)
            .unwrap_or_default();
        let appender = Appender::spawn(store.clone());
        let audiences = cdp_projections::audience::Audiences::default();
        let views = cdp_projections::profiles::view_cache::ViewCache::with_bytes(
            config.view_cache_mb.saturating_mul(1 << 20),
        );
        let instance = config.instance_name();
        let announce = Arc::new(tokio::sync::Notify::new());
        let parts = cdp_projections::partitions::settle(&store, config.engine_partitions)
            .await
            .context("failed to read the engine's partitions")?;
        let engine = Arc::new(RunnerStatus::default());
        let resolvers: Vec<RunnerHandle> = Part::all(parts)
            .into_iter()
            .map(|part| {
                let resolver = IdentityResolver::default()
                    .holding(config.held_profiles / parts as usize)
                    .caching_views(views.clone())
                    .in_part(part);
                // The audience indexes follow one resolver's batches; in parts they are read again
                // from the tables when the model moved.
                let resolver = if parts == 1 {
                    resolver.reporting_to(audiences.clone())
                } else {
                    resolver
                };
                runner::spawn_sharing(
                    store.clone(),
                    resolver,
                    instance.clone(),
                    engine.clone(),
                    parts,
                )
            })
            .collect();
        let presence = (parts > 1).then(|| Presence::keep(store.clone(), instance.clone()));
        let view_watcher =
            publish::BackgroundTask::from(tokio::spawn(views.clone().watch(store.clone())));
        let nats = match &config.nats_url {
            Some(url) => Some(
                async_nats::connect(url)
                    .await
                    .with_context(|| format!("failed to connect to NATS at {url}"))?,
            ),
            None => None,
        };
        let state = Arc::new(AppState {
            store,
            appender,
            metrics: metrics::Metrics::default(),
            credentials: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
            workspaces: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(30))
                .build(),
            identity: engine,
            instance,
            wakers: resolvers
                .iter()
                .map(RunnerHandle::waker)
                .chain([announce.clone()])
                .collect(),
            nats: nats.clone(),
            catalogs: moka::sync::Cache::builder()
                .max_capacity(10_000)
                .time_to_live(Duration::from_secs(1))
                .build(),
            bus: tokio::sync::broadcast::channel(4_096).0,
            limits: config.limits(),
            outage: outage::Outage::default(),
            phone_regions,
            views,
            audiences,
        });
        let out = publish::OutTopology {
            stream: config.out_stream_name(),
            subject_prefix: config.out_subject_prefix(),
        };
        if let Some(client) = &nats {
            publish::ensure_stream(client, &out).await?;
        }
        let batch = (config.batch_interval > 0).then(|| {
            let store = state.store.clone();
            let every = Duration::from_secs(config.batch_interval);
            publish::BackgroundTask::from(tokio::spawn(async move {
                loop {
                    tokio::time::sleep(every).await;
                    if let Err(e) = cdp_replay::batch(&store).await {
                        tracing::error!(error = %e, "the scheduled batch failed");
                    }
                }
            }))
        });
        // Decided before any traffic: a model is outdated by its code version, never by the events
        // that arrive while the check runs.
        let outdated =
            cdp_replay::rebuild::needs_rebuild(&state.store, &IdentityResolver::default()).await?;
        let held_profiles = config.held_profiles;
        let rebuild = outdated.then(|| {
            let store = state.store.clone();
            publish::BackgroundTask::from(tokio::spawn(async move {
                let resolver = IdentityResolver::default().holding(held_profiles);
                match cdp_replay::rebuild::rebuild_if_outdated(&store, &resolver, &|p| {
                    if p.phase != cdp_replay::rebuild::Phase::CatchingUp {
                        tracing::info!(phase = ?p.phase, applied = p.applied, "rebuild");
                    }
                })
                .await
                {
                    Ok(Some(r)) => tracing::info!(
                        applied = r.applied,
                        rows = r.rows,
                        seconds = r.seconds,
                        "the model was rebuilt from the log and switched in"
                    ),
                    Ok(None) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "the rebuild at start failed; `cdp replay rebuild --all` resumes it")
                    }
                }
            }))
        });
        let appended = appended::spawn(
            &state.store,
            announce,
            resolvers.iter().map(RunnerHandle::waker).collect(),
            (state.identity.clone(), parts as usize),
        );
        let audience_builder =
            publish::BackgroundTask::from(tokio::spawn(state.audiences.clone().keep_built(
                state.store.clone(),
                state.identity.clone(),
                parts == 1,
            )));
        let publisher = publish::spawn(
            state.store.clone(),
            nats.clone().map(|c| (c, out)),
            state.bus.clone(),
            state.identity.clone(),
            state.instance.clone(),
        );
        let nats_task = match nats {
            Some(client) => {
                let topology = nats::IngestTopology {
                    stream: config.ingest_stream_name(),
                    subject_prefix: config.ingest_subject_prefix(),
                };
                let consumer = nats::ensure_consumer(&client, &topology).await?;
                Some(tokio::spawn(nats::consume(
                    state.clone(),
                    consumer,
                    topology,
                )))
            }
            None => None,
        };
        let router = Router::new()
            .merge(ingest::router())
            .merge(read::router())
            .merge(quality::router())
            .merge(operate::router())
            .merge(catalog::router())
            .merge(segments::router())
            .merge(consent::router())
            .merge(erasure::router())
            .merge(schema::router())
            .merge(ops::router())
            .merge(audit::router())
            .merge(console::router())
            .route_layer(axum::middleware::from_fn_with_state(
                state.clone(),
                audit::record,
            ))
            .fallback(|| async { error::ApiError::not_found("no such endpoint") })
            .layer(axum::middleware::from_fn_with_state(
                state.clone(),
                outage::watch,
            ))
            .layer(axum::middleware::from_fn(edge::refuse_nul))
            .layer(axum::middleware::from_fn(edge::trace_request))
            .with_state(state.clone());
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("failed to listen on {}", config.listen))?;
        Ok(Self {
            listener,
            router,
            state,
            generated,
            _runners: resolvers,
            _presence: presence,
            nats_task,
            _publisher: publisher,
            _batch: batch,
            _rebuild: rebuild,
            _audiences: audience_builder,
            _view_watcher: view_watcher,
            _appended: appended,
        })
    }

    /// The bound address (the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("a bound listener has an address")
    }

    /// The bound port.
    pub fn port(&self) -> u16 {
        self.local_addr().port()
    }

    /// What the handlers share: the store, the resolver's status, the bus, …
    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// Credentials made for the `default` workspace on a first start without configuration.
    pub fn generated_credentials(&self) -> Option<&GeneratedCredentials> {
        self.generated.as_ref()
    }

    /// Serves until ctrl-c (or SIGTERM).
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        let Self {
            listener,
            router,
            nats_task,
            _runners,
            _presence,
            _publisher,
            _batch,
            state,
            ..
        } = self;
        axum::serve(listener, router)
            .with_graceful_shutdown(shutdown_signal())
            .await
            .context("HTTP server failed")?;
        if let Some(task) = nats_task {
            task.abort();
        }
        // The engine's partitions given up, for another instance to take at once.
        for runner in _runners {
            runner.shut_down(Duration::from_secs(3)).await;
        }
        if let Some(presence) = _presence {
            presence.shut_down(&state.store).await;
        }
        _publisher.shut_down().await;
        Ok(())
    }
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    tracing::info!("shutting down");
}
