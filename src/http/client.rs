//! Who the client is: its address, seen through trusted reverse proxies.
//!
//! The peer of a TCP connection is the client, unless the peer is one of
//! `SWITCHBOARD_TRUSTED_PROXIES`: then the client is read from the request's
//! `X-Forwarded-For` (or, when that is absent, `Forwarded: for=`) header,
//! walking it from the right (the hop the trusted proxy appended) and
//! skipping hops that are themselves trusted proxies. The first address that
//! is not a trusted proxy is the client. From any other peer those headers
//! are ignored, so sending them gains nothing; and since only the entries to
//! the right of the client's own are read, neither does prepending to them.
//!
//! [`resolve_client`] puts the result into every request's extensions as a
//! [`ClientAddr`], which the handshake limiter, the socket-token limiter
//! ([`ClientKeyExtractor`]) and log lines use.

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

use axum::extract::{ConnectInfo, Request, State};
use axum::middleware::Next;
use axum::response::Response;
use http::HeaderMap;
use http::header::FORWARDED;
use ipnet::IpNet;
use tower_governor::GovernorError;
use tower_governor::key_extractor::KeyExtractor;

use crate::state::AppState;

const X_FORWARDED_FOR: &str = "x-forwarded-for";

/// The client's address (a request extension; see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ClientAddr(pub IpAddr);

impl ClientAddr {
    /// The client of `request`; the unspecified address for a request that
    /// did not come through a socket (tests driving the router directly).
    pub fn of<B>(request: &http::Request<B>) -> Self {
        request
            .extensions()
            .get::<ClientAddr>()
            .copied()
            .unwrap_or(ClientAddr(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED)))
    }

    /// What per-client limits count by: the address, or for IPv6 its /64
    /// network (what one subscriber is usually given, and can pick
    /// addresses from at will).
    pub fn bucket(self) -> IpAddr {
        match self.0 {
            IpAddr::V4(v4) => IpAddr::V4(v4),
            IpAddr::V6(v6) => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(Ipv6Addr::from(bits))
            }
        }
    }
}

/// The client of a request from `peer` with `headers`, given the trusted
/// proxies (see the module docs).
pub fn client_of(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer = peer.to_canonical();
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    if !is_trusted(&peer) {
        return peer;
    }
    let hops: Vec<Option<IpAddr>> = if headers.contains_key(X_FORWARDED_FOR) {
        header_items(headers, X_FORWARDED_FOR)
            .map(parse_node)
            .collect()
    } else {
        header_items(headers, FORWARDED.as_str())
            .map(forwarded_for)
            .collect()
    };
    let mut client = peer;
    for hop in hops.into_iter().rev() {
        match hop {
            // A trusted proxy vouched for something that is no address
            // (`unknown`, an obfuscated name): the proxy is the client.
            None => return client,
            Some(ip) => {
                client = ip.to_canonical();
                if !is_trusted(&client) {
                    return client;
                }
            }
        }
    }
    client
}

/// The comma-separated items of every `name` header, in order. Split as
/// bytes: a client's non-ASCII junk spoils its own item, not the line a
/// proxy appended the client's address to.
fn header_items<'a>(headers: &'a HeaderMap, name: &str) -> impl Iterator<Item = &'a str> {
    headers
        .get_all(name)
        .iter()
        .flat_map(|value| value.as_bytes().split(|b| *b == b','))
        .map(|item| std::str::from_utf8(item).unwrap_or("\u{0}").trim())
}

/// The `for=` node of one `Forwarded` element (`for=1.2.3.4;proto=https`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| parse_node(value.trim().trim_matches('"')))?
    })
}

/// `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]:5678`.
fn parse_node(node: &str) -> Option<IpAddr> {
    if let Ok(ip) = node.parse::<IpAddr>() {
        return Some(ip);
    }
    if let Ok(addr) = node.parse::<SocketAddr>() {
        return Some(addr.ip());
    }
    node.strip_prefix('[')
        .and_then(|rest| rest.strip_suffix(']'))
        .and_then(|v6| v6.parse::<Ipv6Addr>().ok())
        .map(IpAddr::V6)
}

/// Middleware: puts the request's [`ClientAddr`] into its extensions.
pub async fn resolve_client(
    State(state): State<AppState>,
    mut request: Request,
    next: Next,
) -> Response {
    if let Some(ConnectInfo(peer)) = request.extensions().get::<ConnectInfo<SocketAddr>>() {
        let client = client_of(
            peer.ip(),
            request.headers(),
            &state.config.limits.trusted_proxies,
        );
        request.extensions_mut().insert(ClientAddr(client));
    }
    next.run(request).await
}

/// Keys `tower_governor` limits by [`ClientAddr::bucket`].
#[derive(Debug, Clone, Copy)]
pub struct ClientKeyExtractor;

impl KeyExtractor for ClientKeyExtractor {
    type Key = IpAddr;

    fn extract<T>(&self, request: &http::Request<T>) -> Result<IpAddr, GovernorError> {
        Ok(ClientAddr::of(request).bucket())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn proxies() -> Vec<IpNet> {
        crate::config::limits::parse_networks("10.0.0.0/8, ::1").unwrap()
    }

    #[test]
    fn forwarding_headers_from_an_untrusted_peer_are_ignored() {
        let h = headers(&[("x-forwarded-for", "1.1.1.1"), ("forwarded", "for=2.2.2.2")]);
        assert_eq!(client_of(ip("192.0.2.9"), &h, &proxies()), ip("192.0.2.9"));
        assert_eq!(client_of(ip("192.0.2.9"), &h, &[]), ip("192.0.2.9"));
    }

    #[test]
    fn the_rightmost_address_that_is_not_a_trusted_proxy_is_the_client() {
        let h = headers(&[("x-forwarded-for", "6.6.6.6, 1.1.1.1, 10.0.0.2")]);
        assert_eq!(client_of(ip("10.0.0.1"), &h, &proxies()), ip("1.1.1.1"));
        // Several header lines read as one list, in order.
        let h = headers(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("x-forwarded-for", "1.1.1.1"),
        ]);
        assert_eq!(client_of(ip("10.0.0.1"), &h, &proxies()), ip("1.1.1.1"));
        // Garbage to the left of the client's own entry changes nothing.
        let h = headers(&[("x-forwarded-for", "not an address, 1.1.1.1")]);
        assert_eq!(client_of(ip("10.0.0.1"), &h, &proxies()), ip("1.1.1.1"));
        let mut h = HeaderMap::new();
        h.insert(
            "x-forwarded-for",
            http::HeaderValue::from_bytes(b"\xff\xfe, 1.1.1.1").unwrap(),
        );
        assert_eq!(client_of(ip("10.0.0.1"), &h, &proxies()), ip("1.1.1.1"));
    }

    #[test]
    fn forwarded_is_read_when_x_forwarded_for_is_absent() {
        let h = headers(&[(
            "forwarded",
            r#"for=6.6.6.6, For="[2001:db8::7]:4711";proto=https, for=10.0.0.3"#,
        )]);
        assert_eq!(client_of(ip("::1"), &h, &proxies()), ip("2001:db8::7"));
        let h = headers(&[("forwarded", "for=1.2.3.4:80")]);
        assert_eq!(client_of(ip("10.9.9.9"), &h, &proxies()), ip("1.2.3.4"));
    }

    #[test]
    fn a_hop_that_is_no_address_makes_the_proxy_that_wrote_it_the_client() {
        let h = headers(&[("forwarded", "for=unknown")]);
        assert_eq!(client_of(ip("10.0.0.1"), &h, &proxies()), ip("10.0.0.1"));
        let h = headers(&[("x-forwarded-for", "1.1.1.1, _hidden, 10.0.0.2")]);
        assert_eq!(client_of(ip("10.0.0.1"), &h, &proxies()), ip("10.0.0.2"));
        // Only trusted proxies all the way: the farthest one.
        let h = headers(&[("x-forwarded-for", "10.0.0.3, 10.0.0.2")]);
        assert_eq!(client_of(ip("10.0.0.1"), &h, &proxies()), ip("10.0.0.3"));
        // No header at all: the peer.
        assert_eq!(
            client_of(ip("10.0.0.1"), &HeaderMap::new(), &proxies()),
            ip("10.0.0.1")
        );
    }

    #[test]
    fn ipv4_mapped_peers_are_plain_ipv4_and_ipv6_clients_count_by_their_64() {
        assert_eq!(
            client_of(ip("::ffff:192.0.2.1"), &HeaderMap::new(), &[]),
            ip("192.0.2.1")
        );
        assert_eq!(
            ClientAddr(ip("2001:db8:1:2:3:4:5:6")).bucket(),
            ip("2001:db8:1:2::")
        );
        assert_eq!(ClientAddr(ip("192.0.2.1")).bucket(), ip("192.0.2.1"));
    }
}
