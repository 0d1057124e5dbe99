use sea_orm::entity::prelude::*;

use crate::ids::{CallId, MessageId, RunId, Seq, SessionId};

use crate::states::{MessageStatus, Role};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "messages")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: MessageId,
    pub session_id: SessionId,
    pub run_id: Option<RunId>,
    pub role: Role,
    pub content: String,
    /// JSON array of OpenAI-style tool calls, as text.
    pub tool_calls: Option<String>,
    pub tool_call_id: Option<CallId>,
    pub status: MessageStatus,
    pub client_msg_id: Option<String>,
    /// The seq of the log event that made this message final; the
    /// conversation is ordered by it.
    pub seq: Seq,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
