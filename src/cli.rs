//! The command line: `serve`, `migrate` and `token`.
//!
//! Every setting can also come from the environment (shown in `--help`) or
//! from a TOML file (`--config`); [`crate::config::Config::load`] merges the
//! layers in the order defaults < file < environment < flags. Clap resolves
//! the last two, so an `Option` here that is `None` means "neither a flag nor
//! an environment variable set it".

use std::path::PathBuf;

use clap::builder::BoolishValueParser;
use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Realtime Socket.IO hub for coding agents",
    long_about = "Switchboard is a Socket.IO server for coding-agent products: UIs connect to \
                  /agent, desktop gateways to /gateway, and every session is a durable event \
                  log that clients replay after a refresh, a network drop or a restart.\n\n\
                  Settings come from, in rising priority: built-in defaults, a TOML file \
                  (--config), environment variables, command-line flags."
)]
pub struct Cli {
    /// TOML configuration file; its keys are the long flag names with `_` for `-`.
    #[arg(long, env = "SWITCHBOARD_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log output: human-readable `text` or one JSON object per line.
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: apply pending migrations, then serve HTTP and Socket.IO
    /// until SIGINT or SIGTERM.
    Serve(ServeArgs),
    /// Apply pending database migrations and exit.
    Migrate(Settings),
    /// Print a signed JWT (HS256, with SWITCHBOARD_JWT_SECRET or the --dev
    /// secret) for local clients.
    Token(TokenArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Out-of-the-box development mode: loopback only, SQLite, the scripted
    /// model unless one is configured, and (when no authentication is
    /// configured) a JWT secret generated once and kept next to the database.
    /// Prints a ready-to-use token and the console URL.
    #[arg(long)]
    pub dev: bool,

    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id, written to the token's `sub`.
    #[arg(long, value_name = "ID")]
    pub user: String,
    /// `admin` may see every session; `user` (the default) only their own.
    #[arg(long, value_enum, default_value = "user")]
    pub role: crate::auth::Role,
    /// How long the token is valid, e.g. `30m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    pub ttl: std::time::Duration,
    /// Audience (`aud`) to write; defaults to SWITCHBOARD_JWT_AUDIENCE when set.
    #[arg(long)]
    pub audience: Option<String>,

    #[command(flatten)]
    pub settings: Settings,
}

/// Settings shared by every subcommand. Secrets never appear in `--help`
/// output with their values, nor in `Debug` once resolved into a
/// [`crate::config::Config`].
#[derive(Debug, Default, Args)]
pub struct Settings {
    /// Listen address [default: 127.0.0.1:8200]
    #[arg(long, env = "SWITCHBOARD_BIND", value_name = "ADDR")]
    pub bind: Option<String>,

    /// `sqlite://…` or `postgres://…` [default: sqlite://switchboard.db?mode=rwc]
    #[arg(long, env = "DATABASE_URL", value_name = "URL", hide_env_values = true)]
    pub database_url: Option<String>,

    /// HS256 secret; enables JWT authentication.
    #[arg(long, env = "SWITCHBOARD_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// PEM public key (RS256, ES256 or EdDSA); enables JWT authentication.
    #[arg(long, env = "SWITCHBOARD_JWT_PUBLIC_KEY", value_name = "FILE")]
    pub jwt_public_key: Option<PathBuf>,

    /// Required `iss` of JWTs.
    #[arg(long, env = "SWITCHBOARD_JWT_ISSUER")]
    pub jwt_issuer: Option<String>,

    /// Required `aud` of JWTs (socket tokens, `aud` = `socket`, are accepted
    /// at Socket.IO handshakes regardless).
    #[arg(long, env = "SWITCHBOARD_JWT_AUDIENCE")]
    pub jwt_audience: Option<String>,

    /// Comma-separated `user_id:token` pairs; enables static-token authentication.
    #[arg(long, env = "SWITCHBOARD_API_TOKENS", hide_env_values = true)]
    pub api_tokens: Option<String>,

    /// Cookie that carries a JWT [default: sb_session]
    #[arg(long, env = "SWITCHBOARD_COOKIE_NAME")]
    pub cookie_name: Option<String>,

    /// `1`: every connection is user `anonymous` (development only).
    #[arg(
        long,
        env = "SWITCHBOARD_AUTH_DISABLED",
        value_parser = BoolishValueParser::new(),
        num_args = 0..=1,
        default_missing_value = "true",
    )]
    pub auth_disabled: Option<bool>,

    /// Comma-separated origins allowed for browsers (CORS and handshake
    /// `Origin`) [default: same-origin only]
    #[arg(long, env = "SWITCHBOARD_ALLOWED_ORIGINS")]
    pub allowed_origins: Option<String>,

    /// `openai` (any OpenAI-compatible endpoint) or `scripted` [default: scripted]
    #[arg(long, env = "SWITCHBOARD_LLM_PROVIDER")]
    pub llm_provider: Option<String>,

    /// Base URL of the OpenAI-compatible API, e.g. http://127.0.0.1:11434/v1
    #[arg(long, env = "SWITCHBOARD_LLM_BASE_URL")]
    pub llm_base_url: Option<String>,

    /// Sent to the provider as `Authorization: Bearer`.
    #[arg(long, env = "SWITCHBOARD_LLM_API_KEY", hide_env_values = true)]
    pub llm_api_key: Option<String>,

    /// Model name sent to the provider.
    #[arg(long, env = "SWITCHBOARD_LLM_MODEL")]
    pub llm_model: Option<String>,

    /// A provider stream silent this long ends the run with an error [default: 60s]
    #[arg(long, env = "SWITCHBOARD_LLM_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub llm_idle_timeout: Option<std::time::Duration>,

    /// Provider calls per run at most (each tool round is one) [default: 25]
    #[arg(long, env = "SWITCHBOARD_LLM_MAX_STEPS")]
    pub llm_max_steps: Option<u32>,

    /// Pause between the words the scripted model streams [default: 30ms]
    #[arg(long, env = "SWITCHBOARD_SCRIPTED_DELAY", value_parser = humantime::parse_duration)]
    pub scripted_delay: Option<std::time::Duration>,

    /// How long a relayed tool call may stay unanswered, in ms [default: 120000]
    #[arg(long, env = "SWITCHBOARD_TOOL_TIMEOUT_MS")]
    pub tool_timeout_ms: Option<u64>,

    /// Redis URL; enables the Redis adapter for several nodes.
    #[arg(long, env = "SWITCHBOARD_REDIS_URL", hide_env_values = true)]
    pub redis_url: Option<String>,

    /// Requests per minute and client address to POST /v1/auth/socket-token [default: 20]
    #[arg(long, env = "SWITCHBOARD_SOCKET_TOKEN_RATE")]
    pub socket_token_rate: Option<u32>,

    /// Largest Socket.IO message accepted, in bytes [default: 4194304]
    #[arg(long, env = "SWITCHBOARD_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<u64>,

    /// Largest HTTP request body accepted, in bytes [default: 5242880]
    #[arg(long, env = "SWITCHBOARD_MAX_BODY_BYTES")]
    pub max_body_bytes: Option<usize>,

    /// Keep at most this many events per session; older ones are pruned
    /// [default: unlimited]
    #[arg(long, env = "SWITCHBOARD_RETENTION_MAX_EVENTS")]
    pub retention_max_events: Option<u64>,

    /// Prune events older than this, e.g. `30d` [default: never]
    #[arg(long, env = "SWITCHBOARD_RETENTION_MAX_AGE", value_parser = humantime::parse_duration)]
    pub retention_max_age: Option<std::time::Duration>,

    /// A subscriber that accepts no event for this long is sent
    /// `session:lagged` and dropped [default: 30s]
    #[arg(long, env = "SWITCHBOARD_LAG_TIMEOUT", value_parser = humantime::parse_duration)]
    pub lag_timeout: Option<std::time::Duration>,

    /// Comment sent on an idle Server-Sent Events stream this often [default: 15s]
    #[arg(long, env = "SWITCHBOARD_SSE_KEEP_ALIVE", value_parser = humantime::parse_duration)]
    pub sse_keep_alive: Option<std::time::Duration>,

    /// How long shutdown waits for in-flight work, e.g. `10s` [default: 10s]
    #[arg(long, env = "SWITCHBOARD_SHUTDOWN_TIMEOUT", value_parser = humantime::parse_duration)]
    pub shutdown_timeout: Option<std::time::Duration>,

    #[command(flatten)]
    pub limits: LimitSettings,
}

/// The limits on what clients can make the server hold (README, "Limits").
/// Rates are written `600/min`, `10/s`, `1000/h` (byte rates `32MiB/s`), or
/// `unlimited`.
#[derive(Debug, Default, Args)]
#[command(next_help_heading = "Limits")]
pub struct LimitSettings {
    /// Open connections in total; lowered to fit the file-descriptor limit
    /// [default: 16384]
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS", value_name = "N")]
    pub max_connections: Option<usize>,

    /// Open connections per client address (trusted proxies are exempt)
    /// [default: 256]
    #[arg(long, env = "SWITCHBOARD_MAX_CONNECTIONS_PER_IP", value_name = "N")]
    pub max_connections_per_ip: Option<usize>,

    /// A request head must arrive within this; idle kept-alive connections
    /// close after it [default: 10s]
    #[arg(long, env = "SWITCHBOARD_HEADER_TIMEOUT", value_parser = humantime::parse_duration)]
    pub header_timeout: Option<std::time::Duration>,

    /// An HTTP connection whose client stalls this long (a request body
    /// that stops coming, a response nobody reads) is closed [default: 60s]
    #[arg(long, env = "SWITCHBOARD_IDLE_TIMEOUT", value_parser = humantime::parse_duration)]
    pub idle_timeout: Option<std::time::Duration>,

    /// An Engine.IO session that opens no namespace within this is closed
    /// [default: 10s]
    #[arg(long, env = "SWITCHBOARD_CONNECT_TIMEOUT", value_parser = humantime::parse_duration)]
    pub connect_timeout: Option<std::time::Duration>,

    /// New Engine.IO sessions per client address [default: 1200/min]
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_RATE", value_name = "RATE")]
    pub handshake_rate: Option<String>,

    /// New Engine.IO sessions in total [default: 12000/min]
    #[arg(long, env = "SWITCHBOARD_HANDSHAKE_RATE_TOTAL", value_name = "RATE")]
    pub handshake_rate_total: Option<String>,

    /// Comma-separated proxy addresses or networks (`10.0.0.0/8`) whose
    /// X-Forwarded-For / Forwarded headers name the client [default: none]
    #[arg(long, env = "SWITCHBOARD_TRUSTED_PROXIES", value_name = "NETS")]
    pub trusted_proxies: Option<String>,

    /// Comma-separated Host names the server answers (`sb.example.com`,
    /// `localhost:8200`); others get 421 [default: any]
    #[arg(long, env = "SWITCHBOARD_ALLOWED_HOSTS", value_name = "HOSTS")]
    pub allowed_hosts: Option<String>,

    /// Socket.IO requests per connected socket [default: 100/s]
    #[arg(long, env = "SWITCHBOARD_REQUEST_RATE", value_name = "RATE")]
    pub request_rate: Option<String>,

    /// Sessions one user may own; 0 is unlimited [default: 10000]
    #[arg(long, env = "SWITCHBOARD_MAX_SESSIONS_PER_USER", value_name = "N")]
    pub max_sessions_per_user: Option<u64>,

    /// Sessions one user may create [default: 60/min]
    #[arg(long, env = "SWITCHBOARD_SESSION_RATE", value_name = "RATE")]
    pub session_rate: Option<String>,

    /// Events one user may append over HTTP [default: 10000/s]
    #[arg(long, env = "SWITCHBOARD_INGEST_RATE", value_name = "RATE")]
    pub ingest_rate: Option<String>,

    /// Bytes of events one user may append over HTTP [default: 32MiB/s]
    #[arg(long, env = "SWITCHBOARD_INGEST_BYTES_RATE", value_name = "RATE")]
    pub ingest_bytes_rate: Option<String>,

    /// `agent:execute` requests one user may make [default: 120/min]
    #[arg(long, env = "SWITCHBOARD_EXECUTE_RATE", value_name = "RATE")]
    pub execute_rate: Option<String>,

    /// Runs queued behind a session's active run [default: 16]
    #[arg(long, env = "SWITCHBOARD_MAX_QUEUED_RUNS", value_name = "N")]
    pub max_queued_runs: Option<usize>,

    /// Runs one user may have queued across all their sessions [default: 64]
    #[arg(long, env = "SWITCHBOARD_MAX_QUEUED_RUNS_PER_USER", value_name = "N")]
    pub max_queued_runs_per_user: Option<usize>,

    /// Gateways one user may have registered at once [default: 16]
    #[arg(long, env = "SWITCHBOARD_MAX_GATEWAYS_PER_USER", value_name = "N")]
    pub max_gateways_per_user: Option<usize>,

    /// Bytes of events or messages in one page or catch-up batch (at least
    /// one is always sent) [default: 4194304]
    #[arg(long, env = "SWITCHBOARD_MAX_PAGE_BYTES", value_name = "BYTES")]
    pub max_page_bytes: Option<usize>,

    /// Bytes queued for one Socket.IO connection that is not reading; its
    /// subscriptions then catch up from the log once it reads again
    /// [default: 4194304]
    #[arg(
        long,
        env = "SWITCHBOARD_MAX_SOCKET_BUFFER_BYTES",
        value_name = "BYTES"
    )]
    pub max_socket_buffer_bytes: Option<usize>,
}
