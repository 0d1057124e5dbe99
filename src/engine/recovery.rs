//! Finishing the runs a previous process left active (it was killed, or
//! lost its database mid-run). At start, before anything is served, every
//! run still `running` or `queued` is finished `interrupted` through the
//! log, as a live run would have been: the partial assistant text, rebuilt
//! from its logged `text.delta`s, becomes an `incomplete` message; tool calls
//! without a logged result get the one their row holds if they were answered
//! just before, else `cancelled`; the session goes back to `idle`. A
//! session's queued runs, which never started, end together in one write.

use std::collections::{BTreeMap, HashSet};

use entity::{event, message, run};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QueryOrder, QuerySelect};
use serde_json::{Value, json};

use super::record::{self, Batch, RUN_QUEUED, RUN_RUNNING, Reason};
use super::{calls, tools};
use crate::ids::{MessageId, RunId, SessionId};
use crate::log::{EventLog, LogError};
use crate::sessions::Status;

/// Finishes every run left active; returns how many.
pub async fn recover(db: &DatabaseConnection, log: &EventLog) -> Result<usize, LogError> {
    let runs = run::Entity::find()
        .filter(run::Column::Status.is_in([RUN_RUNNING, RUN_QUEUED]))
        .order_by_asc(run::Column::Id)
        .all(db)
        .await?;
    let count = runs.len();
    let mut queued: BTreeMap<String, Vec<RunId>> = BTreeMap::new();
    for row in runs {
        if row.status == RUN_QUEUED {
            queued
                .entry(row.session_id)
                .or_default()
                .push(RunId::from_db(row.id));
            continue;
        }
        let session = SessionId::from_db(row.session_id.clone());
        let run_id = RunId::from_db(row.id.clone());
        let mut batch = Batch::new(&session, &run_id);
        account_for(db, &mut batch, &session, &run_id).await?;
        batch.event(
            "run.finished",
            json!({ "run_id": run_id, "reason": Reason::Interrupted.as_str() }),
        );
        batch.finish_run(Reason::Interrupted, None);
        batch.status(Status::Idle);
        batch.commit(log).await?;
        tracing::info!(session_id = %session, %run_id, "finished a run left active by the last process");
    }
    for (session, runs) in queued {
        let session = SessionId::from_db(session);
        record::finish_unstarted(log, &session, &runs, Reason::Interrupted).await?;
        tracing::info!(
            session_id = %session, runs = runs.len(),
            "finished the queued runs the last process left"
        );
    }
    Ok(count)
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
        .filter(event::Column::Kind.is_in(["text.delta", "tool.call", "tool.result"]))
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

    let mut partial: Vec<(String, String)> = Vec::new();
    let mut open_calls: Vec<String> = Vec::new();
    for (kind, data) in rows {
        let data: Value = serde_json::from_str(&data).unwrap_or(Value::Null);
        let text = |key: &str| data.get(key).and_then(Value::as_str).map(str::to_owned);
        match kind.as_str() {
            "text.delta" => {
                let (Some(id), Some(delta)) = (text("message_id"), text("delta")) else {
                    continue;
                };
                if stored.contains(&id) {
                    continue;
                }
                match partial.iter_mut().find(|(m, _)| *m == id) {
                    Some((_, content)) => content.push_str(&delta),
                    None => partial.push((id, delta)),
                }
            }
            "tool.call" => open_calls.extend(text("call_id")),
            "tool.result" => {
                if let Some(id) = text("call_id") {
                    open_calls.retain(|c| *c != id);
                }
            }
            _ => {}
        }
    }
    for (id, content) in partial {
        batch.assistant_message(&MessageId::from_db(id), content, &[], "incomplete");
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
