//! Events: what is appended ([`NewEvent`]) and what was committed
//! ([`Committed`], its envelope serialized once and shared by every
//! delivery — live, replay, HTTP and SSE).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::ids::{RunId, Seq};

/// An event to append. `data` is JSON.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: String,
    pub run_id: Option<RunId>,
    pub data: Box<RawValue>,
    pub idempotency_key: Option<String>,
}

impl NewEvent {
    /// An event the server itself logs (runs, status changes).
    pub fn new(kind: &str, run_id: Option<&RunId>, data: serde_json::Value) -> Self {
        Self {
            kind: kind.to_owned(),
            run_id: run_id.cloned(),
            data: serde_json::value::to_raw_value(&data).expect("a JSON value serializes"),
            idempotency_key: None,
        }
    }
}

/// A committed event.
#[derive(Debug)]
pub struct Committed {
    pub seq: Seq,
    /// The PROTOCOL §4.3 envelope, as JSON.
    pub json: Box<RawValue>,
}

#[derive(Serialize)]
struct Envelope<'a> {
    session_id: &'a str,
    seq: Seq,
    #[serde(rename = "type")]
    kind: &'a str,
    run_id: Option<&'a str>,
    ts: &'a str,
    data: &'a RawValue,
}

impl Committed {
    /// Bytes of the envelope: what holding or sending the event costs.
    pub fn size(&self) -> usize {
        self.json.get().len()
    }

    /// `ts` is the formatted commit time ([`crate::time::format`]), shared
    /// by every event of a commit.
    pub fn new(
        session_id: &str,
        seq: Seq,
        kind: &str,
        run_id: Option<&str>,
        ts: &str,
        data: &RawValue,
    ) -> Arc<Self> {
        let envelope = Envelope {
            session_id,
            seq,
            kind,
            run_id,
            ts,
            data,
        };
        let json = serde_json::value::to_raw_value(&envelope).expect("an envelope is valid JSON");
        Arc::new(Self { seq, json })
    }

    /// Rebuilds stored events' envelopes (rows of one commit share a
    /// timestamp, formatted once).
    pub fn from_rows(session_id: &str, rows: impl IntoIterator<Item = Stored>) -> Vec<Arc<Self>> {
        let mut last: Option<(DateTime<Utc>, String)> = None;
        rows.into_iter()
            .map(|row| {
                let ts = match &last {
                    Some((at, text)) if *at == row.created_at => text.clone(),
                    _ => {
                        let text = crate::time::format(&row.created_at);
                        last = Some((row.created_at, text.clone()));
                        text
                    }
                };
                let data = RawValue::from_string(row.data)
                    .unwrap_or_else(|_| RawValue::from_string("null".into()).expect("valid JSON"));
                Self::new(
                    session_id,
                    row.seq,
                    &row.kind,
                    row.run_id.as_deref(),
                    &ts,
                    &data,
                )
            })
            .collect()
    }
}

/// A stored event's columns, as read back ([`Committed::from_rows`]).
#[derive(Debug)]
pub struct Stored {
    pub seq: Seq,
    pub kind: String,
    pub run_id: Option<String>,
    pub created_at: DateTime<Utc>,
    /// JSON, as stored.
    pub data: String,
}

/// The longest producer-defined type name (`x.…`), in bytes.
pub const MAX_X_TYPE_BYTES: usize = 128;

/// Event types a producer may append over HTTP: the typed ones, and `x.`
/// followed by up to 126 letters, digits, `.`, `_`, `-`, `:` or `/`.
pub fn is_producer_type(kind: &str) -> bool {
    matches!(
        kind,
        "output" | "progress" | "info" | "error" | "tool.call" | "tool.result"
    ) || kind.strip_prefix("x.").is_some_and(|rest| {
        !rest.is_empty()
            && kind.len() <= MAX_X_TYPE_BYTES
            && rest
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':' | b'/'))
    })
}

/// The log a subscriber or reader is told about when what it asked for was
/// pruned.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    pub head_seq: Seq,
    /// Oldest stored seq (head + 1 when nothing is stored).
    pub first_seq: Seq,
}

/// The shapes of the typed event types' `data` (PROTOCOL §4.3). `x.*` and
/// server-only types are not checked here.
mod shapes {
    use serde::Deserialize;
    use serde_json::Value;

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Stream {
        Stdout,
        Stderr,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    pub struct Output {
        pub stream: Stream,
        pub data: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    pub struct Progress {
        pub passing: Option<u64>,
        pub total: Option<u64>,
        pub message: Option<String>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    pub struct Info {
        pub message: String,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    pub struct Error {
        pub code: String,
        pub message: String,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum Target {
        Gateway,
        Server,
        User,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    pub struct ToolCall {
        pub call_id: String,
        pub name: String,
        pub arguments: Value,
        pub target: Target,
    }

    #[derive(Deserialize)]
    #[serde(rename_all = "lowercase")]
    pub enum ResultStatus {
        Success,
        Error,
        Denied,
        Timeout,
        Cancelled,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    pub struct ToolResult {
        pub call_id: String,
        pub status: ResultStatus,
        pub output: Value,
    }
}

/// Checks `data` against the shape of `kind`. The error starts with the
/// path inside `data` (`.stream: unknown variant …`, or `: …` for `data`
/// itself).
pub fn check_data(kind: &str, data: &RawValue) -> Result<(), String> {
    fn check<T: serde::de::DeserializeOwned>(data: &RawValue) -> Result<(), String> {
        let mut deserializer = serde_json::Deserializer::from_str(data.get());
        serde_path_to_error::deserialize::<_, T>(&mut deserializer)
            .map(drop)
            .map_err(|e| {
                let path = e.path().to_string();
                let inner = e.into_inner();
                if path == "." {
                    format!(": {inner}")
                } else {
                    format!(".{path}: {inner}")
                }
            })
    }
    match kind {
        "output" => check::<shapes::Output>(data),
        "progress" => check::<shapes::Progress>(data),
        "info" => check::<shapes::Info>(data),
        "error" => check::<shapes::Error>(data),
        "tool.call" => check::<shapes::ToolCall>(data),
        "tool.result" => check::<shapes::ToolResult>(data),
        _ => Ok(()),
    }
}
