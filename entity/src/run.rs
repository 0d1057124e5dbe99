use sea_orm::entity::prelude::*;

use crate::ids::{MessageId, RunId, SessionId};

use crate::states::{RunReason, RunStatus};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "runs")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: RunId,
    pub session_id: SessionId,
    /// The user message this run answers.
    pub message_id: MessageId,
    pub status: RunStatus,
    pub reason: Option<RunReason>,
    /// JSON usage object from the provider, as text.
    pub usage: Option<String>,
    /// The node that executes the run (its lease holder).
    pub node: Option<String>,
    /// A queued run's message, until it starts.
    pub content: Option<String>,
    /// A queued run's `client_msg_id`.
    pub client_msg_id: Option<String>,
    pub created_at: DateTimeUtc,
    pub started_at: Option<DateTimeUtc>,
    pub finished_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
