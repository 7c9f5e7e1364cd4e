//! The tags part of `cdp demo`: the four tag families a brand defines on its customers — natural
//! attributes, product preference, consumption behaviour and RFM — defined after the history is ingested
//! (so every definition is backfilled over it), each shown with its population (profiles, spend) before
//! anyone uses it; the featured customer's computed traits and tags with a manual tag set by store staff;
//! and the numbers that can be, checked exactly against the data set.

use chrono::{DateTime, NaiveDate};

use super::*;

/// How long a definition's backfill may take.
const BACKFILL_DEADLINE: Duration = Duration::from_secs(180);
/// `spend_30d` at or above this (CNY) makes a big spender.
const BIG_SPENDER: i64 = 1000;
/// The cities Chinese retail calls first-tier.
const TIER1_CITIES: [&str; 4] = ["Shanghai", "Beijing", "Shenzhen", "Guangzhou"];
/// The spend levels of `spend_30d` in CNY: (value, from, below).
const SPEND_LEVELS: [(&str, i64, i64); 4] = [
    ("none", i64::MIN, 1),
    ("low", 1, 500),
    ("mid", 500, 2000),
    ("high", 2000, i64::MAX),
];
const MANUAL_TAG: &str = "preferred_store";

/// A computed trait or a tag to define: its name, a few words for people, and its definition.
struct Def {
    name: &'static str,
    about: &'static str,
    body: Value,
}

fn def(name: &'static str, about: &'static str, body: Value) -> Def {
    Def { name, about, body }
}

/// One customer's orders in the data set, as the platform should have them.
struct Order {
    at: DateTime<Utc>,
    cents: i64,
    /// The category of each line.
    categories: Vec<String>,
    store: Option<String>,
}

/// What the data set says a customer's computed traits are at a given day.
struct Expected {
    spend_30d: i64,
    orders_90d: u64,
    in_rfm: bool,
    spend_all: i64,
    categories: BTreeSet<String>,
    favourite: Option<String>,
}

impl Expected {
    fn of(orders: &[Order], today: NaiveDate) -> Expected {
        // A window of N days holds the UTC days today − (N − 1) … today.
        let within = |o: &Order, days: i64| (today - o.at.date_naive()).num_days() < days;
        let mut per_category: BTreeMap<&str, usize> = BTreeMap::new();
        for c in orders.iter().flat_map(|o| &o.categories) {
            *per_category.entry(c).or_default() += 1;
        }
        // The most frequent; ties to the smallest (BTreeMap order, and max_by_key keeps the last max).
        let favourite = per_category
            .iter()
            .rev()
            .max_by_key(|(_, n)| **n)
            .map(|(c, _)| (*c).to_owned());
        Expected {
            spend_30d: orders
                .iter()
                .filter(|o| within(o, 30))
                .map(|o| o.cents)
                .sum(),
            orders_90d: orders.iter().filter(|o| within(o, 90)).count() as u64,
            in_rfm: orders.iter().any(|o| within(o, 365)),
            spend_all: orders.iter().map(|o| o.cents).sum(),
            categories: per_category.keys().map(|c| (*c).to_owned()).collect(),
            favourite,
        }
    }
}

/// Every customer's valid `Order Completed` messages, by customer index.
fn orders_of(data: &Dataset) -> Vec<Vec<Order>> {
    let index: BTreeMap<&str, usize> = data
        .customers
        .iter()
        .enumerate()
        .map(|(i, c)| (c.user_id.as_str(), i))
        .collect();
    let mut orders: Vec<Vec<Order>> = data.customers.iter().map(|_| Vec::new()).collect();
    for m in &data.messages {
        let id = m["messageId"].as_str().unwrap_or_default();
        if m["type"] != "track" || m["event"] != "Order Completed" || data.invalid_ids.contains(id)
        {
            continue;
        }
        let (Some(&i), Some(at)) = (
            m["userId"].as_str().and_then(|u| index.get(u)),
            m["timestamp"]
                .as_str()
                .and_then(|t| DateTime::parse_from_rfc3339(t).ok()),
        ) else {
            continue;
        };
        let lines = m["properties"]["products"].as_array().cloned();
        orders[i].push(Order {
            at: at.with_timezone(&Utc),
            cents: cents(&m["properties"]["total"]),
            categories: lines
                .into_iter()
                .flatten()
                .filter_map(|l| l["category"].as_str().map(str::to_owned))
                .collect(),
            store: m["properties"]["store_id"].as_str().map(str::to_owned),
        });
    }
    orders
}

/// CNY as a JSON number → cents.
fn cents(v: &Value) -> i64 {
    (v.as_f64().unwrap_or(0.0) * 100.0).round() as i64
}

fn cny(cents: i64) -> String {
    let sign = if cents < 0 { "-" } else { "" };
    format!("{sign}{}", thousands(((cents.abs() + 50) / 100) as u64))
}

fn natural_attributes() -> (Vec<Def>, Vec<Def>) {
    let tags = vec![
        def(
            "city_tier1",
            "city in Shanghai, Beijing, Shenzhen, Guangzhou",
            json!({"type": "rule", "value": "tier-1",
                   "condition": {"trait": "city", "op": "in", "value": TIER1_CITIES}}),
        ),
        def(
            "city_new_tier1",
            "city in Hangzhou, Chengdu, Nanjing, Wuhan",
            json!({"type": "rule", "value": "new tier-1",
                   "condition": {"trait": "city", "op": "in",
                                 "value": ["Hangzhou", "Chengdu", "Nanjing", "Wuhan"]}}),
        ),
        def(
            "premium_member",
            "member_tier in gold, platinum",
            json!({"type": "rule", "value": "gold+",
                   "condition": {"trait": "member_tier", "op": "in", "value": ["gold", "platinum"]}}),
        ),
        def(
            "shanghai_premium",
            "city eq Shanghai and tag premium_member is set",
            json!({"type": "rule", "condition": {"all": [
                {"trait": "city", "op": "eq", "value": "Shanghai"},
                {"tag": "premium_member", "op": "is_set"},
            ]}}),
        ),
        def(
            MANUAL_TAG,
            "manual: set by store staff",
            json!({"type": "manual"}),
        ),
    ];
    (Vec::new(), tags)
}

fn product_preference() -> (Vec<Def>, Vec<Def>) {
    let order = |function: &str, extra: Value| {
        let mut body = json!({"event": "Order Completed", "function": function,
                              "property": "properties.products[].category"});
        if let (Value::Object(b), Value::Object(e)) = (&mut body, extra) {
            b.extend(e);
        }
        body
    };
    let traits = vec![
        def(
            "favourite_category",
            "most_frequent properties.products[].category",
            order("most_frequent", json!({})),
        ),
        def(
            "categories_bought",
            "unique_list properties.products[].category",
            order("unique_list", json!({})),
        ),
        def(
            "teaware_items_90d",
            "sum price × quantity of the teaware lines, 90d",
            json!({"event": "Order Completed", "function": "sum",
                   "property": "properties.products[].price * properties.products[].quantity",
                   "where": [{"property": "properties.products[].category", "op": "eq", "value": "teaware"}],
                   "window": "90d"}),
        ),
    ];
    let tags = vec![
        def(
            "tea_lover",
            "favourite_category eq tea",
            json!({"type": "rule", "value": "tea",
                   "condition": {"computed": "favourite_category", "op": "eq", "value": "tea"}}),
        ),
        def(
            "likes_gifts",
            "categories_bought contains_any gifts",
            json!({"type": "rule", "condition":
                   {"computed": "categories_bought", "op": "contains_any", "value": ["gifts"]}}),
        ),
        def(
            "tea_and_teaware",
            "categories_bought contains_all tea, teaware",
            json!({"type": "rule", "condition":
                   {"computed": "categories_bought", "op": "contains_all", "value": ["tea", "teaware"]}}),
        ),
        def(
            "teaware_prospect",
            "bought tea, never teaware (cross-sell)",
            json!({"type": "rule", "condition": {"all": [
                {"computed": "categories_bought", "op": "contains_any", "value": ["tea"]},
                {"computed": "categories_bought", "op": "contains_none", "value": ["teaware"]},
            ]}}),
        ),
    ];
    (traits, tags)
}

fn consumption_behaviour() -> (Vec<Def>, Vec<Def>) {
    let traits = vec![
        def(
            "spend_30d",
            "sum properties.total, 30d",
            json!({"event": "Order Completed", "function": "sum",
                   "property": "properties.total", "window": "30d"}),
        ),
        def(
            "orders_90d",
            "count Order Completed, 90d",
            json!({"event": "Order Completed", "function": "count", "window": "90d"}),
        ),
        def(
            "buying_days_365d",
            "days_active Order Completed, 365d",
            json!({"event": "Order Completed", "function": "days_active", "window": "365d"}),
        ),
        def(
            "average_order",
            "average properties.total",
            json!({"event": "Order Completed", "function": "average", "property": "properties.total"}),
        ),
    ];
    let buckets: Vec<Value> = SPEND_LEVELS
        .iter()
        .map(|(value, from, below)| {
            let mut b = json!({"value": value});
            if *from != i64::MIN {
                b["gte"] = json!(from);
            }
            if *below != i64::MAX {
                b["lt"] = json!(below);
            }
            b
        })
        .collect();
    let tags = vec![
        def(
            "spend_level",
            "value of spend_30d: none <1 ≤ low <500 ≤ mid <2000 ≤ high",
            json!({"type": "value", "trait": "spend_30d", "buckets": buckets}),
        ),
        def(
            "big_spender",
            "spend_30d gte 1000",
            json!({"type": "rule", "condition":
                   {"computed": "spend_30d", "op": "gte", "value": BIG_SPENDER}}),
        ),
        def(
            "frequent_buyer",
            "orders_90d gte 2",
            json!({"type": "rule", "condition":
                   {"computed": "orders_90d", "op": "gte", "value": 2}}),
        ),
    ];
    (traits, tags)
}

fn rfm() -> (Vec<Def>, Vec<Def>) {
    let tags = vec![def(
        "rfm",
        "quintile scores of Order Completed, 365d",
        json!({"type": "rfm", "event": "Order Completed", "monetary": "properties.total",
               "window": "365d", "scoring": "quantiles"}),
    )];
    (Vec::new(), tags)
}

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
        status == reqwest::StatusCode::OK,
        "PUT {path} answered {status}: {answer}"
    );
    Ok(answer)
}

/// Defines every definition of `defs` under `/v1/{kind}/`, then waits until each is backfilled; returns
/// `GET /v1/{kind}/{name}` of each once ready, and how long the backfill took.
async fn define(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    kind: &str,
    defs: &[Def],
) -> anyhow::Result<(Vec<Value>, Duration)> {
    let started = Instant::now();
    for d in defs {
        put(
            http,
            base,
            token,
            &format!("/v1/{kind}/{}", d.name),
            &d.body,
        )
        .await?;
    }
    let mut ready = Vec::new();
    for d in defs {
        let path = format!("/v1/{kind}/{}", d.name);
        loop {
            let body = get(http, base, token, &path, &[]).await?;
            if body["status"] == "ready" {
                ready.push(body);
                break;
            }
            if started.elapsed() > BACKFILL_DEADLINE {
                bail!(
                    "{kind} {} was not backfilled after {} s: {body}",
                    d.name,
                    BACKFILL_DEADLINE.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
    Ok((ready, started.elapsed()))
}

/// Defines one family and prints its population table; returns each tag's `GET /v1/tags/{name}`.
async fn family(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    title: &str,
    (traits, tags): (Vec<Def>, Vec<Def>),
) -> anyhow::Result<BTreeMap<String, Value>> {
    println!();
    println!("Tags       {title}");
    if !traits.is_empty() {
        let (done, took) = define(http, base, token, "traits", &traits).await?;
        for (d, body) in traits.iter().zip(&done) {
            println!(
                "  trait    {:<19} {:<52} {} profiles",
                d.name,
                clip(d.about, 52),
                thousands(body["profiles_total"].as_u64().unwrap_or(0)),
            );
        }
        println!(
            "           PUT /v1/traits/{{name}} → backfilled over the ingested history in {:.2} s",
            took.as_secs_f64()
        );
    }
    let (done, took) = define(http, base, token, "tags", &tags).await?;
    println!(
        "  {:<8} {:<19} {:<12} {:>8} {:>14} {:>10}   definition",
        "", "tag", "value", "profiles", "spend CNY", "avg CNY"
    );
    let mut out = BTreeMap::new();
    for (d, body) in tags.iter().zip(&done) {
        let values = body["values"].as_array().cloned().unwrap_or_default();
        if values.is_empty() {
            println!(
                "  {:<8} {:<19} {:<12} {:>8} {:>14} {:>10}   {}",
                "tag", d.name, "-", 0, "-", "-", d.about
            );
        }
        for (i, v) in values.iter().enumerate() {
            let (label, name, about) = if i == 0 {
                ("tag", d.name, d.about)
            } else {
                ("", "", "")
            };
            println!(
                "  {label:<8} {name:<19} {:<12} {:>8} {:>14} {:>10}   {about}",
                clip(&plain(&v["value"]), 12),
                thousands(v["profiles"].as_u64().unwrap_or(0)),
                cny(cents(&v["total_spend"])),
                cny(cents(&v["average_spend"])),
            );
        }
        out.insert(d.name.to_owned(), body.clone());
    }
    println!(
        "           PUT /v1/tags/{{name}} → backfilled in {:.2} s; population from GET /v1/tags/{{name}} \
         (spend = all-time Order Completed total)",
        took.as_secs_f64()
    );
    Ok(out)
}

/// The profiles with tag `tag`, per value (`true` for a rule tag without a value), from its `GET`.
fn population(tag: &Value) -> BTreeMap<String, (u64, i64)> {
    tag["values"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|v| {
            (
                plain(&v["value"]),
                (
                    v["profiles"].as_u64().unwrap_or(0),
                    cents(&v["total_spend"]),
                ),
            )
        })
        .collect()
}

/// Defines the four families, shows the featured customer's traits and tags (and sets a manual one), and
/// checks the numbers the data set determines. `exact` is false when the log held events before this run.
pub(super) async fn show_tags(
    http: &reqwest::Client,
    base: &str,
    token: &str,
    data: &Dataset,
    exact: bool,
) -> anyhow::Result<()> {
    let mut tags = BTreeMap::new();
    for (title, defs) in [
        (
            "natural attributes — from the profile traits city and member_tier",
            natural_attributes(),
        ),
        (
            "product preference — computed traits over the orders' line items",
            product_preference(),
        ),
        (
            "consumption behaviour — spend, frequency and activity",
            consumption_behaviour(),
        ),
        (
            "RFM — recency, frequency, monetary scored by quintiles of the population",
            rfm(),
        ),
    ] {
        tags.extend(family(http, base, token, title, defs).await?);
    }

    // The featured customer, looked up again: the split and merge may have moved them.
    let customer = &data.customers[data.featured];
    let found = lookup(http, base, token, "user_id", &customer.user_id).await?;
    let profile = found["profile_id"]
        .as_str()
        .context("the lookup answered no profile_id")?
        .to_owned();
    let orders = orders_of(data);
    let mine = &orders[data.featured];
    let store = mine
        .iter()
        .filter_map(|o| o.store.clone())
        .max_by_key(|s| mine.iter().filter(|o| o.store.as_ref() == Some(s)).count())
        .unwrap_or_else(|| "SH-Jingan-01".to_owned());
    let path = format!("/v1/profiles/{profile}/tags/{MANUAL_TAG}");
    let response = http
        .post(format!("{base}{path}"))
        .bearer_auth(token)
        .json(&json!({"value": store}))
        .send()
        .await
        .with_context(|| format!("POST {path} failed"))?;
    let status = response.status();
    let answer: Value = response
        .json()
        .await
        .with_context(|| format!("the answer to POST {path} is not JSON"))?;
    ensure!(
        status == reqwest::StatusCode::OK && answer["value"] == json!(store),
        "POST {path} answered {status}: {answer}"
    );
    let view = get(http, base, token, &format!("/v1/profiles/{profile}"), &[]).await?;
    println!();
    println!(
        "Featured   {} ({}): computed traits and tags — GET /v1/profiles/{profile}",
        customer.user_id, customer.name
    );
    for (i, (name, t)) in view["computed_traits"]
        .as_object()
        .into_iter()
        .flatten()
        .enumerate()
    {
        let label = if i == 0 { "computed" } else { "" };
        let complete = if t["complete"] == false {
            " (incomplete)"
        } else {
            ""
        };
        let value = match t["value"].as_f64() {
            Some(x) if x.fract() != 0.0 => format!("{x:.2}"),
            _ => plain(&t["value"]),
        };
        println!(
            "  {label:<10} {name:<19} {:<40} last event {}{complete}",
            clip(&value, 40),
            minute(&t["last_event_at"]),
        );
    }
    for (i, (name, t)) in view["tags"].as_object().into_iter().flatten().enumerate() {
        let label = if i == 0 { "tags" } else { "" };
        let how = if t["manual"] == true {
            "set by hand".to_owned()
        } else {
            format!("caused by {}", clip(&plain(&t["caused_by"]), 28))
        };
        let d = &t["detail"];
        let detail = if d.is_null() {
            String::new()
        } else {
            format!(
                " (r {} f {} m {}: last order {} days ago, {} orders, CNY {})",
                d["r"],
                d["f"],
                d["m"],
                d["recency_days"],
                d["frequency"],
                cny(cents(&d["monetary"]))
            )
        };
        println!(
            "  {label:<10} {name:<19} {:<14} since {} {how}{detail}",
            clip(&plain(&t["value"]), 14),
            minute(&t["changed_at"]),
        );
    }
    println!(
        "  store staff set {MANUAL_TAG} = {store} — POST /v1/profiles/{profile}/tags/{MANUAL_TAG}"
    );
    let manual = &view["tags"][MANUAL_TAG];
    ensure!(
        manual["value"] == json!(store) && manual["manual"] == true,
        "the profile shows {MANUAL_TAG} as {manual}, not the manual value {store:?}"
    );
    let after = get(http, base, token, &format!("/v1/tags/{MANUAL_TAG}"), &[]).await?;
    ensure!(
        after["profiles"] == 1,
        "GET /v1/tags/{MANUAL_TAG} counts {} profiles, not the 1 staff tagged",
        after["profiles"]
    );
    println!(
        "             GET /v1/tags/{MANUAL_TAG} → {} profile, CNY {} spend",
        after["profiles"],
        cny(cents(&after["total_spend"]))
    );

    if !exact {
        println!(
            "  (the log already had events before this run, so tags are not compared with the data set)"
        );
        return Ok(());
    }
    check(data, &orders, &view, &tags)
}

/// The numbers the data set determines, checked exactly: the featured customer's computed traits, and
/// the populations of tags whose inputs the data set holds.
fn check(
    data: &Dataset,
    orders: &[Vec<Order>],
    view: &Value,
    tags: &BTreeMap<String, Value>,
) -> anyhow::Result<()> {
    // The windows are read now; a run across midnight UTC would shift them, so read the day just once.
    let today = Utc::now().date_naive();
    let expected: Vec<Expected> = orders.iter().map(|o| Expected::of(o, today)).collect();
    let me = &expected[data.featured];
    let c = &data.customers[data.featured];
    let computed = &view["computed_traits"];
    let spend = cents(&computed["spend_30d"]["value"]);
    ensure!(
        spend == me.spend_30d,
        "{}'s spend_30d is CNY {} but their orders of the last 30 days in the data set total CNY {}",
        c.user_id,
        cny(spend),
        cny(me.spend_30d)
    );
    ensure!(
        computed["orders_90d"]["value"] == json!(me.orders_90d),
        "{}'s orders_90d is {} but the data set has {} orders in the last 90 days",
        c.user_id,
        computed["orders_90d"]["value"],
        me.orders_90d
    );
    ensure!(
        computed["categories_bought"]["value"] == json!(me.categories),
        "{}'s categories_bought is {} but their orders' lines have {:?}",
        c.user_id,
        computed["categories_bought"]["value"],
        me.categories
    );
    ensure!(
        computed["favourite_category"]["value"] == json!(me.favourite),
        "{}'s favourite_category is {} but their lines' most frequent category is {:?}",
        c.user_id,
        computed["favourite_category"]["value"],
        me.favourite
    );
    let rfm = &view["tags"]["rfm"]["detail"];
    let mine = &orders[data.featured];
    let in_365: Vec<&Order> = mine
        .iter()
        .filter(|o| (today - o.at.date_naive()).num_days() < 365)
        .collect();
    // Recency counts whole 24-hour periods since the last order, at the time the tag was evaluated (when
    // the profile was last touched, moments ago): a day boundary may have passed since.
    let recency_at =
        |now: DateTime<Utc>| in_365.iter().map(|o| (now - o.at).num_days().max(0)).min();
    let now = Utc::now();
    let recency = recency_at(now);
    let evaluated_recency = rfm["recency_days"].as_i64();
    let monetary: i64 = in_365.iter().map(|o| o.cents).sum();
    ensure!(
        (evaluated_recency == recency
            || evaluated_recency == recency_at(now - chrono::Duration::minutes(15)))
            && rfm["frequency"] == json!(in_365.len())
            && cents(&rfm["monetary"]) == monetary,
        "{}'s rfm inputs are {rfm} but the data set has {} orders in 365 days worth CNY {}, the last \
         {recency:?} days ago",
        c.user_id,
        in_365.len(),
        cny(monetary)
    );
    println!(
        "  (spend_30d CNY {}, orders_90d {}, categories_bought, favourite_category and the RFM inputs = \
         exactly what the data set's {} orders say)",
        cny(me.spend_30d),
        me.orders_90d,
        mine.len()
    );

    // Populations: exact when each customer is one profile (no identifier shared between customers).
    let shared = {
        let mut seen = BTreeSet::new();
        data.customers.iter().any(|c| {
            !seen.insert(("phone", c.phone.as_str()))
                || !seen.insert(("email", c.email.as_str()))
                || !seen.insert(("anon", c.anonymous_id.as_str()))
        })
    };
    if shared {
        println!(
            "  (tag populations not compared with the data set: some customers share an identifier, so \
             OneID may have joined them)"
        );
        return Ok(());
    }
    let tag = |name: &str| population(&tags[name]);
    let count = |f: &dyn Fn(usize) -> bool| (0..expected.len()).filter(|&i| f(i)).count() as u64;
    let mut checked = Vec::new();

    let big: Vec<usize> = (0..expected.len())
        .filter(|&i| expected[i].spend_30d >= BIG_SPENDER * 100)
        .collect();
    let big_spend: i64 = big.iter().map(|&i| expected[i].spend_all).sum();
    let got = tag("big_spender");
    let (n, s) = got.get("true").copied().unwrap_or((0, 0));
    ensure!(
        n == big.len() as u64 && s == big_spend,
        "big_spender has {n} profiles spending CNY {} but the data set has {} customers with CNY {BIG_SPENDER} \
         or more in the last 30 days, spending CNY {}",
        cny(s),
        big.len(),
        cny(big_spend)
    );
    checked.push(format!(
        "big_spender {} (CNY {})",
        thousands(n),
        cny(big_spend)
    ));

    let got = tag("spend_level");
    for (value, from, below) in SPEND_LEVELS {
        let want = count(&|i| {
            let x = expected[i].spend_30d;
            (from == i64::MIN || x >= from * 100) && (below == i64::MAX || x < below * 100)
        });
        let n = got.get(value).map_or(0, |v| v.0);
        ensure!(
            n == want,
            "spend_level {value} has {n} profiles but the data set has {want} customers in that band"
        );
    }
    checked.push("spend_level per value".to_owned());

    let want = count(&|i| expected[i].orders_90d >= 2);
    let n = tag("frequent_buyer").get("true").map_or(0, |v| v.0);
    ensure!(
        n == want,
        "frequent_buyer has {n} profiles, the data set {want} customers with 2+ orders in 90 days"
    );
    checked.push(format!("frequent_buyer {}", thousands(n)));

    let want = count(&|i| expected[i].favourite.as_deref() == Some("tea"));
    let n = tag("tea_lover").get("tea").map_or(0, |v| v.0);
    ensure!(
        n == want,
        "tea_lover has {n} profiles, the data set {want} customers whose most frequent line is tea"
    );
    checked.push(format!("tea_lover {}", thousands(n)));

    let want = count(&|i| {
        let c = &expected[i].categories;
        c.contains("tea") && !c.contains("teaware")
    });
    let n = tag("teaware_prospect").get("true").map_or(0, |v| v.0);
    ensure!(
        n == want,
        "teaware_prospect has {n} profiles, the data set {want} customers who bought tea but no teaware"
    );
    checked.push(format!("teaware_prospect {}", thousands(n)));

    let want = count(&|i| TIER1_CITIES.contains(&data.customers[i].city));
    let n = tag("city_tier1").get("tier-1").map_or(0, |v| v.0);
    ensure!(
        n == want,
        "city_tier1 has {n} profiles, the data set {want} customers in a first-tier city"
    );
    checked.push(format!("city_tier1 {}", thousands(n)));

    let want = count(&|i| data.customers[i].tier >= 2);
    let n = tag("premium_member").get("gold+").map_or(0, |v| v.0);
    ensure!(
        n == want,
        "premium_member has {n} profiles, the data set {want} customers whose tier is now gold or platinum"
    );
    checked.push(format!("premium_member {}", thousands(n)));

    let want = count(&|i| expected[i].in_rfm);
    let n: u64 = tag("rfm").values().map(|v| v.0).sum();
    ensure!(
        n == want,
        "rfm scores {n} profiles, the data set has {want} customers with an order in the last 365 days"
    );
    checked.push(format!("rfm {} scored", thousands(n)));

    println!(
        "  (tag populations = exactly the data set's customers: {})",
        checked.join(" · ")
    );
    Ok(())
}
