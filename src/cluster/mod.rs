//! Several nodes: one PostgreSQL database, one Redis, any number of
//! `switchboard serve` processes (`redis_url`). Nothing here runs on a
//! single node.
//!
//! The database is the one source of truth; Redis only carries messages
//! between nodes, on one fred `SubscriberClient` (reconnecting forever with
//! an exponential backoff; the head check resubscribes to every channel
//! after each reconnect, then reads the heads):
//!
//! - **Socket.IO** ([`adapter`]): socketioxide's own Redis adapter
//!   (`socketioxide-redis`, fred driver) on both namespaces, so rooms and
//!   socket operations are cluster-wide.
//! - **Commit notices.** socketioxide's adapters cannot carry messages from
//!   server to server (`CoreAdapter` has no server-side emit), so the log's
//!   notices go on a channel of their own, `{prefix}-log`, through the same
//!   driver and connection. After each commit the writer queues
//!   `(session, last_seq)` without waiting; one task coalesces what is
//!   queued (the highest seq per session) and publishes it as one message.
//!   Receiving nodes hand each head to the log ([`EventLog::learn_head`]),
//!   which reads what its subscribers miss from the database.
//! - **Head check.** Every [`HEAD_CHECK`], and at once after Redis
//!   reconnects, one query reads the database head of every session with
//!   a local subscriber, so that a notice lost at the tail (nothing after
//!   it to reveal the gap), during a Redis restart or in a full buffer
//!   delays delivery by at most that long.
//!
//! - **Runs' control messages** on `{prefix}-runs`, for the engine
//!   (`engine::nodes`): stop, interrupt, a call's result to its run.
//!
//! Not yet cluster-wide (docs/deploy.md): the gateway registry and
//! housekeeping stay per node.

pub mod adapter;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use entity::session;
use fred::interfaces::PubsubInterface as _;
use fred::prelude::{Builder, ClientLike, Config as FredConfig, EventInterface, ReconnectPolicy};
use fred::types::RespVersion;
use futures_util::StreamExt;
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter, QuerySelect};
use secrecy::ExposeSecret;
use serde::{Deserialize, Serialize};
use socketioxide_redis::drivers::fred::FredDriver;
use socketioxide_redis::drivers::{ChanItem, Driver, MessageStream};
use socketioxide_redis::{RedisAdapterConfig, RedisAdapterCtr};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::Instrument as _;

use crate::config::ClusterConfig;
use crate::ids::{Seq, SessionId};
use crate::log::{Commit, EventLog};

/// How often a node reads the database head of the sessions it serves.
pub const HEAD_CHECK: Duration = Duration::from_secs(1);
/// Commit notices queued for publishing at most; past it they are dropped
/// (the head check finds those commits).
const QUEUED_NOTICES: usize = 8192;
/// Sessions in one notice at most.
const NOTICE_SESSIONS: usize = 512;
/// Notices received but not yet handled at most (the driver drops more).
const RECEIVED_NOTICES: usize = 4096;
/// How long a publish or a ping may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);
/// Sessions per head-check query.
const HEAD_CHECK_CHUNK: usize = 500;

/// The connection to the other nodes. Cheap to clone.
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    node_id: String,
    prefix: String,
    client: fred::clients::SubscriberClient,
    driver: FredDriver,
    /// `{prefix}-log`: commit notices.
    channel: String,
    /// `{prefix}-runs`: the engine's control messages between nodes.
    runs_channel: String,
}

/// What goes between nodes on `{prefix}-log`: the node that committed and
/// the new head of each session it committed to.
#[derive(Debug, Serialize, Deserialize)]
struct Notice {
    node: String,
    heads: Vec<(String, Seq)>,
}

impl Cluster {
    /// Connects to Redis (failing when it does not answer in time).
    pub async fn connect(config: &ClusterConfig, node_id: &str) -> anyhow::Result<Self> {
        let url = config.redis_url.expose_secret();
        let mut fred_config = FredConfig::from_url(url)
            .with_context(|| format!("invalid redis_url {}", config.redis_display()))?;
        // socketioxide-redis's drivers speak RESP3 (Redis 7 or later).
        fred_config.version = RespVersion::RESP3;
        // While Redis is away, commands fail at once instead of piling up:
        // notices are hints, and the head check makes up for them.
        fred_config.fail_fast = true;
        let client = Builder::from_config(fred_config)
            .with_connection_config(|c| {
                c.connection_timeout = Duration::from_secs(5);
                c.internal_command_timeout = Duration::from_secs(5);
            })
            // Forever, 100 ms doubling up to 2 s between attempts.
            .set_policy(ReconnectPolicy::new_exponential(0, 100, 2_000, 2))
            .build_subscriber_client()
            .context("cannot configure the Redis client")?;
        let driver = tokio::time::timeout(Duration::from_secs(10), FredDriver::new(client.clone()))
            .await
            .map_err(|_| anyhow::anyhow!("no answer within 10 s"))
            .and_then(|driver| driver.map_err(anyhow::Error::from))
            .with_context(|| format!("cannot connect to Redis at {}", config.redis_display()))?;
        Ok(Self {
            inner: Arc::new(Inner {
                node_id: node_id.to_owned(),
                prefix: config.prefix.clone(),
                channel: format!("{}-log", config.prefix),
                runs_channel: format!("{}-runs", config.prefix),
                client,
                driver,
            }),
        })
    }

    pub fn node_id(&self) -> &str {
        &self.inner.node_id
    }

    /// The Socket.IO adapter's state: the same driver, the cluster's prefix.
    pub fn adapter(&self) -> RedisAdapterCtr<FredDriver> {
        RedisAdapterCtr::new_with_driver(
            self.inner.driver.clone(),
            RedisAdapterConfig::new().with_prefix(format!("{}-sio", self.inner.prefix)),
        )
    }

    /// Whether Redis answers a PING within [`REDIS_TIMEOUT`] (`/readyz`).
    pub async fn ping(&self) -> Result<(), String> {
        match tokio::time::timeout(
            REDIS_TIMEOUT,
            self.inner.client.ping::<fred::types::Value>(None),
        )
        .await
        {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {REDIS_TIMEOUT:?}")),
        }
    }

    /// Links the log to the other nodes: its commits are announced, the
    /// others' are learnt, and the heads it serves are checked. Runs until
    /// `shutdown`.
    pub async fn start(
        &self,
        log: &EventLog,
        db: DatabaseConnection,
        tasks: &TaskTracker,
        shutdown: &CancellationToken,
    ) -> anyhow::Result<()> {
        let notices = self
            .inner
            .driver
            .subscribe(self.inner.channel.clone(), RECEIVED_NOTICES)
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to Redis: {e}"))?;
        let (commits, queued) = mpsc::channel(QUEUED_NOTICES);
        log.join_cluster(commits);
        let span = tracing::info_span!("cluster", node_id = %self.inner.node_id);
        tasks.spawn(publish(self.clone(), queued, shutdown.clone()).instrument(span.clone()));
        tasks.spawn(
            receive(self.clone(), notices, log.clone(), shutdown.clone()).instrument(span.clone()),
        );
        tasks.spawn(check_heads(self.clone(), log.clone(), db, shutdown.clone()).instrument(span));
        Ok(())
    }

    /// Subscribes to the runs' control messages (`{prefix}-runs`), keeping
    /// at most `buffer` unread.
    pub async fn runs_messages(&self, buffer: usize) -> anyhow::Result<MessageStream<ChanItem>> {
        self.inner
            .driver
            .subscribe(self.inner.runs_channel.clone(), buffer)
            .await
            .map_err(|e| anyhow::anyhow!("cannot subscribe to Redis: {e}"))
    }

    /// Publishes a control message of the runs to every node (this one
    /// included); fails when Redis does not take it in time.
    pub async fn publish_runs_message(&self, bytes: Vec<u8>) -> Result<(), String> {
        let sent = tokio::time::timeout(
            REDIS_TIMEOUT,
            self.inner
                .driver
                .publish(self.inner.runs_channel.clone(), bytes),
        )
        .await;
        match sent {
            Ok(Ok(())) => Ok(()),
            Ok(Err(error)) => Err(error.to_string()),
            Err(_) => Err(format!("no answer within {REDIS_TIMEOUT:?}")),
        }
    }

    /// Leaves Redis (at shutdown, after the background tasks ended).
    pub async fn close(&self) {
        let _ = tokio::time::timeout(REDIS_TIMEOUT, self.inner.client.quit()).await;
    }
}

/// Publishes the queued commits, coalesced: the highest seq per session
/// among those queued while the last publish was in flight.
async fn publish(
    cluster: Cluster,
    mut queued: mpsc::Receiver<Commit>,
    shutdown: CancellationToken,
) {
    let mut heads: HashMap<SessionId, Seq> = HashMap::new();
    loop {
        let first = tokio::select! {
            commit = queued.recv() => match commit {
                Some(commit) => commit,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        heads.insert(first.session, first.last_seq);
        while heads.len() < NOTICE_SESSIONS
            && let Ok(commit) = queued.try_recv()
        {
            let head = heads.entry(commit.session).or_default();
            *head = (*head).max(commit.last_seq);
        }
        let notice = Notice {
            node: cluster.inner.node_id.clone(),
            heads: heads
                .drain()
                .map(|(id, seq)| (id.as_str().to_owned(), seq))
                .collect(),
        };
        let count = notice.heads.len() as u64;
        let Ok(bytes) = serde_json::to_vec(&notice) else {
            continue;
        };
        let sent = tokio::time::timeout(
            REDIS_TIMEOUT,
            cluster
                .inner
                .driver
                .publish(cluster.inner.channel.clone(), bytes),
        )
        .await;
        match sent {
            Ok(Ok(())) => metrics::counter!(crate::metrics::CLUSTER_NOTICES_SENT).increment(count),
            failed => {
                metrics::counter!(crate::metrics::CLUSTER_NOTICES_DROPPED).increment(count);
                let error = match failed {
                    Ok(Err(error)) => error.to_string(),
                    _ => format!("no answer within {REDIS_TIMEOUT:?}"),
                };
                tracing::debug!(%error, "a commit notice was not published; head checks cover it");
            }
        }
    }
}

/// Hands the heads other nodes announce to the log.
async fn receive(
    cluster: Cluster,
    mut notices: MessageStream<ChanItem>,
    log: EventLog,
    shutdown: CancellationToken,
) {
    loop {
        let (_, bytes) = tokio::select! {
            notice = notices.next() => match notice {
                Some(notice) => notice,
                None => return,
            },
            () = shutdown.cancelled() => return,
        };
        let notice: Notice = match serde_json::from_slice(&bytes) {
            Ok(notice) => notice,
            Err(error) => {
                tracing::warn!(%error, "an unreadable commit notice was ignored");
                continue;
            }
        };
        if notice.node == cluster.inner.node_id {
            continue;
        }
        metrics::counter!(crate::metrics::CLUSTER_NOTICES_RECEIVED)
            .increment(notice.heads.len() as u64);
        for (session, head) in notice.heads {
            log.learn_head(&SessionId::from_db(session), head);
        }
    }
}

/// Subscribes again to every channel the client had (the adapter's and the
/// notices'), one by one, after Redis reconnected. fred's own
/// `SubscriberClient::manage_subscriptions` cannot be used: its
/// `resubscribe_all` sends a `SUBSCRIBE` without channels first (we have
/// only sharded ones), which Redis refuses, and it gives up before the
/// sharded channels.
async fn resubscribe(cluster: &Cluster) {
    for channel in cluster.inner.client.tracked_shard_channels() {
        if let Err(error) = cluster.inner.client.ssubscribe(channel.to_string()).await {
            tracing::warn!(%error, %channel, "cannot subscribe again after a reconnect");
        }
    }
}

/// Every [`HEAD_CHECK`], and right after Redis reconnects, reads the
/// database head of every session with a local subscriber (one query per
/// [`HEAD_CHECK_CHUNK`] sessions) and hands the ones that moved to the log.
async fn check_heads(
    cluster: Cluster,
    log: EventLog,
    db: DatabaseConnection,
    shutdown: CancellationToken,
) {
    let mut reconnects = cluster.inner.client.reconnect_rx();
    let mut every = tokio::time::interval(HEAD_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = every.tick() => {}
            reconnected = reconnects.recv() => match reconnected {
                Ok(server) => {
                    tracing::info!(%server, "reconnected to Redis; resynchronising");
                    resubscribe(&cluster).await;
                }
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                // The client is gone: the server is shutting down.
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            () = shutdown.cancelled() => return,
        }
        let watched = log.watched();
        if watched.is_empty() {
            continue;
        }
        metrics::counter!(crate::metrics::CLUSTER_HEAD_CHECKS).increment(1);
        let published: HashMap<&str, Seq> = watched
            .iter()
            .map(|(id, seq)| (id.as_str(), *seq))
            .collect();
        for chunk in watched.chunks(HEAD_CHECK_CHUNK) {
            let heads: Result<Vec<(String, Seq)>, _> = session::Entity::find()
                .select_only()
                .column(session::Column::Id)
                .column(session::Column::HeadSeq)
                .filter(session::Column::Id.is_in(chunk.iter().map(|(id, _)| id.as_str())))
                .into_tuple()
                .all(&db)
                .await;
            match heads {
                Ok(heads) => {
                    for (id, head) in heads {
                        if published.get(id.as_str()).is_some_and(|seq| head > *seq) {
                            log.learn_head(&SessionId::from_db(id), head);
                        }
                    }
                }
                Err(error) => tracing::warn!(%error, "head check failed; retrying"),
            }
        }
    }
}
