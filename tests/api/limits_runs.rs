//! Limits on runs (issue 12, items 6 and 8): a bounded queue per session
//! ended in one write, shutdown inside its timeout, owner-only execute,
//! approve and answer, the execute rate per user, and the checks on what a
//! run request or a tool result may hold — and model text stored safely.
//!
//! The NUL tests are the ones that matter on PostgreSQL (which cannot store
//! U+0000 in text); run them there with `SWITCHBOARD_TEST_POSTGRES_URL`.

use std::time::{Duration, Instant};

use nix::sys::signal::Signal;
use sea_orm::{ConnectionTrait, Statement};
use serde_json::{Value, json};

use crate::helpers::{ServerBuilder, Socket, TestServer, jwt, now};
use crate::mock_llm::{MockLlm, Reply};
use crate::runs::{events_until, execute, subscribed, until_idle};
use crate::tools::{assert_no_call, gateway, run_command};

/// RSS figures are in KiB.
const KIB_PER_MIB: u64 = 1024;

/// Settings that keep other limits out of the way of the one under test.
fn only_the_queue_limits(builder: ServerBuilder) -> ServerBuilder {
    builder
        .env("SWITCHBOARD_EXECUTE_RATE", "unlimited")
        .env("SWITCHBOARD_REQUEST_RATE", "unlimited")
}

fn error_code(ack: &Value) -> &str {
    assert_eq!(ack["ok"], false, "{ack}");
    ack["error"]["code"].as_str().unwrap_or_default()
}

fn error_message(ack: &Value) -> &str {
    ack["error"]["message"].as_str().unwrap_or_default()
}

fn enqueue(session: &str, content: &str) -> Value {
    json!({ "session_id": session, "content": content, "on_busy": "enqueue" })
}

async fn head_seq(socket: &Socket, session: &str) -> i64 {
    let ack = socket
        .request("session:get", json!({ "session_id": session }))
        .await;
    ack["session"]["head_seq"].as_i64().expect("head_seq")
}

async fn status_of(socket: &Socket, session: &str) -> Value {
    let ack = socket
        .request("session:get", json!({ "session_id": session }))
        .await;
    ack["session"]["status"].clone()
}

/// The run rows of `session` as (status, reason), read from the database.
async fn run_rows(builder: &ServerBuilder, session: &str) -> Vec<(String, Option<String>)> {
    let db = sea_orm::Database::connect(builder.database_url().await)
        .await
        .expect("open the test database");
    let rows = db
        .query_all_raw(Statement::from_string(
            db.get_database_backend(),
            format!("SELECT status, reason FROM runs WHERE session_id = '{session}' ORDER BY id"),
        ))
        .await
        .expect("read the runs");
    let runs = rows
        .iter()
        .map(|row| {
            (
                row.try_get::<String>("", "status").expect("status"),
                row.try_get::<Option<String>>("", "reason").expect("reason"),
            )
        })
        .collect();
    db.close().await.ok();
    runs
}

/// A run waiting on a stalled provider, and a session to queue behind it.
async fn stalled(builder: &ServerBuilder) -> (TestServer, Socket, String, Value) {
    let (server, mut alice, session) = subscribed(builder).await;
    let first = execute(&alice, &session, "go").await;
    events_until(&mut alice, |e| e["type"] == "text.delta").await;
    (server, alice, session, first)
}

#[tokio::test]
async fn the_queue_refuses_past_its_bound_with_busy_and_memory_stays_bounded() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["thinking"]));
    let builder = only_the_queue_limits(mock.server());
    let (server, alice, session, _) = stalled(&builder).await;
    let content = "x".repeat(1024 * 1024 - 64);
    let before = server.rss_kib();

    let mut accepted = 0;
    let mut busy = Vec::new();
    let mut head_when_full = None;
    for i in 0..200 {
        let ack = alice
            .request("agent:execute", enqueue(&session, &content))
            .await;
        if ack["ok"] == true {
            accepted += 1;
            continue;
        }
        assert_eq!(
            error_code(&ack),
            "busy",
            "attempt {i}: {}",
            error_message(&ack)
        );
        if head_when_full.is_none() {
            head_when_full = Some(head_seq(&alice, &session).await);
        }
        busy.push(ack);
    }
    let peak_growth_mib = server.peak_rss_kib().saturating_sub(before) / KIB_PER_MIB;
    eprintln!(
        "accepted {accepted}, busy {}, peak RSS growth {peak_growth_mib} MiB",
        busy.len()
    );

    assert_eq!(accepted, 16, "the default bound is 16 queued runs");
    assert!(
        error_message(&busy[0]).contains("16"),
        "{}",
        error_message(&busy[0])
    );
    // A refusal changes nothing: no event, no run row.
    assert_eq!(Some(head_seq(&alice, &session).await), head_when_full);
    assert_eq!(run_rows(&builder, &session).await.len(), 1 + 16);
    assert!(
        peak_growth_mib < 100,
        "200 queued MiB-sized messages grew the peak RSS by {peak_growth_mib} MiB"
    );
    let ack = alice
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    assert_eq!(ack["stopped"], true, "{ack}");
}

#[tokio::test]
async fn stop_ends_the_queued_runs_in_one_commit() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["thinking"]));
    let builder = only_the_queue_limits(mock.server());
    let (_server, mut alice, session, first) = stalled(&builder).await;
    let mut queued = Vec::new();
    for i in 0..16 {
        let ack = alice
            .request("agent:execute", enqueue(&session, &format!("next {i}")))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        queued.push(ack["run_id"].clone());
    }

    let ack = alice
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    assert_eq!(ack["stopped"], true, "{ack}");
    let events = until_idle(&mut alice).await;
    let finished: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "run.finished" && queued.contains(&e["run_id"]))
        .collect();
    assert_eq!(finished.len(), 16, "{events:?}");
    assert!(finished.iter().all(|e| e["data"]["reason"] == "stopped"));
    let mut stamps: Vec<&str> = finished.iter().map(|e| e["ts"].as_str().unwrap()).collect();
    stamps.dedup();
    eprintln!(
        "the queued runs' run.finished carry {} distinct ts",
        stamps.len()
    );
    assert_eq!(stamps.len(), 1, "one commit, one ts: {stamps:?}");
    let seqs: Vec<i64> = finished
        .iter()
        .map(|e| e["seq"].as_i64().unwrap())
        .collect();
    assert!(seqs.windows(2).all(|w| w[1] == w[0] + 1), "{seqs:?}");
    let active = events
        .iter()
        .find(|e| e["type"] == "run.finished" && e["run_id"] == first["run_id"])
        .expect("the active run's run.finished");
    assert_eq!(active["data"]["reason"], "stopped");

    let rows = run_rows(&builder, &session).await;
    assert_eq!(rows.len(), 17);
    assert!(
        rows.iter()
            .all(|(status, reason)| status == "finished" && reason.as_deref() == Some("stopped")),
        "{rows:?}"
    );
    assert!(
        !events
            .iter()
            .any(|e| e["type"] == "run.started" && queued.contains(&e["run_id"]))
    );
}

/// A queued run holds its message in memory until it starts, so a user's
/// queued runs are bounded across sessions too (64 by default: with 1 MiB
/// messages, 64 MiB), not only per session.
#[tokio::test]
async fn a_users_queued_runs_are_bounded_across_their_sessions() {
    let mock = MockLlm::start().await;
    for _ in 0..5 {
        mock.reply(Reply::stall_after(&["thinking"]));
    }
    let builder = only_the_queue_limits(mock.server());
    let server = builder.spawn().await;
    let alice = server.agent("tok-alice").await;
    let mut sessions = Vec::new();
    for _ in 0..5 {
        let session = server.create_session("tok-alice").await;
        execute(&alice, &session, "go").await;
        sessions.push(session);
    }
    mock.received(5).await;
    for session in &sessions[..4] {
        for i in 0..16 {
            let ack = alice
                .request("agent:execute", enqueue(session, &format!("m{i}")))
                .await;
            assert_eq!(ack["ok"], true, "{ack}");
        }
    }

    let fifth = &sessions[4];
    let head = head_seq(&alice, fifth).await;
    let ack = alice
        .request("agent:execute", enqueue(fifth, "one more"))
        .await;
    eprintln!("the 65th queued run of one user: {ack}");
    assert_eq!(error_code(&ack), "busy", "{ack}");
    assert!(error_message(&ack).contains("64"), "{ack}");
    assert_eq!(head_seq(&alice, fifth).await, head);
    assert_eq!(run_rows(&builder, fifth).await.len(), 1);
    // Another user is not held back by alice's queue.
    let bobs = server.create_session("tok-bob").await;
    let bob = server.agent("tok-bob").await;
    mock.reply(Reply::stall_after(&["hm"]));
    execute(&bob, &bobs, "go").await;
    let ack = bob.request("agent:execute", enqueue(&bobs, "later")).await;
    assert_eq!(ack["ok"], true, "{ack}");

    // Runs that leave a queue make room again.
    let ack = alice
        .request("agent:stop", json!({ "session_id": sessions[0] }))
        .await;
    assert_eq!(ack["stopped"], true, "{ack}");
    let ack = alice
        .request("agent:execute", enqueue(fifth, "one more"))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
}

/// Shutdown's promise is a deadline: everything the engine does at
/// shutdown — ending queued runs, waiting for active ones — happens inside
/// `SWITCHBOARD_SHUTDOWN_TIMEOUT`. The bound asserted is that deadline with
/// room for the transport's own (separately bounded) steps, not a speed.
#[tokio::test]
async fn shutdown_with_a_full_queue_exits_within_the_shutdown_timeout() {
    let timeout = Duration::from_secs(1);
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["thinking"]));
    let builder = only_the_queue_limits(mock.server()).env("SWITCHBOARD_SHUTDOWN_TIMEOUT", "1s");
    let (mut server, alice, session, _) = stalled(&builder).await;
    let mut accepted = 0;
    for i in 0..3_000 {
        let ack = alice
            .request("agent:execute", enqueue(&session, &format!("m{i}")))
            .await;
        if ack["ok"] == true {
            accepted += 1;
        } else {
            assert_eq!(error_code(&ack), "busy", "{ack}");
        }
    }

    let began = Instant::now();
    let status = server.stop_with(Signal::SIGTERM).await;
    let took = began.elapsed();
    eprintln!("{accepted} queued; exit took {took:?}");
    assert!(status.success(), "{status:?}");
    assert!(
        took < timeout * 2,
        "shutdown took {took:?} with a {timeout:?} timeout"
    );
    // Nothing was left behind: every run ended `interrupted` before exit.
    let rows = run_rows(&builder, &session).await;
    assert_eq!(rows.len(), 1 + accepted);
    assert!(
        rows.iter().all(
            |(status, reason)| status == "finished" && reason.as_deref() == Some("interrupted")
        ),
        "{rows:?}"
    );
}

#[tokio::test]
async fn a_server_killed_with_a_full_queue_runs_the_queued_messages_in_order_at_its_next_start() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["thinking"]));
    let builder = only_the_queue_limits(mock.server());
    let (mut server, alice, session, first) = stalled(&builder).await;
    let mut queued = Vec::new();
    for i in 0..16 {
        let ack = alice
            .request("agent:execute", enqueue(&session, &format!("m{i}")))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        queued.push(ack["run_id"].clone());
        mock.reply(Reply::text(&[&format!("a{i}")]));
    }
    server.stop_with(Signal::SIGKILL).await;

    // The queued messages were stored: the next process finishes the
    // active run `interrupted`, then runs each of them, in order, once.
    let server = builder.spawn().await;
    let mut alice = server.agent("tok-alice").await;
    let ack = alice
        .request("session:subscribe", json!({ "session_id": session }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let last = queued.last().unwrap().clone();
    let events = events_until(&mut alice, |e| {
        e["type"] == "run.finished" && e["run_id"] == last
    })
    .await;
    let finished: Vec<(&Value, &Value)> = events
        .iter()
        .filter(|e| e["type"] == "run.finished")
        .map(|e| (&e["run_id"], &e["data"]["reason"]))
        .collect();
    let interrupted = json!("interrupted");
    let completed = json!("completed");
    let mut expected = vec![(&first["run_id"], &interrupted)];
    expected.extend(queued.iter().map(|id| (id, &completed)));
    assert_eq!(finished, expected);
    let users: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "message.user")
        .map(|e| &e["data"]["content"])
        .collect();
    let sent: Vec<Value> = std::iter::once(json!("go"))
        .chain((0..16).map(|i| json!(format!("m{i}"))))
        .collect();
    assert_eq!(users, sent.iter().collect::<Vec<_>>());
    let rows = run_rows(&builder, &session).await;
    assert!(
        rows.iter().all(|(status, _)| status == "finished"),
        "{rows:?}"
    );
}

fn read_file() -> Value {
    json!({
        "name": "read_file",
        "description": "Reads a text file",
        "parameters": {
            "type": "object",
            "properties": { "path": { "type": "string" } },
            "required": ["path"]
        }
    })
}

#[tokio::test]
async fn an_admin_cannot_execute_approve_or_answer_but_can_subscribe_and_stop() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[
        ("call_cmd", "run_command", r#"{"command":"ls"}"#),
        (
            "call_q",
            "ask_user_questions",
            r#"{"questions":["Which file?"]}"#,
        ),
    ]));
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![run_command()]).await;
    let admin_token = jwt(json!({ "sub": "root", "exp": now() + 600, "role": "admin" }));
    let admin = server.agent(&admin_token).await;
    let mut admins_gateway = gateway(&server, &admin_token, "root-box", vec![run_command()]).await;

    let ack = alice
        .request(
            "agent:execute",
            json!({ "session_id": session, "content": "list", "client_msg_id": "c-1" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    events_until(&mut alice, |e| {
        e["type"] == "status" && e["data"]["status"] == "awaiting_approval"
    })
    .await;
    let head = head_seq(&alice, &session).await;

    // An admin may read and subscribe.
    let sub = admin
        .request("session:subscribe", json!({ "session_id": session }))
        .await;
    assert_eq!(sub["ok"], true, "{sub}");

    // Approvals and answers first: an admin's execute would interrupt the run.
    let attempts = [
        (
            "tool:approval",
            json!({ "session_id": session, "call_id": "call_cmd", "decision": "approve" }),
        ),
        (
            "tool:approval",
            json!({ "session_id": session, "call_id": "call_cmd", "decision": "deny" }),
        ),
        (
            "tool:result",
            json!({ "session_id": session, "call_id": "call_q", "output": "main.rs" }),
        ),
        (
            "agent:execute",
            json!({ "session_id": session, "content": "list", "client_msg_id": "c-1" }),
        ),
        (
            "agent:execute",
            json!({ "session_id": session, "content": "x", "on_busy": "enqueue" }),
        ),
        (
            "agent:execute",
            json!({ "session_id": session, "content": "rm -rf ~" }),
        ),
    ];
    let mut refusals = Vec::new();
    let from_gateway = admins_gateway
        .request(
            "tool:result",
            json!({ "call_id": "call_cmd", "output": "pwned" }),
        )
        .await;
    refusals.push((&"tool:result on /gateway", from_gateway));
    for (event, payload) in &attempts {
        refusals.push((event, admin.request(event, payload.clone()).await));
    }
    eprintln!("{refusals:#?}");
    for (event, ack) in &refusals {
        assert_eq!(error_code(ack), "forbidden", "{event}: {ack}");
        assert!(ack.get("run_id").is_none() && ack.get("message_id").is_none());
        assert!(!ack.to_string().contains("c-1"), "{event}: {ack}");
    }

    // Nothing changed: no event, the calls still wait, no gateway was sent one.
    assert_eq!(head_seq(&alice, &session).await, head);
    assert_eq!(status_of(&alice, &session).await, "awaiting_approval");
    assert_no_call(&mut laptop).await;
    assert_no_call(&mut admins_gateway).await;

    // An admin may stop the run.
    let ack = admin
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    assert_eq!(ack, json!({ "ok": true, "stopped": true }));
    let events = until_idle(&mut alice).await;
    let finished = events.iter().find(|e| e["type"] == "run.finished").unwrap();
    assert_eq!(finished["data"]["reason"], "stopped");
}

#[tokio::test]
async fn nul_in_run_requests_is_invalid_payload_and_stores_nothing() {
    let server = ServerBuilder::with_auth().spawn().await;
    let session = server.create_session("tok-alice").await;
    let alice = server.agent("tok-alice").await;
    let requests = [
        (
            "agent:execute",
            json!({ "session_id": session, "content": "a\u{0}b" }),
            "content",
        ),
        (
            "agent:execute",
            json!({ "session_id": session, "content": "hi", "client_msg_id": "c\u{0}1" }),
            "client_msg_id",
        ),
        (
            "tool:approval",
            json!({ "session_id": session, "call_id": "call_a", "decision": "deny",
                    "reason": "no\u{0}pe" }),
            "reason",
        ),
        (
            "tool:approval",
            json!({ "session_id": session, "call_id": "call\u{0}a", "decision": "deny" }),
            "call_id",
        ),
        (
            "tool:result",
            json!({ "session_id": session, "call_id": "call\u{0}a", "output": "x" }),
            "call_id",
        ),
    ];
    for (event, payload, field) in requests {
        let ack = alice.request(event, payload).await;
        eprintln!("{event} with NUL in {field}: {ack}");
        assert_eq!(
            error_code(&ack),
            "invalid_payload",
            "{event} {field}: {ack}"
        );
        assert!(error_message(&ack).starts_with(field), "{ack}");
    }
    let ack = server
        .socket("/gateway")
        .token("tok-alice")
        .connect()
        .await
        .unwrap()
        .request(
            "tool:result",
            json!({ "call_id": "call\u{0}a", "output": "x" }),
        )
        .await;
    assert_eq!(error_code(&ack), "invalid_payload", "{ack}");
    assert_eq!(head_seq(&alice, &session).await, 0);
}

/// `depth` arrays, one inside the other, around a string.
fn nested(depth: usize) -> Value {
    let mut value = json!("leaf");
    for _ in 0..depth {
        value = json!([value]);
    }
    value
}

#[tokio::test]
async fn a_tool_result_nested_deeper_than_64_is_refused_and_the_call_still_waits() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[
        ("call_a", "read_file", r#"{"path":"a"}"#),
        ("call_q", "ask_user_questions", r#"{"questions":["?"]}"#),
    ]))
    .reply(Reply::text(&["done"]));
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;
    execute(&alice, &session, "go").await;
    laptop.next("tool:call").await;
    events_until(&mut alice, |e| {
        e["type"] == "status" && e["data"]["status"] == "awaiting_input"
    })
    .await;
    let head = head_seq(&alice, &session).await;

    let ack = laptop
        .request(
            "tool:result",
            json!({ "call_id": "call_a", "output": nested(65) }),
        )
        .await;
    eprintln!("a gateway's output 65 deep: {ack}");
    assert_eq!(error_code(&ack), "invalid_payload", "{ack}");
    assert!(error_message(&ack).starts_with("output"), "{ack}");
    let ack = alice
        .request(
            "tool:result",
            json!({ "session_id": session, "call_id": "call_q", "output": nested(65) }),
        )
        .await;
    eprintln!("a user's answer 65 deep: {ack}");
    assert_eq!(error_code(&ack), "invalid_payload", "{ack}");
    assert_eq!(head_seq(&alice, &session).await, head);

    // 64 deep is fine, and the calls were still waiting for it.
    let ack = laptop
        .request(
            "tool:result",
            json!({ "call_id": "call_a", "output": nested(64) }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = alice
        .request(
            "tool:result",
            json!({ "session_id": session, "call_id": "call_q", "output": "yes" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let events = until_idle(&mut alice).await;
    let finished = events.iter().find(|e| e["type"] == "run.finished").unwrap();
    assert_eq!(finished["data"]["reason"], "completed");
}

/// Text from the model (and a tool's output) cannot be refused: a NUL in it
/// is stored as U+FFFD, so the run completes on PostgreSQL too, and both
/// databases keep the same text.
#[tokio::test]
async fn a_model_whose_stream_contains_nul_completes_its_run() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::text(&["be\u{0}fore "]))
        .reply(Reply::tool_calls(&[(
            "call_\u{0}a",
            "read_file",
            r#"{"path":"a\u0000b"}"#,
        )]))
        .reply(Reply::text(&["done\u{0}"]));
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;

    execute(&alice, &session, "first").await;
    let events = until_idle(&mut alice).await;
    let finished = events.iter().find(|e| e["type"] == "run.finished").unwrap();
    eprintln!("text with NUL: run.finished {}", finished["data"]);
    assert_eq!(finished["data"]["reason"], "completed", "{events:?}");

    execute(&alice, &session, "second").await;
    let call = laptop.next("tool:call").await;
    let ack = laptop
        .request(
            "tool:result",
            json!({ "call_id": call["call_id"], "output": "line\u{0}two" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let events = until_idle(&mut alice).await;
    let finished = events.iter().find(|e| e["type"] == "run.finished").unwrap();
    eprintln!("a tool call with NUL: run.finished {}", finished["data"]);
    assert_eq!(finished["data"]["reason"], "completed", "{events:?}");

    let page = alice
        .request("session:messages", json!({ "session_id": session }))
        .await;
    let messages = page["messages"].as_array().expect("messages");
    let contents: Vec<&str> = messages
        .iter()
        .map(|m| m["content"].as_str().unwrap())
        .collect();
    eprintln!("stored: {contents:?}");
    assert!(
        contents.iter().all(|c| !c.contains('\u{0}')),
        "{contents:?}"
    );
    assert!(contents.contains(&"be\u{FFFD}fore "), "{contents:?}");
    assert!(contents.contains(&"line\u{FFFD}two"), "{contents:?}");
    assert!(contents.contains(&"done\u{FFFD}"), "{contents:?}");
    assert_eq!(call["call_id"], "call_\u{FFFD}a");
}

#[tokio::test]
async fn the_execute_rate_limit_answers_rate_limited_with_a_retry_hint() {
    let builder = ServerBuilder::with_auth().env("SWITCHBOARD_EXECUTE_RATE", "3/min");
    let server = builder.spawn().await;
    let session = server.create_session("tok-alice").await;
    let alice = server.agent("tok-alice").await;
    for i in 0..3 {
        let ack = alice
            .request(
                "agent:execute",
                json!({ "session_id": session, "content": format!("m{i}") }),
            )
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
    }
    // Refused before anything is stored (a fresh session stays empty).
    let other = server.create_session("tok-alice").await;
    let ack = alice
        .request(
            "agent:execute",
            json!({ "session_id": other, "content": "one more" }),
        )
        .await;
    eprintln!("the 4th execute in a minute: {ack}");
    assert_eq!(error_code(&ack), "rate_limited", "{ack}");
    let retry = ack["error"]["retry_after_ms"]
        .as_u64()
        .expect("a retry hint");
    assert!(retry > 0 && retry <= 20_000, "{ack}");
    assert!(error_message(&ack).contains("3/min"), "{ack}");
    assert_eq!(head_seq(&alice, &other).await, 0);

    // Another user has a bucket of their own.
    let bobs = server.create_session("tok-bob").await;
    let bob = server.agent("tok-bob").await;
    execute(&bob, &bobs, "hi").await;
}
