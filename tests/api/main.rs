//! Integration tests: the real server on port 0, a fresh database each,
//! driven through HTTP and a Rust Socket.IO client.

mod cli;
mod cluster;
mod cluster_runs;
mod console;
mod handshake;
mod helpers;
mod http;
mod ingest;
mod limits_buffer;
mod limits_gateways;
mod limits_input;
mod limits_pages;
mod limits_runs;
mod limits_transport;
mod log;
mod log_commits;
mod log_heads;
mod mock_llm;
mod provider;
mod run_failures;
mod runs;
mod runs_control;
mod sessions;
mod shutdown;
mod startup;
mod store_failures;
mod tools;
