//! A saved segment with event conditions filled from the audience index, driven step by step on the
//! engine (the resolver with an index, on a fixed clock): the members are written at the job's first
//! step, before it has visited any profile; its pages then backfill every profile's hidden trait and
//! change no membership; a profile an event touches before its page is evaluated on complete traits.
//! And a seeded random test: for random profiles, events at the windows' edges and random definitions
//! (counts and days active, some with a `where` on a property, in windows of days and hours, in all /
//! any / not), the fill gives the members, history and profile states that the job alone (a resolver
//! without an index) gives.

use std::sync::Arc;

use cdp_domain::catalog::CatalogCommand;
use cdp_domain::event::{NewEvent, Position};
use cdp_domain::message::{validate, Envelope, MessageKind};
use cdp_domain::store::{EventStore, Store};
use cdp_projections::audience::Audiences;
use cdp_projections::catalog::{self, Job};
use cdp_projections::identity::IdentityResolver;
use cdp_projections::jobs::{FILLED_THEN_BACKFILL, JOB_PAGE};
use cdp_projections::runner::{catch_up, run_once};
use chrono::{DateTime, Duration, TimeZone, Utc};
use serde_json::{json, Value};

use crate::helpers::*;

const WS: &str = "w";

fn ws() -> cdp_domain::ident::WorkspaceId {
    cdp_domain::ident::WorkspaceId::parse(WS).unwrap()
}

/// The engine over a fresh store: the resolver on a fixed clock, with the audience index or without.
struct Engine {
    store: Store,
    _guard: StoreGuard,
    resolver: IdentityResolver,
    audiences: Option<Audiences>,
    now: DateTime<Utc>,
    commands: usize,
    /// Events appended so far.
    appended: usize,
}

impl Engine {
    async fn new(backend: Backend, now: DateTime<Utc>, with_index: bool) -> Engine {
        let (store, guard) = fresh_store(backend).await;
        let resolver = IdentityResolver::with_clock(Arc::new(move || now)).in_parts(1);
        let audiences = with_index.then(Audiences::default);
        let resolver = match &audiences {
            Some(a) => resolver.reporting_to(a.clone()),
            None => resolver,
        };
        Engine {
            store,
            _guard: guard,
            resolver,
            audiences,
            now,
            commands: 0,
            appended: 0,
        }
    }

    async fn append(&mut self, messages: &[Value]) {
        let envelope = Envelope {
            workspace: WS,
            received_at: self.now,
            batch_sent_at: None,
            implied_kind: None,
        };
        let events: Vec<NewEvent> = messages
            .iter()
            .map(|m| validate(m.clone(), &envelope, || unreachable!()).unwrap())
            .collect();
        for chunk in events.chunks(1_000) {
            self.store.append(chunk).await.unwrap();
        }
        self.appended += events.len();
    }

    async fn define(&mut self, id: &str, condition: &Value) {
        let command = CatalogCommand::PutSegment {
            id: id.into(),
            definition: json!({ "condition": condition }),
            actor: "t".into(),
        };
        let mut payload = serde_json::to_value(&command).unwrap();
        payload["type"] = json!("operator");
        self.commands += 1;
        let event = NewEvent {
            workspace: WS.into(),
            message_id: format!("cat{}", self.commands),
            kind: MessageKind::Operator,
            name: Some(command.name().into()),
            user_id: None,
            anonymous_id: None,
            event_time: self.now,
            received_at: self.now,
            payload: payload.to_string(),
        };
        self.store.append(&[event]).await.unwrap();
        self.appended += 1;
    }

    /// Waits until every event appended can be read: on PostgreSQL a reader reads only below the
    /// oldest transaction running anywhere on the server (another test's), so a step may not see the
    /// latest events at once.
    async fn visible(&self) {
        eventually("every appended event readable", || async {
            let log = self
                .store
                .read_after(Position::START, u32::MAX)
                .await
                .unwrap();
            if log.len() == self.appended {
                Ok(())
            } else {
                Err(format!("{} of {}", log.len(), self.appended))
            }
        })
        .await;
    }

    async fn catch_up(&self) {
        self.visible().await;
        catch_up(&self.store, &self.resolver).await.unwrap();
    }

    /// One step of the resolver: the next batch of events (every one appended), or else the work
    /// between batches.
    async fn step(&self) {
        self.visible().await;
        run_once(&self.store, &self.resolver, 100_000)
            .await
            .unwrap();
    }

    async fn build_index(&self) {
        let audiences = self.audiences.as_ref().expect("an engine with an index");
        audiences.build(&self.store, &ws(), self.now).await.unwrap();
    }

    async fn job(&self, segment: &str) -> Job {
        catalog::latest_job(&self.store, &ws(), catalog::SEGMENT, segment)
            .await
            .unwrap()
            .expect("the segment has a job")
    }

    async fn members(&self, segment: &str) -> Vec<String> {
        catalog::members_page(&self.store, &ws(), segment, "", 100_000)
            .await
            .unwrap()
            .into_iter()
            .map(|(p, _, _)| p)
            .collect()
    }

    /// Every live profile with its document, in profile id order.
    async fn docs(&self) -> Vec<(String, cdp_domain::profile::ProfileDoc)> {
        catalog::profiles_after(&self.store, &ws(), "", 100_000)
            .await
            .unwrap()
    }

    /// Every enter and exit: (segment, profile, entered, at, caused by), sorted.
    async fn history(&self) -> Vec<(String, String, bool, i64, Option<String>)> {
        let profiles: Vec<String> = self.docs().await.into_iter().map(|(p, _)| p).collect();
        let mut all: Vec<_> = catalog::membership_history(&self.store, &ws(), &profiles)
            .await
            .unwrap()
            .into_iter()
            .map(|c| (c.segment, c.profile, c.entered, c.at, c.caused_by))
            .collect();
        all.sort();
        all
    }

    /// The profile ids of users, by user id.
    async fn ids(&self, users: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for u in users {
            let holder = cdp_projections::profiles::holder(&self.store, &ws(), "user_id", u)
                .await
                .unwrap()
                .unwrap_or_else(|| panic!("{u} has a profile"));
            out.push(holder);
        }
        out
    }
}

fn identify(user: &str, id: &str, traits: Value) -> Value {
    json!({"type": "identify", "userId": user, "messageId": id, "traits": traits})
}

fn tracked(user: &str, id: &str, event: &str, at: DateTime<Utc>) -> Value {
    json!({"type": "track", "userId": user, "event": event, "messageId": id,
           "timestamp": at.to_rfc3339()})
}

/// A track event with a category among its properties.
fn tracked_in(user: &str, id: &str, event: &str, at: DateTime<Utc>, category: &str) -> Value {
    let mut m = tracked(user, id, event, at);
    m["properties"] = json!({"category": category});
    m
}

/// Whether the document holds the segment's hidden trait folded from all of its events.
fn holds_complete(doc: &cdp_domain::profile::ProfileDoc, hidden: &str) -> bool {
    doc.computed.get(hidden).is_some_and(|e| e.complete)
}

/// The members are written at the job's first step from the index, before any page; the pages
/// backfill every profile and change no membership; a member an event touches before its page stays
/// in (its traits backfilled as it is read), a profile whose new event makes it one enters; a rebuild
/// agrees.
#[tokio::test]
async fn event_conditions_are_filled_first_then_backfilled_by_the_job() {
    on_each_backend("audience_fill_steps", |backend| async move {
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 12, 0, 0).unwrap();
        let mut engine = Engine::new(backend, now, true).await;
        // Three pages of profiles: u0..u99 ordered twice (members), u100..u199 once.
        let users: Vec<String> = (0..2 * JOB_PAGE as usize + 150)
            .map(|i| format!("u{i}"))
            .collect();
        let mut messages: Vec<Value> = users
            .iter()
            .map(|u| identify(u, &format!("i-{u}"), json!({"n": u})))
            .collect();
        for (i, u) in users.iter().enumerate().take(200) {
            let orders = if i < 100 { 2 } else { 1 };
            for k in 0..orders {
                let at = now - Duration::days(3 + k as i64);
                messages.push(tracked(u, &format!("o-{u}-{k}"), "Order Completed", at));
            }
        }
        engine.append(&messages).await;
        engine.catch_up().await;
        engine.build_index().await;
        let ids = engine.ids(&users).await;
        let mut expected: Vec<String> = ids[..100].to_vec();
        expected.sort();

        let repeat = json!({"event": "Order Completed", "count": {"op": "gte", "value": 2}, "window": "30d"});
        engine.define("repeat", &repeat).await;
        // The batch that saves it: the job is started, nothing visited.
        engine.step().await;
        let job = engine.job("repeat").await;
        assert_eq!((job.status.as_str(), job.cursor.as_str()), ("running", ""), "{job:?}");
        // Its first step: the members from the index at once, the job going on from the start.
        engine.step().await;
        let job = engine.job("repeat").await;
        assert_eq!(job.status, "running", "{job:?}");
        assert_eq!(job.cursor, FILLED_THEN_BACKFILL, "{job:?}");
        assert_eq!((job.done, job.total), (0, users.len() as i64), "{job:?}");
        assert_eq!(engine.members("repeat").await, expected);
        let docs = engine.docs().await;
        assert!(
            docs.iter().all(|(_, d)| !holds_complete(d, "seg:repeat:0")),
            "no profile is backfilled yet"
        );
        let filled = engine.history().await;
        assert_eq!(filled.len(), 100, "{filled:?}");
        assert!(filled
            .iter()
            .all(|(s, _, entered, at, cause)| s == "repeat"
                && *entered
                && *at == now.timestamp_millis()
                && cause.as_deref() == Some("segment:repeat")));

        // The first page: a thousand profiles backfilled, no membership changed.
        engine.step().await;
        let job = engine.job("repeat").await;
        let reached = job
            .cursor
            .strip_prefix(FILLED_THEN_BACKFILL)
            .expect("the backfill keeps its prefix")
            .to_owned();
        assert_eq!(job.done, JOB_PAGE, "{job:?}");
        assert_eq!(engine.history().await, filled);
        // The second page comes with the next batch; the profiles after it are touched by events
        // before their page: a member (a view) and a one-order customer (a second order).
        let mut sorted = ids.clone();
        sorted.sort();
        let second_page_end = sorted[2 * JOB_PAGE as usize - 1].clone();
        assert!(sorted[JOB_PAGE as usize - 1] == reached, "{reached}");
        let later = |range: std::ops::Range<usize>| {
            range
                .map(|i| (users[i].clone(), ids[i].clone()))
                .find(|(_, id)| *id > second_page_end)
                .expect("a profile after the second page")
        };
        let (member_user, member) = later(0..100);
        let (buyer_user, buyer) = later(100..200);
        engine
            .append(&[
                tracked(&member_user, "v-live", "Product Viewed", now - Duration::minutes(1)),
                tracked(&buyer_user, "o-live", "Order Completed", now - Duration::minutes(1)),
            ])
            .await;
        engine.step().await;
        let job = engine.job("repeat").await;
        assert_eq!(job.status, "running", "{job:?}");
        assert_eq!(job.done, 2 * JOB_PAGE, "{job:?}");
        let mut with_buyer = expected.clone();
        with_buyer.push(buyer.clone());
        with_buyer.sort();
        assert_eq!(engine.members("repeat").await, with_buyer, "the member stayed, the buyer entered");
        let docs: std::collections::BTreeMap<_, _> = engine.docs().await.into_iter().collect();
        assert!(holds_complete(&docs[&member], "seg:repeat:0"), "backfilled as it was read");
        assert!(holds_complete(&docs[&buyer], "seg:repeat:0"), "backfilled as it was read");
        let history = engine.history().await;
        assert_eq!(history.len(), 101, "{history:?}");
        let entered = history
            .iter()
            .find(|(_, p, _, _, _)| *p == buyer)
            .expect("the buyer entered");
        assert_eq!(entered.4.as_deref(), Some("o-live"), "{entered:?}");

        // The rest: the job done, every profile's hidden trait complete, no membership changed.
        engine.catch_up().await;
        let job = engine.job("repeat").await;
        assert_eq!(job.status, "done", "{job:?}");
        assert_eq!(job.done, users.len() as i64, "{job:?}");
        assert!(job.cursor.starts_with(FILLED_THEN_BACKFILL), "{job:?}");
        assert!(engine
            .docs()
            .await
            .iter()
            .all(|(_, d)| holds_complete(d, "seg:repeat:0")));
        assert_eq!(engine.members("repeat").await, with_buyer);
        assert_eq!(engine.history().await, history);

        // A rebuild, whose resolver has no index and runs the job alone, agrees with every membership
        // and every state.
        let docs = engine.docs().await;
        let clock = IdentityResolver::with_clock(Arc::new(move || now));
        cdp_replay::rebuild::rebuild_with(&engine.store, &clock, &|_| {})
            .await
            .unwrap();
        assert_eq!(engine.members("repeat").await, with_buyer);
        assert_eq!(engine.history().await, history, "the rebuild changed no membership");
        assert_eq!(engine.docs().await, docs);
    })
    .await;
}

/// A small deterministic generator (xorshift), so a failure names its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }
}

/// Definitions saved (or changed) per backend.
const ROUNDS: usize = 12;
const EVENTS: [&str; 2] = ["Order Completed", "Product Viewed"];
const CATEGORIES: [&str; 2] = ["tea", "shoes"];
const WINDOWS: [Option<&str>; 7] = [
    None,
    Some("1d"),
    Some("2d"),
    Some("7d"),
    Some("3h"),
    Some("24h"),
    Some("30d"),
];

/// An event time near the edges of the windows the definitions use: the start of a UTC day or hour
/// some days or hours back, a minute either side, or anywhere in the last 40 days.
fn event_time(rng: &mut Rng, now: DateTime<Utc>) -> DateTime<Utc> {
    let day_start = now - Duration::seconds(now.timestamp().rem_euclid(86_400));
    let hour_start = now - Duration::seconds(now.timestamp().rem_euclid(3_600));
    let nudge = Duration::minutes(*rng.pick(&[-1, 0, 1]));
    let at = match rng.below(3) {
        0 => day_start - Duration::days(*rng.pick(&[0, 1, 2, 6, 7, 29, 30])) + nudge,
        1 => hour_start - Duration::hours(*rng.pick(&[0, 1, 2, 3, 23, 24])) + nudge,
        _ => now - Duration::minutes(rng.below(40 * 24 * 60) as i64),
    };
    at.min(now)
}

/// A random event condition: a count or the days active, compared, in a window.
fn event_condition(rng: &mut Rng) -> Value {
    let mut c = json!({"event": rng.pick(&EVENTS)});
    if let Some(w) = rng.pick(&WINDOWS) {
        c["window"] = json!(w);
    }
    if rng.below(3) == 0 {
        let op = *rng.pick(&["eq", "neq"]);
        c["where"] = json!([{"property": "properties.category", "op": op,
                             "value": *rng.pick(&CATEGORIES)}]);
    }
    let op = *rng.pick(&["gte", "gt", "lte", "lt", "eq", "neq"]);
    let value = rng.below(4);
    match rng.below(3) {
        0 => c["count"] = json!({"op": op, "value": value}),
        1 => {
            c["aggregate"] = json!({"function": "days_active"});
            c["op"] = json!(op);
            c["value"] = json!(value);
        }
        // At least one.
        _ => {}
    }
    c
}

/// A random definition with at least one event condition.
fn definition(rng: &mut Rng, depth: u32) -> Value {
    let leaf = |rng: &mut Rng| match rng.below(4) {
        0 => json!({"trait": "tier", "op": "eq", "value": *rng.pick(&["gold", "silver"])}),
        _ => event_condition(rng),
    };
    let condition = match (depth, rng.below(4)) {
        (0, _) | (_, 0) => event_condition(rng),
        (_, 1) => json!({"not": definition(rng, depth - 1)}),
        (_, n) => {
            let parts: Vec<Value> = (0..2 + rng.below(2))
                .map(|_| {
                    if rng.below(2) == 0 {
                        definition(rng, depth - 1)
                    } else {
                        leaf(rng)
                    }
                })
                .collect();
            json!({ if n == 2 { "all" } else { "any" }: parts })
        }
    };
    // At least one event condition, wherever the draw put them.
    if condition.to_string().contains("\"event\"") {
        condition
    } else {
        json!({"any": [condition, event_condition(rng)]})
    }
}

/// For random profiles and events and random definitions with event conditions, saved and changed in
/// turn, the engine with the index (members filled at once, then the job's backfill) and the engine
/// without (the job alone) end with the same members, the same enters and exits (so the pages after
/// a fill changed nothing), and the same profile states.
#[tokio::test]
async fn a_fill_gives_what_the_job_alone_gives_for_random_definitions() {
    on_each_backend("audience_fill_random", |backend| async move {
        let seed = 0x5eed_0014_u64 ^ (backend as u64);
        let mut rng = Rng(seed);
        // Just after midnight: windows of days and of hours start at different places.
        let now = Utc.with_ymd_and_hms(2026, 11, 20, 0, 40, 0).unwrap();
        let mut filled = Engine::new(backend, now, true).await;
        let mut alone = Engine::new(backend, now, false).await;
        let mut message = 0;
        let mut fills = 0;
        for round in 0..ROUNDS {
            let mut messages = Vec::new();
            for _ in 0..12 {
                let user = format!("u{}", rng.below(30));
                message += 1;
                if rng.below(3) == 0 {
                    let tier = *rng.pick(&["gold", "silver", "none"]);
                    let traits = if tier == "none" {
                        json!({})
                    } else {
                        json!({"tier": tier})
                    };
                    messages.push(identify(&user, &format!("m{message}"), traits));
                }
                for _ in 0..rng.below(4) {
                    message += 1;
                    let at = event_time(&mut rng, now);
                    let event = *rng.pick(&EVENTS);
                    let id = format!("m{message}");
                    let category = *rng.pick(&CATEGORIES);
                    messages.push(match rng.below(3) {
                        0 => tracked(&user, &id, event, at),
                        _ => tracked_in(&user, &id, event, at, category),
                    });
                }
            }
            for engine in [&mut filled, &mut alone] {
                engine.append(&messages).await;
                engine.catch_up().await;
            }
            if round == 0 {
                filled.build_index().await;
            }
            let segment = format!("s{}", rng.below(3));
            let condition = definition(&mut rng, 2);
            let context = format!("seed {seed:#x}, round {round}, {segment}: {condition}");
            if let Err(e) =
                cdp_domain::segments::SegmentDef::parse(&json!({ "condition": &condition }))
            {
                panic!("{context}: {e:?}");
            }
            for engine in [&mut filled, &mut alone] {
                engine.define(&segment, &condition).await;
                engine.catch_up().await;
            }
            let job = filled.job(&segment).await;
            assert_eq!(job.status, "done", "{context}: {job:?}");
            if job.cursor.starts_with(FILLED_THEN_BACKFILL) {
                fills += 1;
            }
            let reference = alone.job(&segment).await;
            assert!(
                !reference.cursor.starts_with('~'),
                "{context}: {reference:?}"
            );
            for s in ["s0", "s1", "s2"] {
                assert_eq!(
                    filled.members(s).await,
                    alone.members(s).await,
                    "{context}: the members of {s}"
                );
            }
            assert_eq!(filled.history().await, alone.history().await, "{context}");
            assert_eq!(filled.docs().await, alone.docs().await, "{context}");
        }
        assert_eq!(
            fills, ROUNDS,
            "every definition was filled from the index (seed {seed:#x})"
        );
    })
    .await;
}
