//! The demo's data set: a few thousand customers of a tea shop, seen in stores (POS), in the CRM, in the
//! online shop and in the mini-program — browsing anonymously, logging in, filling carts, buying — plus a
//! handful of broken messages from legacy connectors. Deterministic given the seed; timestamps are
//! offsets back from the start of the current day (UTC).

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, NaiveTime, Utc};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

use crate::retail::{self, Channel, Customer, Line, Who, TIERS};

/// The generated messages, in time order, and what is known about them.
pub struct Dataset {
    pub messages: Vec<Value>,
    /// How many of `messages` are deliberately invalid.
    pub invalid: usize,
    /// The messageIds of the invalid messages.
    pub invalid_ids: std::collections::BTreeSet<String>,
    pub customers: Vec<Customer>,
    /// The customer the demo shows.
    pub featured: usize,
    /// Valid messages carrying the featured customer's userId.
    pub featured_messages: usize,
    /// Valid messages of the featured customer carrying only their anonymousId (the online shop's page
    /// views before they first logged in there; the login's `identify` carries both ids).
    pub featured_anonymous_messages: usize,
    pub by_kind: BTreeMap<String, usize>,
    pub by_channel: BTreeMap<&'static str, usize>,
    pub orders: usize,
    pub revenue_cents: u64,
}

struct Builder {
    rng: StdRng,
    seed: u64,
    next_id: usize,
    messages: Vec<(DateTime<Utc>, Value)>,
    by_channel: BTreeMap<&'static str, usize>,
    orders: usize,
    revenue_cents: u64,
}

impl Builder {
    fn message_id(&mut self) -> String {
        self.next_id += 1;
        format!("demo-{}-{:07}", self.seed, self.next_id)
    }

    fn push(&mut self, at: DateTime<Utc>, channel: Channel, message: Value) {
        *self.by_channel.entry(channel.as_str()).or_default() += 1;
        self.messages.push((at, message));
    }
}

/// What one customer did, for choosing whom to show.
#[derive(Default)]
struct Journey {
    orders: usize,
    channels: usize,
    tier_changed: bool,
    user_messages: usize,
    anonymous_messages: usize,
}

impl Dataset {
    pub fn generate(customers: usize, seed: u64) -> Self {
        let today = Utc::now().date_naive().and_time(NaiveTime::MIN).and_utc();
        let mut b = Builder {
            rng: StdRng::seed_from_u64(seed),
            seed,
            next_id: 0,
            messages: Vec::new(),
            by_channel: BTreeMap::new(),
            orders: 0,
            revenue_cents: 0,
        };
        let mut people = Vec::with_capacity(customers);
        let mut journeys = Vec::with_capacity(customers);
        for i in 0..customers {
            let mut c = Customer::generate(&mut b.rng, i);
            let journey = live(&mut b, &mut c, today);
            people.push(c);
            journeys.push(journey);
        }
        let featured = (0..customers)
            .max_by_key(|&i| {
                let j = &journeys[i];
                (j.tier_changed, j.channels, j.orders, usize::MAX - i)
            })
            .unwrap_or(0);
        let featured_messages = journeys.get(featured).map_or(0, |j| j.user_messages);
        let featured_anonymous_messages =
            journeys.get(featured).map_or(0, |j| j.anonymous_messages);
        let invalid = if people.is_empty() {
            0
        } else {
            broken_messages(&mut b, &people, featured, today)
        };

        // The invalid messages are the last ones added.
        let invalid_ids = b.messages[b.messages.len() - invalid..]
            .iter()
            .filter_map(|(_, m)| m["messageId"].as_str().map(str::to_owned))
            .collect();
        let mut messages = std::mem::take(&mut b.messages);
        messages.sort_by_key(|(at, _)| *at);
        let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
        for (_, m) in &messages {
            let kind = match (m["type"].as_str(), m["event"].as_str()) {
                (Some("track"), Some(event)) => event.to_owned(),
                (Some("track"), None) => "track without event".to_owned(),
                (Some(kind), _) => kind.to_owned(),
                _ => "other".to_owned(),
            };
            *by_kind.entry(kind).or_default() += 1;
        }
        Self {
            messages: messages.into_iter().map(|(_, m)| m).collect(),
            invalid,
            invalid_ids,
            customers: people,
            featured,
            featured_messages,
            featured_anonymous_messages,
            by_kind,
            by_channel: b.by_channel,
            orders: b.orders,
            revenue_cents: b.revenue_cents,
        }
    }
}

/// Generates one customer's history, oldest first, ending before `today`.
fn live(b: &mut Builder, c: &mut Customer, today: DateTime<Utc>) -> Journey {
    let mut journey = Journey::default();
    let mut channels = std::collections::BTreeSet::new();
    let joined = today - Duration::minutes(b.rng.gen_range(60 * 24 * 20..60 * 24 * 365));
    let span = (today - joined).num_minutes().max(60);

    // Joined the membership programme: the CRM knows them from the start.
    let id = b.message_id();
    b.push(
        joined,
        Channel::Crm,
        retail::identify(c, Channel::Crm, joined, &id),
    );
    channels.insert(Channel::Crm);
    journey.user_messages += 1;

    let mut times: Vec<DateTime<Utc>> = (0..b.rng.gen_range(1..=6))
        .map(|_| joined + Duration::minutes(b.rng.gen_range(30..span)))
        .collect();
    times.sort();
    let upgrade_at = (times.len() >= 3 && c.tier + 1 < TIERS.len() && b.rng.gen_bool(0.4))
        .then(|| times[times.len() / 2]);
    let mut logged_in_once = false;
    for at in times {
        if upgrade_at == Some(at) {
            // Enough spend for the next tier: the mini-program's member centre reports it.
            c.tier += 1;
            journey.tier_changed = true;
            let id = b.message_id();
            let t = at - Duration::minutes(1);
            b.push(
                t,
                Channel::MiniProgram,
                retail::identify(c, Channel::MiniProgram, t, &id),
            );
            journey.user_messages += 1;
        }
        let channel = *[
            Channel::OnlineShop,
            Channel::OnlineShop,
            Channel::MiniProgram,
            Channel::Pos,
        ]
        .choose(&mut b.rng)
        .unwrap_or(&Channel::OnlineShop);
        channels.insert(channel);
        if channel == Channel::Pos {
            let lines: Vec<Line> = (0..b.rng.gen_range(1..=3))
                .map(|_| Line::random(&mut b.rng))
                .collect();
            if b.rng.gen_bool(0.3) {
                // The cashier looked the member up by phone and updated the record.
                let id = b.message_id();
                b.push(at, channel, retail::identify(c, channel, at, &id));
                journey.user_messages += 1;
            }
            order(b, c, channel, at + Duration::minutes(2), &lines);
            journey.orders += 1;
            journey.user_messages += 1;
            continue;
        }
        let mut t = at;
        if !logged_in_once && channel == Channel::OnlineShop {
            // Browsing before logging in: only the cookie id is known.
            for _ in 0..b.rng.gen_range(1..=3) {
                let id = b.message_id();
                let m = retail::page(Who::Anonymous(c), channel, t, &id, &mut b.rng);
                b.push(t, channel, m);
                journey.anonymous_messages += 1;
                t += Duration::seconds(b.rng.gen_range(10..120));
            }
        }
        if !logged_in_once || b.rng.gen_bool(0.2) {
            let id = b.message_id();
            b.push(t, channel, retail::identify(c, channel, t, &id));
            journey.user_messages += 1;
            logged_in_once = true;
            t += Duration::seconds(5);
        }
        for _ in 0..b.rng.gen_range(1..=4) {
            let id = b.message_id();
            let m = retail::page(Who::User(c), channel, t, &id, &mut b.rng);
            b.push(t, channel, m);
            journey.user_messages += 1;
            t += Duration::seconds(b.rng.gen_range(10..180));
        }
        let cart = format!("cart-{}-{}", c.user_id, t.timestamp());
        let lines: Vec<Line> = (0..b.rng.gen_range(0..=3))
            .map(|_| Line::random(&mut b.rng))
            .collect();
        for line in &lines {
            let id = b.message_id();
            let m = retail::product_added(Who::User(c), channel, t, &id, &cart, line);
            b.push(t, channel, m);
            journey.user_messages += 1;
            t += Duration::seconds(b.rng.gen_range(5..60));
        }
        // Some carts are abandoned.
        if !lines.is_empty() && b.rng.gen_bool(0.6) {
            order(b, c, channel, t + Duration::minutes(1), &lines);
            journey.orders += 1;
            journey.user_messages += 1;
        }
    }
    journey.channels = channels.len();
    journey
}

fn order(b: &mut Builder, c: &Customer, channel: Channel, at: DateTime<Utc>, lines: &[Line]) {
    b.orders += 1;
    b.revenue_cents += u64::from(retail::revenue_cents(lines));
    let order_id = format!("SO{}{:06}", b.seed, b.orders);
    let id = b.message_id();
    let m = retail::order_completed(c, channel, at, &id, &order_id, lines);
    b.push(at, channel, m);
}

/// A few messages that legacy connectors get wrong, attached to customers other than the featured one:
/// two with a junk phone or e-mail (stored, reported at `GET /v1/quality`), then the refused ones.
/// Returns how many will be refused (the last ones added).
fn broken_messages(
    b: &mut Builder,
    people: &[Customer],
    featured: usize,
    today: DateTime<Utc>,
) -> usize {
    let pick = |b: &mut Builder| {
        let mut i = b.rng.gen_range(0..people.len());
        if i == featured && people.len() > 1 {
            i = (i + 1) % people.len();
        }
        i
    };
    let at = today - Duration::hours(3);

    // Dirty but meaningful: stored, the junk value kept but no identifier (GET /v1/quality).
    let c = &people[pick(b)];
    let mut m = retail::identify(c, Channel::Pos, at, &b.message_id());
    m["traits"]["phone"] = json!("N/A");
    b.push(at, Channel::Pos, m);

    let c = &people[pick(b)];
    let mut m = retail::identify(c, Channel::Crm, at, &b.message_id());
    m["traits"]["email"] = json!(c.email.replace('@', "#"));
    b.push(at, Channel::Crm, m);

    // Meaningless: refused and quarantined.
    let mut broken = Vec::new();

    let c = &people[pick(b)];
    let lines = [Line::random(&mut b.rng)];
    let mut m =
        retail::order_completed(c, Channel::Pos, at, &b.message_id(), "SO-LEGACY-1", &lines);
    if let Some(m) = m.as_object_mut() {
        m.remove("event");
    }
    broken.push((Channel::Pos, m));

    let c = &people[pick(b)];
    let mut m = retail::page(
        Who::User(c),
        Channel::OnlineShop,
        at,
        &b.message_id(),
        &mut b.rng,
    );
    if let Some(m) = m.as_object_mut() {
        m.remove("userId");
        m.remove("anonymousId");
    }
    broken.push((Channel::OnlineShop, m));

    let c = &people[pick(b)];
    let mut m = retail::product_added(
        Who::User(c),
        Channel::MiniProgram,
        at,
        &b.message_id(),
        "cart-x",
        &Line::random(&mut b.rng),
    );
    m["timestamp"] = json!(at.format("%d/%m/%Y %H:%M").to_string());
    broken.push((Channel::MiniProgram, m));

    let c = &people[pick(b)];
    let lines = [Line::random(&mut b.rng)];
    let mut m =
        retail::order_completed(c, Channel::Pos, at, &b.message_id(), "SO-LEGACY-2", &lines);
    m["timestamp"] = json!("1970-01-01T00:00:00Z");
    broken.push((Channel::Pos, m));

    let n = broken.len();
    for (channel, m) in broken {
        let when = m["timestamp"]
            .as_str()
            .and_then(|t| DateTime::parse_from_rfc3339(t).ok())
            .map_or(at, |t| t.with_timezone(&Utc).max(at));
        b.push(when, channel, m);
    }
    n
}
