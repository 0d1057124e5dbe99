//! Errors as clients see them.
//!
//! One error type for both faces: HTTP answers `{ "error": { "code",
//! "message" } }` with a fitting status, Socket.IO acknowledgements
//! `{ ok: false, error: { code, message } }` ([`crate::realtime::ack`]).
//! The layers below (the log, the sessions, the engine) have error types of
//! their own; each becomes an [`ApiError`] here, by one conversion that
//! gives every variant its code. An `internal` error says nothing about its
//! cause to the client, an `unavailable` one only that it is worth a retry:
//! their cause is logged here, once ([`ApiError::body`]).

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::Failure;
use crate::engine::EngineError;
use crate::log::{LogError, StoreError};
use crate::payload::Invalid;
use crate::rate::Limited;
use crate::sessions::SessionError;

/// The error codes of PROTOCOL §4.1 (plus `unauthorized` for HTTP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    InvalidPayload,
    NotFound,
    Forbidden,
    Busy,
    Conflict,
    RateLimited,
    TooLarge,
    Unavailable,
    Internal,
    Unauthorized,
}

#[derive(Debug, Serialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    /// With `rate_limited`: how long to wait before retrying.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("unauthorized: {0}")]
    Unauthorized(Failure),
    /// A malformed request (HTTP 400); the message names the field.
    #[error("{0}")]
    InvalidPayload(String),
    /// Well-formed but refused content, such as an unknown event type (HTTP 422).
    #[error("{0}")]
    Unprocessable(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    Busy(String),
    /// Too much too fast (HTTP 429 with `Retry-After`); `retry_after` is
    /// when the request would be accepted.
    #[error("{message}")]
    RateLimited {
        message: String,
        retry_after: Option<std::time::Duration>,
    },
    #[error("{0}")]
    Unavailable(String),
    /// `unavailable` because of a failure worth retrying (the database is
    /// busy or out of reach); `cause` is logged, not sent.
    #[error("{message}")]
    Retry {
        message: String,
        cause: anyhow::Error,
    },
    #[error("internal error")]
    Internal(#[from] anyhow::Error),
}

impl ApiError {
    pub fn code(&self) -> ErrorCode {
        self.parts().1
    }

    fn parts(&self) -> (StatusCode, ErrorCode) {
        match self {
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, ErrorCode::Unauthorized),
            ApiError::InvalidPayload(_) => (StatusCode::BAD_REQUEST, ErrorCode::InvalidPayload),
            ApiError::Unprocessable(_) => {
                (StatusCode::UNPROCESSABLE_ENTITY, ErrorCode::InvalidPayload)
            }
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, ErrorCode::Forbidden),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, ErrorCode::NotFound),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, ErrorCode::Conflict),
            ApiError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, ErrorCode::TooLarge),
            ApiError::Busy(_) => (StatusCode::CONFLICT, ErrorCode::Busy),
            ApiError::RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, ErrorCode::RateLimited),
            ApiError::Unavailable(_) | ApiError::Retry { .. } => {
                (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable)
            }
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }

    /// The body both faces send; logs the cause of an internal error, or
    /// of one worth retrying — the one place it is logged.
    pub fn body(&self) -> ErrorBody {
        match self {
            ApiError::Internal(cause) => {
                tracing::error!(error = %Chain(cause.as_ref()), "internal error");
            }
            ApiError::Retry { cause, .. } => {
                tracing::warn!(error = %Chain(cause.as_ref()), "unavailable, worth a retry");
            }
            _ => {}
        }
        ErrorBody {
            code: self.code(),
            message: self.to_string(),
            retry_after_ms: self.retry_after().map(|d| d.as_millis() as u64),
        }
    }

    fn retry_after(&self) -> Option<std::time::Duration> {
        match self {
            ApiError::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// `rate_limited`, to be retried after `retry_after`.
    pub fn rate_limited(message: impl Into<String>, retry_after: std::time::Duration) -> Self {
        ApiError::RateLimited {
            message: message.into(),
            retry_after: Some(retry_after),
        }
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        StoreError::from(error).into()
    }
}

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        match error {
            StoreError::NoSession(_) => ApiError::NotFound(error.to_string()),
            _ if error.is_transient() => ApiError::Retry {
                message: format!("{error}; retry"),
                cause: error.into(),
            },
            _ => ApiError::Internal(error.into()),
        }
    }
}

impl From<Invalid> for ApiError {
    fn from(error: Invalid) -> Self {
        match error {
            Invalid::Malformed(message) => ApiError::InvalidPayload(message),
            Invalid::TooLarge(message) => ApiError::TooLarge(message),
        }
    }
}

impl From<Limited> for ApiError {
    fn from(error: Limited) -> Self {
        match error {
            Limited::TooFast {
                message,
                retry_after,
            } => ApiError::RateLimited {
                message,
                retry_after: Some(retry_after),
            },
            Limited::OverBurst(message) => ApiError::TooLarge(message),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(error: SessionError) -> Self {
        match error {
            SessionError::Invalid(e) => e.into(),
            SessionError::Limited(e) => e.into(),
            SessionError::Store(e) => e.into(),
            SessionError::BadId { .. } | SessionError::BadMessageId(_) => {
                ApiError::InvalidPayload(error.to_string())
            }
            SessionError::NotFound(_) | SessionError::NoMessage(_) => {
                ApiError::NotFound(error.to_string())
            }
            SessionError::NotYours
            | SessionError::OwnerOnly
            | SessionError::TooManySessions { .. } => ApiError::Forbidden(error.to_string()),
        }
    }
}

impl From<LogError> for ApiError {
    fn from(error: LogError) -> Self {
        match error {
            LogError::NotAllowed(e) => e.into(),
            LogError::Store(e) => e.into(),
            LogError::NoSession(_) => ApiError::NotFound(error.to_string()),
            LogError::AfterHead { .. } => ApiError::Conflict(error.to_string()),
            LogError::ShuttingDown | LogError::Restarting => {
                ApiError::Unavailable(error.to_string())
            }
        }
    }
}

impl From<EngineError> for ApiError {
    fn from(error: EngineError) -> Self {
        match error {
            EngineError::Invalid(e) => e.into(),
            EngineError::Limited(e) => e.into(),
            EngineError::Session(e) => e.into(),
            EngineError::Log(e) => e.into(),
            EngineError::Store(e) => e.into(),
            EngineError::ShuttingDown | EngineError::SocketClosed => {
                ApiError::Unavailable(error.to_string())
            }
            EngineError::RunActive(_)
            | EngineError::SessionQueueFull { .. }
            | EngineError::UserQueueFull { .. }
            | EngineError::RegistrationsInFlight
            | EngineError::RegistrationsWaiting => ApiError::Busy(error.to_string()),
            EngineError::NoCall { .. } => ApiError::NotFound(error.to_string()),
            EngineError::NotYourCall(_)
            | EngineError::QuestionToUser(_)
            | EngineError::CallForGateway(_) => ApiError::Forbidden(error.to_string()),
            EngineError::CallMoved { .. } | EngineError::TooManyGateways(_) => {
                ApiError::Conflict(error.to_string())
            }
            EngineError::SchemaJob(_) | EngineError::SchemaSlots(_) | EngineError::Schema(_) => {
                ApiError::Internal(error.into())
            }
        }
    }
}

/// An error and its causes on one line, `a: b: c`, each cause written once:
/// one whose text the line already holds (many errors repeat their
/// source's) is skipped.
pub struct Chain<'a>(pub &'a (dyn std::error::Error + 'static));

impl std::fmt::Display for Chain<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut line = self.0.to_string();
        let mut source = self.0.source();
        while let Some(cause) = source {
            let text = cause.to_string();
            if !line.contains(&text) {
                line.push_str(": ");
                line.push_str(&text);
            }
            source = cause.source();
        }
        f.write_str(&line)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.parts().0;
        let mut response =
            (status, Json(serde_json::json!({ "error": self.body() }))).into_response();
        if let Some(wait) = self.retry_after() {
            set_retry_after(&mut response, wait);
        }
        response
    }
}

/// `Retry-After` in whole seconds, rounded up (at least 1).
pub fn set_retry_after(response: &mut Response, wait: std::time::Duration) {
    let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
    response.headers_mut().insert(
        axum::http::header::RETRY_AFTER,
        axum::http::HeaderValue::from(seconds.max(1)),
    );
}

/// A JSON error response outside an [`ApiError`] (middleware, fallbacks).
pub fn error_response(status: StatusCode, code: ErrorCode, message: impl Into<String>) -> Response {
    let body = ErrorBody {
        code,
        message: message.into(),
        retry_after_ms: None,
    };
    (status, Json(serde_json::json!({ "error": body }))).into_response()
}
