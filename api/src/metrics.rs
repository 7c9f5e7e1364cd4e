//! Prometheus metrics: named counters and histograms kept in atomics, rendered as text by `/metrics`.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Upper bounds (seconds) of the append-latency histogram.
const LATENCY_BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
];

/// A Prometheus histogram with fixed buckets.
#[derive(Debug, Default)]
pub struct Histogram {
    buckets: [AtomicU64; LATENCY_BUCKETS.len()],
    count: AtomicU64,
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            if secs <= *bound {
                bucket.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.count.fetch_add(1, Ordering::Relaxed);
        self.sum_micros
            .fetch_add(d.as_micros() as u64, Ordering::Relaxed);
    }

    fn render(&self, out: &mut String, name: &str, help: &str) {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} histogram");
        for (bound, bucket) in LATENCY_BUCKETS.iter().zip(&self.buckets) {
            let _ = writeln!(
                out,
                "{name}_bucket{{le=\"{bound}\"}} {}",
                bucket.load(Ordering::Relaxed)
            );
        }
        let count = self.count.load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
        let sum = self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6;
        let _ = writeln!(out, "{name}_sum {sum}\n{name}_count {count}");
    }
}

/// Counters per ingestion source.
#[derive(Debug, Default)]
pub struct SourceCounters {
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
}

/// Values of accepted messages dropped as identifiers, by the finding's code.
#[derive(Debug, Default)]
pub struct FindingCounters(std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>);

impl FindingCounters {
    pub fn count(&self, code: &'static str) {
        let mut counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        *counts.entry(code).or_default() += 1;
    }

    fn rows(&self) -> Vec<(String, u64)> {
        let counts = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        counts
            .iter()
            .map(|(code, n)| (format!("{{code=\"{code}\"}}"), *n))
            .collect()
    }
}

#[derive(Debug, Default)]
pub struct Metrics {
    pub http: SourceCounters,
    pub nats: SourceCounters,
    pub append_latency: Histogram,
    /// Data-quality findings recorded since the start.
    pub findings: FindingCounters,
}

/// What one projection runner reports.
#[derive(Debug, Default)]
pub struct ProjectionGauges {
    pub name: &'static str,
    pub applied: u64,
    pub lag_seconds: f64,
    pub errors: u64,
}

/// Values owned elsewhere that `/metrics` reports.
#[derive(Debug, Default)]
pub struct Gauges {
    pub stored: u64,
    pub duplicates: u64,
    pub commits: u64,
    pub projections: Vec<ProjectionGauges>,
    /// Seconds the database was out of reach since the start (`outage::Outage`), and how many times.
    pub database_unavailable_seconds: f64,
    pub database_outages: u64,
    pub database_available: bool,
    /// The audience index's background builder (`cdp_projections::audience::Audiences::status`).
    pub audience: cdp_projections::audience::BuilderStatus,
    /// Profile views answered from memory and from the database (`ViewCache::hits_and_misses`).
    pub profile_views: (u64, u64),
    /// This instance's name and how many of the engine's partitions it runs now.
    pub instance: String,
    pub partitions_owned: u64,
}

impl Metrics {
    pub fn render(&self, g: &Gauges) -> String {
        let mut out = String::with_capacity(2048);
        let counter = |out: &mut String, name: &str, help: &str, rows: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} counter");
            for (labels, v) in rows {
                let _ = writeln!(out, "{name}{labels} {v}");
            }
        };
        let load = |c: &AtomicU64| c.load(Ordering::Relaxed);
        counter(
            &mut out,
            "cdp_messages_accepted_total",
            "Messages that passed validation and were committed (duplicates included).",
            &[
                ("{source=\"http\"}", load(&self.http.accepted)),
                ("{source=\"nats\"}", load(&self.nats.accepted)),
            ],
        );
        counter(
            &mut out,
            "cdp_messages_rejected_total",
            "Messages refused and quarantined.",
            &[
                ("{source=\"http\"}", load(&self.http.rejected)),
                ("{source=\"nats\"}", load(&self.nats.rejected)),
            ],
        );
        let findings = self.findings.rows();
        counter(
            &mut out,
            "cdp_identifiers_dropped_total",
            "Values of accepted messages kept but not used as identifiers (GET /v1/quality), by reason.",
            &labelled(&findings),
        );
        counter(
            &mut out,
            "cdp_events_ingested_total",
            "Events new to the log.",
            &[("", g.stored)],
        );
        counter(
            &mut out,
            "cdp_events_duplicate_total",
            "Messages whose messageId was already in the log.",
            &[("", g.duplicates)],
        );
        counter(
            &mut out,
            "cdp_append_commits_total",
            "Group-commit transactions.",
            &[("", g.commits)],
        );
        let per_projection = |f: fn(&ProjectionGauges) -> u64| -> Vec<(String, u64)> {
            g.projections
                .iter()
                .map(|p| (format!("{{projection=\"{}\"}}", p.name), f(p)))
                .collect()
        };
        let applied = per_projection(|p| p.applied);
        let errors = per_projection(|p| p.errors);
        counter(
            &mut out,
            "cdp_projection_events_applied_total",
            "Events applied by each projection.",
            &labelled(&applied),
        );
        counter(
            &mut out,
            "cdp_projection_errors_total",
            "Failed projection steps (retried).",
            &labelled(&errors),
        );
        let _ = writeln!(
            out,
            "# HELP cdp_projection_lag_seconds How far each projection is behind the log.\n\
             # TYPE cdp_projection_lag_seconds gauge"
        );
        for p in &g.projections {
            let _ = writeln!(
                out,
                "cdp_projection_lag_seconds{{projection=\"{}\"}} {}",
                p.name, p.lag_seconds
            );
        }
        let _ = writeln!(
            out,
            "# HELP cdp_database_unavailable_seconds_total Seconds the database was out of reach (requests answered 503).\n\
             # TYPE cdp_database_unavailable_seconds_total counter\n\
             cdp_database_unavailable_seconds_total {}\n\
             # HELP cdp_database_outages_total Times the database went out of reach.\n\
             # TYPE cdp_database_outages_total counter\n\
             cdp_database_outages_total {}\n\
             # HELP cdp_database_available Whether the database answers (0 during an outage).\n\
             # TYPE cdp_database_available gauge\n\
             cdp_database_available {}",
            g.database_unavailable_seconds,
            g.database_outages,
            u8::from(g.database_available)
        );
        counter(
            &mut out,
            "cdp_profile_views_total",
            "Profile views read, from memory (hit) or from the database (miss).",
            &[
                ("{from=\"memory\"}", g.profile_views.0),
                ("{from=\"database\"}", g.profile_views.1),
            ],
        );
        let _ = writeln!(
            out,
            "# HELP cdp_partitions_owned The engine's partitions whose leases this instance holds (it runs them).\n\
             # TYPE cdp_partitions_owned gauge\n\
             cdp_partitions_owned{{instance=\"{}\"}} {}",
            g.instance.replace('\\', "\\\\").replace('"', "\\\""),
            g.partitions_owned
        );
        render_audience(&mut out, &g.audience);
        self.append_latency.render(
            &mut out,
            "cdp_append_seconds",
            "Time from a batch's validation to its commit.",
        );
        out
    }
}

/// The audience indexes: whether every workspace's is built, builds done, and per workspace its
/// profiles and how long its last build took.
fn render_audience(out: &mut String, a: &cdp_projections::audience::BuilderStatus) {
    let ready = a.started && a.building.is_none();
    let _ = writeln!(
        out,
        "# HELP cdp_audience_index_ready Whether every workspace's audience index is built and none is being read whole (0: previews answer from the exact path).\n\
         # TYPE cdp_audience_index_ready gauge\n\
         cdp_audience_index_ready {}\n\
         # HELP cdp_audience_index_builds_total Audience indexes read whole since the start.\n\
         # TYPE cdp_audience_index_builds_total counter\n\
         cdp_audience_index_builds_total {}\n\
         # HELP cdp_audience_index_profiles Live profiles in each workspace's audience index when it was last built.\n\
         # TYPE cdp_audience_index_profiles gauge",
        u8::from(ready),
        a.builds
    );
    let label = |w: &str| w.replace('\\', "\\\\").replace('"', "\\\"");
    for (w, b) in &a.built {
        let _ = writeln!(
            out,
            "cdp_audience_index_profiles{{workspace=\"{}\"}} {}",
            label(w),
            b.profiles
        );
    }
    let _ = writeln!(
        out,
        "# HELP cdp_audience_index_build_seconds How long each workspace's last audience index build took.\n\
         # TYPE cdp_audience_index_build_seconds gauge"
    );
    for (w, b) in &a.built {
        let _ = writeln!(
            out,
            "cdp_audience_index_build_seconds{{workspace=\"{}\"}} {}",
            label(w),
            b.seconds
        );
    }
}

fn labelled(rows: &[(String, u64)]) -> Vec<(&str, u64)> {
    rows.iter().map(|(l, n)| (l.as_str(), *n)).collect()
}
