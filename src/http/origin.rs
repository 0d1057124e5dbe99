//! Which browser origins may talk to the server.
//!
//! The server's own origin (the request's `Host`) is always allowed; others
//! only when listed in `SWITCHBOARD_ALLOWED_ORIGINS`. A request that carries
//! a disallowed `Origin` is refused with 403 before it reaches a route or a
//! Socket.IO namespace; requests without `Origin` (non-browser clients) pass.

use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{HeaderValue, StatusCode, header};

use super::client::ClientAddr;
use crate::error::{ErrorCode, error_response};
use crate::state::AppState;
use crate::telemetry::{LogBudget, REFUSAL_LOG_PERIOD};

static REFUSALS: LazyLock<LogBudget> = LazyLock::new(|| LogBudget::new(1, REFUSAL_LOG_PERIOD));

#[derive(Debug, Clone)]
pub struct OriginPolicy {
    /// Normalized (`scheme://host[:port]`, lowercase, no default port).
    allowed: Vec<String>,
}

impl OriginPolicy {
    pub fn new(allowed: Vec<String>) -> Self {
        Self { allowed }
    }

    pub fn allowed(&self) -> &[String] {
        &self.allowed
    }

    /// Whether a browser at `origin` may use the server reached as `host`.
    pub fn allows(&self, origin: &str, host: Option<&str>) -> bool {
        let Ok(origin) = normalize(origin) else {
            return false;
        };
        if self.allowed.contains(&origin) {
            return true;
        }
        let (scheme, authority) = origin.split_once("://").unwrap_or_default();
        host.is_some_and(|host| strip_default_port(scheme, &host.to_ascii_lowercase()) == authority)
    }
}

/// An origin as browsers send it (RFC 6454): `scheme://host[:port]`, in
/// lowercase, without the scheme's default port. A trailing `/` is dropped
/// (people paste URLs); a path, a query or credentials are refused, and so
/// are `ws://` and `wss://`, which no browser sends: a WebSocket handshake
/// carries the page's `http(s)://` origin. Used for the configured origins
/// and the `Origin` headers alike, so the two always compare equal.
pub fn normalize(origin: &str) -> Result<String, String> {
    let bad = || format!("{origin:?} is not an origin like https://app.example.com");
    let trimmed = origin.trim();
    let trimmed = trimmed.strip_suffix('/').unwrap_or(trimmed);
    let (scheme, authority) = trimmed.split_once("://").ok_or_else(bad)?;
    let scheme_ok = scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    let authority_ok = !authority.is_empty()
        && !authority.contains(|c: char| {
            matches!(c, '/' | '?' | '#' | '@' | '\\') || c.is_whitespace() || c.is_control()
        });
    if !scheme_ok || !authority_ok {
        return Err(bad());
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme == "ws" || scheme == "wss" {
        return Err(format!(
            "{origin:?} is not an origin: browsers send the page's origin \
             (http:// or https://), WebSocket handshakes included"
        ));
    }
    let authority = strip_default_port(&scheme, &authority.to_ascii_lowercase()).to_owned();
    Ok(format!("{scheme}://{authority}"))
}

fn strip_default_port<'a>(scheme: &str, authority: &'a str) -> &'a str {
    let default = match scheme {
        "http" => ":80",
        "https" => ":443",
        _ => return authority,
    };
    authority.strip_suffix(default).unwrap_or(authority)
}

/// Middleware: 403 for a request whose `Origin` is not allowed.
pub async fn refuse_foreign_origins(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let headers = request.headers();
    if let Some(origin) = headers.get(header::ORIGIN) {
        let host = headers.get(header::HOST).and_then(|h| h.to_str().ok());
        let allowed = origin
            .to_str()
            .is_ok_and(|origin| state.origins.allows(origin, host));
        if !allowed {
            if let Some(held_back) = REFUSALS.admit() {
                tracing::warn!(
                    origin = ?origin,
                    client = %ClientAddr::of(&request).0,
                    path = request.uri().path(),
                    suppressed = held_back,
                    "refused a request from a disallowed origin"
                );
            }
            return error_response(
                StatusCode::FORBIDDEN,
                ErrorCode::Forbidden,
                "this Origin is not allowed; see SWITCHBOARD_ALLOWED_ORIGINS",
            );
        }
    }
    next.run(request).await
}

/// The CORS layer for the listed origins (credentials allowed).
pub fn cors(policy: &OriginPolicy) -> tower_http::cors::CorsLayer {
    use tower_http::cors::{AllowOrigin, CorsLayer};
    let origins: Vec<HeaderValue> = policy
        .allowed()
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    CorsLayer::new()
        .allow_origin(AllowOrigin::list(origins))
        .allow_credentials(true)
        .allow_methods([http::Method::GET, http::Method::POST])
        .allow_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("x-requested-with"),
            header::HeaderName::from_static("last-event-id"),
        ])
        .max_age(std::time::Duration::from_secs(3600))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_origin_is_allowed_without_configuration() {
        let policy = OriginPolicy::new(vec![]);
        assert!(policy.allows("http://127.0.0.1:8200", Some("127.0.0.1:8200")));
        assert!(policy.allows("https://sb.example.com", Some("sb.example.com:443")));
        assert!(!policy.allows("http://evil.example", Some("127.0.0.1:8200")));
        assert!(!policy.allows("null", Some("127.0.0.1:8200")));
        assert!(!policy.allows("http://127.0.0.1:8200", None));
    }

    #[test]
    fn origins_are_normalized_like_browsers_send_them() {
        for (written, normalized) in [
            ("https://App.Example.com:443/", "https://app.example.com"),
            ("http://localhost:5173", "http://localhost:5173"),
            ("HTTP://localhost:80", "http://localhost"),
            ("http://localhost:443", "http://localhost:443"),
            (" https://[::1]:8443 ", "https://[::1]:8443"),
            ("tauri://localhost", "tauri://localhost"),
        ] {
            assert_eq!(normalize(written).as_deref(), Ok(normalized), "{written}");
        }
    }

    #[test]
    fn what_no_browser_sends_is_not_an_origin() {
        for bad in [
            "app.example.com",
            "null",
            "https://",
            "https://app.example.com/path",
            "https://app.example.com//",
            "https://user@app.example.com",
            "https://app.example.com?x",
            "://app.example.com",
        ] {
            assert!(
                normalize(bad).unwrap_err().contains("not an origin"),
                "{bad}"
            );
        }
        for websocket in ["ws://app.example.com", "WSS://app.example.com:443/"] {
            let err = normalize(websocket).unwrap_err();
            assert!(err.contains("http:// or https://"), "{err}");
        }
    }

    #[test]
    fn a_websocket_scheme_in_the_origin_header_is_not_the_servers_own() {
        let policy = OriginPolicy::new(vec![]);
        assert!(!policy.allows("ws://127.0.0.1:8200", Some("127.0.0.1:8200")));
        assert!(policy.allows("http://127.0.0.1:8200/", Some("127.0.0.1:8200")));
    }

    #[test]
    fn listed_origins_are_allowed() {
        let policy = OriginPolicy::new(vec!["http://localhost:5173".into()]);
        assert!(policy.allows("http://LOCALHOST:5173", Some("127.0.0.1:8200")));
        assert!(!policy.allows("http://localhost:5174", Some("127.0.0.1:8200")));
    }
}
