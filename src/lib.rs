//! Switchboard: a Socket.IO-compatible realtime server for coding agents.
//!
//! - [`app`] builds the server from a [`config::Config`] and runs it until shutdown.
//! - [`auth`] authenticates handshakes and HTTP requests (static tokens, JWTs, cookies).
//! - [`realtime`] holds the `/agent` and `/gateway` namespaces.
//! - [`http`] holds the HTTP routes and the layers shared with Socket.IO.
//! - [`log`] is the session event log: append, publish, subscribe, replay.
//! - [`sessions`] holds sessions, their ownership rule and their messages.
//! - [`engine`] runs agent turns: the LLM providers, the run lifecycle
//!   (execute, stop, interrupt, enqueue), the tool relay to desktop gateways
//!   (calls, approvals, questions to the user), recovery of runs a crash
//!   left active.
//! - [`db`] opens the database and applies the `migration` crate's migrations.

pub mod app;
pub mod auth;
pub mod cli;
pub mod cluster;
pub mod commands;
pub mod config;
pub mod db;
pub mod dev;
pub mod engine;
pub mod error;
pub mod events;
pub mod http;
pub mod ids;
pub mod log;
pub mod metrics;
pub mod payload;
pub mod quotas;
pub mod rate;
pub mod realtime;
pub mod sessions;
pub mod state;
pub mod telemetry;
pub mod time;

pub use app::Application;
pub use config::Config;
