//! The heartbeats of every socket of an engine, driven by one task.
//!
//! Each socket used to have a task of its own for its heartbeat (with a
//! channel to receive pongs): about 1.5 KB per connection for a job that
//! wakes once per ping interval. Here the engine keeps one task and one
//! [`DelayQueue`] entry per socket instead; a socket records a received
//! heartbeat in an atomic flag.
//!
//! The timing is the same as before:
//! * v4: a ping is sent as soon as the socket is registered, then every
//!   `ping_interval` once the client has answered; a client that does not
//!   answer within `ping_timeout` of a ping is closed with
//!   [`DisconnectReason::HeartbeatTimeout`]. Pings pause while the socket
//!   upgrades its transport.
//! * v3: the client pings and the transport answers with a pong as the ping
//!   arrives ([`Socket::heartbeat_received`]); a client that sends no ping
//!   for `ping_interval + ping_timeout` is closed.
//!
//! The queue holds [`Weak`] references: an entry does not keep a closed
//! socket's data alive, and is dropped at its next expiry.

use std::{
    sync::{Arc, OnceLock, Weak},
    time::Duration,
};

use futures_util::StreamExt;
use tokio::{sync::mpsc, time::Instant};
use tokio_util::time::DelayQueue;

use crate::socket::{DisconnectReason, Socket};

/// The heartbeat task of an engine, started with its first socket.
pub(crate) struct Heartbeats<D: Default + Send + Sync + 'static> {
    tx: OnceLock<mpsc::UnboundedSender<Weak<Socket<D>>>>,
    interval: Duration,
    timeout: Duration,
}

impl<D: Default + Send + Sync + 'static> Heartbeats<D> {
    pub(crate) fn new(interval: Duration, timeout: Duration) -> Self {
        Self {
            tx: OnceLock::new(),
            interval,
            timeout,
        }
    }

    /// Starts the heartbeat of `socket`.
    pub(crate) fn register(&self, socket: &Arc<Socket<D>>) {
        let tx = self.tx.get_or_init(|| {
            let (tx, rx) = mpsc::unbounded_channel();
            tokio::spawn(run(rx, self.interval, self.timeout));
            tx
        });
        // The task only ends once the engine, and this sender, are dropped.
        tx.send(Arc::downgrade(socket)).ok();
    }
}

/// What a socket's entry waits for.
enum Phase {
    /// v4: the time to send the next ping.
    Ping,
    /// v4: the pong to the ping sent at this instant.
    Pong(Instant),
    /// v3: the end of a window of `interval + timeout` in which the client
    /// must ping.
    #[cfg_attr(not(feature = "v3"), allow(dead_code))]
    ClientPing,
}

struct Entry<D: Default + Send + Sync + 'static> {
    socket: Weak<Socket<D>>,
    phase: Phase,
}

async fn run<D: Default + Send + Sync + 'static>(
    mut sockets: mpsc::UnboundedReceiver<Weak<Socket<D>>>,
    interval: Duration,
    timeout: Duration,
) {
    let mut queue = DelayQueue::new();
    loop {
        tokio::select! {
            socket = sockets.recv() => {
                let Some(socket) = socket else { break };
                let Some(phase) = socket.upgrade().map(|s| first_phase(&s)) else { continue };
                let delay = match phase {
                    Phase::ClientPing => interval + timeout,
                    _ => Duration::ZERO,
                };
                queue.insert(Entry { socket, phase }, delay);
            }
            Some(expired) = queue.next() => {
                let Entry { socket: weak, phase } = expired.into_inner();
                let Some(socket) = weak.upgrade() else { continue };
                if socket.cancellation_token.is_cancelled() {
                    continue;
                }
                if let Some((phase, at)) = step(&socket, phase, interval, timeout) {
                    queue.insert_at(Entry { socket: weak, phase }, at);
                }
            }
        }
    }
    #[cfg(feature = "tracing")]
    tracing::debug!("heartbeat task stopped");
}

#[cfg(feature = "v3")]
fn first_phase<D: Default + Send + Sync + 'static>(socket: &Socket<D>) -> Phase {
    match socket.protocol {
        engineioxide_core::ProtocolVersion::V3 => Phase::ClientPing,
        engineioxide_core::ProtocolVersion::V4 => Phase::Ping,
    }
}

#[cfg(not(feature = "v3"))]
fn first_phase<D: Default + Send + Sync + 'static>(_: &Socket<D>) -> Phase {
    Phase::Ping
}

/// Handles a socket's expired entry: the next phase and when it expires, or
/// `None` once the socket is closed.
fn step<D: Default + Send + Sync + 'static>(
    socket: &Socket<D>,
    phase: Phase,
    interval: Duration,
    timeout: Duration,
) -> Option<(Phase, Instant)> {
    let now = Instant::now();
    match phase {
        Phase::Ping if socket.is_upgrading() => Some((Phase::Ping, now + interval)),
        Phase::Ping => {
            // A pong that came before its ping does not answer it.
            socket.take_heartbeat();
            #[cfg(feature = "tracing")]
            tracing::trace!(sid = ?socket.id, "emitting ping");
            if socket.try_queue(engineioxide_core::Packet::Ping).is_err() {
                return timed_out(socket);
            }
            // Looked at once the next ping is due (if the client has answered
            // by then) and, failing that, when the timeout is over.
            Some((Phase::Pong(now), now + interval.min(timeout)))
        }
        Phase::Pong(sent) => {
            if socket.take_heartbeat() {
                #[cfg(feature = "tracing")]
                tracing::trace!(sid = ?socket.id, "pong received");
                Some((Phase::Ping, (sent + interval).max(now)))
            } else if now >= sent + timeout {
                timed_out(socket)
            } else {
                Some((Phase::Pong(sent), sent + timeout))
            }
        }
        Phase::ClientPing if socket.take_heartbeat() => {
            Some((Phase::ClientPing, now + interval + timeout))
        }
        Phase::ClientPing => timed_out(socket),
    }
}

fn timed_out<D: Default + Send + Sync + 'static>(socket: &Socket<D>) -> Option<(Phase, Instant)> {
    #[cfg(feature = "tracing")]
    tracing::debug!(sid = ?socket.id, "heartbeat timeout");
    socket.close(DisconnectReason::HeartbeatTimeout);
    None
}
