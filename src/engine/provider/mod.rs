//! LLM providers behind one trait: a request with the whole conversation and
//! the tools on offer in, a stream of [`ProviderEvent`]s out.
//!
//! - [`openai::OpenAi`]: any OpenAI-compatible Chat Completions endpoint,
//!   streamed as Server-Sent Events.
//! - [`scripted::Scripted`]: a deterministic built-in model that needs no
//!   network, for `--dev`, demos and tests.
//!
//! A stream yields text deltas as they arrive, then each tool call the model
//! made (fully assembled), then exactly one [`ProviderEvent::Finished`] —
//! or an error, after which it yields nothing more.
//!
//! What a model says cannot be refused, but it must be storable: a run
//! passes every event through [`ProviderEvent::storable`], which replaces
//! U+0000 (which PostgreSQL cannot keep in a text column) by U+FFFD, so the
//! same model output gives the same events and rows on every database.

pub mod assemble;
pub mod openai;
pub mod scripted;

use futures_util::stream::BoxStream;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// One message of the conversation sent upstream.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "role", rename_all = "lowercase")]
pub enum ChatMessage {
    System {
        content: String,
    },
    User {
        content: String,
    },
    Assistant {
        content: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<ToolCall>,
    },
    Tool {
        tool_call_id: String,
        content: String,
    },
}

/// A tool call as the model made it; `arguments` is the model's JSON text.
/// Serialized the way Chat Completions spells it in an assistant message:
/// `{ id, type: "function", function: { name, arguments } }`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(into = "WireToolCall", from = "WireToolCall")]
pub struct ToolCall {
    pub id: String,
    pub name: String,
    pub arguments: String,
}

#[derive(Clone, Serialize, Deserialize)]
struct WireToolCall {
    id: String,
    #[serde(rename = "type", default = "function")]
    kind: String,
    function: WireFunction,
}

#[derive(Clone, Serialize, Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: String,
}

fn function() -> String {
    "function".to_owned()
}

impl From<ToolCall> for WireToolCall {
    fn from(call: ToolCall) -> Self {
        Self {
            id: call.id,
            kind: function(),
            function: WireFunction {
                name: call.name,
                arguments: call.arguments,
            },
        }
    }
}

impl From<WireToolCall> for ToolCall {
    fn from(call: WireToolCall) -> Self {
        Self {
            id: call.id,
            name: call.function.name,
            arguments: call.function.arguments,
        }
    }
}

/// A tool the model may call.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments.
    pub parameters: Value,
}

#[derive(Debug, Clone, Default)]
pub struct ChatRequest {
    pub messages: Vec<ChatMessage>,
    pub tools: Vec<ToolSpec>,
}

/// Token counts, as the provider reported them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ts_rs::TS)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderEvent {
    TextDelta(String),
    ToolCall(ToolCall),
    Finished {
        /// `stop`, `tool_calls`, `length`, … as the provider said it.
        reason: String,
        usage: Option<Usage>,
    },
}

impl ProviderEvent {
    /// The event with its text made storable ([`storable`]): deltas, and a
    /// tool call's id, name and arguments.
    pub fn storable(self) -> Self {
        match self {
            ProviderEvent::TextDelta(text) => ProviderEvent::TextDelta(storable(text)),
            ProviderEvent::ToolCall(call) => ProviderEvent::ToolCall(ToolCall {
                id: storable(call.id),
                name: storable(call.name),
                arguments: storable(call.arguments),
            }),
            finished @ ProviderEvent::Finished { .. } => finished,
        }
    }
}

/// `text` with every U+0000 replaced by U+FFFD (the replacement character),
/// so that it can be stored in a text column of any database. Text without
/// a NUL is returned as it is, without a copy.
pub fn storable(text: String) -> String {
    if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    #[error("cannot reach the provider: {0}")]
    Connect(String),
    #[error("the provider answered HTTP {status}: {body}")]
    Http { status: u16, body: String },
    #[error("the provider sent a malformed stream: {0}")]
    Malformed(String),
    #[error("the provider reported an error: {0}")]
    Upstream(String),
    #[error("the provider stream ended without a finish_reason or [DONE]")]
    Incomplete,
    #[error("the provider sent nothing for {0:?}")]
    Idle(std::time::Duration),
    #[error("the provider is not configured: {0}")]
    NotConfigured(String),
}

pub type ProviderStream = BoxStream<'static, Result<ProviderEvent, ProviderError>>;

pub trait Provider: Send + Sync {
    /// Starts one completion. Dropping the stream cancels it.
    fn stream(&self, request: ChatRequest) -> ProviderStream;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nul_in_model_text_becomes_the_replacement_character() {
        assert_eq!(storable("a\0b\0".into()), "a\u{FFFD}b\u{FFFD}");
        assert_eq!(storable("plain".into()), "plain");
        let call = ProviderEvent::ToolCall(ToolCall {
            id: "call_\0".into(),
            name: "read\0file".into(),
            arguments: "{\"path\":\"a\0\"}".into(),
        })
        .storable();
        assert_eq!(
            call,
            ProviderEvent::ToolCall(ToolCall {
                id: "call_\u{FFFD}".into(),
                name: "read\u{FFFD}file".into(),
                arguments: "{\"path\":\"a\u{FFFD}\"}".into(),
            })
        );
    }
}
