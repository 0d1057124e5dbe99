//! Where a subscriber's events go: a Socket.IO socket (`agent:event`) or a
//! channel (an SSE stream). Delivery never waits: a full sink says so, and
//! its subscription switches to catch-up.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use socketioxide::extract::SocketRef;
use socketioxide::{SendError, SocketError};
use tokio::sync::mpsc;

use super::event::Committed;
use std::sync::Arc;

/// The Socket.IO event that carries session events.
pub const EVENT: &str = "agent:event";

/// How long a dropped subscriber's `session:lagged` notice waits for room.
const LAGGED_NOTICE_WINDOW: Duration = Duration::from_secs(120);

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
    Channel(u64, mpsc::Sender<Arc<Committed>>),
}

pub enum Delivery {
    Sent,
    Full,
    Closed,
}

impl Sink {
    /// A channel sink and its receiving end.
    pub fn channel(capacity: usize) -> (Self, mpsc::Receiver<Arc<Committed>>) {
        let (tx, rx) = mpsc::channel(capacity);
        let id = NEXT_CHANNEL.fetch_add(1, Ordering::Relaxed);
        (Sink::Channel(id, tx), rx)
    }

    pub fn id(&self) -> SinkId {
        match self {
            Sink::Socket(socket) => SinkId::Socket(socket.id),
            Sink::Channel(id, _) => SinkId::Channel(*id),
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
            Sink::Channel(_, tx) => match tx.try_send(event.clone()) {
                Ok(()) => Delivery::Sent,
                Err(mpsc::error::TrySendError::Full(_)) => Delivery::Full,
                Err(mpsc::error::TrySendError::Closed(_)) => Delivery::Closed,
            },
        }
    }

    /// Waits a little for room after the `attempt`-th [`Delivery::Full`]
    /// in a row.
    pub async fn wait_for_room(&self, attempt: u32) {
        match self {
            // socketioxide has no readiness signal. Its buffer drains as fast
            // as the transport writes, usually within microseconds: yield
            // first, then back off to a millisecond, then to 10 ms for a
            // client that really stopped reading.
            Sink::Socket(_) => match attempt {
                0..=15 => tokio::task::yield_now().await,
                16..=200 => tokio::time::sleep(Duration::from_millis(1)).await,
                _ => tokio::time::sleep(Duration::from_millis(10)).await,
            },
            Sink::Channel(_, tx) => {
                let _ = tokio::time::timeout(Duration::from_millis(100), tx.reserve()).await;
            }
        }
    }

    /// Tells the subscriber it was dropped for lagging, as soon as its
    /// buffer has room (it is full when this is decided), for at most two
    /// minutes.
    pub fn send_lagged(&self, session_id: &str, last_seq: i64) {
        let Sink::Socket(socket) = self else {
            return;
        };
        let socket = socket.clone();
        let notice = serde_json::json!({ "session_id": session_id, "last_seq": last_seq });
        tokio::spawn(async move {
            let deadline = tokio::time::Instant::now() + LAGGED_NOTICE_WINDOW;
            while tokio::time::Instant::now() < deadline {
                match socket.emit("session:lagged", &notice) {
                    Err(SendError::Socket(SocketError::InternalChannelFull)) => {
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                    _ => return,
                }
            }
        });
    }
}
