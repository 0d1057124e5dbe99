//! The acknowledgement envelope of PROTOCOL §4.1: `{ ok: true, … }` or
//! `{ ok: false, error: { code, message } }`.

use crate::cluster::adapter::AckSender;
use serde::Serialize;
use serde_json::{Map, Value};

use crate::error::{ApiError, ErrorCode};

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
pub fn error(ack: AckSender, error: &ApiError) {
    let body = serde_json::json!({ "ok": false, "error": error.body() });
    send(ack, &body);
}

/// Sends a failure ack with a code and message.
pub fn err(ack: AckSender, code: ErrorCode, message: impl Into<String>) {
    let body = serde_json::json!({
        "ok": false,
        "error": { "code": code, "message": message.into() },
    });
    send(ack, &body);
}

/// Sends the ack for a handler's result.
pub fn reply<T: Serialize>(ack: AckSender, result: Result<T, ApiError>) {
    match result {
        Ok(fields) => ok(ack, fields),
        Err(e) => error(ack, &e),
    }
}

fn send(ack: AckSender, body: &Value) {
    if let Err(error) = ack.send(body) {
        tracing::debug!(%error, "could not send an acknowledgement");
    }
}
