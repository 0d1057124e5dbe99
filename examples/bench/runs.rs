//! Streaming runs: many concurrent agent runs against a local mock
//! OpenAI-compatible provider that streams deltas at a fixed pace, each
//! stamped with the time the provider wrote it; every session has one
//! WebSocket subscriber that measures provider→subscriber latency.

use std::convert::Infallible;
use std::time::{Duration, Instant};

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::IntoResponse;
use serde_json::json;

use super::raw_client::RawSocket;
use super::{Server, TOKEN, now_ns, percentile};

#[derive(Clone, Copy)]
pub struct Pace {
    pub deltas: u64,
    pub interval: Duration,
}

/// Streams `deltas` content chunks, `interval` apart, each `"<ns> "`.
/// Each stream starts at a random phase within the interval, as runs that
/// began independently would (200 streams ticking in lockstep would be a
/// burst of 200 deltas every interval).
async fn completions(State(pace): State<Pace>) -> impl IntoResponse {
    let phase = Duration::from_nanos(now_ns() % pace.interval.as_nanos() as u64);
    let start = tokio::time::Instant::now() + phase;
    let stream = futures_util::stream::unfold(
        (0u64, tokio::time::interval_at(start, pace.interval)),
        move |(i, mut tick)| async move {
            if i > pace.deltas {
                return None;
            }
            tick.tick().await;
            let frame = if i == pace.deltas {
                "data: {\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}]}\n\n\
                 data: [DONE]\n\n"
                    .to_owned()
            } else {
                let chunk = json!({ "choices": [{ "index": 0, "delta": { "content": format!("{} ", now_ns()) } }] });
                format!("data: {chunk}\n\n")
            };
            Some((Ok::<_, Infallible>(Bytes::from(frame)), (i + 1, tick)))
        },
    );
    (
        [("content-type", "text/event-stream")],
        Body::from_stream(stream),
    )
}

pub async fn mock_provider(pace: Pace) -> String {
    let app = axum::Router::new()
        .route("/v1/chat/completions", axum::routing::post(completions))
        .with_state(pace);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}/v1")
}

/// A server whose provider is a mock streaming at `pace`.
async fn server_with_mock(pace: Pace) -> Server {
    let base_url = mock_provider(pace).await;
    Server::start_with(&[
        ("SWITCHBOARD_LLM_PROVIDER", "openai"),
        ("SWITCHBOARD_LLM_BASE_URL", &base_url),
        ("SWITCHBOARD_LLM_MODEL", "bench"),
    ])
    .await
}

/// A new session and a WebSocket subscribed to it.
async fn subscribed_session(server: &Server) -> (String, RawSocket) {
    let session = server.session().await;
    let socket = server.subscriber(&session).await;
    (session, socket)
}

pub async fn runs(runs: u64, per_second: u64) {
    let seconds = 10u64;
    println!(
        "## streaming runs ({runs} concurrent runs x {per_second} deltas/s for {seconds} s, mock provider, one subscriber per session)"
    );
    let pace = Pace {
        deltas: per_second * seconds,
        interval: Duration::from_secs_f64(1.0 / per_second as f64),
    };
    let server = server_with_mock(pace).await;

    let mut sockets = Vec::new();
    for _ in 0..runs {
        sockets.push(subscribed_session(&server).await);
    }

    let start = Instant::now();
    let mut tasks = Vec::new();
    for (session, mut socket) in sockets {
        tasks.push(tokio::spawn(async move {
            let ack = socket
                .request(
                    "agent:execute",
                    json!({ "session_id": session, "content": "go" }),
                )
                .await
                .unwrap();
            assert_eq!(ack["ok"], true, "{ack}");
            let mut latencies = Vec::new();
            let mut last_seq = 0;
            loop {
                let (name, event) = socket.next_event().await.unwrap();
                if name != "agent:event" {
                    continue;
                }
                let seq = event["seq"].as_i64().unwrap();
                assert_eq!(seq, last_seq + 1, "gap or duplicate");
                last_seq = seq;
                match event["type"].as_str().unwrap() {
                    "text.delta" => {
                        let sent: u64 = event["data"]["delta"]
                            .as_str()
                            .and_then(|d| d.trim().parse().ok())
                            .unwrap();
                        latencies.push(now_ns().saturating_sub(sent));
                    }
                    "run.finished" => {
                        assert_eq!(event["data"]["reason"], "completed", "{event}");
                        return latencies;
                    }
                    _ => {}
                }
            }
        }));
    }
    let mut latencies: Vec<u64> = Vec::new();
    for task in tasks {
        let run = task.await.unwrap();
        assert_eq!(run.len() as u64, pace.deltas, "every delta arrives once");
        latencies.extend(run);
    }
    let elapsed = start.elapsed();
    latencies.sort_unstable();
    println!(
        "{} deltas in {elapsed:.2?} ({:.0}/s): latency p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        latencies.len() as f64 / elapsed.as_secs_f64(),
        percentile(&latencies, 0.50),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
}

/// Time from `agent:stop` to its ack (sent once `run.finished` is
/// committed), for runs streaming 50 deltas/s while 100 others stream too.
pub async fn stop() {
    println!("## stop (runs streaming 50 deltas/s; 100 streaming alongside)");
    let pace = Pace {
        deltas: 50 * 3600,
        interval: Duration::from_millis(20),
    };
    let server = server_with_mock(pace).await;
    let mut background = Vec::new();
    for _ in 0..100 {
        let session = server.session().await;
        let mut socket = RawSocket::connect(server.addr, "/agent", TOKEN, None)
            .await
            .unwrap();
        let go = json!({ "session_id": session, "content": "go" });
        assert_eq!(
            socket.request("agent:execute", go).await.unwrap()["ok"],
            true
        );
        background.push(socket);
    }
    let mut stops = Vec::new();
    for _ in 0..50 {
        let (session, mut socket) = subscribed_session(&server).await;
        let go = json!({ "session_id": session, "content": "go" });
        assert_eq!(
            socket.request("agent:execute", go).await.unwrap()["ok"],
            true
        );
        // Let it stream a little first.
        let mut deltas = 0;
        while deltas < 10 {
            let (_, event) = socket.next_event().await.unwrap();
            if event["type"] == "text.delta" {
                deltas += 1;
            }
        }
        let start = Instant::now();
        let ack = socket
            .request("agent:stop", json!({ "session_id": session }))
            .await
            .unwrap();
        stops.push(start.elapsed().as_nanos() as u64);
        assert_eq!(ack["stopped"], true, "{ack}");
    }
    stops.sort_unstable();
    println!(
        "agent:stop → ack (run.finished committed), {} runs: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        stops.len(),
        percentile(&stops, 0.50),
        percentile(&stops, 0.99),
        percentile(&stops, 1.0),
    );
    drop(background);
}
