//! Limits on connections, handshakes, timeouts, client addresses and Host
//! names (issue 12, items 1, 2, 5, 13): what one client, signed in or not,
//! can make the server hold at the transport level. Memory is measured as
//! the server process's peak RSS, connections with real sockets.

mod caps;
mod handshakes;
mod proxies_and_hosts;
mod timeouts;
mod websocket;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use futures_util::StreamExt;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

/// How long a connection that the server should close may take to be
/// closed: well above the short timeouts the tests configure, well below
/// what the server without the limit does (never, or 45 s).
pub const CLOSE_WAIT: Duration = Duration::from_secs(8);

/// A TCP connection to `server` from the loopback address `local`
/// (`127.0.0.1`, `127.0.0.2`, …: other client addresses on one machine).
pub async fn connect_from(local: &str, server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().expect("socket");
    let local: IpAddr = local.parse().expect("an address");
    socket.bind(SocketAddr::new(local, 0)).expect("bind");
    socket.connect(server).await.expect("connect")
}

/// Reads until the server closes `stream`; what it sent meanwhile. Panics
/// when the connection is still open after [`CLOSE_WAIT`].
pub async fn closed_by_server(stream: &mut TcpStream, what: &str) -> Vec<u8> {
    let mut received = Vec::new();
    let read = async {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => received.extend_from_slice(&buf[..n]),
            }
        }
    };
    if tokio::time::timeout(CLOSE_WAIT, read).await.is_err() {
        panic!("{what}: still open after {CLOSE_WAIT:?}");
    }
    received
}

/// Whether `stream` is still open, with nothing to read.
pub fn still_open(stream: &TcpStream) -> bool {
    let mut buf = [0u8; 1];
    matches!(stream.try_read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

/// An HTTP/1.1 response read off a raw connection.
#[derive(Debug)]
pub struct RawResponse {
    pub status: u16,
    pub head: String,
    pub body: String,
}

impl RawResponse {
    pub fn parse(bytes: &[u8]) -> Option<Self> {
        let text = String::from_utf8_lossy(bytes);
        let (head, body) = text.split_once("\r\n\r\n")?;
        let status = head.split(' ').nth(1)?.parse().ok()?;
        Some(Self {
            status,
            head: head.to_ascii_lowercase(),
            body: body.to_owned(),
        })
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// Sends `request` (a request head; `Connection: close` is added) from
/// `local` and reads the whole response; `None` when the server closed the
/// connection without one.
pub async fn raw_request(server: SocketAddr, local: &str, request: &str) -> Option<RawResponse> {
    let mut stream = connect_from(local, server).await;
    let head = request.trim_end_matches("\r\n");
    let _ = stream
        .write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await;
    let received = closed_by_server(&mut stream, request).await;
    RawResponse::parse(&received)
}

/// `GET /healthz` from `local`: its status, `None` when refused without one.
pub async fn healthz_from(server: SocketAddr, local: &str) -> Option<u16> {
    raw_request(
        server,
        local,
        &format!("GET /healthz HTTP/1.1\r\nHost: {server}"),
    )
    .await
    .map(|r| r.status)
}

/// A WebSocket to the Engine.IO endpoint, its open packet read.
pub type Ws = tokio_tungstenite::WebSocketStream<TcpStream>;

pub async fn engine_io_websocket(server: SocketAddr) -> Ws {
    let stream = connect_from("127.0.0.1", server).await;
    let url = format!("ws://{server}/socket.io/?EIO=4&transport=websocket");
    let (mut ws, _) = tokio_tungstenite::client_async(url, stream)
        .await
        .expect("WebSocket handshake");
    let open = next_text(&mut ws).await.expect("an open packet");
    assert!(open.starts_with('0'), "{open}");
    ws
}

/// Opens `/agent` with `token` on an Engine.IO WebSocket.
pub async fn signed_in_websocket(server: SocketAddr, token: &str) -> Ws {
    use futures_util::SinkExt;
    let mut ws = engine_io_websocket(server).await;
    let auth = serde_json::json!({ "token": token });
    ws.send(text(format!("40/agent,{auth}")))
        .await
        .expect("send");
    loop {
        let packet = next_text(&mut ws).await.expect("a connect answer");
        if packet.starts_with("40/agent,") {
            return ws;
        }
        assert!(!packet.starts_with("44"), "refused: {packet}");
    }
}

pub fn text(text: String) -> tokio_tungstenite::tungstenite::Message {
    tokio_tungstenite::tungstenite::Message::text(text)
}

/// The next text message; `None` once the connection is closed.
pub async fn next_text(ws: &mut Ws) -> Option<String> {
    use tokio_tungstenite::tungstenite::Message;
    loop {
        match tokio::time::timeout(crate::helpers::WAIT, ws.next())
            .await
            .expect("a message in time")
        {
            Some(Ok(Message::Text(text))) => return Some(text.to_string()),
            Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return None,
            Some(Ok(_)) => {}
        }
    }
}

/// Waits for the server to close `ws`: whether it did within [`CLOSE_WAIT`].
pub async fn websocket_closed(ws: &mut Ws) -> bool {
    use tokio_tungstenite::tungstenite::Message;
    let closed = async {
        loop {
            match ws.next().await {
                Some(Ok(Message::Close(_))) | Some(Err(_)) | None => return,
                Some(Ok(_)) => {}
            }
        }
    };
    tokio::time::timeout(CLOSE_WAIT, closed).await.is_ok()
}

/// MiB from KiB, for messages.
pub fn mib(kib: u64) -> f64 {
    kib as f64 / 1024.0
}
