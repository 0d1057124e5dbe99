//! What a connection costs and how quickly an event reaches every
//! subscriber, side by side with the reference a user would otherwise pick:
//! a plain Node socket.io server doing the same room broadcast without
//! persistence (`tests/js/bench/node-server.mjs`).
//!
//! - `connections [N]`: the server's RSS growth per idle, authenticated,
//!   subscribed WebSocket connection, with N (10,000 by default) open.
//! - `latency [SUBSCRIBERS] [EVENTS_PER_S]`: producer → subscriber latency
//!   with one event per POST, sampled at every subscriber (Node writes to
//!   a room's members in join order, so the first to join always look
//!   fast).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use serde_json::json;

use super::raw_client::RawSocket;
use super::{Server, TOKEN, now_ns, percentile, seq, stamp};

/// How many connections are opened at once.
const CONCURRENT_OPENS: usize = 64;

#[derive(Clone, Copy, PartialEq)]
enum Target {
    Node,
    Switchboard,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Node => "plain Node socket.io",
            Target::Switchboard => "Switchboard",
        }
    }

    async fn start(self) -> Server {
        match self {
            Target::Node => Server::start_node().await,
            // Long enough for the connections that open no namespace.
            Target::Switchboard => {
                Server::start_with(&[("SWITCHBOARD_CONNECT_TIMEOUT", "10m")]).await
            }
        }
    }
}

/// How far a connection goes before it idles.
#[derive(Clone, Copy)]
enum Stage {
    /// An Engine.IO session only (no namespace opened).
    Engine,
    /// `/agent` opened and authenticated.
    Namespace,
    /// And subscribed to a session.
    Subscribed,
}

impl Stage {
    fn name(self) -> &'static str {
        match self {
            Stage::Engine => "Engine.IO session only",
            Stage::Namespace => "+ /agent authenticated",
            Stage::Subscribed => "+ subscribed",
        }
    }
}

/// Opens `n` WebSocket connections to `/agent`, each subscribed to
/// `session`; each then answers pings and hands its events to `on_event`.
async fn open<F>(server: &Server, session: &str, n: usize, on_event: F)
where
    F: Fn(&str) + Clone + Send + Sync + 'static,
{
    open_to(server, session, n, Stage::Subscribed, on_event).await;
}

async fn open_to<F>(server: &Server, session: &str, n: usize, stage: Stage, on_event: F)
where
    F: Fn(&str) + Clone + Send + Sync + 'static,
{
    let addr = server.addr;
    futures_util::stream::iter(0..n)
        .map(|_| {
            let on_event = on_event.clone();
            async move {
                let mut socket = RawSocket::open_engine(addr, "/agent", None)
                    .await
                    .expect("connect");
                if !matches!(stage, Stage::Engine) {
                    socket
                        .connect_namespace(TOKEN)
                        .await
                        .expect("connect /agent");
                }
                if matches!(stage, Stage::Subscribed) {
                    let ack = socket
                        .request("session:subscribe", json!({ "session_id": session }))
                        .await
                        .expect("subscribe");
                    assert_eq!(ack["ok"], true, "subscribe: {ack}");
                }
                tokio::spawn(async move {
                    while let Ok(text) = socket.next_event_text().await {
                        on_event(&text);
                    }
                });
            }
        })
        .buffer_unordered(CONCURRENT_OPENS)
        .collect::<()>()
        .await;
}

/// RSS per idle, authenticated, subscribed WebSocket connection, and what
/// each step of opening one adds.
pub async fn connections(n: usize) {
    println!("## memory per connection ({n} idle WebSocket connections)");
    for round in 1..=2 {
        for target in [Target::Node, Target::Switchboard] {
            for stage in [Stage::Engine, Stage::Namespace, Stage::Subscribed] {
                let server = target.start().await;
                let session = server.session().await;
                // Warm up (code paths, the database pool, the allocator's
                // first arenas) with a few connections that stay open.
                open_to(&server, &session, 100, Stage::Subscribed, |_| {}).await;
                settle().await;
                let before = server.rss_kib();
                let start = Instant::now();
                open_to(&server, &session, n, stage, |_| {}).await;
                let opened = start.elapsed();
                settle().await;
                let after = server.rss_kib();
                println!(
                    "{:<22} round {round}, {:<24} {:>6.1} KB per connection (RSS {} -> {} MiB; opened in {opened:.2?})",
                    target.name(),
                    stage.name(),
                    (after.saturating_sub(before)) as f64 * 1.024 / n as f64,
                    before / 1024,
                    after / 1024,
                );
            }
        }
    }
}

/// Gives the server time to finish what the last connections started
/// (their subscribe, freed buffers going back to the allocator) before its
/// RSS is read.
async fn settle() {
    tokio::time::sleep(Duration::from_secs(3)).await;
}

/// Producer → subscriber latency at a fixed rate, one event per POST.
pub async fn latency(subscribers: usize, per_second: u64) {
    println!(
        "## latency ({subscribers} WebSocket subscribers, {per_second} events/s, one event per POST, every subscriber sampled)"
    );
    for round in 1..=2 {
        for target in [Target::Node, Target::Switchboard] {
            latency_of(target, round, subscribers, per_second).await;
        }
    }
}

async fn latency_of(target: Target, round: u32, subscribers: usize, per_second: u64) {
    let server = target.start().await;
    let session = server.session().await;
    let received = Arc::new(AtomicU64::new(0));
    let (latency_tx, mut latency_rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
    let counter = received.clone();
    open(&server, &session, subscribers, move |text| {
        if seq(text).is_some() {
            counter.fetch_add(1, Ordering::Relaxed);
            if let Some(t) = stamp(text) {
                let _ = latency_tx.send(now_ns().saturating_sub(t));
            }
        }
    })
    .await;

    let seconds = 10;
    let n = per_second * seconds;
    let start = Instant::now();
    server.append_paced(&session, per_second, seconds).await;
    let target_count = n * subscribers as u64;
    let deadline = Instant::now() + Duration::from_secs(60);
    while received.load(Ordering::Relaxed) < target_count && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let elapsed = start.elapsed();
    let mut latencies = Vec::new();
    while let Ok(l) = latency_rx.try_recv() {
        latencies.push(l);
    }
    latencies.sort_unstable();
    println!(
        "{:<22} round {round}: p50 {:.2} ms, p90 {:.2} ms, p99 {:.2} ms, max {:.2} ms ({} of {target_count} deliveries in {elapsed:.2?})",
        target.name(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.90),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
        latencies.len(),
    );
}
