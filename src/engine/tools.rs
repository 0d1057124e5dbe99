//! Tools the model may call. None are offered yet: every call gets an
//! error result that tells the model so (the relay to desktop gateways, with
//! approvals and questions to the user, plugs in here). Whatever happens,
//! every call the model made gets a `tool` message before the provider is
//! called again, so the conversation sent upstream stays valid.

use serde_json::json;

use super::provider::ToolCall;
use super::record::Batch;
use crate::ids::MessageId;

/// No tools are offered yet: every call is answered with an error that
/// tells the model so (the relay to desktop gateways comes with tools).
pub(super) fn execute(call: &ToolCall) -> (&'static str, String) {
    (
        "error",
        format!("no tool named {:?} is available in this session", call.name),
    )
}

/// A `tool.result` event and the `tool` message the model will see.
pub(super) fn result(batch: &mut Batch, call_id: &str, status: &str, output: String) {
    let index = batch.event(
        "tool.result",
        json!({ "call_id": call_id, "status": status, "output": output }),
    );
    let content = match status {
        "success" => output,
        other => format!("[{other}] {output}"),
    };
    let mut row = batch.message_row(&MessageId::generate(), "tool", content, "complete");
    row.tool_call_id = sea_orm::Set(Some(call_id.to_owned()));
    batch.message(index, row);
}
