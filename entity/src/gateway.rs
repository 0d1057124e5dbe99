use sea_orm::entity::prelude::*;

/// A gateway connected to one of several nodes (the shared registry).
#[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
#[sea_orm(table_name = "gateways")]
pub struct Model {
    #[sea_orm(primary_key, auto_increment = false)]
    pub owner: String,
    #[sea_orm(primary_key, auto_increment = false)]
    pub gateway_id: String,
    /// The node its socket is connected to.
    pub node: String,
    /// Its socket's id on that node.
    pub sid: String,
    /// Its tools as registered: a JSON array of
    /// `{ name, description, parameters, requires_approval }`.
    pub tools: String,
    pub registered_at: DateTimeUtc,
    /// Until when its node vouches for it (renewed while the node lives).
    pub alive_until: DateTimeUtc,
    /// When its socket went away.
    pub gone_at: Option<DateTimeUtc>,
}

#[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
pub enum Relation {}

impl ActiveModelBehavior for ActiveModel {}
