//! [`Settings`]: every setting of the server, once. The same type is the
//! `serve` command's flags (clap), the keys of a TOML file and the
//! environment's variables (serde, through [`super::layers`]): flag
//! `--tool-timeout`, key `tool_timeout`, variable `SWITCHBOARD_TOOL_TIMEOUT`
//! (`DATABASE_URL` is the one variable without the prefix). `None` means
//! "not set in this layer"; the defaults are applied when the layers are
//! resolved into a [`super::Config`], and are the ones the help shows.

use std::path::PathBuf;
use std::sync::LazyLock;
use std::time::Duration;

use clap::{Args, ValueEnum};
use serde::{Deserialize, Serialize};

use super::limits::LimitSettings;
use super::value::{self, StringList};

/// Log output: human-readable `text` or one JSON object per line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

/// `api_tokens`: the `"user:token,…"` text, or a TOML table.
#[derive(Clone, Serialize, Deserialize)]
#[serde(untagged)]
pub enum TokenList {
    Pairs(String),
    Table(std::collections::BTreeMap<String, String>),
}

impl From<&str> for TokenList {
    fn from(text: &str) -> Self {
        Self::Pairs(text.to_owned())
    }
}

impl std::str::FromStr for TokenList {
    type Err = std::convert::Infallible;
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Self::Pairs(text.to_owned()))
    }
}

/// The server's settings. Not `Debug`: it holds secrets as plain text until
/// they are resolved into [`super::Config`].
#[derive(Clone, Default, Args, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Listen address [default: 127.0.0.1:8200]
    #[arg(long, value_name = "ADDR")]
    pub bind: Option<String>,

    /// `sqlite://FILE` (created when missing) or `postgres://…`
    /// [default: sqlite://switchboard.db]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,

    /// HS256 secret; enables JWT authentication.
    #[arg(long, value_name = "SECRET")]
    pub jwt_secret: Option<String>,

    /// PEM public key (RS256, ES256 or EdDSA); enables JWT authentication.
    #[arg(long, value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// Required `iss` of JWTs.
    #[arg(long)]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of JWTs (socket tokens, `aud` = `socket`, are accepted
    /// at Socket.IO handshakes regardless).
    #[arg(long)]
    pub jwt_audience: Option<String>,

    /// Comma-separated `user_id:token` pairs; enables static-token authentication.
    #[arg(long, value_name = "PAIRS")]
    pub api_tokens: Option<TokenList>,

    /// Cookie that carries a JWT [default: sb_session]
    #[arg(long)]
    pub cookie_name: Option<String>,

    /// `1` (or `true`): every connection is user `anonymous`, for local
    /// development only; `0` (or `false`) [default: 0]
    #[arg(
        long,
        value_name = "1|0",
        value_parser = value::parse_bool,
        num_args = 0..=1,
        default_missing_value = "1",
    )]
    #[serde(deserialize_with = "value::boolean::deserialize")]
    pub auth_disabled: Option<bool>,

    /// Comma-separated origins allowed for browsers (CORS and handshake
    /// `Origin`), like `https://app.example.com` [default: same-origin only]
    #[arg(long, value_name = "ORIGINS")]
    pub allowed_origins: Option<StringList>,

    /// `openai` (any OpenAI-compatible endpoint) or `scripted` [default: scripted]
    #[arg(long, value_name = "NAME")]
    pub llm_provider: Option<String>,

    /// Base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:11434/v1
    #[arg(long, value_name = "URL")]
    pub llm_base_url: Option<String>,

    /// Sent to the provider as `Authorization: Bearer`.
    #[arg(long, value_name = "KEY")]
    pub llm_api_key: Option<String>,

    /// Model name sent to the provider.
    #[arg(long, value_name = "NAME")]
    pub llm_model: Option<String>,

    /// A provider stream silent this long ends the run with an error [default: 60s]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub llm_idle_timeout: Option<Duration>,

    /// Provider calls per run at most (each tool round is one) [default: 25]
    #[arg(long, value_name = "N")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub llm_max_steps: Option<u32>,

    /// Pause between the words the scripted model streams [default: 30ms]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub scripted_delay: Option<Duration>,

    /// How long a relayed tool call may stay unanswered [default: 120s]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub tool_timeout: Option<Duration>,

    /// Deprecated: `tool_timeout` in milliseconds (read as `tool_timeout`).
    #[arg(long, value_name = "MS", hide = true)]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub tool_timeout_ms: Option<u64>,

    /// `redis://…`: run as one node of several, with every node on the same
    /// PostgreSQL database and this Redis (docs/deploy.md) [default: unset, one node]
    #[arg(long, value_name = "URL")]
    pub redis_url: Option<String>,

    /// Prefix of the Redis channels, shared by the nodes of one cluster
    /// [default: switchboard]
    #[arg(long, value_name = "PREFIX")]
    pub redis_prefix: Option<String>,

    /// This node's name in logs, metrics and messages between nodes;
    /// unique among live nodes [default: HOSTNAME-PID]
    #[arg(long, value_name = "ID")]
    pub node_id: Option<String>,

    /// Several nodes: how long a node's hold on a session's run lasts
    /// unless renewed; a dead node's runs are taken over about this long
    /// after it stopped [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub run_lease: Option<Duration>,

    /// Requests per minute and client address to POST /v1/auth/socket-token [default: 20]
    #[arg(long, value_name = "N")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub socket_token_rate: Option<u32>,

    /// Largest Socket.IO message accepted, in bytes [default: 4194304]
    #[arg(long, value_name = "BYTES")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub max_message_bytes: Option<u64>,

    /// Largest HTTP request body accepted, in bytes [default: 5242880]
    #[arg(long, value_name = "BYTES")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub max_body_bytes: Option<usize>,

    /// Keep at most this many events per session; older ones are pruned
    /// [default: unlimited]
    #[arg(long, value_name = "N")]
    #[serde(deserialize_with = "value::number::deserialize")]
    pub retention_max_events: Option<u64>,

    /// Prune events older than this, e.g. `30d` [default: never]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub retention_max_age: Option<Duration>,

    /// A subscriber that accepts no event for this long is sent
    /// `session:lagged` and dropped [default: 30s]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub lag_timeout: Option<Duration>,

    /// Comment sent on an idle Server-Sent Events stream this often [default: 15s]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub sse_keep_alive: Option<Duration>,

    /// How long shutdown waits for in-flight work [default: 10s]
    #[arg(long, value_name = "DURATION", value_parser = value::parse_duration)]
    #[serde(with = "value::duration")]
    pub shutdown_timeout: Option<Duration>,

    /// Where `--dev` keeps its JWT secret (mode 0600)
    /// [default: $XDG_DATA_HOME/switchboard or ~/.local/share/switchboard]
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// `text` or `json`: the global `--log-format`.
    #[arg(skip)]
    pub log_format: Option<LogFormat>,

    #[command(flatten)]
    #[serde(skip)]
    pub limits: LimitSettings,
}

impl Settings {
    /// Every key a TOML file may set (the long flag names with `_` for `-`),
    /// which are also the settings the environment is read for.
    pub fn keys() -> &'static [String] {
        static KEYS: LazyLock<Vec<String>> = LazyLock::new(|| {
            Settings::augment_args(clap::Command::new("settings"))
                .get_arguments()
                .map(|arg| arg.get_id().to_string())
                .chain(["log_format".to_owned()])
                .collect()
        });
        &KEYS
    }
}

/// The environment variable of a setting.
pub fn env_var(key: &str) -> String {
    match key {
        "database_url" => "DATABASE_URL".to_owned(),
        key => format!("SWITCHBOARD_{}", key.to_ascii_uppercase()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_cover_the_flags_the_limits_and_the_log_format() {
        let keys = Settings::keys();
        for key in [
            "bind",
            "tool_timeout",
            "max_page_bytes",
            "log_format",
            "data_dir",
        ] {
            assert!(keys.iter().any(|k| k == key), "{key}");
        }
        assert!(!keys.iter().any(|k| k == "limits" || k == "config"));
        assert_eq!(env_var("max_page_bytes"), "SWITCHBOARD_MAX_PAGE_BYTES");
        assert_eq!(env_var("database_url"), "DATABASE_URL");
    }
}
