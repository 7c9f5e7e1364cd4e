//! `cdp bench`: runs the scenarios of BENCH.md against the real service, started in-process on a fresh
//! store, and prints one table plus a one-line summary per scenario. Each scenario verifies that what it
//! measured really happened and fails (non-zero exit) otherwise.
//!
//! A scenario is a module with a `run` that returns an [`report::Outcome`]; adding one means a variant
//! of [`Scenario`] and a line in [`run_scenario`].

mod export;
mod freshness;
mod ingest_bulk;
mod ingest_http;
mod memory;
mod preview;
mod profile_read;
mod replay;
pub mod report;
mod scale;
mod target;
mod timeout;
mod traits;
mod workload;

use anyhow::bail;

use crate::numbers::thousands;
use report::Outcome;
use target::Backend;
use workload::Workload;

/// The scenarios `cdp bench` knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Scenario {
    /// Segment `/v1/batch` over HTTP from concurrent clients: durable events/s.
    IngestHttp,
    /// `cdp backfill` of a generated --events-row POS export (CSV) into a fresh store: events/s; the
    /// reference is a raw bulk load of the same rows (PostgreSQL `COPY`, SQLite multi-row `INSERT`).
    IngestBulk,
    /// The workload ingested, the resolver's catch-up events/s, then `GET /v1/profiles/{id}` on random
    /// profiles from concurrent clients: requests/s, p50, p99.
    ProfileRead,
    /// The workload appended and resolved without, then with computed traits and tags defined
    /// beforehand (events/s and their ratio), then the same definitions backfilled (profiles/s).
    Traits,
    /// History below a spend threshold, a segment on it, then a steady stream at --rate events/s in which
    /// some orders cross it: from the 200 of each crossing order to its `segment…entered` message
    /// (NATS with --nats-url, the in-process bus otherwise): p50, p99, max.
    Freshness,
    /// "Added to cart, not paid within 1 minute": --customers carts over 10 s, a third of them paid
    /// 10–30 s later; from each abandoned cart's deadline to its `segment…entered` message (in-process
    /// bus): p50, p99, max.
    TimeOut,
    /// --customers profiles (a city, orders and carts over 60 days), a computed trait spend_30d, then
    /// `POST /v1/segments/preview` of a 4-condition segment, timed: ms and profiles/s; the reference is
    /// one SQL query over the events table.
    SegmentPreview,
    /// The replay scenario's catalog and the workload appended to the log, then caught up by a new live
    /// resolver (identity, profiles, traits, tags, segments): events/s; the reference is a `read_after`
    /// scan of the same log (payloads parsed) in the same run. Verified: every event applied once.
    Resolve,
    /// The workload and a catalog (computed traits, a tag, a segment) resolved live, then `cdp replay
    /// rebuild` of the resolver's whole model from the log: events/s; the reference is a `read_after`
    /// scan of the same log (payloads parsed) in the same run. Verified: every event applied, the
    /// profiles and segment members unchanged.
    Replay,
    /// --customers profiles (an identify and an order each) resolved with the replay scenario's
    /// catalog: the resident memory the process grew by per profile the resolver holds in memory (the
    /// goal is at most 2 KB at 1M profiles) and the stored bytes per profile.
    Memory,
    /// --customers profiles in one segment exported over HTTP as CSV (`fields=` and `channel=sms`):
    /// members/s and the process's peak resident growth while streaming (constant memory: it does
    /// not grow with the members). Verified: every member once, exactly the consenting ones on sms.
    Export,
    /// Freshness's stream against 1, then 2 (… --instances) `cdp serve` processes on one PostgreSQL
    /// and NATS, each pinned to a core with `taskset`, at each of --rates until one is missed: the
    /// highest rate at which the p99 from the 200 to the `segment…entered` message on NATS stays ≤
    /// 100 ms, per number of instances, and its ratio to one instance's. Needs --backend postgres and
    /// --nats-url, and the release `cdp` binary beside `cdp-bench`; not run unless named.
    Scale,
}

impl Scenario {
    pub const ALL: &'static [Scenario] = &[
        Scenario::IngestHttp,
        Scenario::IngestBulk,
        Scenario::ProfileRead,
        Scenario::Traits,
        Scenario::Freshness,
        Scenario::TimeOut,
        Scenario::SegmentPreview,
        Scenario::Resolve,
        Scenario::Replay,
        Scenario::Memory,
        Scenario::Export,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Scenario::IngestHttp => ingest_http::NAME,
            Scenario::IngestBulk => ingest_bulk::NAME,
            Scenario::ProfileRead => profile_read::NAME,
            Scenario::Traits => traits::NAME,
            Scenario::Freshness => freshness::NAME,
            Scenario::TimeOut => timeout::NAME,
            Scenario::SegmentPreview => preview::NAME,
            Scenario::Resolve => replay::RESOLVE,
            Scenario::Replay => replay::NAME,
            Scenario::Memory => memory::NAME,
            Scenario::Export => export::NAME,
            Scenario::Scale => scale::NAME,
        }
    }
}

/// Which stores to measure on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// SQLite, and PostgreSQL too when --database-url is given.
    All,
    Sqlite,
    /// PostgreSQL only (needs --database-url).
    Postgres,
}

#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// Scenarios to run, comma-separated; every implemented one when absent.
    #[arg(long = "scenario", value_enum, value_delimiter = ',')]
    pub scenarios: Vec<Scenario>,
    /// A PostgreSQL server (`postgres://user@host:port/db`) to measure on as well. Every measurement
    /// creates a fresh database `cdp_bench_<random>` there and drops it afterwards. Deliberately not
    /// read from CDP_DATABASE_URL, so a production setting never receives benchmark data.
    #[arg(long)]
    pub database_url: Option<String>,
    #[arg(long, value_enum, default_value = "all")]
    pub backend: BackendChoice,
    /// Concurrent HTTP clients (and tasks of the physical reference).
    #[arg(long, default_value_t = 8)]
    pub clients: usize,
    /// Messages per `/v1/batch` request (segment-preview: per append to the log).
    #[arg(long, default_value_t = 100)]
    pub batch: usize,
    /// Events per scenario and backend.
    #[arg(long, default_value_t = 200_000)]
    pub events: usize,
    /// Profile reads of profile-read (in each of its two phases).
    #[arg(long, default_value_t = 20_000)]
    pub requests: usize,
    /// Requests/s of profile-read's paced phase (open loop: each read sent when it is due).
    #[arg(long, default_value_t = 5_000)]
    pub read_rate: usize,
    /// Target events/s of freshness's stream.
    #[arg(long, default_value_t = 2_000)]
    pub rate: usize,
    /// Customers of time-out (each adds to a cart once); profiles of segment-preview and memory.
    #[arg(long, default_value_t = 2_000)]
    pub customers: usize,
    /// A NATS server (JetStream) on which freshness takes the `segment…entered` messages, in a namespace
    /// `bench_<random>` of its own (streams deleted afterwards); the in-process bus when absent.
    #[arg(long)]
    pub nats_url: Option<String>,
    /// Target events/s tried by scale, in order, for each number of instances.
    #[arg(long, value_delimiter = ',', default_values_t = [2_000, 4_000, 6_000, 8_000, 10_000, 12_000, 15_000])]
    pub rates: Vec<usize>,
    /// Up to how many `cdp serve` processes scale starts.
    #[arg(long, default_value_t = 2)]
    pub instances: usize,
    /// The `cdp` binary scale starts (default: the one beside `cdp-bench`).
    #[arg(long)]
    pub cdp_binary: Option<std::path::PathBuf>,
    /// Where scale sends the stream's requests: every instance in turn, or only those not running
    /// the engine.
    #[arg(long, value_enum, default_value = "all")]
    pub route: scale::Route,
    /// The cores scale pins its instances to, in turn (default: instance i on core i).
    #[arg(long, value_delimiter = ',')]
    pub pin: Vec<usize>,
    /// The share of a core each of scale's instances may use (a CPU cgroup each, e.g. 0.4; needs
    /// root): the instances, not PostgreSQL and NATS, then bound the throughput, as on a machine
    /// with cores to spare for the database. Default: no limit beyond the pinning.
    #[arg(long)]
    pub cpu_quota: Option<f64>,
    /// How many workspaces scale's stream is spread over (each its own customers, segment and share
    /// of the rate).
    #[arg(long, default_value_t = 1)]
    pub workspaces: usize,
    /// How many parts scale's instances split the engine into (`CDP_ENGINE_PARTITIONS`).
    #[arg(long, default_value_t = 1)]
    pub partitions: u32,
    /// Seed of the generated messages (and of profile-read's choice of profiles).
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
}

pub async fn run(args: BenchArgs) -> anyhow::Result<()> {
    let backends = backends(&args)?;
    let scenarios = if args.scenarios.is_empty() {
        Scenario::ALL.to_vec()
    } else {
        args.scenarios.clone()
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    println!(
        "cdp bench {} — {cores} cores (available parallelism), {}/{}, {} build; client and service \
         share the machine",
        env!("CARGO_PKG_VERSION"),
        std::env::consts::OS,
        std::env::consts::ARCH,
        if cfg!(debug_assertions) {
            "DEBUG (numbers are not representative: use --release)"
        } else {
            "release"
        },
    );
    for backend in &backends {
        if let Backend::Postgres { server_url } = backend {
            println!("postgres: {}", target::postgres_settings(server_url).await?);
        }
    }
    let workload = Workload::retail(args.events, args.batch, args.seed)?;
    println!(
        "workload: {} retail messages (identify, page, Product Added, Order Completed) over {} \
         customers, {} bytes on average, {} requests of up to {}, seed {}",
        thousands(workload.events as u64),
        thousands(workload.customers as u64),
        workload.bytes / workload.events.max(1),
        thousands(workload.batches.len() as u64),
        args.batch,
        args.seed
    );
    println!();

    let mut outcomes: Vec<Outcome> = Vec::new();
    let mut failure = None;
    'all: for scenario in &scenarios {
        for backend in &backends {
            eprintln!("running {} on {} …", scenario.name(), backend.name());
            match run_scenario(*scenario, backend, &workload, &args).await {
                Ok(outcome) => outcomes.push(outcome),
                Err(e) => {
                    failure = Some(e);
                    break 'all;
                }
            }
        }
    }
    let rows: Vec<_> = outcomes.iter().flat_map(|o| o.rows.clone()).collect();
    if !rows.is_empty() {
        print!("{}", report::table(&rows));
        println!();
        for o in &outcomes {
            println!("{}", o.summary);
        }
    }
    match failure {
        Some(e) => Err(e.context("benchmark failed; the figures above (if any) are incomplete")),
        None => Ok(()),
    }
}

async fn run_scenario(
    scenario: Scenario,
    backend: &Backend,
    workload: &Workload,
    args: &BenchArgs,
) -> anyhow::Result<Outcome> {
    match scenario {
        Scenario::IngestHttp => ingest_http::run(backend, workload, args.clients).await,
        Scenario::IngestBulk => ingest_bulk::run(backend, args.events, args.seed).await,
        Scenario::ProfileRead => {
            let reads = profile_read::Reads {
                clients: args.clients,
                requests: args.requests,
                rate: args.read_rate,
                seed: args.seed,
            };
            profile_read::run(backend, workload, &reads).await
        }
        Scenario::Traits => traits::run(backend, workload).await,
        Scenario::Freshness => {
            let settings = freshness::Settings {
                events: args.events,
                rate: args.rate,
                batch: args.batch,
                clients: args.clients,
                seed: args.seed,
                nats_url: args.nats_url.as_deref(),
            };
            freshness::run(backend, &settings).await
        }
        Scenario::TimeOut => {
            let settings = timeout::Settings {
                customers: args.customers,
                clients: args.clients,
                seed: args.seed,
            };
            timeout::run(backend, &settings).await
        }
        Scenario::SegmentPreview => {
            let settings = preview::Settings {
                customers: args.customers,
                batch: args.batch,
                seed: args.seed,
            };
            preview::run(backend, &settings).await
        }
        Scenario::Resolve => replay::run_resolve(backend, workload).await,
        Scenario::Replay => replay::run(backend, workload).await,
        Scenario::Memory => memory::run(backend, args.customers, args.seed).await,
        Scenario::Export => export::run(backend, args.customers, args.seed).await,
        Scenario::Scale => {
            let settings = scale::Settings {
                events: args.events,
                rates: &args.rates,
                instances: args.instances,
                batch: args.batch,
                clients: args.clients,
                seed: args.seed,
                nats_url: args.nats_url.as_deref(),
                cdp_binary: args.cdp_binary.as_deref(),
                route: args.route,
                pin: &args.pin,
                cpu_quota: args.cpu_quota,
                workspaces: args.workspaces,
                partitions: args.partitions,
            };
            scale::run(backend, &settings).await
        }
    }
}

fn backends(args: &BenchArgs) -> anyhow::Result<Vec<Backend>> {
    let postgres = args
        .database_url
        .clone()
        .map(|server_url| Backend::Postgres { server_url });
    Ok(match (args.backend, postgres) {
        (BackendChoice::All, pg) => std::iter::once(Backend::Sqlite).chain(pg).collect(),
        (BackendChoice::Sqlite, _) => vec![Backend::Sqlite],
        (BackendChoice::Postgres, Some(pg)) => vec![pg],
        (BackendChoice::Postgres, None) => {
            bail!("--backend postgres needs --database-url postgres://…")
        }
    })
}
