//! New Engine.IO sessions (issue 12, item 2): handshakes limited per client
//! address and in total, refused with 429 before a session exists; sessions
//! that open no namespace closed after the connect timeout.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use reqwest::StatusCode;

use super::*;
use crate::helpers::*;

const HANDSHAKE: &str = "/socket.io/?EIO=4&transport=polling";

fn client_from(local: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .local_address(local.parse::<IpAddr>().unwrap())
        .build()
        .unwrap()
}

/// Opens a polling session: (status, sid when opened, response).
async fn handshake(client: &reqwest::Client, server: &TestServer) -> (StatusCode, Option<String>) {
    let response = client.get(server.http(HANDSHAKE)).send().await.unwrap();
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    let sid = body
        .strip_prefix('0')
        .and_then(|open| serde_json::from_str::<Value>(open).ok())
        .and_then(|open| open["sid"].as_str().map(str::to_owned));
    (status, sid)
}

#[tokio::test]
async fn handshakes_past_the_per_address_rate_get_429_while_another_address_gets_the_total() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_HANDSHAKE_RATE", "20/h")
        .env("SWITCHBOARD_HANDSHAKE_RATE_TOTAL", "30/h")
        .spawn()
        .await;
    let one = client_from("127.0.0.1");
    let mut first_sid = None;
    for i in 0..20 {
        let (status, sid) = handshake(&one, &server).await;
        assert_eq!(status, StatusCode::OK, "handshake {i}");
        first_sid = first_sid.or(sid);
    }
    let refused = one.get(server.http(HANDSHAKE)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(
        (1..=180).contains(&retry_after),
        "Retry-After: {retry_after}"
    );
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited", "{body}");
    assert!(body["error"]["retry_after_ms"].as_u64().unwrap() > 0);
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("from this address"), "{message}");

    // A session already open is not a handshake: its requests still pass.
    let sid = first_sid.expect("a sid");
    let poll = one
        .post(server.http(&format!("{HANDSHAKE}&sid={sid}")))
        .body("40/agent,{\"token\":\"tok-alice\"}")
        .send()
        .await
        .unwrap();
    assert_eq!(poll.status(), StatusCode::OK);

    // Another address has its own bucket, up to what is left of the total.
    let two = client_from("127.0.0.2");
    for i in 0..10 {
        let (status, _) = handshake(&two, &server).await;
        assert_eq!(status, StatusCode::OK, "handshake {i} from another address");
    }
    let refused = two.get(server.http(HANDSHAKE)).send().await.unwrap();
    assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
    let body: Value = refused.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("to this server"), "{message}");

    // Refusals are logged, but not each one.
    let warnings = server
        .logs
        .all()
        .into_iter()
        .filter(|l| l["message"] == "refused a Socket.IO handshake")
        .count();
    assert_eq!(warnings, 1, "{}", server.logs.text());
}

#[tokio::test]
async fn a_flood_of_handshakes_from_one_address_leaves_memory_bounded() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_HANDSHAKE_RATE", "100/h")
        .spawn()
        .await;
    let before = server.peak_rss_kib();
    let client = client_from("127.0.0.1");
    let (opened, refused) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let workers = (0..16).map(|_| {
        let (client, url) = (client.clone(), server.http(HANDSHAKE));
        let (opened, refused) = (opened.clone(), refused.clone());
        async move {
            for _ in 0..625 {
                let response = client.get(&url).send().await.unwrap();
                match response.status() {
                    StatusCode::OK => opened.fetch_add(1, Ordering::Relaxed),
                    StatusCode::TOO_MANY_REQUESTS => refused.fetch_add(1, Ordering::Relaxed),
                    other => panic!("unexpected {other}"),
                };
                let _ = response.bytes().await;
            }
        }
    });
    futures_util::future::join_all(workers).await;
    let grew = server.peak_rss_kib().saturating_sub(before);
    let (opened, refused) = (
        opened.load(Ordering::Relaxed),
        refused.load(Ordering::Relaxed),
    );
    eprintln!(
        "10,000 handshakes: {opened} opened, {refused} refused, peak RSS +{:.1} MiB",
        mib(grew)
    );
    assert!(opened <= 110, "{opened} sessions opened");
    assert!(
        mib(grew) < 24.0,
        "peak RSS grew by {:.0} MiB for a handshake flood",
        mib(grew)
    );
}

#[tokio::test]
async fn a_session_that_opens_no_namespace_is_closed_after_the_connect_timeout() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_CONNECT_TIMEOUT", "1s")
        .spawn()
        .await;

    let mut ws = engine_io_websocket(server.addr()).await;
    assert!(
        websocket_closed(&mut ws).await,
        "a WebSocket session without a namespace is still open"
    );

    let client = client_from("127.0.0.1");
    let (_, sid) = handshake(&client, &server).await;
    let poll = server.http(&format!("{HANDSHAKE}&sid={}", sid.expect("a sid")));
    let closed = async {
        loop {
            let response = client.get(&poll).send().await.unwrap();
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            // The close packet, or a session the server no longer knows.
            if status != StatusCode::OK || body.split('\u{1e}').any(|p| p == "1") {
                return;
            }
        }
    };
    assert!(
        tokio::time::timeout(CLOSE_WAIT, closed).await.is_ok(),
        "a polling session without a namespace is still open"
    );

    // A client that opens its namespace in time stays.
    let socket = server.agent("tok-alice").await;
    assert_eq!(
        socket.request("auth:whoami", serde_json::json!({})).await["ok"],
        true
    );
}
