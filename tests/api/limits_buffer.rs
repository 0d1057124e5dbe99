//! A subscriber's outgoing buffer bounded by bytes (issue 12, item 7): a
//! Socket.IO client that stops reading, on either transport, makes the
//! server hold about `SWITCHBOARD_MAX_SOCKET_BUFFER_BYTES` of events for it,
//! not hundreds of them whatever their size; once it reads again it gets
//! every event once, in order.
//!
//! Memory is the server process's peak RSS above what it held when the
//! measured part began, taken after the client has read everything back, so
//! that it covers the whole time the client was not reading.

use std::collections::VecDeque;

// Also loaded by `log.rs` and `limits_pages.rs`, whose modules are private.
#[allow(clippy::duplicate_mod)]
#[path = "../support/raw_client.rs"]
mod raw_client;

use raw_client::RawSocket;
use serde_json::{Value, json};

use crate::helpers::*;
use crate::limits_pages::{Peak, append_large, seq_of, server, warm_up};

/// Large events appended while the subscribers do not read: 64 MiB, a
/// quarter of the default 256 packets of the socket's queue.
const EVENTS: usize = 64;

/// Reads `agent:event` packets until `count` have come; their seqs.
async fn read_seqs(socket: &mut RawSocket, count: usize) -> Vec<i64> {
    let mut seqs = Vec::with_capacity(count);
    while seqs.len() < count {
        let packet = tokio::time::timeout(WAIT, socket.next_event_text())
            .await
            .expect("the next event in time")
            .unwrap();
        seqs.push(seq_of(&packet));
    }
    seqs
}

#[tokio::test]
async fn websocket_subscribers_that_stop_reading_cost_a_bounded_buffer_and_then_get_each_event_once_in_order()
 {
    let server = server().spawn().await;
    let other = server.create_session("tok-alice").await;
    let session = server.create_session("tok-alice").await;
    // Before the subscribers connect: they answer no ping while stalled, so
    // the stall is kept as short as the measured appends.
    warm_up(&server, &other).await;
    // Two subscribers whose receive buffers are tiny and that read nothing
    // while the events are appended.
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut socket = RawSocket::connect(server.addr(), "/agent", "tok-alice", Some(4096))
            .await
            .unwrap();
        let ack = socket
            .request("session:subscribe", json!({ "session_id": session }))
            .await
            .unwrap();
        assert_eq!(ack["ok"], true, "{ack}");
        stalled.push(socket);
    }

    let peak = Peak::start(&server);
    append_large(&server, &session, EVENTS).await;
    // Both read at once: a client answers the server's pings only while it
    // reads, and one waiting for the other past the ping timeout would be
    // (rightly) disconnected.
    let read =
        futures_util::future::join_all(stalled.iter_mut().map(|socket| read_seqs(socket, EVENTS)))
            .await;
    for seqs in read {
        assert_eq!(seqs, (1..=EVENTS as i64).collect::<Vec<_>>());
    }
    let growth = peak.growth_mib(&server);
    assert!(
        growth < 48,
        "two subscribers that stopped reading took the server's RSS up by {growth} MiB \
         while {EVENTS} MiB of events were appended"
    );

    // Live delivery resumed at the exact seq.
    server
        .append("tok-alice", &session, json!({ "events": [info("after")] }))
        .await;
    for socket in &mut stalled {
        assert_eq!(read_seqs(socket, 1).await, [EVENTS as i64 + 1]);
    }
}

#[tokio::test]
async fn polling_subscribers_that_stop_polling_cost_a_bounded_buffer_and_then_get_each_event_once_in_order()
 {
    let server = server().spawn().await;
    let other = server.create_session("tok-alice").await;
    let session = server.create_session("tok-alice").await;
    // Before the subscribers connect, as above: a client that does not poll
    // answers no ping.
    warm_up(&server, &other).await;
    let mut stalled = Vec::new();
    for _ in 0..2 {
        let mut polling = Polling::connect(&server, "tok-alice").await;
        let ack = polling
            .request("session:subscribe", json!({ "session_id": session }))
            .await;
        assert_eq!(ack["ok"], true, "{ack}");
        stalled.push(polling);
    }

    // No polling request is pending from here until the events are in.
    let peak = Peak::start(&server);
    append_large(&server, &session, EVENTS).await;
    for polling in &mut stalled {
        let mut seqs = Vec::new();
        while seqs.len() < EVENTS {
            seqs.push(seq_of(&polling.next_event_text().await));
        }
        assert_eq!(seqs, (1..=EVENTS as i64).collect::<Vec<_>>());
    }
    let growth = peak.growth_mib(&server);
    assert!(
        growth < 48,
        "two polling subscribers that stopped polling took the server's RSS up by {growth} MiB \
         while {EVENTS} MiB of events were appended"
    );

    // Live delivery resumed at the exact seq.
    server
        .append("tok-alice", &session, json!({ "events": [info("after")] }))
        .await;
    for polling in &mut stalled {
        assert_eq!(seq_of(&polling.next_event_text().await), EVENTS as i64 + 1);
    }
}

#[tokio::test]
async fn a_socket_buffer_under_64_kib_is_refused_with_its_name() {
    let builder = ServerBuilder::with_auth().env("SWITCHBOARD_MAX_SOCKET_BUFFER_BYTES", "65535");
    let run = builder.run(&["serve", "--bind", "127.0.0.1:0"]);
    let (ok, _, stderr) = tokio::time::timeout(WAIT, run)
        .await
        .expect("refused at start rather than served");
    assert!(!ok);
    assert!(
        stderr.contains("SWITCHBOARD_MAX_SOCKET_BUFFER_BYTES"),
        "{stderr}"
    );
}

/// A Socket.IO client over Engine.IO long-polling that sends a polling
/// request only when it waits for a packet, so that between two reads the
/// server holds everything addressed to it.
struct Polling {
    http: reqwest::Client,
    /// The session's polling URL.
    url: String,
    /// Packets received and not yet read.
    packets: VecDeque<String>,
    next_ack: u64,
}

impl Polling {
    /// Opens an Engine.IO session and connects to `/agent` with `token`.
    async fn connect(server: &TestServer, token: &str) -> Self {
        let http = server.http.clone();
        let base = server.http("/socket.io/?EIO=4&transport=polling");
        let open = http.get(&base).send().await.unwrap().text().await.unwrap();
        let open: Value = serde_json::from_str(open.strip_prefix('0').expect("open")).unwrap();
        let mut client = Self {
            http,
            url: format!("{base}&sid={}", open["sid"].as_str().expect("sid")),
            packets: VecDeque::new(),
            next_ack: 0,
        };
        client
            .post(format!("40/agent,{}", json!({ "token": token })))
            .await;
        let connected = client.next_packet().await;
        assert!(connected.starts_with("40/agent,"), "{connected}");
        client
    }

    async fn post(&self, packet: String) {
        let response = self.http.post(&self.url).body(packet).send().await.unwrap();
        assert!(response.status().is_success(), "{}", response.status());
    }

    /// The next packet other than a ping (answered): polls when none is
    /// waiting.
    async fn next_packet(&mut self) -> String {
        loop {
            if let Some(packet) = self.packets.pop_front() {
                if packet == "2" {
                    self.post("3".into()).await;
                    continue;
                }
                return packet;
            }
            let poll = self.http.get(&self.url).send();
            let payload = tokio::time::timeout(WAIT, poll)
                .await
                .expect("a polling response in time")
                .unwrap()
                .text()
                .await
                .unwrap();
            self.packets
                .extend(payload.split('\u{1e}').map(str::to_owned));
        }
    }

    /// Emits `event` and waits for its acknowledgement (its first argument).
    async fn request(&mut self, event: &str, payload: Value) -> Value {
        let id = self.next_ack;
        self.next_ack += 1;
        self.post(format!("42/agent,{id}{}", json!([event, payload])))
            .await;
        let prefix = format!("43/agent,{id}");
        loop {
            if let Some(args) = self.next_packet().await.strip_prefix(&prefix) {
                let args: Vec<Value> = serde_json::from_str(args).unwrap();
                return args.into_iter().next().unwrap_or(Value::Null);
            }
        }
    }

    /// The argument list of the next event, unparsed.
    async fn next_event_text(&mut self) -> String {
        loop {
            if let Some(args) = self.next_packet().await.strip_prefix("42/agent,") {
                return args.to_owned();
            }
        }
    }
}
