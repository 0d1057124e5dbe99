//! Runs on several nodes (issue 14): one run per session cluster-wide,
//! whichever node gets `agent:execute`; control from any node; a node that
//! dies or pauses past its lease loses its runs to another, which finishes
//! them and starts what was queued. Skipped, with a notice, unless
//! `SWITCHBOARD_TEST_POSTGRES_URL` and `SWITCHBOARD_TEST_REDIS_URL` are set
//! (CI's PostgreSQL pass sets both). Nodes hold run leases of 2 s.

use std::time::Instant;

use nix::sys::signal::Signal;
use serde_json::{Value, json};

use crate::helpers::{Nodes, Socket, TestServer, info};
use crate::mock_llm::{Gate, MockLlm, Reply};
use crate::runs::{assert_contiguous, events_until, until_idle};
use crate::tools::{gateway, read_file, tool_message};

const TOKEN: &str = "tok-alice";
const LEASE: &str = "2s";

/// `count` nodes whose provider is `mock`.
async fn nodes(mock: &MockLlm, count: usize) -> Option<Nodes> {
    Nodes::spawn_from(count, mock.server().env("SWITCHBOARD_RUN_LEASE", LEASE)).await
}

/// Alice's socket on `node`, subscribed to `session` from its start.
async fn watcher(node: &TestServer, session: &str) -> Socket {
    let socket = node.agent(TOKEN).await;
    let ack = socket
        .request("session:subscribe", json!({ "session_id": session }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    socket
}

async fn execute(socket: &Socket, session: &str, content: &str, extra: Value) -> Value {
    let mut request = json!({ "session_id": session, "content": content });
    for (key, value) in extra.as_object().expect("an object") {
        request[key] = value.clone();
    }
    socket.request("agent:execute", request).await
}

fn finished(run: &Value) -> impl Fn(&Value) -> bool + '_ {
    move |e| e["type"] == "run.finished" && e["run_id"] == run["run_id"]
}

/// Runs never overlap: each `run.started` comes after the previous run's
/// `run.finished`. Returns the runs started, in order.
fn one_run_at_a_time(events: &[Value]) -> Vec<Value> {
    let mut active: Option<&Value> = None;
    let mut started = Vec::new();
    for event in events {
        match event["type"].as_str() {
            Some("run.started") => {
                assert!(active.is_none(), "two runs at once: {events:#?}");
                active = Some(&event["run_id"]);
                started.push(event["run_id"].clone());
            }
            Some("run.finished") if active == Some(&event["run_id"]) => active = None,
            _ => {}
        }
    }
    started
}

/// A counter of `node`'s `/metrics` (0 when it has no sample yet).
async fn counter(node: &TestServer, name: &str) -> f64 {
    let text = node
        .http
        .get(node.http("/metrics"))
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("metrics text");
    text.lines()
        .filter(|l| l.starts_with(name) && !l.starts_with('#'))
        .filter_map(|l| l.rsplit_once(' ')?.1.parse::<f64>().ok())
        .sum()
}

#[tokio::test]
async fn one_session_executed_on_two_nodes_at_once_runs_one_run_at_a_time() {
    let mock = MockLlm::start().await;
    let gate = Gate::new();
    mock.reply(Reply::text_held(&["a"], &gate, &["b"]))
        .reply(Reply::text(&["c"]));
    let Some(nodes) = nodes(&mock, 2).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut watching = watcher(&nodes[1], &session).await;
    let on_a = nodes[0].agent(TOKEN).await;
    let on_b = nodes[1].agent(TOKEN).await;

    // Two different messages at once, one per node, `reject`: one runs,
    // the other is refused.
    let reject = json!({ "on_busy": "reject" });
    let (one, two) = tokio::join!(
        execute(&on_a, &session, "one", reject.clone()),
        execute(&on_b, &session, "two", reject.clone()),
    );
    let (ran, refused, refused_content) = if one["ok"] == true {
        (one, two, "two")
    } else {
        (two, one, "one")
    };
    assert_eq!(ran["ok"], true, "{ran}");
    assert_eq!(refused["error"]["code"], "busy", "{refused}");

    // The same message at once on both nodes (a retried request),
    // `enqueue`: one queued run, acknowledged alike.
    let same = json!({ "on_busy": "enqueue", "client_msg_id": "three" });
    let (p, q) = tokio::join!(
        execute(&on_a, &session, "three", same.clone()),
        execute(&on_b, &session, "three", same.clone()),
    );
    assert_eq!(p["ok"], true, "{p}");
    assert_eq!(p, q);

    gate.open();
    let events = events_until(&mut watching, finished(&p)).await;
    assert_contiguous(&events);
    assert_eq!(
        one_run_at_a_time(&events),
        [ran["run_id"].clone(), p["run_id"].clone()]
    );
    let users: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "message.user")
        .map(|e| &e["data"]["content"])
        .collect();
    assert_eq!(users.len(), 2, "{users:?}");
    assert!(!users.contains(&&json!(refused_content)), "{users:?}");
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
}

#[tokio::test]
async fn a_message_sent_to_another_node_interrupts_the_run() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["half"]))
        .reply(Reply::text(&["fresh"]));
    let Some(nodes) = nodes(&mock, 2).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut watching = watcher(&nodes[1], &session).await;
    let on_a = nodes[0].agent(TOKEN).await;

    let first = execute(&on_a, &session, "one", json!({})).await;
    assert_eq!(first["ok"], true, "{first}");
    events_until(&mut watching, |e| e["type"] == "text.delta").await;
    let second = execute(&watching, &session, "two", json!({})).await;
    assert_eq!(second["ok"], true, "{second}");

    let events = events_until(&mut watching, finished(&second)).await;
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "run.finished")
        .collect();
    assert_eq!(
        ends[0]["data"],
        json!({ "run_id": first["run_id"], "reason": "interrupted" })
    );
    assert_eq!(ends[1]["data"]["reason"], "completed");
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
async fn heartbeats_and_agent_stop_cross_nodes() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["par", "tial"]));
    let Some(nodes) = nodes(&mock, 2).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut watching = watcher(&nodes[1], &session).await;
    let on_a = nodes[0].agent(TOKEN).await;

    let run = execute(&on_a, &session, "go", json!({})).await;
    assert_eq!(run["ok"], true, "{run}");
    events_until(&mut watching, |e| e["data"]["delta"] == "tial").await;
    // The run goes silent: its heartbeat reaches this node too.
    let beat = watching.next("agent:heartbeat").await;
    assert_eq!(beat["run_id"], run["run_id"], "{beat}");
    let asked = Instant::now();
    let ack = watching
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    eprintln!("agent:stop across nodes answered in {:?}", asked.elapsed());
    assert_eq!(ack, json!({ "ok": true, "stopped": true }));
    let events = until_idle(&mut watching).await;
    let completed = events
        .iter()
        .find(|e| e["type"] == "message.completed")
        .expect("the partial message");
    assert_eq!(completed["data"]["content"], "partial");
    assert_eq!(completed["data"]["status"], "incomplete");
    let end = events
        .iter()
        .find(|e| finished(&run)(e))
        .expect("run.finished");
    assert_eq!(end["data"]["reason"], "stopped");
    mock.hung_up(1).await;

    let again = watching
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    assert_eq!(again, json!({ "ok": true, "stopped": false }));
}

#[tokio::test]
async fn killing_the_runs_node_finishes_it_on_another_and_starts_the_queued_run() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["half"]))
        .reply(Reply::text(&["after"]));
    let Some(mut nodes) = nodes(&mock, 2).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut watching = watcher(&nodes[1], &session).await;
    let mut on_a = watcher(&nodes[0], &session).await;

    let first = execute(&on_a, &session, "one", json!({})).await;
    assert_eq!(first["ok"], true, "{first}");
    let mut events = events_until(&mut watching, |e| e["type"] == "text.delta").await;
    // What the subscriber on the node about to die saw.
    let seen_on_a = events_until(&mut on_a, |e| e["type"] == "text.delta").await;
    let last_on_a = seen_on_a.last().unwrap()["seq"].as_i64().unwrap();
    let queued = execute(&on_a, &session, "two", json!({ "on_busy": "enqueue" })).await;
    assert_eq!(queued["ok"], true, "{queued}");

    let killed = Instant::now();
    nodes[0].stop_with(Signal::SIGKILL).await;
    events.extend(events_until(&mut watching, finished(&first)).await);
    eprintln!(
        "a run of a killed node finished elsewhere after {:?} (lease {LEASE})",
        killed.elapsed()
    );
    events.extend(events_until(&mut watching, finished(&queued)).await);
    assert_contiguous(&events);
    assert_eq!(
        one_run_at_a_time(&events),
        [first["run_id"].clone(), queued["run_id"].clone()]
    );
    let ends: Vec<&Value> = events
        .iter()
        .filter(|e| e["type"] == "run.finished")
        .collect();
    assert_eq!(ends[0]["data"]["reason"], "interrupted");
    assert_eq!(ends[1]["data"]["reason"], "completed");
    let partial = events
        .iter()
        .find(|e| e["type"] == "message.completed")
        .expect("the partial message");
    assert_eq!(partial["data"]["content"], "half");
    assert_eq!(partial["data"]["status"], "incomplete");
    assert_eq!(
        mock.requests()[1]["messages"],
        json!([
            { "role": "user", "content": "one" },
            { "role": "assistant", "content": "half" },
            { "role": "user", "content": "two" },
        ])
    );
    assert!(counter(&nodes[1], "switchboard_cluster_leases_taken_over_total").await >= 1.0);

    // The subscriber of the dead node resumes on the other one from its
    // last seq: the rest of the log, once, in order.
    let resumed = nodes[1].agent(TOKEN).await;
    let ack = resumed
        .request(
            "session:subscribe",
            json!({ "session_id": session, "after_seq": last_on_a }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let mut resumed = resumed;
    let rest = resumed
        .events_after(last_on_a, events.len() - seen_on_a.len())
        .await;
    assert_eq!(rest, events[seen_on_a.len()..]);
}

#[tokio::test]
async fn a_node_paused_past_its_lease_writes_nothing_more_for_the_run_it_lost() {
    let mock = MockLlm::start().await;
    let gate = Gate::new();
    mock.reply(Reply::text_held(&["a"], &gate, &["b", "c"]));
    let Some(mut nodes) = nodes(&mock, 2).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut watching = watcher(&nodes[1], &session).await;
    let on_a = nodes[0].agent(TOKEN).await;

    let run = execute(&on_a, &session, "go", json!({})).await;
    assert_eq!(run["ok"], true, "{run}");
    events_until(&mut watching, |e| e["type"] == "text.delta").await;
    nodes[0].signal(Signal::SIGSTOP);
    let events = until_idle(&mut watching).await;
    let end = events
        .iter()
        .find(|e| finished(&run)(e))
        .expect("run.finished");
    assert_eq!(end["data"]["reason"], "interrupted");

    // The paused node wakes up with the rest of the answer waiting.
    gate.open();
    nodes[0].signal(Signal::SIGCONT);
    nodes[0]
        .wait_for_log(|l| {
            l["message"]
                .as_str()
                .is_some_and(|m| m.contains("another node took this session over"))
        })
        .await;
    // Nothing of that run came after: the next event is a probe.
    let (status, body) = nodes[1]
        .append(TOKEN, &session, json!({ "events": [info("probe")] }))
        .await;
    assert_eq!(status, reqwest::StatusCode::OK, "{body}");
    let next = watching.next("agent:event").await;
    assert_eq!(next["data"]["message"], "probe", "{next}");
    let page = watching
        .request("session:messages", json!({ "session_id": session }))
        .await;
    let messages = page["messages"].as_array().expect("messages");
    assert_eq!(messages[0]["content"], "a", "{page}");
    assert_eq!(messages[0]["status"], "incomplete", "{page}");
}

#[tokio::test]
async fn a_node_that_starts_leaves_the_runs_of_live_nodes_alone() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::stall_after(&["going"]));
    let Some(mut nodes) = nodes(&mock, 1).await else {
        return;
    };
    let session = nodes[0].create_session(TOKEN).await;
    let mut watching = watcher(&nodes[0], &session).await;
    let run = execute(&watching, &session, "go", json!({})).await;
    assert_eq!(run["ok"], true, "{run}");
    events_until(&mut watching, |e| e["type"] == "text.delta").await;

    // A second node starts (and checks leases) while the run goes on.
    let second = nodes.add().await;
    nodes[second]
        .wait_for_log(|l| l["message"] == "listening")
        .await;
    let ack = watching
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    assert_eq!(ack, json!({ "ok": true, "stopped": true }));
    let events = until_idle(&mut watching).await;
    let end = events
        .iter()
        .find(|e| finished(&run)(e))
        .expect("run.finished");
    assert_eq!(end["data"]["reason"], "stopped", "{events:#?}");
}

#[tokio::test]
async fn a_run_on_one_node_calls_a_gateway_on_another_and_is_stopped_from_there() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[(
        "call_a",
        "read_file",
        r#"{"path":"a"}"#,
    )]))
    .reply(Reply::stall_after(&["thinking"]));
    let Some(nodes) = nodes(&mock, 2).await else {
        return;
    };
    let mut laptop = gateway(&nodes[1], TOKEN, "laptop", vec![read_file()]).await;
    let session = nodes[0].create_session(TOKEN).await;
    let mut watching = watcher(&nodes[0], &session).await;

    let run = execute(&watching, &session, "go", json!({})).await;
    assert_eq!(run["ok"], true, "{run}");
    let call = laptop.next("tool:call").await;
    assert_eq!(call["call_id"], "call_a");
    assert_eq!(call["run_id"], run["run_id"]);
    let ack = laptop
        .request("tool:result", json!({ "call_id": "call_a", "output": "A" }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    events_until(&mut watching, |e| e["data"]["delta"] == "thinking").await;
    assert_eq!(tool_message(&mock, 1, "call_a")["content"], "A");
    let offered = &mock.requests()[0]["tools"];
    assert_eq!(offered[0]["function"]["name"], "read_file", "{offered}");

    // agent:stop from node B, where the gateway is, ends the run on A.
    let on_b = nodes[1].agent(TOKEN).await;
    let asked = Instant::now();
    let stop = on_b
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    eprintln!("agent:stop across nodes answered in {:?}", asked.elapsed());
    assert_eq!(stop, json!({ "ok": true, "stopped": true }));
    let events = until_idle(&mut watching).await;
    let end = events
        .iter()
        .find(|e| finished(&run)(e))
        .expect("run.finished");
    assert_eq!(end["data"]["reason"], "stopped");
}

#[tokio::test]
async fn a_gateway_whose_node_dies_gets_its_call_again_on_the_other_node() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[(
        "call_a",
        "read_file",
        r#"{"path":"a"}"#,
    )]))
    .reply(Reply::text(&["done"]));
    let Some(mut nodes) = nodes(&mock, 2).await else {
        return;
    };
    let mut laptop = gateway(&nodes[1], TOKEN, "laptop", vec![read_file()]).await;
    let session = nodes[0].create_session(TOKEN).await;
    let mut watching = watcher(&nodes[0], &session).await;

    let run = execute(&watching, &session, "go", json!({})).await;
    assert_eq!(run["ok"], true, "{run}");
    let first = laptop.next("tool:call").await;
    nodes[1].stop_with(Signal::SIGKILL).await;

    // The gateway reconnects, to the other node.
    let mut again = gateway(&nodes[0], TOKEN, "laptop", vec![read_file()]).await;
    let second = again.next("tool:call").await;
    assert_eq!(first, second);
    let ack = again
        .request("tool:result", json!({ "call_id": "call_a", "output": "A" }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let events = events_until(&mut watching, finished(&run)).await;
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
    assert_eq!(tool_message(&mock, 1, "call_a")["content"], "A");
}

#[tokio::test]
async fn a_gateway_away_for_two_seconds_keeps_its_tools_offered_across_nodes() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[(
        "call_a",
        "read_file",
        r#"{"path":"a"}"#,
    )]))
    .reply(Reply::text(&["done"]));
    let Some(mut nodes) = nodes(&mock, 2).await else {
        return;
    };
    let laptop = gateway(&nodes[1], TOKEN, "laptop", vec![read_file()]).await;
    let session = nodes[0].create_session(TOKEN).await;
    let mut watching = watcher(&nodes[0], &session).await;

    // The gateway (on node B) drops; a run starts on node A meanwhile.
    laptop.disconnect().await;
    nodes[1]
        .wait_for_log(|l| l["message"] == "gateway gone")
        .await;
    let run = execute(&watching, &session, "go", json!({})).await;
    assert_eq!(run["ok"], true, "{run}");
    events_until(&mut watching, |e| e["type"] == "tool.call").await;
    let offered = &mock.requests()[0]["tools"];
    assert_eq!(offered[0]["function"]["name"], "read_file", "{offered}");

    // Back two seconds later, on node B again: the call waited for it.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut back = gateway(&nodes[1], TOKEN, "laptop", vec![read_file()]).await;
    let call = back.next("tool:call").await;
    assert_eq!(call["call_id"], "call_a");
    let ack = back
        .request("tool:result", json!({ "call_id": "call_a", "output": "A" }))
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let events = events_until(&mut watching, finished(&run)).await;
    assert_eq!(events.last().unwrap()["data"]["reason"], "completed");
}
