//! What a run writes: events for subscribers and, in the same transaction,
//! the rows they describe — messages, the run, the session's status. A
//! [`Batch`] collects both; committing it is one append to the session's
//! log whose [`Effect`] writes the rows, so the log, the messages table and
//! the session never disagree, whatever fails.
//!
//! Runs dropped from a queue end together in one append
//! ([`finish_unstarted`]): however many there are, one commit.
//!
//! Message text is made storable ([`storable`]) as its row is made: a NUL
//! from the model or a tool's output becomes U+FFFD on every database.

use entity::states::{MessageStatus, Role, RunStatus};
use entity::{message, run, session, tool_call};
use futures_util::future::BoxFuture;
use sea_orm::sea_query::OnConflict;
use sea_orm::{
    ColumnTrait, DatabaseTransaction, DbErr, EntityTrait, QueryFilter, Set, sea_query::Expr,
};

use crate::engine::conversation::tool_calls_value;
use crate::engine::provider::{ToolCall, Usage, storable};
use crate::events::{self, Event};
use crate::ids::{MessageId, RunId, Seq, SessionId};
use crate::log::{Appended, Effect, EventLog, Fence, LogError, NewEvent};
use crate::sessions::Status;

/// Why a run ended (`run.finished { reason }`, and its row's `reason`).
pub use entity::states::RunReason as Reason;

#[derive(Clone)]
enum RunWrite {
    Start {
        id: RunId,
        message_id: MessageId,
        /// The node that runs it (several nodes).
        node: Option<String>,
    },
    Finish {
        id: RunId,
        reason: Reason,
        usage: Option<Usage>,
    },
}

/// Events to append together with the rows they describe.
#[derive(Clone)]
pub struct Batch {
    run_id: RunId,
    events: Vec<NewEvent>,
    record: Record,
    /// The run lease the commit needs (several nodes).
    fence: Option<Fence>,
}

#[derive(Clone)]
struct Record {
    session: SessionId,
    status: Option<Status>,
    run: Option<RunWrite>,
    /// Each message with the index of the event that made it final.
    messages: Vec<(usize, message::ActiveModel)>,
    /// New tool-call rows.
    tool_calls: Vec<tool_call::ActiveModel>,
}

impl Batch {
    pub fn new(session: &SessionId, run_id: &RunId) -> Self {
        Self {
            run_id: run_id.clone(),
            events: Vec::new(),
            record: Record {
                session: session.clone(),
                status: None,
                run: None,
                messages: Vec::new(),
                tool_calls: Vec::new(),
            },
            fence: None,
        }
    }

    /// Commits only if `fence` passes in the same transaction.
    pub fn fenced(mut self, fence: Option<Fence>) -> Self {
        self.fence = fence;
        self
    }

    /// Adds an event of the run; returns its index in the batch.
    pub fn event(&mut self, event: impl Into<Event>) -> usize {
        self.events.push(NewEvent::of(Some(&self.run_id), event));
        self.events.len() - 1
    }

    /// Stores `row` with the seq of event `index`.
    pub fn message(&mut self, index: usize, row: message::ActiveModel) {
        self.record.messages.push((index, row));
    }

    /// A message row of this run; `seq` and `created_at` are set when it is
    /// committed. `content` is stored with any NUL replaced ([`storable`]).
    pub fn message_row(
        &self,
        id: &MessageId,
        role: Role,
        content: String,
        status: MessageStatus,
    ) -> message::ActiveModel {
        message::ActiveModel {
            id: Set(id.clone()),
            session_id: Set(self.record.session.clone()),
            run_id: Set(Some(self.run_id.clone())),
            role: Set(role),
            content: Set(storable(content)),
            tool_calls: Set(None),
            tool_call_id: Set(None),
            status: Set(status),
            client_msg_id: Set(None),
            seq: Set(Seq::ZERO),
            created_at: Set(crate::time::now()),
        }
    }

    /// An assistant message made final, `complete` or `incomplete`:
    /// `message.completed` and its row.
    pub fn assistant_message(
        &mut self,
        id: &MessageId,
        content: String,
        calls: &[ToolCall],
        status: MessageStatus,
    ) {
        let mut row = self.message_row(id, Role::Assistant, content.clone(), status);
        let tool_calls = (!calls.is_empty()).then(|| tool_calls_value(calls));
        if let Some(value) = &tool_calls {
            row.tool_calls = Set(Some(value.to_string()));
        }
        let index = self.event(events::MessageCompleted {
            message_id: id.clone(),
            role: Role::Assistant,
            content,
            tool_calls,
            status,
        });
        self.message(index, row);
    }

    /// Inserts a tool call's row.
    pub fn tool_call(&mut self, row: tool_call::ActiveModel) {
        self.record.tool_calls.push(row);
    }

    /// Whether the batch holds nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.events.is_empty()
    }

    /// Sets the session's status, with its `status` event.
    pub fn status(&mut self, status: Status) {
        self.event(events::Status { status });
        self.record.status = Some(status);
    }

    /// Starts the run (on `node`, with several nodes).
    pub fn start_run(&mut self, message_id: &MessageId, node: Option<&str>) {
        self.record.run = Some(RunWrite::Start {
            id: self.run_id.clone(),
            message_id: message_id.clone(),
            node: node.map(str::to_owned),
        });
    }

    pub fn finish_run(&mut self, reason: Reason, usage: Option<Usage>) {
        self.record.run = Some(RunWrite::Finish {
            id: self.run_id.clone(),
            reason,
            usage,
        });
    }

    /// Appends the events; the rows are written in the same transaction.
    pub async fn commit(self, log: &EventLog) -> Result<Appended, LogError> {
        let Batch {
            events,
            record,
            fence,
            ..
        } = self;
        let session = record.session.clone();
        let effect: Option<Box<dyn Effect>> = if record.status.is_none()
            && record.run.is_none()
            && record.messages.is_empty()
            && record.tool_calls.is_empty()
        {
            None
        } else {
            Some(Box::new(record))
        };
        log.submit_fenced(&session, events, effect, fence)
            .await?
            .wait()
            .await
    }
}

/// A run row waiting behind the active run, with its message (no event:
/// its `message.user` is logged when it starts, on whichever node).
pub async fn insert_queued_run(
    db: &impl sea_orm::ConnectionTrait,
    session: &SessionId,
    queued: QueuedRun<'_>,
) -> Result<(), DbErr> {
    run::Entity::insert(run::ActiveModel {
        id: Set(queued.run_id.clone()),
        session_id: Set(session.clone()),
        message_id: Set(queued.message_id.clone()),
        status: Set(RunStatus::Queued),
        reason: Set(None),
        usage: Set(None),
        node: Set(None),
        content: Set(Some(storable(queued.content.to_owned()))),
        client_msg_id: Set(queued.client_msg_id.map(str::to_owned)),
        created_at: Set(crate::time::now()),
        started_at: Set(None),
        finished_at: Set(None),
    })
    .on_conflict(OnConflict::column(run::Column::Id).do_nothing().to_owned())
    .exec_without_returning(db)
    .await?;
    Ok(())
}

/// A queued run as stored.
pub struct QueuedRun<'a> {
    pub run_id: &'a RunId,
    pub message_id: &'a MessageId,
    pub content: &'a str,
    pub client_msg_id: Option<&'a str>,
}

/// Ends runs that never started (dropped from a queue) with `reason`, in
/// one append: a `run.finished` each and, in the same transaction, their
/// rows.
pub async fn finish_unstarted(
    log: &EventLog,
    session: &SessionId,
    runs: &[RunId],
    reason: Reason,
    fence: Option<Fence>,
) -> Result<Appended, LogError> {
    let events = runs
        .iter()
        .map(|id| {
            NewEvent::of(
                Some(id),
                events::RunFinished {
                    run_id: id.clone(),
                    reason,
                    usage: None,
                },
            )
        })
        .collect();
    let effect = Unstarted {
        runs: runs.to_vec(),
        reason,
    };
    log.submit_fenced(session, events, Some(Box::new(effect)), fence)
        .await?
        .wait()
        .await
}

/// The rows of runs ended before they started.
struct Unstarted {
    runs: Vec<RunId>,
    reason: Reason,
}

/// Run ids per `UPDATE … WHERE id IN (…)`, well inside every database's
/// limit on bound parameters.
const IDS_PER_UPDATE: usize = 500;

impl Effect for Unstarted {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        _seqs: &'a [Seq],
    ) -> BoxFuture<'a, Result<(), DbErr>> {
        Box::pin(async move {
            let now = crate::time::now();
            for ids in self.runs.chunks(IDS_PER_UPDATE) {
                run::Entity::update_many()
                    .col_expr(run::Column::Status, Expr::value(RunStatus::Finished))
                    .col_expr(run::Column::Reason, Expr::value(self.reason))
                    .col_expr(run::Column::FinishedAt, Expr::value(now))
                    .col_expr(run::Column::Content, Expr::value(Option::<String>::None))
                    .filter(run::Column::Id.is_in(ids.iter().map(RunId::as_str)))
                    .exec(txn)
                    .await?;
            }
            Ok(())
        })
    }
}

impl Effect for Record {
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        seqs: &'a [Seq],
    ) -> BoxFuture<'a, Result<(), DbErr>> {
        Box::pin(async move {
            let now = crate::time::now();
            let Record {
                session: session_id,
                status,
                run: run_write,
                messages,
                tool_calls,
            } = self.clone();
            if !tool_calls.is_empty() {
                tool_call::Entity::insert_many(tool_calls)
                    .exec_without_returning(txn)
                    .await?;
            }
            for (index, mut row) in messages {
                let seq = seqs.get(index).copied().ok_or_else(|| {
                    DbErr::Custom(format!("no seq for the event of message {index}"))
                })?;
                row.seq = Set(seq);
                row.created_at = Set(now);
                message::Entity::insert(row)
                    .exec_without_returning(txn)
                    .await?;
            }
            match run_write {
                Some(RunWrite::Start {
                    id,
                    message_id,
                    node,
                }) => {
                    run::Entity::insert(run::ActiveModel {
                        id: Set(id),
                        session_id: Set(session_id.clone()),
                        message_id: Set(message_id),
                        status: Set(RunStatus::Running),
                        reason: Set(None),
                        usage: Set(None),
                        node: Set(node),
                        content: Set(None),
                        client_msg_id: Set(None),
                        created_at: Set(now),
                        started_at: Set(Some(now)),
                        finished_at: Set(None),
                    })
                    .on_conflict(
                        OnConflict::column(run::Column::Id)
                            .update_columns([
                                run::Column::Status,
                                run::Column::StartedAt,
                                run::Column::Node,
                                run::Column::Content,
                            ])
                            .to_owned(),
                    )
                    .exec_without_returning(txn)
                    .await?;
                }
                Some(RunWrite::Finish { id, reason, usage }) => {
                    run::Entity::update_many()
                        .col_expr(run::Column::Status, Expr::value(RunStatus::Finished))
                        .col_expr(run::Column::Reason, Expr::value(reason))
                        .col_expr(
                            run::Column::Usage,
                            Expr::value(usage.and_then(|u| serde_json::to_string(&u).ok())),
                        )
                        .col_expr(run::Column::FinishedAt, Expr::value(now))
                        .filter(run::Column::Id.eq(id.as_str()))
                        .exec(txn)
                        .await?;
                }
                None => {}
            }
            if let Some(status) = status {
                session::Entity::update_many()
                    .col_expr(session::Column::Status, Expr::value(status))
                    .col_expr(session::Column::UpdatedAt, Expr::value(now))
                    .filter(session::Column::Id.eq(session_id.as_str()))
                    .exec(txn)
                    .await?;
            }
            Ok(())
        })
    }
}
