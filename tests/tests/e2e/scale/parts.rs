//! The engine in parts (`CDP_ENGINE_PARTITIONS`) over three instances: the parts spread over them,
//! a killed instance's parts are taken by the others within 10 s, every event of five workspaces is
//! resolved once, every enter published, and the model is the one a single resolver's rebuild makes.

use super::*;

/// The workspaces of the partitioned engine's test, each with its write key and admin token.
const PART_WORKSPACES: [&str; 5] = ["pa", "pb", "pc", "pd", "pe"];
/// The parts the engine is split into in that test.
const PARTS: usize = 6;

fn parts_config() -> String {
    PART_WORKSPACES
        .iter()
        .map(|w| {
            format!(
                "[[workspace]]\nid = \"{w}\"\nwrite_keys = [\"wk_{w}\"]\n\
                 [[workspace.token]]\ntoken = \"tok_{w}_admin\"\nscopes = [\"admin\"]\n\n"
            )
        })
        .collect()
}

/// The parts each of `servers` runs (by `/readyz`), once every part is run by exactly one of them.
async fn parts_spread(client: &reqwest::Client, servers: &[&Server]) -> Result<Vec<usize>, String> {
    let mut all = Vec::new();
    let mut each = Vec::new();
    for (i, server) in servers.iter().enumerate() {
        let (_, owned) = partitions(client, server)
            .await
            .ok_or_else(|| format!("instance {i} did not answer /readyz"))?;
        each.push(owned.len());
        all.extend(owned);
    }
    all.sort();
    let expected: Vec<String> = (0..PARTS)
        .map(|i| format!("identity/{i}-of-{PARTS}"))
        .collect();
    if all == expected {
        Ok(each)
    } else {
        Err(format!("parts run: {all:?} ({each:?} per instance)"))
    }
}

/// Waits until every part is run by exactly one of `servers`, the same number each: how many each.
async fn spread_evenly(client: &reqwest::Client, servers: &[&Server]) -> Vec<usize> {
    eventually("the parts spread evenly over the instances", || {
        let (client, servers) = (client.clone(), servers.to_vec());
        async move {
            let each = parts_spread(&client, &servers).await?;
            if each.iter().all(|n| *n == PARTS / servers.len()) {
                Ok(each)
            } else {
                Err(format!("{each:?} parts per instance"))
            }
        }
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_instances_share_the_engines_parts_and_a_killed_ones_parts_are_taken_within_ten_seconds(
) {
    let Some(_) = postgres_url() else {
        eprintln!("scale: skipped (CDP_TEST_DATABASE_URL is not set)");
        return;
    };
    let database = PgDatabase::create().await;
    let client = http_client();
    let config_dir = tempfile::tempdir().unwrap();
    let config = config_dir.path().join("cdp.toml");
    std::fs::write(&config, parts_config()).unwrap();
    let namespace = format!("t{}", uuid::Uuid::new_v4().simple());
    let mut env = vec![
        ("CDP_ENGINE_PARTITIONS", PARTS.to_string()),
        ("CDP_CONFIG", config.display().to_string()),
    ];
    if let Some(url) = nats_url() {
        env.push(("CDP_NATS_URL", url));
        env.push(("CDP_NATS_NAMESPACE", namespace.clone()));
    }
    let mut dirs = Vec::new();
    let mut servers = instances(&database, 3, &env, &mut dirs).await;
    let mut entered = subscribe_enters(&namespace, "*").await;
    // The parts spread over the three instances: two each.
    let spread = spread_evenly(&client, &servers.iter().collect::<Vec<_>>()).await;
    eprintln!("scale: parts per instance {spread:?}");
    for w in PART_WORKSPACES {
        put_segment(
            &client,
            &servers[0],
            &format!("tok_{w}_admin"),
            "regulars",
            10,
        )
        .await;
    }

    let messages: Vec<(&str, Value)> = (0..REGULAR)
        .flat_map(|n| {
            PART_WORKSPACES.iter().flat_map(move |w| {
                (0..CUSTOMERS)
                    .filter(move |c| n < orders_of(*c))
                    .map(move |c| {
                        let user = format!("u-{w}-{c}");
                        (
                            *w,
                            track(&user, "Order Completed", &format!("m-{w}-{c}-{n}")),
                        )
                    })
            })
        })
        .collect();
    let send_to = |server: &Server, w: &str, message: &Value| {
        client
            .post(format!("{}/v1/track", server.address))
            .basic_auth(format!("wk_{w}"), Some(""))
            .json(message)
            .timeout(Duration::from_secs(5))
            .send()
    };
    let half = messages.len() / 2;
    for (i, (w, message)) in messages[..half].iter().enumerate() {
        let sent = send_to(&servers[i % 3], w, message).await;
        assert!(
            sent.is_ok_and(|r| r.status() == StatusCode::OK),
            "POST /v1/track"
        );
    }
    // The first instance is killed mid-stream, with the parts it runs.
    let (killed_name, killed_parts) = partitions(&client, &servers[0]).await.unwrap();
    assert_eq!(killed_parts.len(), PARTS / 3);
    let killed_at = Instant::now();
    let mut killed = servers.remove(0);
    killed.child.kill().await.expect("SIGKILL an instance");
    for (i, (w, message)) in messages[half..].iter().enumerate() {
        let sent = send_to(&servers[i % 2], w, message).await;
        assert!(
            sent.is_ok_and(|r| r.status() == StatusCode::OK),
            "POST /v1/track to a survivor"
        );
    }
    // Its parts are taken by the survivors within 10 s, and spread: three each.
    let taken_over = loop {
        let survivors: Vec<&Server> = servers.iter().collect();
        if parts_spread(&client, &survivors).await.is_ok() {
            break killed_at.elapsed();
        }
        assert!(
            killed_at.elapsed() < Duration::from_secs(10),
            "the killed instance's parts were not all taken within 10 s: {:?}",
            parts_spread(&client, &survivors).await
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    eprintln!("scale: the killed instance's parts were taken {taken_over:?} after the kill");
    let survivors: Vec<&Server> = servers.iter().collect();
    let spread = spread_evenly(&client, &survivors).await;
    let mut owned = 0.0;
    for server in &survivors {
        owned += metric(&client, server, "cdp_partitions_owned")
            .await
            .unwrap();
    }
    assert_eq!(owned, PARTS as f64, "{spread:?}");

    // Every event resolved exactly once, once every part has passed the whole log.
    let mut db = PgConnection::connect(&database.url).await.unwrap();
    let expected_orders =
        (PART_WORKSPACES.len() * (0..CUSTOMERS).map(orders_of).sum::<usize>()) as i64;
    eventually("every event applied", || {
        let url = database.url.clone();
        async move {
            let mut db = PgConnection::connect(&url)
                .await
                .map_err(|e| e.to_string())?;
            let owned: i64 = sqlx::query_scalar("SELECT count(*) FROM event_profiles")
                .fetch_one(&mut db)
                .await
                .map_err(|e| e.to_string())?;
            let _ = db.close().await;
            if owned == expected_orders {
                Ok(())
            } else {
                Err(format!("{owned} of {expected_orders} events applied"))
            }
        }
    })
    .await;
    let (orders, owned, profiles): (i64, i64, i64) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM events WHERE name = 'Order Completed'), \
         (SELECT count(*) FROM event_profiles), (SELECT count(*) FROM profiles)",
    )
    .fetch_one(&mut db)
    .await
    .unwrap();
    assert_eq!(
        orders, expected_orders,
        "every acknowledged event stored once"
    );
    assert_eq!(owned, orders, "every event belongs to exactly one profile");
    assert_eq!(profiles, (PART_WORKSPACES.len() * CUSTOMERS) as i64);
    // Each customer's profile counts its events once, on either survivor.
    for (i, w) in PART_WORKSPACES.iter().enumerate() {
        for c in 0..CUSTOMERS {
            let user = format!("u-{w}-{c}");
            let token = format!("tok_{w}_admin");
            counted_once_in(&client, survivors[(i + c) % 2], &token, &user, orders_of(c)).await;
        }
    }
    // The killed instance's leases changed hands under higher fences.
    let moved: Vec<(String, String, i64)> =
        sqlx::query_as("SELECT part, owner, fence FROM engine_leases WHERE part = ANY($1)")
            .bind(&killed_parts)
            .fetch_all(&mut db)
            .await
            .unwrap();
    assert_eq!(moved.len(), killed_parts.len());
    for (part, owner, fence) in &moved {
        assert_ne!(owner, &killed_name, "{part} still the killed instance's");
        assert!(
            *fence >= 2,
            "{part}: the takeover raised the fence (now {fence})"
        );
    }

    // The regulars of every workspace entered the segment; each enter published at least once.
    let members: Vec<(String, String)> = sqlx::query_as(
        "SELECT m.workspace, o.value FROM segment_members m JOIN identifier_owners o \
         ON o.workspace = m.workspace AND o.profile = m.profile AND o.id_type = 'user_id' \
         WHERE m.segment = 'regulars' ORDER BY m.workspace, o.value",
    )
    .fetch_all(&mut db)
    .await
    .unwrap();
    let mut expected: Vec<(String, String)> = PART_WORKSPACES
        .iter()
        .flat_map(|w| {
            (0..CUSTOMERS)
                .filter(|c| orders_of(*c) >= 10)
                .map(move |c| (w.to_string(), format!("u-{w}-{c}")))
        })
        .collect();
    expected.sort();
    assert_eq!(members, expected);
    if let Some((subscription, _)) = entered.as_mut() {
        every_enter_published(subscription, &mut db).await;
    }

    // `cdp replay status` lists every part and who runs it.
    let printed = cli(&database, &["replay", "status"]).await;
    for i in 0..PARTS {
        assert!(
            printed.contains(&format!("partition identity/{i}-of-{PARTS}: run by")),
            "{printed}"
        );
    }
    // A single resolver folding the same log builds the same model: a rebuild changes nothing.
    let before = model(&mut db).await;
    cli(&database, &["replay", "rebuild", "--all"]).await;
    assert_eq!(model(&mut db).await, before, "a rebuild changed the model");
    let _ = db.close().await;
}
