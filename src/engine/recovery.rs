//! Finishing the runs a previous process left active (it was killed, or
//! lost its database mid-run). At start, before anything is served, every
//! run still `running` is finished `interrupted` through the log, as a
//! live run would have been (queued runs, stored with their message, are
//! then started, in order, by the engine): the partial assistant text, rebuilt
//! from its logged `text.delta`s, becomes an `incomplete` message; tool calls
//! without a logged result get the one their row holds if they were answered
//! just before, else `cancelled`; the session goes back to `idle`. A
//! session's queued runs, which never started, end together in one write.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use entity::states::{MessageStatus, RunStatus};
use entity::{event, message, run};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::value::RawValue;

use super::record::{self, Batch, Reason};
use super::{calls, tools};
use crate::events::{self, Event, Kind};
use crate::ids::{CallId, MessageId, RunId, SessionId};
use crate::log::{EventLog, Fence, LogError};
use crate::sessions::Status;

/// Finishes every run left running, and the queued runs whose message is
/// not stored (queued by an older version); returns how many it finished,
/// and the sessions whose queued runs are left for the engine to start.
pub async fn recover(
    db: &DatabaseConnection,
    log: &EventLog,
) -> Result<(usize, Vec<SessionId>), LogError> {
    let runs = run::Entity::find()
        .filter(run::Column::Status.is_in([RunStatus::Running, RunStatus::Queued]))
        .order_by_asc(run::Column::Id)
        .all(db)
        .await?;
    let mut finished = 0;
    let mut unreadable: BTreeMap<SessionId, Vec<RunId>> = BTreeMap::new();
    let mut queued: BTreeSet<SessionId> = BTreeSet::new();
    for row in runs {
        if row.status == RunStatus::Queued {
            if row.content.is_some() {
                queued.insert(row.session_id);
            } else {
                unreadable.entry(row.session_id).or_default().push(row.id);
            }
            continue;
        }
        finish_run(db, log, &row.session_id, &row.id, None).await?;
        finished += 1;
        tracing::info!(session_id = %row.session_id, run_id = %row.id, "finished a run left active by the last process");
    }
    for (session, runs) in unreadable {
        record::finish_unstarted(log, &session, &runs, Reason::Interrupted, None).await?;
        finished += runs.len();
        tracing::info!(
            session_id = %session, runs = runs.len(),
            "finished the queued runs the last process left without their message"
        );
    }
    Ok((finished, queued.into_iter().collect()))
}

/// Finishes the session's running runs `interrupted` (another node ran
/// them and stopped), with `fence`; returns how many.
pub(super) async fn finish_active(
    db: &DatabaseConnection,
    log: &EventLog,
    session: &SessionId,
    fence: Option<Fence>,
) -> Result<usize, LogError> {
    let runs: Vec<RunId> = run::Entity::find()
        .select_only()
        .column(run::Column::Id)
        .filter(run::Column::SessionId.eq(session.as_str()))
        .filter(run::Column::Status.eq(RunStatus::Running))
        .order_by_asc(run::Column::Id)
        .into_tuple()
        .all(db)
        .await?;
    for run_id in &runs {
        finish_run(db, log, session, run_id, fence.clone()).await?;
    }
    Ok(runs.len())
}

/// Ends one run left running as a live run's end would have: its partial
/// messages, the results of its open calls, `run.finished`, `idle`.
async fn finish_run(
    db: &DatabaseConnection,
    log: &EventLog,
    session: &SessionId,
    run_id: &RunId,
    fence: Option<Fence>,
) -> Result<(), LogError> {
    let mut batch = Batch::new(session, run_id).fenced(fence);
    account_for(db, &mut batch, session, run_id).await?;
    batch.event(events::RunFinished {
        run_id: run_id.clone(),
        reason: Reason::Interrupted,
        usage: None,
    });
    batch.finish_run(Reason::Interrupted, None);
    batch.status(Status::Idle);
    batch.commit(log).await?;
    metrics::counter!(crate::metrics::RUNS_FINISHED, "reason" => Reason::Interrupted.as_str())
        .increment(1);
    Ok(())
}

/// Adds what a live run's end would have: its partial messages and the
/// results of its open tool calls.
async fn account_for(
    db: &DatabaseConnection,
    batch: &mut Batch,
    session: &SessionId,
    run_id: &RunId,
) -> Result<(), LogError> {
    let rows: Vec<(String, String)> = event::Entity::find()
        .select_only()
        .column(event::Column::Kind)
        .column(event::Column::Data)
        .filter(event::Column::SessionId.eq(session.as_str()))
        .filter(event::Column::RunId.eq(run_id.as_str()))
        .filter(
            event::Column::Kind
                .is_in([Kind::TextDelta, Kind::ToolCall, Kind::ToolResult].map(Kind::as_str)),
        )
        .order_by_asc(event::Column::Seq)
        .into_tuple()
        .all(db)
        .await?;
    let stored: HashSet<String> = message::Entity::find()
        .select_only()
        .column(message::Column::Id)
        .filter(message::Column::RunId.eq(run_id.as_str()))
        .into_tuple()
        .all(db)
        .await?
        .into_iter()
        .collect();

    let mut partial: Vec<(MessageId, String)> = Vec::new();
    let mut open_calls: Vec<CallId> = Vec::new();
    for (kind, data) in rows {
        let event = RawValue::from_string(data)
            .map_err(|e| e.to_string())
            .and_then(|data| Event::parse(&kind, &data));
        match event {
            Ok(Event::TextDelta(events::TextDelta { message_id, delta })) => {
                if stored.contains(message_id.as_str()) {
                    continue;
                }
                match partial.iter_mut().find(|(m, _)| *m == message_id) {
                    Some((_, content)) => content.push_str(&delta),
                    None => partial.push((message_id, delta)),
                }
            }
            Ok(Event::ToolCall(call)) => open_calls.push(call.call_id),
            Ok(Event::ToolResult(result)) => open_calls.retain(|c| *c != result.call_id),
            Ok(_) => {}
            Err(error) => {
                tracing::warn!(%error, %kind, "a stored event of the run does not read back");
            }
        }
    }
    for (id, content) in partial {
        batch.assistant_message(&id, content, &[], MessageStatus::Incomplete);
    }
    let ended = calls::cancel_open(
        db,
        &open_calls,
        "the server stopped before this call finished",
    )
    .await?;
    for (call_id, outcome) in ended {
        tools::result(batch, &call_id, outcome);
    }
    Ok(())
}
