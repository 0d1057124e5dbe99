//! Caps on open connections (issue 12, item 5): past the per-address or
//! the total cap a connection is answered 503 and closed at once, one WARN
//! line says so, and the server answers again once idle connections are
//! reaped. The total cap fits the open-file limit.

use std::process::Stdio;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncBufReadExt, BufReader};

use super::*;
use crate::helpers::*;

fn refusal_warnings(logs: &[Value], setting: &str) -> usize {
    logs.iter()
        .filter(|l| {
            l["level"] == "WARN"
                && l["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with("connection refused"))
                && l["setting"] == setting
        })
        .count()
}

/// A refused connection: answered 503 (when the answer arrives before the
/// close) and closed.
async fn refused(server: SocketAddr, local: &str) {
    let mut stream = connect_from(local, server).await;
    let received = closed_by_server(&mut stream, "a connection past the cap").await;
    if let Some(response) = RawResponse::parse(&received) {
        assert_eq!(response.status, 503, "{response:?}");
        assert_eq!(response.json()["error"]["code"], "unavailable");
        assert!(
            response.head.contains("retry-after: 1"),
            "{}",
            response.head
        );
    }
}

#[tokio::test]
async fn connections_past_the_per_address_cap_are_refused_until_idle_ones_are_reaped() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_MAX_CONNECTIONS_PER_IP", "4")
        .env("SWITCHBOARD_HEADER_TIMEOUT", "4s")
        .env("SWITCHBOARD_TRUSTED_PROXIES", "127.0.0.3")
        .spawn()
        .await;
    let addr = server.addr();
    let mut idle = Vec::new();
    for _ in 0..4 {
        idle.push(connect_from("127.0.0.1", addr).await);
    }
    for _ in 0..10 {
        refused(addr, "127.0.0.1").await;
    }
    assert!(idle.iter().all(still_open), "the first four stay open");
    assert_ne!(healthz_from(addr, "127.0.0.1").await, Some(200));
    // Other addresses are not affected, and a trusted proxy (which carries
    // many clients) counts only towards the total.
    assert_eq!(healthz_from(addr, "127.0.0.2").await, Some(200));
    let mut proxied = Vec::new();
    for _ in 0..6 {
        proxied.push(connect_from("127.0.0.3", addr).await);
    }
    assert_eq!(healthz_from(addr, "127.0.0.3").await, Some(200));

    for stream in &mut idle {
        closed_by_server(stream, "an idle connection").await;
    }
    assert_eq!(healthz_from(addr, "127.0.0.1").await, Some(200));
    let logs = server.logs.all();
    assert_eq!(
        refusal_warnings(&logs, "SWITCHBOARD_MAX_CONNECTIONS_PER_IP"),
        1,
        "{}",
        server.logs.text()
    );
}

#[tokio::test]
async fn a_websocket_holds_its_place_under_the_cap_until_it_closes() {
    let server = ServerBuilder::with_auth()
        .env("SWITCHBOARD_MAX_CONNECTIONS_PER_IP", "2")
        .spawn()
        .await;
    let addr = server.addr();
    let mut first = signed_in_websocket(addr, "tok-alice").await;
    let _second = signed_in_websocket(addr, "tok-bob").await;
    refused(addr, "127.0.0.1").await;

    // Once the server has closed the first one's socket, its place is free.
    let _ = first.close(None).await;
    while let Some(Ok(_)) = first.next().await {}
    let mut buf = [0u8; 1024];
    let socket_closed =
        async { while matches!(first.get_mut().read(&mut buf).await, Ok(n) if n > 0) {} };
    tokio::time::timeout(CLOSE_WAIT, socket_closed)
        .await
        .expect("the server closes the socket");
    assert_eq!(healthz_from(addr, "127.0.0.1").await, Some(200));
}

/// `switchboard serve` with soft and hard open-file limits of `limit`:
/// (the process, its address, its log lines).
async fn spawn_with_file_limit(
    builder: &ServerBuilder,
    limit: u64,
    env: &[(&str, &str)],
) -> (tokio::process::Child, SocketAddr, Arc<Mutex<Vec<Value>>>) {
    let mut command = tokio::process::Command::new(BIN);
    command
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("DATABASE_URL", builder.database_url().await)
        .env("SWITCHBOARD_API_TOKENS", "alice:tok-alice")
        .envs(env.iter().copied())
        .args(["serve", "--bind", "127.0.0.1:0", "--log-format", "json"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // SAFETY: setrlimit is async-signal-safe; nothing else runs in the child.
    unsafe {
        command.pre_exec(move || {
            use nix::sys::resource::{Resource, setrlimit};
            setrlimit(Resource::RLIMIT_NOFILE, limit, limit).map_err(std::io::Error::from)
        });
    }
    let mut child = command.spawn().expect("spawn switchboard");
    let logs = Arc::new(Mutex::new(Vec::<Value>::new()));
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let addr = tokio::time::timeout(WAIT, async {
        while let Ok(Some(line)) = lines.next_line().await {
            let line: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            logs.lock().unwrap().push(line.clone());
            if line["message"] == "listening" {
                return line["addr"]
                    .as_str()
                    .unwrap()
                    .parse::<SocketAddr>()
                    .unwrap();
            }
        }
        panic!("switchboard exited: {:?}", logs.lock().unwrap());
    })
    .await
    .expect("listening in time");
    let collected = logs.clone();
    tokio::spawn(async move {
        while let Ok(Some(line)) = lines.next_line().await {
            let line: Value = serde_json::from_str(&line).unwrap_or(Value::String(line));
            collected.lock().unwrap().push(line);
        }
    });
    (child, addr, logs)
}

#[tokio::test]
async fn under_a_512_file_limit_600_idle_connections_leave_the_server_answering_once_reaped() {
    let builder = ServerBuilder::new();
    let (_child, addr, logs) = spawn_with_file_limit(
        &builder,
        512,
        &[
            // Long enough that none of the 600 is reaped before the last
            // is open, on a loaded machine too.
            ("SWITCHBOARD_HEADER_TIMEOUT", "5s"),
            ("SWITCHBOARD_MAX_CONNECTIONS_PER_IP", "100000"),
        ],
    )
    .await;
    let mut idle = Vec::new();
    for _ in 0..600 {
        idle.push(connect_from("127.0.0.1", addr).await);
    }
    // Full: the next connection is refused at once rather than left waiting.
    let full = tokio::time::timeout(CLOSE_WAIT, healthz_from(addr, "127.0.0.2")).await;
    assert!(
        matches!(full, Ok(status) if status != Some(200)),
        "with 256 connections open, /healthz got {full:?}"
    );
    for stream in &mut idle {
        closed_by_server(stream, "an idle connection").await;
    }
    let healthy = tokio::time::timeout(CLOSE_WAIT, healthz_from(addr, "127.0.0.2")).await;
    assert_eq!(healthy.ok(), Some(Some(200)), "/healthz after the reaping");
    let logs = logs.lock().unwrap().clone();
    assert_eq!(
        refusal_warnings(&logs, "SWITCHBOARD_MAX_CONNECTIONS"),
        1,
        "{logs:?}"
    );
    let lowered = logs.iter().find_map(|l| {
        (l["message"]
            .as_str()?
            .starts_with("SWITCHBOARD_MAX_CONNECTIONS lowered"))
        .then(|| l["lowered_to"].as_u64())?
    });
    assert_eq!(lowered, Some(256), "{logs:?}");
}
