//! ## A [`Socket`] represents a client connection to the server
//!
//! It can be used to :
//! * Emit binary or string data
//! * Get a reference to the request made to connect to the socket.io server
//! * Close the connection
//!
//! #### Example :
//! ```rust
//! # use bytes::Bytes;
//! # use engineioxide::service::EngineIoService;
//! # use engineioxide::handler::EngineIoHandler;
//! # use engineioxide::{Socket, DisconnectReason, Str};
//! # use std::sync::{Mutex, Arc};
//! # use std::sync::atomic::{AtomicUsize, Ordering};
//! // Global state
//! #[derive(Debug, Default)]
//! struct MyHandler {
//!     user_cnt: AtomicUsize,
//! }
//!
//! // Socket state
//! #[derive(Debug, Default)]
//! struct SocketState {
//!     id: Mutex<String>,
//! }
//!
//! impl EngineIoHandler for MyHandler {
//!     type Data = SocketState;
//!
//!     fn on_connect(self: Arc<Self>, socket: Arc<Socket<SocketState>>) {
//!         // Get the request made to initialize the connection
//!         // and check that the authorization header is correct
//!         let connected = socket.req_parts.headers.get("Authorization")
//!             .map(|a| a == "mysuperpassword!").unwrap_or_default();
//!         // Close the socket if the authentication is invalid
//!         if !connected {
//!             socket.close(DisconnectReason::TransportError);
//!             return;
//!         }
//!
//!         let cnt = self.user_cnt.fetch_add(1, Ordering::Relaxed) + 1;
//!         // Emit string data to the client
//!         socket.emit(cnt.to_string()).ok();
//!     }
//!     fn on_disconnect(&self, socket: Arc<Socket<SocketState>>, reason: DisconnectReason) {
//!         let cnt = self.user_cnt.fetch_sub(1, Ordering::Relaxed) - 1;
//!     }
//!     fn on_message(self: &Arc<Self>, msg: Str, socket: Arc<Socket<SocketState>>) {
//!         *socket.data.id.lock().unwrap() = msg.into(); // bind a provided user id to a socket
//!     }
//!     fn on_binary(self: &Arc<Self>, data: Bytes, socket: Arc<Socket<SocketState>>) { }
//! }
//!
//! let svc = EngineIoService::new(Arc::new(MyHandler::default()));
//! ```
use std::{
    collections::VecDeque,
    fmt::Debug,
    sync::atomic::{AtomicBool, AtomicU8, AtomicUsize, Ordering},
};

#[cfg(any(test, feature = "__test_harness"))]
use std::sync::Arc;

use crate::{config::EngineIoConfig, errors::Error};
use bytes::Bytes;
use engineioxide_core::{Packet, PacketBuf, ProtocolVersion, Str, TransportType};
use http::request::Parts;
use smallvec::{SmallVec, smallvec};
use tokio::sync::{
    Mutex, Notify,
    mpsc::{self, Receiver, error::TrySendError},
    watch,
};

pub use engineioxide_core::Sid;
use tokio_util::sync::CancellationToken;

/// A [`DisconnectReason`] represents the reason why a [`Socket`] was closed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DisconnectReason {
    /// The client gracefully closed the connection
    TransportClose,
    /// The client sent multiple polling requests at the same time (it is forbidden according to the engine.io protocol)
    MultipleHttpPollingError,
    /// The client sent a bad request / the packet could not be parsed correctly
    PacketParsingError,
    /// An error occured in the transport layer
    /// (e.g. the client closed the connection without sending a close packet)
    TransportError,
    /// The client did not respond to the heartbeat
    HeartbeatTimeout,
    /// The server is being closed
    ClosingServer,
}

/// Convert an [`Error`] to a [`DisconnectReason`] if possible
/// This is used to notify the [`Handler`](crate::handler::EngineIoHandler) of the reason why a [`Socket`] was closed
/// If the error cannot be converted to a [`DisconnectReason`] it means that the error was not fatal and the [`Socket`] can be kept alive
impl From<&Error> for Option<DisconnectReason> {
    fn from(err: &Error) -> Self {
        use Error::*;
        match err {
            WsTransport(_) => Some(DisconnectReason::TransportError),
            BadPacket(_) | PacketParse(_) => Some(DisconnectReason::PacketParsingError),
            HeartbeatTimeout => Some(DisconnectReason::HeartbeatTimeout),
            _ => None,
        }
    }
}

/// A permit to emit a message to the client.
/// A permit holds a place in the internal channel to send one packet to the client.
pub struct Permit<'a> {
    inner: mpsc::Permit<'a, Queued>,
    buffered: &'a BufferedBytes,
}
impl Permit<'_> {
    /// Consume the permit and emit a message to the client.
    #[inline]
    pub fn emit(self, msg: Str) {
        self.queue(smallvec![Packet::Message(msg)]);
    }
    /// Consume the permit and emit a binary message to the client.
    #[inline]
    pub fn emit_binary(self, data: Bytes) {
        self.queue(smallvec![Packet::Binary(data)]);
    }

    /// Consume the permit and emit a message with multiple binary data to the client.
    ///
    /// It can be used to ensure atomicity when sending a string packet with adjacent binary packets.
    pub fn emit_many(self, msg: Str, data: VecDeque<Bytes>) {
        let mut packets = SmallVec::with_capacity(data.len() + 1);
        packets.push(Packet::Message(msg));
        for d in data {
            packets.push(Packet::Binary(d));
        }
        self.queue(packets);
    }

    /// Consume the permit and emit a message with multiple binary data to the client.
    ///
    /// It can be used to ensure atomicity when sending a string packet with adjacent binary packets.
    pub fn emit_many_binary(self, bin: Bytes, data: Vec<Bytes>) {
        let mut packets = SmallVec::with_capacity(data.len() + 1);
        packets.push(Packet::Binary(bin));
        for d in data {
            packets.push(Packet::Binary(d));
        }
        self.queue(packets);
    }

    /// Every packet enters the internal channel here, so that its bytes are
    /// counted until a transport takes it off the channel.
    fn queue(self, packets: PacketBuf) {
        self.buffered.add(&packets);
        self.inner.send(Box::new(packets));
    }
}

/// The bytes of the packets waiting in a socket's internal channel: counted
/// when a [`Permit`] queues them, uncounted when a transport takes them off
/// the channel (the websocket writer, a polling request's encoder).
#[derive(Debug)]
pub(crate) struct BufferedBytes {
    bytes: AtomicUsize,
    /// [`EngineIoConfig::max_buffer_bytes`]
    max: usize,
    /// Notified when the bytes fall below `max`.
    room: Notify,
}

impl BufferedBytes {
    fn new(max: usize) -> Self {
        Self {
            bytes: AtomicUsize::new(0),
            max,
            room: Notify::new(),
        }
    }

    fn add(&self, packets: &PacketBuf) {
        self.bytes
            .fetch_add(size_of_packets(packets), Ordering::Relaxed);
    }

    /// To be called by a transport for each [`PacketBuf`] it takes off the
    /// internal channel.
    pub(crate) fn remove(&self, packets: &PacketBuf) {
        let size = size_of_packets(packets);
        let before = self.bytes.fetch_sub(size, Ordering::Relaxed);
        if before >= self.max && before - size < self.max {
            self.room.notify_waiters();
        }
    }

    /// Whether the buffered bytes have reached the maximum. A packet is
    /// queued whenever they are below it, however large it is.
    fn is_full(&self) -> bool {
        self.bytes.load(Ordering::Relaxed) >= self.max
    }
}

/// The size of packets as they are sent over a websocket.
fn size_of_packets(packets: &PacketBuf) -> usize {
    packets.iter().map(|p| p.get_size_hint(false)).sum()
}

/// What a socket's internal channel carries: a [`PacketBuf`] behind a pointer.
///
/// tokio allocates a channel's first block of 32 slots when the channel is created, and keeps it
/// for the channel's life. With the packets inline, each slot is a [`PacketBuf`] (48 bytes), and
/// every socket holds a 1.5 KiB block, mostly empty: a connection spends its life idle between
/// pings. Boxed, a slot is 8 bytes; the cost is an allocation of 48 bytes per queued send.
pub(crate) type Queued = Box<PacketBuf>;

#[derive(Debug)]
pub(crate) struct InternalRx {
    pub buffered_rx: Receiver<Queued>,
    pub peeked_packet: Option<PacketBuf>,
    pub volatile_rx: watch::Receiver<Option<PacketBuf>>,
}

impl InternalRx {
    fn new(
        buffered_rx: Receiver<Queued>,
        volatile_rx: watch::Receiver<Option<PacketBuf>>,
    ) -> Self {
        Self {
            buffered_rx,
            peeked_packet: None,
            volatile_rx,
        }
    }
}

/// A [`Socket`] represents a client connection to the server.
/// It is agnostic to the [`TransportType`].
///
/// It handles :
/// * the packet communication between with the `Engine`
///   and the user defined [`Handler`](crate::handler::EngineIoHandler).
/// * the user defined [`Data`](crate::handler::EngineIoHandler::Data) bound to the socket.
/// * the heartbeat job that verify that the connection is still up by sending packets periodically.
pub struct Socket<D>
where
    D: Default + Send + Sync + 'static,
{
    /// The socket id
    pub id: Sid,

    /// The protocol version used by the socket
    pub protocol: ProtocolVersion,

    /// The transport type represented as a bitfield
    /// It is represented as a bitfield to allow the use of an [`AtomicU8`] so it can be shared between threads
    /// without any mutex
    transport: AtomicU8,

    /// Whether the socket is currently upgrading to a new transport.
    upgrading: AtomicBool,

    /// Channel to send [`PacketBuf`] to the connection
    ///
    /// It is used and managed by the [`EngineIo`](crate::engine) struct depending on the transport type
    ///
    /// It is locked if [`EngineIo`](crate::engine) is currently reading from it :
    /// * In case of polling transport it will be locked and released for each request
    /// * In case of websocket transport it will always be locked until the connection is closed
    ///
    /// Closing behavior is driven by the [`Socket::cancellation_token`].
    ///
    /// The channel is made of a [`SmallVec`] of [`Packet`]s so that adjacent packets can be sent atomically.
    pub(crate) internal_rx: Mutex<InternalRx>,

    /// Channel to send [PacketBuf] to the internal connection
    pub(crate) internal_tx: mpsc::Sender<Queued>,

    /// The bytes of the packets in the internal channel
    pub(crate) buffered_bytes: BufferedBytes,

    /// Channel to send volatile [PacketBuf]s that bypass the internal buffer.
    /// Uses a [`watch`](tokio::sync::watch) channel so only the latest volatile
    /// message is retained; subsequent volatile sends overwrite the previous one.
    volatile_tx: watch::Sender<Option<PacketBuf>>,

    /// Set when a heartbeat (a pong in v4, a ping in v3) is received; taken by the engine's
    /// heartbeat task ([`crate::heartbeat`]).
    heartbeat: AtomicBool,

    /// A cancellation token that will be triggered when the socket is being closed.
    pub(crate) cancellation_token: CancellationToken,

    /// Function to call when the socket is closed
    close_fn: Box<dyn Fn(Sid, DisconnectReason) + Send + Sync>,
    /// User data bound to the socket
    pub data: D,

    /// Http Request data used to create a socket
    pub req_parts: Parts,

    /// If the client supports binary packets (via polling XHR2)
    pub(crate) supports_binary: bool,
}

impl<D> Socket<D>
where
    D: Default + Send + Sync + 'static,
{
    pub(crate) fn new(
        protocol: ProtocolVersion,
        transport: TransportType,
        config: &EngineIoConfig,
        req_parts: Parts,
        close_fn: Box<dyn Fn(Sid, DisconnectReason) + Send + Sync>,
        supports_binary: bool,
    ) -> Self {
        let (internal_tx, internal_rx) = mpsc::channel(config.max_buffer_size);
        let (volatile_tx, volatile_rx) = watch::channel(None);

        Self {
            id: Sid::new(),
            protocol,
            transport: AtomicU8::new(transport as u8),
            upgrading: AtomicBool::new(false),

            internal_rx: Mutex::new(InternalRx::new(internal_rx, volatile_rx)),
            internal_tx,
            buffered_bytes: BufferedBytes::new(config.max_buffer_bytes),

            volatile_tx,

            heartbeat: AtomicBool::new(false),
            cancellation_token: CancellationToken::new(),

            close_fn,

            data: D::default(),
            req_parts,

            supports_binary,
        }
    }

    /// Sends a packet of data to the connection, unless the buffered bytes have reached
    /// [`EngineIoConfig::max_buffer_bytes`].
    fn send_data(&self, packet: Packet) -> Result<(), TrySendError<Packet>> {
        if self.buffered_bytes.is_full() {
            return Err(self.full_or_closed(packet));
        }
        self.send(packet)
    }

    /// The error for a packet that finds the buffer full.
    fn full_or_closed<T>(&self, value: T) -> TrySendError<T> {
        if self.internal_tx.is_closed() {
            TrySendError::Closed(value)
        } else {
            TrySendError::Full(value)
        }
    }

    /// Sends a packet to the connection.
    pub(crate) fn send(&self, packet: Packet) -> Result<(), TrySendError<Packet>> {
        #[cfg(feature = "tracing")]
        tracing::debug!(?packet, "sending packet");

        self.try_queue(packet)
    }

    /// Queues a packet if the internal channel has a free slot. It does not check
    /// [`EngineIoConfig::max_buffer_bytes`]: control packets take this way.
    pub(crate) fn try_queue(&self, packet: Packet) -> Result<(), TrySendError<Packet>> {
        match self.internal_tx.try_reserve() {
            Ok(inner) => {
                self.permit(inner).queue(smallvec![packet]);
                Ok(())
            }
            Err(TrySendError::Full(())) => Err(TrySendError::Full(packet)),
            Err(TrySendError::Closed(())) => Err(TrySendError::Closed(packet)),
        }
    }

    /// Queues a control packet, waiting for a free slot in the internal channel.
    pub(crate) async fn send_waiting(
        &self,
        packet: Packet,
    ) -> Result<(), mpsc::error::SendError<()>> {
        let inner = self.internal_tx.reserve().await?;
        self.permit(inner).queue(smallvec![packet]);
        Ok(())
    }

    fn permit<'a>(&'a self, inner: mpsc::Permit<'a, Queued>) -> Permit<'a> {
        Permit {
            inner,
            buffered: &self.buffered_bytes,
        }
    }
    pub(crate) fn is_upgrading(&self) -> bool {
        self.upgrading.load(Ordering::Relaxed)
    }
    pub(crate) fn start_upgrade(&self) {
        self.upgrading.store(true, Ordering::Relaxed);
    }

    /// Records a heartbeat received from the client: a pong (v4), or a ping (v3), which is
    /// answered with a pong right away. Several before the heartbeat task looks count as one.
    pub(crate) fn heartbeat_received(&self) {
        self.heartbeat.store(true, Ordering::Release);
        #[cfg(feature = "v3")]
        if self.protocol == ProtocolVersion::V3 && self.try_queue(Packet::Pong).is_err() {
            self.close(DisconnectReason::HeartbeatTimeout);
        }
    }

    /// Whether a heartbeat was received since the last call.
    pub(crate) fn take_heartbeat(&self) -> bool {
        self.heartbeat.swap(false, Ordering::Acquire)
    }

    /// Returns true if the [`Socket`] has a websocket [`TransportType`]
    pub(crate) fn is_ws(&self) -> bool {
        self.transport.load(Ordering::Relaxed) == TransportType::Websocket as u8
    }
    /// returns true if the [`Socket`] has an HTTP [`TransportType`]
    pub(crate) fn is_http(&self) -> bool {
        self.transport.load(Ordering::Relaxed) == TransportType::Polling as u8
    }

    /// Sets the [`TransportType`] to WebSocket
    /// Used when the client upgrade the connection from HTTP to WebSocket
    pub(crate) fn upgrade_to_websocket(&self) {
        self.upgrading.store(false, Ordering::Relaxed);
        self.transport
            .store(TransportType::Websocket as u8, Ordering::Relaxed);
    }

    /// Returns the current [`TransportType`] of the [`Socket`]
    pub fn transport_type(&self) -> TransportType {
        TransportType::from(self.transport.load(Ordering::Relaxed))
    }

    /// Reserve `n` permits to emit multiple messages and ensure that there is enough
    /// space in the internal chan.
    ///
    /// If the internal chan is full, or if the bytes buffered in it have reached
    /// [`EngineIoConfig::max_buffer_bytes`], the function will return a [`TrySendError::Full`] error.
    /// If the socket is closed, the function will return a [`TrySendError::Closed`] error.
    #[inline]
    pub fn reserve(&self) -> Result<Permit<'_>, TrySendError<()>> {
        if self.buffered_bytes.is_full() {
            return Err(self.full_or_closed(()));
        }
        let permit = self.internal_tx.try_reserve()?;
        Ok(self.permit(permit))
    }

    /// Waits until the internal chan has room for a packet: until the bytes buffered in it are
    /// below [`EngineIoConfig::max_buffer_bytes`] and it has a free slot, or until the socket is
    /// closed.
    ///
    /// It reserves nothing: [`Socket::reserve`] may still fail if other tasks emit in between.
    pub async fn writable(&self) {
        loop {
            // Registered before the check: a notification in between is not missed.
            let room = self.buffered_bytes.room.notified();
            if !self.buffered_bytes.is_full() {
                break;
            }
            tokio::select! {
                () = room => {}
                () = self.internal_tx.closed() => return,
            }
        }
        // Wait for a free slot, and give it back.
        let _ = self.internal_tx.reserve().await;
    }

    /// Emits a message to the client.
    ///
    /// If the transport is in websocket mode, the message is directly sent as a text frame.
    ///
    /// If the transport is in polling mode, the message is buffered and sent as a text frame to the next polling request.
    ///
    /// ⚠️ If the buffer is full or the socket is disconnected, an error will be returned with the original data
    pub fn emit(&self, msg: impl Into<Str>) -> Result<(), TrySendError<Str>> {
        self.send_data(Packet::Message(msg.into()))
            .map_err(|e| match e {
                TrySendError::Full(p) => TrySendError::Full(p.into_message()),
                TrySendError::Closed(p) => TrySendError::Closed(p.into_message()),
            })
    }

    /// Immediately closes the socket and the underlying connection.
    /// The socket will be removed from the `Engine` and the [`Handler`](crate::handler::EngineIoHandler) will be notified.
    #[cfg_attr(feature = "tracing", tracing::instrument(skip(self)))]
    pub fn close(&self, reason: DisconnectReason) {
        // Try to send a close packet is the connection is still operational.
        self.send(Packet::Close).ok();

        (self.close_fn)(self.id, reason);
    }

    /// Returns true if the socket is closed
    /// It means that no more packets can be sent to the client
    pub fn is_closed(&self) -> bool {
        self.internal_tx.is_closed()
    }

    /// Wait for the socket to be fully closed
    pub async fn closed(&self) {
        self.internal_tx.closed().await
    }

    /// Emits a binary message to the client.
    ///
    /// If the transport is in websocket mode, the message is directly sent as a binary frame.
    ///
    /// If the transport is in polling mode, the message is buffered and sent as a text frame **encoded in base64** to the next polling request.
    ///
    /// ⚠️ If the buffer is full or the socket is disconnected, an error will be returned with the original data
    pub fn emit_binary<B: Into<Bytes>>(&self, data: B) -> Result<(), TrySendError<Bytes>> {
        if self.protocol == ProtocolVersion::V3 {
            self.send_data(Packet::BinaryV3(data.into()))
        } else {
            self.send_data(Packet::Binary(data.into()))
        }
        .map_err(|e| match e {
            TrySendError::Full(p) => TrySendError::Full(p.into_binary()),
            TrySendError::Closed(p) => TrySendError::Closed(p.into_binary()),
        })
    }

    /// Try to send a volatile message bypassing the internal buffer channel.
    /// Volatile messages may be dropped if the transport is not ready to
    /// receive them.
    ///
    /// Because volatile messages bypass the main mpsc buffer queue, they may
    /// arrive out of order relative to regular messages.
    ///
    /// Returns `true` if the message was queued for sending, `false` if it
    /// was dropped (channel full or transport shutting down).
    #[inline]
    pub fn emit_volatile(&self, msg: impl Into<Str>) -> bool {
        self.send_volatile(smallvec![Packet::Message(msg.into())])
    }

    /// Try to send a volatile binary message bypassing the internal buffer channel.
    /// Volatile messages may be dropped if the transport is not ready to
    /// receive them.
    ///
    /// Returns `true` if the message was queued for sending, `false` if it
    /// was dropped.
    #[inline]
    pub fn emit_binary_volatile<B: Into<Bytes>>(&self, data: B) -> bool {
        if self.protocol == ProtocolVersion::V3 {
            self.send_volatile(smallvec![Packet::BinaryV3(data.into())])
        } else {
            self.send_volatile(smallvec![Packet::Binary(data.into())])
        }
    }

    /// Try to send a volatile message with multiple adjacent binary payloads.
    /// The message and all binary payloads are sent atomically as a single
    /// volatile write.
    ///
    /// Returns `true` if the message was queued for sending, `false` if it
    /// was dropped.
    #[inline]
    pub fn emit_many_volatile(&self, msg: Str, data: VecDeque<Bytes>) -> bool {
        let mut packets = SmallVec::with_capacity(1 + data.len());
        packets.push(Packet::Message(msg));
        for bin in data {
            packets.push(Packet::Binary(bin));
        }
        self.send_volatile(packets)
    }

    pub(crate) fn send_volatile(&self, packets: PacketBuf) -> bool {
        self.volatile_tx.send(Some(packets)).is_ok()
    }
}

impl<D: Default + Send + Sync + 'static> std::fmt::Debug for Socket<D> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Socket")
            .field("sid", &self.id)
            .field("protocol", &self.protocol)
            .field("conn", &self.transport)
            .field("internal_rx", &self.internal_rx)
            .field("internal_tx", &self.internal_tx)
            .field("heartbeat", &self.heartbeat)
            .field("cancellation_token", &self.cancellation_token)
            .field("req_data", &self.req_parts)
            .finish()
    }
}

#[doc(hidden)]
#[cfg(feature = "__test_harness")]
impl<D> Drop for Socket<D>
where
    D: Default + Send + Sync + 'static,
{
    fn drop(&mut self) {
        #[cfg(feature = "tracing")]
        tracing::debug!("[sid={}] dropping socket", self.id);
    }
}

#[doc(hidden)]
#[cfg(feature = "__test_harness")]
impl<D> Socket<D>
where
    D: Default + Send + Sync + 'static,
{
    /// Create a dummy socket for testing purpose
    pub fn new_dummy(
        sid: Sid,
        close_fn: Box<dyn Fn(Sid, DisconnectReason) + Send + Sync>,
    ) -> Arc<Socket<D>> {
        let (s, mut rx) = Socket::new_dummy_piped(sid, close_fn, 1024);
        tokio::spawn(async move {
            while let Some(_el) = rx.recv().await {
                #[cfg(feature = "tracing")]
                tracing::debug!(?sid, ?_el, "emitting eio msg");
            }
        });
        s
    }

    /// Create a dummy socket for testing purpose with a
    /// receiver to get the packets sent to the client
    pub fn new_dummy_piped(
        sid: Sid,
        close_fn: Box<dyn Fn(Sid, DisconnectReason) + Send + Sync>,
        buffer_size: usize,
    ) -> (Arc<Socket<D>>, tokio::sync::mpsc::Receiver<Packet>) {
        let (internal_tx, internal_rx) = mpsc::channel(buffer_size);
        let (volatile_tx, volatile_rx) = watch::channel(None);

        let sock = Self {
            id: sid,
            protocol: ProtocolVersion::V4,
            transport: AtomicU8::new(TransportType::Websocket as u8),
            upgrading: AtomicBool::new(false),

            internal_rx: Mutex::new(InternalRx::new(internal_rx, volatile_rx)),
            internal_tx,
            buffered_bytes: BufferedBytes::new(usize::MAX),

            volatile_tx,

            heartbeat: AtomicBool::new(false),
            cancellation_token: CancellationToken::new(),
            close_fn,

            data: D::default(),
            req_parts: http::Request::<()>::default().into_parts().0,

            supports_binary: true,
        };
        let sock = Arc::new(sock);

        let (tx, rx) = mpsc::channel(buffer_size);
        let sock_clone = sock.clone();
        tokio::spawn(async move {
            let mut internal_rx = sock_clone.internal_rx.try_lock().unwrap();
            while let Some(packets) = internal_rx.buffered_rx.recv().await {
                sock_clone.buffered_bytes.remove(&packets);
                for packet in *packets {
                    tx.send(packet).await.unwrap();
                }
            }
        });

        (sock, rx)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A channel slot is a pointer: an idle socket's first block of 32 slots stays small.
    #[test]
    fn queued_packets_are_a_pointer_wide() {
        assert_eq!(size_of::<Queued>(), size_of::<usize>());
    }

    fn socket(max_buffer_bytes: usize) -> Socket<()> {
        let config = EngineIoConfig::builder()
            .max_buffer_bytes(max_buffer_bytes)
            .build();
        Socket::new(
            ProtocolVersion::V4,
            TransportType::Websocket,
            &config,
            http::Request::<()>::default().into_parts().0,
            Box::new(|_, _| ()),
            false,
        )
    }

    /// Takes the oldest packets off the internal channel, as a transport does.
    fn take(socket: &Socket<()>) -> PacketBuf {
        let mut rx = socket.internal_rx.try_lock().unwrap();
        let packets = *rx.buffered_rx.try_recv().unwrap();
        socket.buffered_bytes.remove(&packets);
        packets
    }

    #[test]
    fn buffer_is_full_once_its_bytes_reach_max_buffer_bytes() {
        // "hello" is sent as "4hello": 6 bytes.
        let socket = socket(10);
        socket.emit("hello").unwrap();
        // Accepted: the buffer held less than 10 bytes.
        socket.reserve().unwrap().emit("hello".into());

        assert!(matches!(socket.emit("hello"), Err(TrySendError::Full(_))));
        assert!(matches!(
            socket.emit_binary(vec![1]),
            Err(TrySendError::Full(_))
        ));
        assert!(matches!(socket.reserve(), Err(TrySendError::Full(()))));

        take(&socket);
        socket.emit("hello").unwrap();
    }

    #[test]
    fn a_packet_larger_than_max_buffer_bytes_fits_in_an_empty_buffer() {
        let socket = socket(4);
        socket.emit("more than four bytes").unwrap();
        assert!(socket.reserve().is_err());
        take(&socket);
        assert!(socket.reserve().is_ok());
    }

    #[test]
    fn every_packet_counts_until_taken_off_the_channel() {
        let socket = socket(usize::MAX);
        socket.emit("hello").unwrap();
        socket.emit_binary(vec![1, 2, 3]).unwrap();
        socket
            .reserve()
            .unwrap()
            .emit_many("hi".into(), [Bytes::from_static(&[1])].into());
        socket.send(Packet::Ping).unwrap();
        let buffered = || socket.buffered_bytes.bytes.load(Ordering::Relaxed);
        assert_eq!(buffered(), 6 + 4 + (3 + 2) + 1);
        for _ in 0..4 {
            take(&socket);
        }
        assert_eq!(buffered(), 0);
    }

    #[test]
    fn control_packets_are_sent_whatever_the_buffered_bytes() {
        let socket = socket(1);
        socket.emit("hello").unwrap();
        assert!(socket.reserve().is_err());
        socket.send(Packet::Ping).unwrap();
        socket.close(DisconnectReason::ClosingServer);
        take(&socket);
        assert_eq!(take(&socket)[..], [Packet::Ping]);
        assert_eq!(take(&socket)[..], [Packet::Close]);
    }

    #[tokio::test]
    async fn writable_waits_until_the_transport_takes_enough_bytes() {
        let socket = Arc::new(socket(8));
        socket.emit("hello").unwrap();
        socket.emit("hello").unwrap();
        let writable = tokio::spawn({
            let socket = socket.clone();
            async move { socket.writable().await }
        });
        tokio::task::yield_now().await;
        assert!(!writable.is_finished(), "12 bytes buffered");

        take(&socket);
        tokio::time::timeout(Duration::from_secs(1), writable)
            .await
            .expect("6 bytes buffered")
            .unwrap();
        assert!(socket.reserve().is_ok());
    }

    #[tokio::test]
    async fn writable_waits_for_a_free_slot() {
        let config = EngineIoConfig::builder().max_buffer_size(1).build();
        let socket = Arc::new(Socket::<()>::new(
            ProtocolVersion::V4,
            TransportType::Websocket,
            &config,
            http::Request::<()>::default().into_parts().0,
            Box::new(|_, _| ()),
            false,
        ));
        socket.emit("hello").unwrap();
        let writable = tokio::spawn({
            let socket = socket.clone();
            async move { socket.writable().await }
        });
        tokio::task::yield_now().await;
        assert!(!writable.is_finished(), "the only slot is taken");

        take(&socket);
        tokio::time::timeout(Duration::from_secs(1), writable)
            .await
            .expect("the slot is free")
            .unwrap();
    }

    #[tokio::test]
    async fn writable_returns_when_the_socket_closes() {
        let socket = Arc::new(socket(1));
        socket.emit("hello").unwrap();
        let writable = tokio::spawn({
            let socket = socket.clone();
            async move { socket.writable().await }
        });
        tokio::task::yield_now().await;
        assert!(!writable.is_finished());

        socket.internal_rx.lock().await.buffered_rx.close();
        tokio::time::timeout(Duration::from_secs(1), writable)
            .await
            .expect("closed")
            .unwrap();
    }

    #[test]
    fn a_closed_socket_with_a_full_buffer_is_reported_closed() {
        let socket = socket(1);
        socket.emit("hello").unwrap();
        socket.internal_rx.try_lock().unwrap().buffered_rx.close();
        assert!(matches!(socket.reserve(), Err(TrySendError::Closed(()))));
        assert!(matches!(socket.emit("hello"), Err(TrySendError::Closed(_))));
    }
}
