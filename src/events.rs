//! The session events (PROTOCOL §4.3): one type for each event's `data`,
//! and [`Event`] over them all, the producers' `x.*` events included. It is
//! the one definition of every event: the engine builds events from it,
//! producers' events are checked against it ([`check_data`]), recovery
//! reads stored events back with it ([`Event::parse`]), and the console's
//! TypeScript types are generated from it (`console/src/generated/`).
//!
//! The JSON of an event's `data` is made as it always was: through a
//! `serde_json::Value`, whose keys are sorted, so stored events keep their
//! bytes whatever order the fields are declared in here. Fields are
//! declared in the order producers are told about them in errors
//! (`missing field …`, `expected one of …`).

use serde::{Deserialize, Serialize};
use serde_json::Value;
use serde_json::value::RawValue;
use ts_rs::TS;

pub use entity::states::{MessageStatus, Role, RunReason, SessionStatus, Target};

use crate::engine::provider::Usage;
use crate::ids::{CallId, MessageId, RunId};

/// The longest producer-defined type name (`x.…`), in bytes.
pub const MAX_X_TYPE_BYTES: usize = 128;

/// Declares the typed events: the [`Kind`] of each, its `type` string (the
/// only place it is spelled), its payload, and whether producers may
/// append it over HTTP.
macro_rules! events {
    ($($(#[$doc:meta])* $variant:ident($payload:ident) = $text:tt;)+) => {
        /// The `type` of a typed event.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum Kind {
            $($variant,)+
        }

        impl Kind {
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Kind::$variant => $text,)+
                }
            }

            /// The typed event named `text`; `None` for `x.*` and unknown types.
            pub fn parse(text: &str) -> Option<Kind> {
                match text {
                    $($text => Some(Kind::$variant),)+
                    _ => None,
                }
            }

        }

        /// An event: its `type` and its `data`.
        #[derive(Debug, Clone, PartialEq, Serialize, TS)]
        #[serde(tag = "type", content = "data")]
        #[ts(export_to = "Event.ts")]
        pub enum Event {
            $(
                $(#[$doc])*
                #[serde(rename = $text)]
                $variant($payload),
            )+
            /// `x.*`: producer-defined, stored and relayed untouched.
            #[serde(untagged)]
            Custom(Custom),
        }

        impl Event {
            /// The event's `type`.
            pub fn kind(&self) -> &str {
                match self {
                    $(Event::$variant(_) => $text,)+
                    Event::Custom(custom) => &custom.kind,
                }
            }

            /// The event as it is stored: its `type` and its `data` as JSON.
            pub fn into_parts(self) -> (String, Box<RawValue>) {
                match self {
                    $(Event::$variant(payload) => ($text.to_owned(), to_data(&payload)),)+
                    Event::Custom(custom) => (custom.kind, custom.data),
                }
            }

            /// Reads `data` as an event of type `kind`. The error starts with
            /// the path inside `data` (`.stream: unknown variant …`, or `: …`
            /// for `data` itself).
            pub fn parse(kind: &str, data: &RawValue) -> Result<Event, String> {
                match Kind::parse(kind) {
                    $(Some(Kind::$variant) => read::<$payload>(data).map(Event::$variant),)+
                    None => Ok(Event::Custom(Custom {
                        kind: kind.to_owned(),
                        data: data.to_owned(),
                    })),
                }
            }
        }

        $(
            impl From<$payload> for Event {
                fn from(payload: $payload) -> Self {
                    Event::$variant(payload)
                }
            }
        )+
    };
}

events! {
    /// A user message was accepted.
    MessageUser(MessageUser) = "message.user";
    /// The agent began a run.
    RunStarted(RunStarted) = "run.started";
    /// A fragment of assistant text.
    TextDelta(TextDelta) = "text.delta";
    /// An assistant message is final.
    MessageCompleted(MessageCompleted) = "message.completed";
    /// The model (or a producer) called a tool.
    ToolCall(ToolCall) = "tool.call";
    /// The call waits for `tool:approval`.
    ToolApprovalRequested(ToolApprovalRequested) = "tool.approval_requested";
    /// How a tool call ended.
    ToolResult(ToolResult) = "tool.result";
    /// The session's status changed.
    Status(Status) = "status";
    /// Progress of a longer job.
    Progress(Progress) = "progress";
    /// Terminal output.
    Output(Output) = "output";
    /// A notice for people.
    Info(Info) = "info";
    /// Something failed; the session stays usable.
    Error(Error) = "error";
    /// A run ended.
    RunFinished(RunFinished) = "run.finished";
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct MessageUser {
    pub message_id: MessageId,
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub client_msg_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct RunStarted {
    pub run_id: RunId,
    pub message_id: MessageId,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct TextDelta {
    pub message_id: MessageId,
    pub delta: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct MessageCompleted {
    pub message_id: MessageId,
    pub role: Role,
    pub content: String,
    /// OpenAI-style `[{ id, name, arguments }]`; absent when the model
    /// called no tool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub tool_calls: Option<Value>,
    pub status: MessageStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct ToolCall {
    pub call_id: CallId,
    pub name: String,
    pub arguments: Value,
    pub target: Target,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct ToolApprovalRequested {
    pub call_id: CallId,
    pub name: String,
    pub arguments: Value,
}

/// How a tool call ended, as its `tool.result` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum ResultStatus {
    Success,
    Error,
    Denied,
    Timeout,
    Cancelled,
}

impl ResultStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ResultStatus::Success => "success",
            ResultStatus::Error => "error",
            ResultStatus::Denied => "denied",
            ResultStatus::Timeout => "timeout",
            ResultStatus::Cancelled => "cancelled",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct ToolResult {
    pub call_id: CallId,
    pub status: ResultStatus,
    pub output: Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct Status {
    pub status: SessionStatus,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct Progress {
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub passing: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub total: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub message: Option<String>,
}

/// Which stream terminal output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, TS)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct Output {
    pub stream: Stream,
    pub data: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct Info {
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
#[ts(rename = "ErrorData")]
pub struct Error {
    pub code: String,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, TS)]
#[serde(deny_unknown_fields)]
pub struct RunFinished {
    pub run_id: RunId,
    pub reason: RunReason,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[ts(optional)]
    pub usage: Option<Usage>,
}

/// An `x.*` event: any `data`, stored and relayed as the producer sent it.
#[derive(Debug, Clone, Serialize, TS)]
pub struct Custom {
    #[serde(rename = "type")]
    #[ts(type = "`x.${string}`")]
    pub kind: String,
    #[ts(type = "unknown")]
    pub data: Box<RawValue>,
}

impl PartialEq for Custom {
    fn eq(&self, other: &Self) -> bool {
        self.kind == other.kind && self.data.get() == other.data.get()
    }
}

/// `agent:heartbeat`: sent while a run is silent, not stored.
#[derive(Debug, Clone, Serialize, TS)]
pub struct Heartbeat {
    pub session_id: crate::ids::SessionId,
    pub run_id: RunId,
    pub status: SessionStatus,
    pub elapsed_ms: u64,
}

/// `data` as JSON, made through a `Value` (sorted keys, as always).
fn to_data(payload: &impl Serialize) -> Box<RawValue> {
    let value = serde_json::to_value(payload).expect("an event's data serializes");
    serde_json::value::to_raw_value(&value).expect("a JSON value serializes")
}

fn read<T: serde::de::DeserializeOwned>(data: &RawValue) -> Result<T, String> {
    let mut deserializer = serde_json::Deserializer::from_str(data.get());
    serde_path_to_error::deserialize::<_, T>(&mut deserializer).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if path == "." {
            format!(": {inner}")
        } else {
            format!(".{path}: {inner}")
        }
    })
}

impl Kind {
    /// The typed events a producer may append over HTTP, in the order they
    /// are listed to a producer that sends another.
    pub const PRODUCER: [Kind; 6] = [
        Kind::Output,
        Kind::Progress,
        Kind::Info,
        Kind::Error,
        Kind::ToolCall,
        Kind::ToolResult,
    ];

    pub fn is_producer(self) -> bool {
        Kind::PRODUCER.contains(&self)
    }
}

/// The typed events producers may append, as they are listed to a producer
/// that sends another.
pub fn producer_types() -> String {
    let names: Vec<&str> = Kind::PRODUCER.iter().map(|k| k.as_str()).collect();
    names.join(", ")
}

/// Whether a producer may append events of type `kind` over HTTP: the
/// typed ones of [`Kind::PRODUCER`], and `x.` followed by up to 126
/// letters, digits, `.`, `_`, `-`, `:` or `/`.
pub fn is_producer_type(kind: &str) -> bool {
    match Kind::parse(kind) {
        Some(typed) => typed.is_producer(),
        None => is_custom_type(kind),
    }
}

/// Checks a submitted event's `data` against the type of `kind` (any
/// `data` fits an `x.*` event). The error starts with the path inside
/// `data`, as [`Event::parse`] says it.
pub fn check_data(kind: &str, data: &RawValue) -> Result<(), String> {
    match Kind::parse(kind) {
        Some(_) => Event::parse(kind, data).map(drop),
        None => Ok(()),
    }
}

fn is_custom_type(kind: &str) -> bool {
    kind.strip_prefix("x.").is_some_and(|rest| {
        !rest.is_empty()
            && kind.len() <= MAX_X_TYPE_BYTES
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'))
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    /// Writes the console's TypeScript types (`console/src/generated/`, one
    /// file a type) from these types. CI runs it and fails when the
    /// committed files differ.
    #[test]
    fn the_console_typescript_types_are_generated_from_these() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/console/src/generated");
        let _ = std::fs::remove_dir_all(dir);
        let config = ts_rs::Config::new()
            .with_out_dir(dir)
            .with_large_int("number");
        Event::export_all(&config).unwrap();
        Heartbeat::export_all(&config).unwrap();
        crate::sessions::SessionView::export_all(&config).unwrap();
    }

    fn raw(value: Value) -> Box<RawValue> {
        serde_json::value::to_raw_value(&value).unwrap()
    }

    #[test]
    fn event_data_is_json_with_sorted_keys_and_absent_options_left_out() {
        let run_id = RunId::parse("0192f4c3-5b7a-7cc0-8f00-000000000001").unwrap();
        let (kind, data) = Event::from(RunFinished {
            run_id: run_id.clone(),
            reason: RunReason::Stopped,
            usage: None,
        })
        .into_parts();
        assert_eq!(kind, "run.finished");
        assert_eq!(
            data.get(),
            r#"{"reason":"stopped","run_id":"0192f4c3-5b7a-7cc0-8f00-000000000001"}"#
        );
        let (_, data) = Event::from(ToolResult {
            call_id: CallId::from_model("c".into()),
            status: ResultStatus::Success,
            output: json!({ "b": 1, "a": 2 }),
        })
        .into_parts();
        assert_eq!(
            data.get(),
            r#"{"call_id":"c","output":{"a":2,"b":1},"status":"success"}"#
        );
    }

    #[test]
    fn stored_events_read_back_as_the_types_that_made_them() {
        let made = Event::from(Output {
            stream: Stream::Stderr,
            data: "oops\n".into(),
        });
        let (kind, data) = made.clone().into_parts();
        assert_eq!(Event::parse(&kind, &data), Ok(made));
        let custom = Event::parse("x.anything", &raw(json!([1, "a"]))).unwrap();
        assert_eq!(custom.kind(), "x.anything");
        assert_eq!(custom.into_parts().1.get(), r#"[1,"a"]"#);
    }

    #[test]
    fn producers_may_append_their_types_and_well_named_custom_ones_only() {
        for allowed in ["info", "tool.result", "x.ci/step:1"] {
            assert!(is_producer_type(allowed), "{allowed}");
        }
        for refused in [
            "run.started",
            "status",
            "x.",
            "x.no space",
            "nope",
            "X.upper",
        ] {
            assert!(!is_producer_type(refused), "{refused}");
        }
        assert!(is_producer_type(&format!(
            "x.{}",
            "a".repeat(MAX_X_TYPE_BYTES - 2)
        )));
        assert!(!is_producer_type(&format!(
            "x.{}",
            "a".repeat(MAX_X_TYPE_BYTES - 1)
        )));
        assert_eq!(
            producer_types(),
            "output, progress, info, error, tool.call, tool.result"
        );
    }

    #[test]
    fn a_producer_is_told_where_its_data_does_not_fit() {
        let cases = [
            (
                "output",
                json!({ "stream": "stdlog", "data": "x" }),
                ".stream: unknown variant `stdlog`, expected `stdout` or `stderr`",
            ),
            (
                "tool.call",
                json!({ "call_id": "c", "name": "n", "arguments": {}, "target": "moon" }),
                ".target: unknown variant `moon`, expected one of `gateway`, `server`, `user`",
            ),
            ("tool.call", json!({}), ": missing field `call_id`"),
            (
                "tool.result",
                json!({ "call_id": "c", "status": "ok", "output": 1 }),
                ".status: unknown variant `ok`, expected one of `success`, `error`, `denied`, \
                 `timeout`, `cancelled`",
            ),
            (
                "tool.result",
                json!({ "call_id": "c", "more": 2 }),
                ".more: unknown field `more`, expected one of `call_id`, `status`, `output`",
            ),
            (
                "info",
                json!({ "message": "m", "level": 1 }),
                ".level: unknown field `level`, expected `message`",
            ),
        ];
        for (kind, data, message) in cases {
            let refused = check_data(kind, &raw(data)).unwrap_err();
            assert!(refused.starts_with(message), "{kind}: {refused}");
        }
    }
}
