//! Restart durability with the real binary: events answered 200 survive a SIGKILL right after the answer,
//! and the restarted service serves them (the projection resumes from its checkpoint).

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use cdp_domain::store::{EventStore, Store};
use reqwest::StatusCode;
use serde_json::Value;
use tokio::process::{Child, Command};

use crate::helpers::{
    eventually, free_port, http_client, on_each_backend, read_json, track, Backend, PgDatabase,
    ADMIN_TOKEN, DEADLINE, WORKSPACE, WRITE_KEY,
};

/// A `cdp serve` process (`cdp-under-test`) and its address.
pub(crate) struct Server {
    pub child: Child,
    pub address: String,
}

/// Starts `cdp serve` on a free port and waits until it is healthy. A port is only known to be free when
/// it is picked, so a start that fails (someone took the port) is retried on another.
async fn start(data_dir: &Path, database_url: Option<&str>) -> Server {
    start_logging(data_dir, database_url, None).await
}

/// [`start`], its standard output and error written to `log` when given.
pub(crate) async fn start_logging(
    data_dir: &Path,
    database_url: Option<&str>,
    log: Option<&Path>,
) -> Server {
    start_with(data_dir, database_url, log, &[]).await
}

/// [`start_logging`], with the variables `env` set besides.
pub(crate) async fn start_with(
    data_dir: &Path,
    database_url: Option<&str>,
    log: Option<&Path>,
    env: &[(&str, String)],
) -> Server {
    for attempt in 1..=3 {
        match try_start(data_dir, database_url, log, env).await {
            Ok(server) => return server,
            Err(status) if attempt < 3 => {
                eprintln!("cdp serve exited at start ({status}); retrying on another port");
            }
            Err(status) => panic!("cdp serve exited at start: {status}"),
        }
    }
    unreachable!("the last attempt returns or panics")
}

async fn try_start(
    data_dir: &Path,
    database_url: Option<&str>,
    log: Option<&Path>,
    env: &[(&str, String)],
) -> Result<Server, std::process::ExitStatus> {
    let port = free_port();
    let mut command = Command::new(env!("CARGO_BIN_EXE_cdp-under-test"));
    command.arg("serve");
    // Nothing of the caller's CDP_* environment leaks in.
    for (name, _) in std::env::vars() {
        if name.starts_with("CDP_") {
            command.env_remove(name);
        }
    }
    command
        .env("CDP_LISTEN", format!("127.0.0.1:{port}"))
        .env("CDP_DATA_DIR", data_dir)
        .env("CDP_BOOTSTRAP_WORKSPACE", WORKSPACE)
        .env("CDP_BOOTSTRAP_WRITE_KEY", WRITE_KEY)
        .env("CDP_BOOTSTRAP_ADMIN_TOKEN", ADMIN_TOKEN)
        // One name per data directory: a server restarted over the same directory is the same
        // instance, and takes its partition leases back at once (as one restarted on its port does).
        .env("CDP_INSTANCE", format!("e2e:{}", data_dir.display()))
        .stdin(Stdio::null())
        .kill_on_drop(true);
    if let Some(url) = database_url {
        command.env("CDP_DATABASE_URL", url);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    if let Some(log) = log {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("open the log file");
        command
            .stdout(file.try_clone().expect("the log file"))
            .stderr(file);
    } else if std::env::var_os("TEST_LOG").is_none() {
        command.stdout(Stdio::null()).stderr(Stdio::null());
    }
    let mut child = command.spawn().expect("start cdp-under-test serve");
    let address = format!("http://127.0.0.1:{port}");
    let client = http_client();
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return Err(status);
        }
        let healthy = client
            .get(format!("{address}/healthz"))
            .timeout(Duration::from_secs(1))
            .send()
            .await
            .is_ok_and(|r| r.status() == StatusCode::OK);
        if healthy {
            return Ok(Server { child, address });
        }
        assert!(
            started.elapsed() < DEADLINE,
            "cdp serve did not become healthy"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_events_survive_a_kill_and_restart() {
    on_each_backend("restart_durability", |backend| async move {
        let dir = tempfile::tempdir().unwrap();
        let database = match backend {
            Backend::Sqlite => None,
            Backend::Postgres => Some(PgDatabase::create().await),
        };
        let url = database.as_ref().map(|d| d.url.as_str());
        let client = http_client();

        let mut server = start(dir.path(), url).await;
        // Several requests in flight at once, so that they share group commits; the last answer is
        // followed at once by SIGKILL.
        let sends = (0..20).map(|i| {
            let message = track("u-durable", "Order Completed", &format!("m-durable-{i}"));
            client
                .post(format!("{}/v1/track", server.address))
                .basic_auth(WRITE_KEY, Some(""))
                .json(&message)
                .send()
        });
        for response in futures::future::join_all(sends).await {
            let (status, body) = read_json(response.expect("POST /v1/track")).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        server.child.kill().await.expect("SIGKILL the server");

        let mut server = start(dir.path(), url).await;
        let address = server.address.clone();
        let profile: Value = eventually("the profile after the restart", || {
            let client = client.clone();
            let address = address.clone();
            async move {
                let response = client
                    .get(format!("{address}/v1/profiles/lookup"))
                    .bearer_auth(ADMIN_TOKEN)
                    .query(&[("type", "user_id"), ("value", "u-durable")])
                    .send()
                    .await
                    .map_err(|e| e.to_string())?;
                let (status, body) = read_json(response).await;
                if status == StatusCode::OK && body["event_counts"]["by_type"]["track"] == 20 {
                    Ok(body)
                } else {
                    Err(format!("{status} {body}"))
                }
            }
        })
        .await;
        assert_eq!(profile["recent_events"].as_array().unwrap().len(), 20);
        server.child.kill().await.expect("stop the server");

        let store = match url {
            Some(url) => Store::connect(url).await,
            None => Store::open_embedded(dir.path()).await,
        }
        .expect("open the store the server wrote");
        assert_eq!(store.count_events(WORKSPACE).await.unwrap(), 20);
    })
    .await;
}
