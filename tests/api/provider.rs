//! The OpenAI-compatible provider against a mock Chat Completions server
//! that the test starts itself.

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use secrecy::SecretString;
use serde_json::{Value, json};
use switchboard::engine::provider::openai::OpenAi;
use switchboard::engine::provider::{
    ChatMessage, ChatRequest, Provider, ProviderError, ProviderEvent, ToolCall, ToolSpec, Usage,
};

/// A request the mock received: its JSON body and `Authorization` header.
type Received = (Value, Option<String>);

#[derive(Clone, Default)]
struct Seen(Arc<Mutex<Vec<Received>>>);

/// The scenario is the requested model's name.
async fn completions(State(seen): State<Seen>, headers: HeaderMap, body: Bytes) -> Response {
    let request: Value = serde_json::from_slice(&body).unwrap();
    let auth = headers
        .get("authorization")
        .map(|v| v.to_str().unwrap().to_owned());
    seen.0.lock().unwrap().push((request.clone(), auth));
    let chunk = |v: Value| format!("data: {v}\n\n");
    let (frames, stall): (Vec<String>, bool) = match request["model"].as_str().unwrap() {
        "text" => (
            vec![
                chunk(
                    json!({ "choices": [{ "delta": { "role": "assistant", "content": "Hel" } }] }),
                ),
                chunk(json!({ "choices": [{ "delta": { "content": "lo" } }] })),
                chunk(json!({ "choices": [{ "delta": {}, "finish_reason": "stop" }] })),
                chunk(
                    json!({ "choices": [], "usage": { "prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5 } }),
                ),
                "data: [DONE]\n\n".into(),
            ],
            false,
        ),
        "tools" => (
            vec![
                chunk(
                    json!({ "choices": [{ "delta": { "tool_calls": [{ "index": 0, "id": "call_1", "type": "function", "function": { "name": "read_file", "arguments": "{\"pa" } }] } }] }),
                ),
                chunk(
                    json!({ "choices": [{ "delta": { "tool_calls": [{ "index": 0, "function": { "arguments": "th\":\"a\"}" } }] } }] }),
                ),
                chunk(json!({ "choices": [{ "delta": {}, "finish_reason": "tool_calls" }] })),
                "data: [DONE]\n\n".into(),
            ],
            false,
        ),
        "error500" => {
            return (StatusCode::INTERNAL_SERVER_ERROR, "upstream exploded").into_response();
        }
        "malformed" => (
            vec![
                chunk(json!({ "choices": [{ "delta": { "content": "ok" } }] })),
                "data: {not json\n\n".into(),
            ],
            false,
        ),
        "midstream" => (
            vec![chunk(json!({ "error": { "message": "rate limited" } }))],
            false,
        ),
        "truncated" => (
            vec![chunk(
                json!({ "choices": [{ "delta": { "content": "cut" } }] }),
            )],
            false,
        ),
        "stall" => (
            vec![chunk(
                json!({ "choices": [{ "delta": { "content": "wait" } }] }),
            )],
            true,
        ),
        other => panic!("unknown scenario {other}"),
    };
    let stream = futures_util::stream::iter(
        frames
            .into_iter()
            .map(|f| Ok::<_, Infallible>(Bytes::from(f))),
    )
    .chain(futures_util::stream::once(async move {
        if stall {
            tokio::time::sleep(Duration::from_secs(30)).await;
        }
        Ok(Bytes::new())
    }));
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
        .into_response()
}

async fn mock() -> (String, Seen) {
    let seen = Seen::default();
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    (format!("http://{addr}/v1"), seen)
}

fn provider(base: &str, model: &str) -> OpenAi {
    OpenAi::new(
        base,
        Some(SecretString::from("sk-test")),
        model,
        Duration::from_secs(5),
        Duration::from_millis(500),
    )
    .unwrap()
}

async fn run(
    base: &str,
    model: &str,
    request: ChatRequest,
) -> Vec<Result<ProviderEvent, ProviderError>> {
    provider(base, model).stream(request).collect().await
}

fn hello() -> ChatRequest {
    ChatRequest {
        messages: vec![ChatMessage::User {
            content: "hi".into(),
        }],
        tools: vec![],
    }
}

#[tokio::test]
async fn streamed_text_arrives_delta_by_delta_with_usage() {
    let (base, seen) = mock().await;
    let events = run(&base, "text", hello()).await;
    assert_eq!(
        events,
        vec![
            Ok(ProviderEvent::TextDelta("Hel".into())),
            Ok(ProviderEvent::TextDelta("lo".into())),
            Ok(ProviderEvent::Finished {
                reason: "stop".into(),
                usage: Some(Usage {
                    prompt_tokens: 3,
                    completion_tokens: 2,
                    total_tokens: 5
                }),
            }),
        ]
    );
    let (request, auth) = seen.0.lock().unwrap()[0].clone();
    assert_eq!(auth.as_deref(), Some("Bearer sk-test"));
    assert_eq!(request["stream"], true);
    assert_eq!(request["stream_options"]["include_usage"], true);
    assert_eq!(
        request["messages"],
        json!([{ "role": "user", "content": "hi" }])
    );
    assert!(request.get("tools").is_none());
}

#[tokio::test]
async fn the_whole_conversation_and_the_tools_are_sent_and_tool_calls_come_back_assembled() {
    let (base, seen) = mock().await;
    let request = ChatRequest {
        messages: vec![
            ChatMessage::User {
                content: "read a".into(),
            },
            ChatMessage::Assistant {
                content: String::new(),
                tool_calls: vec![ToolCall {
                    id: "call_0".into(),
                    name: "list_dir".into(),
                    arguments: "{}".into(),
                }],
            },
            ChatMessage::Tool {
                tool_call_id: "call_0".into(),
                content: "a".into(),
            },
        ],
        tools: vec![ToolSpec {
            name: "read_file".into(),
            description: "Reads a file".into(),
            parameters: json!({ "type": "object", "properties": { "path": { "type": "string" } } }),
        }],
    };
    let events = run(&base, "tools", request).await;
    assert_eq!(
        events[0],
        Ok(ProviderEvent::ToolCall(ToolCall {
            id: "call_1".into(),
            name: "read_file".into(),
            arguments: r#"{"path":"a"}"#.into(),
        }))
    );
    assert!(
        matches!(&events[1], Ok(ProviderEvent::Finished { reason, .. }) if reason == "tool_calls")
    );

    let (sent, _) = seen.0.lock().unwrap()[0].clone();
    assert_eq!(sent["messages"][1]["role"], "assistant");
    assert_eq!(
        sent["messages"][1]["tool_calls"][0],
        json!({ "id": "call_0", "type": "function",
                "function": { "name": "list_dir", "arguments": "{}" } })
    );
    assert_eq!(
        sent["messages"][2],
        json!({ "role": "tool", "tool_call_id": "call_0", "content": "a" })
    );
    assert_eq!(sent["tools"][0]["type"], "function");
    assert_eq!(sent["tools"][0]["function"]["name"], "read_file");
}

#[tokio::test]
async fn failures_end_the_stream_with_an_error() {
    let (base, _) = mock().await;
    let last = |events: Vec<Result<ProviderEvent, ProviderError>>| {
        events.into_iter().last().unwrap().unwrap_err()
    };
    assert!(matches!(
        last(run(&base, "error500", hello()).await),
        ProviderError::Http { status: 500, .. }
    ));
    assert!(matches!(
        last(run(&base, "malformed", hello()).await),
        ProviderError::Malformed(_)
    ));
    assert_eq!(
        last(run(&base, "midstream", hello()).await),
        ProviderError::Upstream("rate limited".into())
    );
    assert_eq!(
        last(run(&base, "truncated", hello()).await),
        ProviderError::Incomplete
    );
    let stalled = run(&base, "stall", hello()).await;
    assert_eq!(stalled[0], Ok(ProviderEvent::TextDelta("wait".into())));
    assert!(matches!(stalled[1], Err(ProviderError::Idle(_))));
    assert!(matches!(
        last(run("http://127.0.0.1:9/v1", "text", hello()).await),
        ProviderError::Connect(_)
    ));
}
