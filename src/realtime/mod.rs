//! The Socket.IO namespaces: `/agent` for UIs, `/gateway` for desktop
//! gateway relays. Both authenticate in a connect middleware
//! ([`crate::auth::socket`]); handlers read the [`Identity`] from the
//! socket's extensions.

pub mod ack;
pub mod agent;
mod request;
pub mod runs;
pub mod tools;

use serde_json::Value;
use socketioxide::extract::{Event, Extension, TryData};

use crate::cluster::adapter::{AckSender, SocketIo, SocketRef};
use socketioxide::handler::ConnectHandler;

use crate::auth::Identity;
use crate::error::ApiError;
use crate::state::AppState;

pub const AGENT_NS: &str = "/agent";
pub const GATEWAY_NS: &str = "/gateway";

use request::{Admitted, Request, RequestBudget};

/// Registers both namespaces on `io`.
///
/// Event handlers are registered in the connect middleware, which runs
/// before the server answers the namespace CONNECT: socketioxide runs the
/// connect handler itself as a separate task after answering, and a request
/// sent right after `connect` could arrive before a handler registered
/// there exists (and be dropped without an ack).
///
/// With several nodes, resolves once both namespaces' Redis adapters are
/// subscribed (an error names what failed); at once on a single node.
pub async fn register(io: &SocketIo, state: &AppState) -> Result<(), String> {
    let mut adapters = Vec::new();
    for (ns, handlers) in [
        (AGENT_NS, agent_handlers as fn(&SocketRef)),
        (GATEWAY_NS, gateway_handlers),
    ] {
        let state = state.clone();
        let middleware = async move |s: SocketRef, TryData(auth): TryData<Value>| {
            crate::auth::socket::authenticate(&state, &s, &auth.unwrap_or(Value::Null))?;
            s.extensions
                .insert(RequestBudget::new(state.config.limits.request_rate));
            handlers(&s);
            Ok::<(), crate::auth::socket::Unauthorized>(())
        };
        adapters.push(io.ns(ns, connected.with(middleware)));
    }
    for adapter in adapters {
        adapter.await?;
    }
    Ok(())
}

async fn connected(s: SocketRef) {
    tracing::debug!(namespace = s.ns(), socket_id = %s.id, "connected");
}

fn agent_handlers(s: &SocketRef) {
    s.on("auth:whoami", whoami);
    agent::register(s);
    runs::register(s);
    tools::register_agent(s);
    s.on_fallback(unknown_event);
}

fn gateway_handlers(s: &SocketRef) {
    s.on("auth:whoami", whoami);
    tools::register_gateway(s);
    s.on_fallback(unknown_event);
}

/// `auth:whoami {}` → `{ ok, user_id, role, method }`: who this socket is
/// signed in as.
async fn whoami(
    Extension(identity): Extension<Identity>,
    Admitted(admitted): Admitted,
    ack: AckSender,
) {
    let result = admitted.map(|()| {
        serde_json::json!({
            "user_id": identity.user_id,
            "role": identity.role,
            "method": identity.method,
        })
    });
    ack::reply(ack, result);
}

async fn unknown_event(
    s: SocketRef,
    Event(event): Event,
    Admitted(admitted): Admitted,
    ack: AckSender,
) {
    tracing::debug!(namespace = s.ns(), ?event, "unknown event");
    let result = admitted.and_then(|()| {
        let shown: String = event.chars().take(100).collect();
        Err::<(), _>(ApiError::NotFound(format!(
            "unknown event {shown:?} on {}",
            s.ns()
        )))
    });
    ack::reply(ack, result);
}
