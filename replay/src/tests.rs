//! The replay crate's tests: rebuilds, batch + stream, traits, tags and segments against recomputations
//! from the log.
use super::*;
use cdp_domain::catalog::CatalogCommand;
use cdp_domain::computed::{recompute, RawEvent};
use cdp_domain::event::NewEvent;
use cdp_domain::identity::{Identifier, IdentityRules, OperatorCommand};
use cdp_domain::message::{validate, Envelope, MessageKind};
use cdp_domain::store::EventStore;
use cdp_projections::identity::IdentityResolver;
use cdp_projections::outbox::Topic;
use cdp_projections::refold::all_owners;
use cdp_projections::runner::checkpoint;
use cdp_projections::runner::{catch_up, has_applied, run_once};
use serde_json::{json, Value};

/// A workspace id of the tests.
fn ws(raw: &str) -> cdp_domain::ident::WorkspaceId {
    cdp_domain::ident::WorkspaceId::parse(raw).unwrap()
}

/// Every profile row: its workspace, id and stored binary state (none of them JSON any more).
async fn all_docs(store: &Store) -> Vec<(String, String, Vec<u8>)> {
    let Store::Sqlite(s) = store else {
        unreachable!()
    };
    let rows: Vec<cdp_projections::profiles::KeyedDoc> = sqlx::query_as(
        "SELECT workspace, profile, state, doc FROM profiles ORDER BY workspace, profile",
    )
    .fetch_all(s.read_pool())
    .await
    .unwrap();
    rows.into_iter()
        .map(|(w, p, state, doc)| {
            assert!(doc.is_none(), "{w}/{p} was written as JSON");
            (w, p, state.expect("every profile row holds its state"))
        })
        .collect()
}

/// The whole profile model: documents, event owners, identifier holders.
async fn model(
    store: &Store,
) -> (
    Vec<(String, String, Vec<u8>)>,
    Vec<(i64, String, String)>,
    Vec<(String, String, String)>,
) {
    let Store::Sqlite(s) = store else {
        unreachable!()
    };
    // With each event's summary (the 360 view's recent events).
    let owners = sqlx::query_as(
        "SELECT log_seq, profile, coalesce(message_id, '') || ',' || coalesce(kind, '') || ',' || \
         coalesce(name, '') || ',' || coalesce(channel, '') || ',' || coalesce(event_time, 0) || ',' \
         || coalesce(received_at, 0) FROM event_profiles ORDER BY log_seq",
    )
        .fetch_all(s.read_pool())
        .await
        .unwrap();
    let holders = sqlx::query_as(
        "SELECT id_type, value, profile FROM identifier_owners \
         ORDER BY id_type, value, workspace, profile",
    )
    .fetch_all(s.read_pool())
    .await
    .unwrap();
    (all_docs(store).await, owners, holders)
}

fn message(
    i: usize,
    user: Option<usize>,
    email: Option<usize>,
    phone: Option<usize>,
    op: bool,
) -> Value {
    let channel = ["pos", "crm", "app"][i % 3];
    let mut m = json!({"type": if op { "identify" } else { "track" }, "event": "Viewed",
        "messageId": format!("m{i}"), "anonymousId": format!("a{i}"),
        "timestamp": format!("2026-01-01T{:02}:00:00Z", i % 24),
        "traits": {"n": i}, "context": {"channel": channel}});
    if let Some(u) = user {
        m["userId"] = json!(format!("u{u}"));
    }
    if let Some(e) = email {
        m["traits"]["email"] = json!(format!("e{e}@x.cn"));
    }
    if let Some(p) = phone {
        m["traits"]["phone"] = json!(format!("1380013800{p}"));
    }
    m
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..Default::default() })]
    /// However the log is cut into batches — and whether batches are committed one by one or prepared
    /// ahead and committed in groups by the pipeline, folded on one thread or in parts —, the resolver
    /// builds the same profiles, and a rebuild from the log gives them again.
    #[test]
    fn batch_cuts_and_rebuilds_do_not_change_the_profiles(
        specs in proptest::collection::vec(
            (proptest::option::of(0usize..4), proptest::option::of(0usize..4),
             proptest::option::of(0usize..3), proptest::bool::ANY), 1..40),
        commands in proptest::collection::vec((0usize..40, 0usize..40, 0usize..4, proptest::bool::ANY), 0..6),
        batch in 1u32..7,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let now = chrono::Utc::now();
            let envelope = Envelope { workspace: "w", received_at: now, batch_sent_at: None, implied_kind: None };
            let mut events: Vec<NewEvent> = specs.iter().enumerate()
                .map(|(i, (u, e, p, op))| validate(message(i, *u, *e, *p, *op), &envelope, || unreachable!()).unwrap())
                .collect();
            // Operator merges and splits among them (many refused: the profiles may not exist).
            let customers = events.len();
            for (n, (at, other, k, merge)) in commands.iter().enumerate() {
                let other = &(*other % customers);
                let profile = |m: usize| cdp_projections::identity::profile_id_for("w", &format!("m{m}"));
                let command = if *merge {
                    OperatorCommand::Merge { profile_ids: vec![profile(*other), profile(0)],
                        reason: "p".into(), actor: "t".into() }
                } else {
                    OperatorCommand::Split { profile_id: profile(*other),
                        identifiers: [Identifier::new("anonymous_id", &format!("a{other}")),
                                      Identifier::new("email", &format!("e{k}@x.cn"))][..1 + k % 2].to_vec(),
                        reason: "p".into(), actor: "t".into() }
                };
                let mut payload = serde_json::to_value(&command).unwrap();
                payload["type"] = json!("operator");
                let op = NewEvent { workspace: "w".into(), message_id: format!("op{n}"), kind: MessageKind::Operator,
                    name: Some(command.name().into()), user_id: None, anonymous_id: None,
                    event_time: now, received_at: now, payload: payload.to_string() };
                // After the event it names, so that the profile may exist.
                let after = events.iter().position(|e| e.message_id == format!("m{other}")).unwrap();
                events.insert(after + 1 + *at % (events.len() - after), op);
            }
            let mut models = Vec::new();
            // One batch at a time, each committed before the next is prepared; then the pipeline,
            // which prepares batches ahead of their commit and commits them in groups.
            // Folded on one thread and in 3 and 2 parts (the profiles of a batch split between them).
            for (limit, pipelined, parts) in [(2_000, false, 1), (batch, false, 3), (batch, true, 2)] {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open_embedded(dir.path()).await.unwrap();
                store.append(&events).await.unwrap();
                let resolver = IdentityResolver::default().in_parts(parts);
                if pipelined {
                    // Up to 3 more batches waiting for the writer (its commits take them together).
                    let applied = cdp_projections::pipeline::drive_grouped(&store, &resolver, limit,
                        3 * limit as usize, cdp_domain::event::Position::END, &mut |_| {}, None).await.unwrap();
                    assert_eq!(applied as usize, events.len());
                } else {
                    while run_once(&store, &resolver, limit).await.unwrap().applied > 0 {}
                }
                let live = model(&store).await;
                rebuild_profiles(&store).await.unwrap();
                assert_eq!(model(&store).await, live, "a rebuild changes nothing");
                models.push(live);
            }
            assert_eq!(models[0], models[1], "batches of {batch} in 3 parts build other profiles");
            assert_eq!(models[0], models[2], "the pipeline, in batches of {batch}, builds other profiles");
            // Every event belongs to exactly one live profile, and every live profile has a document.
            let (docs, owners, _) = &models[0];
            let customer_events = events.iter().filter(|e| e.kind != MessageKind::Operator).count();
            assert_eq!(owners.len(), customer_events);
            for (_, p, summary) in owners {
                assert!(!summary.starts_with(','), "an event of {p} has no summary");
                assert!(docs.iter().any(|(_, d, _)| d == p), "{p} owns events but has no document");
            }
        });
    }
}

#[tokio::test]
async fn the_recent_events_are_the_newest_fifty_by_event_time_whatever_the_arrival_order() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path()).await.unwrap();
    let envelope = envelope_at(chrono::Utc::now());
    // 120 events of one customer, arriving out of event-time order (a backfill among live ones), four
    // of them at each minute so that the message id decides among equal times.
    let minute = |i: usize| (i * 7) % 30;
    let events: Vec<NewEvent> = (0..120)
        .map(|i| {
            let channel = ["pos", "app"][i % 2];
            let m = json!({"type": "track", "event": format!("E{}", i % 3), "userId": "u",
                "messageId": format!("m{i:03}"),
                "timestamp": format!("2026-01-01T10:{:02}:00Z", minute(i)),
                "context": {"channel": channel}});
            validate(m, &envelope, || unreachable!()).unwrap()
        })
        .collect();
    let resolver = IdentityResolver::default();
    for part in events.chunks(25) {
        store.append(part).await.unwrap();
        catch_up(&store, &resolver).await.unwrap();
    }
    let profile = cdp_projections::identity::profile_id_for("w", "m000");
    let recent = profiles::recent_events(&store, &ws("w"), profile.as_str())
        .await
        .unwrap();
    let mut expected: Vec<&NewEvent> = events.iter().collect();
    expected.sort_by(|a, b| (b.event_time, &b.message_id).cmp(&(a.event_time, &a.message_id)));
    expected.truncate(cdp_domain::profile::RECENT_EVENTS);
    let ids: Vec<&str> = recent.iter().map(|e| e.message_id.as_str()).collect();
    let want: Vec<&str> = expected.iter().map(|e| e.message_id.as_str()).collect();
    assert_eq!(ids, want);
    let first = &recent[0];
    let source = expected[0];
    assert_eq!(
        (first.kind.as_str(), first.name.as_deref(), first.timestamp),
        ("track", source.name.as_deref(), source.event_time)
    );
    let channel = if source.message_id.ends_with(['0', '2', '4', '6', '8']) {
        "pos"
    } else {
        "app"
    };
    assert_eq!(first.channel, channel);
    assert!(profiles::recent_events(&store, &ws("w"), "p_none")
        .await
        .unwrap()
        .is_empty());
}

#[tokio::test]
async fn a_rebuild_gives_exactly_the_live_state() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path()).await.unwrap();
    let now = chrono::Utc::now();
    let envelope = Envelope {
        workspace: "w",
        received_at: now,
        batch_sent_at: None,
        implied_kind: None,
    };
    // Seven users, some of them joined by shared emails, so that merges happen on the way.
    let events: Vec<NewEvent> = (0..60)
        .map(|i| {
            let channel = ["pos", "crm", "app"][i % 3];
            let m = json!({"type": if i % 5 == 0 { "identify" } else { "track" }, "event": "Viewed",
                "userId": format!("u{}", i % 7), "messageId": format!("m{i}"),
                "traits": {"n": i, "email": format!("e{}@x.cn", i % 9)},
                "context": {"channel": channel}});
            validate(m, &envelope, || unreachable!()).unwrap()
        })
        .collect();
    let resolver = IdentityResolver::default();
    store.append(&events[..30]).await.unwrap();
    catch_up(&store, &resolver).await.unwrap();
    store.append(&events[30..]).await.unwrap();
    catch_up(&store, &resolver).await.unwrap();
    let live = all_docs(&store).await;
    assert!(live.len() > 1);

    assert_eq!(rebuild_profiles(&store).await.unwrap(), 60);
    assert_eq!(all_docs(&store).await, live);
}

/// Trait definitions the property test picks from: every function, windows, line items, filters.
fn trait_definitions() -> Vec<Value> {
    vec![
        json!({"event": "Order Completed", "function": "sum", "property": "properties.total", "window": "30d"}),
        json!({"event": "Order Completed", "function": "count", "where": [
            {"property": "properties.products[].category", "op": "eq", "value": "shoes"}]}),
        json!({"event": "Order Completed", "function": "sum",
               "property": "properties.products[].price * properties.products[].quantity",
               "where": [{"property": "properties.products[].category", "op": "neq", "value": "hats"}]}),
        json!({"event": "Order Completed", "function": "max", "property": "properties.total", "window": "7d"}),
        json!({"event": "Order Completed", "function": "min", "property": "properties.total"}),
        json!({"event": "Order Completed", "function": "average", "property": "properties.total", "window": "45d"}),
        json!({"event": "Order Completed", "function": "first", "property": "properties.store"}),
        json!({"event": "Order Completed", "function": "last"}),
        json!({"event": "Order Completed", "function": "most_frequent", "property": "properties.products[].category"}),
        json!({"event": "Order Completed", "function": "distinct_count", "property": "properties.store", "window": "20d"}),
        json!({"event": "Order Completed", "function": "unique_list", "property": "properties.products[].category"}),
        json!({"event": "Order Completed", "function": "days_active", "window": "30d"}),
        json!({"event": "Order Completed", "function": "count", "window": "36h"}),
    ]
}

fn catalog_event(
    n: usize,
    command: &CatalogCommand,
    now: chrono::DateTime<chrono::Utc>,
) -> NewEvent {
    let mut payload = serde_json::to_value(command).unwrap();
    payload["type"] = json!("operator");
    NewEvent {
        workspace: "w".into(),
        message_id: format!("cat{n}"),
        kind: MessageKind::Operator,
        name: Some(command.name().into()),
        user_id: None,
        anonymous_id: None,
        event_time: now,
        received_at: now,
        payload: payload.to_string(),
    }
}

/// Every live profile's computed traits against a recomputation from the raw events it owns.
async fn check_traits_against_the_log(store: &Store, now: chrono::DateTime<chrono::Utc>) {
    let catalog = catalog::load(store, &ws("w")).await.unwrap();
    let owners = all_owners(store).await.unwrap();
    let log = cdp_domain::store::EventStore::read_after(store, Position::START, 100_000)
        .await
        .unwrap();
    let payloads: Vec<Value> = log
        .iter()
        .map(|e| serde_json::from_str(&e.event.payload).unwrap())
        .collect();
    for (_, profile, state) in all_docs(store).await {
        let doc = ProfileDoc::from_stored(Some(&state), None).unwrap();
        let raw: Vec<RawEvent<'_>> = log
            .iter()
            .zip(&payloads)
            .filter(|(e, _)| {
                owners
                    .get(&e.position.seq)
                    .is_some_and(|(_, p)| p.as_str() == profile)
            })
            .map(|(e, payload)| RawEvent {
                kind: e.event.kind,
                name: e.event.name.as_deref(),
                payload,
                event_time: e.event.event_time,
                message_id: &e.event.message_id,
            })
            .collect();
        let values = doc.computed_values(catalog.folded(), now);
        for (name, defined) in catalog.folded() {
            let expected = recompute(&defined.def, &raw, now);
            let got = &values[name];
            assert!(got.complete, "{name} of {profile} is not complete");
            assert_eq!(
                got.value,
                expected,
                "{name} of {profile} ({} events)",
                raw.len()
            );
        }
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]
    /// Computed traits defined at any point of the log — over history (backfilled) or before the
    /// events — with merges and splits among the events, in batches of any size, with the resolver
    /// restarted between batches, equal a recomputation from each profile's raw events; and a rebuild
    /// from the log gives the same documents.
    #[test]
    fn computed_traits_equal_a_recomputation_from_the_log(
        orders in proptest::collection::vec(
            (0usize..5, proptest::option::of(0usize..3), 0u32..60, 0u32..2000, 0usize..3, 0usize..3), 1..30),
        definitions in proptest::collection::vec((0usize..13, 0usize..40), 1..5),
        commands in proptest::collection::vec((0usize..40, 0usize..30, proptest::bool::ANY), 0..4),
        batch in 1u32..9,
        restart_every in 1usize..4,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let now = chrono::Utc::now();
            let envelope = Envelope { workspace: "w", received_at: now, batch_sent_at: None, implied_kind: None };
            let categories = ["shoes", "hats", "bags"];
            let mut events: Vec<NewEvent> = orders.iter().enumerate().map(|(i, (user, email, days, cents, cat, store))| {
                let t = now - chrono::Duration::hours(i64::from(*days) * 17 % (60 * 24));
                let mut m = json!({"type": "track", "event": "Order Completed", "messageId": format!("m{i}"),
                    "userId": format!("u{user}"), "anonymousId": format!("a{i}"),
                    "timestamp": t.to_rfc3339(),
                    "properties": {"total": f64::from(*cents) / 4.0, "store": format!("s{store}"),
                        "products": [{"category": categories[*cat], "price": f64::from(*cents % 97) / 2.0, "quantity": 1 + cat},
                                     {"category": categories[(cat + 1) % 3], "price": 3.5, "quantity": 2}]}});
                if let Some(e) = email {
                    m["traits"] = json!({"email": format!("e{e}@x.cn")});
                }
                validate(m, &envelope, || unreachable!()).unwrap()
            }).collect();
            for (n, (at, other, merge)) in commands.iter().enumerate() {
                let other = *other % orders.len();
                let profile = |m: usize| cdp_projections::identity::profile_id_for("w", &format!("m{m}"));
                let command = if *merge {
                    OperatorCommand::Merge { profile_ids: vec![profile(other), profile(0)], reason: "p".into(), actor: "t".into() }
                } else {
                    OperatorCommand::Split { profile_id: profile(other),
                        identifiers: vec![Identifier::new("anonymous_id", &format!("a{other}"))],
                        reason: "p".into(), actor: "t".into() }
                };
                let mut payload = serde_json::to_value(&command).unwrap();
                payload["type"] = json!("operator");
                let op = NewEvent { workspace: "w".into(), message_id: format!("op{n}"), kind: MessageKind::Operator,
                    name: Some(command.name().into()), user_id: None, anonymous_id: None,
                    event_time: now, received_at: now, payload: payload.to_string() };
                let after = events.iter().position(|e| e.message_id == format!("m{other}")).unwrap();
                events.insert(after + 1 + at % (events.len() - after), op);
            }
            // Definitions anywhere in the log; the same name twice is a change of definition.
            let all = trait_definitions();
            for (n, (which, at)) in definitions.iter().enumerate() {
                let command = CatalogCommand::PutTrait { name: format!("t{}", which % 4),
                    definition: all[*which].clone(), actor: "t".into() };
                events.insert(at % (events.len() + 1), catalog_event(n, &command, now));
            }
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_embedded(dir.path()).await.unwrap();
            store.append(&events).await.unwrap();
            let clock: cdp_projections::identity::Clock = std::sync::Arc::new(move || now);
            let mut resolver = IdentityResolver::with_clock(clock.clone());
            let mut steps = 0;
            loop {
                let progress = run_once(&store, &resolver, batch).await.unwrap();
                if progress.applied == 0 && !progress.worked {
                    break;
                }
                steps += 1;
                if steps % restart_every == 0 {
                    resolver = IdentityResolver::with_clock(clock.clone());
                }
            }
            check_traits_against_the_log(&store, now).await;
            let live = all_docs(&store).await;
            rebuild_profiles(&store).await.unwrap();
            assert_eq!(all_docs(&store).await, live, "a rebuild from the log changes nothing");
        });
    }
}

/// A windowed value leaving a tag's range changes the tag when the window moves on, with no new
/// event: the profile is due at the moment, and the change is published like any other.
/// A fresh store and a resolver on a clock the test moves, starting at 2026-06-10T10:00:00Z (windows are
/// UTC calendar days: 10:00 leaves the rest of the day before the next).
struct Clocked {
    _dir: tempfile::TempDir,
    store: Store,
    now: std::sync::Arc<std::sync::Mutex<chrono::DateTime<chrono::Utc>>>,
    resolver: IdentityResolver,
    start: chrono::DateTime<chrono::Utc>,
}

impl Clocked {
    async fn new() -> Clocked {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path()).await.unwrap();
        let start = chrono::DateTime::parse_from_rfc3339("2026-06-10T10:00:00Z")
            .unwrap()
            .to_utc();
        let now = std::sync::Arc::new(std::sync::Mutex::new(start));
        let clock_now = now.clone();
        let clock: cdp_projections::identity::Clock =
            std::sync::Arc::new(move || *clock_now.lock().unwrap());
        Clocked {
            _dir: dir,
            store,
            now,
            resolver: IdentityResolver::with_clock(clock),
            start,
        }
    }
}

/// Messages of workspace `w` received at `at`.
fn envelope_at(at: chrono::DateTime<chrono::Utc>) -> Envelope<'static> {
    Envelope {
        workspace: "w",
        received_at: at,
        batch_sent_at: None,
        implied_kind: None,
    }
}

#[tokio::test]
async fn a_tag_changes_on_time_without_new_events() {
    let Clocked {
        _dir,
        store,
        now,
        resolver,
        start,
    } = Clocked::new().await;
    let envelope = envelope_at(start);
    let spend = CatalogCommand::PutTrait {
        name: "spend_7d".into(),
        actor: "t".into(),
        definition: json!({"event": "Order Completed", "function": "sum", "property": "properties.total", "window": "7d"}),
    };
    let tag = CatalogCommand::PutTag {
        name: "active_buyer".into(),
        actor: "t".into(),
        definition: json!({"type": "rule", "condition": {"computed": "spend_7d", "op": "gte", "value": 100}}),
    };
    let order = validate(json!({"type": "track", "event": "Order Completed", "userId": "u1", "messageId": "o1",
        "timestamp": (start - chrono::Duration::days(6)).to_rfc3339(), "properties": {"total": 150}}),
        &envelope, || unreachable!()).unwrap();
    store
        .append(&[
            catalog_event(0, &spend, start),
            catalog_event(1, &tag, start),
            order,
        ])
        .await
        .unwrap();
    catch_up(&store, &resolver).await.unwrap();
    let messages = |store: Store| async move {
        cdp_projections::outbox::outbox_after(&store, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| matches!(m.topic, Topic::TagChanged { .. }))
            .map(|m| serde_json::from_str::<Value>(&m.payload).unwrap())
            .collect::<Vec<_>>()
    };
    let sent = messages(store.clone()).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["value"], true);
    assert_eq!(sent[0]["caused_by"], "o1");

    // Later that day the order is still in the window: nothing is due, nothing changes.
    *now.lock().unwrap() = start + chrono::Duration::hours(13);
    catch_up(&store, &resolver).await.unwrap();
    let sent = messages(store.clone()).await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    // Once the order's day leaves the 7-day window (at midnight), the tag goes, without any event.
    *now.lock().unwrap() = start + chrono::Duration::hours(14);
    assert!(
        cdp_projections::runner::Projection::has_pending_work(&resolver, &store)
            .await
            .unwrap()
    );
    catch_up(&store, &resolver).await.unwrap();
    let sent = messages(store.clone()).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[1]["value"], Value::Null);
    assert_eq!(sent[1]["previous"], true);
    assert_eq!(sent[1]["caused_by"], "clock");
    let tags = cdp_projections::catalog::tags_of(
        &store,
        &ws("w"),
        &[sent[0]["profile_id"].as_str().unwrap()],
    )
    .await
    .unwrap();
    assert!(tags.is_empty(), "{tags:?}");
    assert!(
        !cdp_projections::runner::Projection::has_pending_work(&resolver, &store)
            .await
            .unwrap()
    );
}

/// "Added to cart, no order within 2 hours" fires when the 2 hours pass, not when the next event
/// comes; an order in time keeps the customer out; "viewed then bought within a day" enters on the
/// order.
#[tokio::test]
async fn a_sequence_times_out_on_time_and_is_published() {
    let Clocked {
        _dir,
        store,
        now,
        resolver,
        start,
    } = Clocked::new().await;
    let envelope = envelope_at(start);
    let event = |user: &str, id: &str, name: &str, minutes: i64| {
        validate(json!({"type": "track", "event": name,
        "userId": user, "messageId": id, "timestamp": (start + chrono::Duration::minutes(minutes)).to_rfc3339()}),
        &envelope, || unreachable!()).unwrap()
    };
    let abandoned = CatalogCommand::PutSegment {
        id: "abandoned_cart".into(),
        actor: "t".into(),
        definition: json!({"condition": {"sequence": [{"event": "Product Added"}, {"not_event": "Order Completed"}], "within": "2h"}}),
    };
    let converted = CatalogCommand::PutSegment {
        id: "converted".into(),
        actor: "t".into(),
        definition: json!({"condition": {"sequence": [{"event": "Product Viewed"}, {"event": "Order Completed"}], "within": "1d"}}),
    };
    store
        .append(&[
            catalog_event(0, &abandoned, start),
            catalog_event(1, &converted, start),
            event("slow", "a1", "Product Added", 0),
            event("quick", "b1", "Product Added", 0),
            event("quick", "b2", "Order Completed", 30),
            event("quick", "b0", "Product Viewed", -60),
        ])
        .await
        .unwrap();
    catch_up(&store, &resolver).await.unwrap();
    let outbox = |store: Store| async move {
        cdp_projections::outbox::outbox_after(&store, 0, 100)
            .await
            .unwrap()
            .into_iter()
            .filter(|m| matches!(m.topic, Topic::Segment { .. }))
            .map(|m| (m.topic, serde_json::from_str::<Value>(&m.payload).unwrap()))
            .collect::<Vec<_>>()
    };
    let sent = outbox(store.clone()).await;
    assert_eq!(
        sent.len(),
        1,
        "only the quick buyer converted so far: {sent:?}"
    );
    assert_eq!(
        sent[0].0,
        Topic::Segment {
            segment: "converted".into(),
            entered: true
        }
    );
    // The view arrived late (after the order, with an earlier time): it completed the sequence.
    assert_eq!(sent[0].1["caused_by"], "b0");

    // 1h59m: nothing yet.
    *now.lock().unwrap() = start + chrono::Duration::minutes(119);
    catch_up(&store, &resolver).await.unwrap();
    assert_eq!(outbox(store.clone()).await.len(), 1);
    // 2h: the slow customer's cart is abandoned — on time, without any event.
    *now.lock().unwrap() = start + chrono::Duration::minutes(120);
    assert!(
        cdp_projections::runner::Projection::has_pending_work(&resolver, &store)
            .await
            .unwrap()
    );
    catch_up(&store, &resolver).await.unwrap();
    let sent = outbox(store.clone()).await;
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(
        sent[1].0,
        Topic::Segment {
            segment: "abandoned_cart".into(),
            entered: true
        }
    );
    assert_eq!(sent[1].1["caused_by"], "clock");
    // A late order leaves it (the latest cart was not followed within 2 h, but a new cart resets it).
    store
        .append(&[event("slow", "a2", "Product Added", 130)])
        .await
        .unwrap();
    catch_up(&store, &resolver).await.unwrap();
    let sent = outbox(store.clone()).await;
    assert_eq!(
        sent.last().unwrap().0,
        Topic::Segment {
            segment: "abandoned_cart".into(),
            entered: false
        },
        "{sent:?}"
    );
}

mod rebuild;
mod rfm;

/// The engine's partition lease (`cdp_projections::lease`): an owner whose lease was taken over while
/// it stalled commits nothing and stops; the new owner commits; a lease given up is taken at once.
/// On both backends: PostgreSQL's commit checks the fence in the statement that also answers the
/// transaction's id.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_owner_whose_lease_was_taken_commits_nothing_and_stops() {
    lease_taken(&rebuild::stores::sqlite_store().await.store).await;
    match rebuild::stores::postgres_store("lease_taken").await {
        Some(test) => lease_taken(&test.store).await,
        None => eprintln!("CDP_TEST_DATABASE_URL is not set: the PostgreSQL variant is SKIPPED"),
    }
}

async fn lease_taken(store: &Store) {
    use cdp_projections::lease::{owned_by, Lease};
    use cdp_projections::pipeline::{drive, Idle};
    use cdp_projections::runner::{checkpoint, ProjectionError, RunnerStatus};
    use std::sync::Arc;
    use std::time::Duration;

    let store = store.clone();
    let envelope = envelope_at(chrono::Utc::now());
    let events: Vec<NewEvent> = (0..3)
        .map(|i| {
            let m = json!({"type": "track", "event": "Viewed", "messageId": format!("m{i}"),
                           "userId": "u"});
            validate(m, &envelope, || unreachable!()).unwrap()
        })
        .collect();
    store.append(&events).await.unwrap();
    let part = IdentityResolver::NAME;
    let a = Arc::new(
        Lease::acquire(&store, part, "a")
            .await
            .unwrap()
            .expect("free"),
    );
    assert!(
        Lease::acquire(&store, part, "b").await.unwrap().is_none(),
        "a holds it"
    );
    // `a` stalls past its lease's time: `b` takes the partition.
    let lapse = "UPDATE engine_leases SET expires_at = 0";
    match &store {
        Store::Sqlite(s) => sqlx::query(lapse).execute(s.write_pool()).await.map(drop),
        Store::Postgres(s) => sqlx::query(lapse).execute(s.pool()).await.map(drop),
    }
    .unwrap();
    let b = Arc::new(
        Lease::acquire(&store, part, "b")
            .await
            .unwrap()
            .expect("lapsed"),
    );
    assert!(b.fence() > a.fence());

    // `a`'s pipeline, still running, reaches its commit: nothing is written and it ends.
    let (wake, status) = (
        tokio::sync::Notify::new(),
        Arc::new(RunnerStatus::default()),
    );
    let under = |lease| Idle {
        wake: &wake,
        poll: Duration::from_millis(10),
        status: &status,
        lease: Some(lease),
    };
    let resolver = IdentityResolver::default();
    let end = cdp_domain::event::Position::END;
    let mut nothing = |_: &cdp_projections::pipeline::Committed| {};
    let stopping = drive(&store, &resolver, 100, end, &mut nothing, Some(under(&a)));
    let run = tokio::time::timeout(Duration::from_secs(5), stopping)
        .await
        .expect("the pipeline under a lost lease ends");
    assert!(matches!(run, Err(ProjectionError::LeaseLost(_))), "{run:?}");
    assert!(a.is_lost());
    assert!(!a.renew(&store).await.unwrap());
    assert_eq!(checkpoint(&store, part).await.unwrap().seq, 0);

    // `b`'s commits land (its pipeline follows the log until stopped).
    let resolver = IdentityResolver::default();
    let following = drive(&store, &resolver, 100, end, &mut nothing, Some(under(&b)));
    let _ = tokio::time::timeout(Duration::from_millis(500), following).await;
    assert_eq!(checkpoint(&store, part).await.unwrap().seq, 3);
    assert_eq!(owned_by(&store, "b").await.unwrap(), vec![part.to_owned()]);

    // `b` gives it up (a shutdown): a third instance takes it at once, under a higher fence.
    b.release(&store).await.unwrap();
    let c = Lease::acquire(&store, part, "c")
        .await
        .unwrap()
        .expect("given up");
    assert!(c.fence() > b.fence());
    assert!(owned_by(&store, "b").await.unwrap().is_empty());
    assert_eq!(owned_by(&store, "c").await.unwrap(), vec![part.to_owned()]);
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 16, ..Default::default() })]
    /// The engine split into parts by workspace (`CDP_ENGINE_PARTITIONS`), each part stepping through
    /// the log in turn in batches of any size, builds the model the whole resolver builds, and the
    /// batch side (`replay batch`, written under every part's checkpoint) gives it again.
    #[test]
    fn the_engine_in_parts_builds_the_model_of_the_whole(
        specs in proptest::collection::vec(
            (proptest::option::of(0usize..4), proptest::option::of(0usize..4),
             proptest::option::of(0usize..3), 0usize..3), 1..40),
        count in 2u32..5,
        batch in 1u32..9,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let now = chrono::Utc::now();
            let workspaces = ["w", "x", "shop-7"];
            let events: Vec<NewEvent> = specs.iter().enumerate()
                .map(|(i, (u, e, p, w))| {
                    let envelope = Envelope { workspace: workspaces[*w], received_at: now,
                        batch_sent_at: None, implied_kind: None };
                    validate(message(i, *u, *e, *p, false), &envelope, || unreachable!()).unwrap()
                })
                .collect();
            let mut models = Vec::new();
            for parts in [1, count] {
                let dir = tempfile::tempdir().unwrap();
                let store = Store::open_embedded(dir.path()).await.unwrap();
                for w in workspaces {
                    store.ensure_workspace(w).await.unwrap();
                }
                assert_eq!(cdp_projections::partitions::settle(&store, parts).await.unwrap(), parts);
                store.append(&events).await.unwrap();
                let resolvers: Vec<IdentityResolver> = cdp_projections::partitions::Part::all(parts)
                    .into_iter()
                    .map(|part| IdentityResolver::default().in_part(part))
                    .collect();
                // Each part a batch in turn, until none moves.
                let mut applied = 0;
                loop {
                    let mut moved = false;
                    for resolver in &resolvers {
                        let step = run_once(&store, resolver, batch).await.unwrap();
                        applied += step.applied;
                        moved |= step.applied > 0 || step.worked;
                    }
                    if !moved {
                        break;
                    }
                }
                assert_eq!(applied, events.len(), "every event applied by exactly one part");
                let end = events.len() as i64;
                assert_eq!(checkpoint(&store, IdentityResolver::NAME).await.unwrap().seq, end);
                let live = model(&store).await;
                rebuild_profiles(&store).await.unwrap();
                assert_eq!(model(&store).await, live, "the batch side changes nothing");
                models.push(live);
            }
            assert_eq!(models[0], models[1], "{count} parts build another model than the whole");
        });
    }
}

/// An event counts as applied once the part running its workspace has passed it, whatever the other
/// parts have done; the resolver's checkpoint (the lowest part's) waits for all of them.
#[tokio::test]
async fn an_event_is_applied_once_its_workspaces_part_has_passed_it() {
    use cdp_projections::partitions::{part_of, settle, Part};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path()).await.unwrap();
    let names: Vec<String> = (0..16).map(|i| format!("ws-{i}")).collect();
    let a = names.iter().find(|w| part_of(w, 2) == 0).unwrap();
    let b = names.iter().find(|w| part_of(w, 2) == 1).unwrap();
    for w in [a, b] {
        store.ensure_workspace(w).await.unwrap();
    }
    assert_eq!(settle(&store, 2).await.unwrap(), 2);
    let now = chrono::Utc::now();
    let events: Vec<NewEvent> = [(a, 0), (b, 1)]
        .into_iter()
        .map(|(w, i)| {
            let envelope = Envelope {
                workspace: w,
                received_at: now,
                batch_sent_at: None,
                implied_kind: None,
            };
            validate(
                message(i, Some(i), None, None, false),
                &envelope,
                || unreachable!(),
            )
            .unwrap()
        })
        .collect();
    store.append(&events).await.unwrap();
    let resolver = |index| IdentityResolver::default().in_part(Part { index, count: 2 });
    let (first, second) = (resolver(0), resolver(1));
    while run_once(&store, &first, 100).await.unwrap().worked {}
    assert!(has_applied(&store, IdentityResolver::NAME, &ws(a), "m0")
        .await
        .unwrap());
    assert!(!has_applied(&store, IdentityResolver::NAME, &ws(b), "m1")
        .await
        .unwrap());
    assert_eq!(
        checkpoint(&store, IdentityResolver::NAME)
            .await
            .unwrap()
            .seq,
        0
    );
    while run_once(&store, &second, 100).await.unwrap().worked {}
    assert!(has_applied(&store, IdentityResolver::NAME, &ws(b), "m1")
        .await
        .unwrap());
    assert_eq!(
        checkpoint(&store, IdentityResolver::NAME)
            .await
            .unwrap()
            .seq,
        2
    );
}
