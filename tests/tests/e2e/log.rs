//! The event log itself: a reader following `read_after` while many tasks append concurrently sees every
//! event exactly once, in increasing positions (on PostgreSQL this catches sequence values that commit out
//! of order); appends are idempotent per (workspace, messageId); rows cannot be updated or deleted.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use cdp_domain::event::{NewEvent, Position};
use cdp_domain::message::MessageKind;
use cdp_domain::store::{AppendReport, EventStore, Store};
use chrono::Utc;
use serde_json::json;

use crate::helpers::{fresh_store, on_each_backend, read_all};

const WRITERS: usize = 16;
const APPENDS_PER_WRITER: usize = 50;

fn new_event(workspace: &str, message_id: &str) -> NewEvent {
    // The log keeps milliseconds.
    let now = cdp_domain::event::from_millis(Utc::now().timestamp_millis());
    NewEvent {
        workspace: workspace.into(),
        message_id: message_id.into(),
        kind: MessageKind::Track,
        name: Some("Order Completed".into()),
        user_id: Some("u-log".into()),
        anonymous_id: None,
        event_time: now,
        received_at: now,
        payload: json!({"type": "track", "event": "Order Completed", "userId": "u-log",
                        "messageId": message_id})
        .to_string(),
    }
}

/// The message ids writer `w` appends, batch by batch (1 to 4 events a batch).
fn batches_of(w: usize) -> Vec<Vec<String>> {
    (0..APPENDS_PER_WRITER)
        .map(|a| {
            let size = 1 + (w + a) % 4;
            (0..size).map(|i| format!("w{w}-a{a}-e{i}")).collect()
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_reader_following_concurrent_appends_sees_every_event_exactly_once() {
    on_each_backend("gap_free_reader", |backend| async move {
        let (store, _guard) = fresh_store(backend).await;
        let expected: HashSet<String> = (0..WRITERS).flat_map(batches_of).flatten().collect();
        let writers_done = Arc::new(AtomicBool::new(false));

        let reader = tokio::spawn({
            let store = store.clone();
            let writers_done = writers_done.clone();
            let total = expected.len();
            async move {
                let mut seen: Vec<(Position, String)> = Vec::with_capacity(total);
                let mut distinct = HashSet::with_capacity(total);
                let mut after = Position::START;
                let mut deadline = None;
                loop {
                    let page = store.read_after(after, 37).await.expect("read_after");
                    for stored in &page {
                        assert!(
                            stored.position > after,
                            "positions increase: {:?} after {after:?}",
                            stored.position
                        );
                        after = stored.position;
                        distinct.insert(stored.event.message_id.clone());
                        seen.push((stored.position, stored.event.message_id.clone()));
                    }
                    if page.is_empty() {
                        if writers_done.load(Ordering::Acquire) {
                            // Everything is committed; wait (bounded) for it to become readable.
                            if distinct.len() >= total {
                                return seen;
                            }
                            let limit = *deadline
                                .get_or_insert_with(|| Instant::now() + Duration::from_secs(30));
                            if Instant::now() > limit {
                                return seen;
                            }
                        }
                        tokio::time::sleep(Duration::from_millis(1)).await;
                    }
                }
            }
        });

        let writers: Vec<_> = (0..WRITERS)
            .map(|w| {
                let store = store.clone();
                tokio::spawn(async move {
                    for batch in batches_of(w) {
                        let events: Vec<NewEvent> =
                            batch.iter().map(|id| new_event("shop", id)).collect();
                        let report = store.append(&events).await.expect("append");
                        assert_eq!(report.inserted, events.len() as u64);
                    }
                })
            })
            .collect();
        for writer in writers {
            writer.await.expect("a writer finished");
        }
        writers_done.store(true, Ordering::Release);
        let seen = reader.await.expect("the reader finished");

        let ids: Vec<&String> = seen.iter().map(|(_, id)| id).collect();
        let unique: HashSet<String> = ids.iter().map(|id| (*id).clone()).collect();
        assert_eq!(ids.len(), unique.len(), "no event was read twice");
        let missing: Vec<&String> = expected.difference(&unique).take(10).collect();
        assert!(
            missing.is_empty(),
            "the reader skipped {} of {} events, e.g. {missing:?}",
            expected.len() - unique.len().min(expected.len()),
            expected.len()
        );
        assert_eq!(unique, expected);
        assert_eq!(
            store.count_events("shop").await.unwrap(),
            expected.len() as i64
        );

        // A reader starting over now reads the same sequence.
        let again: Vec<(Position, String)> = read_all(&store)
            .await
            .into_iter()
            .map(|e| (e.position, e.event.message_id))
            .collect();
        assert_eq!(again, seen, "the order is stable");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_are_idempotent_per_workspace_and_message_id() {
    on_each_backend("idempotent_append", |backend| async move {
        let (store, _guard) = fresh_store(backend).await;
        let first = [new_event("shop", "m-1"), new_event("shop", "m-2")];
        let report = store.append(&first).await.unwrap();
        assert_eq!(
            report,
            AppendReport {
                inserted: 2,
                duplicates: 0
            }
        );

        let again = [
            new_event("shop", "m-2"),
            new_event("shop", "m-3"),
            new_event("shop", "m-3"),
            new_event("other_shop", "m-1"),
        ];
        let report = store.append(&again).await.unwrap();
        assert_eq!(
            report,
            AppendReport {
                inserted: 2,
                duplicates: 2
            }
        );
        assert_eq!(store.count_events("shop").await.unwrap(), 3);
        assert_eq!(store.count_events("other_shop").await.unwrap(), 1);

        let events = crate::helpers::eventually("4 readable events", || async {
            let events = read_all(&store).await;
            if events.len() == 4 {
                Ok(events)
            } else {
                Err(format!("{} events", events.len()))
            }
        })
        .await;
        assert_eq!(
            events[0].event, first[0],
            "an event reads back as it was appended"
        );
        assert!(events.windows(2).all(|w| w[0].position < w[1].position));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_cannot_be_updated_or_deleted() {
    on_each_backend("append_only", |backend| async move {
        let (store, _guard) = fresh_store(backend).await;
        store.append(&[new_event("shop", "m-1")]).await.unwrap();
        for sql in ["UPDATE events SET name = 'changed'", "DELETE FROM events"] {
            let outcome = match &store {
                Store::Sqlite(s) => sqlx::query(sql).execute(s.write_pool()).await.map(|_| ()),
                Store::Postgres(s) => sqlx::query(sql).execute(s.pool()).await.map(|_| ()),
            };
            let error = outcome.expect_err(sql).to_string();
            assert!(error.contains("append-only"), "{sql}: {error}");
        }
        assert_eq!(store.count_events("shop").await.unwrap(), 1);
    })
    .await;
}

/// On PostgreSQL a reader stops below the oldest running transaction — except a read model's writer
/// marked as such, which appends no event: events committed after it began are read while it runs
/// (the resolver reads its next batch during the last one's write). Unmarked, it holds them back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_read_past_a_marked_model_writer_and_stop_below_any_other_running_transaction() {
    if !crate::helpers::backends("model_writer_horizon")
        .contains(&crate::helpers::Backend::Postgres)
    {
        return;
    }
    let (store, _guard) = fresh_store(crate::helpers::Backend::Postgres).await;
    let Store::Postgres(pg) = &store else {
        unreachable!("a PostgreSQL store")
    };
    let ids = |events: Vec<cdp_domain::event::StoredEvent>| -> Vec<String> {
        events.into_iter().map(|e| e.event.message_id).collect()
    };
    store.append(&[new_event("shop", "m-1")]).await.unwrap();
    readable(&store, 1).await;

    // A model writer, marked: an event committed after it began is read while it is still open.
    let mut writer = pg.pool().begin().await.unwrap();
    let mark = pg.mark_model_writer(&mut writer).await.unwrap();
    store.append(&[new_event("shop", "m-2")]).await.unwrap();
    let read = readable(&store, 2).await;
    let after_m2 = read.last().unwrap().position;
    assert_eq!(ids(read), ["m-1", "m-2"]);

    // The mark dropped, the same open transaction holds later events back until it ends (a reader
    // that already read past it loses nothing: no transaction begun since can commit below that).
    drop(mark);
    store.append(&[new_event("shop", "m-3")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        store.read_after(after_m2, 10).await.unwrap().is_empty(),
        "an unmarked running transaction holds back what committed after it began"
    );
    writer.rollback().await.unwrap();
    assert_eq!(ids(readable(&store, 3).await), ["m-1", "m-2", "m-3"]);
}

/// The engine's parts commit on several instances side by side: a read model's writer of another
/// process (its transaction on that store's `model_pool`, whose connections are named as model
/// writers) does not hold this process's readers back; another process's other transactions do.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readers_read_past_another_processs_model_writer_but_not_its_other_transactions() {
    if !crate::helpers::backends("model_writer_other_process")
        .contains(&crate::helpers::Backend::Postgres)
    {
        return;
    }
    let database = crate::helpers::PgDatabase::create().await;
    let store = Store::connect(&database.url).await.unwrap();
    let other = Store::connect(&database.url).await.unwrap();
    let Store::Postgres(other_pg) = &other else {
        unreachable!("a PostgreSQL store")
    };
    store.append(&[new_event("shop", "m-1")]).await.unwrap();
    let first = readable(&store, 1).await.last().unwrap().position;

    // The other process's model writer holds a transaction id and stays open.
    let mut writer = other_pg.model_pool().begin().await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *writer)
        .await
        .unwrap();
    store.append(&[new_event("shop", "m-2")]).await.unwrap();
    let read = readable(&store, 2).await;
    assert_eq!(read.last().unwrap().event.message_id, "m-2");
    let after_m2 = read.last().unwrap().position;
    writer.rollback().await.unwrap();

    // Any other transaction of the other process holds later events back until it ends.
    let mut other_tx = other_pg.pool().begin().await.unwrap();
    let _: i64 = sqlx::query_scalar("SELECT pg_current_xact_id()::text::bigint")
        .fetch_one(&mut *other_tx)
        .await
        .unwrap();
    store.append(&[new_event("shop", "m-3")]).await.unwrap();
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        store.read_after(after_m2, 10).await.unwrap().is_empty(),
        "another process's running transaction holds back what committed after it began"
    );
    other_tx.rollback().await.unwrap();
    assert_eq!(readable(&store, 3).await.len(), 3);
    assert!(first < after_m2);
}

/// On PostgreSQL transaction ids are the server's, not the database's: a transaction left open in
/// another database of the same server (a backup, a report, another service) writes nothing here and
/// must not hold this log's readers back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_open_in_another_database_does_not_hold_readers_back() {
    if !crate::helpers::backends("other_database_horizon")
        .contains(&crate::helpers::Backend::Postgres)
    {
        return;
    }
    let (store, _guard) = fresh_store(crate::helpers::Backend::Postgres).await;
    let (other, _other_guard) = fresh_store(crate::helpers::Backend::Postgres).await;
    let Store::Postgres(elsewhere) = &other else {
        unreachable!("a PostgreSQL store")
    };
    // An open transaction with an id of its own, in the other database.
    let mut open = elsewhere.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_current_xact_id()")
        .execute(&mut *open)
        .await
        .unwrap();
    store.append(&[new_event("shop", "m-1")]).await.unwrap();
    store.append(&[new_event("shop", "m-2")]).await.unwrap();
    let read: Vec<String> = readable(&store, 2)
        .await
        .into_iter()
        .map(|e| e.event.message_id)
        .collect();
    assert_eq!(read, ["m-1", "m-2"]);
    open.rollback().await.unwrap();
}

/// Customer events are sealed: the stored row holds no identifier or property in the clear and reads
/// back whole; once its subject's key is destroyed it reads back erased, and a later event of the same
/// subject gets a new key — also when this store cached the old one — and reads back whole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_sealed_and_a_destroyed_key_is_never_used_again() {
    on_each_backend("sealed_log", |backend| async move {
        let (store, _guard) = fresh_store(backend).await;
        let first = new_event("shop", "m-1");
        store.append(std::slice::from_ref(&first)).await.unwrap();
        let raw = |sql: &'static str| {
            let store = store.clone();
            async move {
                match &store {
                    Store::Sqlite(s) => sqlx::query_scalar::<_, String>(sql)
                        .fetch_all(s.read_pool())
                        .await
                        .unwrap(),
                    Store::Postgres(s) => sqlx::query_scalar::<_, String>(sql)
                        .fetch_all(s.pool())
                        .await
                        .unwrap(),
                }
            }
        };
        let rows = crate::helpers::raw_log(&store).await;
        assert!(
            rows.iter().all(|(payload, sealed)| payload.is_empty()
                && sealed
                    .as_ref()
                    .is_some_and(|b| b.len() > first.payload.len())),
            "sealed as bytes, the payload column empty: {rows:?}"
        );
        let stored = crate::helpers::raw_log_text(&store).await;
        assert!(
            !stored.contains("u-log") && !stored.contains("Order Completed\""),
            "{stored}"
        );
        let read = readable(&store, 1).await;
        assert_eq!(read[0].event.payload, first.payload);
        assert_eq!(read[0].event.user_id.as_deref(), Some("u-log"));

        // The key destroyed (as an erasure does): the event reads back erased.
        let destroy = "UPDATE subject_keys SET key = NULL, subject = NULL";
        match &store {
            Store::Sqlite(s) => sqlx::query(destroy)
                .execute(s.write_pool())
                .await
                .map(|_| ())
                .unwrap(),
            Store::Postgres(s) => sqlx::query(destroy)
                .execute(s.pool())
                .await
                .map(|_| ())
                .unwrap(),
        }
        let read = readable(&store, 1).await;
        assert!(
            cdp_domain::shred::is_erased(&read[0].event),
            "{:?}",
            read[0]
        );
        assert_eq!(read[0].event.user_id, None);

        // The same subject again, through the same store (which cached the destroyed key).
        let second = new_event("shop", "m-2");
        store.append(std::slice::from_ref(&second)).await.unwrap();
        let read = readable(&store, 2).await;
        assert_eq!(read.len(), 2);
        assert_eq!(
            read[1].event.payload, second.payload,
            "the new event is readable"
        );
        assert!(cdp_domain::shred::is_erased(&read[0].event));
        let live = raw("SELECT subject FROM subject_keys WHERE key IS NOT NULL").await;
        assert_eq!(live.len(), 1, "one live key, a new one");
    })
    .await;
}

/// Every event of the log once at least `n` are readable (PostgreSQL readers wait for older transactions
/// of this database).
async fn readable(store: &Store, n: usize) -> Vec<cdp_domain::event::StoredEvent> {
    crate::helpers::eventually(&format!("{n} events readable"), || async {
        let all = read_all(store).await;
        if all.len() >= n {
            Ok(all)
        } else {
            Err(format!("{} events", all.len()))
        }
    })
    .await
}

/// Appends racing to make the keys of the same new subjects all land, and each subject ends with exactly
/// one key, which opens every one of its events (PostgreSQL makes keys in a transaction of their own,
/// before the append's: the loser of a race finds the winner's key).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn appends_racing_for_new_subjects_share_one_key_each() {
    on_each_backend("racing_keys", |backend| async move {
        let (store, _guard) = fresh_store(backend).await;
        const TASKS: usize = 8;
        const USERS: usize = 12;
        let tasks: Vec<_> = (0..TASKS)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    for round in 0..3 {
                        let events: Vec<NewEvent> = (0..USERS)
                            .map(|u| {
                                let mut e = new_event("shop", &format!("t{t}-r{round}-u{u}"));
                                e.user_id = Some(format!("racer-{u}"));
                                e
                            })
                            .collect();
                        let report = store.append(&events).await.expect("append");
                        assert_eq!(report.inserted, USERS as u64);
                    }
                })
            })
            .collect();
        for task in tasks {
            task.await.expect("an appender finished");
        }
        // Readable once no older transaction of the server can still commit (another test's too).
        let log = readable(&store, TASKS * 3 * USERS).await;
        assert_eq!(log.len(), TASKS * 3 * USERS);
        for stored in &log {
            let e = &stored.event;
            let user = e.user_id.as_deref().expect("opened whole");
            assert!(user.starts_with("racer-") && e.payload.contains("Order Completed"));
        }
        let sql = "SELECT count(*) FROM subject_keys WHERE key IS NOT NULL";
        let keys: i64 = match &store {
            Store::Sqlite(s) => sqlx::query_scalar(sql).fetch_one(s.read_pool()).await,
            Store::Postgres(s) => sqlx::query_scalar(sql).fetch_one(s.pool()).await,
        }
        .unwrap();
        assert_eq!(keys, USERS as i64, "one key per subject");
    })
    .await;
}
