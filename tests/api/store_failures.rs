//! A database failure worth retrying reaches the client as `unavailable`
//! (HTTP 503), its cause logged once by the server; the same request
//! succeeds once the database is free again.

use sea_orm::sqlx::{Connection, Executor, SqliteConnection};
use serde_json::json;

use crate::helpers::ServerBuilder;

#[tokio::test]
async fn a_request_that_finds_the_database_locked_gets_unavailable_and_a_retry_succeeds() {
    let builder = ServerBuilder::with_auth();
    let url = builder.database_url().await;
    // SQLite only: another connection holding its write lock is the busy
    // database (PostgreSQL would wait for a lock without a bound).
    if !url.starts_with("sqlite:") {
        return;
    }
    let mut server = builder.spawn().await;

    let mut holder = SqliteConnection::connect(&url).await.unwrap();
    holder.execute("BEGIN IMMEDIATE").await.unwrap();
    // The server waits for the lock for its busy timeout, then gives up.
    let (status, body) = server.post("tok-alice", "/v1/sessions", &json!({})).await;
    assert_eq!(status, reqwest::StatusCode::SERVICE_UNAVAILABLE, "{body}");
    assert_eq!(body["error"]["code"], "unavailable", "{body}");
    assert_eq!(body["error"]["message"], "the database is busy; retry");

    let line = server
        .wait_for_log(|l| l["message"] == "unavailable, worth a retry")
        .await;
    let cause = line["error"].as_str().unwrap_or_default();
    assert!(cause.starts_with("the database is busy: "), "{line}");
    assert_eq!(cause.matches("database is locked").count(), 1, "{line}");

    holder.execute("ROLLBACK").await.unwrap();
    let (status, body) = server.post("tok-alice", "/v1/sessions", &json!({})).await;
    assert_eq!(status, reqwest::StatusCode::CREATED, "{body}");
}
