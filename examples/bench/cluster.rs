//! Two nodes on one PostgreSQL database and one Redis: the latency a
//! cross-node hop adds. One producer appends through node A at a fixed
//! rate; half the subscribers are on node A, half on node B, and each side's
//! producer→subscriber latency is reported separately.
//!
//! Needs `BENCH_POSTGRES_URL` (default
//! `postgres://postgres:postgres@127.0.0.1:5432/postgres`, a new database is
//! created in it) and `BENCH_REDIS_URL` (default `redis://127.0.0.1:6379`).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;

use super::{Server, TOKEN, event, now_ns, percentile, seq, stamp};

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

pub async fn cluster() {
    println!("## several nodes (PostgreSQL + Redis): the cross-node hop");
    let pg = std::env::var("BENCH_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".into());
    let redis =
        std::env::var("BENCH_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into());
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
