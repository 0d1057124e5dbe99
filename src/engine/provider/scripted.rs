//! A deterministic built-in model: no network, the same answer every time.
//!
//! It answers the last message of the conversation:
//!
//! | last message | answer |
//! | --- | --- |
//! | a `tool` result | `Tool <call id> returned: <content>` |
//! | `/tool NAME {json}` | a call of tool `NAME` with those arguments |
//! | `/ask Q1 \| Q2` | a call of `ask_user_questions { questions: [Q1, Q2] }` |
//! | `/sleep MS text` | waits `MS` milliseconds (up to a minute), then answers `text` |
//! | `/fail` | a provider error |
//! | anything else | `You said: <message>` |
//!
//! Text is streamed a word at a time, `delay` apart.

use std::time::Duration;

use futures_util::StreamExt;
use serde_json::{Value, json};

use super::{
    ChatMessage, ChatRequest, Provider, ProviderError, ProviderEvent, ProviderStream, ToolCall,
    Usage,
};

pub struct Scripted {
    delay: Duration,
}

impl Scripted {
    pub fn new(delay: Duration) -> Self {
        Self { delay }
    }
}

enum Plan {
    Say { wait: Duration, text: String },
    Call { name: String, arguments: Value },
    Fail(String),
}

fn plan(request: &ChatRequest) -> Plan {
    let say = |text: String| Plan::Say {
        wait: Duration::ZERO,
        text,
    };
    match request.messages.last() {
        Some(ChatMessage::Tool {
            tool_call_id,
            content,
        }) => say(format!("Tool {tool_call_id} returned: {content}")),
        Some(ChatMessage::User { content }) => {
            let content = content.trim();
            if let Some(rest) = content.strip_prefix("/tool ") {
                let (name, arguments) = rest.split_once(' ').unwrap_or((rest, "{}"));
                match serde_json::from_str(arguments) {
                    Ok(arguments) => Plan::Call {
                        name: name.to_owned(),
                        arguments,
                    },
                    Err(e) => say(format!("I cannot read those arguments: {e}")),
                }
            } else if let Some(rest) = content.strip_prefix("/ask ") {
                let questions: Vec<&str> = rest
                    .split('|')
                    .map(str::trim)
                    .filter(|q| !q.is_empty())
                    .collect();
                Plan::Call {
                    name: "ask_user_questions".to_owned(),
                    arguments: json!({ "questions": questions }),
                }
            } else if let Some(rest) = content.strip_prefix("/sleep ") {
                let (ms, text) = rest.split_once(' ').unwrap_or((rest, "Done."));
                let ms = ms.parse::<u64>().unwrap_or(0).min(60_000);
                Plan::Say {
                    wait: Duration::from_millis(ms),
                    text: text.to_owned(),
                }
            } else if content == "/fail" {
                Plan::Fail("the scripted model was asked to fail".to_owned())
            } else {
                say(format!("You said: {content}"))
            }
        }
        _ => say("Hello! Send me a message.".to_owned()),
    }
}

impl Provider for Scripted {
    fn stream(&self, request: ChatRequest) -> ProviderStream {
        let delay = self.delay;
        let prompt_tokens = request
            .messages
            .iter()
            .map(|m| match m {
                ChatMessage::System { content }
                | ChatMessage::User { content }
                | ChatMessage::Assistant { content, .. }
                | ChatMessage::Tool { content, .. } => content.split_whitespace().count() as u64,
            })
            .sum::<u64>();
        let events: Vec<(Duration, Result<ProviderEvent, ProviderError>)> = match plan(&request) {
            Plan::Fail(message) => vec![(Duration::ZERO, Err(ProviderError::Upstream(message)))],
            Plan::Call { name, arguments } => vec![
                (
                    delay,
                    Ok(ProviderEvent::ToolCall(ToolCall {
                        id: format!("call_{}", uuid::Uuid::now_v7().simple()),
                        name,
                        arguments: arguments.to_string(),
                    })),
                ),
                (Duration::ZERO, Ok(finished("tool_calls", prompt_tokens, 1))),
            ],
            Plan::Say { wait, text } => {
                let words: Vec<String> = text.split_inclusive(' ').map(str::to_owned).collect();
                let count = words.len() as u64;
                let mut events: Vec<_> = words
                    .into_iter()
                    .enumerate()
                    .map(|(i, w)| {
                        (
                            if i == 0 { wait + delay } else { delay },
                            Ok(ProviderEvent::TextDelta(w)),
                        )
                    })
                    .collect();
                events.push((Duration::ZERO, Ok(finished("stop", prompt_tokens, count))));
                events
            }
        };
        Box::pin(
            futures_util::stream::iter(events).then(|(wait, event)| async move {
                if !wait.is_zero() {
                    tokio::time::sleep(wait).await;
                }
                event
            }),
        )
    }
}

fn finished(reason: &str, prompt_tokens: u64, completion_tokens: u64) -> ProviderEvent {
    ProviderEvent::Finished {
        reason: reason.to_owned(),
        usage: Some(Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn run(messages: Vec<ChatMessage>) -> Vec<Result<ProviderEvent, ProviderError>> {
        Scripted::new(Duration::ZERO)
            .stream(ChatRequest {
                messages,
                tools: vec![],
            })
            .collect()
            .await
    }

    fn user(text: &str) -> ChatMessage {
        ChatMessage::User {
            content: text.to_owned(),
        }
    }

    #[tokio::test]
    async fn it_echoes_a_word_at_a_time() {
        let events = run(vec![user("fix the test")]).await;
        let text: String = events
            .iter()
            .filter_map(|e| match e {
                Ok(ProviderEvent::TextDelta(t)) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(text, "You said: fix the test");
        assert_eq!(events.len(), 6, "five words and the finish");
        assert!(
            matches!(events.last(), Some(Ok(ProviderEvent::Finished { reason, .. })) if reason == "stop")
        );
    }

    #[tokio::test]
    async fn it_calls_tools_and_asks_questions_on_request() {
        let events = run(vec![user(r#"/tool read_file {"path":"README.md"}"#)]).await;
        match &events[0] {
            Ok(ProviderEvent::ToolCall(call)) => {
                assert_eq!(call.name, "read_file");
                assert_eq!(call.arguments, r#"{"path":"README.md"}"#);
            }
            other => panic!("{other:?}"),
        }
        let events = run(vec![user("/ask Which branch? | Run the tests?")]).await;
        match &events[0] {
            Ok(ProviderEvent::ToolCall(call)) => {
                assert_eq!(call.name, "ask_user_questions");
                assert_eq!(
                    call.arguments,
                    r#"{"questions":["Which branch?","Run the tests?"]}"#
                );
            }
            other => panic!("{other:?}"),
        }
        let events = run(vec![ChatMessage::Tool {
            tool_call_id: "call_1".into(),
            content: "42".into(),
        }])
        .await;
        assert_eq!(events[0], Ok(ProviderEvent::TextDelta("Tool ".into())));
        assert!(run(vec![user("/fail")]).await[0].is_err());
    }
}
