//! Serving one accepted TCP connection: HTTP/1.1 with WebSocket upgrades,
//! and the two timeouts that keep a client from holding it for nothing.
//!
//! - **Header timeout** (`SWITCHBOARD_HEADER_TIMEOUT`): hyper's header read
//!   timeout. It runs from the moment hyper waits for a request head — when
//!   the connection opens, and again after every response on a kept-alive
//!   connection — until the whole head has arrived, so it closes idle and
//!   slowloris connections alike, and is the keep-alive idle timeout too.
//! - **Idle timeout** (`SWITCHBOARD_IDLE_TIMEOUT`): the connection is
//!   closed when the server has waited that long for the client — for the
//!   next piece of a request body its handler is reading (a stalled
//!   upload), or for room to write more of a response (a response nobody
//!   reads). Time the server itself takes to answer does not count, so a
//!   long-poll held until the next Engine.IO ping and a quiet Server-Sent
//!   Events stream are never cut. After a WebSocket upgrade the connection
//!   belongs to Engine.IO, whose ping timeout governs it.
//!
//! Each request gets `ConnectInfo<SocketAddr>` (the peer) in its
//! extensions, as `axum::serve` gives it. Only HTTP/1.1 is served: browsers
//! and Socket.IO clients speak it over cleartext, and a TLS-terminating
//! proxy in front can offer HTTP/2.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::{Body as HttpBody, Bytes, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// The timeouts of [`serve_connection`].
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    pub header: Duration,
    pub idle: Duration,
}

/// Serves `tcp` until the client closes it, a timeout closes it, or after
/// `stop` once its in-flight request is answered (hyper's graceful
/// shutdown). An upgraded connection is handed over to its upgrade (the
/// WebSocket transport) and this returns. `guard` is dropped with the socket
/// (for an upgraded connection, when the WebSocket closes).
pub async fn serve_connection(
    tcp: TcpStream,
    peer: SocketAddr,
    guard: Box<dyn Send + Sync>,
    router: Router,
    timeouts: Timeouts,
    stop: CancellationToken,
) {
    let waits = Arc::new(Waits::new());
    let io = TokioIo::new(Watched {
        _guard: guard,
        inner: tcp,
        waits: waits.clone(),
    });
    let service = {
        let waits = waits.clone();
        tower::service_fn(move |request: http::Request<Incoming>| {
            let mut request = request.map(|body| WatchedBody {
                inner: body,
                waits: waits.clone(),
            });
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        })
    };
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(timeouts.header)
        .serve_connection(io, TowerToHyperService::new(service))
        .with_upgrades();
    let mut connection = pin!(connection);
    let mut stopping = false;
    loop {
        tokio::select! {
            result = connection.as_mut() => {
                if let Err(error) = result {
                    tracing::debug!(%peer, %error, "connection closed");
                }
                return;
            }
            () = stop.cancelled(), if !stopping => {
                stopping = true;
                connection.as_mut().graceful_shutdown();
            }
            waited = waits.longer_than(timeouts.idle) => {
                tracing::debug!(%peer, ?waited, "closed a connection whose client stalled");
                return;
            }
        }
    }
}

/// Since when the server has been waiting for the client, in ms since
/// `epoch` plus 1 (0: not waiting).
struct Waits {
    epoch: Instant,
    /// A write did not fit into the socket's send buffer.
    write: AtomicU64,
    /// A handler asked for more of the request body and none had arrived.
    body: AtomicU64,
}

impl Waits {
    fn new() -> Self {
        Self {
            epoch: Instant::now(),
            write: AtomicU64::new(0),
            body: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64 + 1
    }

    fn set(&self, slot: &AtomicU64, waiting: bool) {
        if waiting {
            if slot.load(Ordering::Relaxed) == 0 {
                slot.store(self.now(), Ordering::Relaxed);
            }
        } else if slot.load(Ordering::Relaxed) != 0 {
            slot.store(0, Ordering::Relaxed);
        }
    }

    /// Resolves once the server has been waiting for the client for longer
    /// than `limit`, with how long.
    async fn longer_than(&self, limit: Duration) -> Duration {
        let limit_ms = limit.as_millis() as u64;
        loop {
            let since = [&self.write, &self.body]
                .iter()
                .map(|slot| slot.load(Ordering::Relaxed))
                .filter(|since| *since != 0)
                .min();
            let now = self.now();
            let sleep_ms = match since {
                Some(since) if now - since >= limit_ms => {
                    return Duration::from_millis(now - since);
                }
                Some(since) => since + limit_ms - now,
                // A wait that begins while this sleeps ends at least
                // `limit` later: checking again then is soon enough.
                None => limit_ms,
            };
            tokio::time::sleep(Duration::from_millis(sleep_ms.max(1))).await;
        }
    }
}

/// The TCP stream, noting when a write has to wait for the client.
struct Watched {
    /// Declared first, so dropped first: the connection's place under the
    /// caps is free by the time the client sees the socket close.
    _guard: Box<dyn Send + Sync>,
    inner: TcpStream,
    waits: Arc<Waits>,
}

impl Watched {
    fn wrote<T>(&self, poll: Poll<io::Result<T>>) -> Poll<io::Result<T>> {
        self.waits.set(&self.waits.write, poll.is_pending());
        poll
    }
}

impl AsyncRead for Watched {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Watched {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.wrote(poll)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.wrote(poll)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// A request body, noting when its reader has to wait for the client.
struct WatchedBody {
    inner: Incoming,
    waits: Arc<Waits>,
}

impl HttpBody for WatchedBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let poll = Pin::new(&mut self.inner).poll_frame(cx);
        self.waits.set(&self.waits.body, poll.is_pending());
        poll
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for WatchedBody {
    fn drop(&mut self) {
        self.waits.set(&self.waits.body, false);
    }
}
