//! First start without configuration: a `default` workspace with random credentials that work, shown
//! once; and no such defaults on a non-loopback address.

use std::net::SocketAddr;

use cdp_api::{Application, Config};
use reqwest::Method;
use serde_json::json;

use crate::helpers::{http_client, read_json};

#[tokio::test]
async fn a_first_start_without_configuration_makes_working_credentials_once() {
    let dir = tempfile::tempdir().unwrap();
    let config = Config::local(dir.path().join("data"));
    let app = Application::build(config.clone()).await.unwrap();
    let generated = app
        .generated_credentials()
        .cloned()
        .expect("credentials are generated on a first start");
    assert_eq!(generated.workspace, "default");
    assert_ne!(generated.write_key, generated.admin_token);
    let address = format!("http://127.0.0.1:{}", app.port());
    let server = tokio::spawn(app.run_until_stopped());

    let client = http_client();
    let (status, body) = read_json(
        client
            .post(format!("{address}/v1/track"))
            .basic_auth(&generated.write_key, Some(""))
            .json(&json!({"userId": "first", "event": "Signed Up"}))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status.as_u16(), body), (200, json!({"success": true})));
    let quarantine = client
        .request(Method::GET, format!("{address}/v1/quarantine"))
        .bearer_auth(&generated.admin_token)
        .send()
        .await
        .unwrap();
    assert_eq!(quarantine.status().as_u16(), 200);
    server.abort();
    let _ = server.await;

    // The second start finds the workspace: nothing new is generated (or printed).
    let again = Application::build(config).await.unwrap();
    assert!(again.generated_credentials().is_none());
}

#[tokio::test]
async fn generated_defaults_are_refused_on_a_non_loopback_address() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = Config::local(dir.path().join("data"));
    config.listen = SocketAddr::from(([0, 0, 0, 0], 0));
    let error = match Application::build(config).await {
        Ok(_) => panic!("a service with generated credentials must not listen on 0.0.0.0"),
        Err(e) => format!("{e:#}"),
    };
    assert!(error.contains("non-loopback"), "{error}");
}
