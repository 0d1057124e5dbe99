//! Two nodes on one PostgreSQL database and one Redis.
//!
//! - `cluster`: the latency a cross-node hop adds. One producer appends
//!   through node A at a fixed rate; half the subscribers are on node A,
//!   half on node B, and each side's producer→subscriber latency is
//!   reported separately.
//! - `cluster-runs`: `agent:stop` answered by the run's node vs by the
//!   other node, and how long after a SIGKILL of the run's node the other
//!   node finishes its run (`run.finished` at a subscriber on it), for
//!   run leases of 2 s and 5 s.
//!
//! Needs `BENCH_POSTGRES_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`, a new database is
//! created in it) and `BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::raw_client::RawSocket;
use super::{Server, TOKEN, event, now_ns, percentile, runs, seq, stamp};

async fn fresh_database(admin_url: &str) -> String {
    use sea_orm::ConnectionTrait;
    let name = format!("sb_bench_{}", uuid::Uuid::now_v7().simple());
    let admin = sea_orm::Database::connect(admin_url)
        .await
        .expect("connect to BENCH_POSTGRES_URL");
    admin
        .execute_unprepared(&format!("CREATE DATABASE \"{name}\""))
        .await
        .expect("create the bench database");
    admin.close().await.ok();
    let (server, _) = admin_url.rsplit_once('/').expect("a postgres:// URL");
    format!("{server}/{name}")
}

fn urls() -> (String, String) {
    let pg = std::env::var("BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
    let redis =
        std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
    (pg, redis)
}

/// A node of a cluster on `database` and `redis` (channels `prefix`),
/// with `extra` settings.
async fn node(
    database: &str,
    redis: &str,
    prefix: &str,
    id: &str,
    extra: &[(&str, &str)],
) -> Server {
    let mut env = vec![
        ("DATABASE_URL", database),
        ("SWITCHBOARD_REDIS_URL", redis),
        ("SWITCHBOARD_REDIS_PREFIX", prefix),
        ("SWITCHBOARD_NODE_ID", id),
    ];
    env.extend_from_slice(extra);
    Server::start_with(&env).await
}

/// Runs one agent turn in `session` through `socket` and waits for its
/// first `text.delta` on `watcher`.
async fn start_run(socket: &mut RawSocket, watcher: &mut RawSocket, session: &str) {
    let go = json!({ "session_id": session, "content": "go" });
    let ack = socket.request("agent:execute", go).await.unwrap();
    assert_eq!(ack["ok"], true, "{ack}");
    loop {
        let (_, event) = watcher.next_event().await.unwrap();
        if event["type"] == "text.delta" {
            return;
        }
    }
}

/// Waits for `run.finished` on `watcher`; returns its reason.
async fn run_finished(watcher: &mut RawSocket) -> String {
    loop {
        let (_, event) = watcher.next_event().await.unwrap();
        if event["type"] == "run.finished" {
            return event["data"]["reason"].as_str().unwrap_or("").to_owned();
        }
    }
}

pub async fn runs() {
    println!("## several nodes (PostgreSQL + Redis): stop across nodes, takeover after SIGKILL");
    let (pg, redis) = urls();
    let database = fresh_database(&pg).await;
    let prefix = format!("bench{}", uuid::Uuid::now_v7().simple());
    // Runs that stream 50 deltas/s for an hour.
    let base_url = runs::mock_provider(runs::Pace {
        deltas: 50 * 3600,
        interval: Duration::from_millis(20),
    })
    .await;
    let provider = [
        ("SWITCHBOARD_LLM_PROVIDER", "openai"),
        ("SWITCHBOARD_LLM_BASE_URL", base_url.as_str()),
        ("SWITCHBOARD_LLM_MODEL", "bench"),
    ];

    // Stop: asked of the run's node, then of the other one.
    let a = node(&database, &redis, &prefix, "a", &provider).await;
    let b = node(&database, &redis, &prefix, "b", &provider).await;
    for (label, stopper) in [("the run's node", &a), ("the other node", &b)] {
        let mut stops = Vec::new();
        for _ in 0..30 {
            let session = a.session().await;
            let mut on_a = a.subscriber(&session).await;
            let mut asking = stopper.subscriber(&session).await;
            start_run(&mut on_a, &mut asking, &session).await;
            let start = Instant::now();
            let ack = asking
                .request("agent:stop", json!({ "session_id": session }))
                .await
                .unwrap();
            stops.push(start.elapsed().as_nanos() as u64);
            assert_eq!(ack["stopped"], true, "{ack}");
        }
        stops.sort_unstable();
        println!(
            "agent:stop asked of {label} → ack (run.finished committed), {} runs: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            stops.len(),
            percentile(&stops, 0.50),
            percentile(&stops, 0.99),
            percentile(&stops, 1.0),
        );
    }
    drop((a, b));

    // Takeover: the run's node is killed; the other finishes its run.
    for lease in ["2s", "5s"] {
        let mut extra = provider.to_vec();
        extra.push(("SWITCHBOARD_RUN_LEASE", lease));
        let b = node(&database, &redis, &prefix, "b", &extra).await;
        let mut takeovers = Vec::new();
        for round in 0..5 {
            let mut a = node(&database, &redis, &prefix, &format!("a{round}"), &extra).await;
            let session = a.session().await;
            let mut on_a = a.subscriber(&session).await;
            let mut on_b = b.subscriber(&session).await;
            start_run(&mut on_a, &mut on_b, &session).await;
            let killed = Instant::now();
            a.kill().await;
            let reason = run_finished(&mut on_b).await;
            takeovers.push(killed.elapsed().as_nanos() as u64);
            assert_eq!(reason, "interrupted");
        }
        takeovers.sort_unstable();
        println!(
            "SIGKILL of the run's node → run.finished from the other node, lease {lease}, {} runs: min {:.0} ms, p50 {:.0} ms, max {:.0} ms",
            takeovers.len(),
            percentile(&takeovers, 0.0),
            percentile(&takeovers, 0.50),
            percentile(&takeovers, 1.0),
        );
    }
}

/// The same fan-out on one node, with SQLite then with PostgreSQL.
pub async fn fanout_databases() {
    let (pg, _) = urls();
    super::fanout_with("SQLite", &[]).await;
    let database = fresh_database(&pg).await;
    super::fanout_with("PostgreSQL", &[("DATABASE_URL", database.as_str())]).await;
}

pub async fn cluster() {
    println!("## several nodes (PostgreSQL + Redis): the cross-node hop");
    let (pg, redis) = urls();
    let database = fresh_database(&pg).await;
    let prefix = format!("bench{}", uuid::Uuid::now_v7().simple());
    let node = |id: &'static str| {
        [
            ("DATABASE_URL", database.clone()),
            ("SWITCHBOARD_REDIS_URL", redis.clone()),
            ("SWITCHBOARD_REDIS_PREFIX", prefix.clone()),
            ("SWITCHBOARD_NODE_ID", id.to_owned()),
        ]
    };
    let a_env = node("a");
    let b_env = node("b");
    let a_pairs: Vec<(&str, &str)> = a_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let b_pairs: Vec<(&str, &str)> = b_env.iter().map(|(k, v)| (*k, v.as_str())).collect();
    let a = Server::start_with(&a_pairs).await;
    let b = Server::start_with(&b_pairs).await;
    let session = a.session().await;

    let per_node = 100;
    let measuring = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut channels = Vec::new();
    for server in [&a, &b] {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<u64>();
        for _ in 0..per_node {
            let mut socket = server.subscriber(&session).await;
            let tx = tx.clone();
            let measuring = measuring.clone();
            let received = received.clone();
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
                        let _ = tx.send(now_ns().saturating_sub(t));
                    }
                }
            });
        }
        channels.push(rx);
    }

    let mut sent = 0u64;
    for per_second in [20u64, 100] {
        let before = received.load(Ordering::Relaxed);
        measuring.store(true, Ordering::Relaxed);
        let n = per_second * 5;
        let mut tick = tokio::time::interval(Duration::from_secs_f64(1.0 / per_second as f64));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut inflight = Vec::new();
        for i in 0..n {
            tick.tick().await;
            let http = a.http.clone();
            let url = a.url(&format!("/v1/sessions/{session}/events"));
            inflight.push(tokio::spawn(async move {
                http.post(url)
                    .bearer_auth(TOKEN)
                    .json(&json!({ "events": [event(sent + i)] }))
                    .send()
                    .await
                    .unwrap();
            }));
        }
        for task in inflight {
            task.await.unwrap();
        }
        sent += n;
        let target = before + n * 2 * per_node;
        let deadline = Instant::now() + Duration::from_secs(30);
        while received.load(Ordering::Relaxed) < target {
            assert!(Instant::now() < deadline, "deliveries stalled");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        measuring.store(false, Ordering::Relaxed);
        for (name, rx) in ["producer's node", "other node"].iter().zip(&mut channels) {
            let mut latencies = Vec::new();
            while let Ok(l) = rx.try_recv() {
                latencies.push(l);
            }
            latencies.sort_unstable();
            println!(
                "{per_second} events/s, {per_node} subscribers on the {name}: latency p50 {:.2} ms, p99 {:.2} ms ({} samples)",
                percentile(&latencies, 0.50),
                percentile(&latencies, 0.99),
                latencies.len()
            );
        }
    }
}
