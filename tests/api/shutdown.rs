//! Shutdown on SIGINT or SIGTERM: exit 0, transports closed, data kept
//! (PROTOCOL §1).

use nix::sys::signal::Signal;
use serde_json::json;

// Also loaded by other modules, whose copies are private.
#[allow(clippy::duplicate_mod)]
#[path = "../support/raw_client.rs"]
mod raw_client;

use raw_client::RawSocket;

use crate::helpers::*;
use crate::limits_pages::append_large;

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

/// A subscriber that stopped reading has a catch-up waiting for room in its
/// buffer, for up to the lag timeout. Shutdown does not wait for it: every
/// background task stops when the server does, so the process is done well
/// inside its shutdown timeout, with nothing dropped at the deadline.
#[tokio::test]
async fn sigterm_stops_the_catch_up_of_a_subscriber_that_stopped_reading() {
    let mut server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_INGEST_RATE", "unlimited")
        .env("SWITCHBOARD_INGEST_BYTES_RATE", "unlimited")
        .env("SWITCHBOARD_MAX_SOCKET_BUFFER_BYTES", "65536")
        .env("SWITCHBOARD_LAG_TIMEOUT", "10m")
        .env("SWITCHBOARD_SHUTDOWN_TIMEOUT", "5s")
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;
    let mut stalled = RawSocket::connect(server.addr(), "/agent", "tok-alice", Some(4096))
        .await
        .unwrap();
    let ack = stalled
        .request("session:subscribe", json!({ "session_id": session }))
        .await
        .unwrap();
    assert_eq!(ack["ok"], true, "{ack}");
    // Far more than the socket's buffer and the kernel's: the rest waits in
    // the log for a catch-up.
    append_large(&server, &session, 12).await;

    let status = server.stop_with(Signal::SIGTERM).await;
    assert!(status.success(), "exit status {status:?}");
    server.wait_for_log(|l| l["message"] == "stopped").await;
    let dropped: Vec<_> = server
        .logs
        .all()
        .into_iter()
        .filter(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("at the shutdown timeout"))
        })
        .collect();
    assert!(dropped.is_empty(), "{dropped:?}");
    drop(stalled);
}
