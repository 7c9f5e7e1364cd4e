//! Operator jobs: rebuilding read models from the event log with the same `prepare`/`write` code live processing
//! runs (`cdp_projections`), never a second implementation.

use cdp_domain::store::Store;
use cdp_projections::profile_view::ProfileViews;
use cdp_projections::runner::{catch_up, ProjectionError};

/// Drops the profile views and their checkpoint in one transaction, then rebuilds them from the whole log.
/// Returns the number of events applied. The live runner may run meanwhile: the checkpoint row serialises
/// the two, and views are rebuilt from the start either way.
pub async fn rebuild_profile_views(store: &Store) -> Result<u64, ProjectionError> {
    match store {
        Store::Sqlite(s) => {
            let mut tx = s.write_pool().begin_with("BEGIN IMMEDIATE").await?;
            sqlx::query("DELETE FROM profile_views")
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM projection_checkpoints WHERE name = ?")
                .bind(ProfileViews::NAME)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
        Store::Postgres(s) => {
            let mut tx = s.pool().begin().await?;
            sqlx::query("UPDATE projection_checkpoints SET tx = 0, seq = 0 WHERE name = $1")
                .bind(ProfileViews::NAME)
                .execute(&mut *tx)
                .await?;
            sqlx::query("DELETE FROM profile_views")
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
        }
    }
    let applied = catch_up(store, &ProfileViews).await?;
    tracing::info!(applied, "profile views rebuilt");
    Ok(applied)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cdp_domain::event::NewEvent;
    use cdp_domain::ident::IdentifierType;
    use cdp_domain::message::{validate, Envelope};
    use cdp_domain::store::EventStore;
    use serde_json::json;

    #[tokio::test]
    async fn a_rebuild_gives_exactly_the_live_state() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open_embedded(dir.path()).await.unwrap();
        let now = chrono::Utc::now();
        let envelope = Envelope {
            workspace: "w",
            received_at: now,
            batch_sent_at: None,
            implied_kind: None,
        };
        let events: Vec<NewEvent> = (0..50)
            .map(|i| {
                let m = json!({"type": if i % 5 == 0 { "identify" } else { "track" }, "event": "Viewed",
                    "userId": format!("u{}", i % 7), "traits": {"n": i}, "messageId": format!("m{i}")});
                validate(m, &envelope, || unreachable!()).unwrap()
            })
            .collect();
        store.append(&events[..30]).await.unwrap();
        catch_up(&store, &ProfileViews).await.unwrap();
        store.append(&events[30..]).await.unwrap();
        catch_up(&store, &ProfileViews).await.unwrap();
        let live = ProfileViews::load(&store, "w", IdentifierType::UserId, "u3")
            .await
            .unwrap();

        assert_eq!(rebuild_profile_views(&store).await.unwrap(), 50);
        let rebuilt = ProfileViews::load(&store, "w", IdentifierType::UserId, "u3")
            .await
            .unwrap();
        assert!(live.is_some());
        assert_eq!(live, rebuilt);
    }
}
