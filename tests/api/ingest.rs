//! Producers over HTTP, and reading a session as JSON pages or Server-Sent
//! Events; retention (PROTOCOL §5, §4.3).

use futures_util::StreamExt;
use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn a_batch_is_stored_with_contiguous_seqs_and_retries_are_deduplicated() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    let batch = json!({ "events": [
        { "type": "output", "data": { "stream": "stdout", "data": "$ cargo test\n" }, "idempotency_key": "out-1" },
        { "type": "progress", "data": { "passing": 3, "total": 10 }, "idempotency_key": "prog-1" },
        { "type": "x.custom", "data": [1, "anything"] },
    ]});
    let (status, body) = server.append("tok-alice", &session, batch.clone()).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "first_seq": 1, "last_seq": 3, "duplicates": 0 })
    );

    // A producer retrying after a timeout: the keyed events are not stored again.
    let (status, body) = server.append("tok-alice", &session, batch).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(
        body,
        json!({ "first_seq": 4, "last_seq": 4, "duplicates": 2 })
    );

    // A key repeated inside one batch counts once.
    let twice = json!({ "events": [
        { "type": "info", "data": { "message": "a" }, "idempotency_key": "k" },
        { "type": "info", "data": { "message": "b" }, "idempotency_key": "k" },
    ]});
    let (_, body) = server.append("tok-alice", &session, twice).await;
    assert_eq!(
        body,
        json!({ "first_seq": 5, "last_seq": 5, "duplicates": 1 })
    );

    let (_, body) = server
        .get("tok-alice", &format!("/v1/sessions/{session}/events"))
        .await;
    let events = body["events"].as_array().unwrap();
    assert_eq!(events.len(), 5);
    assert_eq!(
        events[0]["data"],
        json!({ "stream": "stdout", "data": "$ cargo test\n" })
    );
    assert_eq!(events[2]["data"], json!([1, "anything"]));
    assert_eq!(events[4]["data"]["message"], "a");
}

#[tokio::test]
async fn a_batch_with_one_bad_event_is_refused_whole_naming_it() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    let cases = [
        (
            json!({ "type": "run.started", "data": {} }),
            "events[1].type",
        ),
        (
            json!({ "type": "output", "data": { "stream": "stdlog", "data": "x" } }),
            "events[1] (output): data.stream",
        ),
        (
            json!({ "type": "progress", "data": { "passing": "three" } }),
            "events[1] (progress): data.passing",
        ),
        (
            json!({ "type": "tool.result", "data": { "call_id": "c", "status": "maybe", "output": 1 } }),
            "events[1] (tool.result): data.status",
        ),
        (
            json!({ "type": "info", "data": { "message": "x" }, "idempotency_key": "" }),
            "events[1].idempotency_key",
        ),
    ];
    for (bad, named) in cases {
        let batch = json!({ "events": [info("fine"), bad] });
        let (status, body) = server.append("tok-alice", &session, batch).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_payload");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with(named),
            "{message:?} should name {named}"
        );
    }
    let (status, body) = server
        .append(
            "tok-alice",
            &session,
            json!({ "events": [{ "type": "info" }] }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"].as_str().unwrap().contains("data"),
        "{body}"
    );
    let (_, body) = server
        .get("tok-alice", &format!("/v1/sessions/{session}/events"))
        .await;
    assert_eq!(body["head_seq"], 0, "nothing was stored");
}

#[tokio::test]
async fn batches_past_the_limits_are_413() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    let (status, body) = server.append("tok-alice", &session, infos(1001, "")).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "too_large");

    let big = json!({ "events": [{ "type": "x.big", "data": "x".repeat(4 * 1024 * 1024) }] });
    let (status, body) = server.append("tok-alice", &session, big).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(body["error"]["code"], "too_large");

    let (status, body) = server.append("tok-alice", &session, infos(1000, "")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["last_seq"], 1000);
}

#[tokio::test]
async fn events_are_read_in_pages() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    server.append("tok-alice", &session, infos(25, "")).await;
    let (status, page) = server
        .get(
            "tok-alice",
            &format!("/v1/sessions/{session}/events?after_seq=5&limit=10"),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    let seqs = seqs(&page);
    assert_eq!(seqs, (6..=15).collect::<Vec<_>>());
    assert_eq!(page["next_after_seq"], 15);
    assert_eq!(page["head_seq"], 25);
    let (_, page) = server
        .get(
            "tok-alice",
            &format!("/v1/sessions/{session}/events?after_seq=15&limit=10"),
        )
        .await;
    assert_eq!(page["events"].as_array().unwrap().len(), 10);
    let (_, page) = server
        .get(
            "tok-alice",
            &format!("/v1/sessions/{session}/events?after_seq=25"),
        )
        .await;
    assert_eq!(page["events"], json!([]));
    assert!(page.get("next_after_seq").is_none());
}

/// Reads SSE frames (`id`, `event`, `data`) as they arrive.
struct SseReader {
    body: std::pin::Pin<Box<dyn futures_util::Stream<Item = reqwest::Result<bytes::Bytes>> + Send>>,
    buffer: String,
}

impl SseReader {
    async fn open(
        server: &TestServer,
        session: &str,
        last_event_id: Option<&str>,
        query: &str,
    ) -> (StatusCode, Self) {
        let mut request = server
            .http
            .get(server.http(&format!("/v1/sessions/{session}/stream{query}")))
            .bearer_auth("tok-alice");
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        if status == StatusCode::OK {
            assert_eq!(response.headers()["content-type"], "text/event-stream");
        }
        (
            status,
            Self {
                body: Box::pin(response.bytes_stream()),
                buffer: String::new(),
            },
        )
    }

    /// The next frame, comments included (as `(":", text)`).
    async fn frame(&mut self) -> Vec<(String, String)> {
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let frame: String = self.buffer.drain(..end + 2).collect();
                return frame
                    .lines()
                    .filter(|l| !l.is_empty())
                    .map(|l| match l.strip_prefix(':') {
                        Some(comment) => (":".to_owned(), comment.trim().to_owned()),
                        None => {
                            let (k, v) = l.split_once(':').unwrap_or((l, ""));
                            (k.to_owned(), v.trim_start().to_owned())
                        }
                    })
                    .collect();
            }
            let chunk = tokio::time::timeout(WAIT, self.body.next())
                .await
                .expect("an SSE frame in time")
                .expect("stream open")
                .unwrap();
            self.buffer.push_str(&String::from_utf8_lossy(&chunk));
        }
    }

    /// The next event frame: (id, envelope).
    async fn event(&mut self) -> (String, Value) {
        loop {
            let frame = self.frame().await;
            let get = |k: &str| {
                frame
                    .iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
            };
            if let (Some(id), Some(data)) = (get("id"), get("data")) {
                return (id, serde_json::from_str(&data).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn the_sse_stream_resumes_after_last_event_id_then_goes_live() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    server.append_infos("tok-alice", &session, 6).await;

    let (status, mut stream) = SseReader::open(&server, &session, Some("4"), "?after_seq=1").await;
    assert_eq!(status, StatusCode::OK);
    for seq in [5, 6] {
        let (id, event) = stream.event().await;
        assert_eq!(id, seq.to_string(), "Last-Event-ID wins over ?after_seq=");
        assert_eq!(event["seq"], seq);
    }
    server.append_infos("tok-alice", &session, 1).await;
    let (id, event) = stream.event().await;
    assert_eq!((id.as_str(), event["seq"].as_i64()), ("7", Some(7)));

    let (_, mut from_query) = SseReader::open(&server, &session, None, "?after_seq=5").await;
    assert_eq!(from_query.event().await.0, "6");

    let (status, _) = SseReader::open(&server, &session, Some("99"), "").await;
    assert_eq!(status, StatusCode::CONFLICT);
    let (status, _) = SseReader::open(&server, &session, Some("soon"), "").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn an_idle_sse_stream_gets_keep_alive_comments() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_SSE_KEEP_ALIVE", "200ms")
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;
    let (_, mut stream) = SseReader::open(&server, &session, None, "").await;
    let frame = stream.frame().await;
    assert_eq!(frame[0].0, ":", "a comment: {frame:?}");
}

#[tokio::test]
async fn retention_by_count_never_renumbers_and_says_what_was_pruned() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_RETENTION_MAX_EVENTS", "10")
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;
    server.append("tok-alice", &session, infos(25, "")).await;

    let (_, page) = server
        .get(
            "tok-alice",
            &format!("/v1/sessions/{session}/events?after_seq=3"),
        )
        .await;
    assert_eq!(page["truncated"], true);
    assert_eq!(page["first_seq"], 16);
    let seqs = seqs(&page);
    assert_eq!(seqs, (16..=25).collect::<Vec<_>>());

    let mut socket = server.agent("tok-alice").await;
    let ack = socket
        .request(
            "session:subscribe",
            json!({ "session_id": session, "after_seq": 0 }),
        )
        .await;
    assert_eq!(ack["truncated"], true);
    assert_eq!(ack["first_seq"], 16);
    socket.events_after(15, 10).await;

    // Asking only for what is still stored is not truncated.
    let ack = socket
        .request(
            "session:subscribe",
            json!({ "session_id": session, "after_seq": 15 }),
        )
        .await;
    assert!(ack.get("truncated").is_none(), "{ack}");
    let (_, page) = server
        .get(
            "tok-alice",
            &format!("/v1/sessions/{session}/events?after_seq=20"),
        )
        .await;
    assert!(page.get("truncated").is_none());

    // New events keep counting on.
    let (_, body) = server
        .append("tok-alice", &session, json!({ "events": [info("next")] }))
        .await;
    assert_eq!(body["first_seq"], 26);
}

#[tokio::test]
async fn retention_by_age_prunes_old_events() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_RETENTION_MAX_AGE", "300ms")
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;
    server.append_infos("tok-alice", &session, 3).await;
    // The pruner runs every 150 ms; wait for it to report the pruned window.
    let page = tokio::time::timeout(WAIT, async {
        loop {
            let (_, page) = server
                .get("tok-alice", &format!("/v1/sessions/{session}/events"))
                .await;
            // All three are older than the limit once the pruner ran after
            // the last append.
            if page["first_seq"] == 4 {
                return page;
            }
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("pruned in time");
    assert_eq!(page["truncated"], true);
    assert_eq!(page["events"], json!([]));
    assert_eq!(page["head_seq"], 3);
}
