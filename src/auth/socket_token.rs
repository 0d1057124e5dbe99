//! `POST /v1/auth/socket-token`: a valid session cookie in, a short-lived
//! JWT with `aud` = `socket` out, for clients that cannot send cookies on the
//! WebSocket. Browser-only by construction: it requires an allowed `Origin`
//! and `X-Requested-With: switchboard`, and is rate-limited per client
//! address (see [`crate::http::router`]).

use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::response::IntoResponse;
use http::{HeaderMap, header};
use serde::Serialize;

use super::jwt::{MintError, SOCKET_AUDIENCE};
use super::{Context, Failure, Method, cookie_value};
use crate::error::ApiError;
use crate::state::AppState;

/// Socket tokens live at most this long.
pub const SOCKET_TOKEN_TTL: Duration = Duration::from_secs(5 * 60);

#[derive(Debug, Serialize)]
pub struct SocketToken {
    pub token: String,
    pub expires_at: chrono::DateTime<chrono::Utc>,
}

pub async fn issue(
    State(state): State<AppState>,
    headers: HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    let requested_with = headers
        .get("x-requested-with")
        .and_then(|v| v.to_str().ok());
    if !requested_with.is_some_and(|v| v.eq_ignore_ascii_case("switchboard")) {
        return Err(ApiError::Forbidden(
            "the header X-Requested-With: switchboard is required".into(),
        ));
    }
    let origin = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok());
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    match origin {
        Some(origin) if state.origins.allows(origin, host) => {}
        Some(_) => return Err(ApiError::Forbidden("this Origin is not allowed".into())),
        None => {
            return Err(ApiError::Forbidden(
                "an allowed Origin header is required".into(),
            ));
        }
    }

    let keys = state
        .auth
        .jwt()
        .ok_or(ApiError::Unauthorized(Failure::InvalidToken))?;
    let cookie = cookie_value(&headers, state.auth.cookie_name())
        .ok_or(ApiError::Unauthorized(Failure::MissingCredentials))?;
    let identity = keys
        .verify(&cookie, Context::Http)
        .map(|claims| claims.identity(Method::Cookie))
        .map_err(ApiError::Unauthorized)?;

    let minted = keys
        .mint(
            &identity.user_id,
            identity.role,
            SOCKET_TOKEN_TTL,
            Some(SOCKET_AUDIENCE),
        )
        .map_err(|e| match e {
            MintError::NoSecret => ApiError::Unavailable(
                "socket tokens need SWITCHBOARD_JWT_SECRET to be configured".into(),
            ),
            MintError::Sign(e) => ApiError::Internal(e.into()),
        })?;
    tracing::info!(user = %identity.user_id, "socket token issued");
    Ok((
        [(header::CACHE_CONTROL, "no-store")],
        Json(SocketToken {
            token: minted.token,
            expires_at: minted.expires_at,
        }),
    ))
}
