//! The accept loop, and the caps on open connections.
//!
//! Every accepted connection takes a [`Permit`] before it is served: at
//! most `SWITCHBOARD_MAX_CONNECTIONS` in total, and at most
//! `SWITCHBOARD_MAX_CONNECTIONS_PER_IP` from one peer address (an IPv6 peer
//! counts by its /64; trusted proxies count only towards the total). A
//! connection past a cap is answered at once, without reading its request,
//! with `503` `unavailable` and `Retry-After: 1`, and closed; a WARN line
//! says which cap was hit, at most once per 10 s per cap. A permit is given
//! back when its socket closes: an upgraded connection (a WebSocket) holds
//! it until the WebSocket is closed.
//!
//! At start the soft open-file limit is raised to the hard one, and the
//! total cap lowered (with a log line) to leave [`reserve`] descriptors for
//! the database, the LLM provider and the rest: past the limit, `accept`
//! fails and even `/healthz` goes unanswered.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use ipnet::IpNet;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::client::ClientAddr;
use super::connection::{Timeouts, serve_connection};
use crate::config::Limits;
use crate::telemetry::{LogBudget, REFUSAL_LOG_PERIOD};

/// A bound listener with its caps, ready to serve.
pub struct Listener {
    tcp: TcpListener,
    caps: Arc<Caps>,
    timeouts: Timeouts,
}

impl Listener {
    /// Wraps `tcp` with the connection limits of `limits`; lowers the total
    /// cap to fit the open-file limit (see the module docs).
    pub fn new(tcp: TcpListener, limits: &Limits) -> Self {
        let max_total = fit_to_file_limit(limits.max_connections);
        Self {
            tcp,
            caps: Arc::new(Caps {
                max_total,
                max_per_client: limits.max_connections_per_ip,
                trusted: limits.trusted_proxies.clone(),
                open: Mutex::default(),
                total_refusals: LogBudget::new(1, REFUSAL_LOG_PERIOD),
                client_refusals: LogBudget::new(1, REFUSAL_LOG_PERIOD),
            }),
            timeouts: Timeouts {
                header: limits.header_timeout,
                idle: limits.idle_timeout,
            },
        }
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }

    /// Accepts and serves connections until `stop`; then stops accepting,
    /// lets every connection finish its in-flight request (hyper's graceful
    /// shutdown) and resolves once all are closed.
    pub async fn serve(self, router: Router, stop: CancellationToken) {
        let connections = TaskTracker::new();
        let accept_errors = LogBudget::new(1, REFUSAL_LOG_PERIOD);
        loop {
            let (tcp, peer) = tokio::select! {
                biased;
                () = stop.cancelled() => break,
                accepted = self.tcp.accept() => match accepted {
                    Ok(accepted) => accepted,
                    Err(error) => {
                        if !is_connection_error(&error) {
                            if let Some(held_back) = accept_errors.admit() {
                                tracing::warn!(
                                    %error,
                                    similar_errors_not_logged = held_back,
                                    "cannot accept a connection"
                                );
                            }
                            // Out of file descriptors, say: give closing
                            // connections a moment instead of spinning.
                            tokio::time::sleep(Duration::from_millis(100)).await;
                        }
                        continue;
                    }
                },
            };
            let peer = SocketAddr::new(peer.ip().to_canonical(), peer.port());
            let permit = match self.caps.admit(peer.ip()) {
                Ok(permit) => permit,
                Err(refusal) => {
                    self.caps.log(refusal, peer.ip());
                    refuse(tcp, refusal);
                    continue;
                }
            };
            // Events are small frames written as they happen: never hold
            // one back waiting for the peer's ACK of the previous one.
            if let Err(error) = tcp.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
            let (router, timeouts, stop) = (router.clone(), self.timeouts, stop.clone());
            connections.spawn(serve_connection(
                tcp,
                peer,
                Box::new(permit),
                router,
                timeouts,
                stop,
            ));
        }
        drop(self.tcp);
        connections.close();
        connections.wait().await;
    }
}

/// Which cap refused a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    Total,
    PerClient,
}

struct Caps {
    max_total: usize,
    max_per_client: usize,
    trusted: Vec<IpNet>,
    open: Mutex<Open>,
    total_refusals: LogBudget,
    client_refusals: LogBudget,
}

#[derive(Default)]
struct Open {
    total: usize,
    per_client: HashMap<IpAddr, usize>,
}

/// One open connection, counted until dropped.
struct Permit {
    caps: Arc<Caps>,
    /// The per-client count it holds (none for a trusted proxy).
    client: Option<IpAddr>,
}

impl Caps {
    fn admit(self: &Arc<Self>, peer: IpAddr) -> Result<Permit, Refusal> {
        let client = (!self.trusted.iter().any(|net| net.contains(&peer)))
            .then(|| ClientAddr(peer).bucket());
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if open.total >= self.max_total {
            return Err(Refusal::Total);
        }
        if let Some(client) = client {
            let count = open.per_client.entry(client).or_default();
            if *count >= self.max_per_client {
                return Err(Refusal::PerClient);
            }
            *count += 1;
        }
        open.total += 1;
        Ok(Permit {
            caps: self.clone(),
            client,
        })
    }

    fn log(&self, refusal: Refusal, peer: IpAddr) {
        let (throttle, cap, setting) = match refusal {
            Refusal::Total => (
                &self.total_refusals,
                self.max_total,
                "SWITCHBOARD_MAX_CONNECTIONS",
            ),
            Refusal::PerClient => (
                &self.client_refusals,
                self.max_per_client,
                "SWITCHBOARD_MAX_CONNECTIONS_PER_IP",
            ),
        };
        if let Some(held_back) = throttle.admit() {
            tracing::warn!(
                client = %peer,
                cap,
                setting,
                suppressed = held_back,
                "connection refused: {}",
                match refusal {
                    Refusal::Total => "too many open connections",
                    Refusal::PerClient => "too many open connections from this address",
                }
            );
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        let mut open = self.caps.open.lock().unwrap_or_else(|e| e.into_inner());
        open.total -= 1;
        if let Some(client) = self.client
            && let Some(count) = open.per_client.get_mut(&client)
        {
            *count -= 1;
            if *count == 0 {
                open.per_client.remove(&client);
            }
        }
    }
}

/// Answers a connection past a cap without reading its request, and
/// closes it. Best effort: nothing here may wait for the client.
fn refuse(tcp: TcpStream, refusal: Refusal) {
    let message = match refusal {
        Refusal::Total => "too many open connections; retry later",
        Refusal::PerClient => "too many open connections from this address; retry later",
    };
    let body =
        serde_json::json!({ "error": { "code": "unavailable", "message": message } }).to_string();
    let response = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\nconnection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    let _ = tcp.try_write(response.as_bytes());
    // What the client already sent, read now, does not turn the close into
    // a reset that could discard the answer before the client reads it.
    let mut sink = [0u8; 4096];
    let _ = tcp.try_read(&mut sink);
    if let Ok(tcp) = tcp.into_std() {
        let _ = tcp.shutdown(std::net::Shutdown::Write);
    }
}

/// Errors of one connection that was reset before it was accepted: the
/// listener itself is fine.
fn is_connection_error(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}

/// Descriptors kept out of the connection cap: the database pool, the
/// provider's connections, files, the runtime's own.
pub fn reserve(file_limit: u64) -> u64 {
    (file_limit / 8).max(256)
}

/// `max_connections`, lowered to fit the open-file limit (after raising the
/// soft limit to the hard one).
fn fit_to_file_limit(max_connections: usize) -> usize {
    let Some(file_limit) = raise_file_limit() else {
        return max_connections;
    };
    let fits = file_limit
        .saturating_sub(reserve(file_limit))
        .max(file_limit / 2)
        .max(1);
    let fits = usize::try_from(fits).unwrap_or(usize::MAX);
    if fits < max_connections {
        tracing::info!(
            configured = max_connections,
            lowered_to = fits,
            open_file_limit = file_limit,
            "SWITCHBOARD_MAX_CONNECTIONS lowered to fit the open-file limit \
             (raise `ulimit -n` for more)"
        );
        fits
    } else {
        max_connections
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit; the soft limit now.
#[cfg(unix)]
fn raise_file_limit() -> Option<u64> {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).ok()?;
    if soft < hard {
        match setrlimit(Resource::RLIMIT_NOFILE, hard, hard) {
            Ok(()) => return Some(hard),
            Err(error) => {
                tracing::debug!(%error, soft, hard, "cannot raise the open-file limit");
            }
        }
    }
    Some(soft)
}

#[cfg(not(unix))]
fn raise_file_limit() -> Option<u64> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn caps(max_total: usize, max_per_client: usize, trusted: &str) -> Arc<Caps> {
        Arc::new(Caps {
            max_total,
            max_per_client,
            trusted: crate::config::limits::parse_networks(trusted).unwrap(),
            open: Mutex::default(),
            total_refusals: LogBudget::new(1, REFUSAL_LOG_PERIOD),
            client_refusals: LogBudget::new(1, REFUSAL_LOG_PERIOD),
        })
    }

    #[test]
    fn a_client_gets_its_share_and_gets_it_back_when_connections_close() {
        let caps = caps(10, 2, "");
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let first = caps.admit(a).unwrap();
        let _second = caps.admit(a).unwrap();
        assert_eq!(caps.admit(a).err(), Some(Refusal::PerClient));
        let _other = caps.admit("192.0.2.2".parse().unwrap()).unwrap();
        drop(first);
        let _third = caps.admit(a).unwrap();
        assert_eq!(caps.open.lock().unwrap().total, 3);
    }

    #[test]
    fn ipv6_clients_share_their_64_and_trusted_proxies_only_the_total() {
        let caps = caps(3, 1, "10.0.0.1");
        let _one = caps.admit("2001:db8::1".parse().unwrap()).unwrap();
        assert_eq!(
            caps.admit("2001:db8::2".parse().unwrap()).err(),
            Some(Refusal::PerClient)
        );
        let proxy: IpAddr = "10.0.0.1".parse().unwrap();
        let _p1 = caps.admit(proxy).unwrap();
        let _p2 = caps.admit(proxy).unwrap();
        assert_eq!(caps.admit(proxy).err(), Some(Refusal::Total));
    }

    #[test]
    fn the_reserve_grows_with_the_file_limit() {
        assert_eq!(reserve(1024), 256);
        assert_eq!(reserve(65_536), 8_192);
    }
}
