//! The demo's last step: one customer asks to be forgotten. Their profile is erased by email, every
//! identifier of theirs stops answering, their events stay in the log but can no longer be read, and a
//! rebuild of the whole model from the log does not bring them back — each checked, or the demo fails.

use std::time::Instant;

use anyhow::{ensure, Context};
use cdp_domain::store::Store;
use serde_json::Value;

use super::dataset::Dataset;
use super::{get, lookup, plain};
use crate::retail::Customer;

/// A customer other than the featured one (whose profile the demo points at afterwards), with a
/// profile of their own.
fn chosen(data: &Dataset) -> Option<usize> {
    (0..data.customers.len()).find(|&i| i != data.featured)
}

pub(super) async fn show_erasure(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    store: &Store,
    data: &Dataset,
) -> anyhow::Result<()> {
    let Some(index) = chosen(data) else {
        return Ok(());
    };
    let c = &data.customers[index];
    let before = lookup(http, base, token, "user_id", &c.user_id).await?;
    let profile = plain(&before["profile_id"]);
    let segments = get(
        http,
        base,
        token,
        &format!("/v1/profiles/{profile}/memberships"),
        &[],
    )
    .await?;
    println!();
    println!(
        "Erasure    {} ({}) asks to be forgotten — DELETE /v1/profiles/lookup?type=email&value=… (admin)",
        c.user_id, c.name
    );
    let names: Vec<String> = segments["segments"]
        .as_array()
        .map(|all| all.iter().map(|m| plain(&m["segment"])).collect())
        .unwrap_or_default();
    println!(
        "  before   {profile}: {} events, {} identifiers, in {}",
        before["event_counts"]["total"],
        before["identifiers"].as_array().map_or(0, Vec::len),
        if names.is_empty() {
            "no segment".to_owned()
        } else {
            names.join(", ")
        }
    );
    let started = Instant::now();
    let response = http
        .delete(format!("{base}/v1/profiles/lookup"))
        .bearer_auth(token)
        .query(&[("type", "email"), ("value", c.email.as_str())])
        .send()
        .await
        .context("DELETE /v1/profiles/lookup failed")?;
    let status = response.status();
    let report: Value = response.json().await.context("the erasure's answer")?;
    ensure!(
        status.is_success(),
        "the erasure answered {status}: {report}"
    );
    println!(
        "  erased   in {} ms: {} events unreadable (subject keys destroyed: {}), profiles {}, \
         segments left: {} (published as exits); recorded as erasure {} (no personal data)",
        started.elapsed().as_millis(),
        report["events"],
        report["keys_destroyed"],
        plain(&report["profiles"]),
        report["segments_left"],
        report["erasure"]
    );
    gone(http, base, token, c, &profile, "after the erasure").await?;
    println!("  after    user_id, email, phone, anonymous id and the profile id all answer 404");
    let started = Instant::now();
    let rebuilt = cdp_replay::rebuild::rebuild(store, &|_| {})
        .await
        .context("the rebuild failed")?;
    gone(http, base, token, c, &profile, "after a rebuild").await?;
    println!(
        "  rebuilt  the whole model from the log ({} events, {:.1} s, `cdp replay rebuild --all`): \
         still 404 — the log keeps the rows, sealed, and nothing can open them",
        rebuilt.applied,
        started.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Every identifier of `c` and the profile id answer 404.
async fn gone(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    c: &Customer,
    profile: &str,
    what: &str,
) -> anyhow::Result<()> {
    for (t, v) in [
        ("user_id", c.user_id.as_str()),
        ("email", c.email.as_str()),
        ("phone", c.phone.as_str()),
        ("anonymous_id", c.anonymous_id.as_str()),
    ] {
        let status = http
            .get(format!("{base}/v1/profiles/lookup"))
            .bearer_auth(token)
            .query(&[("type", t), ("value", v)])
            .send()
            .await?
            .status();
        ensure!(
            status == reqwest::StatusCode::NOT_FOUND,
            "{what}: {t} still answers {status}"
        );
    }
    let status = http
        .get(format!("{base}/v1/profiles/{profile}"))
        .bearer_auth(token)
        .send()
        .await?
        .status();
    ensure!(
        status == reqwest::StatusCode::NOT_FOUND,
        "{what}: the profile still answers {status}"
    );
    Ok(())
}
