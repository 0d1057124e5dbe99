//! Reading a session's conversation: messages newest first (by the seq of
//! the event that made each final), paginated. Runs write them
//! ([`crate::engine`]).

use chrono::{DateTime, Utc};
use entity::message;
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::ApiError;
use crate::ids::SessionId;

/// A message as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub id: String,
    pub role: String,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<String>,
    pub status: String,
    pub created_at: DateTime<Utc>,
}

impl From<message::Model> for MessageView {
    fn from(m: message::Model) -> Self {
        Self {
            tool_calls: m.tool_calls.and_then(|t| serde_json::from_str(&t).ok()),
            id: m.id,
            role: m.role,
            content: m.content,
            tool_call_id: m.tool_call_id,
            status: m.status,
            created_at: m.created_at,
        }
    }
}

/// `session:messages` / `GET /v1/sessions/{id}/messages` (minus the id).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListMessages {
    #[serde(default)]
    pub before: Option<String>,
    #[serde(default)]
    pub limit: Option<u64>,
}

#[derive(Debug, Serialize)]
pub struct MessagePage {
    pub messages: Vec<MessageView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

pub async fn list(
    db: &impl ConnectionTrait,
    session: &SessionId,
    request: ListMessages,
) -> Result<MessagePage, ApiError> {
    let limit = crate::payload::limit(request.limit, 50, 500)?;
    let mut query = message::Entity::find()
        .filter(message::Column::SessionId.eq(session.as_str()))
        .order_by_desc(message::Column::Seq)
        .limit(limit);
    if let Some(before) = &request.before {
        if uuid::Uuid::parse_str(before).is_err() {
            return Err(ApiError::InvalidPayload(format!(
                "before: {before:?} is not a message id"
            )));
        }
        let seq: Option<i64> = message::Entity::find_by_id(before.as_str())
            .filter(message::Column::SessionId.eq(session.as_str()))
            .select_only()
            .column(message::Column::Seq)
            .into_tuple()
            .one(db)
            .await?;
        let seq = seq.ok_or_else(|| {
            ApiError::NotFound(format!("before: no message {before} in this session"))
        })?;
        query = query.filter(message::Column::Seq.lt(seq));
    }
    let messages: Vec<MessageView> = query.all(db).await?.into_iter().map(Into::into).collect();
    let next_before = (messages.len() as u64 == limit)
        .then(|| messages.last().map(|m| m.id.clone()))
        .flatten();
    Ok(MessagePage {
        messages,
        next_before,
    })
}
