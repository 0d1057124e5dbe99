//! The Socket.IO namespaces: `/agent` for UIs, `/gateway` for desktop
//! gateway relays. Both authenticate in a connect middleware
//! ([`crate::auth::socket`]); handlers read the [`Identity`] from the
//! socket's extensions.

pub mod ack;

use serde_json::Value;
use socketioxide::SocketIo;
use socketioxide::extract::{AckSender, Event, Extension, SocketRef, TryData};
use socketioxide::handler::ConnectHandler;

use crate::auth::Identity;
use crate::error::ErrorCode;
use crate::state::AppState;

pub const AGENT_NS: &str = "/agent";
pub const GATEWAY_NS: &str = "/gateway";

/// Registers both namespaces on `io`.
pub fn register(io: &SocketIo, state: &AppState) {
    for ns in [AGENT_NS, GATEWAY_NS] {
        let state = state.clone();
        let authenticate = async move |s: SocketRef, TryData(auth): TryData<Value>| {
            crate::auth::socket::authenticate(&state, &s, &auth.unwrap_or(Value::Null))
        };
        io.ns(ns, on_connect.with(authenticate));
    }
}

async fn on_connect(s: SocketRef) {
    s.on("auth:whoami", whoami);
    s.on_fallback(unknown_event);
}

/// `auth:whoami {}` → `{ ok, user_id, role, method }`: who this socket is
/// signed in as.
async fn whoami(Extension(identity): Extension<Identity>, ack: AckSender) {
    ack::ok(
        ack,
        serde_json::json!({
            "user_id": identity.user_id,
            "role": identity.role,
            "method": identity.method,
        }),
    );
}

async fn unknown_event(s: SocketRef, Event(event): Event, ack: AckSender) {
    tracing::debug!(namespace = s.ns(), event, "unknown event");
    ack::err(
        ack,
        ErrorCode::NotFound,
        format!("unknown event {event:?} on {}", s.ns()),
    );
}
