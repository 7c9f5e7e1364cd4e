//! `cdp backfill` against the store of a running server: a POS export (CSV with a column mapping) and a
//! CRM export (NDJSON) join on a phone into one profile, a refused row is in the quarantine with its
//! line, historical times stay in the timeline, and a second run stores nothing new.

use cdp_replay::backfill::{backfill, Format, Mapping, Options, Source};
use reqwest::StatusCode;
use serde_json::Value;

use crate::helpers::{eventually, on_each_backend, spawn_app, Auth, ADMIN_TOKEN, WORKSPACE};

/// The test workspace, as `backfill` takes it.
fn workspace() -> cdp_domain::ident::WorkspaceId {
    cdp_domain::ident::WorkspaceId::parse(WORKSPACE).unwrap()
}

const POS_CSV: &str = "receipt,member_no,mobile,paid_at,amount,store\n\
R-1,M-100,138 0013 8000,2023-04-05 10:30:00,129.50,Shanghai\n\
R-2,M-200,13900139000,2023-04-06 11:00:00,80,Beijing\n\
R-3,M-300,13700137000,2023-04-07 12:00:00,ten,Beijing\n\
R-4,M-100,138 0013 8000,2023-05-01 18:45:00,20,Shanghai\n";

const POS_MAP: &str = "userId=member_no,traits.phone=mobile,event='Order Completed',\
timestamp=paid_at,properties.order_id=receipt,properties.total=amount:number,properties.store=store";

const CRM_NDJSON: &str = r#"{"type":"identify","anonymousId":"crm-77","traits":{"phone":"+86 13800138000","email":"Ann@Example.com","name":"Ann"},"timestamp":"2022-12-01T08:00:00Z"}
{"type":"identify","anonymousId":"crm-78","traits":{"email":"bob@example.com"},"timestamp":"2022-12-02T08:00:00Z","messageId":"crm-78-v1"}
"#;

fn options(restart: bool) -> Options {
    Options {
        batch_size: 2,
        restart,
        received_at: chrono::Utc::now(),
        phone_region: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backfill_joins_history_into_profiles_and_a_second_run_stores_nothing() {
    on_each_backend("backfill", |backend| async move {
        let app = spawn_app(backend).await;
        let store = app.state.store.clone();
        let dir = tempfile::tempdir().expect("a temporary directory");
        let pos = dir.path().join("pos.csv");
        let crm = dir.path().join("crm.ndjson");
        std::fs::write(&pos, POS_CSV).expect("write pos.csv");
        std::fs::write(&crm, CRM_NDJSON).expect("write crm.ndjson");
        let pos_source = || Source {
            path: pos.clone(),
            format: Format::Csv(Mapping::parse(POS_MAP).expect("the mapping")),
        };
        let crm_source = || Source {
            path: crm.clone(),
            format: Format::Ndjson,
        };

        let report = backfill(&store, &workspace(), pos_source(), &options(false), &|_| {})
            .await
            .expect("the POS backfill");
        let p = report.progress;
        assert_eq!(
            (p.rows, p.stored, p.duplicates, p.rejected),
            (4, 3, 0, 1),
            "{report:?}"
        );
        let report = backfill(&store, &workspace(), crm_source(), &options(false), &|_| {})
            .await
            .expect("the CRM backfill");
        assert_eq!(report.progress.stored, 2, "{report:?}");
        assert_eq!(app.count_events().await, 5);

        // The resolver of the running server picks the events up: the POS member and the CRM contact
        // share a phone, so they are one profile holding the member number, the phone and the email.
        let profile = app
            .profile_when("email", "ann@example.com", |p| {
                p["event_counts"]["by_type"]["track"].as_u64() == Some(2)
            })
            .await;
        let identifiers: Vec<(String, String)> = profile["identifiers"]
            .as_array()
            .expect("identifiers")
            .iter()
            .map(|i| {
                (
                    i["type"].as_str().unwrap_or_default().to_owned(),
                    i["value"].as_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        for expected in [
            ("user_id", "M-100"),
            ("phone", "8613800138000"),
            ("email", "ann@example.com"),
            ("anonymous_id", "crm-77"),
        ] {
            assert!(
                identifiers.contains(&(expected.0.to_owned(), expected.1.to_owned())),
                "{expected:?} not in {identifiers:?}"
            );
        }
        // History keeps its own time: the profile was first seen at the CRM's 2022 record, and the
        // orders are in the timeline at their 2023 till times.
        assert_eq!(
            profile["first_seen"], "2022-12-01T08:00:00.000Z",
            "{profile}"
        );
        let id = profile["profile_id"]
            .as_str()
            .expect("profile_id")
            .to_owned();
        let (status, timeline) = app
            .get_as(
                &format!("/v1/profiles/{id}/events"),
                Auth::Bearer(ADMIN_TOKEN),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{timeline}");
        let mut orders: Vec<(String, f64)> = timeline["items"]
            .as_array()
            .expect("items")
            .iter()
            .filter(|e| e["name"] == "Order Completed")
            .map(|e| {
                (
                    e["timestamp"].as_str().unwrap_or_default().to_owned(),
                    e["message"]["properties"]["total"]
                        .as_f64()
                        .unwrap_or_default(),
                )
            })
            .collect();
        orders.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(
            orders,
            vec![
                ("2023-04-05T10:30:00.000Z".to_owned(), 129.5),
                ("2023-05-01T18:45:00.000Z".to_owned(), 20.0)
            ]
        );
        let other = app.profile_when("user_id", "M-200", |_| true).await;
        assert_ne!(other["profile_id"], profile["profile_id"]);

        // The refused row is in the quarantine with its line number.
        let quarantined = app.quarantine().await;
        let refused: Vec<&Value> = quarantined
            .iter()
            .filter(|q| q["source"] == "backfill")
            .collect();
        assert_eq!(refused.len(), 1, "{quarantined:?}");
        let q = refused[0];
        assert_eq!(q["field"], "properties.total", "{q}");
        assert!(
            q["reason"]
                .as_str()
                .is_some_and(|r| r.starts_with("line 4 of pos.csv: ")),
            "{q}"
        );

        // Twice: the rerun resumes after the end and reads nothing; --restart reads every row again
        // and finds each one already stored.
        let again = backfill(&store, &workspace(), pos_source(), &options(false), &|_| {})
            .await
            .expect("the rerun");
        assert_eq!(again.resumed_after, Some(5));
        assert_eq!(again.progress.rows, 0);
        for source in [pos_source(), crm_source()] {
            let restarted = backfill(&store, &workspace(), source, &options(true), &|_| {})
                .await
                .expect("the restart");
            assert_eq!(restarted.progress.stored, 0, "{restarted:?}");
            assert!(restarted.progress.duplicates > 0, "{restarted:?}");
        }
        assert_eq!(app.count_events().await, 5);
        eventually("the profile unchanged after the rerun", || async {
            let (status, p) = app.lookup("email", "ann@example.com").await;
            if status == StatusCode::OK && p["event_counts"]["by_type"]["track"].as_u64() == Some(2)
            {
                Ok(())
            } else {
                Err(format!("{status} {p}"))
            }
        })
        .await;
    })
    .await;
}
