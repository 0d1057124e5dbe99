//! How fast new Engine.IO sessions may be opened.
//!
//! A handshake is a request to the Engine.IO endpoint (`/socket.io/`) that
//! carries no `sid`: it opens a new session (polling or WebSocket), which
//! the server holds until the client opens a namespace or the connect
//! timeout passes. Handshakes are limited per client address
//! ([`ClientAddr::bucket`]; `SWITCHBOARD_HANDSHAKE_RATE`) and in total
//! (`SWITCHBOARD_HANDSHAKE_RATE_TOTAL`), and refused with 429, `Retry-After`
//! and a `rate_limited` JSON error before engineioxide sees the request, so
//! a refusal costs no session. Requests of an open session (with a `sid`)
//! are not counted. The official client takes a refusal as a
//! `connect_error` and retries with its backoff.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::client::ClientAddr;
use crate::config::Limits;
use crate::error::ApiError;
use crate::rate::KeyedLimiter;
use crate::telemetry::{LogBudget, REFUSAL_LOG_PERIOD};

/// Where socketioxide serves Engine.IO (its default `req_path`).
pub const ENGINE_IO_PATH: &str = "/socket.io";

pub struct HandshakeLimiter {
    per_client: KeyedLimiter<IpAddr>,
    total: KeyedLimiter<()>,
    refusals: LogBudget,
}

impl HandshakeLimiter {
    pub fn new(limits: &Limits) -> Self {
        Self {
            per_client: KeyedLimiter::new(
                limits.handshake_rate,
                "new Socket.IO connections from this address",
            ),
            total: KeyedLimiter::new(
                limits.handshake_rate_total,
                "new Socket.IO connections to this server",
            ),
            refusals: LogBudget::new(1, REFUSAL_LOG_PERIOD),
        }
    }

    /// Takes a handshake of `client`'s: its own bucket first, so that a
    /// client refused there does not drain the total.
    pub fn check(&self, client: ClientAddr) -> Result<(), ApiError> {
        self.per_client.check(&client.bucket())?;
        Ok(self.total.check(&())?)
    }
}

/// Whether `uri` opens a new Engine.IO session.
pub fn is_handshake(uri: &http::Uri) -> bool {
    let under_engine_io = uri
        .path()
        .strip_prefix(ENGINE_IO_PATH)
        .is_some_and(|rest| rest.is_empty() || rest.starts_with('/'));
    under_engine_io
        && !uri
            .query()
            .unwrap_or_default()
            .split('&')
            .any(|pair| pair.starts_with("sid="))
}

/// Middleware: 429 for a handshake past either limit.
pub async fn limit_handshakes(
    State(limiter): State<Arc<HandshakeLimiter>>,
    request: Request,
    next: Next,
) -> Response {
    if is_handshake(request.uri()) {
        let client = ClientAddr::of(&request);
        if let Err(refusal) = limiter.check(client) {
            if let Some(held_back) = limiter.refusals.admit() {
                tracing::warn!(
                    client = %client.0,
                    reason = %refusal,
                    suppressed = held_back,
                    "refused a Socket.IO handshake"
                );
            }
            return refusal.into_response();
        }
    }
    next.run(request).await
}

/// Middleware: a handshake's URI and header values copied into memory of
/// their own before engineioxide keeps them for the connection's lifetime
/// (`Socket::req_parts`, which authentication reads).
///
/// hyper parses a request head in place: the URI and every header value
/// are slices of the connection's read buffer (8–16 KiB), so keeping any
/// of them keeps the whole buffer, per connection, for as long as the
/// connection lasts. The copies take a few hundred bytes.
pub async fn own_handshake_head(request: Request, next: Next) -> Response {
    if !is_handshake(request.uri()) {
        return next.run(request).await;
    }
    let (mut head, body) = request.into_parts();
    own(&mut head);
    next.run(Request::from_parts(head, body)).await
}

/// Replaces `head`'s URI and header values with copies. (Header names are
/// copied by hyper already.)
fn own(head: &mut http::request::Parts) {
    if let Ok(uri) = head.uri.to_string().parse() {
        head.uri = uri;
    }
    for value in head.headers.values_mut() {
        if let Ok(mut copy) = http::HeaderValue::from_bytes(value.as_bytes()) {
            copy.set_sensitive(value.is_sensitive());
            *value = copy;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Rate;

    #[test]
    fn an_owned_head_shares_nothing_with_the_buffer_it_was_parsed_from() {
        // As hyper builds a head: the URI and values slice the read buffer.
        let buffer = bytes::Bytes::from_static(
            b"/socket.io/?EIO=4&transport=websocket\0Bearer abc\0https://app.example",
        );
        let within = |bytes: &[u8]| buffer.as_ptr_range().contains(&bytes.as_ptr());
        let mut head = http::Request::new(()).into_parts().0;
        head.uri = http::Uri::from_maybe_shared(buffer.slice(0..37)).unwrap();
        let mut token = http::HeaderValue::from_maybe_shared(buffer.slice(38..48)).unwrap();
        token.set_sensitive(true);
        head.headers.insert(http::header::AUTHORIZATION, token);
        head.headers.insert(
            http::header::ORIGIN,
            http::HeaderValue::from_maybe_shared(buffer.slice(49..)).unwrap(),
        );
        assert!(within(head.uri.path().as_bytes()));
        assert!(within(head.headers[http::header::ORIGIN].as_bytes()));

        own(&mut head);

        assert_eq!(head.uri, "/socket.io/?EIO=4&transport=websocket");
        assert!(!within(head.uri.path().as_bytes()));
        let token = &head.headers[http::header::AUTHORIZATION];
        assert_eq!(token, "Bearer abc");
        assert!(token.is_sensitive());
        assert!(!within(token.as_bytes()));
        let origin = &head.headers[http::header::ORIGIN];
        assert_eq!(origin, "https://app.example");
        assert!(!within(origin.as_bytes()));
    }

    #[test]
    fn handshakes_are_engine_io_requests_without_a_sid() {
        let yes = [
            "/socket.io/?EIO=4&transport=polling",
            "/socket.io/?EIO=4&transport=websocket",
            "/socket.io?EIO=4&transport=polling",
            "/socket.io/",
        ];
        let no = [
            "/socket.io/?EIO=4&transport=polling&sid=abc",
            "/socket.io/?sid=abc&EIO=4&transport=websocket",
            "/socket.iox/?EIO=4",
            "/v1/sessions",
            "/",
        ];
        for uri in yes {
            assert!(is_handshake(&uri.parse().unwrap()), "{uri}");
        }
        for uri in no {
            assert!(!is_handshake(&uri.parse().unwrap()), "{uri}");
        }
    }

    #[test]
    fn a_client_refused_by_its_own_limit_leaves_the_total_to_others() {
        let limits = Limits {
            handshake_rate: Some(Rate::per_minute(2)),
            handshake_rate_total: Some(Rate::per_minute(3)),
            ..Limits::default()
        };
        let limiter = HandshakeLimiter::new(&limits);
        let a = ClientAddr("192.0.2.1".parse().unwrap());
        let b = ClientAddr("192.0.2.2".parse().unwrap());
        let c = ClientAddr("192.0.2.3".parse().unwrap());
        limiter.check(a).unwrap();
        limiter.check(a).unwrap();
        for _ in 0..10 {
            assert!(limiter.check(a).is_err());
        }
        limiter.check(b).unwrap();
        let err = limiter.check(c).unwrap_err();
        assert!(err.to_string().contains("to this server"), "{err}");
    }
}
