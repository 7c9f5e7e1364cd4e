//! Shared machinery of the suite: the backends to run on, `spawn_app` (the real server in-process on a free
//! loopback port, over a fresh database), a fresh PostgreSQL database per test, an isolated NATS namespace
//! per test, HTTP helpers, and `eventually` (poll with a deadline instead of sleeping).

use std::fmt;
use std::future::Future;
use std::io::Write;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use async_nats::jetstream;
use cdp_api::{AppState, Application, Config};
use cdp_domain::event::{Position, StoredEvent};
use cdp_domain::store::{EventStore, Store};
use flate2::write::GzEncoder;
use flate2::Compression;
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sqlx::{Connection, Executor, PgConnection};
use tokio::task::JoinHandle;

/// The workspace and credentials every app is bootstrapped with.
pub const WORKSPACE: &str = "shop";

/// [`WORKSPACE`] as the library functions take it.
pub fn workspace_id() -> cdp_domain::ident::WorkspaceId {
    cdp_domain::ident::WorkspaceId::parse(WORKSPACE).unwrap()
}
pub const WRITE_KEY: &str = "wk_e2e_shop";
pub const ADMIN_TOKEN: &str = "tok_e2e_shop_admin";

/// How long `eventually` waits before failing.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The event log behind an app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

impl fmt::Display for Backend {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        })
    }
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// `CDP_TEST_DATABASE_URL`: a PostgreSQL server the suite may create databases on.
pub fn postgres_url() -> Option<String> {
    env_var("CDP_TEST_DATABASE_URL")
}

/// `CDP_TEST_NATS_URL`: a NATS server with JetStream.
pub fn nats_url() -> Option<String> {
    env_var("CDP_TEST_NATS_URL")
}

/// Writes straight to the process's stderr, past the test harness's capture, so that a skipped variant
/// shows in every run's output (once), not only when a test fails.
fn notice_once(once: &'static Once, text: &str) {
    once.call_once(|| {
        let _ = writeln!(std::io::stderr(), "\n*** {text} ***\n");
    });
}

/// SQLite always; PostgreSQL too when `CDP_TEST_DATABASE_URL` is set (says so when it is not).
pub fn backends(test: &str) -> Vec<Backend> {
    static SKIPPED: Once = Once::new();
    let mut backends = vec![Backend::Sqlite];
    if postgres_url().is_some() {
        backends.push(Backend::Postgres);
    } else {
        notice_once(
            &SKIPPED,
            "CDP_TEST_DATABASE_URL is not set: the PostgreSQL variants of the e2e tests are SKIPPED",
        );
        eprintln!("{test}: PostgreSQL variant skipped (CDP_TEST_DATABASE_URL is not set)");
    }
    backends
}

/// Whether the NATS tests can run; says so when they cannot.
pub fn nats_available(test: &str) -> bool {
    static SKIPPED: Once = Once::new();
    if nats_url().is_some() {
        return true;
    }
    notice_once(
        &SKIPPED,
        "CDP_TEST_NATS_URL is not set: the NATS e2e tests are SKIPPED",
    );
    eprintln!("{test}: skipped (CDP_TEST_NATS_URL is not set)");
    false
}

/// Runs `body` once per available backend, concurrently, and fails naming every backend it failed on.
pub async fn on_each_backend<F, Fut>(test: &str, body: F)
where
    F: Fn(Backend) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let runs: Vec<(Backend, JoinHandle<()>)> = backends(test)
        .into_iter()
        .map(|backend| (backend, tokio::spawn(body(backend))))
        .collect();
    let mut failures = Vec::new();
    for (backend, run) in runs {
        if let Err(e) = run.await {
            let message = if e.is_panic() {
                let panic = e.into_panic();
                panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_else(|| "panicked".to_owned())
            } else {
                e.to_string()
            };
            failures.push(format!("[{backend}] {message}"));
        }
    }
    assert!(
        failures.is_empty(),
        "{test} failed on {} backend(s):\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Polls `probe` until it answers `Ok`, for at most [`DEADLINE`]; the `Err` text of the last attempt
/// is in the failure message.
pub async fn eventually<T, F, Fut>(what: &str, mut probe: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) if started.elapsed() > DEADLINE => {
                panic!("timed out after {DEADLINE:?} waiting for {what}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    }
}

/// Runs an async clean-up to completion from a `Drop`, on a runtime of its own (the test's runtime may be
/// shutting down or be the one blocked here).
fn run_detached<F>(cleanup: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let thread = std::thread::spawn(move || {
        let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
        else {
            return;
        };
        runtime.block_on(async {
            let _ = tokio::time::timeout(Duration::from_secs(15), cleanup).await;
        });
    });
    let _ = thread.join();
}

static TRACING: Once = Once::new();

/// Logs go to a sink unless `TEST_LOG` is set (then to the test output, filtered by `RUST_LOG`).
pub fn init_tracing() {
    TRACING.call_once(|| {
        let filter = tracing_subscriber::EnvFilter::try_from_default_env()
            .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,sqlx=warn"));
        let builder = tracing_subscriber::fmt().with_env_filter(filter);
        let _ = if env_var("TEST_LOG").is_some() {
            builder.with_test_writer().try_init()
        } else {
            builder.with_writer(std::io::sink).try_init()
        };
    });
}

/// A database of its own on the `CDP_TEST_DATABASE_URL` server, dropped (with its connections) at the end.
pub struct PgDatabase {
    pub url: String,
    name: String,
    admin_url: String,
}

impl PgDatabase {
    pub async fn create() -> Self {
        let admin_url = postgres_url().expect("CDP_TEST_DATABASE_URL is set");
        let name = format!("cdp_test_{}", uuid::Uuid::new_v4().simple());
        let mut conn = PgConnection::connect(&admin_url)
            .await
            .unwrap_or_else(|e| panic!("cannot connect to CDP_TEST_DATABASE_URL: {e}"));
        let sql = format!("CREATE DATABASE {name}");
        let mut attempt = 0;
        loop {
            // Concurrent CREATE DATABASE may find the template busy for a moment.
            match conn.execute(sql.as_str()).await {
                Ok(_) => break,
                Err(e)
                    if attempt < 20 && e.to_string().contains("being accessed by other users") =>
                {
                    attempt += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("cannot create test database {name}: {e}"),
            }
        }
        let _ = conn.close().await;
        let mut url = reqwest::Url::parse(&admin_url).expect("CDP_TEST_DATABASE_URL is a URL");
        url.set_path(&name);
        Self {
            url: url.to_string(),
            name,
            admin_url,
        }
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if env_var("CDP_TEST_KEEP_DATABASES").is_some() {
            return;
        }
        let admin_url = self.admin_url.clone();
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        run_detached(async move {
            if let Ok(mut conn) = PgConnection::connect(&admin_url).await {
                let _ = conn.execute(sql.as_str()).await;
                let _ = conn.close().await;
            }
        });
    }
}

/// A fresh, empty event log on `backend`, for tests of the store itself. Keep the guard alive as long as
/// the store is used.
pub async fn fresh_store(backend: Backend) -> (Store, StoreGuard) {
    match backend {
        Backend::Sqlite => {
            let dir = tempfile::tempdir().expect("a temporary directory");
            let store = Store::open_embedded(dir.path())
                .await
                .expect("the embedded store opens");
            (
                store,
                StoreGuard {
                    _dir: Some(dir),
                    _database: None,
                },
            )
        }
        Backend::Postgres => {
            let database = PgDatabase::create().await;
            let store = Store::connect(&database.url)
                .await
                .expect("the PostgreSQL store opens");
            (
                store,
                StoreGuard {
                    _dir: None,
                    _database: Some(database),
                },
            )
        }
    }
}

/// Keeps a fresh store's directory or database alive (and drops the database at the end).
pub struct StoreGuard {
    _dir: Option<tempfile::TempDir>,
    _database: Option<PgDatabase>,
}

/// An isolated NATS namespace: the app's ingest stream is `CDP_INGEST_<ns>`, its subjects
/// `<ns>.cdp.ingest.<workspace>`. The stream is deleted at the end.
pub struct NatsSetup {
    pub url: String,
    pub namespace: String,
    pub stream: String,
    pub subject_prefix: String,
    pub js: jetstream::Context,
}

impl NatsSetup {
    pub fn subject(&self, workspace: &str) -> String {
        format!("{}{workspace}", self.subject_prefix)
    }

    /// Publishes `payload` with `Nats-Msg-Id` and waits for the stream's acknowledgement.
    pub async fn publish(&self, workspace: &str, msg_id: &str, payload: &str) -> bool {
        let publish = jetstream::context::Publish::build()
            .payload(payload.to_owned().into())
            .message_id(msg_id);
        let ack = self
            .js
            .send_publish(self.subject(workspace), publish)
            .await
            .expect("publish to JetStream")
            .await
            .expect("JetStream acknowledges the publish");
        assert_eq!(ack.stream, self.stream, "published into the test's stream");
        ack.duplicate
    }

    /// The durable ingest consumer's (pending, ack pending) counts.
    pub async fn consumer_backlog(&self) -> (u64, usize) {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .expect("the ingest stream exists");
        let info = stream
            .consumer_info(cdp_api::nats::CONSUMER)
            .await
            .expect("the ingest consumer exists");
        (info.num_pending, info.num_ack_pending)
    }
}

impl Drop for NatsSetup {
    fn drop(&mut self) {
        let url = self.url.clone();
        let stream = self.stream.clone();
        run_detached(async move {
            if let Ok(client) = async_nats::connect(url).await {
                let _ = jetstream::new(client).delete_stream(stream).await;
            }
        });
    }
}

/// How to start an app besides the backend.
#[derive(Debug, Default)]
pub struct Options {
    /// Ingest from NATS too, in a namespace of its own (requires `CDP_TEST_NATS_URL`).
    pub nats: bool,
    /// The text of a `CDP_CONFIG` file to start with.
    pub config_toml: Option<String>,
    /// Leave out the bootstrap workspace and credentials.
    pub no_bootstrap: bool,
    /// Share this PostgreSQL database (another instance's) instead of creating a fresh one.
    pub database_url: Option<String>,
    /// Per-workspace rate limits (`CDP_RATE_INGEST`, `CDP_RATE_API`, `CDP_RATE_BURST`) instead of the
    /// defaults.
    pub rate_limits: Option<(u32, u32, f64)>,
}

/// The real service, serving on a free loopback port over a fresh database.
pub struct TestApp {
    pub address: String,
    pub state: Arc<AppState>,
    pub client: reqwest::Client,
    pub nats: Option<NatsSetup>,
    server: JoinHandle<()>,
    _dir: tempfile::TempDir,
    _database: Option<PgDatabase>,
}

impl Drop for TestApp {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub async fn spawn_app(backend: Backend) -> TestApp {
    spawn_app_with(backend, Options::default()).await
}

pub async fn spawn_app_with(backend: Backend, options: Options) -> TestApp {
    init_tracing();
    let dir = tempfile::tempdir().expect("a temporary directory");
    let database = match (backend, &options.database_url) {
        (Backend::Postgres, None) => Some(PgDatabase::create().await),
        _ => None,
    };
    let mut config = Config::local(dir.path().join("data"));
    config.database_url = database
        .as_ref()
        .map(|d| d.url.clone())
        .or(options.database_url.clone());
    if !options.no_bootstrap {
        config.bootstrap_workspace = Some(WORKSPACE.into());
        config.bootstrap_write_key = Some(WRITE_KEY.into());
        config.bootstrap_admin_token = Some(ADMIN_TOKEN.into());
    }
    if let Some((ingest, api, burst)) = options.rate_limits {
        config.rate_ingest = ingest;
        config.rate_api = api;
        config.rate_burst = burst;
    }
    if let Some(text) = &options.config_toml {
        let path = dir.path().join("cdp.toml");
        std::fs::write(&path, text).expect("write the CDP_CONFIG file");
        config.config_file = Some(path);
    }
    let nats_url = if options.nats {
        let url = nats_url().expect("CDP_TEST_NATS_URL is set for a NATS test");
        config.nats_url = Some(url.clone());
        config.nats_namespace = format!("t{}", uuid::Uuid::new_v4().simple());
        Some(url)
    } else {
        None
    };
    let app = Application::build(config.clone())
        .await
        .unwrap_or_else(|e| panic!("the application builds on {backend}: {e:#}"));
    let address = format!("http://127.0.0.1:{}", app.port());
    let state = app.state();
    let server = tokio::spawn(async move {
        if let Err(e) = app.run_until_stopped().await {
            eprintln!("the server stopped: {e:#}");
        }
    });
    let nats = match nats_url {
        Some(url) => {
            let client = async_nats::connect(url.as_str())
                .await
                .expect("connect to CDP_TEST_NATS_URL");
            Some(NatsSetup {
                url,
                namespace: config.nats_namespace.clone(),
                stream: config.ingest_stream_name(),
                subject_prefix: config.ingest_subject_prefix(),
                js: jetstream::new(client),
            })
        }
        None => None,
    };
    TestApp {
        address,
        state,
        client: http_client(),
        nats,
        server,
        _dir: dir,
        _database: database,
    }
}

pub fn http_client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("an HTTP client")
}

/// How an ingestion request authenticates.
#[derive(Debug, Clone, Copy)]
pub enum Auth<'a> {
    /// HTTP Basic with the key as user name and an empty password, as Segment's libraries send it.
    Basic(&'a str),
    Bearer(&'a str),
    None,
}

/// A response's status and its body as JSON (`Null` when it is not JSON).
pub async fn read_json(response: reqwest::Response) -> (StatusCode, Value) {
    let status = response.status();
    let text = response.text().await.expect("a response body");
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// gzip of `bytes`.
pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::default());
    encoder.write_all(bytes).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    pub fn request(&self, method: Method, path: &str, auth: Auth<'_>) -> reqwest::RequestBuilder {
        let request = self.client.request(method, self.url(path));
        match auth {
            Auth::Basic(key) => request.basic_auth(key, Some("")),
            Auth::Bearer(token) => request.bearer_auth(token),
            Auth::None => request,
        }
    }

    /// POSTs raw bytes as JSON, gzipped on the wire when asked.
    pub async fn post_bytes(
        &self,
        path: &str,
        auth: Auth<'_>,
        body: Vec<u8>,
        gzipped: bool,
    ) -> (StatusCode, Value) {
        let mut request = self
            .request(Method::POST, path, auth)
            .header(reqwest::header::CONTENT_TYPE, "application/json");
        if gzipped {
            request = request.header(reqwest::header::CONTENT_ENCODING, "gzip");
        }
        let response = request
            .body(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        read_json(response).await
    }

    /// POSTs JSON with the bootstrap write key over HTTP Basic.
    pub async fn post(&self, path: &str, body: &Value) -> (StatusCode, Value) {
        self.post_as(path, Auth::Basic(WRITE_KEY), body).await
    }

    pub async fn post_as(&self, path: &str, auth: Auth<'_>, body: &Value) -> (StatusCode, Value) {
        self.post_bytes(path, auth, body.to_string().into_bytes(), false)
            .await
    }

    pub async fn put_as(&self, path: &str, body: &Value, auth: Auth<'_>) -> (StatusCode, Value) {
        let response = self
            .request(Method::PUT, path, auth)
            .json(body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("PUT {path}: {e}"));
        read_json(response).await
    }

    pub async fn get_as(&self, path: &str, auth: Auth<'_>) -> (StatusCode, Value) {
        let response = self
            .request(Method::GET, path, auth)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        read_json(response).await
    }

    /// `GET /v1/profiles/lookup` with `token`.
    pub async fn lookup_as(&self, token: &str, id_type: &str, value: &str) -> (StatusCode, Value) {
        let response = self
            .request(Method::GET, "/v1/profiles/lookup", Auth::Bearer(token))
            .query(&[("type", id_type), ("value", value)])
            .send()
            .await
            .expect("GET /v1/profiles/lookup");
        read_json(response).await
    }

    pub async fn lookup(&self, id_type: &str, value: &str) -> (StatusCode, Value) {
        self.lookup_as(ADMIN_TOKEN, id_type, value).await
    }

    /// Waits until the profile view of the identifier exists and satisfies `ready`; returns it.
    pub async fn profile_when(
        &self,
        id_type: &str,
        value: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        self.profile_as_when(ADMIN_TOKEN, id_type, value, ready)
            .await
    }

    pub async fn profile_as_when(
        &self,
        token: &str,
        id_type: &str,
        value: &str,
        ready: impl Fn(&Value) -> bool,
    ) -> Value {
        let ready = &ready;
        eventually(
            &format!("the profile of {id_type} {value:?}"),
            || async move {
                let (status, body) = self.lookup_as(token, id_type, value).await;
                if status == StatusCode::OK && ready(&body) {
                    Ok(body)
                } else {
                    Err(format!("{status} {body}"))
                }
            },
        )
        .await
    }

    /// Waits until the profile has `count` events of the given type.
    pub async fn profile_with_count(
        &self,
        id_type: &str,
        value: &str,
        kind: &str,
        count: u64,
    ) -> Value {
        self.profile_when(id_type, value, |p| {
            p["event_counts"]["by_type"][kind].as_u64() == Some(count)
        })
        .await
    }

    /// The workspace's quarantine, newest first, through the API.
    pub async fn quarantine_as(&self, token: &str) -> Vec<Value> {
        let (status, body) = self.get_as("/v1/quarantine", Auth::Bearer(token)).await;
        assert_eq!(status, StatusCode::OK, "GET /v1/quarantine: {body}");
        let items = body["items"].as_array().cloned().unwrap_or_default();
        // The first page counts every refusal by reason and field: each one listed is counted.
        let by_reason = body["by_reason"].as_array().cloned().unwrap_or_default();
        let counted: i64 = by_reason.iter().filter_map(|r| r["count"].as_i64()).sum();
        assert_eq!(body["total"].as_i64(), Some(counted), "{body}");
        assert!(counted >= items.len() as i64, "{body}");
        for item in &items {
            let count = by_reason
                .iter()
                .find(|r| r["code"] == item["code"] && r["field"] == item["field"])
                .and_then(|r| r["count"].as_i64());
            assert!(
                count.is_some_and(|n| n >= 1),
                "{item} not counted in {body}"
            );
        }
        items
    }

    pub async fn quarantine(&self) -> Vec<Value> {
        self.quarantine_as(ADMIN_TOKEN).await
    }

    /// Events of a workspace in the log, counted by the store.
    pub async fn count_events_in(&self, workspace: &str) -> i64 {
        self.state
            .store
            .count_events(workspace)
            .await
            .expect("count events")
    }

    pub async fn count_events(&self) -> i64 {
        self.count_events_in(WORKSPACE).await
    }

    /// Every event of the log in its global order, once at least `expected` are readable.
    pub async fn read_log(&self, expected: usize) -> Vec<StoredEvent> {
        eventually(
            &format!("{expected} events readable from the log"),
            || async {
                let events = read_all(&self.state.store).await;
                if events.len() >= expected {
                    Ok(events)
                } else {
                    Err(format!("{} events", events.len()))
                }
            },
        )
        .await
    }
}

/// Every event readable now, following `read_after` from the start.
pub async fn read_all(store: &Store) -> Vec<StoredEvent> {
    let mut all = Vec::new();
    let mut after = Position::START;
    loop {
        let page = store.read_after(after, 500).await.expect("read_after");
        let Some(last) = page.last() else {
            return all;
        };
        after = last.position;
        all.extend(page);
    }
}

/// The log's rows as stored, bypassing the store's reads: each event's `payload` column and its
/// `sealed` bytes, in the order of the log.
pub async fn raw_log(store: &Store) -> Vec<(String, Option<Vec<u8>>)> {
    let sql = "SELECT payload, sealed FROM events ORDER BY seq";
    match store {
        Store::Sqlite(s) => sqlx::query_as(sql).fetch_all(s.read_pool()).await,
        Store::Postgres(s) => sqlx::query_as(sql).fetch_all(s.pool()).await,
    }
    .expect("the raw log")
}

/// [`raw_log`] as text, one row per line, the sealed bytes shown lossily (anything personal kept in the
/// clear would show).
pub async fn raw_log_text(store: &Store) -> String {
    raw_log(store)
        .await
        .iter()
        .map(|(payload, sealed)| {
            format!(
                "{payload}{}",
                String::from_utf8_lossy(sealed.as_deref().unwrap_or_default())
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// A track message of `user` with an explicit messageId.
pub fn track(user: &str, event: &str, message_id: &str) -> Value {
    json!({
        "type": "track",
        "userId": user,
        "event": event,
        "messageId": message_id,
        "properties": {"sku": "A-1", "price": 12.5},
    })
}

/// A free loopback port (bound and released; good enough for a child process started right after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// Defines the segment `buyers` (at least one `Order Completed`) as the admin.
pub async fn define_buyers(app: &TestApp) {
    let (status, body) = app
        .put_as(
            "/v1/segments/buyers",
            &serde_json::json!({"name": "Buyers", "condition":
                {"event": "Order Completed", "count": {"op": "gte", "value": 1}}}),
            Auth::Bearer(ADMIN_TOKEN),
        )
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
}

/// A subscription to `cdp.out.<WORKSPACE>.<tail>` in the app's NATS namespace, when it has NATS (the
/// client is returned with it: dropping it ends the subscription).
pub async fn subscribe_out(
    app: &TestApp,
    tail: &str,
) -> Option<(async_nats::Subscriber, async_nats::Client)> {
    let n = app.nats.as_ref()?;
    let client = async_nats::connect(n.url.as_str()).await.unwrap();
    let subject = format!("{}.cdp.out.{WORKSPACE}.{tail}", n.namespace);
    Some((client.subscribe(subject).await.unwrap(), client))
}
