//! A change of the workspace's consent policy is a command of the log: a rebuild meets it where the
//! live resolver did and gives the same segment members.
use super::*;

/// The profiles of segment `texting`, sorted.
async fn texting(store: &Store) -> Vec<String> {
    let sql = "SELECT profile FROM segment_members WHERE segment = 'texting' ORDER BY profile";
    match store {
        Store::Sqlite(s) => sqlx::query_scalar(sql)
            .fetch_all(s.read_pool())
            .await
            .unwrap(),
        Store::Postgres(s) => sqlx::query_scalar(sql).fetch_all(s.pool()).await.unwrap(),
    }
}

/// A consent policy is a command of the log: the resolver puts it in force where it meets it and
/// evaluates the segments on consent again (opt-out: the silent enter, a revoke keeps one out), and a
/// rebuild meets it at the same place — the same rows.
async fn a_policy_change_re_evaluates_consent_segments(store: &Store) {
    let (now, clock) = fixed_clock();
    let order = |user| Step::Order {
        user,
        email: None,
        total: 10,
        days: 1,
    };
    // u0 grants SMS, u1 revokes it, u2 never said anything; `texting` reads SMS consent.
    let steps = [
        Step::Consent {
            user: 0,
            granted: true,
        },
        Step::Consent {
            user: 1,
            granted: false,
        },
        order(2),
        order(0),
        Step::Catalog(8),
    ];
    let events = stream(&steps, now - chrono::Duration::hours(2));
    store.append(&events).await.unwrap();
    let live = IdentityResolver::with_clock(clock.clone());
    caught_up(store, &live).await;
    let profile = |m: &str| cdp_projections::identity::profile_id_for("w", m).to_string();
    assert_eq!(
        texting(store).await,
        [profile("c0")],
        "opt-in: the grant only"
    );
    // SMS becomes opt-out.
    let opt_out = catalog_event(99, &catalog_changes()[7], now - chrono::Duration::hours(1));
    store.append(&[opt_out]).await.unwrap();
    caught_up(store, &live).await;
    let mut expected = vec![profile("c0"), profile("o2")];
    expected.sort();
    assert_eq!(
        texting(store).await,
        expected,
        "opt-out: the silent too, not the revoke"
    );
    let before = model_rows(store).await;
    let rebuilder = IdentityResolver::with_clock(clock.clone());
    rebuild_sized(store, &rebuilder, Sizes { batch: 2, group: 3 }, &|_| {})
        .await
        .unwrap();
    for ((table, live_rows), (_, rebuilt_rows)) in before.iter().zip(&model_rows(store).await) {
        assert_eq!(live_rows, rebuilt_rows, "{table}: the rebuild differs");
    }
}

#[tokio::test]
async fn a_policy_change_re_evaluates_consent_segments_on_sqlite() {
    let test = sqlite_store().await;
    a_policy_change_re_evaluates_consent_segments(&test.store).await;
}

#[tokio::test]
async fn a_policy_change_re_evaluates_consent_segments_on_postgres() {
    let Some(test) = postgres_store("consent_policy").await else {
        eprintln!(
            "CDP_TEST_DATABASE_URL is not set: the PostgreSQL consent policy test is SKIPPED"
        );
        return;
    };
    a_policy_change_re_evaluates_consent_segments(&test.store).await;
}
