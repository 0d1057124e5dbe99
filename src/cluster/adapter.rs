//! The Socket.IO adapter of both namespaces: socketioxide's in-memory
//! [`LocalAdapter`] on a single node, the Redis adapter of
//! `socketioxide-redis` (fred driver) when the server is one node of several.
//!
//! One type for both, chosen at start, so that the handlers, the event log's
//! sinks and the engine name one `SocketRef` and one `SocketIo` whatever the
//! deployment, and a single node pays one `match` per adapter call and no
//! Redis. Live events do not go through the adapter at all: the log hands
//! each event to each subscriber's socket itself (`log/sink.rs`), so the
//! adapter's "publish to Redis before local delivery" never sits on the hot
//! path; rooms, `disconnect_socket` and `fetch_sockets` become cluster-wide.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::future::{BoxFuture, Either};
use socketioxide::adapter::{AdapterError, Emitter, LocalAdapter};
use socketioxide_core::adapter::errors::BroadcastError;
use socketioxide_core::adapter::{
    BroadcastOptions, CoreAdapter, CoreLocalAdapter, DefinedAdapter, RemoteSocketData, Room,
    RoomParam, Spawnable,
};
use socketioxide_core::packet::Packet;
use socketioxide_redis::drivers::fred::FredDriver;
use socketioxide_redis::{FredAdapter, RedisAdapterCtr};

/// `SocketRef` of this server's namespaces.
pub type SocketRef = socketioxide::extract::SocketRef<NodeAdapter>;
/// `AckSender` of this server's namespaces.
pub type AckSender = socketioxide::extract::AckSender<NodeAdapter>;
/// The `SocketIo` handle of this server.
pub type SocketIo = socketioxide::SocketIo<NodeAdapter>;

/// What [`NodeAdapter::new`] is built from: `None` on a single node.
pub type AdapterState = Option<RedisAdapterCtr<FredDriver>>;

pub enum NodeAdapter {
    Local(LocalAdapter),
    /// In an `Arc`: its `init` takes one.
    Redis(Arc<FredAdapter<Emitter>>),
}

type RedisAckStream = <FredAdapter<Emitter> as CoreAdapter<Emitter>>::AckStream;

fn adapter_error(error: impl Into<AdapterError>) -> AdapterError {
    error.into()
}

impl DefinedAdapter for NodeAdapter {}

impl CoreAdapter<Emitter> for NodeAdapter {
    type Error = AdapterError;
    type State = AdapterState;
    // The Redis adapter's stream is already "local or remote".
    type AckStream = RedisAckStream;
    type InitRes = InitRes;

    fn new(state: &Self::State, local: CoreLocalAdapter<Emitter>) -> Self {
        match state {
            None => Self::Local(LocalAdapter::new(&(), local)),
            Some(redis) => Self::Redis(Arc::new(FredAdapter::new(redis, local))),
        }
    }

    fn init(self: Arc<Self>, on_success: impl FnOnce() + Send + 'static) -> InitRes {
        match &*self {
            Self::Local(_) => {
                on_success();
                InitRes(None)
            }
            Self::Redis(redis) => {
                let init = redis.clone().init(on_success);
                InitRes(Some(Box::pin(async move {
                    init.await.map_err(|e| e.to_string())
                })))
            }
        }
    }

    async fn close(&self) -> Result<(), AdapterError> {
        match self {
            Self::Local(a) => a.close().await.map_err(adapter_error),
            Self::Redis(a) => a.close().await.map_err(adapter_error),
        }
    }

    async fn server_count(&self) -> Result<u16, AdapterError> {
        match self {
            Self::Local(a) => a.server_count().await.map_err(adapter_error),
            Self::Redis(a) => a.server_count().await.map_err(adapter_error),
        }
    }

    async fn broadcast(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
    ) -> Result<(), BroadcastError> {
        match self {
            Self::Local(a) => a.broadcast(packet, opts).await,
            Self::Redis(a) => a.broadcast(packet, opts).await,
        }
    }

    async fn broadcast_with_ack(
        &self,
        packet: Packet,
        opts: BroadcastOptions,
        timeout: Option<Duration>,
    ) -> Result<Self::AckStream, AdapterError> {
        match self {
            Self::Local(a) => a
                .broadcast_with_ack(packet, opts, timeout)
                .await
                .map(Either::Left)
                .map_err(adapter_error),
            Self::Redis(a) => a
                .broadcast_with_ack(packet, opts, timeout)
                .await
                .map_err(adapter_error),
        }
    }

    async fn add_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), AdapterError> {
        match self {
            Self::Local(a) => a.add_sockets(opts, rooms).await.map_err(adapter_error),
            Self::Redis(a) => a.add_sockets(opts, rooms).await.map_err(adapter_error),
        }
    }

    async fn del_sockets(
        &self,
        opts: BroadcastOptions,
        rooms: impl RoomParam,
    ) -> Result<(), AdapterError> {
        match self {
            Self::Local(a) => a.del_sockets(opts, rooms).await.map_err(adapter_error),
            Self::Redis(a) => a.del_sockets(opts, rooms).await.map_err(adapter_error),
        }
    }

    async fn disconnect_socket(&self, opts: BroadcastOptions) -> Result<(), BroadcastError> {
        match self {
            Self::Local(a) => a.disconnect_socket(opts).await,
            Self::Redis(a) => a.disconnect_socket(opts).await,
        }
    }

    async fn rooms(&self, opts: BroadcastOptions) -> Result<Vec<Room>, AdapterError> {
        match self {
            Self::Local(a) => a.rooms(opts).await.map_err(adapter_error),
            Self::Redis(a) => a.rooms(opts).await.map_err(adapter_error),
        }
    }

    async fn fetch_sockets(
        &self,
        opts: BroadcastOptions,
    ) -> Result<Vec<RemoteSocketData>, AdapterError> {
        match self {
            Self::Local(a) => a.fetch_sockets(opts).await.map_err(adapter_error),
            Self::Redis(a) => a.fetch_sockets(opts).await.map_err(adapter_error),
        }
    }

    fn get_local(&self) -> &CoreLocalAdapter<Emitter> {
        match self {
            Self::Local(a) => a.get_local(),
            Self::Redis(a) => a.get_local(),
        }
    }
}

/// A namespace's adapter initialisation: nothing to wait for on one node,
/// the Redis subscriptions otherwise. Await it to know that the namespace
/// is reachable from other nodes (`Spawnable` logs a failure instead).
#[must_use]
pub struct InitRes(Option<BoxFuture<'static, Result<(), String>>>);

impl Future for InitRes {
    type Output = Result<(), String>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        match &mut self.0 {
            None => Poll::Ready(Ok(())),
            Some(init) => init.as_mut().poll(cx),
        }
    }
}

impl Spawnable for InitRes {
    fn spawn(self) {
        if let Some(init) = self.0 {
            tokio::spawn(async move {
                if let Err(error) = init.await {
                    tracing::error!(%error, "the Redis adapter did not start");
                }
            });
        }
    }
}
