//! Scenario `scale`: freshness's stream (`super::freshness`) against one, then two (… `--instances`)
//! `cdp serve` processes sharing one PostgreSQL database and NATS, each process pinned to a core of its
//! own with `taskset` (instance `i` on core `i` modulo the machine's cores, or on the `i`-th of `--pin`
//! in turn) and, with `--cpu-quota F`, limited to a share `F` of it by a CPU cgroup of its own (a
//! simulation of instances on cores of their own beside a database with cores to spare, on a machine
//! too small for both), the stream's requests sent to
//! the instances in turn (`--route standby`: only to those not running the engine). For each number of
//! instances the stream is run at each rate of `--rates`, in order, on a fresh database, until a rate
//! misses — the p99 from a crossing order's 200 to its `segment…entered` message on NATS above
//! [`P99_GOAL`], or the rate not sustained (below [`SUSTAINED`] of the target) —; the figure is the
//! highest rate met, and the summary gives the ratio of each number of instances' figure to one
//! instance's.
//!
//! With `--workspaces W` the stream is spread over W workspaces, each with its own plan (customers,
//! history, the segment) of a W-th of the events at a W-th of the rate, sent side by side; with
//! `--partitions P` the instances split the engine into P parts by workspace (`CDP_ENGINE_PARTITIONS`),
//! which the instances share.
//!
//! The processes are the release `cdp` binary beside `cdp-bench` (or `--cdp-binary`), configured like
//! freshness's in-process service (the same defaults, no scheduled batch). PostgreSQL, NATS and the
//! bench's own clients are not pinned: they share the machine with the instances, which the summary
//! says. Verified as in freshness: every event stored once, every crossing exactly one entered message
//! on a profile of its own, nothing else entered or exited, and the segment holds exactly the crossers.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{bail, ensure, Context};
use cdp_api::provision::random_secret;
use cdp_domain::store::{EventStore, Store};
use tokio::process::{Child, Command};
use tokio::task::JoinSet;

use super::freshness::{
    arrived, define, definition, holds_the_crossers, latencies, listen_nats, lock, send_paced,
    Plan, Settings as Stream, SEGMENT, STALLED, WORKSPACE,
};
use super::ingest_http::send_all;
use super::report::{quantile, Outcome, Row};
use super::target::{Backend, FreshStore};
use crate::numbers::thousands;

pub const NAME: &str = "scale";
/// A rate is met when the p99 from the 200 to the published enter is at most this…
pub const P99_GOAL: Duration = Duration::from_millis(100);
/// … and the stream was sent at no less than this share of the target rate.
pub const SUSTAINED: f64 = 0.95;

/// The flags of the scenario.
pub struct Settings<'a> {
    pub events: usize,
    /// The target rates tried, in events/s, in order.
    pub rates: &'a [usize],
    /// Up to how many instances.
    pub instances: usize,
    pub batch: usize,
    pub clients: usize,
    pub seed: u64,
    pub nats_url: Option<&'a str>,
    /// The `cdp` binary to start; beside the running `cdp-bench` when absent.
    pub cdp_binary: Option<&'a Path>,
    /// Where the stream's requests go.
    pub route: Route,
    /// The cores the instances are pinned to, in turn (empty: instance `i` on core `i`).
    pub pin: &'a [usize],
    /// The share of a core each instance may use, through a CPU cgroup of its own (none: only the
    /// pinning bounds it).
    pub cpu_quota: Option<f64>,
    /// How many workspaces the stream is spread over: each its own plan (customers, history,
    /// segment) of `events / workspaces` events at `rate / workspaces`, sent side by side.
    pub workspaces: usize,
    /// The engine's parts (`CDP_ENGINE_PARTITIONS`).
    pub partitions: u32,
}

/// Which instances the stream's requests are sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Route {
    /// Every instance in turn.
    All,
    /// Only the instances that do not run the engine (every instance when there is one): what a
    /// load balancer steering ingestion away from the engine's instance would do.
    Standby,
}

/// One stream run against `instances` processes at a target `rate`.
struct Run {
    instances: usize,
    rate: usize,
    events: usize,
    seconds: f64,
    sustained: f64,
    p50: Duration,
    p99: Duration,
}

impl Run {
    fn met(&self) -> bool {
        self.p99 <= P99_GOAL && self.sustained >= SUSTAINED * self.rate as f64
    }
}

pub async fn run(backend: &Backend, settings: &Settings<'_>) -> anyhow::Result<Outcome> {
    let Backend::Postgres { .. } = backend else {
        bail!("{NAME} needs PostgreSQL (--backend postgres --database-url …): instances share it");
    };
    let nats_url = settings
        .nats_url
        .context("scale needs --nats-url: the instances publish the segment's enters there")?;
    ensure!(settings.instances >= 1, "--instances must be at least 1");
    ensure!(
        (1..=64).contains(&settings.workspaces),
        "--workspaces must be from 1 to 64"
    );
    ensure!(
        (1..=64).contains(&settings.partitions),
        "--partitions must be from 1 to 64"
    );
    ensure!(!settings.rates.is_empty(), "--rates names no rate");
    let cdp = match settings.cdp_binary {
        Some(path) => path.to_path_buf(),
        None => beside_bench()?,
    };
    let cores = std::thread::available_parallelism().map_or(1, usize::from);
    let mut runs: Vec<Run> = Vec::new();
    let mut best: Vec<(usize, Option<f64>)> = Vec::new();
    for instances in 1..=settings.instances {
        let mut met = None;
        for &rate in settings.rates {
            eprintln!("  {NAME}: {instances} instance(s) at {rate} events/s …");
            let run = one_run(backend, &cdp, instances, rate, nats_url, settings)
                .await
                .with_context(|| format!("{NAME}: {instances} instance(s) at {rate}/s failed"))?;
            eprintln!(
                "  {NAME}: {instances} instance(s) at {rate}/s: sustained {:.0}/s, p99 {:.1} ms",
                run.sustained,
                run.p99.as_secs_f64() * 1e3
            );
            let ok = run.met();
            if ok {
                met = Some(run.sustained);
            }
            runs.push(run);
            if !ok {
                break;
            }
        }
        best.push((instances, met));
    }

    let rows = runs
        .iter()
        .map(|r| Row {
            scenario: NAME,
            backend: label(r.instances, r.rate),
            count: r.events as u64,
            unit: "events",
            seconds: r.seconds,
            rate: r.sustained,
            p50: Some(r.p50),
            p99: Some(r.p99),
            reference_rate: None,
        })
        .collect();
    let one = best.first().and_then(|(_, m)| *m);
    let figures: Vec<String> = best
        .iter()
        .map(|(n, met)| match (met, one) {
            (Some(rate), Some(one)) => format!(
                "{n} instance(s): {}/s ({:.2}× one)",
                thousands(rate.round() as u64),
                rate / one
            ),
            (Some(rate), None) => format!("{n} instance(s): {}/s", thousands(rate.round() as u64)),
            (None, _) => format!("{n} instance(s): no rate tried was met"),
        })
        .collect();
    let summary = format!(
        "{NAME} on postgres+nats: the highest rate of {rates:?} events/s at which the p99 from the \
         200 to the segment.{SEGMENT}.entered message on NATS stays ≤ {goal} ms (and ≥ {sustained:.0} % \
         of the rate is sustained), the stream over {workspaces} workspace(s), the engine in {partitions} \
         part(s), each instance a `cdp serve` process pinned to one core of {cores}{pinned}{quota} \
         (PostgreSQL, NATS and the bench unpinned, on the same machine), the stream's requests sent to \
         {routed}: {figures}. Verified at every rate: every event stored once, every \
         crossing exactly one entered message, nothing else entered or exited, the segment holds the \
         crossers.",
        rates = settings.rates,
        goal = P99_GOAL.as_millis(),
        sustained = SUSTAINED * 100.0,
        figures = figures.join("; "),
        workspaces = settings.workspaces,
        partitions = settings.partitions,
        pinned = if settings.pin.is_empty() {
            String::new()
        } else {
            format!(" (cores {:?} in turn)", settings.pin)
        },
        quota = match settings.cpu_quota {
            Some(share) => format!(" and limited to {share} of it (a CPU cgroup of its own)"),
            None => String::new(),
        },
        routed = match settings.route {
            Route::All => "the instances in turn",
            Route::Standby => "the instances not running the engine (with two or more)",
        },
    );
    Ok(Outcome { rows, summary })
}

/// The row's label: how many instances, at which target rate.
fn label(instances: usize, rate: usize) -> &'static str {
    String::leak(format!("pg+nats ×{instances} @{rate}/s"))
}

/// `cdp` in the directory of the running `cdp-bench`.
fn beside_bench() -> anyhow::Result<PathBuf> {
    let bench = std::env::current_exe().context("where cdp-bench runs from is unknown")?;
    let cdp = bench.with_file_name(format!("cdp{}", std::env::consts::EXE_SUFFIX));
    ensure!(
        cdp.is_file(),
        "{} is missing: build it (cargo build --release -p cdp-api) or name one with --cdp-binary",
        cdp.display()
    );
    Ok(cdp)
}

async fn one_run(
    backend: &Backend,
    cdp: &Path,
    instances: usize,
    rate: usize,
    nats_url: &str,
    settings: &Settings<'_>,
) -> anyhow::Result<Run> {
    let w = settings.workspaces;
    let stream = Stream {
        events: settings.events / w,
        rate: (rate / w).max(1),
        batch: settings.batch,
        clients: settings.clients,
        seed: settings.seed,
        nats_url: Some(nats_url),
    };
    // One plan a workspace, each of its own seed (its own message ids).
    let plans = (0..w)
        .map(|i| {
            Plan::generate(&Stream {
                seed: settings.seed.wrapping_add(i as u64),
                ..stream
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let fresh = FreshStore::create(backend).await?;
    let measured = measure(&fresh, cdp, instances, nats_url, &plans, &stream, settings).await;
    let removed = fresh.remove().await;
    let (seconds, p50, p99) = measured?;
    removed?;
    let events: usize = plans.iter().map(|p| p.stream_events).sum();
    Ok(Run {
        instances,
        rate,
        events,
        seconds,
        sustained: events as f64 / seconds,
        p50,
        p99,
    })
}

/// The instances of a run: `cdp serve` processes, killed when dropped.
struct Instances {
    children: Vec<Child>,
    bases: Vec<String>,
}

impl Instances {
    async fn start(
        cdp: &Path,
        n: usize,
        pin: &[usize],
        cpu_quota: Option<f64>,
        fresh: &FreshStore,
        env: &[(&str, String)],
    ) -> anyhow::Result<Self> {
        let cores = std::thread::available_parallelism().map_or(1, usize::from);
        let core_of = |i: usize| {
            if pin.is_empty() {
                i % cores
            } else {
                pin[i % pin.len()]
            }
        };
        let database_url = fresh
            .config()
            .database_url
            .context("a PostgreSQL store has a URL")?;
        let mut children = Vec::with_capacity(n);
        let mut bases = Vec::with_capacity(n);
        for i in 0..n {
            let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
            let port = listener.local_addr()?.port();
            drop(listener);
            let dir = fresh.data_dir().join(format!("instance-{i}"));
            std::fs::create_dir_all(&dir)?;
            let log = std::fs::File::create(dir.join("cdp.log"))?;
            // In a CPU cgroup of its own when a quota is set: the shell joins it, then becomes the
            // pinned instance (every thread the instance starts is in it).
            let mut command = match cpu_quota {
                Some(share) => {
                    let procs = CpuCgroup::create(i, share)?;
                    let mut shell = Command::new("sh");
                    shell
                        .arg("-c")
                        .arg(r#"echo $$ > "$0" && exec taskset -c "$1" "$2" serve"#)
                        .arg(procs)
                        .arg(core_of(i).to_string())
                        .arg(cdp);
                    shell
                }
                None => {
                    let mut taskset = Command::new("taskset");
                    taskset
                        .arg("-c")
                        .arg(core_of(i).to_string())
                        .arg(cdp)
                        .arg("serve");
                    taskset
                }
            };
            command
                .env("CDP_LISTEN", format!("127.0.0.1:{port}"))
                .env("CDP_DATA_DIR", &dir)
                .env("CDP_DATABASE_URL", &database_url)
                .env("CDP_INSTANCE", format!("bench-{i}"))
                .env("CDP_BATCH_INTERVAL", "0")
                .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
                .stdin(Stdio::null())
                .stdout(log.try_clone()?)
                .stderr(log)
                .kill_on_drop(true);
            let child = command
                .spawn()
                .with_context(|| format!("failed to start taskset … {} serve", cdp.display()))?;
            children.push(child);
            bases.push(format!("http://127.0.0.1:{port}"));
        }
        let mut started = Instances { children, bases };
        started.healthy().await?;
        Ok(started)
    }

    /// Waits until the engine's `parts` are spread over the instances — all owned, none holding more
    /// than its fair share (`/readyz`'s `partitions.owned`) — so that no part changes hands during the
    /// measured stream.
    async fn spread(&self, parts: usize) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let fair = parts.div_ceil(self.bases.len());
        let since = Instant::now();
        loop {
            let mut owned = Vec::with_capacity(self.bases.len());
            for base in &self.bases {
                let ready: serde_json::Value = client
                    .get(format!("{base}/readyz"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await?
                    .json()
                    .await?;
                owned.push(ready["partitions"]["owned"].as_array().map_or(0, Vec::len));
            }
            if owned.iter().sum::<usize>() == parts && owned.iter().all(|&n| n <= fair) {
                return Ok(());
            }
            ensure!(
                since.elapsed() < Duration::from_secs(60),
                "the engine's {parts} part(s) were not spread over the instances within a minute: \
                 each owned {owned:?}"
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits until every instance answers `/readyz`.
    async fn healthy(&mut self) -> anyhow::Result<()> {
        let client = reqwest::Client::new();
        let since = Instant::now();
        for (i, base) in self.bases.iter().enumerate() {
            loop {
                if let Some(status) = self.children[i].try_wait()? {
                    bail!("instance {i} exited at start: {status} (its log: cdp.log in its data directory)");
                }
                let ready = client
                    .get(format!("{base}/readyz"))
                    .timeout(Duration::from_secs(1))
                    .send()
                    .await
                    .is_ok_and(|r| r.status().is_success());
                if ready {
                    break;
                }
                ensure!(
                    since.elapsed() < Duration::from_secs(60),
                    "instance {i} was not ready within 60 s"
                );
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(())
    }

    async fn stop(mut self) {
        for child in &mut self.children {
            let _ = child.kill().await;
        }
    }
}

/// The workspace of the `i`-th plan: freshness's for the first, numbered after it for the others.
fn workspace(i: usize) -> String {
    if i == 0 {
        WORKSPACE.to_owned()
    } else {
        format!("{WORKSPACE}{i}")
    }
}

/// Runs the plans (one a workspace) against `n` instances, side by side: the stream's duration (the
/// longest plan's), and the p50 and p99 of all its crossings on NATS.
async fn measure(
    fresh: &FreshStore,
    cdp: &Path,
    n: usize,
    nats_url: &str,
    plans: &[Plan],
    stream: &Stream<'_>,
    settings: &Settings<'_>,
) -> anyhow::Result<(f64, Duration, Duration)> {
    let (route, pin) = (settings.route, settings.pin);
    // Each workspace with a write key and an admin token of its own, in a configuration file.
    let keys: Vec<(String, String, String)> = (0..plans.len())
        .map(|i| (workspace(i), random_secret("wk"), random_secret("tok")))
        .collect();
    let config = fresh.data_dir().join("cdp.toml");
    let toml: String = keys
        .iter()
        .map(|(w, key, token)| {
            format!(
                "[[workspace]]\nid = \"{w}\"\nwrite_keys = [\"{key}\"]\n\
                 [[workspace.token]]\ntoken = \"{token}\"\nscopes = [\"admin\"]\n\n"
            )
        })
        .collect();
    std::fs::write(&config, toml).context("failed to write the instances' configuration")?;
    let namespace: String = format!("bench_{}", random_secret("ns").to_lowercase())
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    let env = [
        ("CDP_CONFIG", config.display().to_string()),
        ("CDP_ENGINE_PARTITIONS", settings.partitions.to_string()),
        ("CDP_NATS_URL", nats_url.to_owned()),
        ("CDP_NATS_NAMESPACE", namespace.clone()),
    ];
    let nats = async_nats::connect(nats_url)
        .await
        .with_context(|| format!("failed to connect to NATS at {nats_url}"))?;
    let store = fresh.open().await?;
    let instances = Instances::start(cdp, n, pin, settings.cpu_quota, fresh, &env).await?;
    instances.spread(settings.partitions as usize).await?;
    let outcome = async {
        let bases = instances.bases.clone();
        let workspaces: Vec<String> = keys.iter().map(|(w, _, _)| w.clone()).collect();
        let mut history = 0;
        for (plan, (_, key, _)) in plans.iter().zip(&keys) {
            send_all(
                &format!("{}/v1/batch", bases[0]),
                key,
                std::sync::Arc::new(plan.history.bodies()),
                stream.clients,
            )
            .await
            .context("sending the history failed")?;
            history += plan.history.events;
        }
        resolved(&store, &workspaces, history as i64).await?;

        let subjects = format!("{namespace}.cdp.out.*.segment.>");
        let mut listeners: JoinSet<anyhow::Result<()>> = JoinSet::new();
        let inbox = listen_nats(&mut listeners, &nats, &subjects).await?;

        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(stream.clients)
            .timeout(Duration::from_secs(120))
            .build()
            .context("failed to build the HTTP client")?;
        for (_, _, token) in &keys {
            define(&client, &bases[0], token, SEGMENT, &definition()).await?;
        }
        ensure!(
            lock(&inbox).is_empty(),
            "segment messages were published during the backfill, though nobody had reached the threshold"
        );
        let targets = match route {
            Route::All => bases.clone(),
            Route::Standby => standbys(&client, &bases).await?,
        };
        let sent = futures::future::try_join_all(plans.iter().zip(&keys).map(
            |(plan, (_, key, _))| send_paced(&client, &targets, key, plan, stream),
        ))
        .await?;
        let took = sent.iter().map(|(took, _)| *took).max().unwrap_or_default();
        let streamed: usize = plans.iter().map(|p| p.stream_events).sum();
        // With each workspace's segment definition: an operator command in the log.
        let total = history + streamed + plans.len();
        resolved(&store, &workspaces, total as i64).await?;
        let crossers: usize = plans.iter().map(|p| p.crossers).sum();
        arrived("NATS", &inbox, crossers).await?;
        // Messages that should not come: a few publisher polls more.
        tokio::time::sleep(Duration::from_millis(500)).await;
        listeners.abort_all();
        let mut answered_at = std::collections::HashMap::new();
        for (plan, ((_, _, token), (_, answered))) in plans.iter().zip(keys.iter().zip(&sent)) {
            holds_the_crossers(&client, &bases[0], token, plan).await?;
            answered_at.extend(plan.answered_at(answered));
        }
        let measured = latencies("NATS", &inbox, &answered_at)?;
        let q = |q| quantile(&measured.latencies, q).unwrap_or_default();
        Ok((took.as_secs_f64(), q(0.50), q(0.99)))
    }
    .await;
    instances.stop().await;
    let js = async_nats::jetstream::new(nats);
    for stream in ["CDP_OUT", "CDP_INGEST"] {
        let _ = js.delete_stream(format!("{stream}_{namespace}")).await;
    }
    drop(store);
    outcome
}

/// The instances of `bases` that do not run the engine (all of them when only one instance runs), by
/// their `/readyz`.
async fn standbys(client: &reqwest::Client, bases: &[String]) -> anyhow::Result<Vec<String>> {
    if bases.len() < 2 {
        return Ok(bases.to_vec());
    }
    let mut standing_by = Vec::new();
    for base in bases {
        let ready: serde_json::Value = client
            .get(format!("{base}/readyz"))
            .send()
            .await?
            .json()
            .await?;
        let runs_engine = ready["partitions"]["owned"]
            .as_array()
            .is_some_and(|owned| !owned.is_empty());
        if !runs_engine {
            standing_by.push(base.clone());
        }
    }
    ensure!(
        standing_by.len() < bases.len(),
        "no instance runs the engine"
    );
    Ok(standing_by)
}

/// Waits until `expected` events of the workspaces are stored and the resolver (whichever instances run
/// its parts) has applied the whole log; fails when its checkpoint stays still for [`STALLED`].
async fn resolved(store: &Store, workspaces: &[String], expected: i64) -> anyhow::Result<()> {
    let mut last = None;
    let mut moved = Instant::now();
    loop {
        let mut stored = 0;
        for w in workspaces {
            stored += store.count_events(w).await?;
        }
        let at = cdp_projections::runner::checkpoint(store, cdp_projections::runner::RESOLVER)
            .await
            .context("failed to read the resolver's checkpoint")?;
        let behind = !store.read_after(at, 1).await?.is_empty();
        if stored >= expected && !behind {
            ensure!(
                stored == expected,
                "{expected} events were acknowledged but {stored} are stored"
            );
            return Ok(());
        }
        if last != Some(at) {
            last = Some(at);
            moved = Instant::now();
        } else if moved.elapsed() > STALLED {
            bail!("the resolver did not move for {STALLED:?} (at {at:?}, {stored} events stored)");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A CPU cgroup of the bench's own for one instance, limited to a share of one core (cgroup v1's
/// `cpu` controller or v2's `cpu.max`).
struct CpuCgroup;

impl CpuCgroup {
    /// The cgroup of instance `i` made (or reused) with `share` of a core every 10 ms: the path of
    /// its `cgroup.procs`, which a process joins by writing its pid there.
    fn create(i: usize, share: f64) -> anyhow::Result<PathBuf> {
        ensure!(
            share > 0.0 && share <= 1.0,
            "--cpu-quota must be above 0 and at most 1 (a share of one core)"
        );
        // A short period: a throttled instance waits at most this long for its next share (a long
        // one would add its wait to the latency measured).
        const PERIOD_US: u64 = 10_000;
        let quota_us = ((share * PERIOD_US as f64).round() as u64).max(1_000);
        let v1 = Path::new("/sys/fs/cgroup/cpu");
        let name = format!("cdp-bench-instance-{i}");
        let dir = if v1.join("cpu.cfs_quota_us").is_file() {
            let dir = v1.join(&name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cpu.cfs_period_us"), PERIOD_US.to_string())?;
            std::fs::write(dir.join("cpu.cfs_quota_us"), quota_us.to_string())?;
            dir
        } else {
            let dir = Path::new("/sys/fs/cgroup").join(&name);
            std::fs::create_dir_all(&dir)?;
            std::fs::write(dir.join("cpu.max"), format!("{quota_us} {PERIOD_US}"))?;
            dir
        };
        Ok(dir.join("cgroup.procs"))
    }
}
