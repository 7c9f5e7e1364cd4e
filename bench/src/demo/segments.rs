//! The segments part of `cdp demo`: two segments defined over the ingested history — customers whose
//! cumulative spend (history and today) reached a threshold, and gold/platinum members who have not — each
//! backfilled and counted, checked against the data set; then a handful of live orders that push chosen
//! customers over the threshold, each `segment.entered` shown as a subscriber of `GET /v1/stream` receives
//! it (with the time from the order's HTTP 200 to the message), and one customer's membership history with
//! the answer of `?at=` from before their order.

use chrono::{DateTime, SecondsFormat};
use tokio::sync::mpsc;

use super::*;
use crate::retail::{self, order_completed, Channel, Line, CATALOG};

/// Cumulative spend, all time, from which a customer is a VIP (CNY).
const VIP_CNY: i64 = 3000;
/// The segment of customers whose cumulative spend reached [`VIP_CNY`].
const VIP: &str = "lifetime_vip";
/// The segment of gold and platinum members (tag `premium_member`) not in [`VIP`].
const NURTURE: &str = "premium_not_vip";
/// How many customers the live orders push over the threshold.
const LIVE: usize = 5;
/// How long a definition's backfill may take.
const BACKFILL_DEADLINE: Duration = Duration::from_secs(180);
/// How long a message may take to reach the subscriber.
const MESSAGE_DEADLINE: Duration = Duration::from_secs(30);
/// How long to keep listening after the last expected message, for duplicates and strays.
const QUIET: Duration = Duration::from_secs(2);

/// One server-sent event as the subscriber received it.
#[derive(Debug, Clone)]
struct Received {
    event: String,
    data: Value,
    at: Instant,
}

/// A subscriber of `GET /v1/stream`: a task reading the response chunk by chunk, parsing the events and
/// handing them over as they arrive. Aborted when dropped.
struct Subscriber {
    events: mpsc::UnboundedReceiver<anyhow::Result<Received>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for Subscriber {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Subscriber {
    /// Subscribes: returns once the service answered, so every message published from then on arrives.
    async fn open(base: &str, token: &str) -> anyhow::Result<Subscriber> {
        // No overall timeout: the response is endless.
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("failed to build the stream's HTTP client")?;
        let mut response = http
            .get(format!("{base}/v1/stream"))
            .bearer_auth(token)
            .send()
            .await
            .context("GET /v1/stream failed")?;
        let status = response.status();
        ensure!(
            status == reqwest::StatusCode::OK,
            "GET /v1/stream answered {status}"
        );
        let (tx, events) = mpsc::unbounded_channel();
        let task = tokio::spawn(async move {
            let mut buffer: Vec<u8> = Vec::new();
            loop {
                let chunk = match response.chunk().await {
                    Ok(Some(chunk)) => chunk,
                    Ok(None) => {
                        let _ = tx.send(Err(anyhow::anyhow!("GET /v1/stream ended")));
                        return;
                    }
                    Err(e) => {
                        let _ = tx.send(Err(anyhow::anyhow!("reading GET /v1/stream failed: {e}")));
                        return;
                    }
                };
                let at = Instant::now();
                buffer.extend_from_slice(&chunk);
                while let Some(end) = frame_end(&buffer) {
                    let frame: Vec<u8> = buffer.drain(..end.1).collect();
                    let text = String::from_utf8_lossy(&frame[..end.0]).into_owned();
                    if let Some(parsed) = parse_frame(&text, at) {
                        if tx.send(parsed).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Subscriber { events, task })
    }

    /// The next event, or `None` when `until` passed first.
    async fn next_until(&mut self, until: Instant) -> anyhow::Result<Option<Received>> {
        match tokio::time::timeout_at(until.into(), self.events.recv()).await {
            Err(_) => Ok(None),
            Ok(None) => bail!("the stream's reader stopped"),
            Ok(Some(r)) => r.map(Some),
        }
    }
}

/// Where the first complete frame of `buffer` ends: (end of its text, end including the blank line).
fn frame_end(buffer: &[u8]) -> Option<(usize, usize)> {
    let lf = buffer
        .windows(2)
        .position(|w| w == b"\n\n")
        .map(|i| (i, i + 2));
    let crlf = buffer
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .map(|i| (i, i + 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 <= b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

/// One frame's event (`None` for a comment, such as the keep-alive).
fn parse_frame(text: &str, at: Instant) -> Option<anyhow::Result<Received>> {
    let mut event = "message".to_owned();
    let mut data: Vec<&str> = Vec::new();
    for line in text.lines() {
        let (field, value) = line.split_once(':').unwrap_or((line, ""));
        let value = value.strip_prefix(' ').unwrap_or(value);
        match field {
            "event" => event = value.to_owned(),
            "data" => data.push(value),
            _ => {}
        }
    }
    if data.is_empty() {
        return None;
    }
    let data = data.join("\n");
    Some(
        serde_json::from_str(&data)
            .map(|data| Received { event, data, at })
            .with_context(|| format!("GET /v1/stream sent data that is not JSON: {data}")),
    )
}

/// Every customer's cumulative spend in cents: their valid `Order Completed` messages in the data set.
fn spend_of(data: &Dataset) -> Vec<i64> {
    let index: BTreeMap<&str, usize> = data
        .customers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.user_id.as_str(), i))
        .collect();
    let mut spend = vec![0i64; data.customers.len()];
    for m in &data.messages {
        let id = m["messageId"].as_str().unwrap_or_default();
        if m["type"] != "track" || m["event"] != "Order Completed" || data.invalid_ids.contains(id)
        {
            continue;
        }
        if let Some(&i) = m["userId"].as_str().and_then(|u| index.get(u)) {
            spend[i] += cents(&m["properties"]["total"]);
        }
    }
    spend
}

/// CNY as a JSON number → cents.
fn cents(v: &Value) -> i64 {
    (v.as_f64().unwrap_or(0.0) * 100.0).round() as i64
}

/// Cents as CNY with the fen: `1234567` → `12,345.67`.
fn cny(cents: i64) -> String {
    let c = cents.max(0) as u64;
    format!("{}.{:02}", thousands(c / 100), c % 100)
}

/// Whether customer `i` shares an identifier with another one (OneID would join them into one profile).
fn shares_identifier(data: &Dataset, i: usize) -> bool {
    let c = &data.customers[i];
    data.customers.iter().enumerate().any(|(j, o)| {
        j != i && (o.phone == c.phone || o.email == c.email || o.anonymous_id == c.anonymous_id)
    })
}

/// `PUT` answering 200 (applied) or 202 (in the log, applied in order).
async fn put(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = http
        .put(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("PUT {path} failed"))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .with_context(|| format!("the answer to PUT {path} is not JSON"))?;
    ensure!(
        status == reqwest::StatusCode::OK || status == reqwest::StatusCode::ACCEPTED,
        "PUT {path} answered {status}: {answer}"
    );
    Ok(answer)
}

/// `GET /v1/segments/{id}` once its backfill is done.
async fn ready(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    id: &str,
    started: Instant,
) -> anyhow::Result<Value> {
    let path = format!("/v1/segments/{id}");
    loop {
        let body = get(http, base, token, &path, &[]).await?;
        if body["status"] == "ready" {
            return Ok(body);
        }
        ensure!(
            body["status"] != "failed",
            "the backfill of segment {id} failed: {body}"
        );
        if started.elapsed() > BACKFILL_DEADLINE {
            bail!(
                "segment {id} was not backfilled after {} s: {body}",
                BACKFILL_DEADLINE.as_secs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn members(segment: &Value) -> u64 {
    segment["members"].as_u64().unwrap_or(0)
}

/// A customer a live order pushes over the threshold.
struct Pushed {
    customer: usize,
    profile: String,
    premium: bool,
    /// Cumulative spend before the order, cents.
    before: i64,
    order: Value,
    order_cents: i64,
    /// Just before the order was sent.
    sent_at: DateTime<Utc>,
}

/// Sends one message to `POST /v1/track`; returns when its HTTP 200 arrived.
async fn track(
    http: &reqwest::Client,
    base: &str,
    write_key: &str,
    message: &Value,
) -> anyhow::Result<Instant> {
    let mut body = message.clone();
    body["sentAt"] = json!(rfc3339(Utc::now()));
    let response = http
        .post(format!("{base}/v1/track"))
        .basic_auth(write_key, None::<&str>)
        .json(&body)
        .send()
        .await
        .context("POST /v1/track failed")?;
    let status = response.status();
    let ok_at = Instant::now();
    let answer = response.text().await.unwrap_or_default();
    ensure!(
        status == reqwest::StatusCode::OK,
        "POST /v1/track answered {status}: {answer}"
    );
    Ok(ok_at)
}

/// The cheapest lines that take `gap` cents or more: one product, or the dearest one as many times as needed.
fn lines_for(gap: i64) -> Vec<Line> {
    if let Some(product) = CATALOG
        .iter()
        .filter(|p| i64::from(p.price_cents) >= gap)
        .min_by_key(|p| p.price_cents)
    {
        return vec![Line {
            product,
            quantity: 1,
        }];
    }
    let dearest = CATALOG
        .iter()
        .max_by_key(|p| p.price_cents)
        .unwrap_or(&CATALOG[0]);
    let price = i64::from(dearest.price_cents);
    vec![Line {
        product: dearest,
        quantity: u32::try_from((gap + price - 1) / price).unwrap_or(u32::MAX),
    }]
}

/// What a `caused_by` says, in words.
fn cause(caused_by: &Value, orders: &BTreeMap<String, String>) -> String {
    let c = plain(caused_by);
    if let Some(order) = orders.get(&c) {
        return format!("{c} ({order})");
    }
    match c.split_once(':') {
        Some(("segment", id)) => format!("{c} (the backfill of segment {id}'s definition)"),
        Some((kind, name)) => format!("{c} (the {kind} {name}'s definition)"),
        None => c,
    }
}

/// Defines the two segments, checks their members, and pushes [`LIVE`] customers over the threshold live.
/// `exact` is false when the log held events before this run.
pub(super) async fn show_segments(
    http: &reqwest::Client,
    base: &str,
    credentials: &Credentials,
    data: &Dataset,
    seed: u64,
    exact: bool,
) -> anyhow::Result<()> {
    let token = credentials.token.as_str();
    let spend = spend_of(data);
    let threshold = VIP_CNY * 100;
    // Subscribed before the definitions, as an application would be: it sees the backfill's entries too.
    let mut stream = Subscriber::open(base, token).await?;

    let vip_def = json!({
        "name": format!("Lifetime VIP: CNY {} or more spent, history and today", thousands(VIP_CNY as u64)),
        "condition": {"event": "Order Completed",
                      "aggregate": {"function": "sum", "property": "properties.total"},
                      "op": "gte", "value": VIP_CNY},
    });
    let nurture_def = json!({
        "name": "Gold and platinum members not yet lifetime VIPs",
        "condition": {"all": [
            {"tag": "premium_member", "op": "is_set"},
            {"not": {"segment": VIP}},
        ]},
    });
    let started = Instant::now();
    put(http, base, token, &format!("/v1/segments/{VIP}"), &vip_def).await?;
    put(
        http,
        base,
        token,
        &format!("/v1/segments/{NURTURE}"),
        &nurture_def,
    )
    .await?;
    let vip = ready(http, base, token, VIP, started).await?;
    let nurture = ready(http, base, token, NURTURE, started).await?;
    let took = started.elapsed();
    println!();
    println!("Segments   defined over the ingested history — PUT /v1/segments/{{id}}");
    println!(
        "  {VIP:<16} {:>8} members   Order Completed sum(properties.total) gte {} (no window: all time)",
        thousands(members(&vip)),
        VIP_CNY
    );
    println!(
        "  {NURTURE:<16} {:>8} members   all: tag premium_member is_set, not: segment {VIP}",
        thousands(members(&nurture))
    );
    println!(
        "           backfilled in {:.2} s; members from GET /v1/segments/{{id}}",
        took.as_secs_f64()
    );

    let shared = (0..data.customers.len()).any(|i| shares_identifier(data, i));
    if exact && !shared {
        let want_vip = spend.iter().filter(|&&s| s >= threshold).count() as u64;
        ensure!(
            members(&vip) == want_vip,
            "segment {VIP} has {} members but the data set has {want_vip} customers whose valid orders \
             total CNY {VIP_CNY} or more",
            members(&vip)
        );
        let want_nurture = (0..data.customers.len())
            .filter(|&i| data.customers[i].tier >= 2 && spend[i] < threshold)
            .count() as u64;
        ensure!(
            members(&nurture) == want_nurture,
            "segment {NURTURE} has {} members but the data set has {want_nurture} gold or platinum \
             customers whose orders total less than CNY {VIP_CNY}",
            members(&nurture)
        );
        println!(
            "  ({VIP} {} = exactly the data set's customers whose valid orders total CNY {VIP_CNY}+; \
             {NURTURE} {} = exactly its gold/platinum customers below that)",
            thousands(want_vip),
            thousands(want_nurture)
        );
    } else {
        println!(
            "  (members not compared with the data set: {})",
            if exact {
                "some customers share an identifier, so OneID may have joined them"
            } else {
                "the log already had events before this run"
            }
        );
    }

    // The backfill's entries, as the subscriber received them.
    let want: BTreeMap<&str, u64> = [(VIP, members(&vip)), (NURTURE, members(&nurture))].into();
    let mut backfill: BTreeMap<String, u64> = BTreeMap::new();
    let mut lagged = 0u64;
    // With an exact data set, until every member's entry arrived; otherwise (the definitions may have been
    // there already, and nothing backfilled) until the stream is quiet.
    let deadline = Instant::now() + MESSAGE_DEADLINE;
    loop {
        let done = want
            .iter()
            .all(|(s, n)| backfill.get(*s).copied().unwrap_or(0) >= *n);
        if exact && done {
            break;
        }
        let until = if exact {
            deadline
        } else {
            (Instant::now() + QUIET).min(deadline)
        };
        let Some(r) = stream.next_until(until).await? else {
            break;
        };
        match r.event.as_str() {
            "segment.entered" => {
                *backfill.entry(plain(&r.data["segment"])).or_default() += 1;
            }
            "lagged" => lagged += r.data["missed"].as_u64().unwrap_or(0),
            _ => {}
        }
    }
    let got = |s: &str| backfill.get(s).copied().unwrap_or(0);
    if !exact && got(VIP) + got(NURTURE) == 0 {
        println!(
            "  (no backfill: the definitions were already in force, unchanged, from an earlier run)"
        );
    }
    println!(
        "  a subscriber of GET /v1/stream (opened before the PUTs) received {} segment.entered of {VIP} \
         and {} of {NURTURE} during the backfill{}",
        thousands(got(VIP)),
        thousands(got(NURTURE)),
        if lagged > 0 {
            format!(", and a lagged notice: {lagged} messages missed")
        } else {
            String::new()
        }
    );
    ensure!(
        !exact || (got(VIP) == members(&vip) && got(NURTURE) == members(&nurture)),
        "the stream delivered {} entries of {VIP} and {} of {NURTURE} for {} and {} members{}",
        got(VIP),
        got(NURTURE),
        members(&vip),
        members(&nurture),
        if lagged > 0 {
            format!(" (the subscriber lagged: {lagged} messages missed)")
        } else {
            String::new()
        }
    );

    // Whom to push over: the customers closest below the threshold, one of them gold or platinum (who
    // leaves the nurture segment as they enter the VIPs), each one profile of their own, not yet a member.
    let mut below: Vec<usize> = (0..data.customers.len())
        .filter(|&i| spend[i] < threshold && spend[i] > 0 && !shares_identifier(data, i))
        .collect();
    below.sort_by_key(|&i| (threshold - spend[i], i));
    let mut chosen: Vec<Pushed> = Vec::new();
    let mut have_premium = false;
    for &i in &below {
        if chosen.len() == LIVE {
            break;
        }
        let premium = data.customers[i].tier >= 2;
        if chosen.len() == LIVE - 1 && !have_premium && !premium {
            continue;
        }
        let c = &data.customers[i];
        let view = lookup(http, base, token, "user_id", &c.user_id).await?;
        let profile = plain(&view["profile_id"]);
        let now = get(
            http,
            base,
            token,
            &format!("/v1/profiles/{profile}/memberships"),
            &[],
        )
        .await?;
        let member = now["segments"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|s| s["segment"] == VIP);
        if member {
            // From an earlier run's live order (only when the log had events before this run).
            continue;
        }
        ensure!(
            !exact
                || now["segments"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|s| s["segment"] == NURTURE)
                    == premium,
            "{} ({}) is {} but their memberships are {}",
            c.user_id,
            c.tier_name(),
            if premium { "gold+" } else { "below gold" },
            now["segments"]
        );
        have_premium |= premium;
        let gap = threshold - spend[i];
        let lines = lines_for(gap);
        let order_cents = i64::from(retail::revenue_cents(&lines));
        let n = chosen.len() + 1;
        let message_id = format!("demo-{seed}-live-{}", &random_secret("o")[2..14]);
        let order_id = format!("LIVE{}", &message_id[message_id.len() - 8..]);
        let channel = if n % 2 == 1 {
            Channel::Pos
        } else {
            Channel::MiniProgram
        };
        // Timestamped when sent.
        let order = order_completed(c, channel, Utc::now(), &message_id, &order_id, &lines);
        chosen.push(Pushed {
            customer: i,
            profile,
            premium,
            before: spend[i],
            order,
            order_cents,
            sent_at: Utc::now(),
        });
    }
    // A small data set may have fewer customers to push, or no gold or platinum one among them.
    ensure!(
        !chosen.is_empty(),
        "no customer below CNY {VIP_CNY} with orders to push over it"
    );
    let pushing = chosen.len();

    println!();
    println!(
        "Live       {pushing} orders, each taking one customer over CNY {} — POST /v1/track (write \
         key); every segment message as the subscriber of GET /v1/stream receives it, latency from the \
         order's HTTP 200",
        thousands(VIP_CNY as u64)
    );
    let mut orders_said: BTreeMap<String, String> = BTreeMap::new();
    // Every segment message after the first live order, with the order it came after.
    let mut live: Vec<Received> = Vec::new();
    let mut latencies: Vec<Duration> = Vec::new();
    let mut members_now = members(&vip);
    for p in &mut chosen {
        let c = &data.customers[p.customer];
        let message_id = plain(&p.order["messageId"]);
        orders_said.insert(
            message_id.clone(),
            format!(
                "Order Completed CNY {} in {}",
                cny(p.order_cents),
                plain(&p.order["context"]["channel"])
            ),
        );
        // The order happens now.
        p.sent_at = Utc::now();
        p.order["timestamp"] = json!(rfc3339(p.sent_at));
        let ok_at = track(http, base, &credentials.write_key, &p.order).await?;
        let until = ok_at + MESSAGE_DEADLINE;
        let mut entered = None;
        let mut exited = !p.premium;
        while entered.is_none() || !exited {
            let Some(r) = stream.next_until(until).await? else {
                bail!(
                    "no segment.entered of {VIP} for {} ({}) caused by {message_id} reached the \
                     subscriber within {} s of the order's HTTP 200 (received {}: {:?})",
                    c.user_id,
                    p.profile,
                    MESSAGE_DEADLINE.as_secs(),
                    live.len(),
                    live.iter().map(|r| &r.data).collect::<Vec<_>>()
                );
            };
            if r.event == "lagged" {
                bail!("the subscriber lagged behind the stream: {}", r.data);
            }
            if !r.event.starts_with("segment.") {
                continue;
            }
            live.push(r.clone());
            let mine = r.data["caused_by"] == json!(message_id);
            if mine && r.event == "segment.entered" && r.data["segment"] == VIP {
                entered = Some(r);
            } else if mine && r.event == "segment.exited" && r.data["segment"] == NURTURE {
                exited = true;
                let latency = r.at.saturating_duration_since(ok_at);
                println!(
                    "  − {NURTURE:<16} {:<24} {:<10} exited   caused_by {}  {:>4} ms",
                    plain(&r.data["profile_id"]),
                    c.user_id,
                    message_id,
                    latency.as_millis()
                );
            }
        }
        let r = entered.context("no entered message")?;
        let latency = r.at.saturating_duration_since(ok_at);
        latencies.push(latency);
        members_now += 1;
        println!(
            "  + {VIP:<16} {:<24} {:<10} entered  caused_by {}  {:>4} ms   CNY {} + {} = {} → {} members",
            plain(&r.data["profile_id"]),
            c.user_id,
            message_id,
            latency.as_millis(),
            cny(p.before),
            cny(p.order_cents),
            cny(p.before + p.order_cents),
            thousands(members_now)
        );
        ensure!(
            r.data["profile_id"] == json!(p.profile),
            "{} entered {VIP} as {} but their profile is {}",
            c.user_id,
            r.data["profile_id"],
            p.profile
        );
    }
    // A client retrying the first order (the same messageId), and another order of that customer, now a
    // member: neither changes a membership, so neither may bring a message.
    let first = &chosen[0];
    track(http, base, &credentials.write_key, &first.order).await?;
    let mut again = first.order.clone();
    let again_id = format!("demo-{seed}-live-{}", &random_secret("o")[2..14]);
    again["messageId"] = json!(again_id);
    again["properties"]["order_id"] = json!(format!("LIVE{}", &again_id[again_id.len() - 8..]));
    again["timestamp"] = json!(rfc3339(Utc::now()));
    track(http, base, &credentials.write_key, &again).await?;
    println!(
        "  then {} retried by its client (the same messageId) and another order of {}, already a member \
         ({again_id}): no segment message may follow",
        plain(&first.order["messageId"]),
        data.customers[first.customer].user_id
    );
    // Listen a little longer: a duplicate or a stray entry would come now.
    let until = Instant::now() + QUIET;
    while let Some(r) = stream.next_until(until).await? {
        if r.event == "lagged" {
            bail!("the subscriber lagged behind the stream: {}", r.data);
        }
        if r.event.starts_with("segment.") {
            live.push(r);
        }
    }
    for p in &chosen {
        let c = &data.customers[p.customer];
        let of = |event: &str, segment: &str| {
            live.iter()
                .filter(|r| {
                    r.event == event
                        && r.data["segment"] == segment
                        && r.data["profile_id"] == json!(p.profile)
                })
                .count()
        };
        ensure!(
            of("segment.entered", VIP) == 1 && of("segment.exited", VIP) == 0,
            "{} ({}) entered {VIP} {} times and exited it {} times, not once and never",
            c.user_id,
            p.profile,
            of("segment.entered", VIP),
            of("segment.exited", VIP)
        );
        let exits = usize::from(p.premium);
        ensure!(
            of("segment.exited", NURTURE) == exits && of("segment.entered", NURTURE) == 0,
            "{} ({}, {}) exited {NURTURE} {} times and entered it {} times, not {exits} and never",
            c.user_id,
            p.profile,
            c.tier_name(),
            of("segment.exited", NURTURE),
            of("segment.entered", NURTURE)
        );
    }
    let ours: BTreeSet<String> = chosen.iter().map(|p| p.profile.clone()).collect();
    let strays: Vec<&Value> = live
        .iter()
        .filter(|r| !ours.contains(&plain(&r.data["profile_id"])))
        .map(|r| &r.data)
        .collect();
    ensure!(
        strays.is_empty(),
        "segment messages about other profiles arrived during the live orders: {strays:?}"
    );
    let after_vip = get(http, base, token, &format!("/v1/segments/{VIP}"), &[]).await?;
    let after_nurture = get(http, base, token, &format!("/v1/segments/{NURTURE}"), &[]).await?;
    let premium = chosen.iter().filter(|p| p.premium).count() as u64;
    ensure!(
        members(&after_vip) == members(&vip) + pushing as u64
            && members(&after_nurture) + premium == members(&nurture),
        "after {pushing} live orders {VIP} has {} members (was {}) and {NURTURE} {} (was {}, {premium} of \
         the customers are gold+)",
        members(&after_vip),
        members(&vip),
        members(&after_nurture),
        members(&nurture)
    );
    latencies.sort();
    println!(
        "  each of the {pushing} customers entered {VIP} exactly once, nothing else moved: {VIP} {} → {}, \
         {NURTURE} {} → {} members; order → message latency min {} ms, median {} ms, max {} ms",
        thousands(members(&vip)),
        thousands(members(&after_vip)),
        thousands(members(&nurture)),
        thousands(members(&after_nurture)),
        latencies.first().map_or(0, Duration::as_millis),
        latencies[latencies.len() / 2].as_millis(),
        latencies.last().map_or(0, Duration::as_millis),
    );

    // One customer's story: the gold or platinum one, who left a segment as they entered the other.
    let p = chosen.iter().find(|p| p.premium).unwrap_or(&chosen[0]);
    let c = &data.customers[p.customer];
    let path = format!("/v1/profiles/{}/memberships", p.profile);
    let now = get(http, base, token, &path, &[]).await?;
    println!();
    println!(
        "Membership {} ({}, {}) — GET {path}",
        c.user_id,
        c.name,
        c.tier_name()
    );
    for (i, h) in now["history"].as_array().into_iter().flatten().enumerate() {
        let label = if i == 0 { "history" } else { "" };
        println!(
            "  {label:<10} {}  {:<8} {:<16} caused_by {}",
            plain(&h["at"]),
            plain(&h["change"]),
            plain(&h["segment"]),
            cause(&h["caused_by"], &orders_said)
        );
    }
    for (i, s) in now["segments"].as_array().into_iter().flatten().enumerate() {
        let label = if i == 0 { "now in" } else { "" };
        println!(
            "  {label:<10} {:<16} since {}  because {}",
            plain(&s["segment"]),
            plain(&s["since"]),
            cause(&s["because"]["caused_by"], &orders_said)
        );
    }
    let message_id = plain(&p.order["messageId"]);
    let in_now = |body: &Value, key: &str, segment: &str| {
        body[key]
            .as_array()
            .into_iter()
            .flatten()
            .find(|s| s["segment"] == segment)
            .cloned()
    };
    let now_vip = in_now(&now, "segments", VIP);
    ensure!(
        now_vip
            .as_ref()
            .is_some_and(|s| s["because"]["caused_by"] == json!(message_id))
            && in_now(&now, "segments", NURTURE).is_none(),
        "{} should be in {VIP} because of {message_id} and out of {NURTURE}: {}",
        c.user_id,
        now["segments"]
    );
    let at = (p.sent_at - chrono::Duration::milliseconds(1))
        .to_rfc3339_opts(SecondsFormat::Millis, true);
    let then = get(http, base, token, &path, &[("at", at.as_str())]).await?;
    println!("  at {at} (just before the order) — GET {path}?at={at}:",);
    let was_vip = in_now(&then, "segments_at", VIP);
    let was_nurture = in_now(&then, "segments_at", NURTURE);
    println!(
        "    in {VIP}? {}",
        match &was_vip {
            Some(s) => format!("yes, since {}", plain(&s["since"])),
            None => format!(
                "no — cumulative spend CNY {} < {}",
                cny(p.before),
                thousands(VIP_CNY as u64)
            ),
        }
    );
    println!(
        "    in {NURTURE}? {}",
        match &was_nurture {
            Some(s) => format!(
                "yes, since {} because {}",
                plain(&s["since"]),
                cause(&s["because"]["caused_by"], &orders_said)
            ),
            None => "no".to_owned(),
        }
    );
    ensure!(
        was_vip.is_none() && was_nurture.is_some() == p.premium,
        "at {at} {} ({}) should have been in {NURTURE}: {}, in {VIP}: false; segments_at is {}",
        c.user_id,
        c.tier_name(),
        p.premium,
        then["segments_at"]
    );
    Ok(())
}
