//! Several nodes (issue 14): a session's runs execute on the node holding
//! its **lease** — `lease_node`, until `lease_until`, numbered by
//! `lease_epoch`, which every taking of the lease raises by one. A run's
//! writes carry the epoch its node took, and commit only while the session
//! still has it (fencing). Queued runs keep their message, so that another
//! node can start them: `content` and `client_msg_id` on `runs`.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        // One column per statement: SQLite alters one at a time.
        let columns = [
            (
                Sessions::Table.into_iden(),
                ColumnDef::new(Sessions::LeaseNode)
                    .string()
                    .null()
                    .to_owned(),
            ),
            (
                Sessions::Table.into_iden(),
                ColumnDef::new(Sessions::LeaseEpoch)
                    .big_integer()
                    .not_null()
                    .default(0)
                    .to_owned(),
            ),
            (
                Sessions::Table.into_iden(),
                ColumnDef::new(Sessions::LeaseUntil)
                    .timestamp_with_time_zone()
                    .null()
                    .to_owned(),
            ),
            (
                Runs::Table.into_iden(),
                ColumnDef::new(Runs::Content).text().null().to_owned(),
            ),
            (
                Runs::Table.into_iden(),
                ColumnDef::new(Runs::ClientMsgId).string().null().to_owned(),
            ),
        ];
        for (table, mut column) in columns {
            manager
                .alter_table(
                    Table::alter()
                        .table(table)
                        .add_column(&mut column)
                        .to_owned(),
                )
                .await?;
        }
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_lease_until")
                    .table(Sessions::Table)
                    .col(Sessions::LeaseUntil)
                    .to_owned(),
            )
            .await?;
        // Two nodes queueing the same request at once: one row.
        manager
            .create_index(
                Index::create()
                    .name("idx_runs_session_client_msg_id")
                    .table(Runs::Table)
                    .col(Runs::SessionId)
                    .col(Runs::ClientMsgId)
                    .unique()
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .drop_index(
                Index::drop()
                    .name("idx_runs_session_client_msg_id")
                    .table(Runs::Table)
                    .to_owned(),
            )
            .await?;
        manager
            .drop_index(
                Index::drop()
                    .name("idx_sessions_lease_until")
                    .table(Sessions::Table)
                    .to_owned(),
            )
            .await?;
        let columns = [
            (Sessions::Table.into_iden(), Sessions::LeaseNode.into_iden()),
            (
                Sessions::Table.into_iden(),
                Sessions::LeaseEpoch.into_iden(),
            ),
            (
                Sessions::Table.into_iden(),
                Sessions::LeaseUntil.into_iden(),
            ),
            (Runs::Table.into_iden(), Runs::Content.into_iden()),
            (Runs::Table.into_iden(), Runs::ClientMsgId.into_iden()),
        ];
        for (table, column) in columns {
            manager
                .alter_table(Table::alter().table(table).drop_column(column).to_owned())
                .await?;
        }
        Ok(())
    }
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    LeaseNode,
    LeaseEpoch,
    LeaseUntil,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    SessionId,
    Content,
    ClientMsgId,
}
