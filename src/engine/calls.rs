//! Tool calls as rows of `tool_calls` (PROTOCOL §4.5), so that approvals,
//! reconnects, restarts and several nodes agree on each call.
//!
//! ```text
//! pending ──────────────→ sent ──→ resolved | timeout
//!    ↑  (to a gateway)      ↑ (again, after a reconnect)
//! awaiting_approval ──→ denied
//! any open state ─────→ cancelled (stop, interrupt, restart)
//! ```
//!
//! Every move is one conditional `UPDATE … WHERE status IN (…)`: whoever
//! changes the row first wins (the first valid `tool:result`, a timeout, a
//! stop), and the loser learns it from the rows affected. The run that made
//! the call then reads the row and logs its `tool.result`.

use chrono::{DateTime, Utc};
use entity::tool_call;
use sea_orm::sea_query::Expr;
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};
use serde::Deserialize;
use serde_json::{Value, json};

use super::gateways::Target;
use super::provider::ToolCall;
use crate::events::ResultStatus;
use crate::ids::{CallId, RunId, SessionId};

/// A call's row state ([`CallStatus::OPEN`]: those it can still leave).
pub use entity::states::CallStatus;

/// Largest `output` of a `tool:result`, as JSON.
pub const MAX_OUTPUT_BYTES: usize = 1024 * 1024;
/// Longest `reason` of a denial.
pub const MAX_REASON_CHARS: usize = 10_000;

/// `tool:result` on `/gateway`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GatewayResult {
    pub call_id: CallId,
    pub output: Value,
    #[serde(default)]
    pub is_error: bool,
}

/// `tool:result` on `/agent`: a user's answer.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct UserResult {
    pub session_id: String,
    pub call_id: CallId,
    pub output: Value,
    #[serde(default)]
    pub is_error: bool,
}

/// `tool:approval`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Approval {
    pub session_id: String,
    pub call_id: CallId,
    pub decision: Decision,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    Approve,
    Deny,
}

/// How a call ended, as its `tool.result` says.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    pub status: ResultStatus,
    pub output: Value,
}

impl Outcome {
    pub fn error(message: impl Into<String>) -> Self {
        Self {
            status: ResultStatus::Error,
            output: Value::String(message.into()),
        }
    }

    pub fn cancelled(message: impl Into<String>) -> Self {
        Self {
            status: ResultStatus::Cancelled,
            output: Value::String(message.into()),
        }
    }
}

/// The outcome of a row that has left the open states.
pub fn outcome(row: &tool_call::Model) -> Option<Outcome> {
    let status = match row.status {
        CallStatus::Resolved if row.is_error => ResultStatus::Error,
        CallStatus::Resolved => ResultStatus::Success,
        CallStatus::Denied => ResultStatus::Denied,
        CallStatus::Timeout => ResultStatus::Timeout,
        CallStatus::Cancelled => ResultStatus::Cancelled,
        CallStatus::AwaitingApproval | CallStatus::Pending | CallStatus::Sent => return None,
    };
    let output = row
        .output
        .as_deref()
        .and_then(|text| serde_json::from_str(text).ok())
        .unwrap_or(Value::Null);
    Some(Outcome { status, output })
}

/// What a new row needs besides the call.
pub struct NewCall<'a> {
    pub session: &'a SessionId,
    pub run_id: &'a RunId,
    pub owner: &'a str,
    pub target: Target,
    pub requires_approval: bool,
    pub status: CallStatus,
    pub deadline: Option<DateTime<Utc>>,
    /// Set for a call answered at once (its arguments were refused).
    pub outcome: Option<&'a Outcome>,
}

/// The row of call `id`, made by the model as `call`.
pub fn row(
    id: &CallId,
    call: &ToolCall,
    arguments: &Value,
    new: NewCall<'_>,
) -> tool_call::ActiveModel {
    let now = crate::time::now();
    tool_call::ActiveModel {
        id: Set(id.clone()),
        session_id: Set(new.session.clone()),
        run_id: Set(new.run_id.clone()),
        owner: Set(new.owner.to_owned()),
        name: Set(call.name.clone()),
        arguments: Set(arguments.to_string()),
        target: Set(new.target),
        status: Set(new.status),
        requires_approval: Set(new.requires_approval),
        gateway_id: Set(None),
        output: Set(new.outcome.map(|o| o.output.to_string())),
        is_error: Set(new.outcome.is_some_and(|o| o.status == ResultStatus::Error)),
        deadline_at: Set(new.deadline),
        created_at: Set(now),
        updated_at: Set(now),
    }
}

/// Makes every call's id unique across sessions, so that a `tool:result`
/// names one call: an id the model left empty, repeated, or used before
/// (some servers number calls from `call_0` in every answer) is replaced by
/// a new one. The conversation sent upstream carries the ids as stored.
/// Returns each call's id, in order.
pub async fn make_ids_unique(
    db: &impl ConnectionTrait,
    calls: &mut [ToolCall],
) -> Result<Vec<CallId>, DbErr> {
    if calls.is_empty() {
        return Ok(Vec::new());
    }
    let taken: Vec<String> = tool_call::Entity::find()
        .select_only()
        .column(tool_call::Column::Id)
        .filter(tool_call::Column::Id.is_in(calls.iter().map(|c| c.id.as_str())))
        .into_tuple()
        .all(db)
        .await?;
    let mut seen = std::collections::HashSet::new();
    let mut ids = Vec::with_capacity(calls.len());
    for call in calls {
        if call.id.is_empty()
            || call.id.len() > 200
            || taken.contains(&call.id)
            || !seen.insert(call.id.clone())
        {
            call.id = CallId::generate().into_string();
            seen.insert(call.id.clone());
        }
        ids.push(CallId::from_model(call.id.clone()));
    }
    Ok(ids)
}

/// Moves call `id` from one of `from` to `to` with `output`; `false` when
/// it was in none of them (someone else moved it first).
pub async fn claim(
    db: &impl ConnectionTrait,
    id: &CallId,
    from: &[CallStatus],
    to: CallStatus,
    output: &Value,
    is_error: bool,
) -> Result<bool, DbErr> {
    let result = tool_call::Entity::update_many()
        .col_expr(tool_call::Column::Status, Expr::value(to))
        .col_expr(tool_call::Column::Output, Expr::value(output.to_string()))
        .col_expr(tool_call::Column::IsError, Expr::value(is_error))
        .col_expr(
            tool_call::Column::UpdatedAt,
            Expr::value(crate::time::now()),
        )
        .filter(tool_call::Column::Id.eq(id.as_str()))
        .filter(tool_call::Column::Status.is_in(from.iter().copied()))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Approves a call waiting for it: it now waits for a gateway, until
/// `deadline`.
pub async fn approve(
    db: &impl ConnectionTrait,
    id: &CallId,
    deadline: DateTime<Utc>,
) -> Result<bool, DbErr> {
    let result = tool_call::Entity::update_many()
        .col_expr(tool_call::Column::Status, Expr::value(CallStatus::Pending))
        .col_expr(tool_call::Column::DeadlineAt, Expr::value(deadline))
        .col_expr(
            tool_call::Column::UpdatedAt,
            Expr::value(crate::time::now()),
        )
        .filter(tool_call::Column::Id.eq(id.as_str()))
        .filter(tool_call::Column::Status.eq(CallStatus::AwaitingApproval))
        .exec(db)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Records that call `row` was emitted to `gateway_id`; `false` when the
/// row changed since it was read (another delivery, or an answer, won).
pub async fn mark_sent(
    db: &impl ConnectionTrait,
    row: &tool_call::Model,
    gateway_id: &str,
) -> Result<bool, DbErr> {
    let mut update = tool_call::Entity::update_many()
        .col_expr(tool_call::Column::Status, Expr::value(CallStatus::Sent))
        .col_expr(tool_call::Column::GatewayId, Expr::value(gateway_id))
        .col_expr(
            tool_call::Column::UpdatedAt,
            Expr::value(crate::time::now()),
        )
        .filter(tool_call::Column::Id.eq(row.id.as_str()))
        .filter(tool_call::Column::Status.eq(row.status));
    update = match &row.gateway_id {
        Some(previous) => update.filter(tool_call::Column::GatewayId.eq(previous.as_str())),
        None => update.filter(tool_call::Column::GatewayId.is_null()),
    };
    Ok(update.exec(db).await?.rows_affected == 1)
}

pub async fn find(
    db: &impl ConnectionTrait,
    id: &CallId,
) -> Result<Option<tool_call::Model>, DbErr> {
    tool_call::Entity::find_by_id(id.clone()).one(db).await
}

/// The rows of these calls, oldest first.
pub async fn load(
    db: &impl ConnectionTrait,
    ids: &[CallId],
) -> Result<Vec<tool_call::Model>, DbErr> {
    tool_call::Entity::find()
        .filter(tool_call::Column::Id.is_in(ids.iter().map(CallId::as_str)))
        .order_by_asc(tool_call::Column::CreatedAt)
        .all(db)
        .await
}

/// The calls of `owner` that wait for a gateway or were sent to one.
pub async fn for_gateways(
    db: &impl ConnectionTrait,
    owner: &str,
) -> Result<Vec<tool_call::Model>, DbErr> {
    tool_call::Entity::find()
        .filter(tool_call::Column::Owner.eq(owner))
        .filter(tool_call::Column::Target.eq(Target::Gateway))
        .filter(tool_call::Column::Status.is_in([CallStatus::Pending, CallStatus::Sent]))
        .order_by_asc(tool_call::Column::CreatedAt)
        .all(db)
        .await
}

/// Cancels whichever of these calls are still open and returns how each
/// one ended: a call answered just before keeps its answer.
pub async fn cancel_open(
    db: &impl ConnectionTrait,
    ids: &[CallId],
    message: &str,
) -> Result<Vec<(CallId, Outcome)>, DbErr> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    tool_call::Entity::update_many()
        .col_expr(
            tool_call::Column::Status,
            Expr::value(CallStatus::Cancelled),
        )
        .col_expr(
            tool_call::Column::Output,
            Expr::value(json!(message).to_string()),
        )
        .col_expr(
            tool_call::Column::UpdatedAt,
            Expr::value(crate::time::now()),
        )
        .filter(tool_call::Column::Id.is_in(ids.iter().map(CallId::as_str)))
        .filter(tool_call::Column::Status.is_in(CallStatus::OPEN))
        .exec(db)
        .await?;
    let rows = load(db, ids).await?;
    Ok(ids
        .iter()
        .map(|id| {
            let ended = rows.iter().find(|r| &r.id == id).and_then(outcome);
            (
                id.clone(),
                ended.unwrap_or_else(|| Outcome::cancelled(message)),
            )
        })
        .collect())
}
