//! Resolved configuration: built-in defaults < TOML file < environment < flags.
//!
//! [`Config`] is what the rest of the server reads. Secrets are held as
//! [`SecretString`], whose `Debug` prints a placeholder, and the database URL
//! is only ever logged through [`Config::database_display`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;

use crate::cli::{LogFormat, Settings};

pub mod limits;
pub use limits::{Limits, Rate};

pub const DEFAULT_BIND: &str = "127.0.0.1:8200";
pub const DEFAULT_DATABASE_URL: &str = "sqlite://switchboard.db?mode=rwc";
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
    pub redis_url: Option<SecretString>,
    pub socket_token_rate_per_minute: u32,
    pub max_message_bytes: u64,
    pub max_body_bytes: usize,
    pub shutdown_timeout: Duration,
    pub sse_keep_alive: Duration,
    pub log: crate::log::Settings,
    pub log_format: LogFormat,
    /// What a client can make the server hold ([`limits`]).
    pub limits: Limits,
    /// Set by `serve --dev`.
    pub dev: bool,
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
    #[error("cannot read config file {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {source}")]
    ParseFile {
        path: PathBuf,
        source: Box<toml::de::Error>,
    },
    #[error("invalid {name}: {reason}")]
    Invalid { name: &'static str, reason: String },
}

impl ConfigError {
    fn invalid(name: &'static str, reason: impl Into<String>) -> Self {
        Self::Invalid {
            name,
            reason: reason.into(),
        }
    }
}

/// The TOML file: the same settings as the flags, with `_` for `-`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    bind: Option<String>,
    database_url: Option<String>,
    jwt_secret: Option<String>,
    jwt_public_key: Option<PathBuf>,
    jwt_issuer: Option<String>,
    jwt_audience: Option<String>,
    api_tokens: Option<TokenList>,
    cookie_name: Option<String>,
    auth_disabled: Option<bool>,
    allowed_origins: Option<StringList>,
    llm_provider: Option<String>,
    llm_base_url: Option<String>,
    llm_api_key: Option<String>,
    llm_model: Option<String>,
    #[serde(default, with = "humantime_serde_opt")]
    llm_idle_timeout: Option<Duration>,
    llm_max_steps: Option<u32>,
    #[serde(default, with = "humantime_serde_opt")]
    scripted_delay: Option<Duration>,
    tool_timeout_ms: Option<u64>,
    redis_url: Option<String>,
    socket_token_rate: Option<u32>,
    max_message_bytes: Option<u64>,
    max_body_bytes: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    shutdown_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    sse_keep_alive: Option<Duration>,
    retention_max_events: Option<u64>,
    #[serde(default, with = "humantime_serde_opt")]
    retention_max_age: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    lag_timeout: Option<Duration>,
    log_format: Option<LogFormat>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    #[serde(default, with = "humantime_serde_opt")]
    header_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    idle_timeout: Option<Duration>,
    #[serde(default, with = "humantime_serde_opt")]
    connect_timeout: Option<Duration>,
    handshake_rate: Option<String>,
    handshake_rate_total: Option<String>,
    trusted_proxies: Option<StringList>,
    allowed_hosts: Option<StringList>,
    request_rate: Option<String>,
    max_sessions_per_user: Option<u64>,
    session_rate: Option<String>,
    ingest_rate: Option<String>,
    ingest_bytes_rate: Option<String>,
    execute_rate: Option<String>,
    max_queued_runs: Option<usize>,
    max_queued_runs_per_user: Option<usize>,
    max_gateways_per_user: Option<usize>,
    max_page_bytes: Option<usize>,
    max_socket_buffer_bytes: Option<usize>,
}

/// `api_tokens` in TOML: the environment's `"user:token,…"` form or a table.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum TokenList {
    Pairs(String),
    Table(BTreeMap<String, String>),
}

/// `allowed_origins` in TOML: a comma-separated string or an array.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum StringList {
    Joined(String),
    List(Vec<String>),
}

mod humantime_serde_opt {
    use serde::{Deserialize, Deserializer};
    use std::time::Duration;

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Option::<String>::deserialize(d)?
            .map(|s| humantime::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }
}

impl Config {
    /// Merges the layers. `file` is the `--config` path, if any; `log_format`
    /// the flag or environment value, if any.
    pub fn load(
        file: Option<&Path>,
        log_format: Option<LogFormat>,
        settings: Settings,
        dev: bool,
    ) -> Result<Self, ConfigError> {
        let file = match file {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let s = settings;
        let limits = limits::from_layers(&s.limits, &file)?;

        let bind_text = s.bind.or(file.bind).unwrap_or_else(|| DEFAULT_BIND.into());
        let bind = bind_text.parse::<SocketAddr>().map_err(|e| {
            ConfigError::invalid(
                "SWITCHBOARD_BIND",
                format!("{bind_text:?} is not host:port ({e})"),
            )
        })?;

        let api_tokens = match s.api_tokens.map(TokenList::Pairs).or(file.api_tokens) {
            Some(TokenList::Pairs(text)) => parse_token_pairs(&text)?,
            Some(TokenList::Table(map)) => map
                .into_iter()
                .map(|(user_id, token)| api_token(user_id, token))
                .collect::<Result<_, _>>()?,
            None => Vec::new(),
        };

        let allowed_origins = list(s.allowed_origins, file.allowed_origins)
            .into_iter()
            .map(|o| normalize_origin(&o))
            .collect::<Result<Vec<_>, _>>()?;

        let provider = match s
            .llm_provider
            .or(file.llm_provider)
            .as_deref()
            .unwrap_or("scripted")
        {
            "openai" => LlmProvider::OpenAi,
            "scripted" => LlmProvider::Scripted,
            other => {
                return Err(ConfigError::invalid(
                    "SWITCHBOARD_LLM_PROVIDER",
                    format!("{other:?} is neither `openai` nor `scripted`"),
                ));
            }
        };

        let secret = |v: Option<String>| v.filter(|v| !v.is_empty()).map(SecretString::from);
        let jwt_secret = secret(s.jwt_secret.or(file.jwt_secret));

        let config = Config {
            bind,
            database_url: SecretString::from(
                s.database_url
                    .or(file.database_url)
                    .unwrap_or_else(|| DEFAULT_DATABASE_URL.into()),
            ),
            auth: AuthConfig {
                jwt_secret,
                jwt_public_key: s.jwt_public_key.or(file.jwt_public_key),
                jwt_issuer: s.jwt_issuer.or(file.jwt_issuer).filter(|v| !v.is_empty()),
                jwt_audience: s
                    .jwt_audience
                    .or(file.jwt_audience)
                    .filter(|v| !v.is_empty()),
                api_tokens,
                cookie_name: s
                    .cookie_name
                    .or(file.cookie_name)
                    .unwrap_or_else(|| DEFAULT_COOKIE_NAME.into()),
                disabled: s.auth_disabled.or(file.auth_disabled).unwrap_or(false),
            },
            allowed_origins,
            llm: LlmConfig {
                provider,
                base_url: s.llm_base_url.or(file.llm_base_url),
                api_key: secret(s.llm_api_key.or(file.llm_api_key)),
                model: s.llm_model.or(file.llm_model),
                idle_timeout: s
                    .llm_idle_timeout
                    .or(file.llm_idle_timeout)
                    .unwrap_or(Duration::from_secs(60)),
                max_steps: s.llm_max_steps.or(file.llm_max_steps).unwrap_or(25).max(1),
                scripted_delay: s
                    .scripted_delay
                    .or(file.scripted_delay)
                    .unwrap_or(Duration::from_millis(30)),
            },
            tool_timeout: Duration::from_millis(
                s.tool_timeout_ms
                    .or(file.tool_timeout_ms)
                    .unwrap_or(120_000),
            ),
            redis_url: secret(s.redis_url.or(file.redis_url)),
            socket_token_rate_per_minute: s
                .socket_token_rate
                .or(file.socket_token_rate)
                .unwrap_or(20),
            max_message_bytes: s
                .max_message_bytes
                .or(file.max_message_bytes)
                .unwrap_or(4 * 1024 * 1024),
            max_body_bytes: s
                .max_body_bytes
                .or(file.max_body_bytes)
                .unwrap_or(5 * 1024 * 1024),
            shutdown_timeout: s
                .shutdown_timeout
                .or(file.shutdown_timeout)
                .unwrap_or(Duration::from_secs(10)),
            sse_keep_alive: s
                .sse_keep_alive
                .or(file.sse_keep_alive)
                .unwrap_or(Duration::from_secs(15)),
            log: crate::log::Settings {
                max_events: s
                    .retention_max_events
                    .or(file.retention_max_events)
                    .filter(|n| *n > 0),
                max_age: s.retention_max_age.or(file.retention_max_age),
                page_bytes: limits.max_page_bytes,
                lag_timeout: s
                    .lag_timeout
                    .or(file.lag_timeout)
                    .unwrap_or(Duration::from_secs(30)),
                ..Default::default()
            },
            log_format: log_format.or(file.log_format).unwrap_or(LogFormat::Text),
            limits,
            dev,
        };
        config.validate()?;
        Ok(config)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.socket_token_rate_per_minute == 0 {
            return Err(ConfigError::invalid(
                "SWITCHBOARD_SOCKET_TOKEN_RATE",
                "must be at least 1",
            ));
        }
        if self.max_message_bytes < 2 * 1024 * 1024 {
            return Err(ConfigError::invalid(
                "SWITCHBOARD_MAX_MESSAGE_BYTES",
                "must be at least 2 MiB (2097152)",
            ));
        }
        if self.auth.cookie_name.is_empty() {
            return Err(ConfigError::invalid(
                "SWITCHBOARD_COOKIE_NAME",
                "must not be empty",
            ));
        }
        self.limits.validate(self.max_body_bytes)?;
        let url = self.database_url.expose_secret();
        if !(url.starts_with("sqlite:")
            || url.starts_with("postgres://")
            || url.starts_with("postgresql://"))
        {
            return Err(ConfigError::invalid(
                "DATABASE_URL",
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

/// `flag or environment` over `file`, as a list (comma-separated text or a
/// TOML array).
fn list(flag: Option<String>, file: Option<StringList>) -> Vec<String> {
    match flag.map(StringList::Joined).or(file) {
        Some(StringList::Joined(text)) => split_list(&text),
        Some(StringList::List(list)) => list,
        None => Vec::new(),
    }
}

fn string_list(file: &Option<StringList>) -> Option<StringList> {
    file.as_ref().map(|l| match l {
        StringList::Joined(text) => StringList::Joined(text.clone()),
        StringList::List(list) => StringList::List(list.clone()),
    })
}

fn read_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::ReadFile {
        path: path.to_owned(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::ParseFile {
        path: path.to_owned(),
        source: Box::new(source),
    })
}

fn split_list(text: &str) -> Vec<String> {
    text.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

fn parse_token_pairs(text: &str) -> Result<Vec<ApiToken>, ConfigError> {
    split_list(text)
        .into_iter()
        .enumerate()
        .map(|(i, pair)| {
            let (user, token) = pair.split_once(':').ok_or_else(|| {
                ConfigError::invalid(
                    "SWITCHBOARD_API_TOKENS",
                    format!("entry {} is not `user_id:token`", i + 1),
                )
            })?;
            api_token(user.trim().to_owned(), token.trim().to_owned())
        })
        .collect()
}

fn api_token(user_id: String, token: String) -> Result<ApiToken, ConfigError> {
    if token.is_empty() {
        return Err(ConfigError::invalid(
            "SWITCHBOARD_API_TOKENS",
            "tokens must not be empty",
        ));
    }
    crate::auth::UserId::parse(&user_id).map_err(|why| {
        ConfigError::invalid("SWITCHBOARD_API_TOKENS", format!("{user_id:?}: {why}"))
    })?;
    Ok(ApiToken {
        user_id,
        token: SecretString::from(token),
    })
}

/// `https://Example.com:443/` → `https://example.com`, as browsers send it.
fn normalize_origin(origin: &str) -> Result<String, ConfigError> {
    let trimmed = origin.trim().trim_end_matches('/');
    let (scheme, rest) = trimmed.split_once("://").ok_or_else(|| {
        ConfigError::invalid(
            "SWITCHBOARD_ALLOWED_ORIGINS",
            format!("{origin:?} is not an origin like https://app.example.com"),
        )
    })?;
    if rest.is_empty() || rest.contains('/') {
        return Err(ConfigError::invalid(
            "SWITCHBOARD_ALLOWED_ORIGINS",
            format!("{origin:?} is not an origin like https://app.example.com"),
        ));
    }
    let scheme = scheme.to_ascii_lowercase();
    let mut host = rest.to_ascii_lowercase();
    let default_port = match scheme.as_str() {
        "http" => ":80",
        "https" => ":443",
        _ => "",
    };
    if !default_port.is_empty() && host.ends_with(default_port) {
        host.truncate(host.len() - default_port.len());
    }
    Ok(format!("{scheme}://{host}"))
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
    fn origins_are_normalized_like_browsers_send_them() {
        assert_eq!(
            normalize_origin("https://App.Example.com:443/").unwrap(),
            "https://app.example.com"
        );
        assert_eq!(
            normalize_origin("http://localhost:5173").unwrap(),
            "http://localhost:5173"
        );
        assert!(normalize_origin("app.example.com").is_err());
    }

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
    fn token_pairs_name_the_bad_entry() {
        let err = parse_token_pairs("alice:t1,bob").unwrap_err().to_string();
        assert!(
            err.contains("SWITCHBOARD_API_TOKENS") && err.contains("entry 2"),
            "{err}"
        );
        let ok = parse_token_pairs(" alice:t1 , bob:t2 ").unwrap();
        assert_eq!(ok.len(), 2);
        assert_eq!(ok[1].user_id, "bob");
    }
}
