//! Where a subscriber's events go: a Socket.IO socket (`agent:event`) or a
//! channel (an SSE stream). Delivery never waits: a full sink says so, and
//! its subscription switches to catch-up.
//!
//! A channel is bounded by events and by bytes: each queued event holds a
//! share of the channel's byte budget until the reader takes it and drops
//! it (an event larger than the budget takes all of it, so one always
//! fits). A socket is bounded the same way by socketioxide: at most 256
//! packets and `SWITCHBOARD_MAX_SOCKET_BUFFER_BYTES` of them, counted until
//! its transport takes them (an event is always queued while less is
//! queued; see `vendor/PATCHES.md`). Either kind tells when it has room.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use crate::cluster::adapter::SocketRef;
use socketioxide::{SendError, SocketError};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, TryAcquireError, mpsc};

use super::event::Committed;
use crate::ids::Seq;

/// The Socket.IO event that carries session events.
pub const EVENT: &str = "agent:event";

/// How long a dropped subscriber's `session:lagged` notice waits for room.
const LAGGED_NOTICE_WINDOW: Duration = Duration::from_secs(120);
/// The longest a delivery waits for room before its caller looks again
/// (whether it was cancelled, whether it lags).
const ROOM_WAIT: Duration = Duration::from_millis(100);

static NEXT_CHANNEL: AtomicU64 = AtomicU64::new(1);

/// Identifies a subscriber within a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SinkId {
    Socket(socketioxide::socket::Sid),
    Channel(u64),
}

#[derive(Clone)]
pub enum Sink {
    Socket(SocketRef),
    Channel(Channel),
}

/// The sending end of a channel sink.
#[derive(Clone)]
pub struct Channel {
    id: u64,
    tx: mpsc::Sender<Queued>,
    /// Permits are bytes not yet queued.
    room: Arc<Semaphore>,
    max_bytes: usize,
}

/// An event in a channel sink: its bytes count against the channel's bound
/// until it is dropped.
pub struct Queued {
    pub event: Arc<Committed>,
    _bytes: OwnedSemaphorePermit,
}

impl Channel {
    /// The permits `event` takes: its size, or the whole budget.
    fn share(&self, event: &Committed) -> u32 {
        let bytes = event.size().min(self.max_bytes);
        u32::try_from(bytes).unwrap_or(u32::MAX)
    }
}

pub enum Delivery {
    Sent,
    Full,
    Closed,
}

impl Sink {
    /// A channel sink that queues at most `capacity` events and `max_bytes`
    /// of them (at least one), and its receiving end.
    pub fn channel(capacity: usize, max_bytes: usize) -> (Self, mpsc::Receiver<Queued>) {
        let (tx, rx) = mpsc::channel(capacity);
        let max_bytes = max_bytes.clamp(1, u32::MAX as usize);
        let channel = Channel {
            id: NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed),
            tx,
            room: Arc::new(Semaphore::new(max_bytes)),
            max_bytes,
        };
        (Sink::Channel(channel), rx)
    }

    pub fn id(&self) -> SinkId {
        match self {
            Sink::Socket(socket) => SinkId::Socket(socket.id),
            Sink::Channel(channel) => SinkId::Channel(channel.id),
        }
    }

    /// Hands `event` over without waiting.
    pub fn deliver(&self, event: &Arc<Committed>) -> Delivery {
        match self {
            Sink::Socket(socket) => match socket.emit(EVENT, &*event.json) {
                Ok(()) => Delivery::Sent,
                Err(SendError::Socket(SocketError::InternalChannelFull)) => Delivery::Full,
                Err(SendError::Socket(SocketError::Closed)) => Delivery::Closed,
                Err(error) => {
                    tracing::error!(%error, "cannot emit an event");
                    Delivery::Closed
                }
            },
            Sink::Channel(channel) => {
                let bytes = match channel
                    .room
                    .clone()
                    .try_acquire_many_owned(channel.share(event))
                {
                    Ok(bytes) => bytes,
                    Err(TryAcquireError::NoPermits) => return Delivery::Full,
                    Err(TryAcquireError::Closed) => return Delivery::Closed,
                };
                let queued = Queued {
                    event: event.clone(),
                    _bytes: bytes,
                };
                match channel.tx.try_send(queued) {
                    Ok(()) => Delivery::Sent,
                    Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full,
                    Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
                }
            }
        }
    }

    /// Waits a little (at most [`ROOM_WAIT`]) for room for `next` after the
    /// `attempt`-th [`Delivery::Full`] in a row.
    pub async fn wait_for_room(&self, next: &Committed, attempt: u32) {
        match self {
            // A socket's buffer drains as fast as its transport writes,
            // usually within microseconds: yield first, then back off to a
            // millisecond, so that a page refills it in one go rather than a
            // packet at a time; then wait until a client that really stopped
            // reading takes something.
            Sink::Socket(socket) => match attempt {
                0..=15 => tokio::task::yield_now().await,
                16..=200 => tokio::time::sleep(Duration::from_millis(1)).await,
                _ => {
                    let _ = tokio::time::timeout(ROOM_WAIT, socket.writable()).await;
                }
            },
            Sink::Channel(channel) => {
                let room = async {
                    let _slot = channel.tx.reserve().await;
                    let _bytes = channel.room.acquire_many(channel.share(next)).await;
                };
                let _ = tokio::time::timeout(ROOM_WAIT, room).await;
            }
        }
    }

    /// Tells the subscriber it was dropped for lagging, as soon as its
    /// buffer has room (it is full when this is decided), for at most two
    /// minutes.
    pub async fn send_lagged(&self, session_id: &str, last_seq: Seq) {
        let Sink::Socket(socket) = self else {
            return;
        };
        let notice = serde_json::json!({ "session_id": session_id, "last_seq": last_seq });
        let deadline = tokio::time::Instant::now() + LAGGED_NOTICE_WINDOW;
        while tokio::time::Instant::now() < deadline {
            match socket.emit("session:lagged", &notice) {
                Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                    let _ = tokio::time::timeout_at(deadline, socket.writable()).await;
                }
                _ => return,
            }
        }
    }
}
