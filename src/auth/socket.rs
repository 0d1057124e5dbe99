//! The Socket.IO connect middleware shared by `/agent` and `/gateway`.

use crate::cluster::adapter::SocketRef;
use serde_json::Value;

use super::{Attempt, Context, Failure, Identity};
use crate::http::client::ClientAddr;
use crate::state::AppState;

/// The refusal sent to the client as `connect_error`; the official client
/// shows it as `err.message`.
#[derive(Debug, thiserror::Error)]
#[error("unauthorized: {0}")]
pub struct Unauthorized(pub Failure);

/// Authenticates a namespace handshake: on success the [`Identity`] goes into
/// the socket's extensions and the socket joins its user's room.
pub fn authenticate(
    state: &AppState,
    socket: &SocketRef,
    auth: &Value,
) -> Result<(), Unauthorized> {
    let auth_token = match auth.get("token") {
        None => None,
        Some(Value::String(token)) => Some(Ok(token.as_str())),
        Some(_) => Some(Err(())),
    };
    let attempt =
        state
            .auth
            .authenticate(auth_token, &socket.req_parts().headers, Context::Handshake);
    log_handshake(socket, &attempt);
    let identity = attempt.result.map_err(Unauthorized)?;
    socket.join(identity.room());
    socket.extensions.insert(identity);
    Ok(())
}

fn log_handshake(socket: &SocketRef, attempt: &Attempt) {
    let outcome = if attempt.result.is_ok() {
        "accepted"
    } else {
        "refused"
    };
    metrics::counter!(
        crate::metrics::HANDSHAKES,
        "namespace" => socket.ns().to_owned(),
        "outcome" => outcome,
    )
    .increment(1);
    let transport = format!("{:?}", socket.transport_type()).to_lowercase();
    let client = socket
        .req_parts()
        .extensions
        .get::<ClientAddr>()
        .map(|client| client.0.to_string());
    match &attempt.result {
        Ok(Identity { user_id, role, .. }) => tracing::info!(
            target: "switchboard::handshake",
            namespace = socket.ns(),
            method = attempt.method.as_str(),
            outcome = "accepted",
            user = %user_id,
            role = ?role,
            transport,
            client,
            socket_id = %socket.id,
            "handshake"
        ),
        Err(reason) => {
            // A client can be refused as often as it likes: past a budget,
            // refusals are counted (here and in the metric), not written.
            let Some(suppressed) = crate::telemetry::refused_credentials().admit() else {
                return;
            };
            tracing::warn!(
                target: "switchboard::handshake",
                namespace = socket.ns(),
                method = attempt.method.as_str(),
                outcome = "refused",
                reason = %reason,
                transport,
                client,
                socket_id = %socket.id,
                suppressed,
                "handshake"
            )
        }
    }
}
