//! Why the engine refused or failed a request: runs (`agent:execute`,
//! `agent:stop`) and the tool relay (registrations, results, approvals).
//! The edges map each variant to its wire code ([`crate::error`]).

use crate::ids::{CallId, SessionId};
use crate::log::{LogError, StoreError};
use crate::payload::Invalid;
use crate::rate::Limited;
use crate::sessions::SessionError;

use super::compile::PER_USER;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A request that does not pass the checks; the message names the field.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// Too many requests of this kind (`agent:execute` per user).
    #[error(transparent)]
    Limited(#[from] Limited),
    #[error(transparent)]
    Session(#[from] SessionError),
    #[error(transparent)]
    Log(#[from] LogError),
    #[error(transparent)]
    Store(#[from] StoreError),
    /// New runs are refused once the server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// A run is active and `on_busy` is `reject`.
    #[error(
        "a run is active in session {0}: stop it, or send with on_busy `interrupt` or `enqueue`"
    )]
    RunActive(SessionId),
    /// The session's queue of runs is at its bound.
    #[error(
        "session {session} has {queued} runs queued behind the active one, the most allowed \
         ({max}): wait for them, stop them, or send with on_busy `interrupt`"
    )]
    SessionQueueFull {
        session: SessionId,
        queued: usize,
        max: usize,
    },
    /// The user's runs queued across sessions are at their bound.
    #[error(
        "you have {held} runs queued across your sessions, the most allowed ({max}): wait for \
         them, stop some, or send with on_busy `interrupt`"
    )]
    UserQueueFull { held: usize, max: usize },
    /// No such tool call (in the session named, when one was).
    #[error("no call {call_id}{}", in_session(.session))]
    NoCall {
        call_id: CallId,
        session: Option<String>,
    },
    /// A tool call of another user's session.
    #[error("call {0} belongs to another user's session")]
    NotYourCall(CallId),
    /// A gateway answering a question meant for the user.
    #[error("call {0} is a question to the user: answer it with tool:result on /agent")]
    QuestionToUser(CallId),
    /// A user answering a call meant for a gateway.
    #[error("call {0} is for a gateway: answer it on /gateway")]
    CallForGateway(CallId),
    /// A tool call no longer in the state the request needs.
    #[error("call {call_id} cannot take this: {why}")]
    CallMoved { call_id: CallId, why: String },
    /// A registration past the user's bound on gateways.
    #[error(
        "gateway_id: {0} gateways of yours are registered, the most one user may have at once: \
         disconnect one of them, or register again with the gateway_id of one of them to \
         replace it"
    )]
    TooManyGateways(usize),
    /// The gateway's socket closed while its registration was checked.
    #[error("the socket closed while its registration was checked")]
    SocketClosed,
    /// The user has as many registrations being checked as allowed.
    #[error(
        "{PER_USER} registrations of yours are already being checked: wait for their answers, \
         then register again"
    )]
    RegistrationsInFlight,
    /// The queue of registrations waiting to be checked is full.
    #[error(
        "too many gateway registrations are waiting to be checked: register again in a few \
         seconds"
    )]
    RegistrationsWaiting,
    /// A schema job on a blocking thread panicked or was cancelled.
    #[error("a schema job failed")]
    SchemaJob(#[source] tokio::task::JoinError),
    /// The schema jobs' slots are closed (never, while the engine lives).
    #[error("no slot for a schema job")]
    SchemaSlots(#[source] tokio::sync::AcquireError),
    /// A checked schema could not be written back as JSON.
    #[error("a schema could not be serialized")]
    Schema(#[source] serde_json::Error),
}

impl From<sea_orm::DbErr> for EngineError {
    fn from(error: sea_orm::DbErr) -> Self {
        EngineError::Store(error.into())
    }
}

fn in_session(session: &Option<String>) -> String {
    session
        .as_ref()
        .map(|session| format!(" in session {session}"))
        .unwrap_or_default()
}
