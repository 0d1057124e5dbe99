//! HTTP connection timeouts (issue 12, item 5): the header timeout closes
//! idle, slowloris and idle kept-alive connections; the idle timeout closes
//! a connection whose client stalls a body or stops reading, but never a
//! long-poll or a quiet event stream.

use std::time::Duration;

use serde_json::json;

use super::*;
use crate::helpers::*;

#[tokio::test]
async fn idle_slowloris_and_idle_kept_alive_connections_are_closed_after_the_header_timeout() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_HEADER_TIMEOUT", "1s")
        .spawn()
        .await;
    let addr = server.addr();

    let mut idle = connect_from("127.0.0.1", addr).await;
    closed_by_server(&mut idle, "a connection that never sent a byte").await;

    // A header line every 200 ms: the head never completes.
    let mut slow = connect_from("127.0.0.1", addr).await;
    slow.write_all(b"GET /healthz HTTP/1.1\r\n").await.unwrap();
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    let mut buf = [0u8; 1024];
    let dripping = async {
        for i in 0.. {
            tokio::select! {
                _ = tick.tick() => {
                    if slow.write_all(format!("x-{i}: y\r\n").as_bytes()).await.is_err() {
                        return;
                    }
                }
                read = slow.read(&mut buf) => if matches!(read, Ok(0) | Err(_)) { return },
            }
        }
    };
    assert!(
        tokio::time::timeout(CLOSE_WAIT, dripping).await.is_ok(),
        "a slowloris connection is still open"
    );

    // A kept-alive connection is closed once it waits for a next request.
    let mut kept = connect_from("127.0.0.1", addr).await;
    kept.write_all(format!("GET /healthz HTTP/1.1\r\nHost: {addr}\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let response = closed_by_server(&mut kept, "an idle kept-alive connection").await;
    let response = RawResponse::parse(&response).expect("a response first");
    assert_eq!(response.status, 200);
    assert!(
        !response.head.contains("connection: close"),
        "{}",
        response.head
    );
}

#[tokio::test]
async fn a_stalled_body_upload_is_closed_after_the_idle_timeout() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_IDLE_TIMEOUT", "1s")
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;
    let mut upload = connect_from("127.0.0.1", server.addr()).await;
    let head = format!(
        "POST /v1/sessions/{session}/events HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer tok-alice\r\nContent-Type: application/json\r\n\
         Content-Length: 100000\r\n\r\n{{\"events\": [",
        server.addr()
    );
    upload.write_all(head.as_bytes()).await.unwrap();
    closed_by_server(&mut upload, "a connection whose body stopped coming").await;
}

#[tokio::test]
async fn a_response_nobody_reads_is_closed_after_the_idle_timeout() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_IDLE_TIMEOUT", "1s")
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;
    let socket = TcpSocket::new_v4().unwrap();
    socket.set_recv_buffer_size(4096).unwrap();
    let mut reader = socket.connect(server.addr()).await.unwrap();
    let request = format!(
        "GET /v1/sessions/{session}/stream HTTP/1.1\r\nHost: {}\r\n\
         Authorization: Bearer tok-alice\r\n\r\n",
        server.addr()
    );
    reader.write_all(request.as_bytes()).await.unwrap();
    // 8 MiB of events: more than the server's send buffer and the reader's
    // receive buffer hold together, so the server's writes wait.
    let message = "x".repeat(64 * 1024);
    for _ in 0..4 {
        let events: Vec<Value> = (0..32).map(|_| info(&message)).collect();
        let (status, body) = server
            .append("tok-alice", &session, json!({ "events": events }))
            .await;
        assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    }
    // Let the writes wait past the idle timeout (nothing to await: the
    // point is that time passes while the reader reads nothing).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let received = closed_by_server(&mut reader, "a stream nobody reads").await;
    assert!(received.len() < 8 * 1024 * 1024, "{} bytes", received.len());
}

#[tokio::test]
async fn long_polls_and_quiet_event_streams_outlive_the_idle_timeout() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_IDLE_TIMEOUT", "1s")
        .env("SWITCHBOARD_HEADER_TIMEOUT", "1s")
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;
    let mut polling = server
        .socket("/agent")
        .polling()
        .token("tok-alice")
        .connect()
        .await
        .expect("connected over polling");
    let ack = polling
        .request("session:subscribe", json!({ "session_id": session }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let stream = server
        .http
        .get(server.http(&format!("/v1/sessions/{session}/stream")))
        .bearer_auth("tok-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), reqwest::StatusCode::OK);
    let mut stream = stream.bytes_stream();

    // Both sit with nothing to say for longer than both timeouts (time
    // passing is the point here: there is no event to await).
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (status, body) = server
        .append("tok-alice", &session, json!({ "events": [info("late")] }))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");

    let event = polling.next("agent:event").await;
    assert_eq!(event["data"]["message"], "late");
    let sse = async {
        let mut seen = String::new();
        while let Some(Ok(chunk)) = stream.next().await {
            seen.push_str(&String::from_utf8_lossy(&chunk));
            if seen.contains("late") {
                return true;
            }
        }
        false
    };
    assert!(
        tokio::time::timeout(WAIT, sse).await.unwrap_or(false),
        "the event stream was cut"
    );
}
