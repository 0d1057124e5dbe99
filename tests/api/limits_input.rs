//! What clients send is bounded before it is stored (issue 12): nesting,
//! text PostgreSQL cannot hold, producer type names, user ids that could
//! forge log lines, per-user quotas on sessions and ingest, and the log
//! lines a flood of refused clients can cause.

use std::time::Instant;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

/// `[[…]]` nested `depth` deep.
fn nested(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// `POST …/events` with a raw body: (status, body).
async fn append_raw(server: &TestServer, session: &str, body: String) -> (StatusCode, Value) {
    let response = server
        .http
        .post(server.http(&format!("/v1/sessions/{session}/events")))
        .bearer_auth("tok-alice")
        .header("content-type", "application/json")
        .body(body)
        .send()
        .await
        .expect("append");
    let status = response.status();
    (status, response.json().await.unwrap_or(Value::Null))
}

async fn head_seq(server: &TestServer, session: &str) -> i64 {
    let (_, body) = server
        .get("tok-alice", &format!("/v1/sessions/{session}"))
        .await;
    body["session"]["head_seq"].as_i64().expect("head_seq")
}

#[tokio::test]
async fn producer_data_nested_deeper_than_64_or_with_a_lone_surrogate_is_refused_and_not_stored() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;

    let (status, body) = append_raw(
        &server,
        &session,
        format!(r#"{{"events":[{{"type":"x.ok","data":{}}}]}}"#, nested(64)),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "64 levels are accepted: {body}");

    // 100,000 levels: more than serde_json itself parses, so more than any
    // serde_json reader of the log could read back.
    for depth in [65, 100_000] {
        let batch = format!(
            r#"{{"events":[{{"type":"info","data":{{"message":"fine"}}}},{{"type":"x.deep","data":{}}}]}}"#,
            nested(depth)
        );
        let (status, body) = append_raw(&server, &session, batch).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_eq!(body["error"]["code"], "invalid_payload");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("events[1].data") && message.contains("64"),
            "{message}"
        );
    }

    for text in [r#""\ud800""#, r#"{"\udc00": 1}"#] {
        let batch = format!(r#"{{"events":[{{"type":"x.text","data":{text}}}]}}"#);
        let (status, body) = append_raw(&server, &session, batch).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{text}: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .starts_with("events[0].data"),
            "{body}"
        );
    }
    let (status, _) = append_raw(
        &server,
        &session,
        r#"{"events":[{"type":"x.text","data":"\ud83d\ude00"}]}"#.into(),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "a surrogate pair is text");

    assert_eq!(
        head_seq(&server, &session).await,
        2,
        "only the valid events"
    );
}

#[tokio::test]
async fn session_metadata_nested_deeper_than_64_is_refused_over_http_and_socket_io() {
    let server = ServerBuilder::with_auth().spawn().await;
    let deep: Value = serde_json::from_str(&nested(65)).unwrap();
    let (status, body) = server
        .post(
            "tok-alice",
            "/v1/sessions",
            &json!({ "metadata": { "tree": deep } }),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("metadata"),
        "{body}"
    );

    let socket = server.agent("tok-alice").await;
    let ack = socket
        .request("session:create", json!({ "metadata": { "tree": deep } }))
        .await;
    assert_eq!(ack["error"]["code"], "invalid_payload", "{ack}");
    let ack = socket.request("session:list", json!({})).await;
    assert_eq!(ack["sessions"], json!([]), "nothing was created");
}

#[tokio::test]
async fn nul_in_a_title_or_an_idempotency_key_is_refused_as_invalid_payload() {
    // The same on SQLite and PostgreSQL (CI runs this suite on both), where
    // PostgreSQL cannot store U+0000 in a text column at all.
    let server = ServerBuilder::with_auth().spawn().await;
    let socket = server.agent("tok-alice").await;
    let ack = socket
        .request("session:create", json!({ "title": "a\u{0}b" }))
        .await;
    assert_eq!(ack["ok"], false);
    assert_eq!(ack["error"]["code"], "invalid_payload");
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("title"),
        "{ack}"
    );
    let (status, _) = server
        .post("tok-alice", "/v1/sessions", &json!({ "title": "\u{0}" }))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);

    let session = server.create_session("tok-alice").await;
    let (status, body) = server
        .append(
            "tok-alice",
            &session,
            json!({ "events": [
                { "type": "info", "data": { "message": "NUL inside JSON data is fine: \u{0}" } },
                { "type": "info", "data": { "message": "x" }, "idempotency_key": "k\u{0}" },
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .starts_with("events[1].idempotency_key"),
        "{body}"
    );
    let (status, body) = server
        .append(
            "tok-alice",
            &session,
            json!({ "events": [{ "type": "info", "data": { "message": "NUL: \u{0}" } }] }),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (_, page) = server
        .get("tok-alice", &format!("/v1/sessions/{session}/events"))
        .await;
    assert_eq!(page["events"][0]["data"]["message"], "NUL: \u{0}");
}

#[tokio::test]
async fn producer_type_names_are_bounded_in_length_and_alphabet() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    let longest = format!("x.{}", "a".repeat(126));
    let (status, body) = server
        .append(
            "tok-alice",
            &session,
            json!({ "events": [
                { "type": longest, "data": 1 },
                { "type": "x.claude-code/tool_use:v1", "data": 2 },
            ]}),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    let megabyte = format!("x.{}", "a".repeat(1024 * 1024));
    for kind in [
        format!("x.{}", "a".repeat(127)),
        megabyte,
        "x.with space".into(),
        "x.line\nbreak".into(),
        "x.".into(),
    ] {
        let (status, body) = server
            .append(
                "tok-alice",
                &session,
                json!({ "events": [{ "type": kind, "data": 1 }] }),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with("events[0].type"), "{message}");
        assert!(message.len() < 1024, "the refusal does not echo a megabyte");
    }
    assert_eq!(head_seq(&server, &session).await, 2);
}

#[tokio::test]
async fn a_signed_jwt_whose_subject_could_forge_log_lines_is_refused() {
    let mut server = ServerBuilder::with_auth().spawn().await;
    let forged = json!({ "sub": "alice\n INFO fake log line", "exp": now() + 3600 });
    let huge = json!({ "sub": "a".repeat(100 * 1024), "exp": now() + 3600 });
    for claims in [forged, huge] {
        let token = jwt(claims);
        let err = server
            .socket("/agent")
            .token(&token)
            .connect()
            .await
            .err()
            .expect("refused");
        assert_eq!(err, "unauthorized: invalid_token");
        let (status, _) = server.get(&token, "/v1/sessions").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    server
        .wait_for_log(|l| l["message"] == "handshake" && l["outcome"] == "refused")
        .await;
    let logs = server.logs.text();
    assert!(!logs.contains("fake log line"), "{logs}");
    assert!(
        !logs.contains(&"a".repeat(1024)),
        "a 100 KB subject was logged"
    );
    // Every line the server wrote is one JSON object.
    for line in server.logs.all() {
        assert!(line.is_object(), "not a log line of its own: {line}");
    }
}

#[tokio::test]
async fn a_flood_of_refused_clients_writes_a_bounded_number_of_log_lines() {
    let server = ServerBuilder::with_auth().spawn().await;
    let started = Instant::now();
    for _ in 0..1_000 {
        let (status, _) = server.get("tok-wrong", "/v1/sessions").await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
    }
    let elapsed = started.elapsed().as_secs() + 1;
    // The one that follows the flood is logged with the count of those left out.
    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    let (status, _) = server.get("tok-wrong", "/v1/sessions").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    let lines: Vec<Value> = server
        .logs
        .all()
        .into_iter()
        .filter(|l| l["message"] == "http authentication")
        .collect();
    // A burst of 200, then 20 a second.
    let bound = 200 + 20 * elapsed as usize;
    assert!(
        lines.len() < 1_000 && lines.len() <= bound,
        "{} refusal lines for 1,001 refusals in {elapsed} s",
        lines.len()
    );
    let suppressed: u64 = lines
        .iter()
        .map(|l| l["suppressed"].as_u64().unwrap_or(0))
        .sum();
    assert_eq!(
        lines.len() as u64 + suppressed,
        1_001,
        "every refusal is either logged or counted in a later line"
    );
}

#[tokio::test]
async fn sessions_are_limited_per_user_in_rate_and_in_number() {
    // The default rate: 60 a minute per user. Before, 5,000 took 2.3 s.
    let server = ServerBuilder::with_auth().spawn().await;
    let socket = server.agent("tok-alice").await;
    let mut created = 0;
    let mut refused = None;
    let began = std::time::Instant::now();
    for _ in 0..100 {
        let ack = socket.request("session:create", json!({})).await;
        if ack["ok"] == true {
            created += 1;
        } else {
            refused = Some(ack);
        }
    }
    // The burst of 60, plus the one a second that refilled meanwhile (on
    // a loaded machine the 100 requests can take more than a second).
    let refilled = began.elapsed().as_secs() + 1;
    assert!(
        (60..=60 + refilled).contains(&created),
        "{created} sessions created in {:?}",
        began.elapsed()
    );
    let refused = refused.expect("refusals");
    assert_eq!(refused["error"]["code"], "rate_limited");
    let retry = refused["error"]["retry_after_ms"]
        .as_u64()
        .expect("a retry hint");
    assert!(retry > 0 && retry <= 1_000, "one session a second: {retry}");
    let response = server
        .http
        .post(server.http("/v1/sessions"))
        .bearer_auth("tok-alice")
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    assert!(response.headers().contains_key("retry-after"));
    // Another user has a budget of their own.
    let bob = server.agent("tok-bob").await;
    assert_eq!(bob.request("session:create", json!({})).await["ok"], true);

    // And a number of sessions owned.
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_MAX_SESSIONS_PER_USER", "3")
        .spawn()
        .await;
    for _ in 0..3 {
        server.create_session("tok-alice").await;
    }
    let (status, body) = server.post("tok-alice", "/v1/sessions", &json!({})).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SWITCHBOARD_MAX_SESSIONS_PER_USER"),
        "{body}"
    );
    let (_, list) = server.get("tok-alice", "/v1/sessions").await;
    assert_eq!(list["sessions"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn ingest_is_limited_per_user_in_events_and_bytes_with_a_retry_hint() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_INGEST_RATE", "1500/min")
        .env("SWITCHBOARD_INGEST_BYTES_RATE", "6MiB/min")
        .spawn()
        .await;
    let session = server.create_session("tok-alice").await;
    let (status, _) = server
        .append("tok-alice", &session, infos(1_000, "a"))
        .await;
    assert_eq!(status, StatusCode::OK);
    // 1,000 more than the 500 events left.
    let response = server
        .http
        .post(server.http(&format!("/v1/sessions/{session}/events")))
        .bearer_auth("tok-alice")
        .json(&infos(1_000, "b"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
    let retry: u64 = response.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&retry), "Retry-After: {retry}");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limited");
    assert!(body["error"]["retry_after_ms"].as_u64().unwrap() > 0);
    assert_eq!(head_seq(&server, &session).await, 1_000, "nothing stored");

    // Bytes: two 4 MiB batches fit in 6 MiB a minute only once.
    let big = "x".repeat(4 * 1024 * 1024 - 1024);
    let batch = json!({ "events": [{ "type": "x.blob", "data": big }] });
    let bobs = server.create_session("tok-bob").await;
    let (status, _) = server.append("tok-bob", &bobs, batch.clone()).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = server.append("tok-bob", &bobs, batch).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{body}");
    assert!(
        body["error"]["message"].as_str().unwrap().contains("bytes"),
        "{body}"
    );
}

#[tokio::test]
async fn requests_past_a_sockets_budget_are_answered_rate_limited_and_others_are_unaffected() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_REQUEST_RATE", "10/min")
        .spawn()
        .await;
    let socket = server.agent("tok-alice").await;
    let mut answers = Vec::new();
    for i in 0..15 {
        let event = if i % 2 == 0 { "auth:whoami" } else { "no:such" };
        answers.push(socket.request(event, json!({})).await);
    }
    let refused: Vec<&Value> = answers
        .iter()
        .filter(|a| a["error"]["code"] == "rate_limited")
        .collect();
    assert_eq!(refused.len(), 5, "{answers:?}");
    assert!(
        answers[..10]
            .iter()
            .all(|a| a["error"]["code"] != "rate_limited")
    );
    let retry = refused[0]["error"]["retry_after_ms"].as_u64().unwrap();
    assert!(
        retry > 0 && retry <= 6_000,
        "one request every 6 s: {retry}"
    );
    // Another connection, even of the same user, has a budget of its own.
    let other = server.agent("tok-alice").await;
    assert_eq!(other.request("auth:whoami", json!({})).await["ok"], true);
    // The refused requests did nothing: nor did the socket go away.
    let ack = socket.request("session:create", json!({})).await;
    assert_eq!(ack["error"]["code"], "rate_limited", "{ack}");
    let ack = other.request("session:list", json!({})).await;
    assert_eq!(ack["sessions"], json!([]));
}

#[tokio::test]
async fn a_connection_subscribes_to_at_most_256_sessions() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_SESSION_RATE", "unlimited")
        .env("SWITCHBOARD_REQUEST_RATE", "unlimited")
        .spawn()
        .await;
    let socket = server.agent("tok-alice").await;
    let mut sessions = Vec::new();
    for _ in 0..257 {
        sessions.push(server.create_session("tok-alice").await);
    }
    for session in &sessions[..256] {
        let ack = socket
            .request("session:subscribe", json!({ "session_id": session }))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    let ack = socket
        .request("session:subscribe", json!({ "session_id": sessions[256] }))
        .await;
    assert_eq!(ack["error"]["code"], "conflict", "{ack}");
    // Subscribing again to one it has is no new subscription.
    let ack = socket
        .request(
            "session:subscribe",
            json!({ "session_id": sessions[0], "after_seq": 0 }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = socket
        .request("session:unsubscribe", json!({ "session_id": sessions[0] }))
        .await;
    assert_eq!(ack["ok"], true);
    let ack = socket
        .request("session:subscribe", json!({ "session_id": sessions[256] }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

#[tokio::test]
async fn a_body_over_the_limit_is_refused_with_a_json_413_before_it_is_read() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_MAX_BODY_BYTES", "1024")
        .spawn()
        .await;
    let response = server
        .http
        .post(server.http("/v1/sessions"))
        .bearer_auth("tok-alice")
        .header("content-type", "application/json")
        .body(format!(r#"{{"title":"{}"}}"#, "x".repeat(4096)))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let body: Value = response.json().await.expect("a JSON error");
    assert_eq!(body["error"]["code"], "too_large");
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SWITCHBOARD_MAX_BODY_BYTES"),
        "{body}"
    );
}

#[tokio::test]
async fn handshake_log_lines_name_the_client_address() {
    let mut server = ServerBuilder::with_auth().spawn().await;
    let socket = server.agent("tok-alice").await;
    let line = server
        .wait_for_log(|l| l["message"] == "handshake" && l["outcome"] == "accepted")
        .await;
    assert_eq!(line["client"], "127.0.0.1", "{line}");
    socket.disconnect().await;
    let _ = server.socket("/agent").token("tok-wrong").connect().await;
    let line = server
        .wait_for_log(|l| l["message"] == "handshake" && l["outcome"] == "refused")
        .await;
    assert_eq!(line["client"], "127.0.0.1", "{line}");
}

#[tokio::test]
async fn an_admin_reads_a_users_session_but_cannot_append_to_it() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    let admin = jwt(json!({ "sub": "root", "exp": now() + 600, "role": "admin" }));
    let (status, body) = server
        .append(&admin, &session, json!({ "events": [info("from root")] }))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    let (status, page) = server
        .get(&admin, &format!("/v1/sessions/{session}/events"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(page["events"], json!([]), "nothing was appended");
    let (status, _) = server
        .append("tok-alice", &session, json!({ "events": [info("mine")] }))
        .await;
    assert_eq!(status, StatusCode::OK);
}
