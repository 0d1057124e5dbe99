//! Sessions: creation, listing, and the ownership rule — a user sees and
//! acts on their own sessions only. Role `admin` may read, subscribe to and
//! stop every session ([`load_for`]), but what acts through the owner's
//! machine — executing, approving or denying tool calls, answering
//! questions — is the owner's alone ([`load_owned`]), admin or not
//! (PROTOCOL §3). Every lookup on behalf of a client goes through one of
//! the two.

pub mod messages;

use chrono::{DateTime, Utc};
use entity::session;
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, EntityTrait, PaginatorTrait, QueryFilter,
    QueryOrder, QuerySelect, Set,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::auth::Identity;
use crate::ids::{Seq, SessionId};
use crate::log::StoreError;
use crate::payload::Invalid;
use crate::quotas::Quotas;
use crate::rate::Limited;

pub const MAX_TITLE_CHARS: usize = 200;
pub const MAX_METADATA_BYTES: usize = 16 * 1024;

/// A session's status, stored and sent as its string.
pub use entity::states::SessionStatus as Status;

/// Why a request about a session was refused or failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum SessionError {
    /// A request that does not pass the checks; the message names the field.
    #[error(transparent)]
    Invalid(#[from] Invalid),
    /// An id that is not a session id; `field` names where it was given.
    #[error("{field}: {text:?} is not a session id (a UUID)")]
    BadId { field: String, text: String },
    #[error("no session {0}")]
    NotFound(SessionId),
    /// Someone else's session, to a caller who is no admin.
    #[error("this session belongs to another user")]
    NotYours,
    /// What only the owner may do, asked by an admin.
    #[error(
        "only the session's owner may run, approve, answer or append in it \
         (an admin may read, subscribe and stop)"
    )]
    OwnerOnly,
    /// Sessions created too fast.
    #[error(transparent)]
    Limited(#[from] Limited),
    #[error(
        "this user owns {owned} sessions, the most allowed \
         (SWITCHBOARD_MAX_SESSIONS_PER_USER = {max})"
    )]
    TooManySessions { owned: u64, max: u64 },
    /// `before` is not a message id.
    #[error("before: {0:?} is not a message id")]
    BadMessageId(String),
    /// `before` names no message of the session.
    #[error("before: no message {0} in this session")]
    NoMessage(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<sea_orm::DbErr> for SessionError {
    fn from(error: sea_orm::DbErr) -> Self {
        SessionError::Store(error.into())
    }
}

/// A session as clients see it.
#[derive(Debug, Clone, Serialize, ts_rs::TS)]
#[ts(rename = "Session")]
pub struct SessionView {
    pub id: String,
    pub owner: String,
    pub title: String,
    pub status: Status,
    pub head_seq: Seq,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub metadata: Value,
}

impl From<session::Model> for SessionView {
    fn from(m: session::Model) -> Self {
        Self {
            metadata: serde_json::from_str(&m.metadata)
                .unwrap_or_else(|_| Value::Object(Map::new())),
            id: m.id.into_string(),
            owner: m.owner,
            title: m.title,
            status: m.status,
            head_seq: m.head_seq,
            created_at: m.created_at,
            updated_at: m.updated_at,
        }
    }
}

/// `session:create` / `POST /v1/sessions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateSession {
    #[serde(default)]
    pub title: Option<String>,
    #[serde(default)]
    pub metadata: Option<Map<String, Value>>,
}

/// `session:list` / `GET /v1/sessions`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListSessions {
    #[serde(default)]
    pub limit: Option<u64>,
    #[serde(default)]
    pub before: Option<String>,
}

#[derive(Debug, Serialize)]
pub struct SessionPage {
    pub sessions: Vec<SessionView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_before: Option<String>,
}

/// Parses a client-supplied session id (`field` names it in the error).
pub fn parse_id(text: &str, field: &str) -> Result<SessionId, SessionError> {
    SessionId::parse(text).ok_or_else(|| SessionError::BadId {
        field: field.to_owned(),
        text: text.to_owned(),
    })
}

/// A checked `session:create` request: the title and metadata to store.
struct NewSession {
    title: String,
    metadata: String,
}

impl NewSession {
    fn check(request: CreateSession) -> Result<Self, SessionError> {
        let title = request.title.unwrap_or_default();
        if title.chars().count() > MAX_TITLE_CHARS {
            return Err(Invalid::TooLarge(format!(
                "title: longer than {MAX_TITLE_CHARS} characters"
            ))
            .into());
        }
        crate::payload::check_text("title", &title)?;
        let metadata = Value::Object(request.metadata.unwrap_or_default());
        crate::payload::check_json("metadata", &metadata)?;
        let metadata = metadata.to_string();
        if metadata.len() > MAX_METADATA_BYTES {
            return Err(Invalid::TooLarge(format!(
                "metadata: larger than {MAX_METADATA_BYTES} bytes"
            ))
            .into());
        }
        Ok(Self { title, metadata })
    }
}

/// Creates a session for `owner`.
pub async fn create(
    db: &impl ConnectionTrait,
    owner: &Identity,
    request: CreateSession,
) -> Result<SessionView, SessionError> {
    insert(db, owner, NewSession::check(request)?).await
}

/// Creates a session for a client, within the owner's quotas: a creation
/// rate (`rate_limited`) and a number of sessions owned (`forbidden`).
pub async fn create_within_quotas(
    db: &impl ConnectionTrait,
    quotas: &Quotas,
    owner: &Identity,
    request: CreateSession,
) -> Result<SessionView, SessionError> {
    let new = NewSession::check(request)?;
    quotas.create_session(&owner.user_id)?;
    if let Some(max) = quotas.max_sessions {
        let owned = session::Entity::find()
            .filter(session::Column::Owner.eq(owner.user_id.as_str()))
            .count(db)
            .await?;
        if owned >= max {
            return Err(SessionError::TooManySessions { owned, max });
        }
    }
    insert(db, owner, new).await
}

async fn insert(
    db: &impl ConnectionTrait,
    owner: &Identity,
    new: NewSession,
) -> Result<SessionView, SessionError> {
    let now = crate::time::now();
    let model = session::ActiveModel {
        id: Set(SessionId::generate()),
        owner: Set(owner.user_id.as_str().to_owned()),
        title: Set(new.title),
        status: Set(Status::Idle),
        head_seq: Set(Seq::ZERO),
        first_seq: Set(Seq::ZERO.next()),
        metadata: Set(new.metadata),
        lease_node: Set(None),
        lease_epoch: Set(0),
        lease_until: Set(None),
        created_at: Set(now),
        updated_at: Set(now),
    }
    .insert(db)
    .await?;
    Ok(model.into())
}

/// The caller's sessions, newest first.
pub async fn list(
    db: &impl ConnectionTrait,
    caller: &Identity,
    request: ListSessions,
) -> Result<SessionPage, SessionError> {
    let limit = crate::payload::limit(request.limit, 50, 200)?;
    let mut query = session::Entity::find()
        .filter(session::Column::Owner.eq(caller.user_id.as_str()))
        .order_by_desc(session::Column::Id)
        .limit(limit);
    if let Some(before) = &request.before {
        let before = parse_id(before, "before")?;
        query = query.filter(session::Column::Id.lt(before.as_str()));
    }
    let sessions: Vec<SessionView> = query.all(db).await?.into_iter().map(Into::into).collect();
    let next_before = (sessions.len() as u64 == limit)
        .then(|| sessions.last().map(|s| s.id.clone()))
        .flatten();
    Ok(SessionPage {
        sessions,
        next_before,
    })
}

/// Parses a client-supplied id (named `field` in errors) and loads the
/// session for `caller` ([`load_for`]).
pub async fn resolve(
    db: &impl ConnectionTrait,
    caller: &Identity,
    raw_id: &str,
    field: &str,
) -> Result<(SessionId, session::Model), SessionError> {
    let id = parse_id(raw_id, field)?;
    let session = load_for(db, caller, &id).await?;
    Ok((id, session))
}

/// Loads a session the caller may act on: `not_found` when no session has
/// this id, `forbidden` when it is someone else's (and the caller is no admin).
pub async fn load_for(
    db: &impl ConnectionTrait,
    caller: &Identity,
    id: &SessionId,
) -> Result<session::Model, SessionError> {
    let session = find(db, id).await?;
    if session.owner != caller.user_id.as_str() && !caller.is_admin() {
        return Err(SessionError::NotYours);
    }
    Ok(session)
}

/// Like [`resolve`], for what only the owner may do ([`load_owned`]).
pub async fn resolve_owned(
    db: &impl ConnectionTrait,
    caller: &Identity,
    raw_id: &str,
    field: &str,
) -> Result<(SessionId, session::Model), SessionError> {
    let id = parse_id(raw_id, field)?;
    let session = load_owned(db, caller, &id).await?;
    Ok((id, session))
}

/// Loads a session for what only its owner may do — execute, approve or
/// deny a tool call, answer a question, append events: `forbidden` for everyone else,
/// admins included, with none of the session's data.
pub async fn load_owned(
    db: &impl ConnectionTrait,
    caller: &Identity,
    id: &SessionId,
) -> Result<session::Model, SessionError> {
    let session = find(db, id).await?;
    check_owner(&session.owner, caller)?;
    Ok(session)
}

/// The owner-only rule, for a session owned by `owner`: `forbidden` for
/// everyone else, admins included.
pub fn check_owner(owner: &str, caller: &Identity) -> Result<(), SessionError> {
    if owner == caller.user_id.as_str() {
        return Ok(());
    }
    Err(if caller.is_admin() {
        SessionError::OwnerOnly
    } else {
        SessionError::NotYours
    })
}

async fn find(db: &impl ConnectionTrait, id: &SessionId) -> Result<session::Model, SessionError> {
    session::Entity::find_by_id(id.clone())
        .one(db)
        .await?
        .ok_or_else(|| SessionError::NotFound(id.clone()))
}
