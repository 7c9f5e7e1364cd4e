//! The stores the rebuild tests run on: SQLite in a temporary directory, or a fresh database on the
//! `CDP_TEST_DATABASE_URL` server (left for inspection for an hour).

use cdp_domain::store::Store;

/// A store of its own: SQLite in a temporary directory, or a fresh database on the
/// `CDP_TEST_DATABASE_URL` server.
pub(in crate::tests) struct TestStore {
    pub(in crate::tests) store: Store,
    _dir: Option<tempfile::TempDir>,
}

pub(in crate::tests) async fn sqlite_store() -> TestStore {
    let dir = tempfile::tempdir().unwrap();
    TestStore {
        store: Store::open_embedded(dir.path()).await.unwrap(),
        _dir: Some(dir),
    }
}

/// A new database on the test server (`None` when `CDP_TEST_DATABASE_URL` is not set). Databases are
/// left behind for inspection for an hour: each call drops those made longer ago (their names end with
/// when they were made; a run of these tests takes minutes). Their names say which test made them.
pub(in crate::tests) async fn postgres_store(test: &str) -> Option<TestStore> {
    let url = std::env::var("CDP_TEST_DATABASE_URL").ok()?;
    let admin = sqlx::PgPool::connect(&url).await.unwrap();
    let made: Vec<String> = sqlx::query_scalar(
        "SELECT datname::text FROM pg_database WHERE datname LIKE 'cdp_replay_%'",
    )
    .fetch_all(&admin)
    .await
    .unwrap();
    let now = chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default();
    let an_hour = 3_600_000_000_000_i64;
    for name in &made {
        let at: Option<i64> = name.rsplit('_').next().and_then(|n| n.parse().ok());
        if at.is_some_and(|at| now - at > an_hour) {
            let _ = sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                .execute(&admin)
                .await;
        }
    }
    let name = format!(
        "cdp_replay_{test}_{}_{}",
        std::process::id(),
        chrono::Utc::now().timestamp_nanos_opt().unwrap_or_default()
    );
    sqlx::query(&format!("CREATE DATABASE {name}"))
        .execute(&admin)
        .await
        .unwrap();
    admin.close().await;
    let (base, _) = url.rsplit_once('/').unwrap();
    let store = Store::connect(&format!("{base}/{name}")).await.unwrap();
    Some(TestStore { store, _dir: None })
}
