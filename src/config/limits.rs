//! The limits on what a client can make the server hold: connections,
//! handshakes, request and ingest rates, quotas, queue lengths and page
//! sizes. Every one has a default generous for real use and a setting;
//! README ("Limits") and `docs/security.md` list them with what a client
//! sees when it hits one.

use std::net::IpAddr;
use std::time::Duration;

use clap::Args;
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::ConfigError;
use super::layers::Layers;
pub use super::rate::Rate;
use super::value::{self, StringList};

/// Resolved limits; see the module docs.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Open TCP connections in total (lowered at start to fit the process's
    /// file-descriptor limit).
    pub max_connections: usize,
    /// Open TCP connections per client address (trusted proxies exempt).
    pub max_connections_per_ip: usize,
    /// A request head must arrive within this; an idle kept-alive
    /// connection is closed after it.
    pub header_timeout: Duration,
    /// An HTTP connection whose client the server has waited on this long
    /// (for more of a request body, or to take more of a response) is
    /// closed; time the server takes to answer does not count.
    pub idle_timeout: Duration,
    /// An Engine.IO session that opens no Socket.IO namespace within this
    /// is closed.
    pub connect_timeout: Duration,
    /// New Engine.IO sessions (handshakes) per client address.
    pub handshake_rate: Option<Rate>,
    /// New Engine.IO sessions in total.
    pub handshake_rate_total: Option<Rate>,
    /// Peers whose `X-Forwarded-For` / `Forwarded` headers name the client.
    pub trusted_proxies: Vec<IpNet>,
    /// `Host` names (`host` or `host:port`, lowercase) the server answers;
    /// empty: any.
    pub allowed_hosts: Vec<String>,
    /// Socket.IO requests per connected socket.
    pub request_rate: Option<Rate>,
    /// Sessions one user may own.
    pub max_sessions_per_user: Option<u64>,
    /// Sessions one user may create.
    pub session_rate: Option<Rate>,
    /// Events one user may append over HTTP.
    pub ingest_rate: Option<Rate>,
    /// Bytes of events one user may append over HTTP.
    pub ingest_bytes_rate: Option<Rate>,
    /// `agent:execute` requests one user may make.
    pub execute_rate: Option<Rate>,
    /// Runs queued behind a session's active run (`on_busy: enqueue`).
    pub max_queued_runs: usize,
    /// Runs one user may have queued across all their sessions.
    pub max_queued_runs_per_user: usize,
    /// Gateways one user may have registered at once.
    pub max_gateways_per_user: usize,
    /// Bytes of events or messages in one page (HTTP pages, catch-up
    /// batches, `session:messages`); a page always holds at least one.
    pub max_page_bytes: usize,
    /// Bytes queued for one Socket.IO connection that has not taken them
    /// yet; past it, its subscriptions wait and catch up from the log. A
    /// packet is queued whenever less is, however large it is.
    pub max_socket_buffer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_connections: 16_384,
            max_connections_per_ip: 256,
            header_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(60),
            connect_timeout: Duration::from_secs(10),
            handshake_rate: Some(Rate::per_minute(1_200)),
            handshake_rate_total: Some(Rate::per_minute(12_000)),
            trusted_proxies: Vec::new(),
            allowed_hosts: Vec::new(),
            request_rate: Some(Rate::per_second(100)),
            max_sessions_per_user: Some(10_000),
            session_rate: Some(Rate::per_minute(60)),
            ingest_rate: Some(Rate::per_second(10_000)),
            ingest_bytes_rate: Some(Rate::per_second(32 * 1024 * 1024)),
            execute_rate: Some(Rate::per_minute(120)),
            max_queued_runs: 16,
            max_queued_runs_per_user: 64,
            max_gateways_per_user: 16,
            max_page_bytes: 4 * 1024 * 1024,
            max_socket_buffer_bytes: 4 * 1024 * 1024,
        }
    }
}

impl Limits {
    /// Refuses limits that cannot work, naming the setting as it was given.
    pub(super) fn validate(
        &self,
        max_body_bytes: usize,
        layers: &Layers,
    ) -> Result<(), ConfigError> {
        let l = self;
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            name: layers.name(key),
            reason: reason.to_owned(),
        };
        let at_least_one = [
            ("max_connections", l.max_connections),
            ("max_connections_per_ip", l.max_connections_per_ip),
            ("max_gateways_per_user", l.max_gateways_per_user),
        ];
        for (key, value) in at_least_one {
            if value == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        // Only time spent waiting for the client counts towards the idle
        // timeout (see `http::connection`): long-polls and quiet SSE streams
        // never do.
        let positive = [
            ("header_timeout", l.header_timeout),
            ("connect_timeout", l.connect_timeout),
            ("idle_timeout", l.idle_timeout),
        ];
        for (key, value) in positive {
            if value.is_zero() {
                return Err(invalid(key, "must be more than 0"));
            }
        }
        let at_least_64_kib = [
            ("max_page_bytes", l.max_page_bytes),
            ("max_socket_buffer_bytes", l.max_socket_buffer_bytes),
        ];
        for (key, value) in at_least_64_kib {
            if value < 64 * 1024 {
                return Err(invalid(key, "must be at least 64 KiB (65536)"));
            }
        }
        if let Some(rate) = l.ingest_bytes_rate
            && (rate.count.get() as usize) < max_body_bytes
        {
            return Err(invalid(
                "ingest_bytes_rate",
                &format!(
                    "{rate} allows less at once than one request of {} ({max_body_bytes} bytes)",
                    layers.name("max_body_bytes")
                ),
            ));
        }
        Ok(())
    }

    /// Whether `peer` is a trusted proxy.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
}

/// The limits on what clients can make the server hold (README, "Limits").
/// Rates are written `600/min`, `10/s`, `1000/h` (byte rates `32MiB/s`), or
/// `unlimited`.
#[derive(Clone, Default, Args, Serialize, Deserialize)]
#[command(next_help_heading = "Limits")]
#[serde(default)]
pub struct LimitSettings {
    /// Open connections in total; lowered to fit the file-descriptor limit
    /// [default: 16384]
    #[arg(long, value_name = "N")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub max_connections: Option<usize>,

    /// Open connections per client address (trusted proxies are exempt)
    /// [default: 256]
    #[arg(long, value_name = "N")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub max_connections_per_ip: Option<usize>,

    /// A request head must arrive within this; idle kept-alive connections
    /// close after it [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub header_timeout: Option<Duration>,

    /// An HTTP connection whose client stalls this long (a request body
    /// that stops coming, a response nobody reads) is closed [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub idle_timeout: Option<Duration>,

    /// An Engine.IO session that opens no namespace within this is closed
    /// [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub connect_timeout: Option<Duration>,

    /// New Engine.IO sessions per client address [default: 1200/min]
    #[arg(long, value_name = "RATE")]
    pub handshake_rate: Option<String>,

    /// New Engine.IO sessions in total [default: 12000/min]
    #[arg(long, value_name = "RATE")]
    pub handshake_rate_total: Option<String>,

    /// Comma-separated proxy addresses or networks (`10.0.0.0/8`) whose
    /// X-Forwarded-For / Forwarded headers name the client [default: none]
    #[arg(long, value_name = "NETS")]
    pub trusted_proxies: Option<StringList>,

    /// Comma-separated Host names the server answers (`sb.example.com`,
    /// `localhost:8200`); others get 421 [default: any]
    #[arg(long, value_name = "HOSTS")]
    pub allowed_hosts: Option<StringList>,

    /// Socket.IO requests per connected socket [default: 100/s]
    #[arg(long, value_name = "RATE")]
    pub request_rate: Option<String>,

    /// Sessions one user may own; 0 is unlimited [default: 10000]
    #[arg(long, value_name = "N")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub max_sessions_per_user: Option<u64>,

    /// Sessions one user may create [default: 60/min]
    #[arg(long, value_name = "RATE")]
    pub session_rate: Option<String>,

    /// Events one user may append over HTTP [default: 10000/s]
    #[arg(long, value_name = "RATE")]
    pub ingest_rate: Option<String>,

    /// Bytes of events one user may append over HTTP [default: 32MiB/s]
    #[arg(long, value_name = "RATE")]
    pub ingest_bytes_rate: Option<String>,

    /// `agent:execute` requests one user may make [default: 120/min]
    #[arg(long, value_name = "RATE")]
    pub execute_rate: Option<String>,

    /// Runs queued behind a session's active run [default: 16]
    #[arg(long, value_name = "N")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub max_queued_runs: Option<usize>,

    /// Runs one user may have queued across all their sessions [default: 64]
    #[arg(long, value_name = "N")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub max_queued_runs_per_user: Option<usize>,

    /// Gateways one user may have registered at once [default: 16]
    #[arg(long, value_name = "N")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub max_gateways_per_user: Option<usize>,

    /// Bytes of events or messages in one page or catch-up batch (at least
    /// one is always sent) [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub max_page_bytes: Option<usize>,

    /// Bytes queued for one Socket.IO connection that is not reading; its
    /// subscriptions then catch up from the log once it reads again
    /// [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub max_socket_buffer_bytes: Option<usize>,
}

/// The limits from the merged layers, over the defaults.
pub(super) fn resolve(s: &LimitSettings, layers: &Layers) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let rate = |key: &str, value: &Option<String>, default: Option<Rate>| match value {
        Some(text) => Rate::parse_setting(text).map_err(|reason| ConfigError::Invalid {
            name: layers.name(key),
            reason,
        }),
        None => Ok(default),
    };
    let items =
        |list: &Option<StringList>| list.as_ref().map(StringList::items).unwrap_or_default();
    let trusted_proxies =
        parse_networks(&items(&s.trusted_proxies).join(",")).map_err(|reason| {
            ConfigError::Invalid {
                name: layers.name("trusted_proxies"),
                reason,
            }
        })?;
    let allowed_hosts = items(&s.allowed_hosts)
        .iter()
        .map(|h| normalize_host(h))
        .collect::<Result<_, _>>()
        .map_err(|reason| ConfigError::Invalid {
            name: layers.name("allowed_hosts"),
            reason,
        })?;
    Ok(Limits {
        max_connections: s.max_connections.unwrap_or(d.max_connections),
        max_connections_per_ip: s.max_connections_per_ip.unwrap_or(d.max_connections_per_ip),
        header_timeout: s.header_timeout.unwrap_or(d.header_timeout),
        idle_timeout: s.idle_timeout.unwrap_or(d.idle_timeout),
        connect_timeout: s.connect_timeout.unwrap_or(d.connect_timeout),
        handshake_rate: rate("handshake_rate", &s.handshake_rate, d.handshake_rate)?,
        handshake_rate_total: rate(
            "handshake_rate_total",
            &s.handshake_rate_total,
            d.handshake_rate_total,
        )?,
        trusted_proxies,
        allowed_hosts,
        request_rate: rate("request_rate", &s.request_rate, d.request_rate)?,
        max_sessions_per_user: match s.max_sessions_per_user {
            Some(0) => None,
            Some(n) => Some(n),
            None => d.max_sessions_per_user,
        },
        session_rate: rate("session_rate", &s.session_rate, d.session_rate)?,
        ingest_rate: rate("ingest_rate", &s.ingest_rate, d.ingest_rate)?,
        ingest_bytes_rate: rate(
            "ingest_bytes_rate",
            &s.ingest_bytes_rate,
            d.ingest_bytes_rate,
        )?,
        execute_rate: rate("execute_rate", &s.execute_rate, d.execute_rate)?,
        max_queued_runs: s.max_queued_runs.unwrap_or(d.max_queued_runs),
        max_queued_runs_per_user: s
            .max_queued_runs_per_user
            .unwrap_or(d.max_queued_runs_per_user),
        max_gateways_per_user: s.max_gateways_per_user.unwrap_or(d.max_gateways_per_user),
        max_page_bytes: s.max_page_bytes.unwrap_or(d.max_page_bytes),
        max_socket_buffer_bytes: s
            .max_socket_buffer_bytes
            .unwrap_or(d.max_socket_buffer_bytes),
    })
}

/// Parses `10.0.0.0/8, 127.0.0.1, ::1` (a bare address is a /32 or /128).
pub fn parse_networks(text: &str) -> Result<Vec<IpNet>, String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|item| {
            item.parse::<IpNet>()
                .or_else(|_| item.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("{item:?} is not an IP address or a network like 10.0.0.0/8"))
        })
        .collect()
}

/// Normalizes a `Host` allow-list entry: lowercase, without a trailing dot.
pub fn normalize_host(host: &str) -> Result<String, String> {
    let host = host.trim().trim_end_matches('.').to_ascii_lowercase();
    if host.is_empty() || host.contains(['/', ' ', '@']) || host.contains("://") {
        return Err(format!(
            "{host:?} is not a host name like `sb.example.com` or `sb.example.com:8200`"
        ));
    }
    Ok(host)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_parse_from_addresses_and_prefixes() {
        let nets = parse_networks("10.0.0.0/8, 127.0.0.1 ,::1").unwrap();
        let limits = Limits {
            trusted_proxies: nets,
            ..Default::default()
        };
        assert!(limits.is_trusted_proxy("10.1.2.3".parse().unwrap()));
        assert!(limits.is_trusted_proxy("127.0.0.1".parse().unwrap()));
        assert!(limits.is_trusted_proxy("::1".parse().unwrap()));
        assert!(!limits.is_trusted_proxy("192.168.0.1".parse().unwrap()));
        assert!(parse_networks("10.0.0.0/33").is_err());
        assert!(parse_networks("proxy.local").is_err());
    }
}
