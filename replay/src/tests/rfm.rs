//! Quantile RFM tags: the population's quintiles measured over existing history and over purchases
//! that come after the definition, against a direct computation over the raw orders.
use super::*;

/// A quantile RFM tag over existing history: the resolver backfills the inputs, measures the
/// population's quintiles, then scores every profile with them — the same groups a direct computation
/// over the raw orders gives.
#[tokio::test]
async fn quantile_rfm_scores_every_profile_against_the_population() {
    use cdp_domain::tags::{group, scores, RfmInputs, RfmThresholds};
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open_embedded(dir.path()).await.unwrap();
    let now = chrono::DateTime::parse_from_rfc3339("2026-06-10T10:00:00Z")
        .unwrap()
        .to_utc();
    let clock: cdp_projections::identity::Clock = std::sync::Arc::new(move || now);
    let resolver = IdentityResolver::with_clock(clock);
    let envelope = Envelope {
        workspace: "w",
        received_at: now,
        batch_sent_at: None,
        implied_kind: None,
    };
    let mut events = Vec::new();
    let mut inputs = std::collections::BTreeMap::new();
    for user in 0..60u32 {
        let orders = 1 + user % 7;
        let mut spent = 0.0;
        let mut last_days = i64::MAX;
        for k in 0..orders {
            let days = i64::from((user * 13 + k * 29) % 300);
            let total = f64::from((user * 37 + k * 11) % 500) + 0.5;
            spent += total;
            last_days = last_days.min(days);
            events.push(validate(json!({"type": "track", "event": "Order Completed", "userId": format!("u{user}"),
                "messageId": format!("o{user}-{k}"), "timestamp": (now - chrono::Duration::days(days)).to_rfc3339(),
                "properties": {"total": total}}), &envelope, || unreachable!()).unwrap());
        }
        inputs.insert(
            format!("u{user}"),
            RfmInputs {
                recency_days: last_days as f64,
                frequency: f64::from(orders),
                monetary: spent,
            },
        );
    }
    store.append(&events).await.unwrap();
    catch_up(&store, &resolver).await.unwrap();
    let tag = CatalogCommand::PutTag {
        name: "rfm".into(),
        actor: "t".into(),
        definition: json!({"type": "rfm", "event": "Order Completed", "monetary": "properties.total", "scoring": "quantiles"}),
    };
    store.append(&[catalog_event(0, &tag, now)]).await.unwrap();
    catch_up(&store, &resolver).await.unwrap();

    let population: Vec<RfmInputs> = inputs.values().copied().collect();
    let thresholds = RfmThresholds::from_population(&population).unwrap();
    let stored = cdp_projections::catalog::thresholds(&store, &ws("w"))
        .await
        .unwrap();
    assert_eq!(stored["rfm"].2, thresholds);
    let Store::Sqlite(s) = &store else {
        unreachable!()
    };
    let holders: Vec<(String, String)> =
        sqlx::query_as("SELECT value, profile FROM identifier_owners WHERE id_type = 'user_id'")
            .fetch_all(s.read_pool())
            .await
            .unwrap();
    for (user, profile) in holders {
        let tags = cdp_projections::catalog::tags_of(&store, &ws("w"), &[profile.as_str()])
            .await
            .unwrap();
        let rfm = &tags[&profile][0];
        let expected = scores(&inputs[&user], &thresholds);
        assert_eq!(
            rfm.value.value,
            json!(group(&expected)),
            "{user}: {:?}",
            rfm.value
        );
        assert_eq!(rfm.value.detail["r"], json!(expected.r), "{user}");
        assert_eq!(rfm.value.detail["m"], json!(expected.m), "{user}");
    }
    let job = cdp_projections::catalog::latest_job(&store, &ws("w"), "tag", "rfm")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(job.status, "done");
}

/// A quantile RFM tag defined before anyone bought has no cut points; once purchases exist, they are
/// measured within a minute and the buyers scored.
#[tokio::test]
async fn quantile_rfm_defined_before_any_purchase_scores_buyers_soon_after() {
    let Clocked {
        _dir,
        store,
        now,
        resolver,
        start,
    } = Clocked::new().await;
    let tag = CatalogCommand::PutTag {
        name: "rfm".into(),
        actor: "t".into(),
        definition: json!({"type": "rfm", "event": "Order Completed", "monetary": "properties.total", "scoring": "quantiles"}),
    };
    store
        .append(&[catalog_event(0, &tag, start)])
        .await
        .unwrap();
    catch_up(&store, &resolver).await.unwrap();
    let envelope = envelope_at(start);
    let orders: Vec<NewEvent> = (0..10)
        .map(|i| {
            validate(
                json!({"type": "track", "event": "Order Completed",
        "userId": format!("u{i}"), "messageId": format!("o{i}"), "timestamp": start.to_rfc3339(),
        "properties": {"total": 10 * i + 5}}),
                &envelope,
                || unreachable!(),
            )
            .unwrap()
        })
        .collect();
    store.append(&orders).await.unwrap();
    catch_up(&store, &resolver).await.unwrap();
    assert!(cdp_projections::catalog::thresholds(&store, &ws("w"))
        .await
        .unwrap()
        .is_empty());
    *now.lock().unwrap() = start + chrono::Duration::minutes(2);
    catch_up(&store, &resolver).await.unwrap();
    assert!(cdp_projections::catalog::thresholds(&store, &ws("w"))
        .await
        .unwrap()
        .contains_key("rfm"));
    let Store::Sqlite(s) = &store else {
        unreachable!()
    };
    let scored: i64 = sqlx::query_scalar("SELECT count(*) FROM profile_tags WHERE tag = 'rfm'")
        .fetch_one(s.read_pool())
        .await
        .unwrap();
    assert_eq!(scored, 10);
}

/// Facts for the reference: the hidden traits recomputed from raw events, segments by definition.
struct Reference<'a> {
    computed: std::collections::BTreeMap<String, Value>,
    segments: &'a std::collections::BTreeMap<String, cdp_domain::segments::SegmentDef>,
    now: chrono::DateTime<chrono::Utc>,
}

impl cdp_domain::tags::Facts for Reference<'_> {
    fn field(&self, _key: cdp_domain::tags::FieldKey, name: &str) -> Vec<Value> {
        self.computed
            .get(name)
            .filter(|v| !v.is_null())
            .cloned()
            .into_iter()
            .collect()
    }
}

impl cdp_domain::segments::SegmentFacts for Reference<'_> {
    fn in_segment(&self, id: &str) -> bool {
        self.segments[id].holds(id, self, self.now)
    }

    fn consents(&self, _channel: &str, _purpose: &str) -> bool {
        false
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 24, ..Default::default() })]
    /// The lambda merge: batch runs (every profile recomputed from the log up to the resolver's
    /// watermark, switched in atomically) at random points of the stream, racing resolver instances
    /// (a batch delivered twice), duplicate deliveries of events, and segments defined anywhere →
    /// memberships equal a full recomputation from the log.
    #[test]
    fn batch_plus_stream_equals_a_recomputation(
        orders in proptest::collection::vec((0usize..5, 1u32..900, 0u32..50), 1..30),
        segments_at in proptest::collection::vec(0usize..40, 4),
        cuts in proptest::collection::vec((0usize..40, 0u8..3), 0..6),
        batch_size in 1u32..7,
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async {
            let now = chrono::DateTime::parse_from_rfc3339("2026-06-10T10:00:00Z").unwrap().to_utc();
            let envelope = Envelope { workspace: "w", received_at: now, batch_sent_at: None, implied_kind: None };
            let mut events: Vec<NewEvent> = orders.iter().enumerate().map(|(i, (user, total, days))| {
                validate(json!({"type": "track", "event": "Order Completed", "userId": format!("u{user}"),
                    "messageId": format!("o{i}"), "timestamp": (now - chrono::Duration::days(i64::from(*days))).to_rfc3339(),
                    "properties": {"total": total}}), &envelope, || unreachable!()).unwrap()
            }).collect();
            let definitions = [
                ("big", json!({"condition": {"event": "Order Completed",
                    "aggregate": {"function": "sum", "property": "properties.total"}, "op": "gte", "value": 1000}})),
                ("regular", json!({"condition": {"event": "Order Completed", "count": {"op": "gte", "value": 2}, "window": "30d"}})),
                ("big_not_regular", json!({"condition": {"all": [{"segment": "big"}, {"not": {"segment": "regular"}}]}})),
                ("lapsed", json!({"condition": {"sequence": [{"event": "Order Completed"}, {"not_event": "Order Completed"}], "within": "20d"}})),
            ];
            // Defined in order (the third reads the first two), each somewhere in the log.
            let mut at = 0;
            for (n, ((id, definition), pos)) in definitions.iter().zip(&segments_at).enumerate() {
                at = (at + pos).min(events.len());
                let command = CatalogCommand::PutSegment { id: (*id).into(), definition: definition.clone(), actor: "t".into() };
                events.insert(at, catalog_event(n, &command, now));
                at += 1;
            }
            let dir = tempfile::tempdir().unwrap();
            let store = Store::open_embedded(dir.path()).await.unwrap();
            let clock: cdp_projections::identity::Clock = std::sync::Arc::new(move || now);
            let first = IdentityResolver::with_clock(clock.clone());
            let second = IdentityResolver::with_clock(clock.clone());
            // The log grows while the resolvers and batches run.
            let mut appended = 0;
            let mut cuts = cuts.clone();
            cuts.sort_unstable();
            for (cut, action) in cuts.iter().chain(std::iter::once(&(usize::MAX, 0))) {
                let upto = (*cut).min(events.len());
                if upto > appended {
                    store.append(&events[appended..upto]).await.unwrap();
                    // A redelivery: the same messages again are stored once.
                    store.append(&events[appended..upto]).await.unwrap();
                    appended = upto;
                }
                match action {
                    0 => { run_once(&store, &first, batch_size).await.unwrap(); }
                    1 => {
                        let (a, b) = tokio::join!(run_once(&store, &first, batch_size), run_once(&store, &second, batch_size));
                        a.unwrap();
                        b.unwrap();
                    }
                    _ => { batch(&store).await.unwrap(); }
                }
            }
            catch_up(&store, &first).await.unwrap();
            batch(&store).await.unwrap();
            store.append(&events[..1]).await.unwrap();
            catch_up(&store, &second).await.unwrap();

            // The reference: each live profile's orders, straight from the log.
            let owners = all_owners(&store).await.unwrap();
            let log = cdp_domain::store::EventStore::read_after(&store, Position::START, 100_000).await.unwrap();
            let payloads: Vec<Value> = log.iter().map(|e| serde_json::from_str(&e.event.payload).unwrap()).collect();
            let defs: std::collections::BTreeMap<String, cdp_domain::segments::SegmentDef> = definitions.iter()
                .map(|(id, d)| ((*id).to_owned(), cdp_domain::segments::SegmentDef::parse(d).unwrap())).collect();
            let Store::Sqlite(s) = &store else { unreachable!() };
            for (_, profile, _) in all_docs(&store).await {
                let raw: Vec<RawEvent<'_>> = log.iter().zip(&payloads)
                    .filter(|(e, _)| owners.get(&e.position.seq).is_some_and(|(_, p)| p.as_str() == profile))
                    .map(|(e, payload)| RawEvent { kind: e.event.kind, name: e.event.name.as_deref(), payload,
                        event_time: e.event.event_time, message_id: &e.event.message_id })
                    .collect();
                let mut computed = std::collections::BTreeMap::new();
                for (id, def) in &defs {
                    for (name, trait_def) in def.hidden_traits(id) {
                        computed.insert(name, recompute(&trait_def, &raw, now));
                    }
                }
                let reference = Reference { computed, segments: &defs, now };
                let expected: Vec<String> = defs.keys()
                    .filter(|id| cdp_domain::segments::SegmentFacts::in_segment(&reference, id))
                    .cloned().collect();
                let got: Vec<String> = sqlx::query_scalar(
                    "SELECT segment FROM segment_members WHERE profile = ? ORDER BY segment")
                    .bind(&profile).fetch_all(s.read_pool()).await.unwrap();
                assert_eq!(got, expected, "{profile}: {} orders", raw.len());
            }
        });
    }
}
