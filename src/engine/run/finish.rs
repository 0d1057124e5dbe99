//! The end of a run: the one exit path of every started run, and the end
//! of runs dropped from the queue before they started.

use super::{RunError, Turn};
use crate::engine::calls::{self, Outcome};
use crate::engine::record::{self, Reason};
use crate::engine::{Entry, Inner, tools};
use crate::error::Chain;
use crate::events;
use crate::ids::{RunId, SessionId};
use crate::log::Fence;
use crate::sessions::Status;
use entity::states::MessageStatus;

/// Ends runs that never started (dropped from the queue) with `reason`, all
/// in one write. If that fails, their rows stay `queued` and the next start
/// finishes them ([`super::recovery`]).
pub(in crate::engine) async fn finish_unstarted(
    inner: &Inner,
    session: &SessionId,
    entries: &[Entry],
    reason: Reason,
    fence: Option<Fence>,
) {
    let runs: Vec<RunId> = entries.iter().map(|e| e.run_id.clone()).collect();
    finish_stored(inner, session, &runs, reason, fence).await;
    for entry in entries {
        entry.control.finished.cancel();
    }
}

/// Ends stored runs that never started with `reason`, in one write.
pub(in crate::engine) async fn finish_stored(
    inner: &Inner,
    session: &SessionId,
    runs: &[RunId],
    reason: Reason,
    fence: Option<Fence>,
) {
    if runs.is_empty() {
        return;
    }
    match record::finish_unstarted(&inner.log, session, runs, reason, fence).await {
        Ok(_) => metrics::counter!(crate::metrics::RUNS_FINISHED, "reason" => reason.as_str())
            .increment(runs.len() as u64),
        Err(error) => tracing::error!(
            error = %Chain(&error), session_id = %session, runs = runs.len(),
            "cannot finish queued runs; the next start will"
        ),
    }
}

/// The one exit path of every started run: keeps the partial text, cancels
/// open tool calls, logs the error if any, `run.finished` and `idle` — in
/// one transaction, retried a few times if the database fails.
pub(super) async fn finish(turn: &Turn, reason: Reason, error: Option<RunError>) {
    let (partial, open_calls, usage) = {
        let mut progress = turn.progress();
        (
            progress.message.take(),
            std::mem::take(&mut progress.open_calls),
            progress.usage,
        )
    };
    let mut batch = turn.batch();
    if let Some((message_id, text)) = partial
        && !text.is_empty()
    {
        batch.assistant_message(&message_id, text, &[], MessageStatus::Incomplete);
    }
    if !open_calls.is_empty() {
        let message = format!(
            "the run ended ({}) before this call finished",
            reason.as_str()
        );
        let ended = match calls::cancel_open(&turn.inner.db, &open_calls, &message).await {
            Ok(ended) => ended,
            Err(error) => {
                tracing::warn!(%error, "cannot cancel the run's tool calls");
                open_calls
                    .iter()
                    .map(|id| (id.clone(), Outcome::cancelled(&message)))
                    .collect()
            }
        };
        for (call_id, outcome) in ended {
            tools::result(&mut batch, &call_id, outcome);
        }
    }
    if let Some(error) = &error {
        tracing::warn!(error = %Chain(error), "run failed");
        batch.event(error.event());
    }
    batch.event(events::RunFinished {
        run_id: turn.run_id.clone(),
        reason,
        usage,
    });
    batch.finish_run(reason, usage);
    batch.status(Status::Idle);

    let mut backoff = std::time::Duration::from_millis(100);
    for attempt in 1..=4 {
        match batch.clone().commit(&turn.inner.log).await {
            Ok(_) => {
                tracing::info!(reason = reason.as_str(), "run finished");
                metrics::counter!(crate::metrics::RUNS_FINISHED, "reason" => reason.as_str())
                    .increment(1);
                return;
            }
            Err(error) if error.is_fenced() => {
                tracing::warn!(
                    reason = reason.as_str(),
                    "another node took this session over; it finishes the run"
                );
                return;
            }
            Err(error) if attempt < 4 => {
                tracing::warn!(
                    error = %Chain(&error), attempt,
                    "cannot record the end of the run; retrying"
                );
                tokio::time::sleep(backoff).await;
                backoff *= 4;
            }
            Err(error) => tracing::error!(
                error = %Chain(&error),
                "cannot record the end of the run; the next start will finish it"
            ),
        }
    }
}
