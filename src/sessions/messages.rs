//! Reading a session's conversation: messages newest first (by the seq of
//! the event that made each final), paginated by count and by bytes (a page
//! holds at most `SWITCHBOARD_MAX_PAGE_BYTES` of stored text, but at least
//! one message). Runs write them ([`crate::engine`]).

use chrono::{DateTime, Utc};
use entity::message;
use entity::states::{MessageStatus, Role};
use sea_orm::sea_query::{Expr, ExprTrait, Func};
use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::SessionError;
use crate::ids::{CallId, MessageId, Seq, SessionId};

/// A message as clients see it.
#[derive(Debug, Clone, Serialize)]
pub struct MessageView {
    pub id: String,
    pub role: Role,
    pub content: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool_call_id: Option<CallId>,
    pub status: MessageStatus,
    pub created_at: DateTime<Utc>,
}

impl From<message::Model> for MessageView {
    fn from(m: message::Model) -> Self {
        Self {
            tool_calls: m.tool_calls.and_then(|t| serde_json::from_str(&t).ok()),
            id: m.id.into_string(),
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

/// Bytes of a message's view besides its content, tool calls and tool call
/// id: the keys, id, role, status and timestamp.
const VIEW_OVERHEAD: i64 = 160;

/// A page of messages, newest first: at most `limit` (`request.limit`) and
/// `max_bytes` of stored text, but at least one. Their sizes are read first,
/// from the stored lengths, so that only the messages kept are loaded.
pub async fn list(
    db: &impl ConnectionTrait,
    session: &SessionId,
    request: ListMessages,
    max_bytes: usize,
) -> Result<MessagePage, SessionError> {
    let limit = crate::payload::limit(request.limit, 50, 500)?;
    let mut query = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .column_as(stored_size(), "size")
        .filter(message::Column::SessionId.eq(session.as_str()))
        .order_by_desc(message::Column::Seq)
        .order_by_desc(message::Column::Id)
        .limit(limit);
    if let Some(before) = &request.before {
        if uuid::Uuid::parse_str(before).is_err() {
            return Err(SessionError::BadMessageId(before.clone()));
        }
        let seq: Option<Seq> = message::Entity::find_by_id(MessageId::from_db(before.clone()))
            .filter(message::Column::SessionId.eq(session.as_str()))
            .select_only()
            .column(message::Column::Seq)
            .into_tuple()
            .one(db)
            .await?;
        let seq = seq.ok_or_else(|| SessionError::NoMessage(before.clone()))?;
        query = query.filter(message::Column::Seq.lt(seq));
    }
    let sizes: Vec<(String, i64)> = query.into_tuple().all(db).await?;
    let kept = crate::log::store::fitting(sizes.iter().map(|(_, size)| *size), max_bytes);
    let ids = sizes[..kept].iter().map(|(id, _)| id.as_str());
    let messages: Vec<MessageView> = if kept == 0 {
        Vec::new()
    } else {
        message::Entity::find()
            .filter(message::Column::SessionId.eq(session.as_str()))
            .filter(message::Column::Id.is_in(ids))
            .order_by_desc(message::Column::Seq)
            .order_by_desc(message::Column::Id)
            .all(db)
            .await?
            .into_iter()
            .map(Into::into)
            .collect()
    };
    let cut = kept < sizes.len();
    let next_before = (cut || messages.len() as u64 == limit)
        .then(|| messages.last().map(|m| m.id.clone()))
        .flatten();
    Ok(MessagePage {
        messages,
        next_before,
    })
}

/// A message's view size from its stored columns, without reading them
/// (see [`crate::log::store::read_page`]).
fn stored_size() -> Expr {
    let octets = |column: message::Column| {
        let length = Expr::from(Func::cust("octet_length").arg(Expr::col(column)));
        Expr::from(Func::coalesce([length, Expr::val(0)]))
    };
    let sum = octets(message::Column::Content)
        .add(octets(message::Column::ToolCalls))
        .add(octets(message::Column::ToolCallId))
        .add(VIEW_OVERHEAD);
    Func::cast_as(sum, "BIGINT").into()
}
