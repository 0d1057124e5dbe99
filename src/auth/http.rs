//! Authentication of HTTP requests: an axum extractor.

use axum::extract::FromRequestParts;
use http::request::Parts;

use super::{Context, Identity};
use crate::error::ApiError;
use crate::state::AppState;

/// The caller of an authenticated HTTP route (Bearer header or cookie).
#[derive(Debug, Clone)]
pub struct Caller(pub Identity);

impl FromRequestParts<AppState> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let attempt = state.auth.authenticate(None, &parts.headers, Context::Http);
        match attempt.result {
            Ok(identity) => Ok(Caller(identity)),
            Err(reason) => {
                if let Some(suppressed) = crate::telemetry::refused_credentials().admit() {
                    tracing::info!(
                        method = attempt.method.as_str(),
                        outcome = "refused",
                        %reason,
                        path = parts.uri.path(),
                        suppressed,
                        "http authentication"
                    );
                }
                Err(ApiError::Unauthorized(reason))
            }
        }
    }
}
