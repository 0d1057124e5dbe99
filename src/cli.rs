//! The command line: `serve`, `migrate` and `token`.
//!
//! `serve` takes every setting as a flag ([`Settings`]); `migrate` and
//! `token` take only their own, and read the rest, like `serve`, from a TOML
//! file (`--config`) and the environment. [`crate::config::Config::load`]
//! merges the layers in the order defaults < file < environment < flags.
//! Each setting's help names its environment variable; [`parse`] adds them,
//! from the one rule that also reads them ([`crate::config::env_var`]).

use std::path::PathBuf;

use clap::{Args, CommandFactory, FromArgMatches, Parser, Subcommand};

use crate::config::{LogFormat, Settings, env_var};

#[derive(Parser)]
#[command(
    name = "switchboard",
    version,
    about = "Realtime Socket.IO hub for coding agents",
    long_about = "Switchboard is a Socket.IO server for coding-agent products: UIs connect to \
                  /agent, desktop gateways to /gateway, and every session is a durable event \
                  log that clients replay after a refresh, a network drop or a restart.\n\n\
                  Settings come from, in rising priority: built-in defaults, a TOML file \
                  (--config), environment variables, command-line flags.",
    after_help = "Every setting, with its flag and environment variable: switchboard serve --help"
)]
pub struct Cli {
    /// TOML configuration file; its keys are the long flag names of `serve`
    /// with `_` for `-`.
    #[arg(long, env = "SWITCHBOARD_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Log output: human-readable `text` or one JSON object per line
    /// [default: text]
    #[arg(long, env = "SWITCHBOARD_LOG_FORMAT", global = true, value_enum)]
    pub log_format: Option<LogFormat>,

    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand)]
pub enum Command {
    /// Run the server: apply pending migrations, then serve HTTP and Socket.IO
    /// until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Apply pending database migrations and exit.
    Migrate(MigrateArgs),
    /// Print a signed JWT (HS256, with SWITCHBOARD_JWT_SECRET or the --dev
    /// secret) for local clients.
    Token(TokenArgs),
}

#[derive(Args)]
pub struct ServeArgs {
    /// Out-of-the-box development mode: loopback only, SQLite, the scripted
    /// model unless one is configured, and (when no authentication is
    /// configured) a JWT secret generated once and kept in the per-user data
    /// directory (see --data-dir). Prints a ready-to-use token and the
    /// console URL.
    #[arg(long)]
    pub dev: bool,

    #[command(flatten)]
    pub settings: Settings,
}

#[derive(Args)]
pub struct MigrateArgs {
    /// `sqlite://FILE` or `postgres://…` [default: sqlite://switchboard.db]
    #[arg(long, value_name = "URL")]
    pub database_url: Option<String>,
}

#[derive(Args)]
pub struct TokenArgs {
    /// The user id, written to the token's `sub`.
    #[arg(long, value_name = "ID")]
    pub user: String,
    /// `admin` may see every session; `user` (the default) only their own.
    #[arg(long, value_enum, default_value = "user")]
    pub role: crate::auth::Role,
    /// How long the token is valid, e.g. `30m`, `1h`, `7d`.
    #[arg(long, default_value = "1h", value_parser = crate::config::parse_duration)]
    pub ttl: std::time::Duration,
    /// Audience (`aud`) to write; defaults to SWITCHBOARD_JWT_AUDIENCE when set.
    #[arg(long)]
    pub audience: Option<String>,
}

/// The command line, with each setting's variable in its help.
pub fn command() -> clap::Command {
    let with_variables = |command: clap::Command| {
        command.mut_args(|arg| {
            let key = arg.get_id().to_string();
            if !Settings::keys().contains(&key) {
                return arg;
            }
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            arg.help(format!("{help} [env: {}]", env_var(&key)))
        })
    };
    Cli::command()
        .mut_subcommand("serve", with_variables)
        .mut_subcommand("migrate", with_variables)
}

/// Parses the process's arguments, exiting with clap's message on an error
/// (or after printing the help).
pub fn parse() -> Cli {
    let matches = command().get_matches();
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}
