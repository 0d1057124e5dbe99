//! Several nodes (issue 14): the gateways connected to every node, so that
//! a run on one node offers the tools of its user's gateways on any node.
//! One row per `(owner, gateway_id)`: the node and socket it is connected
//! to, its tools (as registered, JSON), until when its node vouches for it
//! (`alive_until`, renewed while the node lives) and since when it is gone.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Gateways::Table)
                    .col(ColumnDef::new(Gateways::Owner).string().not_null())
                    .col(ColumnDef::new(Gateways::GatewayId).string().not_null())
                    .col(ColumnDef::new(Gateways::Node).string().not_null())
                    .col(ColumnDef::new(Gateways::Sid).string().not_null())
                    .col(ColumnDef::new(Gateways::Tools).text().not_null())
                    .col(
                        ColumnDef::new(Gateways::RegisteredAt)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Gateways::AliveUntil)
                            .timestamp_with_time_zone()
                            .not_null(),
                    )
                    .col(
                        ColumnDef::new(Gateways::GoneAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .primary_key(
                        Index::create()
                            .col(Gateways::Owner)
                            .col(Gateways::GatewayId),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_gateways_node")
                    .table(Gateways::Table)
                    .col(Gateways::Node)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_table(Table::drop().table(Gateways::Table).to_owned())
            .await
    }
}

#[derive(DeriveIden)]
enum Gateways {
    Table,
    Owner,
    GatewayId,
    Node,
    Sid,
    Tools,
    RegisteredAt,
    AliveUntil,
    GoneAt,
}
