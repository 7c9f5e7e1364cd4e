//! The outbox publisher: sends the messages the resolver wrote to the `outbox` table (tag changes,
//! segment enters and exits, track events), in order, to NATS JetStream (stream `CDP_OUT`, subjects
//! `cdp.out.>`, `Nats-Msg-Id` = `CDP_OUT-<seq>` for deduplication) when NATS is configured, and to the
//! in-process bus (the SSE stream, `GET /v1/stream`). With several instances, one at a time publishes
//! to NATS — the one holding the `publisher` lease (`cdp_projections::lease`), taken by the instance
//! that runs the engine when it publishes to NATS (its commits wake the publisher at once), else by
//! one that does (`should_publish`) — and its position is
//! kept in `projection_checkpoints`, moved only after JetStream acknowledged, so nothing is lost while
//! NATS is down or when the publishing instance dies: the next holder retries from where it stopped
//! (at least once; subscribers deduplicate by the message id). Every instance feeds its own bus from
//! a position of its own in memory, so each instance's stream carries every message.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use cdp_domain::store::sql::{query, query_each};
use cdp_domain::store::Store;
use cdp_projections::lease::{self, HeldLease, Lease};
use cdp_projections::outbox::{outbox_after, OutMessage, Topic};
use cdp_projections::runner::checkpoint;
use cdp_projections::ProjectionError;
use chrono::Utc;
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

mod sql;

/// Where outgoing messages are published: the stream (`CDP_OUT`) and the subject prefix that replaces
/// `cdp.out.` (a namespace's, in tests).
#[derive(Debug, Clone)]
pub struct OutTopology {
    pub stream: String,
    pub subject_prefix: String,
}

/// The checkpoint name of the publisher.
pub const PUBLISHER: &str = "outbox-publisher";
const PAGE: i64 = 500;
const POLL: Duration = Duration::from_millis(50);

/// A message as the in-process bus carries it.
#[derive(Debug, Clone, PartialEq)]
pub struct Published {
    pub seq: i64,
    pub workspace: String,
    pub subject: String,
    pub payload: String,
}

/// Creates the outgoing stream if absent.
pub async fn ensure_stream(
    client: &async_nats::Client,
    topology: &OutTopology,
) -> anyhow::Result<()> {
    jetstream::new(client.clone())
        .get_or_create_stream(stream::Config {
            name: topology.stream.clone(),
            subjects: vec![format!("{}>", topology.subject_prefix)],
            storage: stream::StorageType::File,
            duplicate_window: Duration::from_secs(600),
            ..Default::default()
        })
        .await
        .map_err(|e| anyhow::anyhow!("failed to create NATS stream {}: {e}", topology.stream))?;
    Ok(())
}

/// A background task (the publisher, the scheduled batch); dropping it stops it.
#[derive(Debug)]
pub struct BackgroundTask(JoinHandle<()>);

impl From<JoinHandle<()>> for BackgroundTask {
    fn from(task: JoinHandle<()>) -> Self {
        BackgroundTask(task)
    }
}

impl Drop for BackgroundTask {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The lease under which one instance at a time publishes the outbox to NATS and moves the
/// publisher's checkpoint (`engine_leases`, beside the engine's partitions).
pub const PUBLISHER_LEASE: &str = "publisher";

/// The prefix of the row each instance that publishes to NATS keeps in `engine_leases` while it runs
/// (`publishes/<instance>`, renewed like a lease): how the others know that someone could publish.
pub const PUBLISHES_PREFIX: &str = "publishes/";

/// The publisher of an instance: every instance feeds its own bus (the SSE stream) from the outbox,
/// at a position of its own; the one holding [`PUBLISHER_LEASE`] also publishes to NATS.
#[derive(Debug)]
pub struct Publisher {
    task: BackgroundTask,
    held: Arc<HeldLease>,
    presence: Arc<HeldLease>,
    store: Store,
}

impl Publisher {
    /// Stops publishing and gives the lease (and the row saying it publishes) up, so that another
    /// instance publishes at once.
    pub async fn shut_down(self) {
        drop(self.task);
        for held in [&self.held, &self.presence] {
            if let Some(lease) = held.take() {
                let _ = lease.release(&self.store).await;
            }
        }
    }
}

/// Starts publishing as the instance `instance`; `resolver` tells it when the resolver committed (else
/// it polls every `POLL`).
pub fn spawn(
    store: Store,
    nats: Option<(async_nats::Client, OutTopology)>,
    bus: broadcast::Sender<Published>,
    resolver: Arc<cdp_projections::RunnerStatus>,
    instance: String,
) -> Publisher {
    let held = Arc::new(HeldLease::default());
    let presence = Arc::new(HeldLease::default());
    let task = BackgroundTask(tokio::spawn(publish_forever(
        store.clone(),
        nats,
        bus,
        resolver,
        instance,
        (held.clone(), presence.clone()),
    )));
    Publisher {
        task,
        held,
        presence,
        store,
    }
}

async fn publish_forever(
    store: Store,
    nats: Option<(async_nats::Client, OutTopology)>,
    bus: broadcast::Sender<Published>,
    resolver: Arc<cdp_projections::RunnerStatus>,
    instance: String,
    (held, presence): (Arc<HeldLease>, Arc<HeldLease>),
) {
    // The bus starts where publishing is: what is still to be published reaches its listeners.
    let mut bus_at = loop {
        match checkpoint(&store, PUBLISHER).await {
            Ok(at) => break at.seq,
            Err(e) => {
                tracing::debug!(error = %e, "the publisher's checkpoint could not be read; tried again");
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
    };
    let mut outage = Outage::default();
    let mut upkeep = LeaseUpkeep {
        publishes: nats.is_some(),
        presence,
        ..LeaseUpkeep::default()
    };
    loop {
        let runs_engine = resolver.runs_any();
        upkeep.keep(&store, &instance, &held, runs_engine).await;
        let lease = held.get();
        let outcome =
            publish_some(&store, nats.as_ref(), &bus, &mut bus_at, lease.as_deref()).await;
        let now = Instant::now();
        let change = match &outcome {
            Ok(0) => outage.idle(now),
            Ok(n) => outage.published(*n, now),
            Err(_) => outage.failed(now),
        };
        match (change, &outcome) {
            (Some(Change::Down), Err(e)) => {
                let waiting = waiting(&store).await.ok();
                tracing::warn!(
                    error = %e,
                    waiting,
                    "publishing the outbox stopped (NATS or the database is out of reach); \
                     retrying every second, said once: the outbox keeps every message"
                );
            }
            (Some(Change::Back { lasted, failures }), _) => tracing::info!(
                seconds = lasted.as_secs_f64(),
                failed_attempts = failures,
                "publishing the outbox works again; catching up"
            ),
            (Some(Change::CaughtUp { published, took }), _) => tracing::info!(
                published,
                seconds = took.as_secs_f64(),
                "the outbox has caught up after the outage"
            ),
            (_, Err(e)) => tracing::debug!(error = %e, "publishing the outbox failed again"),
            _ => {}
        }
        match outcome {
            Ok(0) => {
                let _ = tokio::time::timeout(POLL, resolver.committed.notified()).await;
            }
            Ok(_) => {}
            Err(_) => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

/// The publisher's lease, kept: held by the instance that should publish ([`should_publish`]: the
/// one running the engine when it publishes to NATS — the commits that wake the publisher are that
/// instance's, so a message is published without waiting for a poll — else one that does), tried for
/// every [`lease::TRY_EVERY`] while wanted, renewed every [`lease::RENEW_EVERY`] while held, given up
/// as soon as it is no longer wanted (for the right instance to take at once), dropped when another
/// instance took it or a renewal could not be made before it lapsed. An instance that publishes keeps
/// its `publishes/<instance>` row alive at the same pace.
#[derive(Debug, Default)]
struct LeaseUpkeep {
    /// Whether this instance publishes to NATS.
    publishes: bool,
    /// Its `publishes/<instance>` row, while kept.
    presence: Arc<HeldLease>,
    /// When the lease was last tried for or renewed.
    attempted: Option<Instant>,
    /// When it was last renewed (or taken).
    renewed: Option<Instant>,
}

/// What an instance knows of the others when it decides whether it should publish.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Publishers {
    /// Some live instance publishes to NATS.
    any: bool,
    /// The instance running the engine publishes to NATS.
    engine: bool,
}

/// Whether an instance should hold the publisher's lease. The one running the engine, when it
/// publishes; when it does not, an instance that does (several may want it: the lease picks one);
/// and when no instance publishes at all, the one running the engine, which then only feeds the
/// streams and moves the outbox on. An instance that does not publish never holds the lease while
/// one that does is alive: it would move the outbox past messages that one's subscribers never got.
fn should_publish(publishes: bool, runs_engine: bool, others: Publishers) -> bool {
    match (publishes, runs_engine) {
        (true, true) => true,
        (true, false) => !others.engine,
        (false, engine) => engine && !others.any,
    }
}

/// Who publishes, as the leases stand: the live `publishes/*` rows, and whether the owner of the
/// engine's partition has one.
async fn publishers(store: &Store) -> Result<Publishers, cdp_projections::ProjectionError> {
    let now = chrono::Utc::now().timestamp_millis();
    let live: Vec<lease::Holder> = lease::holders(store)
        .await?
        .into_iter()
        .filter(|h| h.live_at(now))
        .collect();
    let publishing: Vec<&str> = live
        .iter()
        .filter_map(|h| h.part.strip_prefix(PUBLISHES_PREFIX))
        .collect();
    let engine = live
        .iter()
        .filter(|h| cdp_projections::partitions::Part::parse(&h.part).is_some())
        .any(|h| publishing.contains(&h.owner.as_str()));
    Ok(Publishers {
        any: !publishing.is_empty(),
        engine,
    })
}

impl LeaseUpkeep {
    async fn keep(&mut self, store: &Store, instance: &str, held: &HeldLease, runs_engine: bool) {
        let now = Instant::now();
        let every = if held.get().is_some() {
            lease::RENEW_EVERY
        } else {
            lease::TRY_EVERY
        };
        if self
            .attempted
            .is_some_and(|at| now.duration_since(at) < every)
        {
            return;
        }
        self.attempted = Some(now);
        if self.publishes {
            // This instance's row saying it publishes: taken again is renewed (same owner).
            match Lease::acquire(store, &format!("{PUBLISHES_PREFIX}{instance}"), instance).await {
                Ok(row) => self.presence.put(row.map(Arc::new)),
                Err(e) => {
                    tracing::debug!(error = %e, "the row saying this instance publishes could not be kept")
                }
            }
        }
        let wanted = match publishers(store).await {
            Ok(others) => should_publish(self.publishes, runs_engine, others),
            Err(e) => {
                tracing::debug!(error = %e, "the publishers could not be read; tried again");
                // Unknown: a held lease is kept (renewed below) until the database answers again.
                held.get().is_some()
            }
        };
        match held.get() {
            Some(lease) if !wanted => {
                held.put(None);
                let _ = lease.release(store).await;
                tracing::info!(
                    instance,
                    "another instance should publish now: the publisher's lease given up"
                );
            }
            Some(lease) => match lease.renew(store).await {
                Ok(true) => self.renewed = Some(now),
                Ok(false) => {
                    held.put(None);
                    tracing::warn!(instance, "the publisher's lease was taken by another instance: feeding this instance's stream only");
                }
                Err(e) => {
                    let since = self.renewed.map_or(lease::TTL, |at| now.duration_since(at));
                    if since + lease::RENEW_EVERY >= lease::TTL {
                        held.put(None);
                        tracing::warn!(instance, error = %e, "the publisher's lease could not be renewed before it lapsed; given up");
                    }
                }
            },
            None if wanted => match Lease::acquire(store, PUBLISHER_LEASE, instance).await {
                Ok(Some(taken)) => {
                    tracing::info!(
                        instance,
                        fence = taken.fence(),
                        "the publisher's lease taken: publishing the outbox"
                    );
                    self.renewed = Some(now);
                    held.put(Some(Arc::new(taken)));
                }
                Ok(None) => {}
                Err(e) => {
                    tracing::debug!(error = %e, "the publisher's lease could not be asked for")
                }
            },
            None => {}
        }
    }
}

/// What the publisher's log says about an outage: one line when publishing starts failing, one when a
/// page is published again, one when the outbox has caught up — never one per retry or message.
#[derive(Debug, Default)]
struct Outage {
    /// Since when publishing fails, and how many attempts failed.
    down: Option<(Instant, u64)>,
    /// Since when publishing works again, and how many messages were published since.
    recovering: Option<(Instant, u64)>,
}

/// A change worth one log line.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Change {
    Down,
    Back { lasted: Duration, failures: u64 },
    CaughtUp { published: u64, took: Duration },
}

impl Outage {
    fn failed(&mut self, now: Instant) -> Option<Change> {
        self.recovering = None;
        match &mut self.down {
            Some((_, failures)) => {
                *failures += 1;
                None
            }
            None => {
                self.down = Some((now, 1));
                Some(Change::Down)
            }
        }
    }

    fn published(&mut self, n: usize, now: Instant) -> Option<Change> {
        if let Some((since, failures)) = self.down.take() {
            self.recovering = Some((now, n as u64));
            return Some(Change::Back {
                lasted: now.saturating_duration_since(since),
                failures,
            });
        }
        if let Some((_, published)) = &mut self.recovering {
            *published += n as u64;
        }
        None
    }

    /// Nothing was left to publish.
    fn idle(&mut self, now: Instant) -> Option<Change> {
        if let Some((since, _)) = self.down.take() {
            // It works again and nothing was waiting.
            return Some(Change::CaughtUp {
                published: 0,
                took: now.saturating_duration_since(since),
            });
        }
        let (since, published) = self.recovering.take()?;
        Some(Change::CaughtUp {
            published,
            took: now.saturating_duration_since(since),
        })
    }
}

/// How many messages of the outbox wait to be published.
async fn waiting(store: &Store) -> Result<i64, ProjectionError> {
    let after = checkpoint(store, PUBLISHER).await?.seq;
    let count = query(sql::WAITING)
        .bind(after)
        .scalar(store.reader())
        .await?;
    Ok(count)
}

/// The next page of the outbox after `after`, each message with the channels its profile may be
/// reached on.
async fn next_page(store: &Store, after: i64) -> anyhow::Result<Vec<OutMessage>> {
    let page = outbox_after(store, after, PAGE).await?;
    if page.is_empty() {
        return Ok(page);
    }
    crate::consent::gate(store, page).await
}

/// Feeds the next page of the outbox after `bus_at` to the bus (and moves `bus_at`); under the
/// publisher's `lease`, publishes the next page after the publisher's checkpoint to NATS too and
/// moves the checkpoint. Returns how many messages were handled (the larger of the two pages).
#[tracing::instrument(name = "publish", skip_all)]
async fn publish_some(
    store: &Store,
    nats: Option<&(async_nats::Client, OutTopology)>,
    bus: &broadcast::Sender<Published>,
    bus_at: &mut i64,
    lease: Option<&Lease>,
) -> anyhow::Result<usize> {
    let fed_from = *bus_at;
    let fed = next_page(store, fed_from).await?;
    let fed_count = fed.len();
    for OutMessage {
        seq,
        workspace,
        topic,
        payload,
    } in fed.iter().cloned()
    {
        // No receiver is fine: the bus is for whoever listens now.
        let _ = bus.send(Published {
            seq,
            subject: subject_under(BUS_PREFIX, &workspace, &topic),
            workspace,
            payload,
        });
        *bus_at = seq;
    }
    let Some(_) = lease else {
        return Ok(fed_count);
    };
    let published_through = checkpoint(store, PUBLISHER).await?.seq;
    let page = if published_through == fed_from {
        fed
    } else {
        next_page(store, published_through).await?
    };
    let Some(last) = page.last().map(|m| m.seq) else {
        return Ok(fed_count);
    };
    if let Some((client, topology)) = nats {
        let js = jetstream::new(client.clone());
        let mut acks = Vec::with_capacity(page.len());
        for m in &page {
            let mut headers = HeaderMap::new();
            headers.insert(
                "Nats-Msg-Id",
                format!("{}-{}", topology.stream, m.seq).as_str(),
            );
            let subject = subject_under(&topology.subject_prefix, &m.workspace, &m.topic);
            let ack = js
                .publish_with_headers(subject.clone(), headers, m.payload.clone().into())
                .await
                .map_err(|e| anyhow::anyhow!("publish to {subject}: {e}"))?;
            acks.push(ack);
        }
        for ack in acks {
            ack.await
                .map_err(|e| anyhow::anyhow!("JetStream did not acknowledge: {e}"))?;
        }
    }
    // Without NATS the checkpoint moves only while no instance publishes: one that started publishing
    // since resumes from here, and gets every message this one could not publish.
    if !save(store, last, nats.is_none()).await? {
        return Ok(fed_count);
    }
    prune(store, last).await?;
    Ok(page.len().max(fed_count))
}

/// The subjects' prefix on the in-process bus (the SSE stream): NATS's without a namespace.
pub const BUS_PREFIX: &str = "cdp.out.";

/// The subject of a message of `workspace` about `topic`, under `prefix`: subjects are minted here, at
/// the edge; the engine hands over typed topics (`outbox::Topic`). `<prefix><workspace>.tag.<tag>.changed`,
/// `….segment.<segment>.entered|exited`, `….event.<event name as one token>`; a stored topic of no
/// known form is published under the prefix as it is.
fn subject_under(prefix: &str, workspace: &str, topic: &Topic) -> String {
    match topic {
        Topic::TagChanged { tag } => format!("{prefix}{workspace}.tag.{tag}.changed"),
        Topic::Segment { segment, entered } => {
            let what = if *entered { "entered" } else { "exited" };
            format!("{prefix}{workspace}.segment.{segment}.{what}")
        }
        Topic::Event { name } => format!("{prefix}{workspace}.event.{name}"),
        Topic::Other(topic) => format!("{prefix}{topic}"),
    }
}

/// Published messages kept in the outbox (for inspection), beyond which the oldest are deleted.
const KEEP_PUBLISHED: i64 = 100_000;

/// Deletes published messages older than the last [`KEEP_PUBLISHED`]: the outbox is a queue, not the log.
async fn prune(store: &Store, published: i64) -> Result<(), ProjectionError> {
    let below = published - KEEP_PUBLISHED;
    if below <= 0 {
        return Ok(());
    }
    query(sql::PRUNE)
        .bind(below)
        .execute(store.writer())
        .await?;
    Ok(())
}

/// Moves the publisher's checkpoint to `seq`; `unless_published`: only while no instance that
/// publishes to NATS is alive (its `publishes/<instance>` row). Whether it moved.
async fn save(store: &Store, seq: i64, unless_published: bool) -> Result<bool, ProjectionError> {
    let now = Utc::now().timestamp_millis();
    let moved = if unless_published {
        query_each(
            sql::SAVE_CHECKPOINT_UNLESS_PUBLISHED_SQLITE,
            sql::SAVE_CHECKPOINT_UNLESS_PUBLISHED_POSTGRES,
        )
        .bind(PUBLISHER)
        .bind(seq)
        .bind(now)
        .bind(format!("{PUBLISHES_PREFIX}%"))
        .bind(now)
        .execute(store.writer())
        .await?
    } else {
        query_each(sql::SAVE_CHECKPOINT_SQLITE, sql::SAVE_CHECKPOINT_POSTGRES)
            .bind(PUBLISHER)
            .bind(seq)
            .bind(now)
            .execute(store.writer())
            .await?
    };
    Ok(moved > 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn without_nats_the_checkpoint_stays_while_an_instance_publishes(
    ) -> Result<(), Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let store = Store::open_embedded(dir.path()).await?;
        let at = |store: &Store| {
            let store = store.clone();
            async move { Ok::<i64, ProjectionError>(checkpoint(&store, PUBLISHER).await?.seq) }
        };
        assert!(save(&store, 10, true).await?, "no one publishes: moved");
        assert_eq!(at(&store).await?, 10);
        let row = format!("{PUBLISHES_PREFIX}other");
        let publishing = Lease::acquire(&store, &row, "other")
            .await?
            .ok_or("the row is free")?;
        assert!(!save(&store, 20, true).await?, "another instance publishes");
        assert_eq!(at(&store).await?, 10);
        // The instance that publishes moves it whatever the others do.
        assert!(save(&store, 20, false).await?);
        assert_eq!(at(&store).await?, 20);
        // Once that instance is gone, the one without NATS moves it again.
        publishing.release(&store).await?;
        assert!(save(&store, 30, true).await?);
        assert_eq!(at(&store).await?, 30);
        Ok(())
    }

    #[test]
    fn the_publisher_is_the_engines_instance_when_it_publishes_else_one_that_does() {
        let none = Publishers {
            any: false,
            engine: false,
        };
        let elsewhere = Publishers {
            any: true,
            engine: false,
        };
        let engine = Publishers {
            any: true,
            engine: true,
        };
        // An instance with NATS running the engine publishes, whatever the others do.
        for others in [none, elsewhere, engine] {
            assert!(should_publish(true, true, others));
        }
        // One with NATS not running the engine publishes only when the engine's instance cannot.
        assert!(should_publish(true, false, elsewhere));
        assert!(!should_publish(true, false, engine));
        // One without NATS moves the outbox on only when it runs the engine and no one publishes.
        assert!(should_publish(false, true, none));
        assert!(!should_publish(false, true, elsewhere));
        assert!(!should_publish(false, false, none));
        assert!(!should_publish(false, false, elsewhere));
    }

    #[test]
    fn subjects_are_minted_under_the_prefix_from_typed_topics() {
        let vip = Topic::Segment {
            segment: "vip".into(),
            entered: true,
        };
        assert_eq!(
            subject_under(BUS_PREFIX, "shop", &vip),
            "cdp.out.shop.segment.vip.entered"
        );
        assert_eq!(
            subject_under("eu.cdp.out.", "shop", &vip),
            "eu.cdp.out.shop.segment.vip.entered"
        );
        let left = Topic::Segment {
            segment: "vip".into(),
            entered: false,
        };
        assert_eq!(
            subject_under("eu.cdp.out.", "shop", &left),
            "eu.cdp.out.shop.segment.vip.exited"
        );
        let rfm = Topic::TagChanged { tag: "rfm".into() };
        assert_eq!(
            subject_under("eu.cdp.out.", "shop", &rfm),
            "eu.cdp.out.shop.tag.rfm.changed"
        );
        let order = Topic::Event {
            name: "order_completed".into(),
        };
        assert_eq!(
            subject_under(BUS_PREFIX, "shop", &order),
            "cdp.out.shop.event.order_completed"
        );
        assert_eq!(
            subject_under("eu.cdp.out.", "shop", &Topic::Other("shop.thing".into())),
            "eu.cdp.out.shop.thing"
        );
    }

    #[test]
    fn an_outage_is_logged_once_then_its_end_then_the_catch_up() {
        // Given a publisher that fails five times, then publishes three pages, then finds nothing left.
        let mut outage = Outage::default();
        let t0 = Instant::now();
        let at = |s: u64| t0 + Duration::from_secs(s);
        let mut said = Vec::new();
        said.push(outage.idle(at(0)));
        for s in 1..=5 {
            said.push(outage.failed(at(s)));
        }
        said.push(outage.published(500, at(7)));
        said.push(outage.published(500, at(8)));
        said.push(outage.published(20, at(9)));
        said.push(outage.idle(at(9)));
        said.push(outage.idle(at(10)));
        said.push(outage.published(3, at(11)));
        // Then three lines in all: down, back, caught up (with the count) — none per retry or page.
        let said: Vec<Change> = said.into_iter().flatten().collect();
        assert_eq!(
            said,
            [
                Change::Down,
                Change::Back {
                    lasted: Duration::from_secs(6),
                    failures: 5
                },
                Change::CaughtUp {
                    published: 1020,
                    took: Duration::from_secs(2)
                },
            ]
        );
    }

    #[test]
    fn a_failure_while_catching_up_is_a_new_outage() {
        let mut outage = Outage::default();
        let t0 = Instant::now();
        assert_eq!(outage.failed(t0), Some(Change::Down));
        assert!(matches!(
            outage.published(10, t0),
            Some(Change::Back { .. })
        ));
        assert_eq!(outage.failed(t0), Some(Change::Down));
        assert_eq!(outage.failed(t0), None);
        assert!(matches!(
            outage.idle(t0),
            Some(Change::CaughtUp { published: 0, .. })
        ));
        assert_eq!(outage.idle(t0), None);
    }
}
