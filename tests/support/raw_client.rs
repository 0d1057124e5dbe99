//! A minimal Socket.IO v4 client over a single WebSocket, for tests and
//! benchmarks that need control a full client does not give: pausing
//! reads (the socket's receive buffer can be made small), or handling many
//! connections cheaply. Speaks engine.io v4 / socket.io v5 text packets.

#![allow(dead_code)]

use std::collections::VecDeque;
use std::net::SocketAddr;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tokio::net::{TcpSocket, TcpStream};
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Message;

pub struct RawSocket {
    ws: WebSocketStream<TcpStream>,
    ns: String,
    next_ack: u64,
    events: VecDeque<(String, Value)>,
}

impl RawSocket {
    /// Connects to namespace `ns` of the server at `addr` with `auth.token`.
    /// `recv_buffer` shrinks the socket's receive buffer (bytes).
    pub async fn connect(
        addr: SocketAddr,
        ns: &str,
        token: &str,
        recv_buffer: Option<u32>,
    ) -> Result<Self, String> {
        let mut socket = Self::open_engine(addr, ns, recv_buffer).await?;
        socket.connect_namespace(token).await?;
        Ok(socket)
    }

    /// An Engine.IO session over a WebSocket, with no namespace opened yet
    /// ([`Self::connect_namespace`] opens `ns`).
    pub async fn open_engine(
        addr: SocketAddr,
        ns: &str,
        recv_buffer: Option<u32>,
    ) -> Result<Self, String> {
        let socket = if addr.is_ipv4() {
            TcpSocket::new_v4()
        } else {
            TcpSocket::new_v6()
        }
        .map_err(|e| e.to_string())?;
        if let Some(size) = recv_buffer {
            socket
                .set_recv_buffer_size(size)
                .map_err(|e| e.to_string())?;
        }
        let stream = socket.connect(addr).await.map_err(|e| e.to_string())?;
        stream.set_nodelay(true).map_err(|e| e.to_string())?;
        let url = format!("ws://{addr}/socket.io/?EIO=4&transport=websocket");
        let (ws, _) = tokio_tungstenite::client_async(url, stream)
            .await
            .map_err(|e| e.to_string())?;
        let mut socket = Self {
            ws,
            ns: ns.to_owned(),
            next_ack: 0,
            events: VecDeque::new(),
        };
        match socket.read_text().await?.chars().next() {
            Some('0') => Ok(socket),
            other => Err(format!("expected an open packet, got {other:?}")),
        }
    }

    /// Opens the namespace with `auth.token`.
    pub async fn connect_namespace(&mut self, token: &str) -> Result<(), String> {
        let auth = serde_json::json!({ "token": token });
        self.send(format!("40{},{auth}", self.ns)).await?;
        loop {
            let text = self.read_text().await?;
            if text.starts_with(&format!("40{}", self.ns)) {
                return Ok(());
            }
            if let Some(rest) = text.strip_prefix(&format!("44{},", self.ns)) {
                let err: Value = serde_json::from_str(rest).unwrap_or(Value::Null);
                return Err(err["message"].as_str().unwrap_or(rest).to_owned());
            }
            self.handle(&text).await?;
        }
    }

    async fn send(&mut self, text: String) -> Result<(), String> {
        self.ws
            .send(Message::text(text))
            .await
            .map_err(|e| e.to_string())
    }

    async fn read_text(&mut self) -> Result<String, String> {
        loop {
            match self.ws.next().await {
                Some(Ok(Message::Text(text))) => return Ok(text.to_string()),
                Some(Ok(Message::Close(_))) | None => return Err("closed".into()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => return Err(e.to_string()),
            }
        }
    }

    /// Handles a packet that is not what the caller waits for: answers
    /// pings, queues events.
    async fn handle(&mut self, text: &str) -> Result<(), String> {
        if text == "2" {
            return self.send("3".into()).await;
        }
        let prefix = format!("42{},", self.ns);
        if let Some(json) = text.strip_prefix(&prefix) {
            let mut args: Vec<Value> = serde_json::from_str(json).map_err(|e| e.to_string())?;
            if !args.is_empty() {
                let name = args.remove(0).as_str().unwrap_or_default().to_owned();
                let first = args.into_iter().next().unwrap_or(Value::Null);
                self.events.push_back((name, first));
            }
        }
        Ok(())
    }

    /// Emits `event` and waits for its acknowledgement (its first argument).
    pub async fn request(&mut self, event: &str, payload: Value) -> Result<Value, String> {
        let id = self.next_ack;
        self.next_ack += 1;
        let packet = serde_json::json!([event, payload]);
        self.send(format!("42{},{id}{packet}", self.ns)).await?;
        let ack_prefix = format!("43{},{id}", self.ns);
        loop {
            let text = self.read_text().await?;
            if let Some(json) = text.strip_prefix(&ack_prefix) {
                let args: Vec<Value> = serde_json::from_str(json).map_err(|e| e.to_string())?;
                return Ok(args.into_iter().next().unwrap_or(Value::Null));
            }
            self.handle(&text).await?;
        }
    }

    /// The next server event: `(name, first argument)`.
    pub async fn next_event(&mut self) -> Result<(String, Value), String> {
        loop {
            if let Some(event) = self.events.pop_front() {
                return Ok(event);
            }
            let text = self.read_text().await?;
            self.handle(&text).await?;
        }
    }

    /// The next `agent:event`-style packet's JSON argument list, unparsed
    /// (for load generators that only need a field or two). Answers pings.
    pub async fn next_event_text(&mut self) -> Result<String, String> {
        let prefix = format!("42{},", self.ns);
        loop {
            let text = self.read_text().await?;
            if text.starts_with(&prefix) {
                return Ok(text[prefix.len()..].to_owned());
            }
            if text == "2" {
                self.send("3".into()).await?;
            }
        }
    }

    /// Closes the connection.
    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }
}
