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
    /// Whether `peer` is a trusted proxy.
    pub fn is_trusted_proxy(&self, peer: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|net| net.contains(&peer))
    }
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
