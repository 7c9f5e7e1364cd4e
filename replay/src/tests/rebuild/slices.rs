//! Rebuilds in slices of workspaces (a model with more profiles than the rebuild may hold): the same
//! rows as the live model, under ingestion and after an interruption.
use super::*;

/// The streams of `steps` in `workspaces` workspaces (`w0`, `w1`, …; each its steps turned by its
/// index, so that they differ), one event of each in turn.
pub(super) fn streams_in_workspaces(
    steps: &[Step],
    workspaces: usize,
    start: chrono::DateTime<chrono::Utc>,
) -> Vec<NewEvent> {
    let streams: Vec<Vec<NewEvent>> = (0..workspaces)
        .map(|i| {
            let mut turned = steps.to_vec();
            turned.rotate_left(i % steps.len().max(1));
            stream_in(&format!("w{i}"), &turned, start)
        })
        .collect();
    let longest = streams.iter().map(Vec::len).max().unwrap_or(0);
    (0..longest)
        .flat_map(|n| streams.iter().filter_map(move |s| s.get(n).cloned()))
        .collect()
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 8, ..Default::default() })]
    /// Several workspaces with more profiles than the rebuild may hold: it is rebuilt in slices of
    /// workspaces, one after the other (each slice's profiles let go when it is done, read back at
    /// the switch), and every model table is identical to the live one, row for row.
    #[test]
    fn a_rebuild_in_slices_reproduces_the_live_model_row_for_row(
        steps in proptest::collection::vec(step_strategy(), 1..30),
        workspaces in 2usize..5,
        batch_size in 1u32..9,
        rebuild_held in 1usize..6,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let (now, clock) = fixed_clock();
            let events = streams_in_workspaces(&steps, workspaces, now - chrono::Duration::hours(1));
            let test = sqlite_store().await;
            let held = Held { live: None, rebuild: Some(rebuild_held) };
            let slices = live_then_rebuild(&test.store, &events, batch_size, clock, held).await;
            // The profiles of the streams' workspaces (not of `w`, where the live resolver's last event
            // went after the switch).
            let counts: Vec<(String, u64)> = cdp_projections::profiles::count_by_workspace(&test.store)
                .await
                .unwrap()
                .into_iter()
                .filter(|c| c.0 != "w")
                .collect();
            let total: u64 = counts.iter().map(|c| c.1).sum();
            if counts.iter().filter(|c| c.1 > 0).count() >= 2 && total > rebuild_held as u64 {
                assert!(slices > 1, "{counts:?} past a bound of {rebuild_held}: rebuilt whole");
            } else {
                assert_eq!(slices, 1, "{counts:?} within a bound of {rebuild_held}");
            }
        });
    }
}

/// The same for three workspaces of 40 profiles, the rebuild holding at most 50: rebuilt in slices
/// (each slice's profiles let go when it is done), every slice caught up to exactly the held live
/// resolver's position at the switch.
#[tokio::test]
async fn a_rebuild_in_slices_under_ingestion_loses_nothing() {
    rebuild_under_ingestion(&sqlite_store().await.store, 3, Some(50)).await;
    match postgres_store("sliced_under_ingestion").await {
        Some(test) => rebuild_under_ingestion(&test.store, 3, Some(50)).await,
        None => eprintln!("CDP_TEST_DATABASE_URL is not set: the PostgreSQL variant is SKIPPED"),
    }
}

/// The same in slices: three workspaces, the rebuild holding at most 10 profiles.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_rebuild_in_slices_resumes_in_the_same_slices() {
    interrupted_rebuild_resumes(&sqlite_store().await.store, 3, Some(10)).await;
    match postgres_store("sliced_resumes").await {
        Some(test) => interrupted_rebuild_resumes(&test.store, 3, Some(10)).await,
        None => eprintln!("CDP_TEST_DATABASE_URL is not set: the PostgreSQL variant is SKIPPED"),
    }
}
