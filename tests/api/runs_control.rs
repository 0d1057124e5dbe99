//! Steering runs: stop, interrupt, enqueue, reject, heartbeats, and the
//! server dying mid-run.

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::mock_llm::{Gate, MockLlm, Reply};
use crate::runs::{assert_contiguous, events_until, execute, subscribed, types, until_idle};

fn is(kind: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["type"] == kind
}

#[tokio::test]
async fn stop_during_a_stall_keeps_the_partial_text_and_drops_the_provider_stream() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["par", "tial"]));
    let (_server, mut alice, session) = subscribed(&mock.server()).await;

    execute(&alice, &session, "go").await;
    let mut events = events_until(&mut alice, |e| e["data"]["delta"] == "tial").await;
    let ack = alice
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    assert_eq!(ack, json!({ "ok": true, "stopped": true }));
    events.extend(until_idle(&mut alice).await);
    assert_contiguous(&events);
    assert_eq!(
        types(&events)[5..],
        ["message.completed", "run.finished", "status"]
    );
    assert_eq!(events[5]["data"]["content"], "partial");
    assert_eq!(events[5]["data"]["status"], "incomplete");
    assert_eq!(events[6]["data"]["reason"], "stopped");
    mock.hung_up(1).await;

    let page = alice
        .request("session:messages", json!({ "session_id": session }))
        .await;
    assert_eq!(page["messages"][0]["content"], "partial");
    assert_eq!(page["messages"][0]["status"], "incomplete");
    let again = alice
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    assert_eq!(again, json!({ "ok": true, "stopped": false }));
}

#[tokio::test]
async fn a_new_message_interrupts_the_active_run_by_default() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["half"]))
        .reply(Reply::text(&["fresh"]));
    let (_server, mut alice, session) = subscribed(&mock.server()).await;

    let first = execute(&alice, &session, "one").await;
    events_until(&mut alice, is("text.delta")).await;
    let second = execute(&alice, &session, "two").await;
    let events = events_until(&mut alice, |e| {
        e["type"] == "run.finished" && e["run_id"] == second["run_id"]
    })
    .await;
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "run.finished")
        .collect();
    assert_eq!(
        finished[0]["data"],
        json!({ "run_id": first["run_id"], "reason": "interrupted" })
    );
    assert_eq!(finished[1]["data"]["reason"], "completed");
    let user = events.iter().find(|e| e["type"] == "message.user").unwrap();
    assert_eq!(user["data"]["message_id"], second["message_id"]);
    // The interrupted answer is part of the conversation, cut short.
    assert_eq!(
        mock.requests()[1]["messages"],
        json!([
            { "role": "user", "content": "one" },
            { "role": "assistant", "content": "half" },
            { "role": "user", "content": "two" },
        ])
    );
}

#[tokio::test]
async fn an_enqueued_message_runs_after_the_active_run_ends() {
    let mock = MockLlm::start().await;
    let gate = Gate::new();
    mock.reply(Reply::text_held(&["a"], &gate, &["b"]))
        .reply(Reply::text(&["next"]));
    let (_server, mut alice, session) = subscribed(&mock.server()).await;

    let first = execute(&alice, &session, "one").await;
    events_until(&mut alice, is("text.delta")).await;
    let queued = alice
        .request(
            "agent:execute",
            json!({ "session_id": session, "content": "two", "on_busy": "enqueue" }),
        )
        .await;
    assert_eq!(queued["ok"], true, "{queued}");
    gate.open();
    let events = events_until(&mut alice, |e| {
        e["type"] == "run.finished" && e["run_id"] == queued["run_id"]
    })
    .await;
    let order: Vec<(&str, &Value)> = events
        .iter()
        .filter(|e| {
            ["message.user", "run.started", "run.finished"].contains(&e["type"].as_str().unwrap())
        })
        .map(|e| (e["type"].as_str().unwrap(), &e["run_id"]))
        .collect();
    assert_eq!(
        order,
        [
            ("run.finished", &first["run_id"]),
            ("message.user", &queued["run_id"]),
            ("run.started", &queued["run_id"]),
            ("run.finished", &queued["run_id"]),
        ]
    );
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "run.finished")
        .collect();
    assert!(finished.iter().all(|e| e["data"]["reason"] == "completed"));
    assert_eq!(mock.requests()[1]["messages"][1]["content"], "ab");
}

#[tokio::test]
async fn reject_refuses_with_busy_and_leaves_the_active_run_alone() {
    let mock = MockLlm::start().await;
    let gate = Gate::new();
    mock.reply(Reply::text_held(&["a"], &gate, &["b"]));
    let (_server, mut alice, session) = subscribed(&mock.server()).await;

    let first = execute(&alice, &session, "one").await;
    events_until(&mut alice, is("text.delta")).await;
    let refused = alice
        .request(
            "agent:execute",
            json!({ "session_id": session, "content": "two", "on_busy": "reject" }),
        )
        .await;
    assert_eq!(refused["error"]["code"], "busy", "{refused}");
    gate.open();
    let events = until_idle(&mut alice).await;
    let finished = events.iter().find(|e| e["type"] == "run.finished").unwrap();
    assert_eq!(
        finished["data"],
        json!({ "run_id": first["run_id"], "reason": "completed" })
    );
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn stop_also_drops_the_queued_runs_without_starting_them() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["a"]));
    let (_server, mut alice, session) = subscribed(&mock.server()).await;

    let first = execute(&alice, &session, "one").await;
    events_until(&mut alice, is("text.delta")).await;
    let queued = alice
        .request(
            "agent:execute",
            json!({ "session_id": session, "content": "two", "on_busy": "enqueue" }),
        )
        .await;
    let ack = alice
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    assert_eq!(ack["stopped"], true);
    let events = until_idle(&mut alice).await;
    let finished: Vec<(&Value, &Value)> = events
        .iter()
        .filter(|e| e["type"] == "run.finished")
        .map(|e| (&e["data"]["run_id"], &e["data"]["reason"]))
        .collect();
    assert!(
        finished.contains(&(&queued["run_id"], &json!("stopped"))),
        "{events:?}"
    );
    assert!(
        finished.contains(&(&first["run_id"], &json!("stopped"))),
        "{events:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "run.started" && e["run_id"] == queued["run_id"])
    );
    assert_eq!(mock.requests().len(), 1);
}

#[tokio::test]
async fn a_silent_run_sends_heartbeats_that_are_not_logged() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["thinking"]));
    let (server, mut alice, session) = subscribed(&mock.server()).await;

    let ack = execute(&alice, &session, "go").await;
    let beat = alice.next("agent:heartbeat").await;
    assert_eq!(beat["session_id"], session);
    assert_eq!(beat["run_id"], ack["run_id"]);
    assert_eq!(beat["status"], "running");
    assert!(beat["elapsed_ms"].as_u64().unwrap() >= 5_000, "{beat}");
    assert!(beat.get("seq").is_none());
    alice
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    let (_, log) = server
        .get("tok-alice", &format!("/v1/sessions/{session}/events"))
        .await;
    assert!(
        log["events"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["type"] != "agent:heartbeat")
    );
}

#[tokio::test]
async fn a_server_killed_mid_run_finishes_the_run_at_its_next_start() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["par", "tial"]));
    let builder = mock.server();
    let (mut server, mut alice, session) = subscribed(&builder).await;
    let ack = execute(&alice, &session, "go").await;
    events_until(&mut alice, |e| e["data"]["delta"] == "tial").await;
    server.stop_with(Signal::SIGKILL).await;

    let server = builder.spawn().await;
    let mut alice = server.agent("tok-alice").await;
    let sub = alice
        .request("session:subscribe", json!({ "session_id": session }))
        .await;
    assert_eq!(sub["session"]["status"], "idle", "{sub}");
    let head = sub["head_seq"].as_i64().unwrap();
    let events = alice.events_after(0, head as usize).await;
    assert_eq!(
        types(&events),
        [
            "message.user",
            "run.started",
            "status",
            "text.delta",
            "text.delta",
            "message.completed",
            "run.finished",
            "status",
        ]
    );
    assert_eq!(events[5]["data"]["content"], "partial");
    assert_eq!(events[5]["data"]["status"], "incomplete");
    assert_eq!(
        events[6]["data"],
        json!({ "run_id": ack["run_id"], "reason": "interrupted" })
    );
    assert_eq!(events[7]["data"]["status"], "idle");

    // The session takes the next message.
    mock.reply(Reply::text(&["back"]));
    execute(&alice, &session, "again").await;
    let events = until_idle(&mut alice).await;
    assert_eq!(events[0]["seq"], head + 1);
    assert_eq!(
        mock.requests()[1]["messages"][1],
        json!({ "role": "assistant", "content": "partial" })
    );
}

#[tokio::test]
async fn a_server_stopped_mid_run_interrupts_it_before_exiting() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["so far"]));
    let builder = mock.server();
    let (mut server, mut alice, session) = subscribed(&builder).await;
    execute(&alice, &session, "go").await;
    events_until(&mut alice, is("text.delta")).await;
    let status = server.stop_with(Signal::SIGTERM).await;
    assert!(status.success(), "{status:?}");

    let server = builder.spawn().await;
    let (_, log) = server
        .get("tok-alice", &format!("/v1/sessions/{session}/events"))
        .await;
    let events = log["events"].as_array().unwrap();
    assert_eq!(
        types(events)[4..],
        ["message.completed", "run.finished", "status"],
        "{events:?}"
    );
    assert_eq!(events[5]["data"]["reason"], "interrupted");
}
