//! Events: what is appended ([`NewEvent`]) and what was committed
//! ([`Committed`], its envelope serialized once and shared by every
//! delivery — live, replay, HTTP and SSE).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde::Serialize;
use serde_json::value::RawValue;

use crate::events::Event;
use crate::ids::{RunId, Seq};

/// An event to append: its `type` and its `data` as JSON, made from an
/// [`Event`] or, for a producer's, checked against it and kept as sent.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: String,
    pub run_id: Option<RunId>,
    pub data: Box<RawValue>,
    pub idempotency_key: Option<String>,
}

impl NewEvent {
    /// An event the server itself logs (runs, status changes).
    pub fn of(run_id: Option<&RunId>, event: impl Into<Event>) -> Self {
        let (kind, data) = event.into().into_parts();
        Self {
            kind,
            run_id: run_id.cloned(),
            data,
            idempotency_key: None,
        }
    }

    /// An event of type `kind` with `data` as given, not checked against
    /// [`Event`] (for code that appends to the log directly, as tests do).
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

/// The log a subscriber or reader is told about when what it asked for was
/// pruned.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Window {
    pub head_seq: Seq,
    /// Oldest stored seq (head + 1 when nothing is stored).
    pub first_seq: Seq,
}
