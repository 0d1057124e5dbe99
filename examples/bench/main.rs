//! Load generator: measures the release server from outside its process.
//!
//! ```sh
//! cargo build --release && cargo run --release --example bench -- all
//! ```
//!
//! Scenarios (`all` runs each): `ingest` (durable events/s, batched and one
//! by one), `replay` (time to replay 100,000 events to one subscriber),
//! `fanout` (one session, 1,000 WebSocket subscribers: deliveries/s
//! saturated, and p50/p99 producer→subscriber latency at a fixed rate),
//! `runs [RUNS] [DELTAS_PER_SECOND]` (200 concurrent agent runs against a
//! mock provider streaming 50 deltas/s each, by default:
//! provider→subscriber delta latency), `stop` (time from `agent:stop` to
//! its ack while other runs stream); not in `all`, side by side with a
//! plain Node socket.io server (`npm ci` in tests/js first):
//! `connections [N]` (RSS per idle subscribed connection, 10,000 open) and
//! `latency [SUBSCRIBERS] [EVENTS_PER_S]` (producer→subscriber latency
//! sampled at every subscriber, 1,000 × 50/s); and, not in `all` (they need
//! PostgreSQL and Redis), `cluster` (two nodes: the latency of the
//! cross-node hop), `cluster-runs` (`agent:stop` across nodes, and the
//! takeover of a killed node's run) and `fanout-databases` (the `fanout`
//! scenario on one node with SQLite, then with PostgreSQL).
//! Each scenario starts `target/release/switchboard` on a fresh SQLite
//! database in a temporary directory, on loopback.

mod cluster;
mod connections;
#[path = "../../tests/support/raw_client.rs"]
mod raw_client;
mod runs;

use std::net::SocketAddr;
use std::process::Stdio;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use raw_client::RawSocket;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

const TOKEN: &str = "bench-token";

/// The per-address, per-user and per-connection limits, lifted.
const UNLIMITED: [(&str, &str); 10] = [
    ("SWITCHBOARD_MAX_CONNECTIONS_PER_IP", "1000000"),
    ("SWITCHBOARD_HANDSHAKE_RATE", "unlimited"),
    ("SWITCHBOARD_HANDSHAKE_RATE_TOTAL", "unlimited"),
    ("SWITCHBOARD_REQUEST_RATE", "unlimited"),
    ("SWITCHBOARD_SESSION_RATE", "unlimited"),
    ("SWITCHBOARD_INGEST_RATE", "unlimited"),
    ("SWITCHBOARD_INGEST_BYTES_RATE", "unlimited"),
    ("SWITCHBOARD_EXECUTE_RATE", "unlimited"),
    ("SWITCHBOARD_MAX_QUEUED_RUNS_PER_USER", "1000000"),
    ("SWITCHBOARD_MAX_SESSIONS_PER_USER", "0"),
];

struct Server {
    addr: SocketAddr,
    child: Child,
    _dir: tempfile::TempDir,
    http: reqwest::Client,
}

impl Server {
    /// A new WebSocket connection to `/agent`, subscribed to `session`.
    async fn subscriber(&self, session: &str) -> RawSocket {
        let mut socket = RawSocket::connect(self.addr, "/agent", TOKEN, None)
            .await
            .unwrap();
        let ack = socket
            .request("session:subscribe", json!({ "session_id": session }))
            .await
            .unwrap();
        assert_eq!(ack["ok"], true);
        socket
    }

    async fn start() -> Self {
        Self::start_with(&[]).await
    }

    async fn start_with(env: &[(&str, &str)]) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let bin = std::env::var("SWITCHBOARD_BIN").unwrap_or_else(|_| {
            concat!(env!("CARGO_MANIFEST_DIR"), "/target/release/switchboard").to_owned()
        });
        let mut command = Command::new(&bin);
        command
            .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
            .env(
                "DATABASE_URL",
                format!("sqlite://{}/bench.db?mode=rwc", dir.path().display()),
            )
            .env("SWITCHBOARD_API_TOKENS", format!("bench:{TOKEN}"))
            .env("RUST_LOG", "warn,switchboard::app=info")
            // One loopback address and one user stand in for every client
            // here, and the scenarios measure throughput, not the limits:
            // lift those a load generator trips (README, "Limits").
            .envs(UNLIMITED.iter().copied())
            .envs(env.iter().copied());
        Self::spawn(command, dir, "run `cargo build --release` first").await
    }

    /// The reference: a plain Node socket.io server doing the same room
    /// broadcast without persistence (`tests/js/bench/node-server.mjs`).
    async fn start_node() -> Self {
        let mut command = Command::new("node");
        command
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/js/bench/node-server.mjs"
            ))
            .env("BENCH_TOKEN", TOKEN);
        let dir = tempfile::tempdir().expect("temp dir");
        Self::spawn(command, dir, "run `npm ci` in tests/js first").await
    }

    /// Starts `command` and waits for the `listening` line of its JSON log.
    async fn spawn(mut command: Command, dir: tempfile::TempDir, hint: &str) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?} ({e}); {hint}"));
        let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
        let addr = loop {
            let line = lines.next_line().await.unwrap().expect("server exited");
            let Ok(log) = serde_json::from_str::<Value>(&line) else {
                eprintln!("{line}");
                continue;
            };
            if log["message"] == "listening" {
                break log["addr"].as_str().unwrap().parse().unwrap();
            }
        };
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Self {
            addr,
            child,
            _dir: dir,
            http: reqwest::Client::builder()
                .pool_max_idle_per_host(256)
                .build()
                .unwrap(),
        }
    }

    /// The server's resident memory now, in KiB (`VmRSS`).
    fn rss_kib(&self) -> u64 {
        let pid = self.child.id().expect("server running");
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmRSS")
    }

    /// SIGKILL, and wait for the process to be gone.
    async fn kill(&mut self) {
        self.child.kill().await.expect("kill the server");
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    async fn session(&self) -> String {
        let body: Value = self
            .http
            .post(self.url("/v1/sessions"))
            .bearer_auth(TOKEN)
            .json(&json!({ "title": "bench" }))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        body["session"]["id"].as_str().unwrap().to_owned()
    }

    async fn append(&self, session: &str, events: &[Value]) -> Value {
        let url = self.url(&format!("/v1/sessions/{session}/events"));
        let response = post_events(&self.http, url, events).await;
        response.json().await.unwrap()
    }
}

/// POSTs `events` to a session's events URL; the response, checked to be
/// a success.
async fn post_events(http: &reqwest::Client, url: String, events: &[Value]) -> reqwest::Response {
    let response = http
        .post(url)
        .bearer_auth(TOKEN)
        .json(&json!({ "events": events }))
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "append: {}",
        response.status()
    );
    response
}

impl Server {
    /// Appends `per_second × seconds` events to `session`, one per request,
    /// evenly spaced (a late tick is caught up at once), and waits for
    /// every answer.
    async fn append_paced(&self, session: &str, per_second: u64, seconds: u64) {
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut inflight = Vec::new();
        for i in 0..per_second * seconds {
            tick.tick().await;
            let http = self.http.clone();
            let url = self.url(&format!("/v1/sessions/{session}/events"));
            inflight.push(tokio::spawn(async move {
                post_events(&http, url, &[event(i)]).await;
            }));
        }
        for task in inflight {
            task.await.unwrap();
        }
    }
}

/// An `output` event of about 200 bytes on the wire, stamped with the
/// wall-clock time it was produced (ns since the epoch).
fn event(i: u64) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    json!({ "type": "x.bench", "data": { "t": now, "i": i, "line": "x".repeat(60) } })
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// `"t":123` from an event frame.
fn stamp(text: &str) -> Option<u64> {
    let start = text.find("\"t\":")? + 4;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

fn seq(text: &str) -> Option<i64> {
    let start = text.find("\"seq\":")? + 6;
    let rest = &text[start..];
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// The `p`-th quantile of sorted nanoseconds, in milliseconds.
fn percentile(sorted: &[u64], p: f64) -> f64 {
    sorted[((sorted.len() as f64 * p) as usize).min(sorted.len() - 1)] as f64 / 1e6
}

fn rate(n: f64, elapsed: Duration) -> String {
    format!("{:>10.0}/s", n / elapsed.as_secs_f64())
}

async fn ingest() {
    println!("## ingest (durable, SQLite WAL)");
    let server = Server::start().await;

    // Batched: 1,000 events per request, 4 producers, 4 sessions. The body
    // is built once, so the generator spends its CPU on sending.
    let total = 200_000u64;
    let producers = 4u64;
    let events: Vec<Value> = (0..1000).map(event).collect();
    let body = serde_json::to_vec(&json!({ "events": events })).unwrap();
    let start = Instant::now();
    let tasks: Vec<_> = (0..producers)
        .map(|_| {
            let server = &server;
            let body = body.clone();
            async move {
                let session = server.session().await;
                let url = server.url(&format!("/v1/sessions/{session}/events"));
                for _ in 0..(total / producers / 1000) {
                    let response = server
                        .http
                        .post(&url)
                        .bearer_auth(TOKEN)
                        .header("content-type", "application/json")
                        .body(body.clone())
                        .send()
                        .await
                        .unwrap();
                    assert!(response.status().is_success());
                }
            }
        })
        .collect();
    futures_util::future::join_all(tasks).await;
    let elapsed = start.elapsed();
    println!(
        "batched (1,000/request, 4 producers): {} ({total} events in {elapsed:.2?})",
        rate(total as f64, elapsed)
    );

    // One by one, sequentially: one request per event, waiting for each.
    let session = server.session().await;
    let n = 5_000u64;
    let start = Instant::now();
    for i in 0..n {
        server.append(&session, &[event(i)]).await;
    }
    let elapsed = start.elapsed();
    println!(
        "one by one, 1 producer in sequence:   {} ({n} events in {elapsed:.2?})",
        rate(n as f64, elapsed)
    );

    // One by one, 64 concurrent producers on one session (group commit).
    let session = server.session().await;
    let per = 500u64;
    let start = Instant::now();
    let tasks: Vec<_> = (0..64)
        .map(|_| {
            let server = &server;
            let session = &session;
            async move {
                for i in 0..per {
                    server.append(session, &[event(i)]).await;
                }
            }
        })
        .collect();
    futures_util::future::join_all(tasks).await;
    let elapsed = start.elapsed();
    let n = per * 64;
    println!(
        "one by one, 64 concurrent producers:  {} ({n} events in {elapsed:.2?})",
        rate(n as f64, elapsed)
    );
}

async fn replay() {
    println!("## replay");
    let server = Server::start().await;
    let session = server.session().await;
    let total = 100_000i64;
    for chunk in 0..(total as u64) / 1000 {
        let events: Vec<Value> = (0..1000).map(|i| event(chunk * 1000 + i)).collect();
        server.append(&session, &events).await;
    }
    for round in 1..=3 {
        let mut socket = RawSocket::connect(server.addr, "/agent", TOKEN, None)
            .await
            .unwrap();
        let start = Instant::now();
        let ack = socket
            .request(
                "session:subscribe",
                json!({ "session_id": session, "after_seq": 0 }),
            )
            .await
            .unwrap();
        assert_eq!(ack["ok"], true);
        let mut expected = 1;
        while expected <= total {
            let text = socket.next_event_text().await.unwrap();
            assert_eq!(seq(&text), Some(expected), "replay out of order");
            expected += 1;
        }
        let elapsed = start.elapsed();
        println!(
            "replay of {total} events to one subscriber, run {round}: {elapsed:.2?} ({})",
            rate(total as f64, elapsed)
        );
        socket.close().await;
    }
}

async fn fanout() {
    // The reference first, saturated only: it falls behind at the fixed
    // rates (`bench -- latency` measures those side by side).
    println!(
        "## fan-out (1 session, 1,000 WebSocket subscribers; plain Node socket.io, nothing persisted)"
    );
    fanout_on(Server::start_node().await, &[]).await;
    fanout_with("SQLite", &[]).await;
}

/// The fan-out scenario on a server started with `env` (its database).
async fn fanout_with(database: &str, env: &[(&str, &str)]) {
    println!(
        "## fan-out (1 session, 1,000 WebSocket subscribers, every event persisted; {database})"
    );
    fanout_on(Server::start_with(env).await, &[10, 50, 100, 200]).await;
}

/// Saturated fan-out, then latency at each of `rates` (events/s).
async fn fanout_on(server: Server, rates: &[u64]) {
    let session = server.session().await;
    let subscribers = 1000;
    let received = Arc::new(AtomicU64::new(0));
    let (latency_tx, mut latency_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let measuring = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut sockets = Vec::new();
    for _ in 0..subscribers {
        sockets.push(server.subscriber(&session).await);
    }
    for mut socket in sockets {
        let received = received.clone();
        let latency_tx = latency_tx.clone();
        let measuring = measuring.clone();
        tokio::spawn(async move {
            let mut last = 0;
            while let Ok(text) = socket.next_event_text().await {
                let s = seq(&text).unwrap_or(0);
                assert_eq!(s, last + 1, "gap or duplicate at a subscriber");
                last = s;
                received.fetch_add(1, Ordering::Relaxed);
                if measuring.load(Ordering::Relaxed)
                    && let Some(t) = stamp(&text)
                {
                    let _ = latency_tx.send(now_ns().saturating_sub(t));
                }
            }
        });
    }

    // Saturated: events in batches of 50 as fast as the server takes them.
    let events = 2_000u64;
    let start = Instant::now();
    for chunk in 0..events / 50 {
        let batch: Vec<Value> = (0..50).map(|i| event(chunk * 50 + i)).collect();
        server.append(&session, &batch).await;
    }
    let target = events * subscribers;
    while received.load(Ordering::Relaxed) < target {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    println!(
        "saturated: {} deliveries/s ({events} events x {subscribers} subscribers in {elapsed:.2?})",
        rate(target as f64, elapsed).trim()
    );

    // Fixed rates: one event per request, evenly spaced; latency measured
    // from just before the append request to receipt by each subscriber.
    for &per_second in rates {
        let before = received.load(Ordering::Relaxed);
        measuring.store(true, Ordering::Relaxed);
        let seconds = 5;
        let n = per_second * seconds;
        let start = Instant::now();
        server.append_paced(&session, per_second, seconds).await;
        let target = before + n * subscribers;
        while received.load(Ordering::Relaxed) < target {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let elapsed = start.elapsed();
        measuring.store(false, Ordering::Relaxed);
        let mut latencies = Vec::new();
        while let Ok(l) = latency_rx.try_recv() {
            latencies.push(l);
        }
        latencies.sort_unstable();
        println!(
            "{per_second} events/s = {} deliveries/s target: achieved {} deliveries/s, latency p50 {:.2} ms, p99 {:.2} ms ({} samples)",
            per_second * subscribers,
            rate((n * subscribers) as f64, elapsed).trim(),
            percentile(&latencies, 0.50),
            percentile(&latencies, 0.99),
            latencies.len()
        );
    }
}

#[tokio::main]
async fn main() {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let all = which == "all";
    let arg = |i: usize, default: u64| {
        std::env::args()
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    if all || which == "ingest" {
        ingest().await;
    }
    if all || which == "replay" {
        replay().await;
    }
    if all || which == "fanout" {
        fanout().await;
    }
    if all || which == "runs" {
        runs::runs(arg(2, 200), arg(3, 50)).await;
    }
    if all || which == "stop" {
        runs::stop().await;
    }
    // Not in `all`: they need Node (`npm ci` in tests/js).
    if which == "connections" {
        connections::connections(arg(2, 10_000) as usize).await;
    }
    if which == "latency" {
        connections::latency(arg(2, 1_000) as usize, arg(3, 50)).await;
    }
    // Not in `all`: they need PostgreSQL and Redis.
    if which == "cluster" {
        cluster::cluster().await;
    }
    if which == "cluster-runs" {
        cluster::runs().await;
    }
    if which == "fanout-databases" {
        cluster::fanout_databases().await;
    }
}
