//! Which `Host` names the server answers (`SWITCHBOARD_ALLOWED_HOSTS`).
//!
//! Empty (the default): any. Otherwise a request whose `Host` (or absolute
//! request URI) names another host gets 421 Misdirected Request before any
//! route, the origin check or Socket.IO sees it. Without this, a page on
//! `evil.example` whose name an attacker re-points at the server's address
//! (DNS rebinding) is same-origin with it — `Origin` and `Host` both
//! `evil.example` — and can read `/metrics`, or everything when
//! authentication is disabled.
//!
//! An entry `sb.example.com` matches that host on any port;
//! `sb.example.com:8200` only on that port. Case and a trailing dot do not
//! matter. `/healthz` and `/readyz` answer whatever the `Host`: load
//! balancers often probe by IP address, and neither says anything a
//! rebinding page could use.

use std::sync::LazyLock;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::{StatusCode, header};

use crate::error::{ErrorCode, error_response};
use crate::state::AppState;
use crate::telemetry::{LogBudget, REFUSAL_LOG_PERIOD};

/// Paths answered for any `Host`.
const PROBES: [&str; 2] = ["/healthz", "/readyz"];

static REFUSALS: LazyLock<LogBudget> = LazyLock::new(|| LogBudget::new(1, REFUSAL_LOG_PERIOD));

/// Whether `host` (a `Host` header value) is one of `allowed` (normalized
/// by [`crate::config::limits::normalize_host`]); an empty list allows all.
pub fn host_allowed(allowed: &[String], host: Option<&str>) -> bool {
    if allowed.is_empty() {
        return true;
    }
    let Some(host) = host else {
        return false;
    };
    let host = host.trim().to_ascii_lowercase();
    // `[v6]:port`, `name:port`, `[v6]`, `name`
    let (name, port) = match host.rfind(':') {
        Some(i) if !host[i..].contains(']') => (&host[..i], Some(&host[i + 1..])),
        _ => (host.as_str(), None),
    };
    let name = name.trim_end_matches('.');
    allowed
        .iter()
        .any(|entry| entry == name || port.is_some_and(|port| *entry == format!("{name}:{port}")))
}

/// Middleware: 421 for a request to a `Host` that is not allowed.
pub async fn refuse_unknown_hosts(
    State(state): State<AppState>,
    request: Request,
    next: Next,
) -> Response {
    let allowed = &state.config.limits.allowed_hosts;
    if allowed.is_empty() || PROBES.contains(&request.uri().path()) {
        return next.run(request).await;
    }
    let host = request.uri().authority().map(|a| a.as_str()).or_else(|| {
        request
            .headers()
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
    });
    if host_allowed(allowed, host) {
        return next.run(request).await;
    }
    if let Some(held_back) = REFUSALS.admit() {
        tracing::warn!(
            host = ?host.unwrap_or_default(),
            client = %super::client::ClientAddr::of(&request).0,
            path = request.uri().path(),
            suppressed = held_back,
            "refused a request for a Host not in SWITCHBOARD_ALLOWED_HOSTS"
        );
    }
    error_response(
        StatusCode::MISDIRECTED_REQUEST,
        ErrorCode::Forbidden,
        "this server does not answer for this Host; see SWITCHBOARD_ALLOWED_HOSTS",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed(list: &str) -> Vec<String> {
        list.split(',')
            .map(|h| crate::config::limits::normalize_host(h).unwrap())
            .collect()
    }

    #[test]
    fn an_empty_list_allows_any_host() {
        assert!(host_allowed(&[], Some("evil.example")));
        assert!(host_allowed(&[], None));
    }

    #[test]
    fn a_bare_name_matches_any_port_and_a_name_with_a_port_only_that_port() {
        let list = allowed("sb.example.com, localhost:8200, [::1]");
        assert!(host_allowed(&list, Some("sb.example.com")));
        assert!(host_allowed(&list, Some("SB.Example.COM.:443")));
        assert!(host_allowed(&list, Some("localhost:8200")));
        assert!(!host_allowed(&list, Some("localhost:8201")));
        assert!(!host_allowed(&list, Some("localhost")));
        assert!(host_allowed(&list, Some("[::1]:8200")));
        assert!(host_allowed(&list, Some("[::1]")));
        assert!(!host_allowed(&list, Some("evil.example")));
        assert!(!host_allowed(&list, Some("sb.example.com.evil.example")));
        assert!(!host_allowed(&list, None));
    }
}
