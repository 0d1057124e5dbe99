//! The limits on what a client can make the server hold: connections,
//! handshakes, request and ingest rates, quotas, queue lengths and page
//! sizes. Every one has a default generous for real use and a setting;
//! README ("Limits") and `docs/security.md` list them with what a client
//! sees when it hits one.

use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::str::FromStr;
use std::time::Duration;

use ipnet::IpNet;

use super::{ConfigError, FileConfig, list, string_list};
use crate::cli::LimitSettings;

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
    /// Refuses limits that cannot work, naming the setting.
    pub(super) fn validate(&self, max_body_bytes: usize) -> Result<(), ConfigError> {
        let l = self;
        let at_least_one = [
            ("SWITCHBOARD_MAX_CONNECTIONS", l.max_connections),
            (
                "SWITCHBOARD_MAX_CONNECTIONS_PER_IP",
                l.max_connections_per_ip,
            ),
            ("SWITCHBOARD_MAX_GATEWAYS_PER_USER", l.max_gateways_per_user),
        ];
        for (name, value) in at_least_one {
            if value == 0 {
                return Err(ConfigError::invalid(name, "must be at least 1"));
            }
        }
        if l.header_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "SWITCHBOARD_HEADER_TIMEOUT",
                "must be more than 0",
            ));
        }
        if l.connect_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "SWITCHBOARD_CONNECT_TIMEOUT",
                "must be more than 0",
            ));
        }
        // Only time spent waiting for the client counts towards it (see
        // `http::connection`): long-polls and quiet SSE streams never do.
        if l.idle_timeout.is_zero() {
            return Err(ConfigError::invalid(
                "SWITCHBOARD_IDLE_TIMEOUT",
                "must be more than 0",
            ));
        }
        let at_least_64_kib = [
            ("SWITCHBOARD_MAX_PAGE_BYTES", l.max_page_bytes),
            (
                "SWITCHBOARD_MAX_SOCKET_BUFFER_BYTES",
                l.max_socket_buffer_bytes,
            ),
        ];
        for (name, value) in at_least_64_kib {
            if value < 64 * 1024 {
                return Err(ConfigError::invalid(
                    name,
                    "must be at least 64 KiB (65536)",
                ));
            }
        }
        if let Some(rate) = l.ingest_bytes_rate
            && (rate.count.get() as usize) < max_body_bytes
        {
            return Err(ConfigError::invalid(
                "SWITCHBOARD_INGEST_BYTES_RATE",
                format!(
                    "{rate} allows less at once than one request of \
                     SWITCHBOARD_MAX_BODY_BYTES ({} bytes)",
                    max_body_bytes
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

/// The limits, flags and environment over the file over the defaults.
pub(super) fn from_layers(s: &LimitSettings, file: &FileConfig) -> Result<Limits, ConfigError> {
    let d = Limits::default();
    let rate = |name: &'static str,
                flag: &Option<String>,
                file: &Option<String>,
                default: Option<Rate>| {
        match flag.as_ref().or(file.as_ref()) {
            Some(text) => Rate::parse_setting(text).map_err(|e| ConfigError::invalid(name, e)),
            None => Ok(default),
        }
    };
    let trusted_proxies = parse_networks(
        &list(
            s.trusted_proxies.clone(),
            string_list(&file.trusted_proxies),
        )
        .join(","),
    )
    .map_err(|e| ConfigError::invalid("SWITCHBOARD_TRUSTED_PROXIES", e))?;
    let allowed_hosts = list(s.allowed_hosts.clone(), string_list(&file.allowed_hosts))
        .iter()
        .map(|h| normalize_host(h))
        .collect::<Result<_, _>>()
        .map_err(|e| ConfigError::invalid("SWITCHBOARD_ALLOWED_HOSTS", e))?;
    Ok(Limits {
        max_connections: s
            .max_connections
            .or(file.max_connections)
            .unwrap_or(d.max_connections),
        max_connections_per_ip: s
            .max_connections_per_ip
            .or(file.max_connections_per_ip)
            .unwrap_or(d.max_connections_per_ip),
        header_timeout: s
            .header_timeout
            .or(file.header_timeout)
            .unwrap_or(d.header_timeout),
        idle_timeout: s
            .idle_timeout
            .or(file.idle_timeout)
            .unwrap_or(d.idle_timeout),
        connect_timeout: s
            .connect_timeout
            .or(file.connect_timeout)
            .unwrap_or(d.connect_timeout),
        handshake_rate: rate(
            "SWITCHBOARD_HANDSHAKE_RATE",
            &s.handshake_rate,
            &file.handshake_rate,
            d.handshake_rate,
        )?,
        handshake_rate_total: rate(
            "SWITCHBOARD_HANDSHAKE_RATE_TOTAL",
            &s.handshake_rate_total,
            &file.handshake_rate_total,
            d.handshake_rate_total,
        )?,
        trusted_proxies,
        allowed_hosts,
        request_rate: rate(
            "SWITCHBOARD_REQUEST_RATE",
            &s.request_rate,
            &file.request_rate,
            d.request_rate,
        )?,
        max_sessions_per_user: match s.max_sessions_per_user.or(file.max_sessions_per_user) {
            Some(0) => None,
            Some(n) => Some(n),
            None => d.max_sessions_per_user,
        },
        session_rate: rate(
            "SWITCHBOARD_SESSION_RATE",
            &s.session_rate,
            &file.session_rate,
            d.session_rate,
        )?,
        ingest_rate: rate(
            "SWITCHBOARD_INGEST_RATE",
            &s.ingest_rate,
            &file.ingest_rate,
            d.ingest_rate,
        )?,
        ingest_bytes_rate: rate(
            "SWITCHBOARD_INGEST_BYTES_RATE",
            &s.ingest_bytes_rate,
            &file.ingest_bytes_rate,
            d.ingest_bytes_rate,
        )?,
        execute_rate: rate(
            "SWITCHBOARD_EXECUTE_RATE",
            &s.execute_rate,
            &file.execute_rate,
            d.execute_rate,
        )?,
        max_queued_runs: s
            .max_queued_runs
            .or(file.max_queued_runs)
            .unwrap_or(d.max_queued_runs),
        max_queued_runs_per_user: s
            .max_queued_runs_per_user
            .or(file.max_queued_runs_per_user)
            .unwrap_or(d.max_queued_runs_per_user),
        max_gateways_per_user: s
            .max_gateways_per_user
            .or(file.max_gateways_per_user)
            .unwrap_or(d.max_gateways_per_user),
        max_page_bytes: s
            .max_page_bytes
            .or(file.max_page_bytes)
            .unwrap_or(d.max_page_bytes),
        max_socket_buffer_bytes: s
            .max_socket_buffer_bytes
            .or(file.max_socket_buffer_bytes)
            .unwrap_or(d.max_socket_buffer_bytes),
    })
}

/// A rate: at most `count` per `period`, all of them at once if need be
/// (a token bucket of `count` tokens refilled over `period`). Written
/// `600/min`, `10/s`, `1000/h`; counts may carry a binary unit
/// (`32MiB/s`) for byte rates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub period: Duration,
}

impl Rate {
    pub const fn per_second(count: u32) -> Self {
        Self::new(count, Duration::from_secs(1))
    }

    pub const fn per_minute(count: u32) -> Self {
        Self::new(count, Duration::from_secs(60))
    }

    const fn new(count: u32, period: Duration) -> Self {
        let count = match NonZeroU32::new(count) {
            Some(count) => count,
            None => panic!("a rate counts at least 1"),
        };
        Self { count, period }
    }

    /// The token bucket: `count` tokens, one back every `period / count`.
    pub fn quota(&self) -> governor::Quota {
        let every = (self.period / self.count.get()).max(Duration::from_nanos(1));
        governor::Quota::with_period(every)
            .expect("a positive period")
            .allow_burst(self.count)
    }

    /// Parses a rate; `unlimited` (or `off`, `0`) is `None`.
    pub fn parse_setting(text: &str) -> Result<Option<Self>, String> {
        match text.trim() {
            "unlimited" | "off" | "0" => Ok(None),
            text => text.parse().map(Some),
        }
    }
}

impl FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let bad =
            || format!("{text:?} is not a rate like `600/min`, `10/s`, `1000/h` or `32MiB/s`");
        let (count, period) = text.trim().split_once('/').ok_or_else(bad)?;
        let count = count.trim();
        let (digits, unit) = count.split_at(
            count
                .find(|c: char| !c.is_ascii_digit())
                .unwrap_or(count.len()),
        );
        let multiplier: u64 = match unit.trim() {
            "" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            _ => return Err(bad()),
        };
        let count = digits
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(multiplier))
            .and_then(|n| u32::try_from(n).ok())
            .and_then(NonZeroU32::new)
            .ok_or_else(bad)?;
        let period = match period.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "min" | "m" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(bad()),
        };
        Ok(Self { count, period })
    }
}

impl fmt::Display for Rate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let period = match self.period.as_secs() {
            1 => "s",
            60 => "min",
            3600 => "h",
            _ => return write!(f, "{}/{:?}", self.count, self.period),
        };
        write!(f, "{}/{period}", self.count)
    }
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
    fn rates_parse_with_periods_and_units() {
        assert_eq!("600/min".parse::<Rate>().unwrap(), Rate::per_minute(600));
        assert_eq!("10/s".parse::<Rate>().unwrap(), Rate::per_second(10));
        assert_eq!(
            "32MiB/s".parse::<Rate>().unwrap(),
            Rate::per_second(32 << 20)
        );
        assert_eq!(
            "1000/h".parse::<Rate>().unwrap().period,
            Duration::from_secs(3600)
        );
        assert_eq!(Rate::parse_setting("unlimited").unwrap(), None);
        for bad in ["10", "x/s", "0/s", "10/fortnight", "5000GiB/s", "-1/s"] {
            let err = bad.parse::<Rate>().unwrap_err();
            assert!(err.contains(bad), "{err}");
        }
    }

    #[test]
    fn rates_print_as_they_are_written() {
        assert_eq!(Rate::per_minute(600).to_string(), "600/min");
        assert_eq!(Rate::per_second(10).to_string(), "10/s");
    }

    #[test]
    fn a_quota_allows_the_whole_count_at_once_then_refills() {
        let quota = Rate::per_minute(600).quota();
        assert_eq!(quota.burst_size().get(), 600);
        assert_eq!(quota.replenish_interval(), Duration::from_millis(100));
    }

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
