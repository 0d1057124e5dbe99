//! Errors as clients see them.
//!
//! One error type for both faces: HTTP answers `{ "error": { "code",
//! "message" } }` with a fitting status, Socket.IO acknowledgements
//! `{ ok: false, error: { code, message } }` ([`crate::realtime::ack`]).
//! An `internal` error says nothing about its cause to the client: the cause
//! is logged here, once.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::auth::Failure;

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
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, ErrorCode::Unavailable),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, ErrorCode::Internal),
        }
    }

    /// The body both faces send; logs the cause of an internal error.
    pub fn body(&self) -> ErrorBody {
        if let ApiError::Internal(cause) = self {
            tracing::error!(error = ?cause, "internal error");
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

    /// The standard refusal for a session the caller may not see.
    pub fn forbidden() -> Self {
        ApiError::Forbidden("this session belongs to another user".into())
    }
}

impl From<sea_orm::DbErr> for ApiError {
    fn from(error: sea_orm::DbErr) -> Self {
        ApiError::Internal(error.into())
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
