//! `tool:call` → run the tool → `tool:result`, delivered at least once: a
//! call already running in this process is not started again, and an
//! answered one gets its stored result re-sent.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Instant;

use serde::Deserialize;
use serde_json::{Value, json};
use tf_rust_socketio::Payload;
use tf_rust_socketio::asynchronous::Client;
use tracing::{info, warn};

use super::{Gateway, RequestError, first_arg, lock, request};

/// The server refuses a `tool:result` whose `output` is larger, as JSON.
const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
const TRUNCATION_NOTE: &str = "\n[truncated to fit the 1 MiB limit of a tool result]";
/// Answered calls remembered, to answer a repeated delivery without a rerun.
const REMEMBERED_CALLS: usize = 1024;

/// `tool:call`.
#[derive(Deserialize)]
struct ToolCall {
    call_id: String,
    name: String,
    #[serde(default)]
    arguments: Value,
    #[serde(default)]
    run_id: Option<String>,
}

/// Where a call is in this process.
enum Delivery {
    New,
    Running,
    Answered(Value),
}

/// Calls running, and the `tool:result` of the last calls answered.
#[derive(Default)]
pub struct CallLog {
    running: HashSet<String>,
    answered: HashMap<String, Value>,
    order: VecDeque<String>,
}

impl CallLog {
    fn begin(&mut self, call_id: &str) -> Delivery {
        if self.running.contains(call_id) {
            Delivery::Running
        } else if let Some(result) = self.answered.get(call_id) {
            Delivery::Answered(result.clone())
        } else {
            self.running.insert(call_id.to_owned());
            Delivery::New
        }
    }

    fn finish(&mut self, call_id: &str, result: Value) {
        self.running.remove(call_id);
        self.answered.insert(call_id.to_owned(), result);
        self.order.push_back(call_id.to_owned());
        while self.order.len() > REMEMBERED_CALLS {
            if let Some(old) = self.order.pop_front() {
                self.answered.remove(&old);
            }
        }
    }
}

impl Gateway {
    /// Acks at once, then runs the call in a task of its own: the library
    /// aborts its callback tasks when the connection drops, and a running
    /// tool must survive a reconnect.
    pub async fn on_tool_call(self: Arc<Self>, payload: Payload, client: Client) {
        let ack_id = payload.ack_id();
        let call = serde_json::from_value::<ToolCall>(first_arg(payload));
        let ack = match &call {
            Ok(_) => json!({ "ok": true }),
            Err(e) => {
                warn!(error = %e, "malformed tool:call");
                json!({ "ok": false, "error": { "code": "invalid_payload", "message": e.to_string() } })
            }
        };
        if let Some(id) = ack_id
            && let Err(e) = client.ack_with_id(id, ack).await
        {
            warn!(error = %e, "cannot ack tool:call");
        }
        let Ok(call) = call else { return };

        let delivery = lock(&self.calls).begin(&call.call_id);
        match delivery {
            Delivery::New => {
                info!(
                    call_id = call.call_id,
                    tool = call.name,
                    run_id = call.run_id.as_deref(),
                    "tool call"
                );
                tokio::spawn(self.run(call));
            }
            Delivery::Running => info!(call_id = call.call_id, "delivered again while running"),
            Delivery::Answered(result) => {
                info!(
                    call_id = call.call_id,
                    "delivered again: re-sending the result"
                );
                self.send_result(&call.call_id, result).await;
            }
        }
    }

    async fn run(self: Arc<Self>, call: ToolCall) {
        let started = Instant::now();
        let result = self.tools.call(&call.name, call.arguments).await;
        info!(
            call_id = call.call_id,
            tool = call.name,
            is_error = result.is_error,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "tool call finished"
        );
        let result = json!({
            "call_id": call.call_id,
            "output": fit_output(result.output),
            "is_error": result.is_error,
        });
        lock(&self.calls).finish(&call.call_id, result.clone());
        self.send_result(&call.call_id, result).await;
    }

    async fn send_result(&self, call_id: &str, result: Value) {
        let client = lock(&self.client).clone();
        let Some(client) = client else {
            info!(
                call_id,
                "not connected: the result is sent when the call is delivered again"
            );
            return;
        };
        match request(&client, "tool:result", result).await {
            Ok(_) => info!(call_id, "result delivered"),
            Err(RequestError::Refused { code, message }) if code == "conflict" => {
                info!(call_id, %message, "already answered");
            }
            Err(e) => warn!(call_id, error = %e, "result not delivered"),
        }
    }
}

/// `output` within [`MAX_OUTPUT_BYTES`] as JSON: the longest string (the
/// output itself, or a field of it) is cut until it fits, and says so.
fn fit_output(mut output: Value) -> Value {
    loop {
        let size = output.to_string().len();
        if size <= MAX_OUTPUT_BYTES {
            return output;
        }
        let longest = match &mut output {
            Value::String(text) => Some(text),
            Value::Object(fields) => fields
                .values_mut()
                .filter_map(|v| match v {
                    Value::String(text) => Some(text),
                    _ => None,
                })
                .max_by_key(|text| text.len()),
            _ => None,
        };
        let Some(text) = longest.filter(|t| t.len() > 2 * TRUNCATION_NOTE.len()) else {
            return Value::String(format!(
                "[the output ({size} bytes as JSON) exceeds the 1 MiB limit of a tool result]"
            ));
        };
        let body = text.strip_suffix(TRUNCATION_NOTE).unwrap_or(text);
        // Aim a little under the limit; escaping makes the ratio approximate.
        let mut keep = body.len() * (MAX_OUTPUT_BYTES - 4096) / size;
        if keep >= body.len() {
            keep = body.len() / 2;
        }
        let keep = body.floor_char_boundary(keep);
        text.truncate(keep);
        text.push_str(TRUNCATION_NOTE);
    }
}
