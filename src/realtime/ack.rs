//! The acknowledgement envelope of PROTOCOL §4.1: `{ ok: true, … }` or
//! `{ ok: false, error: { code, message } }`.

use serde::Serialize;
use serde_json::{Map, Value};
use socketioxide::extract::AckSender;

use crate::error::{ErrorBody, ErrorCode};

/// Sends a success ack: `fields` (an object) plus `ok: true`.
pub fn ok(ack: AckSender, fields: impl Serialize) {
    let mut body = match serde_json::to_value(fields) {
        Ok(Value::Object(map)) => map,
        _ => Map::new(),
    };
    body.insert("ok".into(), Value::Bool(true));
    send(ack, &Value::Object(body));
}

/// Sends a failure ack.
pub fn err(ack: AckSender, code: ErrorCode, message: impl Into<String>) {
    let body = serde_json::json!({
        "ok": false,
        "error": ErrorBody { code, message: message.into() },
    });
    send(ack, &body);
}

fn send(ack: AckSender, body: &Value) {
    if let Err(error) = ack.send(body) {
        tracing::debug!(%error, "could not send an acknowledgement");
    }
}
