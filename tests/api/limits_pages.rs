//! Pages, catch-up batches and buffers bounded by bytes (issue 12, item 7):
//! however large a session's events and messages, a reader costs the server
//! about a page of them, never the whole log, and still gets every one of
//! them once, in order.
//!
//! Memory is the server process's peak RSS above what it held when the
//! measured part began (the kernel's high-water mark is reset then).

// Also loaded by `log.rs`, whose module is private to it.
#[allow(clippy::duplicate_mod)]
#[path = "../support/raw_client.rs"]
mod raw_client;

use raw_client::RawSocket;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// The default `SWITCHBOARD_MAX_PAGE_BYTES`.
const PAGE_BYTES: usize = 4 << 20;
/// The data of one large event; three fit in one ingest request.
pub(crate) const EVENT_BYTES: usize = 1 << 20;
/// Large events in a session: 48 MiB.
const EVENTS: usize = 48;
const MIB: u64 = 1024;

/// A server whose ingest is not rate-limited (these tests append a lot at
/// once), and whose allocator gives every large buffer back to the system
/// when it is freed, so that RSS shows what the server holds rather than
/// what glibc keeps for later.
pub(crate) fn server() -> ServerBuilder {
    ServerBuilder::with_auth()
        .env("GLIBC_TUNABLES", "glibc.malloc.mmap_threshold=131072")
        .env("SWITCHBOARD_INGEST_RATE", "unlimited")
        .env("SWITCHBOARD_INGEST_BYTES_RATE", "unlimited")
        .env("SWITCHBOARD_EXECUTE_RATE", "unlimited")
}

/// The server's peak resident memory since [`Peak::start`], above what it
/// held then.
pub(crate) struct Peak {
    base_kib: u64,
}

impl Peak {
    /// Resets the server's high-water mark to its RSS now (`clear_refs` 5).
    pub(crate) fn start(server: &TestServer) -> Self {
        std::fs::write(format!("/proc/{}/clear_refs", server.pid()), "5")
            .expect("reset the server's peak RSS");
        Self {
            base_kib: server.rss_kib(),
        }
    }

    pub(crate) fn growth_mib(&self, server: &TestServer) -> u64 {
        server.peak_rss_kib().saturating_sub(self.base_kib) / MIB
    }
}

fn large(i: usize) -> Value {
    json!({ "type": "x.large", "data": { "i": i, "blob": "x".repeat(EVENT_BYTES) } })
}

/// Appends `count` large events, three per request.
pub(crate) async fn append_large(server: &TestServer, session: &str, count: usize) {
    let mut i = 0;
    while i < count {
        let n = 3.min(count - i);
        let events: Vec<Value> = (i..i + n).map(large).collect();
        let (status, body) = server
            .append("tok-alice", session, json!({ "events": events }))
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        i += n;
    }
}

/// Fills the SQLite page cache of the log's writer connection (64 MiB of
/// pages), which large appends grow whatever the log keeps, so that what a
/// test measures afterwards is what the log itself holds. SQLite empties
/// that cache when another connection writes (a session is created): create
/// sessions first.
pub(crate) async fn warm_up(server: &TestServer, session: &str) {
    append_large(server, session, 81).await;
}

/// `GET` a path: (status, body bytes).
async fn get_bytes(server: &TestServer, path: &str) -> (StatusCode, bytes::Bytes) {
    let response = server
        .http
        .get(server.http(path))
        .bearer_auth("tok-alice")
        .send()
        .await
        .expect("get");
    (response.status(), response.bytes().await.expect("body"))
}

/// The `seq` of an `agent:event` packet's text, read without parsing the
/// (large) rest of it.
pub(crate) fn seq_of(packet: &str) -> i64 {
    assert!(packet.starts_with(r#"["agent:event",{"#), "{:.80}", packet);
    let at = packet.find(r#""seq":"#).expect("a seq") + 6;
    packet[at..]
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .expect("a number")
}

#[tokio::test]
async fn a_page_of_large_events_holds_at_most_a_page_of_bytes_and_paging_returns_each_once_in_order()
 {
    let server = server().spawn().await;
    let session = server.create_session("tok-alice").await;
    append_large(&server, &session, EVENTS).await;

    // One request for up to 1,000 events gets a page of bytes.
    let peak = Peak::start(&server);
    let path = format!("/v1/sessions/{session}/events?limit=1000");
    let (status, body) = get_bytes(&server, &path).await;
    let growth = peak.growth_mib(&server);
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.len() <= PAGE_BYTES + EVENT_BYTES && growth < 30,
        "a page of {} bytes took the server's RSS up by {growth} MiB",
        body.len()
    );

    // Following next_after_seq: every event once, in order.
    let peak = Peak::start(&server);
    let mut seen = Vec::new();
    let mut after = 0;
    let mut pages = 0;
    loop {
        let path = format!("/v1/sessions/{session}/events?after_seq={after}&limit=1000");
        let (status, body) = get_bytes(&server, &path).await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            body.len() <= PAGE_BYTES + EVENT_BYTES,
            "a page of {} bytes",
            body.len()
        );
        let page: Value = serde_json::from_slice(&body).unwrap();
        for event in page["events"].as_array().unwrap() {
            assert_eq!(
                event["data"]["i"],
                seen.len(),
                "the data of seq {}",
                event["seq"]
            );
            seen.push(event["seq"].as_i64().unwrap());
        }
        pages += 1;
        match page["next_after_seq"].as_i64() {
            Some(next) => {
                assert_eq!(
                    Some(&next),
                    seen.last(),
                    "next_after_seq is the page's last seq"
                );
                after = next;
            }
            None => break,
        }
    }
    let growth = peak.growth_mib(&server);
    assert_eq!(seen, (1..=EVENTS as i64).collect::<Vec<_>>());
    assert!(pages > 1, "{EVENTS} MiB came in one page");
    assert!(
        growth < 30,
        "paging took the server's RSS up by {growth} MiB"
    );
}

#[tokio::test]
async fn four_subscribers_catching_up_from_the_start_over_large_events_get_each_once_in_order_with_bounded_memory()
 {
    let server = server().spawn().await;
    let session = server.create_session("tok-alice").await;
    append_large(&server, &session, EVENTS).await;
    // Then more small events than a session keeps in memory: catching up
    // from the start reads the large ones from the database.
    for tag in ["a", "b"] {
        let (status, _) = server.append("tok-alice", &session, infos(512, tag)).await;
        assert_eq!(status, StatusCode::OK);
    }
    let total = EVENTS + 1024;

    let mut subscribers = Vec::new();
    for _ in 0..4 {
        let socket = RawSocket::connect(server.addr(), "/agent", "tok-alice", None)
            .await
            .unwrap();
        subscribers.push(socket);
    }
    let peak = Peak::start(&server);
    let catch_ups = subscribers.into_iter().map(|mut socket| {
        let session = session.clone();
        tokio::spawn(async move {
            let ack = socket
                .request("session:subscribe", json!({ "session_id": session }))
                .await
                .unwrap();
            assert_eq!(ack["head_seq"], total, "{ack}");
            let mut seqs = Vec::new();
            while seqs.len() < total {
                let packet = tokio::time::timeout(WAIT, socket.next_event_text())
                    .await
                    .expect("the next event in time")
                    .unwrap();
                seqs.push(seq_of(&packet));
            }
            seqs
        })
    });
    for seqs in futures_util::future::join_all(catch_ups).await {
        assert_eq!(seqs.unwrap(), (1..=total as i64).collect::<Vec<_>>());
    }
    let growth = peak.growth_mib(&server);
    assert!(
        growth < 60,
        "four catch-ups took the server's RSS up by {growth} MiB"
    );
}

#[tokio::test]
async fn a_session_taking_large_events_keeps_only_a_bounded_tail_of_them_in_memory() {
    let server = server().spawn().await;
    let session = server.create_session("tok-alice").await;
    warm_up(&server, &session).await;

    // The session's log stays active (and keeps its tail) between appends.
    let peak = Peak::start(&server);
    append_large(&server, &session, EVENTS).await;
    let growth = peak.growth_mib(&server);
    assert!(
        growth < 30,
        "{EVENTS} MiB of events took the server's RSS up by {growth} MiB"
    );
}

#[tokio::test]
async fn an_sse_reader_over_large_events_gets_them_all_in_order_with_bounded_memory() {
    let server = server().spawn().await;
    let other = server.create_session("tok-alice").await;
    let session = server.create_session("tok-alice").await;
    let response = server
        .http
        .get(server.http(&format!("/v1/sessions/{session}/stream")))
        .bearer_auth("tok-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);

    // The reader reads nothing while the events are appended.
    warm_up(&server, &other).await;
    let peak = Peak::start(&server);
    append_large(&server, &session, EVENTS).await;
    let growth_appending = peak.growth_mib(&server);

    let mut body = response.bytes_stream();
    let mut buffer = Vec::new();
    let mut seqs = Vec::new();
    while seqs.len() < EVENTS {
        let chunk = tokio::time::timeout(WAIT, futures_util::StreamExt::next(&mut body))
            .await
            .expect("SSE bytes in time")
            .expect("the stream open")
            .unwrap();
        buffer.extend_from_slice(&chunk);
        while let Some(end) = buffer.windows(2).position(|w| w == b"\n\n") {
            let frame: Vec<u8> = buffer.drain(..end + 2).collect();
            let frame = String::from_utf8(frame).unwrap();
            if let Some(id) = frame.lines().find_map(|l| l.strip_prefix("id:")) {
                let data = frame.lines().find_map(|l| l.strip_prefix("data:")).unwrap();
                let seq: i64 = id.trim().parse().unwrap();
                assert_eq!(seq_of(&format!(r#"["agent:event",{}"#, data.trim())), seq);
                seqs.push(seq);
            }
        }
    }
    let growth = peak.growth_mib(&server);
    assert_eq!(seqs, (1..=EVENTS as i64).collect::<Vec<_>>());
    assert!(
        growth_appending < 40 && growth < 40,
        "an SSE stream took the server's RSS up by {growth_appending} MiB while \
         its reader waited, {growth} MiB in all"
    );
}

/// A user message of `bytes` that the scripted model answers `Done.`.
fn long_message(bytes: usize) -> String {
    let mut text = String::from("/sleep 0");
    text.push_str(&"x".repeat(bytes - text.len()));
    text
}

#[tokio::test]
async fn a_page_of_large_messages_holds_at_most_a_page_of_bytes_over_socket_io_and_http() {
    const PAGE: usize = 1 << 20;
    const MESSAGE: usize = 512 * 1024;
    const RUNS: usize = 24;
    let server = server()
        .env("SWITCHBOARD_MAX_PAGE_BYTES", &PAGE.to_string())
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;
    let mut socket = RawSocket::connect(server.addr(), "/agent", "tok-alice", None)
        .await
        .unwrap();
    socket
        .request("session:subscribe", json!({ "session_id": session }))
        .await
        .unwrap();
    for _ in 0..RUNS {
        let ack = socket
            .request(
                "agent:execute",
                json!({ "session_id": session, "content": long_message(MESSAGE) }),
            )
            .await
            .unwrap();
        assert_eq!(ack["ok"], true, "{ack}");
        loop {
            let packet = tokio::time::timeout(WAIT, socket.next_event())
                .await
                .expect("the run's events in time")
                .unwrap();
            if packet.1["type"] == "run.finished" {
                break;
            }
        }
    }
    // Newest first: "Done.", the long message, "Done.", …
    let expected: Vec<usize> = (0..2 * RUNS)
        .map(|i| if i % 2 == 0 { 5 } else { MESSAGE })
        .collect();

    // Over Socket.IO.
    let peak = Peak::start(&server);
    let mut lengths = Vec::new();
    let mut largest = 0;
    let mut before: Option<String> = None;
    loop {
        let mut request = json!({ "session_id": session, "limit": 500 });
        if let Some(before) = &before {
            request["before"] = json!(before);
        }
        let ack = socket.request("session:messages", request).await.unwrap();
        assert_eq!(ack["ok"], true, "{ack}");
        largest = largest.max(ack.to_string().len());
        let messages = ack["messages"].as_array().unwrap();
        lengths.extend(
            messages
                .iter()
                .map(|m| m["content"].as_str().unwrap().len()),
        );
        match ack["next_before"].as_str() {
            Some(next) => {
                assert_eq!(messages.last().unwrap()["id"], next);
                before = Some(next.to_owned());
            }
            None => break,
        }
    }
    let growth = peak.growth_mib(&server);
    assert!(
        largest <= PAGE + MESSAGE && growth < 12,
        "session:messages: pages of up to {largest} bytes took the server's RSS up by {growth} MiB"
    );
    assert_eq!(lengths, expected, "every message once, newest first");

    // Over HTTP.
    let peak = Peak::start(&server);
    let mut lengths = Vec::new();
    let mut largest = 0;
    let mut query = String::new();
    loop {
        let path = format!("/v1/sessions/{session}/messages?limit=500{query}");
        let (status, body) = get_bytes(&server, &path).await;
        assert_eq!(status, StatusCode::OK);
        largest = largest.max(body.len());
        let page: Value = serde_json::from_slice(&body).unwrap();
        let messages = page["messages"].as_array().unwrap();
        lengths.extend(
            messages
                .iter()
                .map(|m| m["content"].as_str().unwrap().len()),
        );
        match page["next_before"].as_str() {
            Some(next) => query = format!("&before={next}"),
            None => break,
        }
    }
    let growth = peak.growth_mib(&server);
    assert!(
        largest <= PAGE + MESSAGE && growth < 12,
        "GET messages: pages of up to {largest} bytes took the server's RSS up by {growth} MiB"
    );
    assert_eq!(lengths, expected, "every message once, newest first");
}
