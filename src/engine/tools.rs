//! The `tool.result` of a call and the `tool` message the model sees.
//! Whatever happens to a call — answered, refused, denied, timed out,
//! cancelled — it gets both before the provider is called again, so the
//! conversation sent upstream stays valid.

use entity::states::{MessageStatus, Role};
use serde_json::Value;

use super::calls::Outcome;
use super::record::Batch;
use crate::events::{self, ResultStatus};
use crate::ids::{CallId, MessageId};

/// A `tool.result` event and the `tool` message the model will see.
pub(super) fn result(batch: &mut Batch, call_id: &CallId, outcome: Outcome) {
    let Outcome { status, output } = outcome;
    let text = match &output {
        Value::String(text) => text.clone(),
        other => other.to_string(),
    };
    let index = batch.event(events::ToolResult {
        call_id: call_id.clone(),
        status,
        output,
    });
    let content = match status {
        ResultStatus::Success => text,
        other => format!("[{}] {text}", other.as_str()),
    };
    let mut row = batch.message_row(
        &MessageId::generate(),
        Role::Tool,
        content,
        MessageStatus::Complete,
    );
    row.tool_call_id = sea_orm::Set(Some(call_id.clone()));
    batch.message(index, row);
}
