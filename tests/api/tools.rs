//! The tool relay (PROTOCOL §4.5): desktop gateways on `/gateway`, the
//! model's tool calls relayed to them and their results back to the model,
//! redelivery, timeouts, approvals, questions to the user, and every
//! refusal. The provider is the mock; gateways are real Socket.IO clients.

use serde_json::{Value, json};

use crate::helpers::{ServerBuilder, Socket, TestServer};
use crate::mock_llm::{Frame, Gate, MockLlm, Reply};
use crate::runs::{assert_contiguous, events_until, execute, subscribed, types, until_idle};

pub(crate) fn read_file() -> Value {
    json!({
        "name": "read_file",
        "description": "Reads a text file",
        "parameters": {
            "type": "object",
            "properties": { "path": { "type": "string" } },
            "required": ["path"],
            "additionalProperties": false
        }
    })
}

pub(crate) fn run_command() -> Value {
    json!({
        "name": "run_command",
        "description": "Runs a shell command",
        "parameters": {
            "type": "object",
            "properties": { "command": { "type": "string" } },
            "required": ["command"]
        },
        "requires_approval": true
    })
}

/// A gateway of the user of `token` that registered `tools`.
pub(crate) async fn gateway(
    server: &TestServer,
    token: &str,
    id: &str,
    tools: Vec<Value>,
) -> Socket {
    let socket = server
        .socket("/gateway")
        .token(token)
        .connect()
        .await
        .expect("connected to /gateway");
    let count = tools.len();
    let ack = socket
        .request(
            "gateway:register",
            json!({ "gateway_id": id, "tools": tools }),
        )
        .await;
    assert_eq!(ack, json!({ "ok": true, "registered": count }));
    socket
}

/// A gateway's `tool:result` with a text output; returns the ack.
async fn answer(gateway: &Socket, call_id: &str, output: &str) -> Value {
    gateway
        .request(
            "tool:result",
            json!({ "call_id": call_id, "output": output }),
        )
        .await
}

/// A mock whose model calls `name` once with `arguments` (as `call_a`),
/// then answers `text`.
async fn one_call(name: &str, arguments: &str, text: &str) -> MockLlm {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[("call_a", name, arguments)]))
        .reply(Reply::text(&[text]));
    mock
}

fn error_code(ack: &Value) -> &str {
    assert_eq!(ack["ok"], false, "{ack}");
    ack["error"]["code"].as_str().unwrap()
}

/// Asserts the socket was sent no `tool:call`: a request answered after
/// the point of interest shows that anything emitted before has arrived.
pub(crate) async fn assert_no_call(gateway: &mut Socket) {
    let ack = gateway.request("auth:whoami", json!({})).await;
    assert_eq!(ack["ok"], true);
    while let Ok((name, payload)) = gateway.events.try_recv() {
        assert_ne!(name, "tool:call", "unexpected call: {payload}");
    }
}

fn status_is(status: &'static str) -> impl Fn(&Value) -> bool {
    move |e| e["type"] == "status" && e["data"]["status"] == status
}

fn of_type<'a>(events: &'a [Value], kind: &str) -> Vec<&'a Value> {
    events.iter().filter(|e| e["type"] == kind).collect()
}

/// The `tool` message for `call_id` in the provider request `index`.
pub(crate) fn tool_message(mock: &MockLlm, index: usize, call_id: &str) -> Value {
    let request = &mock.requests()[index];
    request["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool" && m["tool_call_id"] == call_id)
        .cloned()
        .unwrap_or_else(|| panic!("no tool message for {call_id} in {request}"))
}

async fn session_status(alice: &Socket, session: &str) -> Value {
    let ack = alice
        .request("session:get", json!({ "session_id": session }))
        .await;
    ack["session"]["status"].clone()
}

#[tokio::test]
async fn a_call_is_relayed_to_the_gateway_and_its_result_goes_back_to_the_model() {
    let mock = one_call("read_file", r#"{"path":"notes.txt"}"#, "It says hi").await;
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;

    let accepted = execute(&alice, &session, "read my notes").await;
    let call = laptop.next("tool:call").await;
    assert_eq!(
        call,
        json!({
            "call_id": "call_a", "session_id": session, "run_id": accepted["run_id"],
            "name": "read_file", "arguments": { "path": "notes.txt" },
        })
    );
    let before = events_until(&mut alice, status_is("awaiting_tool")).await;
    let logged = of_type(&before, "tool.call");
    assert_eq!(
        logged[0]["data"],
        json!({ "call_id": "call_a", "name": "read_file",
                "arguments": { "path": "notes.txt" }, "target": "gateway" })
    );
    assert_eq!(session_status(&alice, &session).await, "awaiting_tool");

    let ack = answer(&laptop, "call_a", "hi there").await;
    assert_eq!(ack, json!({ "ok": true }));
    let after = until_idle(&mut alice).await;
    assert_contiguous(&[before.clone(), after.clone()].concat());
    assert_eq!(
        types(&after),
        [
            "tool.result",
            "status",
            "text.delta",
            "message.completed",
            "run.finished",
            "status"
        ]
    );
    assert_eq!(
        after[0]["data"],
        json!({ "call_id": "call_a", "status": "success", "output": "hi there" })
    );
    assert_eq!(after[1]["data"]["status"], "running");
    assert_eq!(after[4]["data"]["reason"], "completed");

    // The model was offered the gateway's tool and the built-in question
    // tool, and got the result with the call's id.
    let offered = mock.requests()[0]["tools"]
        .as_array()
        .expect("tools offered")
        .clone();
    assert_eq!(offered.len(), 2, "{offered:?}");
    assert_eq!(
        offered[0],
        json!({ "type": "function", "function": {
            "name": "read_file", "description": "Reads a text file",
            "parameters": read_file()["parameters"] } })
    );
    assert_eq!(offered[1]["function"]["name"], "ask_user_questions");
    assert_eq!(tool_message(&mock, 1, "call_a")["content"], "hi there");

    // A second valid result for the same call loses.
    let late = answer(&laptop, "call_a", "again").await;
    assert_eq!(error_code(&late), "conflict");
}

#[tokio::test]
async fn bad_registrations_are_refused_and_offer_nothing() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::text(&["ok"]));
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let socket = server
        .socket("/gateway")
        .token("tok-alice")
        .connect()
        .await
        .unwrap();
    let tool = |name: &str, parameters: Value| json!({ "name": name, "description": "d", "parameters": parameters });
    let cases = [
        (
            json!({ "gateway_id": "g", "tools": [tool("x", json!({ "type": "bogus" }))] }),
            "tools[0].parameters",
        ),
        (
            json!({ "gateway_id": "g", "tools": [tool("x", json!({ "minLength": "three" }))] }),
            "tools[0].parameters",
        ),
        (
            json!({ "gateway_id": "g", "tools": [tool("x", json!("object"))] }),
            "tools[0].parameters",
        ),
        (
            json!({ "gateway_id": "g", "tools": [read_file(), tool("has space", json!({}))] }),
            "tools[1].name",
        ),
        (
            json!({ "gateway_id": "g", "tools": [read_file(), read_file()] }),
            "tools[1].name",
        ),
        (
            json!({ "gateway_id": "g", "tools": [tool("ask_user_questions", json!({}))] }),
            "tools[0].name",
        ),
        (json!({ "tools": [read_file()] }), "gateway_id"),
        (json!({ "gateway_id": "", "tools": [] }), "gateway_id"),
        (json!({ "gateway_id": "g" }), "tools"),
        (
            json!({ "gateway_id": "g", "tools": [{ "name": "x", "parameters": {} }] }),
            "description",
        ),
        (
            json!({ "gateway_id": "g", "tools": [read_file()], "extra": 1 }),
            "extra",
        ),
    ];
    for (payload, field) in cases {
        let ack = socket.request("gateway:register", payload.clone()).await;
        assert_eq!(error_code(&ack), "invalid_payload", "{payload}");
        let message = ack["error"]["message"].as_str().unwrap();
        assert!(message.contains(field), "{payload}: {message}");
    }
    let ack = socket
        .request("gateway:register", json!("not an object"))
        .await;
    assert_eq!(error_code(&ack), "invalid_payload");

    // Nothing was registered: the model is offered the question tool only.
    execute(&alice, &session, "hello").await;
    until_idle(&mut alice).await;
    let tools = mock.requests()[0]["tools"].clone();
    assert_eq!(tools.as_array().unwrap().len(), 1, "{tools}");
    assert_eq!(tools[0]["function"]["name"], "ask_user_questions");
}

#[tokio::test]
async fn arguments_that_break_the_schema_and_unknown_tools_never_reach_a_gateway() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[
        ("call_a", "read_file", r#"{"path":5}"#),
        ("call_b", "delete_everything", r#"{}"#),
        ("call_c", "read_file", r#"{"path": "#),
    ]))
    .reply(Reply::text(&["sorry"]));
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;

    execute(&alice, &session, "go").await;
    let events = until_idle(&mut alice).await;
    let results = of_type(&events, "tool.result");
    assert_eq!(results.len(), 3);
    for result in &results {
        assert_eq!(result["data"]["status"], "error", "{result}");
    }
    let why = results[0]["data"]["output"].as_str().unwrap();
    assert!(why.contains("/path"), "{why}");
    let why = results[1]["data"]["output"].as_str().unwrap();
    assert!(why.contains("no tool named \"delete_everything\""), "{why}");
    let why = results[2]["data"]["output"].as_str().unwrap();
    assert!(why.contains("not valid JSON"), "{why}");
    assert_eq!(of_type(&events, "tool.call")[1]["data"]["target"], "server");
    // The session never waited for a tool.
    assert!(
        of_type(&events, "status")
            .iter()
            .all(|e| { e["data"]["status"] == "running" || e["data"]["status"] == "idle" })
    );
    assert_no_call(&mut laptop).await;
    let message = tool_message(&mock, 1, "call_a");
    assert!(
        message["content"].as_str().unwrap().starts_with("[error] "),
        "{message}"
    );
}

#[tokio::test]
async fn refused_results_change_nothing_and_the_first_valid_one_wins() {
    let mock = one_call("read_file", r#"{"path":"a"}"#, "done").await;
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;
    let bobs = gateway(&server, "tok-bob", "bobs", vec![read_file()]).await;

    execute(&alice, &session, "go").await;
    laptop.next("tool:call").await;
    events_until(&mut alice, status_is("awaiting_tool")).await;

    let refusals = [
        (
            &laptop,
            json!({ "call_id": "call_zzz", "output": "x" }),
            "not_found",
        ),
        (
            &bobs,
            json!({ "call_id": "call_a", "output": "x" }),
            "forbidden",
        ),
        (
            &laptop,
            json!({ "call_id": "call_a", "output": "x".repeat(1024 * 1024 + 1) }),
            "too_large",
        ),
        (&laptop, json!({ "output": "x" }), "invalid_payload"),
        (&laptop, json!({ "call_id": "call_a" }), "invalid_payload"),
        (
            &laptop,
            json!({ "call_id": "call_a", "output": null }),
            "invalid_payload",
        ),
        (
            &laptop,
            json!({ "call_id": "call_a", "output": "x", "is_error": "yes" }),
            "invalid_payload",
        ),
        (&laptop, json!(["call_a"]), "invalid_payload"),
    ];
    for (socket, payload, code) in refusals {
        let ack = socket.request("tool:result", payload.clone()).await;
        let shown = ack.to_string();
        assert_eq!(error_code(&ack), code, "{}", &shown[..shown.len().min(300)]);
    }
    let ack = laptop
        .request("tool:result", json!({ "call_id": "call_a" }))
        .await;
    assert!(
        ack["error"]["message"].as_str().unwrap().contains("output"),
        "{ack}"
    );
    // A UI cannot answer a gateway's call.
    let ack = alice
        .request(
            "tool:result",
            json!({ "session_id": session, "call_id": "call_a", "output": "x" }),
        )
        .await;
    assert_eq!(error_code(&ack), "forbidden");
    assert_eq!(session_status(&alice, &session).await, "awaiting_tool");

    let ack = laptop
        .request(
            "tool:result",
            json!({ "call_id": "call_a", "output": { "lines": 3 }, "is_error": true }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let ack = answer(&laptop, "call_a", "x").await;
    assert_eq!(error_code(&ack), "conflict");

    let events = until_idle(&mut alice).await;
    let results = of_type(&events, "tool.result");
    assert_eq!(results.len(), 1);
    assert_eq!(
        results[0]["data"],
        json!({ "call_id": "call_a", "status": "error", "output": { "lines": 3 } })
    );
    assert_eq!(
        tool_message(&mock, 1, "call_a")["content"],
        r#"[error] {"lines":3}"#
    );
}

#[tokio::test]
async fn a_gateway_that_reconnects_gets_the_calls_it_had_not_answered() {
    let mock = one_call("read_file", r#"{"path":"a"}"#, "done").await;
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;

    execute(&alice, &session, "go").await;
    let first = laptop.next("tool:call").await;
    laptop.disconnect().await;

    // The same gateway comes back on a new connection: it gets the call
    // again, and its answer completes the run.
    let mut again = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;
    let second = again.next("tool:call").await;
    assert_eq!(first, second);
    let ack = answer(&again, "call_a", "A").await;
    assert_eq!(ack["ok"], true, "{ack}");
    let events = until_idle(&mut alice).await;
    assert_eq!(of_type(&events, "tool.result").len(), 1);
    assert_eq!(tool_message(&mock, 1, "call_a")["content"], "A");
}

#[tokio::test]
async fn with_no_gateway_connected_the_call_waits_for_one() {
    let mock = MockLlm::start().await;
    let gate = Gate::new();
    let Reply::Stream(mut frames) =
        Reply::tool_calls(&[("call_a", "read_file", r#"{"path":"a"}"#)])
    else {
        unreachable!()
    };
    frames.insert(0, Frame::Wait(gate.clone()));
    mock.reply(Reply::Stream(frames))
        .reply(Reply::text(&["done"]));
    let (mut server, mut alice, session) = subscribed(&mock.server()).await;
    let laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;

    // The model is offered the tool, and the gateway leaves before the call.
    execute(&alice, &session, "go").await;
    mock.received(1).await;
    laptop.disconnect().await;
    server
        .wait_for_log(|l| l["message"] == "gateway gone")
        .await;
    gate.open();
    let events = events_until(&mut alice, status_is("awaiting_tool")).await;
    assert_eq!(of_type(&events, "tool.call").len(), 1);

    // Another gateway of the user registers the tool: the call goes to it.
    let mut desktop = gateway(&server, "tok-alice", "desktop", vec![read_file()]).await;
    let call = desktop.next("tool:call").await;
    assert_eq!(call["call_id"], "call_a");
    let ack = answer(&desktop, "call_a", "A").await;
    assert_eq!(ack["ok"], true, "{ack}");
    let events = until_idle(&mut alice).await;
    assert_eq!(
        of_type(&events, "tool.result")[0]["data"]["status"],
        "success"
    );
}

#[tokio::test]
async fn a_gateway_away_for_a_network_blip_keeps_its_tools_offered_and_gets_the_call() {
    let mock = one_call("read_file", r#"{"path":"a"}"#, "done").await;
    let (mut server, mut alice, session) = subscribed(&mock.server()).await;
    let laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;

    // The gateway drops just before the user sends a message.
    laptop.disconnect().await;
    server
        .wait_for_log(|l| l["message"] == "gateway gone")
        .await;
    execute(&alice, &session, "go").await;
    let events = events_until(&mut alice, status_is("awaiting_tool")).await;
    assert_eq!(of_type(&events, "tool.call").len(), 1);
    let requests = mock.requests();
    let offered: Vec<&Value> = requests[0]["tools"]
        .as_array()
        .expect("tools offered")
        .iter()
        .map(|t| &t["function"]["name"])
        .collect();
    assert!(offered.contains(&&json!("read_file")), "{offered:?}");

    // Two seconds later it is back, under the same gateway_id.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let mut back = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;
    let call = back.next("tool:call").await;
    assert_eq!(call["call_id"], "call_a");
    let ack = answer(&back, "call_a", "A").await;
    assert_eq!(ack["ok"], true, "{ack}");
    let events = until_idle(&mut alice).await;
    assert_eq!(
        of_type(&events, "tool.result")[0]["data"]["status"],
        "success"
    );
    assert_eq!(tool_message(&mock, 1, "call_a")["content"], "A");
}

#[tokio::test]
async fn a_call_nobody_answers_times_out_and_the_run_goes_on() {
    let mock = one_call("read_file", r#"{"path":"a"}"#, "no luck").await;
    let builder = mock.server().env("SWITCHBOARD_TOOL_TIMEOUT_MS", "300");
    let (server, mut alice, session) = subscribed(&builder).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;

    execute(&alice, &session, "go").await;
    laptop.next("tool:call").await;
    let events = until_idle(&mut alice).await;
    let results = of_type(&events, "tool.result");
    assert_eq!(results[0]["data"]["status"], "timeout");
    assert_eq!(
        of_type(&events, "run.finished")[0]["data"]["reason"],
        "completed"
    );
    let message = tool_message(&mock, 1, "call_a");
    assert!(
        message["content"]
            .as_str()
            .unwrap()
            .starts_with("[timeout] "),
        "{message}"
    );
    let late = answer(&laptop, "call_a", "A").await;
    assert_eq!(error_code(&late), "conflict");
}

#[tokio::test]
async fn a_call_that_needs_approval_runs_only_once_approved() {
    let mock = one_call("run_command", r#"{"command":"ls"}"#, "listed").await;
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![run_command()]).await;
    let bob = server.agent("tok-bob").await;

    execute(&alice, &session, "list").await;
    let events = events_until(&mut alice, status_is("awaiting_approval")).await;
    let requested = of_type(&events, "tool.approval_requested");
    assert_eq!(
        requested[0]["data"],
        json!({ "call_id": "call_a", "name": "run_command", "arguments": { "command": "ls" } })
    );
    assert_no_call(&mut laptop).await;

    let approve = json!({ "session_id": session, "call_id": "call_a", "decision": "approve" });
    let ack = bob.request("tool:approval", approve.clone()).await;
    assert_eq!(error_code(&ack), "forbidden");
    let ack = alice
        .request(
            "tool:approval",
            json!({ "session_id": session, "call_id": "call_nope", "decision": "approve" }),
        )
        .await;
    assert_eq!(error_code(&ack), "not_found");
    let ack = alice
        .request(
            "tool:approval",
            json!({ "session_id": session, "call_id": "call_a", "decision": "maybe" }),
        )
        .await;
    assert_eq!(error_code(&ack), "invalid_payload");
    assert!(
        ack["error"]["message"]
            .as_str()
            .unwrap()
            .contains("decision")
    );
    let ack = answer(&laptop, "call_a", "early").await;
    assert_eq!(error_code(&ack), "conflict");
    assert_no_call(&mut laptop).await;
    assert_eq!(session_status(&alice, &session).await, "awaiting_approval");

    let ack = alice.request("tool:approval", approve.clone()).await;
    assert_eq!(ack, json!({ "ok": true }));
    let ack = alice.request("tool:approval", approve).await;
    assert_eq!(error_code(&ack), "conflict");
    let call = laptop.next("tool:call").await;
    assert_eq!(call["arguments"], json!({ "command": "ls" }));
    let ack = answer(&laptop, "call_a", "Cargo.toml\nsrc").await;
    assert_eq!(ack["ok"], true);
    let events = until_idle(&mut alice).await;
    let statuses: Vec<&Value> = of_type(&events, "status")
        .iter()
        .map(|e| &e["data"]["status"])
        .collect();
    assert_eq!(statuses, ["awaiting_tool", "running", "idle"]);
    assert_eq!(
        tool_message(&mock, 1, "call_a")["content"],
        "Cargo.toml\nsrc"
    );
}

#[tokio::test]
async fn a_denied_call_gives_the_model_the_reason_and_never_runs() {
    let mock = one_call("run_command", r#"{"command":"rm -rf /"}"#, "ok, I won't").await;
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![run_command()]).await;

    execute(&alice, &session, "clean up").await;
    events_until(&mut alice, status_is("awaiting_approval")).await;
    let ack = alice
        .request(
            "tool:approval",
            json!({ "session_id": session, "call_id": "call_a", "decision": "deny",
                    "reason": "too dangerous" }),
        )
        .await;
    assert_eq!(ack, json!({ "ok": true }));
    let events = until_idle(&mut alice).await;
    assert_eq!(
        of_type(&events, "tool.result")[0]["data"],
        json!({ "call_id": "call_a", "status": "denied", "output": "too dangerous" })
    );
    assert_eq!(
        of_type(&events, "run.finished")[0]["data"]["reason"],
        "completed"
    );
    assert_eq!(
        tool_message(&mock, 1, "call_a")["content"],
        "[denied] too dangerous"
    );
    assert_no_call(&mut laptop).await;
}

#[tokio::test]
async fn a_question_to_the_user_is_answered_by_the_owner_only() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[
        (
            "call_q",
            "ask_user_questions",
            r#"{"questions":["Which file?"]}"#,
        ),
        ("call_bad", "ask_user_questions", r#"{"questions":"x"}"#),
    ]))
    .reply(Reply::text(&["thanks"]));
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;
    let bob = server.agent("tok-bob").await;

    execute(&alice, &session, "fix it").await;
    let events = events_until(&mut alice, status_is("awaiting_input")).await;
    let call = of_type(&events, "tool.call")[0];
    assert_eq!(
        call["data"],
        json!({ "call_id": "call_q", "name": "ask_user_questions",
                "arguments": { "questions": ["Which file?"] }, "target": "user" })
    );
    // Arguments that do not fit the built-in schema are refused at once.
    let bad = of_type(&events, "tool.result")[0];
    assert_eq!(bad["data"]["call_id"], "call_bad");
    assert_eq!(bad["data"]["status"], "error");

    let reply = json!({ "session_id": session, "call_id": "call_q", "output": "main.rs" });
    let ack = bob.request("tool:result", reply.clone()).await;
    assert_eq!(error_code(&ack), "forbidden");
    let ack = answer(&laptop, "call_q", "x").await;
    assert_eq!(error_code(&ack), "forbidden");
    let other = server.create_session("tok-alice").await;
    let ack = alice
        .request(
            "tool:result",
            json!({ "session_id": other, "call_id": "call_q", "output": "x" }),
        )
        .await;
    assert_eq!(error_code(&ack), "not_found");
    assert_eq!(session_status(&alice, &session).await, "awaiting_input");

    let ack = alice.request("tool:result", reply.clone()).await;
    assert_eq!(ack, json!({ "ok": true }));
    let ack = alice.request("tool:result", reply).await;
    assert_eq!(error_code(&ack), "conflict");
    let events = until_idle(&mut alice).await;
    assert_eq!(
        of_type(&events, "tool.result")[0]["data"],
        json!({ "call_id": "call_q", "status": "success", "output": "main.rs" })
    );
    assert_eq!(tool_message(&mock, 1, "call_q")["content"], "main.rs");
}

#[tokio::test]
async fn stop_and_interrupt_cancel_pending_calls() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[(
        "call_a",
        "read_file",
        r#"{"path":"a"}"#,
    )]))
    .reply(Reply::tool_calls(&[(
        "call_b",
        "read_file",
        r#"{"path":"b"}"#,
    )]))
    .reply(Reply::text(&["second answer"]));
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;

    execute(&alice, &session, "first").await;
    laptop.next("tool:call").await;
    events_until(&mut alice, status_is("awaiting_tool")).await;
    let ack = alice
        .request("agent:stop", json!({ "session_id": session }))
        .await;
    assert_eq!(ack, json!({ "ok": true, "stopped": true }));
    let events = until_idle(&mut alice).await;
    assert_eq!(
        types(&events),
        ["tool.result", "run.finished", "status"],
        "{events:?}"
    );
    assert_eq!(events[0]["data"]["status"], "cancelled");
    assert_eq!(events[1]["data"]["reason"], "stopped");
    let late = answer(&laptop, "call_a", "A").await;
    assert_eq!(error_code(&late), "conflict");

    // A new message interrupts a run that waits for a call.
    execute(&alice, &session, "second").await;
    let call = laptop.next("tool:call").await;
    assert_eq!(call["call_id"], "call_b");
    events_until(&mut alice, status_is("awaiting_tool")).await;
    execute(&alice, &session, "third").await;
    let events = events_until(&mut alice, |e| e["type"] == "run.finished").await;
    let result = of_type(&events, "tool.result")[0];
    assert_eq!(result["data"]["call_id"], "call_b");
    assert_eq!(result["data"]["status"], "cancelled");
    assert_eq!(events.last().unwrap()["data"]["reason"], "interrupted");
    until_idle(&mut alice).await;
    let late = answer(&laptop, "call_b", "B").await;
    assert_eq!(error_code(&late), "conflict");
}

#[tokio::test]
async fn a_call_pending_when_the_server_dies_is_cancelled_at_the_next_start() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[(
        "call_a",
        "read_file",
        r#"{"path":"a"}"#,
    )]));
    let builder: ServerBuilder = mock.server();
    let (mut server, mut alice, session) = subscribed(&builder).await;
    let mut laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;
    execute(&alice, &session, "go").await;
    laptop.next("tool:call").await;
    let before = events_until(&mut alice, status_is("awaiting_tool")).await;
    let head = before.last().unwrap()["seq"].as_i64().unwrap();
    server.stop_with(nix::sys::signal::Signal::SIGKILL).await;

    let server = builder.spawn().await;
    let mut alice = server.agent("tok-alice").await;
    let ack = alice
        .request(
            "session:subscribe",
            json!({ "session_id": session, "after_seq": head }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    let events = until_idle(&mut alice).await;
    assert_eq!(types(&events), ["tool.result", "run.finished", "status"]);
    assert_eq!(events[0]["data"]["status"], "cancelled");
    assert_eq!(events[1]["data"]["reason"], "interrupted");

    let laptop = gateway(&server, "tok-alice", "laptop", vec![read_file()]).await;
    let late = answer(&laptop, "call_a", "A").await;
    assert_eq!(error_code(&late), "conflict");
}
