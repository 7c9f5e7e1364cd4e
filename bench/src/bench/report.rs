//! The benchmark's output: one table row per scenario and backend, a one-line summary each; durations
//! in milliseconds and nearest-rank quantiles.

use std::time::Duration;

use crate::numbers::thousands;

/// One line of the table. A scenario without latencies or without a physical reference leaves those
/// columns empty.
#[derive(Debug, Clone)]
pub struct Row {
    pub scenario: &'static str,
    pub backend: &'static str,
    /// What the scenario processed: events or requests.
    pub count: u64,
    /// What `count` counts ("events", "requests").
    pub unit: &'static str,
    pub seconds: f64,
    /// `count / seconds`.
    pub rate: f64,
    pub p50: Option<Duration>,
    pub p99: Option<Duration>,
    /// The same work done physically (straight into the store) in the same run, per second.
    pub reference_rate: Option<f64>,
}

impl Row {
    pub fn ratio(&self) -> Option<f64> {
        self.reference_rate
            .filter(|r| *r > 0.0)
            .map(|r| self.rate / r)
    }
}

/// What a scenario hands back: its rows (one per figure) and its one-line summary.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub rows: Vec<Row>,
    pub summary: String,
}

/// Renders the table, columns aligned.
pub fn table(rows: &[Row]) -> String {
    let header = [
        "scenario",
        "backend",
        "count",
        "unit",
        "seconds",
        "per s",
        "p50 ms",
        "p99 ms",
        "reference per s",
        "ratio",
    ];
    let dash = || "—".to_owned();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            vec![
                r.scenario.to_owned(),
                r.backend.to_owned(),
                thousands(r.count),
                r.unit.to_owned(),
                format!("{:.2}", r.seconds),
                thousands(r.rate.round() as u64),
                r.p50.map_or_else(dash, ms),
                r.p99.map_or_else(dash, ms),
                r.reference_rate
                    .map_or_else(dash, |v| thousands(v.round() as u64)),
                r.ratio().map_or_else(dash, |v| format!("{v:.2}")),
            ]
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in &cells {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let line = |values: Vec<String>| -> String {
        let parts: Vec<String> = values
            .iter()
            .zip(&widths)
            .enumerate()
            .map(|(i, (v, w))| {
                let pad = w.saturating_sub(v.chars().count());
                // Text left, numbers right.
                if i < 2 || i == 3 {
                    format!("{v}{}", " ".repeat(pad))
                } else {
                    format!("{}{v}", " ".repeat(pad))
                }
            })
            .collect();
        format!("| {} |", parts.join(" | "))
    };
    let mut out = String::new();
    out.push_str(&line(header.iter().map(|h| (*h).to_owned()).collect()));
    out.push('\n');
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    out.push_str(&format!("|-{}-|\n", rule.join("-|-")));
    for row in cells {
        out.push_str(&line(row));
        out.push('\n');
    }
    out
}

/// Milliseconds with two decimals.
pub fn ms(d: Duration) -> String {
    format!("{:.2}", d.as_secs_f64() * 1000.0)
}

/// The `q` quantile (0..=1) of sorted durations, nearest rank.
pub fn quantile(sorted: &[Duration], q: f64) -> Option<Duration> {
    if sorted.is_empty() {
        return None;
    }
    let rank = ((sorted.len() as f64) * q).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_use_the_nearest_rank() {
        let v: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&v, 0.5), Some(Duration::from_millis(50)));
        assert_eq!(quantile(&v, 0.99), Some(Duration::from_millis(99)));
        assert_eq!(quantile(&v, 1.0), Some(Duration::from_millis(100)));
        assert_eq!(quantile(&[], 0.5), None);
    }
}
