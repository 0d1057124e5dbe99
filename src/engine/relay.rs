//! The tool relay (PROTOCOL §4.5): gateways register and go, calls are
//! delivered to them (again after a reconnect: at least once), and results,
//! approvals and the user's answers move a call's row and wake its run.
//!
//! Only the owner acts on a call: a gateway answers the calls of its own
//! user; approvals, denials and answers on `/agent` need the session's
//! owner ([`crate::sessions::load_owned`]: not an admin, who could
//! otherwise run commands on the owner's machine). Every refusal —
//! forbidden, not found, malformed, too large, too deep — changes nothing.

use std::sync::Arc;
use std::time::Duration;

use crate::cluster::adapter::SocketRef;
use entity::tool_call;
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::calls::{self, Approval, CallStatus, Decision};
use super::gateways::{Gateway, Target};
use super::{Engine, EngineError, Inner};
use crate::auth::{Identity, UserId};
use crate::ids::{CallId, RunId};
use crate::payload::{Invalid, check_json, check_text};

/// How long a gateway has to acknowledge a `tool:call` before it is logged
/// as unacknowledged (the call stays `sent`; the tool timeout still runs).
const CALL_ACK_WAIT: Duration = Duration::from_secs(10);

/// Who sends a `tool:result`.
pub enum Answerer<'a> {
    /// A gateway on `/gateway`.
    Gateway,
    /// A UI on `/agent`, naming the session.
    User { session_id: &'a str },
}

impl Engine {
    /// `gateway:register` (the payload as JSON text): checks and records
    /// the socket's tools, within `max_gateways` registrations of the
    /// caller; returns the gateway (for [`Engine::deliver_to`]).
    pub async fn register_gateway(
        &self,
        caller: &Identity,
        socket: &SocketRef,
        request: Box<RawValue>,
        max_gateways: usize,
    ) -> Result<Gateway, EngineError> {
        let gateway = self
            .inner
            .registry
            .register(&caller.user_id, socket, request, max_gateways)
            .await?;
        self.inner.share_gateway(&caller.user_id, &gateway).await;
        tracing::info!(
            user_id = %caller.user_id, gateway_id = gateway.gateway_id,
            tools = gateway.tool_count(), "gateway registered"
        );
        Ok(gateway)
    }

    /// Sends a gateway that just registered every call of its user it can
    /// answer that is waiting for a gateway, was sent to one that is gone, or
    /// was sent to this `gateway_id` before.
    pub async fn deliver_to(&self, caller: &Identity, gateway: &Gateway) {
        self.inner.deliver(&caller.user_id, Some(gateway)).await;
    }

    /// A `/gateway` socket went away: its tools go with it, and the calls
    /// sent to it go to another gateway of the user, if one has the tool.
    pub async fn gateway_disconnected(&self, caller: &Identity, socket: &SocketRef) {
        if self.inner.registry.unregister(&caller.user_id, socket.id) {
            tracing::info!(user_id = %caller.user_id, "gateway gone");
            self.inner.unshare_gateway(&caller.user_id, socket).await;
            self.inner.deliver_everywhere(&caller.user_id).await;
        }
    }

    /// `tool:result`, from a gateway or (for questions) from the session's
    /// owner. The first valid result wins; a refusal changes nothing.
    pub async fn tool_result(
        &self,
        caller: &Identity,
        from: Answerer<'_>,
        call_id: &CallId,
        output: &Value,
        is_error: bool,
    ) -> Result<(), EngineError> {
        check_text("call_id", call_id.as_str())?;
        if output.is_null() {
            return Err(Invalid::Malformed(
                "output: must not be null (send a string or any JSON value)".into(),
            )
            .into());
        }
        check_json("output", output)?;
        let size = output.to_string().len();
        if size > calls::MAX_OUTPUT_BYTES {
            return Err(Invalid::TooLarge(format!(
                "output: {size} bytes is more than the {} allowed",
                calls::MAX_OUTPUT_BYTES
            ))
            .into());
        }
        let row = self.inner.call_for(caller, call_id, &from).await?;
        let target = row.target;
        let expected = match from {
            Answerer::Gateway => Target::Gateway,
            Answerer::User { .. } => Target::User,
        };
        if target != expected {
            return Err(match target {
                Target::User => EngineError::QuestionToUser(call_id.clone()),
                _ => EngineError::CallForGateway(call_id.clone()),
            });
        }
        let from_states: &[CallStatus] = match target {
            Target::Gateway => &[CallStatus::Pending, CallStatus::Sent],
            _ => &[CallStatus::Pending],
        };
        if !from_states.contains(&row.status)
            || !calls::claim(
                &self.inner.db,
                call_id,
                from_states,
                CallStatus::Resolved,
                output,
                is_error,
            )
            .await?
        {
            return Err(self.inner.conflict(call_id).await);
        }
        tracing::info!(%call_id, run_id = %row.run_id, is_error, "tool call answered");
        self.inner.wake_anywhere(&row.run_id).await;
        Ok(())
    }

    /// `tool:approval`: runs or denies a call that waits for approval.
    pub async fn tool_approval(
        &self,
        caller: &Identity,
        request: Approval,
    ) -> Result<(), EngineError> {
        check_text("call_id", request.call_id.as_str())?;
        if let Some(reason) = &request.reason {
            if reason.chars().count() > calls::MAX_REASON_CHARS {
                return Err(Invalid::TooLarge(format!(
                    "reason: longer than {} characters",
                    calls::MAX_REASON_CHARS
                ))
                .into());
            }
            check_text("reason", reason)?;
        }
        let session_id = request.session_id.as_str();
        let (session, _) =
            crate::sessions::resolve_owned(&self.inner.db, caller, session_id, "session_id")
                .await?;
        let row = calls::find(&self.inner.db, &request.call_id)
            .await?
            .filter(|row| row.session_id == session)
            .ok_or_else(|| EngineError::NoCall {
                call_id: request.call_id.clone(),
                session: Some(session.to_string()),
            })?;
        if row.status != CallStatus::AwaitingApproval {
            return Err(self.inner.conflict(&row.id).await);
        }
        let moved = match request.decision {
            Decision::Approve => {
                let deadline = self.inner.settings.tool_deadline();
                calls::approve(&self.inner.db, &row.id, deadline).await?
            }
            Decision::Deny => {
                let reason = request
                    .reason
                    .filter(|r| !r.trim().is_empty())
                    .unwrap_or_else(|| "the user denied this call".to_owned());
                calls::claim(
                    &self.inner.db,
                    &row.id,
                    &[CallStatus::AwaitingApproval],
                    CallStatus::Denied,
                    &json!(reason),
                    true,
                )
                .await?
            }
        };
        if !moved {
            return Err(self.inner.conflict(&row.id).await);
        }
        tracing::info!(call_id = %row.id, decision = ?request.decision, "tool call decided");
        self.inner.wake_anywhere(&row.run_id).await;
        Ok(())
    }
}

impl Inner {
    /// The call a `tool:result` names, if the caller may answer it: on
    /// `/agent`, a call of a session the caller owns (checked first, so
    /// that nobody else learns which calls it has).
    async fn call_for(
        &self,
        caller: &Identity,
        call_id: &CallId,
        from: &Answerer<'_>,
    ) -> Result<tool_call::Model, EngineError> {
        let session = match from {
            Answerer::User { session_id } => Some(
                crate::sessions::resolve_owned(&self.db, caller, session_id, "session_id")
                    .await?
                    .0,
            ),
            Answerer::Gateway => None,
        };
        let row = calls::find(&self.db, call_id)
            .await?
            .filter(|row| session.as_ref().is_none_or(|s| row.session_id == *s));
        let Some(row) = row else {
            return Err(EngineError::NoCall {
                call_id: call_id.clone(),
                session: match from {
                    Answerer::User { session_id } => Some((*session_id).to_owned()),
                    Answerer::Gateway => None,
                },
            });
        };
        if row.owner != caller.user_id.as_str() {
            return Err(EngineError::NotYourCall(call_id.clone()));
        }
        Ok(row)
    }

    /// `conflict` for a call that can no longer take what was asked,
    /// saying where it is.
    async fn conflict(&self, call_id: &CallId) -> EngineError {
        let why = match calls::find(&self.db, call_id).await {
            Ok(Some(row)) => match row.status {
                CallStatus::AwaitingApproval => "it waits for approval (tool:approval)".to_owned(),
                CallStatus::Pending | CallStatus::Sent => {
                    "it is not waiting for approval".to_owned()
                }
                ended => format!("it is already {ended}"),
            },
            _ => "it is already changed".to_owned(),
        };
        EngineError::CallMoved {
            call_id: call_id.clone(),
            why,
        }
    }

    /// The notification a run waiting for its calls listens to.
    pub(super) fn waker(&self, run_id: &str) -> Arc<Notify> {
        self.wakers
            .lock()
            .expect("wakers")
            .entry(run_id.to_owned())
            .or_default()
            .clone()
    }

    pub(super) fn forget_waker(&self, run_id: &str) {
        self.wakers.lock().expect("wakers").remove(run_id);
    }

    /// Tells the run that a call of its changed (it re-reads the rows).
    pub(super) fn wake(&self, run_id: &str) {
        if let Some(waker) = self.wakers.lock().expect("wakers").get(run_id) {
            waker.notify_one();
        }
    }

    /// [`Inner::wake`], and with several nodes the run's node if it is
    /// another one.
    async fn wake_anywhere(&self, run_id: &RunId) {
        let here = self
            .wakers
            .lock()
            .expect("wakers")
            .contains_key(run_id.as_str());
        if here {
            self.wake(run_id.as_str());
        } else {
            self.wake_elsewhere(run_id).await;
        }
    }

    /// Emits to a connected gateway every call of `user` that needs one:
    /// waiting for a gateway, or sent to a gateway that is gone — or, when
    /// `registering` is given, sent to that `gateway_id` before (it may
    /// have lost the call with its connection).
    pub(super) async fn deliver(&self, user: &UserId, registering: Option<&Gateway>) {
        let rows = match calls::for_gateways(&self.db, user.as_str()).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(%error, "cannot read the calls waiting for a gateway");
                return;
            }
        };
        if rows.is_empty() {
            return;
        }
        let gateways = self.registry.gateways(user);
        let elsewhere = self.gateways_elsewhere(user).await;
        for row in rows {
            let to_same = registering.filter(|g| {
                row.status == CallStatus::Sent
                    && row.gateway_id.as_deref() == Some(g.gateway_id.as_str())
                    && g.has(&row.name)
            });
            let chosen = match to_same {
                Some(gateway) => Some(gateway),
                None if row.status == CallStatus::Sent
                    && (gateways
                        .iter()
                        .any(|g| row.gateway_id.as_deref() == Some(g.gateway_id.as_str()))
                        || row
                            .gateway_id
                            .as_ref()
                            .is_some_and(|id| elsewhere.contains(id))) =>
                {
                    // Its gateway is still connected (here or on another
                    // live node): it has the call.
                    None
                }
                None => registering
                    .filter(|g| g.has(&row.name))
                    .or_else(|| gateways.iter().find(|g| g.has(&row.name))),
            };
            let Some(gateway) = chosen else {
                continue;
            };
            match calls::mark_sent(&self.db, &row, &gateway.gateway_id).await {
                Ok(true) => self.emit_call(gateway, &row),
                Ok(false) => {}
                Err(error) => tracing::warn!(%error, call_id = %row.id, "cannot mark a call sent"),
            }
        }
    }

    /// `tool:call` to `gateway`, acknowledged in the background.
    fn emit_call(&self, gateway: &Gateway, row: &tool_call::Model) {
        let arguments: Value = serde_json::from_str(&row.arguments).unwrap_or(Value::Null);
        let payload = json!({
            "call_id": row.id,
            "session_id": row.session_id,
            "run_id": row.run_id,
            "name": row.name,
            "arguments": arguments,
        });
        let call_id = row.id.clone();
        let gateway_id = gateway.gateway_id.clone();
        // Gone since it was chosen: its disconnect hands the call on.
        let Some(socket) = self.registry.socket(gateway) else {
            tracing::info!(
                %call_id,
                gateway_id,
                "cannot send a tool call: the gateway is gone"
            );
            return;
        };
        match socket
            .timeout(CALL_ACK_WAIT)
            .emit_with_ack::<_, Value>("tool:call", &payload)
        {
            Ok(ack) => {
                tracing::info!(%call_id, gateway_id, "tool call sent");
                let shutdown = self.shutdown.clone();
                self.tasks.spawn(async move {
                    if let Some(Err(error)) = shutdown.run_until_cancelled_owned(ack).await {
                        tracing::warn!(%error, %call_id, gateway_id, "tool call not acknowledged");
                    }
                });
            }
            // The socket is closing: its disconnect hands the call on.
            Err(error) => tracing::info!(%error, %call_id, gateway_id, "cannot send a tool call"),
        }
    }
}
