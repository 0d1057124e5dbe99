use sea_orm::entity::prelude::*;

use crate::ids::{Seq, SessionId};

use crate::states::SessionStatus;

#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "sessions")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub id: SessionId,
    pub owner: String,
    pub title: String,
    pub status: SessionStatus,
    /// Highest `seq` appended to this session's log (0 when empty).
    pub head_seq: Seq,
    /// Oldest `seq` still stored (retention prunes below it, never renumbers).
    pub first_seq: Seq,
    /// JSON object, as text.
    pub metadata: String,
    /// The node holding the session's run lease (several nodes).
    pub lease_node: Option<String>,
    /// Raised by one at every taking of the lease; a run's writes commit
    /// only while it is unchanged (fencing).
    pub lease_epoch: i64,
    /// When the lease ends unless its node renews it.
    pub lease_until: Option<DateTimeUtc>,
    pub created_at: DateTimeUtc,
    pub updated_at: DateTimeUtc,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
