use sea_orm::entity::prelude::*;

use crate::ids::{CallId, RunId, SessionId};

use crate::states::{CallStatus, Target};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "tool_calls")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: CallId,
    pub session_id: SessionId,
    pub run_id: RunId,
    /// The session owner's user id: only they may answer the call.
    pub owner: String,
    pub name: String,
    /// JSON arguments, as text.
    pub arguments: String,
    pub target: Target,
    pub status: CallStatus,
    pub requires_approval: bool,
    pub gateway_id: Option<String>,
    pub output: Option<String>,
    pub is_error: bool,
    pub deadline_at: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
