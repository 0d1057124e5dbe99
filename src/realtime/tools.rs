//! Tool requests (PROTOCOL §4.5): on `/gateway`, `gateway:register` and
//! `tool:result`; on `/agent`, `tool:approval` and `tool:result` (a user's
//! answer to `ask_user_questions`). The engine's relay does the work.

use serde_json::value::RawValue;
use serde_json::{Value, json};
use socketioxide::extract::{Extension, State};

use crate::cluster::adapter::{AckSender, SocketRef};
use socketioxide::socket::DisconnectReason;

use super::{Request, ack};
use crate::auth::Identity;
use crate::engine::Answerer;
use crate::engine::calls::{Approval, GatewayResult, UserResult};
use crate::error::ApiError;
use crate::payload::parse;
use crate::state::AppState;

pub fn register_gateway(s: &SocketRef) {
    s.on("gateway:register", register);
    s.on("tool:result", gateway_result);
    s.on_disconnect(disconnected);
}

pub fn register_agent(s: &SocketRef) {
    s.on("tool:approval", approval);
    s.on("tool:result", user_result);
}

/// `gateway:register`, decoded as JSON text: a registration is checked off
/// the async workers, and its schemas are kept as text.
async fn register(
    s: SocketRef,
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    // A one-tuple: socketioxide hands a bare `RawValue` the whole packet.
    Request(data): Request<(Box<RawValue>,)>,
    ack: AckSender,
) {
    let max_gateways = state.config.limits.max_gateways_per_user;
    let result = match data {
        Ok((request,)) => state
            .engine
            .register_gateway(&me, &s, request, max_gateways)
            .await
            .map_err(ApiError::from),
        Err(error) => Err(error),
    };
    match result {
        Ok(gateway) => {
            ack::ok(ack, json!({ "registered": gateway.tool_count() }));
            state.engine.deliver_to(&me, &gateway).await;
        }
        Err(error) => ack::error(ack, &error),
    }
}

async fn gateway_result(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let result = async {
        let request: GatewayResult = parse(data?)?;
        state
            .engine
            .tool_result(
                &me,
                Answerer::Gateway,
                &request.call_id,
                &request.output,
                request.is_error,
            )
            .await?;
        Ok(())
    };
    ack::reply(ack, result.await.map(|()| json!({})));
}

async fn user_result(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let result = async {
        let request: UserResult = parse(data?)?;
        let from = Answerer::User {
            session_id: &request.session_id,
        };
        state
            .engine
            .tool_result(
                &me,
                from,
                &request.call_id,
                &request.output,
                request.is_error,
            )
            .await?;
        Ok(())
    };
    ack::reply(ack, result.await.map(|()| json!({})));
}

async fn approval(
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    Request(data): Request<Value>,
    ack: AckSender,
) {
    let result = async {
        let request: Approval = parse(data?)?;
        Ok(state.engine.tool_approval(&me, request).await?)
    };
    ack::reply(ack, result.await.map(|()| json!({})));
}

async fn disconnected(
    s: SocketRef,
    State(state): State<AppState>,
    Extension(me): Extension<Identity>,
    reason: DisconnectReason,
) {
    tracing::debug!(socket_id = %s.id, ?reason, "gateway disconnected");
    state.engine.gateway_disconnected(&me, &s).await;
}
