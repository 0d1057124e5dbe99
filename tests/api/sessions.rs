//! Sessions over Socket.IO and HTTP: create, list, get, messages, who may
//! see them, and how malformed requests are answered (PROTOCOL §3, §4.1, §4.2).

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::helpers::*;

#[tokio::test]
async fn sessions_are_created_listed_newest_first_and_paginated() {
    let server = ServerBuilder::with_auth().spawn().await;
    let socket = server.agent("tok-alice").await;
    let mut ids = Vec::new();
    for i in 0..5 {
        let ack = socket
            .request(
                "session:create",
                json!({ "title": format!("s{i}"), "metadata": { "n": i } }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        let session = &ack["session"];
        assert_eq!(session["owner"], "alice");
        assert_eq!(session["status"], "idle");
        assert_eq!(session["head_seq"], 0);
        assert_eq!(session["metadata"], json!({ "n": i }));
        for field in ["id", "created_at", "updated_at"] {
            assert!(session[field].is_string(), "{field} in {session}");
        }
        ids.push(session["id"].as_str().unwrap().to_owned());
    }
    let bob = server.create_session("tok-bob").await;

    let page = socket.request("session:list", json!({ "limit": 3 })).await;
    let listed: Vec<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [&ids[4], &ids[3], &ids[2]]);
    let next = page["next_before"]
        .as_str()
        .expect("next_before")
        .to_owned();
    let page = socket
        .request("session:list", json!({ "limit": 3, "before": next }))
        .await;
    let listed: Vec<&str> = page["sessions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [&ids[1], &ids[0]], "bob's session is not alice's");
    assert!(page.get("next_before").is_none());
    assert!(!listed.contains(&bob.as_str()));

    let (status, body) = server.get("tok-alice", "/v1/sessions?limit=2").await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["sessions"][0]["id"], ids[4].as_str());
    assert_eq!(body["sessions"].as_array().unwrap().len(), 2);

    let ack = socket
        .request("session:get", json!({ "session_id": ids[0] }))
        .await;
    assert_eq!(ack["session"]["title"], "s0");
    let (status, body) = server
        .get("tok-alice", &format!("/v1/sessions/{}", ids[0]))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["session"]["title"], "s0");
}

#[tokio::test]
async fn another_users_session_is_forbidden_on_every_route_and_event() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    server.append_infos("tok-alice", &session, 1).await;
    let socket = server.agent("tok-bob").await;

    for (event, payload) in [
        ("session:get", json!({ "session_id": session })),
        (
            "session:subscribe",
            json!({ "session_id": session, "after_seq": 0 }),
        ),
        ("session:unsubscribe", json!({ "session_id": session })),
        ("session:messages", json!({ "session_id": session })),
    ] {
        let ack = socket.request(event, payload).await;
        assert_eq!(ack["ok"], false, "{event}");
        assert_eq!(ack["error"]["code"], "forbidden", "{event}");
        assert!(ack.get("session").is_none());
        assert!(!ack.to_string().contains("m0"), "{event} leaked data");
    }
    for path in ["", "/messages", "/events?after_seq=0", "/stream"] {
        let (status, body) = server
            .get("tok-bob", &format!("/v1/sessions/{session}{path}"))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "GET {path}");
        assert_eq!(body["error"]["code"], "forbidden");
    }
    let (status, _) = server
        .append(
            "tok-bob",
            &session,
            json!({ "events": [info("intrusion")] }),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (_, body) = server
        .get("tok-alice", &format!("/v1/sessions/{session}/events"))
        .await;
    assert_eq!(body["head_seq"], 1, "the refused append changed nothing");

    // An admin may see it.
    let admin = jwt(json!({ "sub": "root", "exp": now() + 600, "role": "admin" }));
    let (status, body) = server.get(&admin, &format!("/v1/sessions/{session}")).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["session"]["owner"], "alice");
}

#[tokio::test]
async fn an_id_that_names_no_session_is_not_found() {
    let server = ServerBuilder::with_auth().spawn().await;
    let missing = "01900000-0000-7000-8000-000000000000";
    let socket = server.agent("tok-alice").await;
    for event in ["session:get", "session:subscribe", "session:messages"] {
        let ack = socket
            .request(event, json!({ "session_id": missing }))
            .await;
        assert_eq!(ack["error"]["code"], "not_found", "{event}");
    }
    let (status, body) = server
        .get("tok-alice", &format!("/v1/sessions/{missing}"))
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "not_found");
}

#[tokio::test]
async fn malformed_requests_get_invalid_payload_naming_the_field_and_change_nothing() {
    let server = ServerBuilder::with_auth().spawn().await;
    let socket = server.agent("tok-alice").await;
    let session = server.create_session("tok-alice").await;
    let cases: Vec<(&str, Value, &str)> = vec![
        ("session:create", json!({ "title": 42 }), "title"),
        ("session:create", json!({ "metadata": [1, 2] }), "metadata"),
        ("session:create", json!({ "colour": "red" }), "colour"),
        ("session:create", json!("not an object"), "expected"),
        ("session:list", json!({ "limit": 0 }), "limit"),
        ("session:list", json!({ "limit": "ten" }), "limit"),
        ("session:list", json!({ "before": "nope" }), "before"),
        ("session:get", json!({}), "session_id"),
        ("session:get", json!({ "session_id": "nope" }), "session_id"),
        (
            "session:subscribe",
            json!({ "session_id": session, "after_seq": "x" }),
            "after_seq",
        ),
        (
            "session:subscribe",
            json!({ "session_id": session, "after_seq": -1 }),
            "after_seq",
        ),
        (
            "session:messages",
            json!({ "session_id": session, "limit": 100000 }),
            "limit",
        ),
    ];
    for (event, payload, field) in cases {
        let ack = socket.request(event, payload.clone()).await;
        assert_eq!(ack["ok"], false, "{event} {payload}");
        assert_eq!(
            ack["error"]["code"], "invalid_payload",
            "{event} {payload}: {ack}"
        );
        let message = ack["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(field),
            "{event} {payload}: {message:?} does not name {field}"
        );
    }
    let ack = socket
        .request("session:create", json!({ "title": "x".repeat(201) }))
        .await;
    assert_eq!(ack["error"]["code"], "too_large");
    assert!(ack["error"]["message"].as_str().unwrap().contains("title"));

    // Bigger than any field allows but within the 2 MiB a message may carry:
    // answered, not cut off, over both transports.
    for (_, transport) in transports() {
        let big = server
            .socket("/agent")
            .transport(transport)
            .token("tok-alice")
            .connect()
            .await
            .unwrap();
        let ack = big
            .request(
                "session:create",
                json!({ "metadata": { "blob": "x".repeat(1536 * 1024) } }),
            )
            .await;
        assert_eq!(ack["error"]["code"], "too_large");
        assert!(
            ack["error"]["message"]
                .as_str()
                .unwrap()
                .contains("metadata")
        );
        assert_eq!(big.request("auth:whoami", json!({})).await["ok"], true);
    }

    // Still connected, and nothing was created by the refused requests.
    let page = socket.request("session:list", json!({})).await;
    assert_eq!(page["sessions"].as_array().unwrap().len(), 1);

    let (status, body) = server.get("tok-alice", "/v1/sessions?limit=zero").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(body["error"]["message"].as_str().unwrap().contains("limit"));
    let (status, _) = server.get("tok-alice", "/v1/sessions/not-a-uuid").await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn a_new_session_has_no_messages() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    let socket = server.agent("tok-alice").await;
    let ack = socket
        .request("session:messages", json!({ "session_id": session }))
        .await;
    assert_eq!(ack, json!({ "ok": true, "messages": [] }));
    let (status, body) = server
        .get("tok-alice", &format!("/v1/sessions/{session}/messages"))
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({ "messages": [] }));
}
