//! A rebuild that disagrees with the live model changes it like any other change.
use super::*;

/// What the rebuilt model disagrees with (here: a live model damaged behind the resolver's back, as a
/// bug of an earlier code version would have left it) is changed like any other change — the row, the
/// membership's history, the message to subscribers, caused by `rebuild` — and nothing else moves.
#[tokio::test]
async fn a_rebuild_that_disagrees_changes_the_model_like_any_change() {
    let test = sqlite_store().await;
    let store = &test.store;
    let mut steps = vec![Step::Catalog(0), Step::Catalog(1), Step::Catalog(2)];
    steps.extend(orders(24, 4, 400));
    let (clock, _live) = resolved(store, &steps).await;
    let expected = model_rows(store).await;
    let Store::Sqlite(s) = store else {
        unreachable!()
    };
    let (member, tagged): (String, String) = (
        sqlx::query_scalar("SELECT profile FROM segment_members WHERE segment = 'big' LIMIT 1")
            .fetch_one(s.read_pool())
            .await
            .unwrap(),
        sqlx::query_scalar("SELECT profile FROM profile_tags WHERE tag = 'tier' LIMIT 1")
            .fetch_one(s.read_pool())
            .await
            .unwrap(),
    );
    let outbox_before: i64 = sqlx::query_scalar("SELECT count(*) FROM outbox")
        .fetch_one(s.read_pool())
        .await
        .unwrap();
    sqlx::query("DELETE FROM segment_members WHERE segment = 'big' AND profile = ?")
        .bind(&member)
        .execute(s.write_pool())
        .await
        .unwrap();
    sqlx::query("UPDATE profile_tags SET value = '\"bogus\"' WHERE tag = 'tier' AND profile = ?")
        .bind(&tagged)
        .execute(s.write_pool())
        .await
        .unwrap();
    sqlx::query(
        "INSERT INTO segment_members (workspace, segment, profile, since, caused_by) \
                 VALUES ('w', 'big', 'p_00000000000000000000', 0, 'x')",
    )
    .execute(s.write_pool())
    .await
    .unwrap();

    rebuild_with(store, &IdentityResolver::with_clock(clock), &|_| {})
        .await
        .unwrap();
    let after = model_rows(store).await;
    for ((table, want), (_, got)) in expected.iter().zip(&after) {
        match table.as_str() {
            "segment_members" | "profile_tags" | "segment_history" => {}
            _ => assert_eq!(want, got, "{table} moved"),
        }
    }
    let history: Vec<(String, bool, String)> = sqlx::query_as(
        "SELECT profile, entered, caused_by FROM segment_history WHERE caused_by = 'rebuild' ORDER BY seq")
        .fetch_all(s.read_pool()).await.unwrap();
    assert_eq!(
        history,
        vec![
            (member.clone(), true, "rebuild".to_owned()),
            (
                "p_00000000000000000000".to_owned(),
                false,
                "rebuild".to_owned()
            ),
        ]
    );
    let tag: (String, String) = sqlx::query_as(
        "SELECT value, caused_by FROM profile_tags WHERE tag = 'tier' AND profile = ?",
    )
    .bind(&tagged)
    .fetch_one(s.read_pool())
    .await
    .unwrap();
    assert_ne!(tag.0, "\"bogus\"");
    assert_eq!(tag.1, "rebuild");
    let messages: Vec<String> =
        sqlx::query_scalar("SELECT subject FROM outbox WHERE seq > ? ORDER BY seq")
            .bind(outbox_before)
            .fetch_all(s.read_pool())
            .await
            .unwrap();
    assert_eq!(
        messages,
        vec![
            "w.tag.tier.changed".to_owned(),
            "w.segment.big.entered".to_owned(),
            "w.segment.big.exited".to_owned(),
        ]
    );
    // A second rebuild agrees with everything: no change, no message.
    let settled = model_rows(store).await;
    rebuild_with(
        store,
        &IdentityResolver::with_clock(fixed_clock().1),
        &|_| {},
    )
    .await
    .unwrap();
    assert_eq!(model_rows(store).await, settled);
}
