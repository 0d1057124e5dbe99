//! One run: start it, stream the provider's answer into events, run the
//! tools it calls, call it again, and end — always through
//! [`finish::finish`].
//!
//! The steps ([`step`]) run in a task of their own so that a panic in them
//! is caught like any other failure; what they achieved so far lives in
//! [`Progress`], which the exit path reads to keep partial text and cancel
//! open calls. Each step plans the tool calls the model made ([`plan`]) and
//! waits for them ([`wait`]).

mod finish;
mod plan;
mod step;
mod wait;

use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::provider::{ProviderError, Usage};
use super::record::{Batch, Reason};
use super::{Entry, Inner};
use crate::auth::UserId;
use crate::events::{self, Heartbeat};
use crate::ids::{CallId, MessageId, RunId, SessionId};
use crate::log::{Fence, LogError, StoreError};
use crate::sessions::Status;
use entity::states::{MessageStatus, Role};
pub(super) use finish::{finish_stored, finish_unstarted};

/// Why the steps of a run stopped early.
#[derive(Debug, thiserror::Error)]
pub(super) enum RunError {
    #[error(transparent)]
    Provider(#[from] ProviderError),
    #[error("the model was still calling tools after {0} steps")]
    MaxSteps(u32),
    #[error("storing the run failed")]
    Log(#[from] LogError),
    #[error("storing the run failed")]
    Store(#[from] StoreError),
    #[error("the run failed unexpectedly")]
    Panicked,
}

impl From<sea_orm::DbErr> for RunError {
    fn from(error: sea_orm::DbErr) -> Self {
        RunError::Store(error.into())
    }
}

impl RunError {
    /// The `error` event: provider failures are the user's to see (it is
    /// their provider); internal ones say nothing about internals.
    fn event(&self) -> events::Error {
        let (code, message) = match self {
            RunError::Provider(e) => ("provider_error", e.to_string()),
            RunError::MaxSteps(_) => ("max_steps", self.to_string()),
            RunError::Log(_) | RunError::Store(_) | RunError::Panicked => (
                "internal",
                "the run failed because of an internal error; the session is usable".to_owned(),
            ),
        };
        events::Error {
            code: code.to_owned(),
            message,
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
    open_calls: Vec<CallId>,
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
    /// With several nodes: the session's lease, which every write holds.
    fence: Option<Fence>,
}

impl Turn {
    fn progress(&self) -> std::sync::MutexGuard<'_, Progress> {
        self.progress.lock().expect("progress")
    }

    fn batch(&self) -> Batch {
        Batch::new(&self.session, &self.run_id).fenced(self.fence.clone())
    }

    fn add_text(&self, delta: &str) {
        if let Some((_, text)) = &mut self.progress().message {
            text.push_str(delta);
        }
    }

    async fn commit(&self, batch: Batch) -> Result<(), LogError> {
        batch.commit(&self.inner.log).await?;
        self.progress().last_sent = Instant::now();
        Ok(())
    }
}

/// Logs the user message and `run.started`; the session becomes `running`.
/// With several nodes, `fence` takes or holds the session's lease.
pub(super) async fn start(
    inner: &Inner,
    session: &SessionId,
    entry: &Entry,
    fence: Option<Fence>,
) -> Result<(), LogError> {
    let node = fence.as_ref().map(|f| f.lease().node.to_string());
    let mut batch = Batch::new(session, &entry.run_id).fenced(fence);
    let user = batch.event(events::MessageUser {
        message_id: entry.message_id.clone(),
        content: entry.content.to_string(),
        client_msg_id: entry.client_msg_id.clone(),
    });
    let mut row = batch.message_row(
        &entry.message_id,
        Role::User,
        entry.content.to_string(),
        MessageStatus::Complete,
    );
    row.client_msg_id = sea_orm::Set(entry.client_msg_id.clone());
    batch.message(user, row);
    batch.event(events::RunStarted {
        run_id: entry.run_id.clone(),
        message_id: entry.message_id.clone(),
    });
    batch.start_run(&entry.message_id, node.as_deref());
    batch.status(Status::Running);
    batch.commit(&inner.log).await?;
    metrics::counter!(crate::metrics::RUNS_STARTED).increment(1);
    Ok(())
}

/// Runs a started run to its end, sending heartbeats while it is silent.
#[tracing::instrument(skip_all, fields(session_id = %session, run_id = %entry.run_id))]
pub(super) async fn run(
    inner: Arc<Inner>,
    session: &SessionId,
    entry: &Entry,
    fence: Option<Fence>,
) {
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
        fence,
    };
    let mut steps = inner.tasks.spawn(step::steps(turn.clone()));
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
                let beat = Heartbeat {
                    session_id: session.clone(),
                    run_id: entry.run_id.clone(),
                    status,
                    elapsed_ms: began.elapsed().as_millis() as u64,
                };
                let beat = serde_json::to_value(beat).expect("a heartbeat serializes");
                inner.heartbeat(session, beat).await;
                turn.progress().last_sent = Instant::now();
            }
        }
    };
    let reason = match &outcome {
        Ok(End::Completed) => Reason::Completed,
        Ok(End::Cancelled) => entry.control.reason().unwrap_or(Reason::Stopped),
        Err(_) => Reason::Error,
    };
    finish::finish(&turn, reason, outcome.err()).await;
}
