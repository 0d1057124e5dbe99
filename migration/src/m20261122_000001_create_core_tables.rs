//! The first schema: sessions, their event log, messages, runs and tool calls.
//!
//! JSON payloads are stored as text: they are written once, read back verbatim
//! and sent on the wire as they are, so both backends store the same bytes.

use sea_orm_migration::prelude::*;

#[derive(DeriveMigrationName)]
pub struct Migration;

#[async_trait::async_trait]
impl MigrationTrait for Migration {
    async fn up(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        manager
            .create_table(
                Table::create()
                    .table(Sessions::Table)
                    .col(
                        ColumnDef::new(Sessions::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Sessions::Owner).string().not_null())
                    .col(ColumnDef::new(Sessions::Title).string().not_null())
                    .col(ColumnDef::new(Sessions::Status).string().not_null())
                    .col(
                        ColumnDef::new(Sessions::HeadSeq)
                            .big_integer()
                            .not_null()
                            .default(0),
                    )
                    .col(
                        ColumnDef::new(Sessions::FirstSeq)
                            .big_integer()
                            .not_null()
                            .default(1),
                    )
                    .col(ColumnDef::new(Sessions::Metadata).text().not_null())
                    .col(timestamp(Sessions::CreatedAt))
                    .col(timestamp(Sessions::UpdatedAt))
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_sessions_owner_id")
                    .table(Sessions::Table)
                    .col(Sessions::Owner)
                    .col(Sessions::Id)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Events::Table)
                    .col(ColumnDef::new(Events::SessionId).string().not_null())
                    .col(ColumnDef::new(Events::Seq).big_integer().not_null())
                    .col(ColumnDef::new(Events::Type).string().not_null())
                    .col(ColumnDef::new(Events::RunId).string().null())
                    .col(ColumnDef::new(Events::Data).text().not_null())
                    .col(ColumnDef::new(Events::IdempotencyKey).string().null())
                    .col(timestamp(Events::CreatedAt))
                    .primary_key(Index::create().col(Events::SessionId).col(Events::Seq))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Events::Table, Events::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        // Partial: most events carry no key and need no entry here.
        manager
            .get_connection()
            .execute_unprepared(
                "CREATE UNIQUE INDEX idx_events_idempotency ON events (session_id, idempotency_key) \
                 WHERE idempotency_key IS NOT NULL",
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Messages::Table)
                    .col(
                        ColumnDef::new(Messages::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(Messages::SessionId).string().not_null())
                    .col(ColumnDef::new(Messages::RunId).string().null())
                    .col(ColumnDef::new(Messages::Role).string().not_null())
                    .col(ColumnDef::new(Messages::Content).text().not_null())
                    .col(ColumnDef::new(Messages::ToolCalls).text().null())
                    .col(ColumnDef::new(Messages::ToolCallId).string().null())
                    .col(ColumnDef::new(Messages::Status).string().not_null())
                    .col(ColumnDef::new(Messages::ClientMsgId).string().null())
                    .col(timestamp(Messages::CreatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(Messages::Table, Messages::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_session_id")
                    .table(Messages::Table)
                    .col(Messages::SessionId)
                    .col(Messages::Id)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_messages_client_msg_id")
                    .table(Messages::Table)
                    .col(Messages::SessionId)
                    .col(Messages::ClientMsgId)
                    .unique()
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(Runs::Table)
                    .col(ColumnDef::new(Runs::Id).string().not_null().primary_key())
                    .col(ColumnDef::new(Runs::SessionId).string().not_null())
                    .col(ColumnDef::new(Runs::MessageId).string().not_null())
                    .col(ColumnDef::new(Runs::Status).string().not_null())
                    .col(ColumnDef::new(Runs::Reason).string().null())
                    .col(ColumnDef::new(Runs::Usage).text().null())
                    .col(ColumnDef::new(Runs::Node).string().null())
                    .col(timestamp(Runs::CreatedAt))
                    .col(
                        ColumnDef::new(Runs::StartedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(
                        ColumnDef::new(Runs::FinishedAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .foreign_key(
                        ForeignKey::create()
                            .from(Runs::Table, Runs::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_runs_session_status")
                    .table(Runs::Table)
                    .col(Runs::SessionId)
                    .col(Runs::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_runs_status")
                    .table(Runs::Table)
                    .col(Runs::Status)
                    .to_owned(),
            )
            .await?;

        manager
            .create_table(
                Table::create()
                    .table(ToolCalls::Table)
                    .col(
                        ColumnDef::new(ToolCalls::Id)
                            .string()
                            .not_null()
                            .primary_key(),
                    )
                    .col(ColumnDef::new(ToolCalls::SessionId).string().not_null())
                    .col(ColumnDef::new(ToolCalls::RunId).string().not_null())
                    .col(ColumnDef::new(ToolCalls::Owner).string().not_null())
                    .col(ColumnDef::new(ToolCalls::Name).string().not_null())
                    .col(ColumnDef::new(ToolCalls::Arguments).text().not_null())
                    .col(ColumnDef::new(ToolCalls::Target).string().not_null())
                    .col(ColumnDef::new(ToolCalls::Status).string().not_null())
                    .col(
                        ColumnDef::new(ToolCalls::RequiresApproval)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(ColumnDef::new(ToolCalls::GatewayId).string().null())
                    .col(ColumnDef::new(ToolCalls::Output).text().null())
                    .col(
                        ColumnDef::new(ToolCalls::IsError)
                            .boolean()
                            .not_null()
                            .default(false),
                    )
                    .col(
                        ColumnDef::new(ToolCalls::DeadlineAt)
                            .timestamp_with_time_zone()
                            .null(),
                    )
                    .col(timestamp(ToolCalls::CreatedAt))
                    .col(timestamp(ToolCalls::UpdatedAt))
                    .foreign_key(
                        ForeignKey::create()
                            .from(ToolCalls::Table, ToolCalls::SessionId)
                            .to(Sessions::Table, Sessions::Id)
                            .on_delete(ForeignKeyAction::Cascade),
                    )
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tool_calls_owner_status")
                    .table(ToolCalls::Table)
                    .col(ToolCalls::Owner)
                    .col(ToolCalls::Status)
                    .to_owned(),
            )
            .await?;
        manager
            .create_index(
                Index::create()
                    .name("idx_tool_calls_run")
                    .table(ToolCalls::Table)
                    .col(ToolCalls::RunId)
                    .to_owned(),
            )
            .await
    }

    async fn down(&self, manager: &SchemaManager) -> Result<(), DbErr> {
        for table in [
            ToolCalls::Table.into_iden(),
            Runs::Table.into_iden(),
            Messages::Table.into_iden(),
            Events::Table.into_iden(),
            Sessions::Table.into_iden(),
        ] {
            manager
                .drop_table(Table::drop().table(table).to_owned())
                .await?;
        }
        Ok(())
    }
}

fn timestamp(col: impl IntoIden) -> ColumnDef {
    ColumnDef::new(col)
        .timestamp_with_time_zone()
        .not_null()
        .to_owned()
}

#[derive(DeriveIden)]
enum Sessions {
    Table,
    Id,
    Owner,
    Title,
    Status,
    HeadSeq,
    FirstSeq,
    Metadata,
    CreatedAt,
    UpdatedAt,
}

#[derive(DeriveIden)]
enum Events {
    Table,
    SessionId,
    Seq,
    Type,
    RunId,
    Data,
    IdempotencyKey,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Messages {
    Table,
    Id,
    SessionId,
    RunId,
    Role,
    Content,
    ToolCalls,
    ToolCallId,
    Status,
    ClientMsgId,
    CreatedAt,
}

#[derive(DeriveIden)]
enum Runs {
    Table,
    Id,
    SessionId,
    MessageId,
    Status,
    Reason,
    Usage,
    Node,
    CreatedAt,
    StartedAt,
    FinishedAt,
}

#[derive(DeriveIden)]
enum ToolCalls {
    Table,
    Id,
    SessionId,
    RunId,
    Owner,
    Name,
    Arguments,
    Target,
    Status,
    RequiresApproval,
    GatewayId,
    Output,
    IsError,
    DeadlineAt,
    CreatedAt,
    UpdatedAt,
}
