//! Limits on gateway registrations (issue 12, items 3 and 4): a user's
//! registrations are bounded in number, size and complexity and kept near
//! their JSON size, and checking their schemas never stalls the server.
//! Memory is the server process's RSS, read from /proc.

use futures_util::StreamExt;
use futures_util::stream::FuturesUnordered;
use std::time::Duration;

use serde_json::{Map, Value, json};

use crate::helpers::{ServerBuilder, Socket, TestServer, user_jwt};
use crate::mock_llm::{MockLlm, Reply};
use crate::runs::{execute, subscribed, until_idle};

const MIB: u64 = 1024;

async fn gateway(server: &TestServer, token: &str) -> Socket {
    server
        .socket("/gateway")
        .token(token)
        .connect()
        .await
        .expect("connected to /gateway")
}

fn registration(gateway_id: &str, tools: Vec<Value>) -> Value {
    json!({ "gateway_id": gateway_id, "tools": tools })
}

/// A tool whose schema has `fields` string properties, each described.
fn wide_tool(i: usize, fields: usize) -> Value {
    let properties: Map<String, Value> = (0..fields)
        .map(|j| {
            let field = json!({ "type": "string", "description": format!("The field number {j} of this tool") });
            (format!("field_{j}"), field)
        })
        .collect();
    json!({
        "name": format!("t{i}"),
        "description": "A tool with many fields",
        "parameters": { "type": "object", "properties": properties },
    })
}

/// The registration of the issue: 128 tools × 300 properties, 3 MB (under
/// the 4 MiB message limit).
fn huge_registration(gateway_id: &str) -> Value {
    registration(gateway_id, (0..128).map(|i| wide_tool(i, 300)).collect())
}

/// Close to the largest registration the defaults accept: 128 tools × 80
/// properties, 0.8 MB.
fn largest_registration(gateway_id: &str) -> Value {
    registration(gateway_id, (0..128).map(|i| wide_tool(i, 80)).collect())
}

/// An MCP-style tool of about 4 KB: described options, a path with a
/// pattern, an enum, a nested object, an array.
fn mcp_tool(i: usize) -> Value {
    let mut properties: Map<String, Value> = (0..30)
        .map(|j| {
            let option = json!({ "type": "string", "description": format!("What option {j} of tool {i} controls, in a sentence or two for the model to read.") });
            (format!("option_{j}"), option)
        })
        .collect();
    properties.insert(
        "path".into(),
        json!({ "type": "string", "pattern": "^[^\\u0000]+$", "description": "A path in the workspace" }),
    );
    properties.insert(
        "mode".into(),
        json!({ "type": "string", "enum": ["read", "write", "append"], "default": "read" }),
    );
    properties.insert(
        "limits".into(),
        json!({ "type": "object", "additionalProperties": false, "properties": {
            "max_bytes": { "type": "integer", "minimum": 1, "maximum": 1048576 },
            "timeout_ms": { "type": "integer", "minimum": 0 } } }),
    );
    properties.insert(
        "tags".into(),
        json!({ "type": "array", "items": { "type": "string", "minLength": 1, "maxLength": 64 },
                "maxItems": 16, "uniqueItems": true }),
    );
    json!({
        "name": format!("tool_{i}"),
        "description": format!("Tool {i}: does one useful thing on the user's machine and reports what it did."),
        "parameters": { "type": "object", "properties": properties, "required": ["path"], "additionalProperties": false },
    })
}

/// Tools whose schemas are `patterns` distinct regular expressions each
/// (`^.{0,N}$`, N from 300 to 899: cheap to write, costly to compile, and
/// within the compiled size allowed), `seed` making them differ between
/// registrations.
fn pattern_tools(tools: usize, patterns: usize, seed: usize) -> Vec<Value> {
    (0..tools)
        .map(|i| {
            let properties: Map<String, Value> = (0..patterns)
                .map(|j| {
                    let n = 300 + (seed * 37 + i * patterns + j) % 600;
                    let field = json!({ "type": "string", "pattern": format!("^.{{0,{n}}}$") });
                    (format!("f{j}"), field)
                })
                .collect();
            json!({
                "name": format!("p{i}"),
                "description": "Checked by patterns",
                "parameters": { "type": "object", "properties": properties },
            })
        })
        .collect()
}

fn error_of(ack: &Value) -> (&str, &str) {
    assert_eq!(ack["ok"], false, "{ack}");
    (
        ack["error"]["code"].as_str().unwrap(),
        ack["error"]["message"].as_str().unwrap(),
    )
}

/// The server's CPU time so far, in clock ticks (utime + stime).
fn cpu_ticks(server: &TestServer) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", server.pid())).unwrap();
    // Fields after the command name, which ends with the last `)`.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn twenty_huge_registrations_of_one_user_are_refused_before_they_cost_memory() {
    let server = ServerBuilder::with_auth().spawn().await;
    let mut sockets = Vec::new();
    for _ in 0..20 {
        sockets.push(gateway(&server, "tok-alice").await);
    }
    let before = server.rss_kib();
    let huge = huge_registration("g");
    let acks = futures_util::future::join_all(sockets.iter().enumerate().map(|(i, s)| {
        let mut payload = huge.clone();
        payload["gateway_id"] = json!(format!("g{i}"));
        // 20 payloads of several MiB at once: their refusals may take a
        // while to come back on a loaded machine.
        s.request_within("gateway:register", payload, Duration::from_secs(90))
    }))
    .await;
    let grown = server.peak_rss_kib().saturating_sub(before) / MIB;
    eprintln!("peak RSS growth: {grown} MiB");
    // Unbounded, the server kept ~90 MiB for each (1.8 GiB).
    assert!(grown < 200, "peak RSS grew by {grown} MiB");
    for ack in acks {
        let (code, message) = error_of(&ack);
        assert_eq!(code, "too_large", "{message}");
        assert!(message.starts_with("tools: "), "{message}");
        assert!(message.contains("1048576"), "{message}");
    }
}

#[tokio::test]
async fn a_user_has_at_most_sixteen_gateways_and_each_costs_about_its_json_size() {
    let mut server = ServerBuilder::with_auth().spawn().await;
    let mut sockets = Vec::new();
    for _ in 0..20 {
        sockets.push(gateway(&server, "tok-alice").await);
    }
    let bob = gateway(&server, "tok-bob").await;
    let before = server.rss_kib();
    let mut acks = Vec::new();
    let largest = largest_registration("g");
    for (i, socket) in sockets.iter().enumerate() {
        let mut payload = largest.clone();
        payload["gateway_id"] = json!(format!("g{i}"));
        acks.push(socket.request("gateway:register", payload).await);
    }
    let grown = server.peak_rss_kib().saturating_sub(before) / MIB;
    eprintln!("peak RSS growth: {grown} MiB");
    // 16 registrations of 0.8 MB each; unchecked, the 20 took 480 MiB.
    assert!(grown < 96, "peak RSS grew by {grown} MiB");
    for ack in &acks[..16] {
        assert_eq!(ack, &json!({ "ok": true, "registered": 128 }));
    }
    for ack in &acks[16..] {
        let (code, message) = error_of(ack);
        assert_eq!(code, "conflict", "{message}");
        assert!(
            message.contains("16 gateways") && message.contains("replace"),
            "{message}"
        );
    }
    // Registering again replaces and does not count twice, on the same
    // socket or on another one with the same gateway_id.
    let again = registration("g3", vec![mcp_tool(0)]);
    let ack = sockets[3].request("gateway:register", again.clone()).await;
    assert_eq!(ack, json!({ "ok": true, "registered": 1 }));
    let ack = sockets[17].request("gateway:register", again).await;
    assert_eq!(ack, json!({ "ok": true, "registered": 1 }));
    // Another user is not affected.
    let ack = bob
        .request("gateway:register", registration("g0", vec![mcp_tool(0)]))
        .await;
    assert_eq!(ack, json!({ "ok": true, "registered": 1 }));
    // A gateway that goes away frees its place.
    sockets.swap_remove(5).disconnect().await;
    server
        .wait_for_log(|line| line["message"] == "gateway gone")
        .await;
    let ack = sockets[18]
        .request("gateway:register", registration("g18", vec![mcp_tool(0)]))
        .await;
    assert_eq!(ack, json!({ "ok": true, "registered": 1 }));
}

#[tokio::test]
async fn a_registration_just_inside_the_defaults_works_and_costs_little() {
    let mock = MockLlm::start().await;
    mock.reply(Reply::tool_calls(&[(
        "call_a",
        "tool_127",
        r#"{"path":"notes.txt","mode":"read","tags":["a"]}"#,
    )]))
    .reply(Reply::text(&["done"]));
    let (server, mut alice, session) = subscribed(&mock.server()).await;
    let mut laptop = gateway(&server, "tok-alice").await;
    let before = server.rss_kib();

    let tools: Vec<Value> = (0..128).map(mcp_tool).collect();
    let ack = laptop
        .request("gateway:register", registration("laptop", tools))
        .await;
    assert_eq!(ack, json!({ "ok": true, "registered": 128 }));
    let grown = server.peak_rss_kib().saturating_sub(before);
    eprintln!("peak RSS growth: {grown} KiB");
    // 128 tools, 570 KB of JSON: 14 MiB when kept as values and
    // compiled validators.
    assert!(grown < 6 * MIB, "peak RSS grew by {grown} KiB");

    // The model is offered all of them, and a call is checked and relayed.
    execute(&alice, &session, "use the last tool").await;
    let call = laptop.next("tool:call").await;
    assert_eq!(call["name"], "tool_127");
    let ack = laptop
        .request(
            "tool:result",
            json!({ "call_id": "call_a", "output": "ok" }),
        )
        .await;
    assert_eq!(ack["ok"], true, "{ack}");
    until_idle(&mut alice).await;
    let offered = mock.requests()[0]["tools"].as_array().unwrap().clone();
    assert_eq!(offered.len(), 129);
    assert_eq!(
        offered[5]["function"]["parameters"],
        mcp_tool(5)["parameters"]
    );
}

#[tokio::test]
async fn registrations_with_too_many_or_too_long_patterns_are_refused_naming_the_field() {
    let server = ServerBuilder::with_auth().spawn().await;
    let socket = gateway(&server, "tok-alice").await;
    let long = "a".repeat(1_001);
    let cases = [
        (
            registration("g", pattern_tools(1, 33, 0)),
            "too_large",
            vec!["tools[0].parameters", "33 regular expressions", "32"],
        ),
        (
            registration("g", pattern_tools(9, 32, 0)),
            "too_large",
            vec!["tools: ", "tools[8].parameters", "256"],
        ),
        (
            registration(
                "g",
                vec![json!({ "name": "x", "description": "d", "parameters":
                    { "properties": { "name": { "type": "string", "pattern": long } } } })],
            ),
            "too_large",
            vec!["tools[0].parameters", "/properties/name/pattern", "1000"],
        ),
        (
            registration(
                "g",
                vec![json!({ "name": "x", "description": "d", "parameters":
                    { "patternProperties": { long.clone(): {} } } })],
            ),
            "too_large",
            vec!["tools[0].parameters", "/patternProperties/"],
        ),
        // A short pattern that would compile to about 16 MiB.
        (
            registration(
                "g",
                vec![json!({ "name": "x", "description": "d", "parameters":
                    { "properties": { "name": { "pattern": "^[\\p{L}\\p{N} ]{1,200}$" } } } })],
            ),
            "invalid_payload",
            vec!["tools[0].parameters", "/properties/name/pattern"],
        ),
        (
            registration(
                "g",
                vec![json!({ "name": "x", "description": "d",
                    "parameters": { "allOf": vec![json!({}); 2_048] } })],
            ),
            "too_large",
            vec!["tools[0].parameters", "2049 JSON objects"],
        ),
        (
            registration(
                "g",
                vec![json!({ "name": "x", "description": "d", "parameters":
                    { "description": "x".repeat(64 * 1024) } })],
            ),
            "too_large",
            vec!["tools[0].parameters", "65536"],
        ),
        (
            registration("g\0x", vec![mcp_tool(0)]),
            "invalid_payload",
            vec!["gateway_id", "NUL"],
        ),
        (
            registration(
                "g",
                vec![json!({ "name": "x", "description": "a\0b", "parameters": {} })],
            ),
            "invalid_payload",
            vec!["tools[0].description", "NUL"],
        ),
    ];
    for (payload, code, words) in cases {
        let ack = socket.request("gateway:register", payload).await;
        let (got, message) = error_of(&ack);
        assert_eq!(got, code, "{message}");
        for word in words {
            assert!(message.contains(word), "{word:?} not in {message:?}");
        }
    }
    let mut deep = json!({});
    for _ in 0..70 {
        deep = json!({ "not": deep });
    }
    let ack = socket
        .request(
            "gateway:register",
            registration(
                "g",
                vec![json!({ "name": "x", "description": "d", "parameters": deep })],
            ),
        )
        .await;
    let (code, message) = error_of(&ack);
    assert_eq!(code, "invalid_payload");
    assert!(
        message.contains("tools[0].parameters") && message.contains("64"),
        "{message}"
    );

    // As many patterns as allowed still register.
    let ack = socket
        .request(
            "gateway:register",
            registration("g", pattern_tools(1, 32, 0)),
        )
        .await;
    assert_eq!(ack, json!({ "ok": true, "registered": 1 }));
}

#[tokio::test]
async fn while_pattern_heavy_registrations_compile_the_server_answers_other_requests() {
    let server = ServerBuilder::with_auth().spawn().await;
    let laptop = gateway(&server, "tok-alice").await;
    let desktop = gateway(&server, "tok-alice").await;
    let ui = server.agent("tok-bob").await;
    let order = std::sync::Mutex::new(Vec::new());
    let done = |what: &'static str| order.lock().unwrap().push(what);

    let idle = cpu_ticks(&server);
    // 64 costly patterns each: seconds of compiling.
    let register = async |gateway: &Socket, name: &'static str, seed| {
        let payload = registration(name, pattern_tools(2, 32, seed));
        let ack = gateway.request("gateway:register", payload).await;
        done(name);
        ack
    };
    let others = async {
        // Until the server has spent half a second on them.
        while cpu_ticks(&server) < idle + 50 {
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        let health = server.http.get(server.http("/healthz")).send().await;
        assert_eq!(health.unwrap().status(), 200);
        done("healthz");
        let ack = ui.request("auth:whoami", json!({})).await;
        assert_eq!(ack["user_id"], "bob");
        done("whoami");
    };
    let (laptop_ack, desktop_ack, ()) = tokio::join!(
        register(&laptop, "laptop", 0),
        register(&desktop, "desktop", 1),
        others
    );
    let order = order.lock().unwrap().clone();
    assert_eq!(&order[..2], ["healthz", "whoami"], "{order:?}");
    assert_eq!(laptop_ack, json!({ "ok": true, "registered": 2 }));
    assert_eq!(desktop_ack, json!({ "ok": true, "registered": 2 }));
}

#[tokio::test]
async fn a_users_fifth_registration_in_flight_is_refused_busy_and_the_others_register() {
    let server = ServerBuilder::with_auth().spawn().await;
    let mut sockets = Vec::new();
    for _ in 0..5 {
        sockets.push(gateway(&server, "tok-alice").await);
    }
    let acks = futures_util::future::join_all(sockets.iter().enumerate().map(|(i, s)| {
        s.request(
            "gateway:register",
            registration(&format!("g{i}"), pattern_tools(1, 32, i)),
        )
    }))
    .await;
    let busy: Vec<&Value> = acks.iter().filter(|a| a["ok"] == false).collect();
    assert_eq!(busy.len(), 1, "{acks:?}");
    let (code, message) = error_of(busy[0]);
    assert_eq!(code, "busy");
    assert!(message.contains("register again"), "{message}");
    let registered = acks.iter().filter(|a| a["registered"] == 1).count();
    assert_eq!(registered, 4, "{acks:?}");
}

#[tokio::test]
async fn registrations_past_the_compile_queue_are_refused_busy() {
    let server = ServerBuilder::with_auth().spawn().await;
    // 2 compile at once and 32 wait: the 35th and 36th are refused. Nine
    // users with 4 each stay within each user's share.
    let mut sockets = Vec::new();
    for user in 0..9 {
        let token = user_jwt(&format!("user{user}"));
        for _ in 0..4 {
            sockets.push(gateway(&server, &token).await);
        }
    }
    let mut acks: FuturesUnordered<_> = sockets
        .iter()
        .enumerate()
        .map(|(i, s)| {
            s.request(
                "gateway:register",
                registration(&format!("g{i}"), pattern_tools(8, 32, i)),
            )
        })
        .collect();
    // The refusals come at once; the others take seconds each.
    for _ in 0..2 {
        let ack = acks.next().await.unwrap();
        let (code, message) = error_of(&ack);
        assert_eq!(code, "busy", "{message}");
        assert!(message.contains("register again"), "{message}");
    }
}
