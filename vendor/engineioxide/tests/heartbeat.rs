//! The heartbeat, from the client's side: pings at the configured cadence while the client
//! answers, v3 pings answered with pongs, and a client that stops answering closed.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use engineioxide::{
    ProtocolVersion, Str,
    config::EngineIoConfig,
    handler::EngineIoHandler,
    service::EngineIoService,
    socket::{DisconnectReason, Socket},
};
use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio_tungstenite::{WebSocketStream, tungstenite::Message};

mod fixture;
use fixture::{StreamImpl, new_ws_mock_conn};

#[derive(Debug)]
struct MyHandler {
    disconnect_tx: mpsc::UnboundedSender<DisconnectReason>,
}

impl EngineIoHandler for MyHandler {
    type Data = ();
    fn on_connect(self: Arc<Self>, _: Arc<Socket<()>>) {}
    fn on_disconnect(&self, _: Arc<Socket<()>>, reason: DisconnectReason) {
        self.disconnect_tx.send(reason).unwrap();
    }
    fn on_message(self: &Arc<Self>, _: Str, _: Arc<Socket<()>>) {}
    fn on_binary(self: &Arc<Self>, _: Bytes, _: Arc<Socket<()>>) {}
}

const INTERVAL: Duration = Duration::from_millis(30);
const TIMEOUT: Duration = Duration::from_millis(100);

fn create_server() -> (
    EngineIoService<MyHandler>,
    mpsc::UnboundedReceiver<DisconnectReason>,
) {
    let (disconnect_tx, disconnect_rx) = mpsc::unbounded_channel();
    let config = EngineIoConfig::builder()
        .ping_interval(INTERVAL)
        .ping_timeout(TIMEOUT)
        .build();
    let svc = EngineIoService::with_config(Arc::new(MyHandler { disconnect_tx }), config);
    (svc, disconnect_rx)
}

/// The next text frame.
async fn next_text(ws: &mut WebSocketStream<StreamImpl>) -> String {
    match ws.next().await.expect("the stream ended").unwrap() {
        Message::Text(text) => text.to_string(),
        other => panic!("unexpected message {other:?}"),
    }
}

// The transports here are in-memory channels, so the clock can be paused: it then jumps
// straight to each timer, and the elapsed times below are exact.
#[tokio::test(start_paused = true)]
async fn a_client_that_answers_is_pinged_every_interval_and_stays_connected() {
    let (mut svc, mut disconnect_rx) = create_server();
    let mut ws = new_ws_mock_conn(&mut svc, ProtocolVersion::V4, None).await;
    assert!(next_text(&mut ws).await.starts_with('0'), "the open packet");

    let start = tokio::time::Instant::now();
    for _ in 0..5 {
        assert_eq!(next_text(&mut ws).await, "2");
        ws.send(Message::text("3")).await.unwrap();
    }
    // The first ping right away, then one per interval: not one per timeout.
    let elapsed = start.elapsed();
    assert!(elapsed >= INTERVAL * 4, "{elapsed:?}");
    assert!(elapsed < INTERVAL * 5, "{elapsed:?}");
    assert!(disconnect_rx.try_recv().is_err());
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_answering_is_closed_after_the_timeout() {
    let (mut svc, mut disconnect_rx) = create_server();
    let mut ws = new_ws_mock_conn(&mut svc, ProtocolVersion::V4, None).await;
    next_text(&mut ws).await;

    assert_eq!(next_text(&mut ws).await, "2");
    ws.send(Message::text("3")).await.unwrap();
    assert_eq!(next_text(&mut ws).await, "2");
    let unanswered = tokio::time::Instant::now();

    let reason = disconnect_rx.recv().await.unwrap();
    assert_eq!(reason, DisconnectReason::HeartbeatTimeout);
    let elapsed = unanswered.elapsed();
    assert!(elapsed >= TIMEOUT, "{elapsed:?}");
    assert!(elapsed < TIMEOUT + INTERVAL, "{elapsed:?}");
}

#[cfg(feature = "v3")]
#[tokio::test(start_paused = true)]
async fn v3_pings_are_answered_and_a_silent_client_is_closed() {
    let (mut svc, mut disconnect_rx) = create_server();
    let mut ws = new_ws_mock_conn(&mut svc, ProtocolVersion::V3, None).await;
    assert!(next_text(&mut ws).await.starts_with('0'), "the open packet");

    for _ in 0..3 {
        tokio::time::sleep(INTERVAL).await;
        ws.send(Message::text("2")).await.unwrap();
        assert_eq!(next_text(&mut ws).await, "3");
    }
    assert!(disconnect_rx.try_recv().is_err());

    // No more pings: closed within two windows of interval + timeout.
    let silent = tokio::time::Instant::now();
    let reason = disconnect_rx.recv().await.unwrap();
    assert_eq!(reason, DisconnectReason::HeartbeatTimeout);
    assert!(silent.elapsed() <= (INTERVAL + TIMEOUT) * 2);
}

/// Many sockets share the engine's heartbeat task; each is timed on its own.
#[tokio::test(start_paused = true)]
async fn each_socket_keeps_its_own_heartbeat() {
    let (mut svc, mut disconnect_rx) = create_server();
    let mut answering = new_ws_mock_conn(&mut svc, ProtocolVersion::V4, None).await;
    let mut silent = new_ws_mock_conn(&mut svc, ProtocolVersion::V4, None).await;
    next_text(&mut answering).await;
    next_text(&mut silent).await;
    assert_eq!(next_text(&mut silent).await, "2");

    for _ in 0..6 {
        assert_eq!(next_text(&mut answering).await, "2");
        answering.send(Message::text("3")).await.unwrap();
    }
    // The silent one was closed once, the answering one never.
    assert_eq!(
        disconnect_rx.try_recv(),
        Ok(DisconnectReason::HeartbeatTimeout)
    );
    assert!(disconnect_rx.try_recv().is_err());
}
