//! The messages a benchmark sends: realistic retail Segment messages (page views, carts, orders with
//! line items, identifies with email and phone) with unique messageIds, spread over many customers,
//! generated before the clock starts.

use anyhow::{bail, ensure};
use axum::body::Bytes;
use cdp_api::ingest;
use cdp_domain::event::NewEvent;
use cdp_domain::message::{rfc3339, MAX_BATCH_BYTES};
use chrono::{Duration, Utc};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

use cdp_domain::ident::WorkspaceId;

use crate::retail::{self, Channel, Customer, Line, Who};

/// Messages grouped into the batches they are sent in.
pub struct Workload {
    pub batches: Vec<Vec<String>>,
    /// The `sentAt` of every batch.
    pub sent_at: String,
    pub events: usize,
    pub customers: usize,
    pub bytes: usize,
    /// Every customer the messages are about, with what was sent about them.
    pub people: Vec<Person>,
    /// The `messageId` of the last message of the last batch.
    pub last_message_id: String,
}

/// A customer of the workload and what the messages say about them.
#[derive(Debug, Clone)]
pub struct Person {
    pub user_id: String,
    pub phone: String,
    /// Messages carrying the customer's `userId`.
    pub identified_events: u64,
    /// Messages carrying only the customer's `anonymousId` (the shop before login).
    pub anonymous_events: u64,
    /// Whether a message carries both (so the shop's cookie id and the member are known to be one).
    pub linked: bool,
}

impl Person {
    /// Whether at least one message carries the customer's `userId`.
    pub fn identified(&self) -> bool {
        self.identified_events > 0
    }

    /// The events the profile holding the customer's `userId` must have: those carrying it, and the
    /// anonymous ones when the cookie id was ever sent with the `userId` (otherwise nothing joins them).
    pub fn profile_events(&self) -> u64 {
        self.identified_events
            + if self.linked {
                self.anonymous_events
            } else {
                0
            }
    }
}

impl Workload {
    /// `events` messages in batches of `batch`, about ten per customer.
    pub fn retail(events: usize, batch: usize, seed: u64) -> anyhow::Result<Self> {
        ensure!(events > 0, "--events must be at least 1");
        ensure!(batch > 0, "--batch must be at least 1");
        let mut rng = StdRng::seed_from_u64(seed);
        let customers: Vec<Customer> = (0..(events / 10).max(100))
            .map(|i| Customer::generate(&mut rng, i))
            .collect();
        let now = Utc::now();
        let run: u32 = rng.gen();
        let mut batches = Vec::with_capacity(events.div_ceil(batch));
        let mut current = Vec::with_capacity(batch);
        let mut bytes = 0;
        let mut people: Vec<Person> = customers
            .iter()
            .map(|c| Person {
                user_id: c.user_id.clone(),
                phone: c.phone.clone(),
                identified_events: 0,
                anonymous_events: 0,
                linked: false,
            })
            .collect();
        let mut last_message_id = String::new();
        for i in 0..events {
            let index = rng.gen_range(0..customers.len());
            let c = &customers[index];
            let at = now - Duration::milliseconds(rng.gen_range(0..3_600_000));
            let id = format!("bench-{run:08x}-{i:09}");
            let web = if rng.gen_bool(0.7) {
                Channel::OnlineShop
            } else {
                Channel::MiniProgram
            };
            let roll: f64 = rng.gen();
            let message = if roll < 0.12 {
                let channel =
                    [Channel::Crm, Channel::Pos, Channel::MiniProgram][rng.gen_range(0..3)];
                retail::identify(c, channel, at, &id)
            } else if roll < 0.24 {
                let lines: Vec<Line> = (0..rng.gen_range(1..=4))
                    .map(|_| Line::random(&mut rng))
                    .collect();
                let channel = if rng.gen_bool(0.3) { Channel::Pos } else { web };
                retail::order_completed(c, channel, at, &id, &format!("O{run:08x}{i:09}"), &lines)
            } else if roll < 0.45 {
                let line = Line::random(&mut rng);
                let cart = format!("cart-{}", c.user_id);
                retail::product_added(Who::User(c), web, at, &id, &cart, &line)
            } else {
                let who = if rng.gen_bool(0.2) {
                    Who::Anonymous(c)
                } else {
                    Who::User(c)
                };
                retail::page(who, web, at, &id, &mut rng)
            };
            let person = &mut people[index];
            match (message.get("userId"), message.get("anonymousId")) {
                (Some(_), anonymous) => {
                    person.identified_events += 1;
                    person.linked |= anonymous.is_some();
                }
                (None, _) => person.anonymous_events += 1,
            }
            last_message_id = id;
            let text = message.to_string();
            bytes += text.len();
            current.push(text);
            if current.len() == batch {
                batches.push(std::mem::replace(&mut current, Vec::with_capacity(batch)));
            }
        }
        if !current.is_empty() {
            batches.push(current);
        }
        let workload = Self {
            batches,
            sent_at: rfc3339(now),
            events,
            customers: customers.len(),
            bytes,
            people,
            last_message_id,
        };
        let largest = workload
            .batches
            .iter()
            .map(|b| workload.body_len(b))
            .max()
            .unwrap_or(0);
        if largest > MAX_BATCH_BYTES {
            bail!(
                "a batch of {batch} messages is {largest} bytes, over the {MAX_BATCH_BYTES}-byte \
                 limit of /v1/batch; use a smaller --batch"
            );
        }
        Ok(workload)
    }

    fn body_len(&self, batch: &[String]) -> usize {
        batch.iter().map(|m| m.len() + 1).sum::<usize>() + self.sent_at.len() + 24
    }

    /// The `/v1/batch` request bodies, one per batch.
    pub fn bodies(&self) -> Vec<Bytes> {
        self.batches
            .iter()
            .map(|batch| {
                let mut body = String::with_capacity(self.body_len(batch));
                body.push_str("{\"batch\":[");
                for (i, m) in batch.iter().enumerate() {
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(m);
                }
                body.push_str("],\"sentAt\":\"");
                body.push_str(&self.sent_at);
                body.push_str("\"}");
                Bytes::from(body)
            })
            .collect()
    }

    /// The events ingestion makes of each batch (checked exactly as `/v1/batch` checks them).
    pub fn new_events(&self, workspace: &WorkspaceId) -> anyhow::Result<Vec<Vec<NewEvent>>> {
        self.new_events_each(workspace).collect()
    }

    /// [`Workload::new_events`] one request at a time, checked when asked for: a scenario that appends
    /// them in order holds one request's events at a time, not the whole log's (~1.5 KB an event
    /// checked: 15 GB at 10M events).
    pub fn new_events_each<'a>(
        &'a self,
        workspace: &'a WorkspaceId,
    ) -> impl Iterator<Item = anyhow::Result<Vec<NewEvent>>> + 'a {
        let sent_at = Value::String(self.sent_at.clone());
        let received = Utc::now();
        self.batches.iter().map(move |batch| {
            let checked = ingest::check(
                workspace,
                Default::default(),
                batch.iter().map(String::as_str),
                Some(&sent_at),
                None,
                received,
            );
            if let Some(r) = checked.rejected.first() {
                bail!(
                    "the benchmark's own messages must all be valid: the generated message {} was \
                     refused: {}",
                    r.raw,
                    r.error
                );
            }
            Ok(checked.events)
        })
    }
}
