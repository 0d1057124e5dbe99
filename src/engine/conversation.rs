//! The conversation a run sends upstream: the session's messages in log
//! order, as Chat Completions messages. Tool calls are stored and shown as
//! `[{ id, name, arguments }]`, `arguments` being the model's JSON (or its
//! raw text when it was not JSON).

use entity::message;
use entity::states::Role;
use sea_orm::{ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder};
use serde_json::{Value, json};

use super::provider::{ChatMessage, ToolCall};
use crate::ids::{CallId, SessionId};

/// The model's arguments as JSON, or as the text it sent when that is not
/// JSON.
pub fn arguments_value(arguments: &str) -> Value {
    serde_json::from_str(arguments).unwrap_or_else(|_| Value::String(arguments.to_owned()))
}

/// Tool calls as clients see them and as they are stored.
pub fn tool_calls_value(calls: &[ToolCall]) -> Value {
    Value::Array(
        calls
            .iter()
            .map(|c| json!({ "id": c.id, "name": c.name, "arguments": arguments_value(&c.arguments) }))
            .collect(),
    )
}

fn tool_calls_from(stored: &str) -> Vec<ToolCall> {
    let Ok(Value::Array(calls)) = serde_json::from_str::<Value>(stored) else {
        return Vec::new();
    };
    calls
        .into_iter()
        .filter_map(|call| {
            let id = call.get("id")?.as_str()?.to_owned();
            let name = call.get("name")?.as_str()?.to_owned();
            let arguments = match call.get("arguments") {
                Some(Value::String(text)) => text.clone(),
                Some(value) => value.to_string(),
                None => "{}".to_owned(),
            };
            Some(ToolCall {
                id,
                name,
                arguments,
            })
        })
        .collect()
}

/// Every message of the session, oldest first.
pub async fn load(
    db: &impl ConnectionTrait,
    session: &SessionId,
) -> Result<Vec<ChatMessage>, DbErr> {
    let rows = message::Entity::find()
        .filter(message::Column::SessionId.eq(session.as_str()))
        .order_by_asc(message::Column::Seq)
        .all(db)
        .await?;
    Ok(rows
        .into_iter()
        .map(|row| match row.role {
            Role::User => ChatMessage::User {
                content: row.content,
            },
            Role::Assistant => ChatMessage::Assistant {
                tool_calls: row
                    .tool_calls
                    .as_deref()
                    .map(tool_calls_from)
                    .unwrap_or_default(),
                content: row.content,
            },
            Role::Tool => ChatMessage::Tool {
                tool_call_id: row
                    .tool_call_id
                    .map(CallId::into_string)
                    .unwrap_or_default(),
                content: row.content,
            },
        })
        .collect())
}
