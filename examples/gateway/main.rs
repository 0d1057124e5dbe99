//! Desktop gateway relay: connects this machine to a Switchboard server and
//! runs the model's tool calls here.
//!
//! ```sh
//! cargo run --release -- serve --dev    # prints the URL and a `Token:` to use below
//! export SWITCHBOARD_TOKEN=eyJ…          # that token (`--token` works too, but shows in `ps`)
//! cargo run --release --example gateway -- --url http://127.0.0.1:8200 \
//!     [--gateway-id ID] [--root DIR]
//! ```
//!
//! The gateway connects to the Socket.IO namespace `/gateway` with the auth
//! payload `{ token }`, registers three tools (`read_file`, `list_dir`, and
//! `run_command`, which needs the user's approval) with `gateway:register`,
//! acknowledges each `tool:call` at once, runs it in `--root` (default: the
//! current directory; secrets there are never read or listed, see
//! [`secrets`]) and answers with `tool:result`. Calls are delivered at
//! least once: a call already running or answered in this process is not run
//! again (an answered one gets its stored result re-sent).
//!
//! It owns its reconnect loop: after the connection closes or fails it waits
//! with exponential backoff and equal jitter (500 ms doubling up to 30 s),
//! then connects and registers again; the backoff resets after each
//! successful registration. A refused token (`unauthorized: …`) ends the
//! process with status 2, since retrying cannot help. Ctrl-C disconnects and
//! exits 0. Logs go through `tracing` (`RUST_LOG`, default `info`).
//!
//! `run_command` runs `sh -c`, so this example is for Unix-like systems.

mod calls;
mod secrets;
mod tools;

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use clap::Parser;
use futures_util::FutureExt as _;
use serde_json::{Value, json};
use tf_rust_socketio::asynchronous::{Client, ClientBuilder};
use tf_rust_socketio::{Event, Payload};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};
use tracing_subscriber::EnvFilter;

use calls::CallLog;
use tools::Tools;

const NAMESPACE: &str = "/gateway";
/// Longest wait for the transport and for the namespace handshake each.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest wait for the ack of a request.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(15);
const BACKOFF_BASE_MS: u64 = 500;
const BACKOFF_CAP_MS: u64 = 30_000;
/// How the library reports a namespace `connect_error` as `Event::Error`.
const CONNECT_ERROR_PREFIX: &str = "Received an ConnectError frame: ";

#[derive(Parser)]
#[command(about = "Switchboard desktop gateway: runs the model's tool calls on this machine")]
struct Args {
    /// Server base URL, e.g. http://127.0.0.1:8200.
    #[arg(long, env = "SWITCHBOARD_URL")]
    url: String,
    /// Token sent as the Socket.IO auth `{ token }`. Prefer the environment
    /// variable: a flag's value shows in `ps` to every user of the machine.
    #[arg(long, env = "SWITCHBOARD_TOKEN", hide_env_values = true)]
    token: String,
    /// Stable name of this gateway: calls sent to it are sent again after it
    /// reconnects. [default: desktop-<hostname>]
    #[arg(long)]
    gateway_id: Option<String>,
    /// Directory the tools work in; they cannot reach outside it.
    #[arg(long, default_value = ".")]
    root: PathBuf,
}

#[tokio::main]
async fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        // Colours for a terminal only, not in a file or a pipe.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let args = Args::parse();
    if !(args.url.starts_with("http://") || args.url.starts_with("https://")) {
        error!(url = args.url, "--url must start with http:// or https://");
        return ExitCode::FAILURE;
    }
    let tools = match Tools::new(&args.root) {
        Ok(tools) => tools,
        Err(e) => {
            error!("{e:#}");
            return ExitCode::FAILURE;
        }
    };
    let gateway = Arc::new(Gateway {
        gateway_id: args.gateway_id.unwrap_or_else(default_gateway_id),
        url: args.url,
        token: args.token,
        tools,
        client: Mutex::default(),
        calls: Mutex::default(),
    });
    info!(
        gateway_id = gateway.gateway_id,
        root = %gateway.tools.root().display(),
        "gateway starting"
    );

    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        match tokio::signal::ctrl_c().await {
            Ok(()) => {
                info!("Ctrl-C: disconnecting");
                on_signal.cancel();
            }
            Err(e) => warn!(error = %e, "cannot listen for Ctrl-C"),
        }
    });

    let mut attempt = 0u32;
    loop {
        match session(&gateway, &shutdown).await {
            Ended::Shutdown => {
                info!("stopped");
                return ExitCode::SUCCESS;
            }
            Ended::Unauthorized(message) => {
                error!(
                    "the server refused the token ({message}); check SWITCHBOARD_TOKEN or --token (with \
                     `switchboard serve --dev`, use the Token it prints)"
                );
                return ExitCode::from(2);
            }
            Ended::Lost { registered, reason } => {
                if registered {
                    attempt = 0;
                }
                let delay = backoff(attempt);
                attempt = attempt.saturating_add(1);
                warn!(
                    %reason,
                    retry_in = %humantime::format_duration(delay),
                    attempt,
                    "disconnected"
                );
                tokio::select! {
                    () = shutdown.cancelled() => {
                        info!("stopped");
                        return ExitCode::SUCCESS;
                    }
                    () = tokio::time::sleep(delay) => {}
                }
            }
        }
    }
}

/// `base · 2^attempt` capped, with equal jitter: half of it, plus a random
/// part of the other half.
fn backoff(attempt: u32) -> Duration {
    let ceiling = (BACKOFF_BASE_MS << attempt.min(16)).min(BACKOFF_CAP_MS);
    Duration::from_millis(ceiling / 2 + rand::random_range(0..=ceiling / 2))
}

/// `desktop-<hostname>`: stable across restarts, so the server re-sends
/// the calls it had sent to this machine.
fn default_gateway_id() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".to_owned());
    format!("desktop-{host}")
}

/// Why a connection ended.
enum Ended {
    /// Ctrl-C: disconnected, exit.
    Shutdown,
    /// The server refused the token: retrying cannot help.
    Unauthorized(String),
    /// Lost or never established: back off and connect again.
    Lost { registered: bool, reason: String },
}

fn lost(registered: bool, reason: impl Into<String>) -> Ended {
    Ended::Lost {
        registered,
        reason: reason.into(),
    }
}

/// What the library's callbacks report about the connection.
enum Lifecycle {
    Connected,
    ConnectError(String),
    Error(String),
    Closed(String),
}

/// One connection: connect, register, serve until it closes.
async fn session(gateway: &Arc<Gateway>, shutdown: &CancellationToken) -> Ended {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    info!(url = gateway.url, "connecting");
    let connect = tokio::time::timeout(CONNECT_TIMEOUT, gateway.builder(events_tx).connect());
    let client = tokio::select! {
        biased;
        () = shutdown.cancelled() => return Ended::Shutdown,
        result = connect => match result {
            Ok(Ok(client)) => client,
            // `{:#}` adds the causes the library's message leaves out.
            Ok(Err(e)) => return lost(false, format!("cannot connect: {:#}", anyhow::Error::new(e))),
            Err(_) => return lost(false, "cannot connect: timed out"),
        },
    };
    let ended = serve(gateway, &client, &mut events, shutdown).await;
    gateway.set_client(None);
    if let Err(e) = client.disconnect().await {
        debug!(error = %e, "disconnect");
    }
    ended
}

async fn serve(
    gateway: &Gateway,
    client: &Client,
    events: &mut mpsc::UnboundedReceiver<Lifecycle>,
    shutdown: &CancellationToken,
) -> Ended {
    // The namespace handshake: `connect` only sent the CONNECT packet.
    let handshake = async {
        loop {
            match events.recv().await {
                Some(Lifecycle::Connected) => return Ok(()),
                Some(Lifecycle::ConnectError(message)) if message.starts_with("unauthorized") => {
                    return Err(Ended::Unauthorized(message));
                }
                Some(Lifecycle::ConnectError(message)) => {
                    return Err(lost(false, format!("connection refused: {message}")));
                }
                Some(Lifecycle::Closed(reason)) => return Err(lost(false, reason)),
                Some(Lifecycle::Error(message)) => debug!(%message, "socket error"),
                None => return Err(lost(false, "connection closed")),
            }
        }
    };
    tokio::select! {
        biased;
        () = shutdown.cancelled() => return Ended::Shutdown,
        result = tokio::time::timeout(CONNECT_TIMEOUT, handshake) => match result {
            Ok(Ok(())) => info!(namespace = NAMESPACE, "connected"),
            Ok(Err(ended)) => return ended,
            Err(_) => return lost(false, "no answer to the namespace handshake"),
        },
    }
    gateway.set_client(Some(client.clone()));

    let register =
        json!({ "gateway_id": gateway.gateway_id, "tools": gateway.tools.definitions() });
    let registered = tokio::select! {
        biased;
        () = shutdown.cancelled() => return Ended::Shutdown,
        reason = closed(events) => return lost(false, reason),
        result = request(client, "gateway:register", register) => result,
    };
    match registered {
        Ok(ack) => info!(gateway_id = gateway.gateway_id, tools = %ack["registered"], "registered"),
        Err(e) => return lost(false, format!("gateway:register failed: {e}")),
    }

    tokio::select! {
        biased;
        () = shutdown.cancelled() => Ended::Shutdown,
        reason = closed(events) => lost(true, reason),
    }
}

/// Waits for the connection to end; returns why.
async fn closed(events: &mut mpsc::UnboundedReceiver<Lifecycle>) -> String {
    loop {
        match events.recv().await {
            Some(Lifecycle::Closed(reason) | Lifecycle::ConnectError(reason)) => return reason,
            // A transport error is followed by `Closed`.
            Some(Lifecycle::Error(message)) => warn!(%message, "socket error"),
            Some(Lifecycle::Connected) => {}
            None => return "connection closed".to_owned(),
        }
    }
}

/// A refused or unanswered request.
#[derive(Debug)]
enum RequestError {
    Refused { code: String, message: String },
    Failed(String),
}

impl std::fmt::Display for RequestError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused { code, message } => write!(f, "{code}: {message}"),
            Self::Failed(reason) => f.write_str(reason),
        }
    }
}

/// Emits `event` with one object argument and waits for its `{ ok, … }` ack.
async fn request(client: &Client, event: &str, data: Value) -> Result<Value, RequestError> {
    let (tx, rx) = oneshot::channel();
    let tx = Mutex::new(Some(tx));
    let on_ack = move |ack: Payload, _: Client| {
        if let Some(tx) = lock(&tx).take() {
            let _ = tx.send(ack_arg(ack));
        }
        async {}.boxed()
    };
    client
        .emit_with_ack(event, data, REQUEST_TIMEOUT, on_ack)
        .await
        .map_err(|e| RequestError::Failed(format!("cannot send: {e}")))?;
    // The library drops the callback of an ack that comes too late.
    let Ok(Ok(ack)) = tokio::time::timeout(REQUEST_TIMEOUT, rx).await else {
        return Err(RequestError::Failed("no answer in time".into()));
    };
    if ack["ok"] == true {
        return Ok(ack);
    }
    let error = &ack["error"];
    Err(RequestError::Refused {
        code: error["code"].as_str().unwrap_or("unknown").to_owned(),
        message: error["message"]
            .as_str()
            .map_or_else(|| ack.to_string(), str::to_owned),
    })
}

fn first_arg(payload: Payload) -> Value {
    match payload {
        Payload::Text(values, _) => values.into_iter().next().unwrap_or(Value::Null),
        _ => Value::Null,
    }
}

/// The first argument of an ack. The library hands an ack's arguments over
/// as one JSON array (`Text([[arg, …]])`), unlike an event's (`Text([arg, …])`).
fn ack_arg(payload: Payload) -> Value {
    match first_arg(payload) {
        Value::Array(args) => args.into_iter().next().unwrap_or(Value::Null),
        other => other,
    }
}

/// The text of a lifecycle callback's payload.
fn text_of(payload: Payload) -> String {
    match first_arg(payload) {
        Value::String(text) => text,
        other => other.to_string(),
    }
}

/// `message` of a `connect_error`'s data (`{"message": "unauthorized: …"}`).
fn connect_error_message(data: &str) -> String {
    serde_json::from_str::<Value>(data)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| data.to_owned())
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

struct Gateway {
    url: String,
    token: String,
    gateway_id: String,
    tools: Tools,
    /// The connected client, for results finished after a reconnect.
    client: Mutex<Option<Client>>,
    calls: Mutex<CallLog>,
}

impl Gateway {
    fn builder(self: &Arc<Self>, events: mpsc::UnboundedSender<Lifecycle>) -> ClientBuilder {
        let report = |to: fn(String) -> Lifecycle| {
            let events = events.clone();
            move |payload: Payload, _: Client| {
                let _ = events.send(to(text_of(payload)));
                async {}.boxed()
            }
        };
        let gateway = Arc::clone(self);
        ClientBuilder::new(self.url.as_str())
            .namespace(NAMESPACE)
            .auth(json!({ "token": self.token }))
            .reconnect(false)
            .on(Event::Connect, report(|_| Lifecycle::Connected))
            .on(Event::Close, report(Lifecycle::Closed))
            .on(
                Event::Error,
                report(|message| match message.strip_prefix(CONNECT_ERROR_PREFIX) {
                    Some(data) => Lifecycle::ConnectError(connect_error_message(data)),
                    None => Lifecycle::Error(message),
                }),
            )
            .on("tool:call", move |payload, client| {
                let gateway = Arc::clone(&gateway);
                async move { gateway.on_tool_call(payload, client).await }.boxed()
            })
    }

    fn set_client(&self, client: Option<Client>) {
        *lock(&self.client) = client;
    }
}
