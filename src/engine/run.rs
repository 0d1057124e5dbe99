//! One run: start it, stream the provider's answer into events, run the
//! tools it calls, call it again, and end — always through [`finish`].
//!
//! The steps run in a task of their own so that a panic in them is caught
//! like any other failure; what they achieved so far lives in [`Progress`],
//! which the exit path reads to keep partial text and cancel open calls.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::calls::{self, Outcome};
use super::conversation::{self, arguments_value};
use super::gateways::{Offer, Target, Tool};
use super::provider::{ChatRequest, ProviderError, ProviderEvent, ToolCall, Usage};
use super::record::{self, Batch, Reason};
use super::{Entry, Inner, tools};
use crate::auth::UserId;
use crate::error::ApiError;
use crate::ids::{MessageId, RunId, SessionId};
use crate::log::{NewEvent, Submitted};
use crate::sessions::Status;

/// Why the steps of a run stopped early.
#[derive(Debug, thiserror::Error)]
pub(super) enum RunError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("the model was still calling tools after {0} steps")]
    MaxSteps(u32),
    #[error("storing the run failed: {0}")]
    Store(#[from] ApiError),
    #[error("storing the run failed: {0}")]
    Db(#[from] sea_orm::DbErr),
    #[error("the run failed unexpectedly")]
    Panicked,
}

impl RunError {
    /// The `error` event: provider failures are the user's to see (it is
    /// their provider); internal ones say nothing about internals.
    fn event(&self) -> Value {
        match self {
            RunError::Provider(e) => json!({ "code": "provider_error", "message": e.to_string() }),
            RunError::MaxSteps(_) => json!({ "code": "max_steps", "message": self.to_string() }),
            RunError::Store(_) | RunError::Db(_) | RunError::Panicked => json!({
                "code": "internal",
                "message": "the run failed because of an internal error; the session is usable",
            }),
        }
    }
}

enum End {
    Completed,
    Cancelled,
}

/// What the run has done that its end must account for.
struct Progress {
    /// The last time the run sent anything to subscribers.
    last_sent: Instant,
    /// The assistant message being streamed, with the text committed so far.
    message: Option<(MessageId, String)>,
    /// Tool calls logged without a result yet.
    open_calls: Vec<String>,
    usage: Option<Usage>,
    status: Status,
}

#[derive(Clone)]
struct Turn {
    inner: Arc<Inner>,
    session: SessionId,
    owner: UserId,
    run_id: RunId,
    cancel: tokio_util::sync::CancellationToken,
    progress: Arc<Mutex<Progress>>,
}

impl Turn {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().expect("progress")
    }

    fn batch(&self) -> Batch {
        Batch::new(&self.session, &self.run_id)
    }

    fn add_text(&self, delta: &str) {
        if let Some((_, text)) = &mut self.progress().message {
            text.push_str(delta);
        }
    }

    async fn commit(&self, batch: Batch) -> Result<(), ApiError> {
        batch.commit(&self.inner.log).await?;
        self.progress().last_sent = Instant::now();
        Ok(())
    }
}

/// Logs the user message and `run.started`; the session becomes `running`.
pub(super) async fn start(
    inner: &Inner,
    session: &SessionId,
    entry: &Entry,
) -> Result<(), ApiError> {
    let mut batch = Batch::new(session, &entry.run_id);
    let mut data = json!({ "message_id": entry.message_id, "content": &*entry.content });
    if let Some(id) = &entry.client_msg_id {
        data["client_msg_id"] = json!(id);
    }
    let user = batch.event("message.user", data);
    let mut row = batch.message_row(
        &entry.message_id,
        "user",
        entry.content.to_string(),
        "complete",
    );
    row.client_msg_id = sea_orm::Set(entry.client_msg_id.clone());
    batch.message(user, row);
    batch.event(
        "run.started",
        json!({ "run_id": entry.run_id, "message_id": entry.message_id }),
    );
    batch.start_run(&entry.message_id);
    batch.status(Status::Running);
    batch.commit(&inner.log).await?;
    metrics::counter!(crate::metrics::RUNS_STARTED).increment(1);
    Ok(())
}

/// Ends runs that never started (dropped from the queue) with `reason`, all
/// in one write. If that fails, their rows stay `queued` and the next start
/// finishes them ([`super::recovery`]).
pub(super) async fn finish_unstarted(
    inner: &Inner,
    session: &SessionId,
    entries: &[Entry],
    reason: Reason,
) {
    if entries.is_empty() {
        return;
    }
    let runs: Vec<RunId> = entries.iter().map(|e| e.run_id.clone()).collect();
    match record::finish_unstarted(&inner.log, session, &runs, reason).await {
        Ok(_) => metrics::counter!(crate::metrics::RUNS_FINISHED, "reason" => reason.as_str())
            .increment(runs.len() as u64),
        Err(error) => tracing::error!(
            %error, session_id = %session, runs = runs.len(),
            "cannot finish queued runs; the next start will"
        ),
    }
    for entry in entries {
        entry.control.finished.cancel();
    }
}

/// Runs a started run to its end, sending heartbeats while it is silent.
#[tracing::instrument(skip_all, fields(session_id = %session, run_id = %entry.run_id))]
pub(super) async fn run(inner: Arc<Inner>, session: &SessionId, entry: &Entry) {
    let began = Instant::now();
    let turn = Turn {
        inner: inner.clone(),
        session: session.clone(),
        owner: entry.owner.clone(),
        run_id: entry.run_id.clone(),
        cancel: entry.control.cancel.clone(),
        progress: Arc::new(Mutex::new(Progress {
            last_sent: began,
            message: None,
            open_calls: Vec::new(),
            usage: None,
            status: Status::Running,
        })),
    };
    let mut steps = inner.tasks.spawn(steps(turn.clone()));
    let heartbeat = inner.settings.heartbeat;
    let outcome = loop {
        let quiet_until = turn.progress().last_sent + heartbeat;
        tokio::select! {
            joined = &mut steps => break match joined {
                Ok(outcome) => outcome,
                Err(error) => {
                    tracing::error!(%error, "the run task failed");
                    Err(RunError::Panicked)
                }
            },
            () = tokio::time::sleep_until(quiet_until) => {
                let status = turn.progress().status;
                inner.log.notify(session, "agent:heartbeat", &json!({
                    "session_id": session,
                    "run_id": entry.run_id,
                    "status": status.as_str(),
                    "elapsed_ms": began.elapsed().as_millis() as u64,
                }));
                turn.progress().last_sent = Instant::now();
            }
        }
    };
    let reason = match &outcome {
        Ok(End::Completed) => Reason::Completed,
        Ok(End::Cancelled) => entry.control.reason().unwrap_or(Reason::Stopped),
        Err(_) => Reason::Error,
    };
    finish(&turn, reason, outcome.err()).await;
}

/// Text deltas handed to the log and not yet known to be committed. The
/// run does not wait for each commit before reading the next delta (those
/// that arrive meanwhile share the next commit); the partial text it would
/// keep grows only by committed deltas.
#[derive(Default)]
struct Deltas(VecDeque<(Submitted, String)>);

impl Deltas {
    /// Takes in the deltas already committed, in order.
    fn settle(&mut self, turn: &Turn) -> Result<(), RunError> {
        while let Some((submitted, _)) = self.0.front_mut() {
            match submitted.try_wait() {
                None => break,
                Some(result) => {
                    result?;
                    let (_, delta) = self.0.pop_front().expect("a front");
                    turn.add_text(&delta);
                }
            }
        }
        Ok(())
    }

    /// Waits for every delta's commit.
    async fn flush(&mut self, turn: &Turn) -> Result<(), RunError> {
        while let Some((submitted, delta)) = self.0.pop_front() {
            submitted.wait().await?;
            turn.add_text(&delta);
        }
        Ok(())
    }
}

/// Calls the provider until it answers without tool calls.
async fn steps(turn: Turn) -> Result<End, RunError> {
    let max_steps = turn.inner.settings.max_steps;
    for _ in 0..max_steps {
        let messages = conversation::load(&turn.inner.db, &turn.session).await?;
        let offer = turn.inner.registry.offer(&turn.owner);
        let request = ChatRequest {
            messages,
            tools: offer.specs(),
        };
        let message_id = MessageId::generate();
        turn.progress().message = Some((message_id.clone(), String::new()));
        let mut stream = turn
            .inner
            .provider
            .stream(request)
            .map(|item| item.map(ProviderEvent::storable));
        let mut calls = Vec::new();
        let mut deltas = Deltas::default();
        loop {
            let item = tokio::select! {
                biased;
                () = turn.cancel.cancelled() => {
                    deltas.flush(&turn).await?;
                    return Ok(End::Cancelled);
                }
                item = stream.next() => item,
            };
            match item {
                Some(Ok(ProviderEvent::TextDelta(delta))) => {
                    if delta.is_empty() {
                        continue;
                    }
                    let event = NewEvent::new(
                        "text.delta",
                        Some(&turn.run_id),
                        json!({ "message_id": message_id, "delta": delta }),
                    );
                    let submitted = turn
                        .inner
                        .log
                        .submit(&turn.session, vec![event], None)
                        .await?;
                    turn.progress().last_sent = Instant::now();
                    deltas.0.push_back((submitted, delta));
                    deltas.settle(&turn)?;
                }
                Some(Ok(ProviderEvent::ToolCall(call))) => calls.push(call),
                Some(Ok(ProviderEvent::Finished { usage, .. })) => {
                    add_usage(&mut turn.progress().usage, usage);
                    break;
                }
                Some(Err(error)) => {
                    deltas.flush(&turn).await?;
                    return Err(error.into());
                }
                None => {
                    deltas.flush(&turn).await?;
                    return Err(ProviderError::Incomplete.into());
                }
            }
        }
        deltas.flush(&turn).await?;
        drop(stream);
        calls::make_ids_unique(&turn.inner.db, &mut calls).await?;

        let text = turn
            .progress()
            .message
            .as_ref()
            .map(|(_, text)| text.clone())
            .unwrap_or_default();
        let mut batch = turn.batch();
        batch.assistant_message(&message_id, text, &calls, "complete");
        let open = plan_calls(&turn, &mut batch, &offer, &calls).await;
        turn.commit(batch).await?;
        {
            let mut progress = turn.progress();
            progress.message = None;
            progress.open_calls = open;
        }
        if calls.is_empty() {
            return Ok(End::Completed);
        }
        if wait_for_calls(&turn).await? == Waited::Cancelled {
            return Ok(End::Cancelled);
        }
    }
    Err(RunError::MaxSteps(max_steps))
}

fn add_usage(total: &mut Option<Usage>, usage: Option<Usage>) {
    if let Some(usage) = usage {
        let sum = total.get_or_insert_with(Usage::default);
        sum.prompt_tokens += usage.prompt_tokens;
        sum.completion_tokens += usage.completion_tokens;
        sum.total_tokens += usage.total_tokens;
    }
}

/// The one exit path of every started run: keeps the partial text, cancels
/// open tool calls, logs the error if any, `run.finished` and `idle` — in
/// one transaction, retried a few times if the database fails.
async fn finish(turn: &Turn, reason: Reason, error: Option<RunError>) {
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
        batch.assistant_message(&message_id, text, &[], "incomplete");
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
        tracing::warn!(%error, "run failed");
        batch.event("error", error.event());
    }
    let mut data = json!({ "run_id": turn.run_id, "reason": reason.as_str() });
    if let Some(usage) = usage {
        data["usage"] = json!(usage);
    }
    batch.event("run.finished", data);
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
            Err(error) if attempt < 4 => {
                tracing::warn!(%error, attempt, "cannot record the end of the run; retrying");
                tokio::time::sleep(backoff).await;
                backoff *= 4;
            }
            Err(error) => tracing::error!(
                %error,
                "cannot record the end of the run; the next start will finish it"
            ),
        }
    }
}

/// Logs the model's tool calls and makes a row for each: refused at once
/// (no such tool, arguments that do not fit its schema), waiting for
/// approval, for a gateway, or for the user. Returns the ids still open.
async fn plan_calls(
    turn: &Turn,
    batch: &mut Batch,
    offer: &Offer,
    calls: &[ToolCall],
) -> Vec<String> {
    let deadline = turn.inner.settings.tool_deadline();
    let all_arguments: Vec<Value> = calls
        .iter()
        .map(|call| arguments_value(&call.arguments))
        .collect();
    let mut misfits = check_calls(turn, offer, calls, &all_arguments).await;
    let mut open = Vec::new();
    let mut waiting = Vec::new();
    let mut then = Vec::new();
    for ((call, arguments), misfit) in calls.iter().zip(all_arguments).zip(&mut misfits) {
        let tool = offer.get(&call.name);
        let target = tool.map_or(Target::Server, |t| t.target);
        batch.event(
            "tool.call",
            json!({
                "call_id": call.id, "name": call.name,
                "arguments": arguments, "target": target.as_str(),
            }),
        );
        let refused = match tool {
            None => Some(Outcome::error(format!(
                "no tool named {:?} is available in this session",
                call.name
            ))),
            Some(_) => misfit.take().map(Outcome::error),
        };
        let requires_approval = tool.is_some_and(|t| t.requires_approval);
        let (status, deadline) = match (&refused, target) {
            (Some(_), _) => (calls::RESOLVED, None),
            (None, _) if requires_approval => (calls::AWAITING_APPROVAL, None),
            (None, Target::Gateway) => (calls::PENDING, Some(deadline)),
            (None, _) => (calls::PENDING, None),
        };
        batch.tool_call(calls::row(
            call,
            &arguments,
            calls::NewCall {
                session: &turn.session,
                run_id: &turn.run_id,
                owner: turn.owner.as_str(),
                target,
                requires_approval,
                status,
                deadline,
                outcome: refused.as_ref(),
            },
        ));
        if refused.is_none() {
            open.push(call.id.clone());
            waiting.push((status == calls::AWAITING_APPROVAL, target));
        }
        then.push((call, arguments, refused, requires_approval));
    }
    // After every `tool.call`: the refusals' results and the approval requests.
    for (call, arguments, refused, requires_approval) in then {
        match refused {
            Some(outcome) => tools::result(batch, &call.id, outcome),
            None if requires_approval => {
                batch.event(
                    "tool.approval_requested",
                    json!({ "call_id": call.id, "name": call.name, "arguments": arguments }),
                );
            }
            None => {}
        }
    }
    let status = waiting_status(waiting.iter().copied());
    if status != Status::Running {
        batch.status(status);
        turn.progress().status = status;
    }
    open
}

/// Why each call's arguments do not fit its tool's schema (`None`: they
/// do, or there is no such tool). Compiling and checking schemas is CPU
/// work: it runs on a blocking thread, one batch per step.
async fn check_calls(
    turn: &Turn,
    offer: &Offer,
    calls: &[ToolCall],
    arguments: &[Value],
) -> Vec<Option<String>> {
    let jobs: Vec<Option<(Arc<Tool>, String, Value)>> = calls
        .iter()
        .zip(arguments)
        .map(|(call, value)| {
            let tool = offer.get(&call.name)?;
            Some((tool.clone(), call.arguments.clone(), value.clone()))
        })
        .collect();
    if jobs.iter().all(Option::is_none) {
        return vec![None; calls.len()];
    }
    let names: Vec<Option<String>> = jobs
        .iter()
        .map(|job| job.as_ref().map(|(tool, ..)| tool.name.clone()))
        .collect();
    let checked = turn
        .inner
        .registry
        .compiler()
        .check(move || {
            jobs.into_iter()
                .map(|job| {
                    let (tool, raw, value) = job?;
                    check_arguments(&tool, &raw, &value).err()
                })
                .collect::<Vec<_>>()
        })
        .await;
    checked.unwrap_or_else(|error| {
        tracing::error!(%error, run_id = %turn.run_id, "cannot check tool arguments");
        names
            .into_iter()
            .map(|name| {
                name.map(|name| {
                    format!("the arguments of {name} could not be checked; call it again")
                })
            })
            .collect()
    })
}

/// The arguments as the tool's schema wants them: a JSON object that fits.
fn check_arguments(tool: &Tool, raw: &str, arguments: &Value) -> Result<(), String> {
    if !raw.trim().is_empty() && serde_json::from_str::<Value>(raw).is_err() {
        return Err(format!(
            "the arguments are not valid JSON; call {} again with a JSON object",
            tool.name
        ));
    }
    let arguments = if raw.trim().is_empty() {
        &json!({})
    } else {
        arguments
    };
    tool.check(arguments).map_err(|why| {
        format!(
            "the arguments do not match the parameters of {}: {why}; call it again with valid \
             arguments",
            tool.name
        )
    })
}

/// What the session waits for while these calls are open, each given as
/// (waits for approval, target): an approval first, then the user, then a
/// gateway.
fn waiting_status(open: impl Iterator<Item = (bool, Target)> + Clone) -> Status {
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
enum Waited {
    Answered,
    Cancelled,
}

/// How often a waiting run re-reads its calls without being woken (an
/// answer taken by another node, a gateway that went away).
const CALL_POLL: std::time::Duration = std::time::Duration::from_secs(2);

/// Waits until every open call of the step has ended — answered, denied,
/// timed out — logging each `tool.result` as it comes and the session's
/// status as it changes, or until the run is cancelled.
async fn wait_for_calls(turn: &Turn) -> Result<Waited, RunError> {
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
                && (row.status == calls::PENDING || row.status == calls::SENT);
            if !expired {
                continue;
            }
            let output = json!(format!(
                "no gateway answered {} within {}",
                row.name,
                humantime::format_duration(timeout)
            ));
            let from = [calls::PENDING, calls::SENT];
            if calls::claim(&inner.db, &row.id, &from, calls::TIMEOUT, &output, true).await? {
                tracing::info!(call_id = row.id, "tool call timed out");
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
        let status = waiting_status(still_open.iter().map(|r| {
            (
                r.status == calls::AWAITING_APPROVAL,
                Target::from_db(&r.target),
            )
        }));
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
        if still_open.iter().any(|r| {
            Target::from_db(&r.target) == Target::Gateway && r.status != calls::AWAITING_APPROVAL
        }) {
            inner.deliver(&turn.owner, None).await;
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
