//! Agent runs (PROTOCOL §4.4) against a mock OpenAI-compatible provider:
//! the event sequence, the conversation sent upstream, idempotency, tool
//! rounds and provider failures.

use serde_json::{Value, json};

use crate::helpers::{ServerBuilder, Socket, TestServer};
use crate::mock_llm::{Frame, MockLlm, Reply, content};

/// Session events up to and including the first one `done` accepts.
pub async fn events_until(socket: &mut Socket, done: impl Fn(&Value) -> bool) -> Vec<Value> {
    let mut events = Vec::new();
    loop {
        let event = socket.next("agent:event").await;
        let last = done(&event);
        events.push(event);
        if last {
            return events;
        }
    }
}

/// Events up to the `status: idle` that follows a run's end.
pub async fn until_idle(socket: &mut Socket) -> Vec<Value> {
    events_until(socket, |e| {
        e["type"] == "status" && e["data"]["status"] == "idle"
    })
    .await
}

pub fn types(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["type"].as_str().unwrap()).collect()
}

pub fn assert_contiguous(events: &[Value]) {
    for pair in events.windows(2) {
        assert_eq!(
            pair[1]["seq"],
            pair[0]["seq"].as_i64().unwrap() + 1,
            "gap: {pair:?}"
        );
    }
}

/// A server using `mock`, alice's socket, and a session she subscribed to.
pub async fn subscribed(builder: &ServerBuilder) -> (TestServer, Socket, String) {
    let server = builder.spawn().await;
    let session = server.create_session("tok-alice").await;
    let alice = server.agent("tok-alice").await;
    let ack = alice
        .request("session:subscribe", json!({ "session_id": session }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    (server, alice, session)
}

pub async fn execute(socket: &Socket, session: &str, content: &str) -> Value {
    let ack = socket
        .request(
            "agent:execute",
            json!({ "session_id": session, "content": content }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    ack
}

#[tokio::test]
async fn a_run_streams_every_delta_and_ends_with_one_run_finished() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::text(&["Hel", "lo", " world"]));
    let (_server, mut alice, session) = subscribed(&mock.server()).await;

    let ack = execute(&alice, &session, "say hello").await;
    let events = until_idle(&mut alice).await;
    assert_contiguous(&events);
    assert_eq!(events[0]["seq"], 1);
    assert_eq!(
        types(&events),
        [
            "message.user",
            "run.started",
            "status",
            "text.delta",
            "text.delta",
            "text.delta",
            "message.completed",
            "run.finished",
            "status",
        ]
    );
    let run_id = &ack["run_id"];
    assert!(events.iter().all(|e| e["run_id"] == *run_id), "{events:?}");
    assert_eq!(events[0]["data"]["message_id"], ack["message_id"]);
    assert_eq!(events[0]["data"]["content"], "say hello");
    assert_eq!(
        events[1]["data"],
        json!({ "run_id": run_id, "message_id": ack["message_id"] })
    );
    assert_eq!(events[2]["data"], json!({ "status": "running" }));
    let deltas: Vec<&str> = events[3..6]
        .iter()
        .map(|e| e["data"]["delta"].as_str().unwrap())
        .collect();
    assert_eq!(deltas, ["Hel", "lo", " world"]);
    let completed = &events[6]["data"];
    assert_eq!(completed["content"], "Hello world");
    assert_eq!(completed["status"], "complete");
    assert_eq!(completed["role"], "assistant");
    assert_eq!(completed["message_id"], events[3]["data"]["message_id"]);
    assert_eq!(events[7]["data"]["reason"], "completed");
    assert_eq!(events[7]["data"]["usage"]["total_tokens"], 13);

    let page = alice
        .request("session:messages", json!({ "session_id": session }))
        .await;
    let messages = page["messages"].as_array().unwrap();
    assert_eq!(messages.len(), 2, "{page}");
    assert_eq!(messages[0]["role"], "assistant");
    assert_eq!(messages[0]["content"], "Hello world");
    assert_eq!(messages[1]["id"], ack["message_id"]);
    let got = alice
        .request("session:get", json!({ "session_id": session }))
        .await;
    assert_eq!(got["session"]["status"], "idle");
}

#[tokio::test]
async fn the_second_turn_sends_the_whole_conversation() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::text(&["first ", "answer"]))
        .reply(Reply::text(&["second"]));
    let (_server, mut alice, session) = subscribed(&mock.server()).await;

    execute(&alice, &session, "one").await;
    until_idle(&mut alice).await;
    execute(&alice, &session, "two").await;
    until_idle(&mut alice).await;

    let requests = mock.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!(requests[1]["model"], "mock-model");
    assert_eq!(requests[1]["stream"], true);
    assert_eq!(requests[1]["stream_options"]["include_usage"], true);
    assert_eq!(
        requests[1]["messages"],
        json!([
            { "role": "user", "content": "one" },
            { "role": "assistant", "content": "first answer" },
            { "role": "user", "content": "two" },
        ])
    );
}

#[tokio::test]
async fn a_repeated_client_msg_id_yields_one_run_even_when_the_requests_race() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::text(&["once"]));
    let (_server, mut alice, session) = subscribed(&mock.server()).await;

    let request = json!({ "session_id": session, "content": "hi", "client_msg_id": "click-1" });
    let (a, b) = tokio::join!(
        alice.request("agent:execute", request.clone()),
        alice.request("agent:execute", request.clone()),
    );
    assert_eq!(a["ok"], true, "{a}");
    assert_eq!(
        (&a["run_id"], &a["message_id"]),
        (&b["run_id"], &b["message_id"])
    );
    let events = until_idle(&mut alice).await;
    assert_eq!(events[0]["data"]["client_msg_id"], "click-1");

    let again = alice.request("agent:execute", request).await;
    assert_eq!(
        (&again["run_id"], &again["message_id"]),
        (&a["run_id"], &a["message_id"])
    );
    assert_eq!(mock.requests().len(), 1);
    let (_, log) = _server
        .get("tok-alice", &format!("/v1/sessions/{session}/events"))
        .await;
    let users = log["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == "message.user")
        .count();
    assert_eq!(users, 1);
}

#[tokio::test]
async fn tool_calls_get_results_and_the_provider_is_called_again() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[
        ("call_a", "read_file", r#"{"path":"README.md"}"#),
        ("call_b", "list_dir", r#"{"path":"."}"#),
    ]))
    .reply(Reply::text(&["done"]));
    let (_server, mut alice, session) = subscribed(&mock.server()).await;

    execute(&alice, &session, "look around").await;
    let events = until_idle(&mut alice).await;
    assert_contiguous(&events);
    assert_eq!(
        types(&events),
        [
            "message.user",
            "run.started",
            "status",
            "message.completed",
            "tool.call",
            "tool.call",
            "tool.result",
            "tool.result",
            "text.delta",
            "message.completed",
            "run.finished",
            "status",
        ]
    );
    let calls = &events[3]["data"]["tool_calls"];
    assert_eq!(
        calls[0],
        json!({ "id": "call_a", "name": "read_file", "arguments": { "path": "README.md" } })
    );
    assert_eq!(
        events[4]["data"]["arguments"],
        json!({ "path": "README.md" })
    );
    assert_eq!(events[4]["data"]["call_id"], "call_a");
    assert_eq!(events[6]["data"]["call_id"], "call_a");
    // No tools are registered: each call gets an error result.
    assert_eq!(events[6]["data"]["status"], "error");
    assert_eq!(events[10]["data"]["reason"], "completed");
    // Usage adds up over both provider calls.
    assert_eq!(events[10]["data"]["usage"]["total_tokens"], 25 + 11);

    let second = &mock.requests()[1]["messages"];
    assert_eq!(second[1]["role"], "assistant");
    assert_eq!(
        second[1]["tool_calls"][0],
        json!({ "id": "call_a", "type": "function",
                "function": { "name": "read_file", "arguments": r#"{"path":"README.md"}"# } })
    );
    assert_eq!(second[2]["role"], "tool");
    assert_eq!(second[2]["tool_call_id"], "call_a");
    assert_eq!(second[3]["tool_call_id"], "call_b");
}

#[tokio::test]
async fn a_model_that_keeps_calling_tools_is_stopped_at_the_step_limit() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[("c1", "again", "{}")]))
        .reply(Reply::tool_calls(&[("c2", "again", "{}")]));
    let builder = mock.server().env("SWITCHBOARD_LLM_MAX_STEPS", "2");
    let (_server, mut alice, session) = subscribed(&builder).await;

    execute(&alice, &session, "loop").await;
    let events = until_idle(&mut alice).await;
    let error = events
        .iter()
        .find(|e| e["type"] == "error")
        .expect("an error event");
    assert_eq!(error["data"]["code"], "max_steps");
    let finished = events.iter().find(|e| e["type"] == "run.finished").unwrap();
    assert_eq!(finished["data"]["reason"], "error");
    assert_eq!(mock.requests().len(), 2);
}

#[tokio::test]
async fn a_provider_failure_ends_the_run_with_an_error_and_the_next_turn_works() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::Status(500, "upstream exploded".into()))
        .reply(Reply::Stream(vec![
            content("kept"),
            Frame::Raw("data: {not json\n\n".into()),
        ]))
        .reply(Reply::text(&["fine"]));
    let (_server, mut alice, session) = subscribed(&mock.server()).await;

    execute(&alice, &session, "first").await;
    let events = until_idle(&mut alice).await;
    assert_eq!(types(&events)[3..], ["error", "run.finished", "status"]);
    assert_eq!(events[3]["data"]["code"], "provider_error");
    assert!(
        events[3]["data"]["message"]
            .as_str()
            .unwrap()
            .contains("500"),
        "{}",
        events[3]
    );
    assert_eq!(events[4]["data"]["reason"], "error");

    execute(&alice, &session, "second").await;
    let events = until_idle(&mut alice).await;
    assert_eq!(
        types(&events)[3..],
        [
            "text.delta",
            "message.completed",
            "error",
            "run.finished",
            "status"
        ]
    );
    assert_eq!(
        events[4]["data"],
        json!({
            "message_id": events[3]["data"]["message_id"], "role": "assistant",
            "content": "kept", "status": "incomplete",
        })
    );

    execute(&alice, &session, "third").await;
    let events = until_idle(&mut alice).await;
    let finished = events.iter().find(|e| e["type"] == "run.finished").unwrap();
    assert_eq!(finished["data"]["reason"], "completed");
    // The failed turns are still part of the conversation.
    let third = &mock.requests()[2]["messages"];
    assert_eq!(third.as_array().unwrap().len(), 4, "{third}");
    assert_eq!(third[2], json!({ "role": "assistant", "content": "kept" }));
}

#[tokio::test]
async fn the_scripted_model_answers_without_a_network() {
    let builder = ServerBuilder::with_auth().env("SWITCHBOARD_SCRIPTED_DELAY", "1ms");
    let (_server, mut alice, session) = subscribed(&builder).await;
    execute(&alice, &session, "hello there").await;
    let events = until_idle(&mut alice).await;
    let text: String = events
        .iter()
        .filter(|e| e["type"] == "text.delta")
        .map(|e| e["data"]["delta"].as_str().unwrap())
        .collect();
    assert_eq!(text, "You said: hello there");
    assert!(events.iter().filter(|e| e["type"] == "text.delta").count() > 1);
}

#[tokio::test]
async fn bad_execute_and_stop_requests_are_refused_and_change_nothing() {
    let mock = MockLlm::start().await;
    let (server, alice, session) = subscribed(&mock.server()).await;
    let bob = server.agent("tok-bob").await;
    let cases = [
        (
            json!({ "session_id": session }),
            "invalid_payload",
            "content",
        ),
        (
            json!({ "session_id": session, "content": 5 }),
            "invalid_payload",
            "content",
        ),
        (
            json!({ "session_id": session, "content": "  " }),
            "invalid_payload",
            "content",
        ),
        (
            json!({ "session_id": session, "content": "x", "on_busy": "sometimes" }),
            "invalid_payload",
            "on_busy",
        ),
        (
            json!({ "session_id": session, "content": "x", "extra": 1 }),
            "invalid_payload",
            "extra",
        ),
        (
            json!({ "session_id": "nope", "content": "x" }),
            "invalid_payload",
            "session_id",
        ),
        (
            json!({ "session_id": session, "content": "x", "client_msg_id": "" }),
            "invalid_payload",
            "client_msg_id",
        ),
    ];
    for (payload, code, field) in cases {
        let ack = alice.request("agent:execute", payload.clone()).await;
        assert_eq!(ack["error"]["code"], code, "{payload}: {ack}");
        assert!(
            ack["error"]["message"].as_str().unwrap().contains(field),
            "{payload}: {ack}"
        );
    }
    let huge = "x".repeat(1024 * 1024 + 1);
    let ack = alice
        .request(
            "agent:execute",
            json!({ "session_id": session, "content": huge }),
        )
        .await;
    assert_eq!(ack["error"]["code"], "too_large", "{ack}");

    let theirs = bob
        .request(
            "agent:execute",
            json!({ "session_id": session, "content": "mine now" }),
        )
        .await;
    let get = bob
        .request("session:get", json!({ "session_id": session }))
        .await;
    assert_eq!(theirs["error"]["code"], get["error"]["code"], "{theirs}");
    let stop = bob
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    assert_eq!(stop["error"]["code"], get["error"]["code"], "{stop}");
    let stop = alice.request("agent:stop", json!({})).await;
    assert_eq!(stop["error"]["code"], "invalid_payload");

    assert!(mock.requests().is_empty());
    let got = alice
        .request("session:get", json!({ "session_id": session }))
        .await;
    assert_eq!(got["session"]["head_seq"], 0);
    assert_eq!(got["session"]["status"], "idle");
}

#[tokio::test]
async fn a_provider_silent_past_the_idle_timeout_ends_the_run_with_an_error() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["so ", "far"]))
        .reply(Reply::text(&["awake"]));
    let builder = mock.server().env("SWITCHBOARD_LLM_IDLE_TIMEOUT", "300ms");
    let (_server, mut alice, session) = subscribed(&builder).await;

    execute(&alice, &session, "go").await;
    let events = until_idle(&mut alice).await;
    assert_eq!(
        types(&events)[5..],
        ["message.completed", "error", "run.finished", "status"]
    );
    assert_eq!(events[5]["data"]["content"], "so far");
    assert_eq!(events[5]["data"]["status"], "incomplete");
    assert_eq!(events[6]["data"]["code"], "provider_error");
    assert_eq!(events[7]["data"]["reason"], "error");
    mock.hung_up(1).await;

    execute(&alice, &session, "again").await;
    let events = until_idle(&mut alice).await;
    assert!(events.iter().any(|e| e["data"]["reason"] == "completed"));
}
