//! Waiting for a step's tool calls: their results are logged as they come,
//! the session's status follows what is still open.

use serde_json::json;

use super::{RunError, Turn};
use crate::engine::calls::{self, CallStatus, Outcome};
use crate::engine::gateways::Target;
use crate::engine::{Inner, tools};
use crate::sessions::Status;

/// What the session waits for while these calls are open, each given as
/// (waits for approval, target): an approval first, then the user, then a
/// gateway.
pub(super) fn waiting_status(open: impl Iterator<Item = (bool, Target)> + Clone) -> Status {
    if open.clone().any(|(approval, _)| approval) {
        Status::AwaitingApproval
    } else if open.clone().any(|(_, target)| target == Target::User) {
        Status::AwaitingInput
    } else if open.clone().next().is_some() {
        Status::AwaitingTool
    } else {
        Status::Running
    }
}

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Waited {
    Answered,
    Cancelled,
}

/// How often a waiting run re-reads its calls without being woken (an
/// answer taken by another node, a gateway that went away).
const CALL_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits until every open call of the step has ended — answered, denied,
/// timed out — logging each `tool.result` as it comes and the session's
/// status as it changes, or until the run is cancelled.
pub(super) async fn wait_for_calls(turn: &Turn) -> Result<Waited, RunError> {
    let inner = &turn.inner;
    let waker = inner.waker(turn.run_id.as_str());
    let _forget = Forget(inner, turn.run_id.as_str());
    let timeout = inner.settings.tool_timeout;
    loop {
        if turn.cancel.is_cancelled() {
            return Ok(Waited::Cancelled);
        }
        let open = turn.progress().open_calls.clone();
        let mut rows = calls::load(&inner.db, &open).await?;
        let now = crate::time::now();
        for row in &mut rows {
            let expired = row.deadline_at.is_some_and(|d| d <= now)
                && (row.status == CallStatus::Pending || row.status == CallStatus::Sent);
            if !expired {
                continue;
            }
            let output = json!(format!(
                "no gateway answered {} within {}",
                row.name,
                humantime::format_duration(timeout)
            ));
            let from = [CallStatus::Pending, CallStatus::Sent];
            if calls::claim(
                &inner.db,
                &row.id,
                &from,
                CallStatus::Timeout,
                &output,
                true,
            )
            .await?
            {
                tracing::info!(call_id = %row.id, "tool call timed out");
            }
            if let Some(fresh) = calls::find(&inner.db, &row.id).await? {
                *row = fresh;
            }
        }

        let mut batch = turn.batch();
        let mut still_open = Vec::new();
        for id in &open {
            match rows.iter().find(|r| &r.id == id) {
                Some(row) => match calls::outcome(row) {
                    Some(outcome) => tools::result(&mut batch, id, outcome),
                    None => still_open.push(row),
                },
                // Not stored: cannot happen unless the row was deleted.
                None => tools::result(&mut batch, id, Outcome::cancelled("the call was lost")),
            }
        }
        let status = waiting_status(
            still_open
                .iter()
                .map(|r| (r.status == CallStatus::AwaitingApproval, r.target)),
        );
        if status != turn.progress().status {
            batch.status(status);
        }
        if !batch.is_empty() {
            turn.commit(batch).await?;
            let mut progress = turn.progress();
            progress.status = status;
            progress
                .open_calls
                .retain(|id| still_open.iter().any(|r| &r.id == id));
        }
        if still_open.is_empty() {
            return Ok(Waited::Answered);
        }
        if still_open
            .iter()
            .any(|r| r.target == Target::Gateway && r.status != CallStatus::AwaitingApproval)
        {
            inner.deliver_everywhere(&turn.owner).await;
        }
        let next_deadline = still_open
            .iter()
            .filter_map(|r| r.deadline_at)
            .min()
            .map(|d| (d - crate::time::now()).to_std().unwrap_or_default())
            .unwrap_or(CALL_POLL)
            .min(CALL_POLL);
        tokio::select! {
            biased;
            () = turn.cancel.cancelled() => return Ok(Waited::Cancelled),
            () = waker.notified() => {}
            () = tokio::time::sleep(next_deadline) => {}
        }
    }
}

/// Removes a run's waker when it stops waiting.
struct Forget<'a>(&'a Inner, &'a str);

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        self.0.forget_waker(self.1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_approval_outranks_a_question_which_outranks_a_gateway() {
        let status = |open: &[(bool, Target)]| waiting_status(open.iter().copied());
        assert_eq!(status(&[]), Status::Running);
        assert_eq!(status(&[(false, Target::Gateway)]), Status::AwaitingTool);
        assert_eq!(
            status(&[(false, Target::Gateway), (false, Target::User)]),
            Status::AwaitingInput
        );
        assert_eq!(
            status(&[(false, Target::User), (true, Target::Gateway)]),
            Status::AwaitingApproval
        );
    }
}
