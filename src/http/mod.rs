//! The HTTP side: routes, and the layers around them and around Socket.IO.

pub mod client;
pub mod connection;
pub mod console;
pub mod events;
pub mod extract;
pub mod handshake;
pub mod health;
pub mod hosts;
pub mod listener;
pub mod origin;
pub mod sessions;

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::response::IntoResponse;
use axum::routing::{get, post};
use http::StatusCode;
use tower_governor::GovernorLayer;
use tower_governor::governor::GovernorConfigBuilder;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::trace::TraceLayer;

use crate::auth::http::Caller;
use crate::auth::socket_token;
use crate::error::{ApiError, ErrorCode, error_response};
use crate::state::AppState;
use client::{ClientAddr, ClientKeyExtractor};
use handshake::HandshakeLimiter;

/// Every route, with Socket.IO (`socketio`) mounted under `/socket.io/`.
///
/// Around them, from the outside in: the client's address
/// ([`client::resolve_client`]), tracing, the `Host` allow-list, the
/// `Origin` check and CORS, the refusal while shutting down, the handshake
/// limiter, Socket.IO, and the body limits.
pub fn router(
    state: AppState,
    socketio: socketioxide::layer::SocketIoLayer<crate::cluster::adapter::NodeAdapter>,
) -> Router {
    let rate = state.config.socket_token_rate_per_minute.max(1);
    let governor = GovernorConfigBuilder::default()
        .key_extractor(ClientKeyExtractor)
        .period(Duration::from_secs(60) / rate)
        .burst_size(rate)
        .finish()
        .map(|config| {
            GovernorLayer::new(config).error_handler(|error| {
                let wait = match error {
                    tower_governor::GovernorError::TooManyRequests { wait_time, .. } => {
                        Duration::from_secs(wait_time)
                    }
                    _ => Duration::from_secs(1),
                };
                ApiError::rate_limited(
                    "too many socket-token requests from this address; retry later",
                    wait,
                )
                .into_response()
            })
        });
    let mut socket_token = Router::new().route("/v1/auth/socket-token", post(socket_token::issue));
    if let Some(governor) = governor {
        socket_token = socket_token.layer(governor);
    }

    Router::new()
        .route("/", get(console::index))
        .route("/assets/{*path}", get(console::asset))
        .route("/favicon.svg", get(console::favicon))
        .route("/healthz", get(health::healthz))
        .route("/readyz", get(health::readyz))
        .route("/metrics", get(crate::metrics::render))
        .route("/v1/whoami", get(whoami))
        .route("/v1/sessions", post(sessions::create).get(sessions::list))
        .route("/v1/sessions/{id}", get(sessions::get))
        .route("/v1/sessions/{id}/messages", get(sessions::list_messages))
        .route(
            "/v1/sessions/{id}/events",
            get(events::read).post(events::append),
        )
        .route("/v1/sessions/{id}/stream", get(events::stream))
        .merge(socket_token)
        .fallback(not_found)
        .layer(DefaultBodyLimit::max(state.config.max_body_bytes))
        .layer(RequestBodyLimitLayer::new(state.config.max_body_bytes))
        .layer(axum::middleware::map_response_with_state(
            state.clone(),
            json_payload_too_large,
        ))
        .layer(socketio)
        .layer(axum::middleware::from_fn(handshake::own_handshake_head))
        .layer(axum::middleware::from_fn_with_state(
            Arc::new(HandshakeLimiter::new(&state.config.limits)),
            handshake::limit_handshakes,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            refuse_while_stopping,
        ))
        .layer(origin::cors(&state.origins))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            origin::refuse_foreign_origins,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            hosts::refuse_unknown_hosts,
        ))
        .layer(
            TraceLayer::new_for_http().make_span_with(|request: &axum::extract::Request| {
                tracing::debug_span!(
                    "request",
                    method = %request.method(),
                    uri = %request.uri(),
                    client = %ClientAddr::of(request).0,
                )
            }),
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            client::resolve_client,
        ))
        .with_state(state)
}

/// `GET /v1/whoami`: the caller's identity, as the server authenticated it.
async fn whoami(Caller(identity): Caller) -> axum::Json<serde_json::Value> {
    axum::Json(serde_json::json!({
        "user_id": identity.user_id,
        "role": identity.role,
        "method": identity.method,
    }))
}

/// Once shutdown began, requests that still arrive on kept-alive
/// connections (a long-poll after its transport was closed, say) are
/// answered at once, so that they do not hold the shutdown up.
async fn refuse_while_stopping(
    axum::extract::State(state): axum::extract::State<AppState>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if state.shutdown.is_cancelled() {
        let mut response = error_response(
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::Unavailable,
            "the server is shutting down",
        );
        response.headers_mut().insert(
            http::header::CONNECTION,
            http::HeaderValue::from_static("close"),
        );
        return response;
    }
    next.run(request).await
}

/// The body limit's own 413 (a `Content-Length` over the limit) as this
/// API's JSON error, like every other refusal.
async fn json_payload_too_large(
    axum::extract::State(state): axum::extract::State<AppState>,
    response: axum::response::Response,
) -> axum::response::Response {
    let is_json = response
        .headers()
        .get(http::header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json"));
    if response.status() != StatusCode::PAYLOAD_TOO_LARGE || is_json {
        return response;
    }
    error_response(
        StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::TooLarge,
        format!(
            "the request body is larger than {} bytes (SWITCHBOARD_MAX_BODY_BYTES)",
            state.config.max_body_bytes
        ),
    )
}

async fn not_found() -> axum::response::Response {
    error_response(StatusCode::NOT_FOUND, ErrorCode::NotFound, "no such route")
}
