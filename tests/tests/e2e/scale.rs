//! Several instances on one PostgreSQL (and NATS when `CDP_TEST_NATS_URL` is set): the engine's
//! partition is run by one instance at a time, under a lease (`cdp_projections::lease`); the others
//! take ingestion and reads and stand by. The owner killed with SIGKILL mid-stream loses the partition
//! to another instance within 10 s; events sent through NATS after it are shared by the survivors'
//! durable consumer; every event is stored and resolved exactly once; the model (profiles,
//! memberships) is the one a single resolver folds from the same log (a rebuild changes nothing); every
//! segment enter is published at least once (by the one instance holding the `publisher` lease), and
//! every surviving instance's `/v1/stream` carries every enter.

use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use sqlx::{Connection, PgConnection};

use futures::StreamExt;

use crate::durability::{start_with, Server};

mod parts;
use crate::helpers::{
    eventually, http_client, nats_url, postgres_url, read_json, track, PgDatabase, ADMIN_TOKEN,
    WORKSPACE, WRITE_KEY,
};

/// Customers of the stream; the even ones send [`REGULAR`] orders and enter the segment, the odd ones
/// [`OCCASIONAL`].
const CUSTOMERS: usize = 12;
const REGULAR: usize = 20;
const OCCASIONAL: usize = 6;
/// Customers whose events come through NATS (when there is NATS), and their events each.
const VIEWERS: usize = 5;
const VIEWS: usize = 4;

fn orders_of(customer: usize) -> usize {
    if customer.is_multiple_of(2) {
        REGULAR
    } else {
        OCCASIONAL
    }
}

/// The model a rebuild must leave as it is: every profile's state, every membership.
type Model = (Vec<(String, Vec<u8>)>, Vec<(String, String)>);

async fn model(db: &mut PgConnection) -> Model {
    let states = sqlx::query_as("SELECT profile, state FROM profiles ORDER BY profile")
        .fetch_all(&mut *db)
        .await
        .unwrap();
    let members =
        sqlx::query_as("SELECT segment, profile FROM segment_members ORDER BY segment, profile")
            .fetch_all(&mut *db)
            .await
            .unwrap();
    (states, members)
}

/// What `/readyz` of `server` says of the partitions: the instance's name and those it runs.
async fn partitions(client: &reqwest::Client, server: &Server) -> Option<(String, Vec<String>)> {
    let response = client
        .get(format!("{}/readyz", server.address))
        .timeout(Duration::from_secs(2))
        .send()
        .await
        .ok()?;
    let (_, body) = read_json(response).await;
    let p = &body["partitions"];
    let owned = p["owned"]
        .as_array()?
        .iter()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect();
    Some((p["instance"].as_str()?.to_owned(), owned))
}

/// The index of the one server of `servers` (those alive) that runs the `identity` partition.
async fn owner_of(client: &reqwest::Client, servers: &[&Server]) -> Result<usize, String> {
    let mut owners = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let (_, owned) = partitions(client, server)
            .await
            .ok_or_else(|| format!("instance {i} did not answer /readyz"))?;
        if owned.iter().any(|p| p == "identity") {
            owners.push(i);
        }
    }
    match owners.as_slice() {
        [one] => Ok(*one),
        many => Err(format!("instances running the partition: {many:?}")),
    }
}

/// Waits until `server` answers the profile of `user` with `events` track events: each once.
async fn counted_once(client: &reqwest::Client, server: &Server, user: &str, events: usize) {
    counted_once_in(client, server, ADMIN_TOKEN, user, events).await;
}

/// [`counted_once`], asked with `token` (of the workspace of `user`).
async fn counted_once_in(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    user: &str,
    events: usize,
) {
    eventually("a customer's profile with every event once", || {
        let (client, address, token) = (client.clone(), server.address.clone(), token.to_owned());
        async move {
            let response = client
                .get(format!("{address}/v1/profiles/lookup"))
                .bearer_auth(&token)
                .query(&[("type", "user_id"), ("value", user)])
                .send()
                .await
                .map_err(|e| e.to_string())?;
            let (status, body) = read_json(response).await;
            let tracks = &body["event_counts"]["by_type"]["track"];
            if status == StatusCode::OK && *tracks == events {
                Ok(())
            } else {
                Err(format!("{status} {tracks}"))
            }
        }
    })
    .await;
}

async fn send(client: &reqwest::Client, server: &Server, message: &Value) -> bool {
    client
        .post(format!("{}/v1/track", server.address))
        .basic_auth(WRITE_KEY, Some(""))
        .json(message)
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .is_ok_and(|r| r.status() == StatusCode::OK)
}

async fn metric(client: &reqwest::Client, server: &Server, name: &str) -> Option<f64> {
    let text = client
        .get(format!("{}/metrics", server.address))
        .send()
        .await
        .ok()?
        .text()
        .await
        .ok()?;
    text.lines()
        .find(|l| l.starts_with(name))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// `GET /v1/stream` of `server`, open.
async fn open_stream(client: &reqwest::Client, server: &Server) -> reqwest::Response {
    let response = client
        .get(format!("{}/v1/stream", server.address))
        .bearer_auth(ADMIN_TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response
}

/// Reads `stream` (server-sent events) until it carried a `segment.entered` of every profile of
/// `profiles`; panics naming those it did not carry within 10 s.
async fn stream_carries_enters(stream: &mut reqwest::Response, profiles: &[String], which: &str) {
    let mut seen = std::collections::BTreeSet::new();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !profiles.iter().all(|p| seen.contains(p)) {
        let left = deadline.saturating_duration_since(Instant::now());
        let chunk = tokio::time::timeout(left, stream.chunk())
            .await
            .unwrap_or_else(|_| {
                panic!("{which}'s /v1/stream carried the enters of {seen:?} of {profiles:?}")
            })
            .unwrap()
            .expect("the stream stays open");
        text.push_str(&String::from_utf8_lossy(&chunk));
        // Whole events only: an event ends with an empty line.
        while let Some(end) = text.find("\n\n") {
            let event: String = text.drain(..end + 2).collect();
            if !event.contains("event: segment.entered") {
                continue;
            }
            let data = event
                .lines()
                .find_map(|l| l.strip_prefix("data: "))
                .expect("an event has data");
            let payload: Value = serde_json::from_str(data).unwrap();
            seen.insert(payload["profile_id"].as_str().unwrap().to_owned());
        }
    }
}

/// The enters of the segment `regulars` of `workspace` (`*`: every workspace) published on NATS in
/// `namespace`, subscribed (with the connection, kept open); `None` without NATS.
async fn subscribe_enters(
    namespace: &str,
    workspace: &str,
) -> Option<(async_nats::Subscriber, async_nats::Client)> {
    let nats = async_nats::connect(nats_url()?.as_str()).await.unwrap();
    let subject = format!("{namespace}.cdp.out.{workspace}.segment.regulars.entered");
    Some((nats.subscribe(subject).await.unwrap(), nats))
}

/// Defines the segment `id` in the workspace of `token` at `server`: customers with at least `orders`
/// orders.
async fn put_segment(
    client: &reqwest::Client,
    server: &Server,
    token: &str,
    id: &str,
    orders: usize,
) {
    let response = client
        .put(format!("{}/v1/segments/{id}", server.address))
        .bearer_auth(token)
        .json(
            &serde_json::json!({"condition": {"event": "Order Completed",
                                                "count": {"op": "gte", "value": orders}}}),
        )
        .send()
        .await
        .unwrap();
    let (status, body) = read_json(response).await;
    assert!(status.is_success(), "{status} {body}");
}

/// Reads `subscription` until it carried an enter of every member of the segment `regulars` (of
/// every workspace); panics naming those it did not carry within 10 s of the last.
async fn every_enter_published(subscription: &mut async_nats::Subscriber, db: &mut PgConnection) {
    let profiles: std::collections::BTreeSet<String> =
        sqlx::query_scalar("SELECT profile FROM segment_members WHERE segment = 'regulars'")
            .fetch_all(&mut *db)
            .await
            .unwrap()
            .into_iter()
            .collect();
    let mut published = std::collections::BTreeSet::new();
    while published.len() < profiles.len() {
        let message = tokio::time::timeout(Duration::from_secs(10), subscription.next())
            .await
            .unwrap_or_else(|_| panic!("enters published: {published:?} of {profiles:?}"))
            .unwrap();
        let payload: Value = serde_json::from_slice(&message.payload).unwrap();
        published.insert(payload["profile_id"].as_str().unwrap().to_owned());
    }
    assert_eq!(published, profiles);
}

/// `n` instances of `cdp serve` on `database` (with the variables `env`), each over a data directory of
/// its own (kept in `dirs` while they run).
async fn instances(
    database: &PgDatabase,
    n: usize,
    env: &[(&str, String)],
    dirs: &mut Vec<tempfile::TempDir>,
) -> Vec<Server> {
    let mut servers = Vec::new();
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        servers.push(start_with(dir.path(), Some(&database.url), None, env).await);
        dirs.push(dir);
    }
    servers
}

/// Two instances of `cdp serve` on a new PostgreSQL database (with the directories they run over),
/// and which of them runs the engine's partition once one does; `None` without PostgreSQL.
async fn two_instances() -> Option<(PgDatabase, Vec<tempfile::TempDir>, Vec<Server>, usize)> {
    let Some(_) = postgres_url() else {
        eprintln!("scale: skipped (CDP_TEST_DATABASE_URL is not set)");
        return None;
    };
    let database = PgDatabase::create().await;
    let client = http_client();
    let mut dirs = Vec::new();
    let servers = instances(&database, 2, &[], &mut dirs).await;
    let owner = eventually("one instance running the partition", || {
        let (client, servers) = (client.clone(), servers.iter().collect::<Vec<_>>());
        async move { owner_of(&client, &servers).await }
    })
    .await;
    Some((database, dirs, servers, owner))
}

/// `cdp <args…>` on `database`, its standard output if it succeeded.
async fn cli(database: &PgDatabase, args: &[&str]) -> String {
    let output = tokio::process::Command::new(env!("CARGO_BIN_EXE_cdp-under-test"))
        .args(args)
        .args(["--database-url", &database.url])
        .stdin(std::process::Stdio::null())
        .output()
        .await
        .expect("run cdp");
    assert!(
        output.status.success(),
        "cdp {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_engine_and_a_killed_owner_is_replaced_within_ten_seconds() {
    let Some(_) = postgres_url() else {
        eprintln!("scale: skipped (CDP_TEST_DATABASE_URL is not set)");
        return;
    };
    let database = PgDatabase::create().await;
    let client = http_client();
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    let mut env = Vec::new();
    if let Some(url) = nats_url() {
        env.push(("CDP_NATS_URL", url));
        env.push(("CDP_NATS_NAMESPACE", namespace.clone()));
    } else {
        eprintln!("scale: without NATS (CDP_TEST_NATS_URL is not set): publishing not checked");
    }
    let mut dirs = Vec::new();
    let mut servers = instances(&database, 3, &env, &mut dirs).await;
    // Every segment enter, as published on NATS (by any instance).
    let mut entered = subscribe_enters(&namespace, WORKSPACE).await;
    put_segment(&client, &servers[0], ADMIN_TOKEN, "regulars", 10).await;

    // One instance runs the partition; the others stand by.
    let first = eventually("one instance running the partition", || {
        let (client, servers) = (client.clone(), servers.iter().collect::<Vec<_>>());
        async move { owner_of(&client, &servers).await }
    })
    .await;
    // Every instance's stream of what is published, whichever instance publishes to NATS.
    let mut streams = Vec::new();
    for server in &servers {
        streams.push(open_stream(&client, server).await);
    }

    // The stream goes through every instance in turn; half of it, then the owner is killed.
    let messages: Vec<Value> = (0..REGULAR)
        .flat_map(|n| {
            (0..CUSTOMERS)
                .filter(move |c| n < orders_of(*c))
                .map(move |c| {
                    track(
                        &format!("u-scale-{c}"),
                        "Order Completed",
                        &format!("m-scale-{c}-{n}"),
                    )
                })
        })
        .collect();
    let half = messages.len() / 2;
    for (i, message) in messages[..half].iter().enumerate() {
        assert!(
            send(&client, &servers[i % 3], message).await,
            "POST /v1/track to instance {}",
            i % 3
        );
    }
    let killed_at = Instant::now();
    let mut killed = servers.remove(first);
    drop(streams.remove(first));
    killed
        .child
        .kill()
        .await
        .expect("SIGKILL the partition's owner");
    for (i, message) in messages[half..].iter().enumerate() {
        assert!(
            send(&client, &servers[i % 2], message).await,
            "POST /v1/track to surviving instance {}",
            i % 2
        );
    }
    // Through NATS too: the survivors share the durable ingest consumer. (After the kill: what the
    // killed instance had pulled and not acknowledged JetStream hands out again after 30 s.)
    let viewers = if let Some((_, nats)) = &entered {
        let js = async_nats::jetstream::new(nats.clone());
        for v in 0..VIEWERS {
            for n in 0..VIEWS {
                let id = format!("m-view-{v}-{n}");
                let message = track(&format!("u-view-{v}"), "Viewed", &id);
                let publish = async_nats::jetstream::context::Publish::build()
                    .payload(message.to_string().into())
                    .message_id(&id);
                js.send_publish(format!("{namespace}.cdp.ingest.{WORKSPACE}"), publish)
                    .await
                    .expect("publish to JetStream")
                    .await
                    .expect("JetStream acknowledges the publish");
            }
        }
        VIEWERS
    } else {
        0
    };

    // Another instance takes the partition within 10 s of the kill.
    let taken_over = loop {
        let survivors: Vec<&Server> = servers.iter().collect();
        if owner_of(&client, &survivors).await.is_ok() {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "no surviving instance took the partition within 10 s of its owner's kill"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("scale: the partition was taken over {taken_over:?} after its owner's kill");
    let survivors: Vec<&Server> = servers.iter().collect();
    let owner = owner_of(&client, &survivors).await.unwrap();
    assert_eq!(
        metric(&client, survivors[owner], "cdp_partitions_owned").await,
        Some(1.0)
    );
    assert_eq!(
        metric(&client, survivors[1 - owner], "cdp_partitions_owned").await,
        Some(0.0)
    );

    // Every event resolved exactly once: each customer's profile counts its events once, on either
    // survivor, and the model holds one owner row per event of the log.
    for server in &survivors {
        for c in 0..CUSTOMERS {
            counted_once(&client, server, &format!("u-scale-{c}"), orders_of(c)).await;
        }
    }
    for v in 0..viewers {
        counted_once(&client, survivors[0], &format!("u-view-{v}"), VIEWS).await;
    }
    let mut db = PgConnection::connect(&database.url).await.unwrap();
    let (orders, views, owned, profiles): (i64, i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events WHERE name = 'Order Completed'), \
         (SELECT count(*) FROM events WHERE name = 'Viewed'), \
         (SELECT count(*) FROM event_profiles), (SELECT count(*) FROM profiles)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(orders, (0..CUSTOMERS).map(orders_of).sum::<usize>() as i64);
    assert_eq!(
        views,
        (viewers * VIEWS) as i64,
        "every NATS message stored once"
    );
    assert_eq!(
        owned,
        orders + views,
        "every event belongs to exactly one profile"
    );
    assert_eq!(profiles, (CUSTOMERS + viewers) as i64);
    // The lease changed hands: a new owner under a higher fence.
    let (owner_name, fence): (String, i64) =
        sqlx::query_as("SELECT owner, fence FROM engine_leases WHERE part = 'identity'")
            .fetch_one(&mut db)
            .await
            .unwrap();
    let (named, _) = partitions(&client, survivors[owner]).await.unwrap();
    assert_eq!(owner_name, named);
    assert!(fence >= 2, "the takeover raised the fence (now {fence})");

    // The regulars entered the segment; each enter was published at least once.
    let mut expected: Vec<String> = (0..CUSTOMERS)
        .filter(|c| orders_of(*c) >= 10)
        .map(|c| format!("u-scale-{c}"))
        .collect();
    expected.sort();
    let members: Vec<String> = sqlx::query_scalar(
        "SELECT o.value FROM segment_members m JOIN identifier_owners o \
         ON o.workspace = m.workspace AND o.profile = m.profile AND o.id_type = 'user_id' \
         WHERE m.segment = 'regulars' ORDER BY o.value",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    assert_eq!(members, expected);
    if let Some((subscription, _)) = entered.as_mut() {
        every_enter_published(subscription, &mut db).await;
    }
    // Each survivor's `/v1/stream` carried every enter, whichever instance made or published it.
    let profiles: Vec<String> = sqlx::query_scalar(
        "SELECT profile FROM segment_members WHERE segment = 'regulars' ORDER BY profile",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    for (i, stream) in streams.iter_mut().enumerate() {
        stream_carries_enters(stream, &profiles, &format!("survivor {i}")).await;
    }
    // One instance publishes to NATS at a time, under a lease of its own.
    let publishers: Vec<(String, i64)> =
        sqlx::query_as("SELECT owner, expires_at FROM engine_leases WHERE part = 'publisher'")
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(publishers.len(), 1, "{publishers:?}");

    // `cdp replay status` names the partition's owner.
    let printed = cli(&database, &["replay", "status"]).await;
    assert!(
        printed.contains(&format!(
            "partition identity: run by {owner_name} (fence {fence})"
        )),
        "{printed}"
    );

    // A single resolver folding the same log builds the same model: a rebuild changes nothing.
    let before = model(&mut db).await;
    cli(&database, &["replay", "rebuild", "--all"]).await;
    assert_eq!(model(&mut db).await, before, "a rebuild changed the model");
    let _ = db.close().await;
    if let Some((_, nats)) = entered {
        let js = async_nats::jetstream::new(nats);
        for stream in ["CDP_INGEST", "CDP_OUT"] {
            let _ = js.delete_stream(format!("{stream}_{namespace}")).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_stopped_gives_its_partition_up_at_once() {
    let Some((database, _dirs, mut servers, first)) = two_instances().await else {
        return;
    };
    let client = http_client();
    // SIGTERM: the owner shuts down and gives the lease up; the other takes the partition at its
    // next try (every second), not after the lease's 6 s.
    let mut stopped = servers.remove(first);
    let pid = stopped.child.id().expect("the owner runs").to_string();
    let stopping = Instant::now();
    let signalled = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .expect("kill -TERM");
    assert!(signalled.success());
    let status = tokio::time::timeout(Duration::from_secs(10), stopped.child.wait())
        .await
        .expect("the owner exits after SIGTERM")
        .unwrap();
    assert!(status.success(), "cdp serve exited with {status}");
    let survivors: Vec<&Server> = servers.iter().collect();
    loop {
        if owner_of(&client, &survivors).await.is_ok() {
            break;
        }
        assert!(
            stopping.elapsed() < Duration::from_secs(4),
            "the partition was not taken within 4 s of its owner's shutdown"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    eprintln!(
        "scale: the partition was taken {:?} after its owner's SIGTERM",
        stopping.elapsed()
    );
    // The publisher's lease went with the engine: given up at the shutdown, taken by the survivor.
    let (survivor, _) = partitions(&client, survivors[0]).await.unwrap();
    publisher_taken_by(
        &database,
        &survivor,
        stopping,
        Duration::from_secs(5),
        "the survivor, after the shutdown",
    )
    .await;
}

/// Waits until `instance` holds the publisher's lease, `within` of `since`; panics naming `who` if not.
async fn publisher_taken_by(
    database: &PgDatabase,
    instance: &str,
    since: Instant,
    within: Duration,
    who: &str,
) {
    let mut db = PgConnection::connect(&database.url).await.unwrap();
    loop {
        let holder: Option<(String, i64)> =
            sqlx::query_as("SELECT owner, expires_at FROM engine_leases WHERE part = 'publisher'")
                .fetch_optional(&mut db)
                .await
                .unwrap();
        let now = chrono::Utc::now().timestamp_millis();
        if holder
            .as_ref()
            .is_some_and(|(owner, expires)| owner == instance && *expires >= now)
        {
            break;
        }
        assert!(
            since.elapsed() < within,
            "the publisher's lease was not taken by {who} within {within:?}: {holder:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let _ = db.close().await;
}

/// A fresh PostgreSQL database and a store on it (`None`, said, without `CDP_TEST_DATABASE_URL`).
async fn a_postgres_store() -> Option<(PgDatabase, cdp_domain::store::Store)> {
    if postgres_url().is_none() {
        eprintln!("scale: skipped (CDP_TEST_DATABASE_URL is not set)");
        return None;
    }
    let database = PgDatabase::create().await;
    let store = cdp_domain::store::Store::connect(&database.url)
        .await
        .unwrap();
    Some((database, store))
}

/// An instance's engine signals, running these parts.
fn running(parts: &[&str]) -> std::sync::Arc<cdp_projections::RunnerStatus> {
    let status = cdp_projections::RunnerStatus::default();
    status
        .partitions
        .lock()
        .unwrap()
        .extend(parts.iter().map(|p| (*p).to_owned()));
    std::sync::Arc::new(status)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_at_an_instance_not_running_the_engine_wakes_the_one_that_does() {
    use std::sync::Arc;
    use tokio::sync::Notify;
    let Some((_database, store)) = a_postgres_store().await else {
        return;
    };
    // Two instances' signals: `standby` does not run the engine, `owner` does.
    let standby = running(&[]);
    let owner = running(&["identity"]);
    let (standby_appended, standby_wake) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let (owner_appended, owner_wake) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
    let _standby = cdp_api::appended::spawn(
        &store,
        standby_appended.clone(),
        vec![standby_wake.clone()],
        (standby, 1),
    )
    .expect("PostgreSQL announces appends");
    let _owner =
        cdp_api::appended::spawn(&store, owner_appended, vec![owner_wake.clone()], (owner, 1))
            .expect("PostgreSQL announces appends");
    // An append at the standby wakes the owner's runner (the listener may take a moment to start
    // listening: announced again until heard).
    let started = Instant::now();
    loop {
        standby_appended.notify_one();
        if tokio::time::timeout(Duration::from_millis(200), owner_wake.notified())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the owner was not woken by the standby's appends"
        );
    }
}

/// A commit with outbox rows (a resolver's batch with a track event's message) notifies
/// `cdp_outbox`, and an instance that does not run every part of the engine wakes its publisher on
/// it: a message another instance's part committed is published at once, not at the next poll.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_commit_with_outbox_rows_wakes_the_publisher_of_an_instance_not_running_every_part() {
    use cdp_domain::message::{validate, Envelope};
    use cdp_domain::store::EventStore;
    use std::sync::Arc;
    use tokio::sync::Notify;
    let Some((_database, store)) = a_postgres_store().await else {
        return;
    };
    // The publisher's instance runs one of the engine's two parts; the other part is run here.
    let publishing = running(&["identity/0-of-2"]);
    let _listening = cdp_api::appended::spawn(
        &store,
        Arc::new(Notify::new()),
        Vec::new(),
        (publishing.clone(), 2),
    )
    .expect("PostgreSQL listens");
    let resolver = cdp_projections::identity::IdentityResolver::default();
    let envelope = Envelope {
        workspace: WORKSPACE,
        received_at: chrono::Utc::now(),
        batch_sent_at: None,
        implied_kind: None,
    };
    // The listener may take a moment to start listening: a commit again until one is heard.
    let started = Instant::now();
    for n in 0.. {
        let message = track(&format!("u-out-{n}"), "Viewed", &format!("m-out-{n}"));
        let event = validate(message, &envelope, || unreachable!()).unwrap();
        store.append(&[event]).await.unwrap();
        // Read once no older transaction (another test's) holds the log's readers back.
        let mut applied = 0;
        while applied == 0 {
            applied = cdp_projections::runner::run_once(&store, &resolver, 1_000)
                .await
                .unwrap()
                .applied;
            assert!(
                started.elapsed() < Duration::from_secs(30),
                "the appended event was never resolved"
            );
        }
        if tokio::time::timeout(Duration::from_millis(200), publishing.committed.notified())
            .await
            .is_ok()
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "no commit with outbox rows woke the publisher of the instance not running every part"
        );
    }
}

/// The whole reads of audience indexes `server` did so far (`/metrics`).
async fn index_builds(client: &reqwest::Client, server: &Server) -> Option<u64> {
    metric(client, server, "cdp_audience_index_builds_total")
        .await
        .map(|n| n as u64)
}

/// An instance that does not run the engine cannot follow the other's batches in its audience index:
/// it reads it whole again only once a preview found it behind (and answers that preview all the
/// same), not every second while the other instance commits.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_reads_its_audience_index_whole_only_when_asked() {
    let Some((_database, _dirs, servers, owner)) = two_instances().await else {
        return;
    };
    let client = http_client();
    let (owner, standby) = (&servers[owner], &servers[1 - owner]);
    assert!(send(&client, owner, &track("u-idx-0", "Viewed", "m-idx-0")).await);
    // The standby's index is read whole once at its start.
    let first = eventually("the standby's index built", || {
        let (client, standby) = (client.clone(), standby);
        async move {
            match index_builds(&client, standby).await {
                Some(n) if n >= 1 => Ok(n),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
    // The owner commits batch after batch for three seconds (three looks of the builder): the
    // standby's index falls behind each time, and nobody asks it.
    for n in 1..=15 {
        let message = track(&format!("u-idx-{n}"), "Viewed", &format!("m-idx-{n}"));
        assert!(send(&client, owner, &message).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(
        index_builds(&client, standby).await,
        Some(first),
        "the standby read its index whole though no answer asked for it"
    );
    // A preview on the standby answers (every customer who viewed), and makes it read the index again.
    counted_once(&client, standby, "u-idx-15", 1).await;
    let response = client
        .post(format!("{}/v1/segments/preview", standby.address))
        .bearer_auth(ADMIN_TOKEN)
        .json(&serde_json::json!({"condition": {"event": "Viewed", "count": {"op": "gte", "value": 1}}}))
        .send()
        .await
        .unwrap();
    let (status, body) = read_json(response).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["count"], 16, "{body}");
    eventually("the standby's index read again once asked", || {
        let (client, standby) = (client.clone(), standby);
        async move {
            match index_builds(&client, standby).await {
                Some(n) if n > first => Ok(()),
                other => Err(format!("{other:?}")),
            }
        }
    })
    .await;
}

/// The engine on an instance without NATS, another instance with NATS beside it: the one with NATS
/// takes the publisher's lease (the other gives it up and no longer moves the outbox past messages it
/// could not publish), and a segment enter decided on the engine's instance reaches NATS.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_instance_with_nats_publishes_when_the_engine_runs_on_one_without() {
    let (Some(_), Some(nats)) = (postgres_url(), nats_url()) else {
        eprintln!("scale: skipped (needs CDP_TEST_DATABASE_URL and CDP_TEST_NATS_URL)");
        return;
    };
    let database = PgDatabase::create().await;
    let client = http_client();
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    let mut dirs = Vec::new();
    // The instance without NATS first: alone, it runs the engine (and, alone, holds the publisher).
    let without = instances(&database, 1, &[], &mut dirs).await;
    eventually("the instance without NATS running the partition", || {
        let (client, servers) = (client.clone(), without.iter().collect::<Vec<_>>());
        async move { owner_of(&client, &servers).await }
    })
    .await;
    let env = [
        ("CDP_NATS_URL", nats.clone()),
        ("CDP_NATS_NAMESPACE", namespace.clone()),
    ];
    let with = instances(&database, 1, &env, &mut dirs).await;
    let (with_name, _) = partitions(&client, &with[0]).await.unwrap();
    publisher_taken_by(
        &database,
        &with_name,
        Instant::now(),
        Duration::from_secs(15),
        "the instance with NATS",
    )
    .await;
    // The engine stayed where it was.
    let servers = [&without[0], &with[0]];
    assert_eq!(owner_of(&client, &servers).await, Ok(0));

    let subscriber = async_nats::connect(nats.as_str()).await.unwrap();
    let subject = format!("{namespace}.cdp.out.{WORKSPACE}.segment.buyers.entered");
    let mut entered = subscriber.subscribe(subject).await.unwrap();
    put_segment(&client, &without[0], ADMIN_TOKEN, "buyers", 1).await;
    assert!(
        send(
            &client,
            &without[0],
            &track("u-nats-elsewhere", "Order Completed", "m-nats-elsewhere")
        )
        .await
    );
    let message = tokio::time::timeout(Duration::from_secs(20), entered.next())
        .await
        .expect("the segment enter reached NATS within 20 s")
        .expect("the subscription is open");
    let payload: Value = serde_json::from_slice(&message.payload).unwrap();
    assert!(payload["profile_id"].is_string(), "{payload}");
}
