//! Shutdown on SIGINT or SIGTERM: exit 0, transports closed, data kept
//! (PROTOCOL §1).

use nix::sys::signal::Signal;
use serde_json::json;

use crate::helpers::*;

/// Open WebSocket and long-polling connections do not hold the process up.
/// (That clients see a transport close and reconnect by themselves to the
/// next process is checked with the official client in tests/js.)
#[tokio::test]
async fn sigterm_with_open_connections_closes_them_and_exits_zero() {
    let mut server = ServerBuilder::with_auth().spawn().await;
    let agent = server.agent("tok-alice").await;
    let gateway = server
        .socket("/gateway")
        .polling()
        .token("tok-bob")
        .connect()
        .await
        .unwrap();
    assert_eq!(agent.request("auth:whoami", json!({})).await["ok"], true);
    assert_eq!(gateway.request("auth:whoami", json!({})).await["ok"], true);

    let status = server.stop_with(Signal::SIGTERM).await;
    assert!(status.success(), "exit status {status:?}");
    server
        .wait_for_log(|l| l["message"] == "all Socket.IO connections closed")
        .await;
    server.wait_for_log(|l| l["message"] == "stopped").await;
}

#[tokio::test]
async fn sigint_exits_zero_and_the_next_process_serves_the_same_database() {
    let builder = ServerBuilder::with_auth();
    let mut server = builder.spawn().await;
    let status = server.stop_with(Signal::SIGINT).await;
    assert!(status.success(), "exit status {status:?}");

    let mut next = builder.spawn().await;
    let socket = next.agent("tok-alice").await;
    assert_eq!(
        socket.request("auth:whoami", json!({})).await["user_id"],
        "alice"
    );
    // The schema was already there: nothing to migrate the second time.
    let logs = next.logs.all();
    assert!(
        !logs
            .iter()
            .any(|l| l["message"] == "database migrations applied")
    );
    next.stop_with(Signal::SIGTERM).await;
}
