//! The OneID part of `cdp demo`: why the featured customer is one profile (links and merges with the
//! events that caused them), and an operator split of one of its identifiers followed by the merge back,
//! checked lossless against the profile before the split.

use super::*;

/// OneID: why the profile is one customer (its links and merges, each with the event that caused it),
/// and the conflicts recorded in the workspace.
pub(super) async fn show_identity(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    profile: &str,
    messages: &BTreeMap<String, Value>,
) -> anyhow::Result<()> {
    let why = get(
        http,
        base,
        token,
        &format!("/v1/profiles/{profile}/identity"),
        &[],
    )
    .await?;
    println!();
    println!("OneID      why this is one customer — GET /v1/profiles/{profile}/identity");
    for id in why["identifiers"].as_array().into_iter().flatten().take(8) {
        let by = match id["linked_by"]["caused_by"].as_str() {
            Some(cause) => format!("linked by {}", caused_by(cause, messages)),
            None => "no link decision".to_owned(),
        };
        println!(
            "  holds    {:<13} {:<28} {by}",
            plain(&id["type"]),
            clip(&plain(&id["value"]), 28),
        );
    }
    for merge in why["merges"].as_array().into_iter().flatten().take(6) {
        println!("  {}", decision(merge, messages));
    }
    let conflicts = get(
        http,
        base,
        token,
        "/v1/identity/conflicts",
        &[("limit", "1000")],
    )
    .await?;
    let items = conflicts["items"].as_array().cloned().unwrap_or_default();
    println!(
        "  workspace-wide: {} conflicts recorded instead of guessed — GET /v1/identity/conflicts",
        items.len()
    );
    if let Some(first) = items.first() {
        println!(
            "  e.g. {} ({}) caused by message {}",
            plain(&first["kind"]),
            plain(&first["reason"]),
            plain(&first["caused_by"])
        );
    }
    Ok(())
}

/// The identifiers of the profile an operator would split off, and why: one device's or channel's ids
/// (the online shop's cookie id, a device id, a mini-program's ids), never the member's own user id,
/// email or phone. `None` when the profile holds nothing else.
pub(super) fn split_choice(view: &Value) -> Option<(Vec<Value>, String)> {
    let ids: Vec<&Value> = view["identifiers"].as_array()?.iter().collect();
    let of_type = |t: &str| -> Vec<Value> {
        ids.iter()
            .filter(|i| i["type"] == t)
            .map(|i| json!({"type": i["type"], "value": i["value"]}))
            .collect()
    };
    let chosen = ["anonymous_id", "device_id"]
        .into_iter()
        .map(|t| t.to_owned())
        .chain(
            ids.iter()
                .filter_map(|i| i["type"].as_str())
                .filter(|t| !["user_id", "email", "phone"].contains(t))
                .map(str::to_owned),
        )
        .find(|t| !of_type(t).is_empty())?;
    let reason = match chosen.as_str() {
        "anonymous_id" => {
            "support ticket: the online shop's cookie is a shared family computer's, \
                           its browsing and carts are not only this member's"
                .to_owned()
        }
        other => {
            format!("support ticket: the {other} is a shared device's, not only this member's")
        }
    };
    Some((of_type(&chosen), reason))
}

/// Splits a channel's identifiers off the featured profile and merges them back, checking that nothing
/// is lost or counted twice on the way.
pub(super) async fn split_and_merge(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    view: &Value,
    timeline_before: &[Value],
    messages: &BTreeMap<String, Value>,
) -> anyhow::Result<()> {
    let profile = view["profile_id"].as_str().unwrap_or_default();
    let total = total_of(view);
    println!();
    let Some((moved, reason)) = split_choice(view) else {
        println!(
            "Split      skipped: profile {profile} holds only the member's own user_id, email and phone"
        );
        return Ok(());
    };
    let names: Vec<String> = moved
        .iter()
        .map(|i| format!("{} {}", plain(&i["type"]), plain(&i["value"])))
        .collect();
    println!(
        "Split      an operator takes {} off the profile — POST /v1/identity/split",
        names.join(", ")
    );
    println!("  reason   {reason}");
    let answer = post(
        http,
        base,
        token,
        "/v1/identity/split",
        &json!({"profile_id": profile, "identifiers": moved, "reason": reason}),
    )
    .await?;
    let new = answer["profile_id"]
        .as_str()
        .context("the split answered no profile_id")?;
    let from = answer["from"].as_str().unwrap_or(profile);
    ensure!(
        from == profile,
        "the split was applied to {from}, not to {profile}"
    );
    let stays = get(http, base, token, &format!("/v1/profiles/{from}"), &[]).await?;
    let leaves = get(http, base, token, &format!("/v1/profiles/{new}"), &[]).await?;
    let (kept, left) = (total_of(&stays), total_of(&leaves));
    println!("  new      profile {new}");
    println!(
        "  stays    {kept:>4} events  {}",
        counts(&stays["event_counts"]["by_channel"])
    );
    println!(
        "  leaves   {left:>4} events  {}",
        counts(&leaves["event_counts"]["by_channel"])
    );
    ensure!(
        kept + left == total,
        "after the split the two profiles count {kept} + {left} events, not the {total} of before"
    );
    let kept_events = timeline(http, base, token, from).await?;
    let left_events = timeline(http, base, token, new).await?;
    ensure!(
        kept_events.len() as u64 == kept && left_events.len() as u64 == left,
        "the timelines hold {} and {} events, the profiles count {kept} and {left}",
        kept_events.len(),
        left_events.len()
    );
    let before_ids = message_ids(timeline_before);
    let (kept_ids, left_ids) = (message_ids(&kept_events), message_ids(&left_events));
    ensure!(
        kept_ids.is_disjoint(&left_ids)
            && kept_ids.union(&left_ids).cloned().collect::<BTreeSet<_>>() == before_ids,
        "the two timelines are not a partition of the profile's {} events",
        before_ids.len()
    );
    for id in &moved {
        let found = lookup(http, base, token, &plain(&id["type"]), &plain(&id["value"])).await?;
        ensure!(
            found["profile_id"] == new,
            "{} {} is still found on {}, not on the new profile",
            id["type"],
            id["value"],
            found["profile_id"]
        );
        println!(
            "  lookup   {} {} → {new}",
            plain(&id["type"]),
            plain(&id["value"])
        );
    }
    println!(
        "  checked  {kept} + {left} = {total} events as before; each timeline holds exactly its total, \
         together the same messages"
    );

    println!();
    println!("Merge      the split was a mistake: the operator merges them back — POST /v1/identity/merge");
    let answer = post(
        http,
        base,
        token,
        "/v1/identity/merge",
        &json!({
            "profile_ids": [from, new],
            "reason": "the split was a mistake: the customer confirmed the browsing was theirs",
        }),
    )
    .await?;
    let survivor = answer["profile_id"]
        .as_str()
        .context("the merge answered no profile_id")?;
    let merged = get(http, base, token, &format!("/v1/profiles/{survivor}"), &[]).await?;
    let absorbed: Vec<String> = answer["merged"]
        .as_array()
        .into_iter()
        .flatten()
        .map(plain)
        .collect();
    println!(
        "  merged   {} into {survivor}: {} events  {}",
        absorbed.join(", "),
        total_of(&merged),
        counts(&merged["event_counts"]["by_channel"])
    );
    ensure!(
        merged["event_counts"] == view["event_counts"],
        "after split and merge the profile counts {} instead of {}",
        merged["event_counts"],
        view["event_counts"]
    );
    ensure!(
        merged["traits"] == view["traits"],
        "after split and merge the traits are {} instead of {}",
        merged["traits"],
        view["traits"]
    );
    // The order of the identifiers is the order they were linked in, which the merge changes.
    ensure!(
        sorted_identifiers(&merged) == sorted_identifiers(view),
        "after split and merge the identifiers are {} instead of {}",
        merged["identifiers"],
        view["identifiers"]
    );
    let merged_events = timeline(http, base, token, survivor).await?;
    ensure!(
        message_ids(&merged_events) == before_ids,
        "after split and merge the timeline holds {} events, not the {} of before",
        merged_events.len(),
        before_ids.len()
    );
    println!(
        "  checked  event_counts, traits, identifiers and timeline equal the pre-split ones exactly: \
         split then merge is lossless"
    );
    let why = get(
        http,
        base,
        token,
        &format!("/v1/profiles/{survivor}/identity"),
        &[],
    )
    .await?;
    println!("  history  GET /v1/profiles/{survivor}/identity → merges:");
    let merges = why["merges"].as_array().cloned().unwrap_or_default();
    // The latest few: the split and the operator's merge come last.
    for merge in merges.iter().skip(merges.len().saturating_sub(6)) {
        println!("  {}", decision(merge, messages));
    }
    Ok(())
}

/// A merge or split decision in one line.
pub(super) fn decision(d: &Value, messages: &BTreeMap<String, Value>) -> String {
    let cause = caused_by(d["caused_by"].as_str().unwrap_or("?"), messages);
    let reason = match d["reason"].as_str() {
        Some(r) if !r.is_empty() => format!(" \"{}\"", clip(r, 60)),
        _ => String::new(),
    };
    match d["kind"].as_str() {
        Some("profiles_merged") => {
            let via = if d["via"].is_object() {
                format!(
                    " via {} {}",
                    plain(&d["via"]["type"]),
                    clip(&plain(&d["via"]["value"]), 28)
                )
            } else {
                String::new()
            };
            format!(
                "merged   {} into {}{via}{reason} — by {cause}",
                plain(&d["absorbed"]),
                plain(&d["survivor"])
            )
        }
        Some("profile_split") => {
            let ids: Vec<String> = d["identifiers"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|i| format!("{} {}", plain(&i["type"]), plain(&i["value"])))
                .collect();
            let apart = if d["keep_apart"] == true {
                ", kept apart"
            } else {
                ""
            };
            format!(
                "split    {} from {} into {}{apart}{reason} — by {cause}",
                ids.join(", "),
                plain(&d["from"]),
                plain(&d["into"])
            )
        }
        _ => format!("{}{reason} — by {cause}", plain(&d["kind"])),
    }
}

/// The event that caused a decision: the message as the profile's timeline shows it, or an operator
/// command.
pub(super) fn caused_by(message_id: &str, messages: &BTreeMap<String, Value>) -> String {
    if let Some(e) = messages.get(message_id) {
        let name = e["name"]
            .as_str()
            .map(|n| format!(" \"{n}\""))
            .unwrap_or_default();
        format!(
            "{}{name} from {} at {} ({message_id})",
            plain(&e["type"]),
            plain(&e["channel"]),
            minute(&e["timestamp"])
        )
    } else if message_id.starts_with("op_") {
        format!("operator command {message_id}")
    } else {
        format!("message {message_id}")
    }
}

/// The profile's identifiers with their first and last seen, in a fixed order.
pub(super) fn sorted_identifiers(view: &Value) -> Vec<String> {
    let mut ids: Vec<String> = view["identifiers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(Value::to_string)
        .collect();
    ids.sort();
    ids
}

pub(super) fn message_ids(events: &[Value]) -> BTreeSet<String> {
    events
        .iter()
        .filter_map(|e| e["message_id"].as_str().map(str::to_owned))
        .collect()
}

/// A profile's whole timeline, `GET /v1/profiles/{id}/events` paged to the end.
pub(super) async fn timeline(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    profile: &str,
) -> anyhow::Result<Vec<Value>> {
    let path = format!("/v1/profiles/{profile}/events");
    let mut items = Vec::new();
    let mut before: Option<i64> = None;
    loop {
        let cursor = before.map(|b| b.to_string());
        let mut query = vec![("limit", "1000")];
        if let Some(cursor) = &cursor {
            query.push(("before", cursor.as_str()));
        }
        let page = get(http, base, token, &path, &query).await?;
        items.extend(page["items"].as_array().cloned().unwrap_or_default());
        match page["next_before"].as_i64() {
            Some(next) => {
                ensure!(
                    before.is_none_or(|b| next < b),
                    "GET {path} does not move on: next_before {next} after {before:?}"
                );
                before = Some(next);
            }
            None => return Ok(items),
        }
    }
}

/// A successful operator command's answer; a refusal (409) or a pending one (202) is an error.
pub(super) async fn post(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    path: &str,
    body: &Value,
) -> anyhow::Result<Value> {
    let response = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(body)
        .send()
        .await
        .with_context(|| format!("POST {path} failed"))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .with_context(|| format!("the answer to POST {path} is not JSON"))?;
    ensure!(
        status == reqwest::StatusCode::OK && answer["status"] == "applied",
        "POST {path} answered {status}: {answer}"
    );
    Ok(answer)
}
