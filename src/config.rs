//! Resolved configuration: built-in defaults < TOML file < environment < flags.
//!
//! [`Settings`] is every setting once: the flags, the TOML keys and the
//! environment variables. [`layers`] merges them (figment), and
//! [`Config::load`] resolves the result, with the defaults, into the
//! [`Config`] the rest of the server reads, refusing what cannot work or is
//! not implemented with a message that names the setting as the user wrote
//! it. Secrets are held as [`SecretString`], whose `Debug` prints a
//! placeholder, and the database URL is only ever logged through
//! [`Config::database_display`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

mod layers;
pub mod limits;
mod rate;
mod settings;
mod value;

use layers::Layers;
pub use limits::{LimitSettings, Limits, Rate};
pub use settings::{LogFormat, Settings, TokenList, env_var};
pub use value::{StringList, parse_bool, parse_duration};

pub const DEFAULT_BIND: &str = "127.0.0.1:8200";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://switchboard.db";
pub const DEFAULT_COOKIE_NAME: &str = "sb_session";

/// Everything the server needs to run, resolved and validated.
#[derive(Debug, Clone)]
pub struct Config {
    pub bind: SocketAddr,
    pub database_url: SecretString,
    pub auth: AuthConfig,
    /// Origins allowed for browsers besides the server's own origin.
    pub allowed_origins: Vec<String>,
    pub llm: LlmConfig,
    pub tool_timeout: Duration,
    pub socket_token_rate_per_minute: u32,
    pub max_message_bytes: u64,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    pub sse_keep_alive: Duration,
    pub log: crate::log::Settings,
    pub log_format: LogFormat,
    /// What a client can make the server hold ([`limits`]).
    pub limits: Limits,
    /// Set when this server is one node of several (`redis_url`).
    pub cluster: Option<ClusterConfig>,
    /// This node's name in logs, metrics and notices between nodes.
    pub node_id: String,
    /// Set by `serve --dev`.
    pub dev: bool,
    /// Where per-user files (the `--dev` secret) are kept, when set.
    pub data_dir: Option<PathBuf>,
    /// Deprecated settings in use, to be logged once logging is set up.
    pub deprecations: Vec<String>,
}

/// Several nodes on one PostgreSQL database and one Redis.
#[derive(Debug, Clone)]
pub struct ClusterConfig {
    pub redis_url: SecretString,
    /// Prefix of every Redis channel of this cluster (the adapter's, the
    /// commit notices' and the runs' control messages).
    pub prefix: String,
    /// How long a node's hold on a session's run lasts unless renewed.
    pub run_lease: Duration,
}

impl ClusterConfig {
    /// The Redis URL without credentials, for logs.
    pub fn redis_display(&self) -> String {
        redact_url(self.redis_url.expose_secret())
    }
}

#[derive(Debug, Clone)]
pub struct AuthConfig {
    pub jwt_secret: Option<SecretString>,
    pub jwt_public_key: Option<PathBuf>,
    pub jwt_issuer: Option<String>,
    pub jwt_audience: Option<String>,
    pub api_tokens: Vec<ApiToken>,
    pub cookie_name: String,
    pub disabled: bool,
}

impl AuthConfig {
    /// True when at least one way to authenticate is configured.
    pub fn any_method(&self) -> bool {
        self.jwt_secret.is_some() || self.jwt_public_key.is_some() || !self.api_tokens.is_empty()
    }
}

#[derive(Debug, Clone)]
pub struct ApiToken {
    pub user_id: String,
    pub token: SecretString,
}

#[derive(Debug, Clone)]
pub struct LlmConfig {
    pub provider: LlmProvider,
    pub base_url: Option<String>,
    pub api_key: Option<SecretString>,
    pub model: Option<String>,
    pub idle_timeout: Duration,
    pub max_steps: u32,
    pub scripted_delay: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LlmProvider {
    OpenAi,
    Scripted,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read the config file {path}: {cause}")]
    ReadFile {
        path: PathBuf,
        cause: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    ParseFile { path: PathBuf, message: String },
    #[error(
        "unknown setting `{key}` in {path}: switchboard has no such setting \
         (`switchboard serve --help` lists them; TOML keys are the flags with `_` for `-`)"
    )]
    UnknownKey { path: PathBuf, key: String },
    #[error("invalid {name}: {reason}")]
    Invalid { name: String, reason: String },
}

impl Config {
    /// Merges the layers: `file` is the `--config` path, if any; `flags`
    /// what the command line set; `dev` is `serve --dev`.
    pub fn load(file: Option<&Path>, flags: &Settings, dev: bool) -> Result<Self, ConfigError> {
        let layers = Layers::new(file, flags)?;
        let s: Settings = layers.extract()?;
        let limits = limits::resolve(&layers.extract()?, &layers)?;
        let invalid = |key: &str, reason: String| ConfigError::Invalid {
            name: layers.name(key),
            reason,
        };

        let redis_url = s.redis_url.filter(|url| !url.is_empty());
        if let Some(url) = &redis_url
            && !(url.starts_with("redis://") || url.starts_with("rediss://"))
        {
            return Err(invalid(
                "redis_url",
                "must start with redis:// or rediss://".into(),
            ));
        }
        let redis_prefix = s.redis_prefix.unwrap_or_else(|| "switchboard".into());
        let run_lease = s.run_lease.unwrap_or(Duration::from_secs(10));
        if run_lease < Duration::from_millis(500) {
            return Err(invalid("run_lease", "must be at least 500ms".into()));
        }
        check_node_id(&redis_prefix).map_err(|reason| invalid("redis_prefix", reason))?;
        let node_id = match s.node_id {
            Some(id) => check_node_id(&id).map(|()| id),
            None => Ok(default_node_id()),
        }
        .map_err(|reason| invalid("node_id", reason))?;
        if redis_url.is_some()
            && s.database_url
                .as_deref()
                .is_none_or(|url| !url.starts_with("postgres"))
        {
            return Err(invalid(
                "redis_url",
                format!(
                    "needs a PostgreSQL database: several nodes share one PostgreSQL, never \
                     a SQLite file (set {} to postgres://…)",
                    if s.database_url.is_some() {
                        layers.name("database_url")
                    } else {
                        "DATABASE_URL (or --database-url)".to_owned()
                    }
                ),
            ));
        }

        let bind_text = s.bind.unwrap_or_else(|| DEFAULT_BIND.into());
        let bind = bind_text
            .parse::<SocketAddr>()
            .map_err(|e| invalid("bind", format!("{bind_text:?} is not host:port ({e})")))?;
        if dev && !bind.ip().is_loopback() {
            return Err(invalid(
                "bind",
                format!(
                    "{bind} is not a loopback address, and --dev listens on loopback only: \
                     use 127.0.0.1 or [::1], or run without --dev"
                ),
            ));
        }

        let api_tokens = match s.api_tokens {
            Some(TokenList::Pairs(text)) => parse_token_pairs(&text),
            Some(TokenList::Table(map)) => map
                .into_iter()
                .map(|(user_id, token)| api_token(user_id, token))
                .collect(),
            None => Ok(Vec::new()),
        }
        .map_err(|reason| invalid("api_tokens", reason))?;

        let allowed_origins = s
            .allowed_origins
            .as_ref()
            .map(StringList::items)
            .unwrap_or_default()
            .iter()
            .map(|o| crate::http::origin::normalize(o))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|reason| invalid("allowed_origins", reason))?;

        let provider = match s.llm_provider.as_deref().unwrap_or("scripted") {
            "openai" => LlmProvider::OpenAi,
            "scripted" => LlmProvider::Scripted,
            other => {
                return Err(invalid(
                    "llm_provider",
                    format!("{other:?} is neither `openai` nor `scripted`"),
                ));
            }
        };

        let secret = |v: Option<String>| v.filter(|v| !v.is_empty()).map(SecretString::from);
        let config = Config {
            bind,
            database_url: SecretString::from(
                s.database_url
                    .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            ),
            auth: AuthConfig {
                jwt_secret: secret(s.jwt_secret),
                jwt_public_key: s.jwt_public_key,
                jwt_issuer: s.jwt_issuer.filter(|v| !v.is_empty()),
                jwt_audience: s.jwt_audience.filter(|v| !v.is_empty()),
                api_tokens,
                cookie_name: s.cookie_name.unwrap_or_else(|| DEFAULT_COOKIE_NAME.into()),
                disabled: s.auth_disabled.unwrap_or(false),
            },
            allowed_origins,
            llm: LlmConfig {
                provider,
                base_url: s.llm_base_url,
                api_key: secret(s.llm_api_key),
                model: s.llm_model,
                idle_timeout: s.llm_idle_timeout.unwrap_or(Duration::from_secs(60)),
                max_steps: s.llm_max_steps.unwrap_or(25).max(1),
                scripted_delay: s.scripted_delay.unwrap_or(Duration::from_millis(30)),
            },
            tool_timeout: s.tool_timeout.unwrap_or(Duration::from_secs(120)),
            socket_token_rate_per_minute: s.socket_token_rate.unwrap_or(20),
            max_message_bytes: s.max_message_bytes.unwrap_or(4 * 1024 * 1024),
            max_body_bytes: s.max_body_bytes.unwrap_or(5 * 1024 * 1024),
            shutdown_timeout: s.shutdown_timeout.unwrap_or(Duration::from_secs(10)),
            sse_keep_alive: s.sse_keep_alive.unwrap_or(Duration::from_secs(15)),
            log: crate::log::Settings {
                max_events: s.retention_max_events.filter(|n| *n > 0),
                max_age: s.retention_max_age,
                page_bytes: limits.max_page_bytes,
                lag_timeout: s.lag_timeout.unwrap_or(Duration::from_secs(30)),
                ..Default::default()
            },
            log_format: s.log_format.unwrap_or(LogFormat::Text),
            cluster: redis_url.map(|url| ClusterConfig {
                redis_url: SecretString::from(url),
                prefix: redis_prefix,
                run_lease,
            }),
            node_id,
            limits,
            dev,
            data_dir: s.data_dir,
            deprecations: layers.notices.clone(),
        };
        config.validate(&layers)?;
        Ok(config)
    }

    fn validate(&self, layers: &Layers) -> Result<(), ConfigError> {
        let invalid = |key: &str, reason: &str| ConfigError::Invalid {
            name: layers.name(key),
            reason: reason.to_owned(),
        };
        if self.socket_token_rate_per_minute == 0 {
            return Err(invalid("socket_token_rate", "must be at least 1"));
        }
        if self.max_message_bytes < 2 * 1024 * 1024 {
            return Err(invalid(
                "max_message_bytes",
                "must be at least 2 MiB (2097152)",
            ));
        }
        if self.auth.cookie_name.is_empty() {
            return Err(invalid("cookie_name", "must not be empty"));
        }
        if self.tool_timeout.is_zero() {
            return Err(invalid("tool_timeout", "must be more than 0"));
        }
        self.limits.validate(self.max_body_bytes, layers)?;
        let url = self.database_url.expose_secret();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(invalid(
                "database_url",
                "must start with sqlite: or postgres://",
            ));
        }
        Ok(())
    }

    /// The database URL without credentials, for logs and messages.
    pub fn database_display(&self) -> String {
        redact_url(self.database_url.expose_secret())
    }

    /// The SQLite database file, when the database is a SQLite file.
    pub fn sqlite_path(&self) -> Option<PathBuf> {
        sqlite_path(self.database_url.expose_secret())
    }
}

fn parse_token_pairs(text: &str) -> Result<Vec<ApiToken>, String> {
    value::split_list(text)
        .into_iter()
        .enumerate()
        .map(|(i, pair)| {
            let (user, token) = pair
                .split_once(':')
                .ok_or_else(|| format!("entry {} is not `user_id:token`", i + 1))?;
            api_token(user.trim().to_owned(), token.trim().to_owned())
        })
        .collect()
}

fn api_token(user_id: String, token: String) -> Result<ApiToken, String> {
    if token.is_empty() {
        return Err("tokens must not be empty".into());
    }
    crate::auth::UserId::parse(&user_id).map_err(|why| format!("{user_id:?}: {why}"))?;
    Ok(ApiToken {
        user_id,
        token: SecretString::from(token),
    })
}

/// A node id: 1 to 64 of `A-Z a-z 0-9 . _ -` (it goes into metric labels
/// and log fields as it is).
fn check_node_id(id: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
    if id.is_empty() || id.len() > 64 || !id.chars().all(allowed) {
        return Err(format!(
            "{id:?} must be 1 to 64 letters, digits, `.`, `_` or `-`"
        ));
    }
    Ok(())
}

/// `HOSTNAME-PID` (the host's name as the kernel has it, cut to what a node
/// id allows), or a UUID v7 when the host has no usable name. Unique among
/// live processes, readable in logs; a restarted process is a new node.
fn default_node_id() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_default();
    let host: String = host
        .trim()
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        .take(48)
        .collect();
    if host.is_empty() {
        uuid::Uuid::now_v7().to_string()
    } else {
        format!("{host}-{}", std::process::id())
    }
}

fn redact_url(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://***@{host}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

fn sqlite_path(url: &str) -> Option<PathBuf> {
    let rest = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))?;
    let path = rest.split('?').next().unwrap_or_default();
    if path.is_empty() || path == ":memory:" {
        return None;
    }
    Some(PathBuf::from(path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls_are_logged_without_credentials() {
        assert_eq!(
            redact_url("postgres://sb:hunter2@db:5432/sb"),
            "postgres://***@db:5432/sb"
        );
        assert_eq!(
            redact_url("sqlite://x.db?mode=rwc"),
            "sqlite://x.db?mode=rwc"
        );
    }

    #[test]
    fn sqlite_paths_are_read_from_urls() {
        assert_eq!(
            sqlite_path("sqlite://data/sb.db?mode=rwc"),
            Some(PathBuf::from("data/sb.db"))
        );
        assert_eq!(sqlite_path("sqlite::memory:"), None);
        assert_eq!(sqlite_path("postgres://x"), None);
    }

    #[test]
    fn node_ids_are_short_and_plain() {
        assert!(check_node_id("node-1.eu_west").is_ok());
        assert!(check_node_id("").is_err());
        assert!(check_node_id("a b").is_err());
        assert!(check_node_id(&"x".repeat(65)).is_err());
        assert!(check_node_id(&default_node_id()).is_ok());
    }

    #[test]
    fn token_pairs_name_the_bad_entry() {
        let err = parse_token_pairs("alice:t1,bob").unwrap_err();
        assert!(err.contains("entry 2"), "{err}");
        let ok = parse_token_pairs(" alice:t1 , bob:t2 ").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].user_id, "bob");
    }
}
