use sea_orm::entity::prelude::*;

use crate::ids::{RunId, Seq, SessionId};

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "events")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub session_id: SessionId,
    #[sea_orm(primary_key, auto_increment = false)]
    pub seq: Seq,
    #[sea_orm(column_name = "type")]
    pub kind: String,
    pub run_id: Option<RunId>,
    /// JSON value, as text.
    pub data: String,
    pub idempotency_key: Option<String>,
    pub created_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
