//! The session event log: append, publish, subscribe, replay.
//!
//! Every session has an append-only log with a contiguous `seq`. All live
//! delivery and all replay come from it:
//!
//! - **One writer per session.** [`EventLog::append`] hands events to the
//!   session's writer task, which commits everything queued in one
//!   transaction (group commit) and allocates seqs by incrementing the
//!   session row's `head_seq` in that transaction ([`store::append`]). On
//!   SQLite (one writer at a time) the session writers' groups go through
//!   one committer that puts every session's waiting group in the same
//!   transaction ([`store::append_groups`]).
//! - **Effects.** An append may carry database writes that must commit with
//!   its events or not at all ([`Effect`]: a run's rows, its messages, the
//!   session's status).
//! - **Commit, then publish.** Only committed events are published, in seq
//!   order, under the session's state lock.
//! - **Subscribers are cursors.** A live subscriber gets each event handed to
//!   its sink without waiting. A full sink (socketioxide's per-socket buffer)
//!   turns the subscription into catch-up: a task that reads what was missed
//!   from the in-memory tail or the database and rejoins live delivery, under
//!   the same lock as publishing, at exactly the seq where it stopped — so a
//!   slow subscriber costs only itself, and nothing is lost or repeated.
//! - A subscriber that cannot take a single event for `lag_timeout` is sent
//!   `session:lagged { session_id, last_seq }` and dropped; it resubscribes
//!   with `after_seq = last_seq` when it can keep up again.
//! - **Several nodes** ([`cluster`]): each node publishes to its own
//!   subscribers; a head another node committed is read from the database
//!   once per session and published like a local commit. Catch-up pages
//!   read from the database never go past the published head, so nothing
//!   committed but not yet published is handed over twice.
//! - **Bounded by bytes.** Every page read from the database (HTTP pages,
//!   catch-up batches) holds at most `page_bytes` of events, but at least
//!   one; the tail is bounded per session and across sessions
//!   ([`tail`]); at most `catch_up_reads` catch-ups read a page from the
//!   database at once, so a reconnect storm holds a few pages, not one per
//!   subscriber.

mod cluster;
pub mod event;
pub mod fence;
pub mod sink;
pub mod store;
mod subscription;
mod tail;
mod writer;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use sea_orm::{DatabaseConnection, DatabaseTransaction, DbErr};
use tokio::sync::{Semaphore, mpsc, oneshot};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::Identity;
use crate::ids::{Seq, SessionId};
use crate::sessions::SessionError;
pub use cluster::Commit;
pub use event::{Committed, NewEvent, Window};
pub use fence::{Fence, Lease};
pub use sink::{Sink, SinkId};
use store::Outcome;
pub use store::StoreError;
use tail::Tail;

/// Why the log refused or failed a request.
#[derive(Debug, Clone, thiserror::Error)]
pub enum LogError {
    #[error("no session {0}")]
    NoSession(SessionId),
    /// A subscription from beyond the session's head.
    #[error("after_seq {after} is beyond the session's head_seq {head}")]
    AfterHead { after: Seq, head: Seq },
    /// An append from someone who may not append to the session.
    #[error(transparent)]
    NotAllowed(#[from] SessionError),
    /// The writers are gone: the server is shutting down.
    #[error("the server is shutting down")]
    ShuttingDown,
    /// The session's writer kept retiring under the request.
    #[error("the session log is restarting; retry")]
    Restarting,
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl LogError {
    /// The append needed a run lease this node no longer holds.
    pub fn is_fenced(&self) -> bool {
        matches!(self, LogError::Store(StoreError::Fenced(_)))
    }

    /// The append needed to take a run lease another node holds.
    pub fn is_lease_held(&self) -> bool {
        matches!(self, LogError::Store(StoreError::LeaseHeld(_)))
    }
}

impl From<DbErr> for LogError {
    fn from(error: DbErr) -> Self {
        LogError::Store(error.into())
    }
}

/// Tunables of the log.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Keep at most this many events per session (older ones are pruned).
    pub max_events: Option<u64>,
    /// Prune events older than this.
    pub max_age: Option<Duration>,
    /// Recent events kept in memory per active session, for cheap catch-up.
    pub tail_len: usize,
    /// Bytes of recent events kept in memory per active session.
    pub tail_bytes: usize,
    /// Bytes of recent events kept in memory across every active session.
    pub tail_bytes_total: usize,
    /// Bytes of events in one page read from the log (at least one event):
    /// `SWITCHBOARD_MAX_PAGE_BYTES`.
    pub page_bytes: usize,
    /// Catch-ups reading a page from the database at once.
    pub catch_up_reads: usize,
    /// How long a subscriber may accept nothing before it is dropped.
    pub lag_timeout: Duration,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            max_events: None,
            max_age: None,
            tail_len: 1024,
            tail_bytes: 1024 * 1024,
            tail_bytes_total: 64 * 1024 * 1024,
            page_bytes: 4 * 1024 * 1024,
            catch_up_reads: 4,
            lag_timeout: Duration::from_secs(30),
        }
    }
}

/// The result of an append.
#[derive(Debug)]
pub struct Appended {
    pub events: Vec<Arc<Committed>>,
    pub duplicates: usize,
}

impl Appended {
    pub fn first_seq(&self) -> Option<Seq> {
        self.events.first().map(|e| e.seq)
    }

    pub fn last_seq(&self) -> Option<Seq> {
        self.events.last().map(|e| e.seq)
    }
}

#[derive(Clone)]
pub struct EventLog {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    /// Held around each log write transaction on SQLite, which has one
    /// writer at a time: writers of different sessions queue here instead
    /// of sleeping in SQLite's busy handler. `None` for PostgreSQL.
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    /// SQLite: the [`writer::committer`]'s queue. Only the session writers
    /// hold it, so that the committer ends with the last of them once the
    /// server shuts down.
    committer: Option<mpsc::WeakSender<writer::Job>>,
    /// The committer's own connection, closed at shutdown.
    writer: Option<DatabaseConnection>,
    settings: Settings,
    sessions: Mutex<HashMap<SessionId, Arc<SessionLog>>>,
    /// Bytes held by every session's tail.
    tail_bytes: Arc<AtomicUsize>,
    /// Permits to read a catch-up page from the database.
    catch_up_reads: Arc<Semaphore>,
    tasks: TaskTracker,
    shutdown: CancellationToken,
    /// Set when this server is one node of several ([`cluster`]).
    cluster: OnceLock<cluster::Link>,
}

/// One session's writer queue, tail and subscribers.
struct SessionLog {
    id: SessionId,
    /// The session's owner (it never changes), for access checks that
    /// need no query.
    owner: String,
    db: DatabaseConnection,
    settings: Settings,
    tx: mpsc::Sender<AppendRequest>,
    state: Mutex<State>,
    /// Shared by every session ([`Inner::catch_up_reads`]).
    catch_up_reads: Arc<Semaphore>,
    tasks: TaskTracker,
    /// Ends catch-ups at shutdown.
    shutdown: CancellationToken,
}

struct State {
    /// The highest seq published.
    head: Seq,
    /// The last published events, contiguous, ending at `head`.
    tail: Tail,
    subscribers: HashMap<SinkId, Subscriber>,
    /// With several nodes: the highest head learnt from other nodes, and
    /// whether a fill task is reading up to it ([`cluster`]).
    learnt: Seq,
    filling: bool,
}

struct Subscriber {
    sink: Sink,
    /// Live: gets events as they are published. Otherwise a catch-up task
    /// owns delivery.
    live: bool,
    /// Set when this subscription is replaced or removed; its catch-up task
    /// stops before the next delivery.
    cancelled: Arc<AtomicBool>,
}

struct AppendRequest {
    events: Vec<NewEvent>,
    effect: Option<Box<dyn Effect>>,
    fence: Option<Fence>,
    reply: oneshot::Sender<Result<Outcome, StoreError>>,
}

/// Database writes that must commit together with an append, or not at all
/// (a run's state, its messages, the session's status). An append with an
/// effect is never grouped with other appends of its session; if it fails,
/// it fails alone (a failed multi-session commit is retried group by group).
pub trait Effect: Send + Sync + 'static {
    /// Runs inside the append's transaction, after its events are inserted;
    /// `seqs` are theirs, in order.
    fn apply<'a>(
        &'a self,
        txn: &'a DatabaseTransaction,
        seqs: &'a [Seq],
    ) -> BoxFuture<'a, Result<(), DbErr>>;
}

/// An append on its way to the database; [`Submitted::wait`] for its commit.
pub struct Submitted(oneshot::Receiver<Result<Outcome, StoreError>>);

impl Submitted {
    pub async fn wait(self) -> Result<Appended, LogError> {
        Self::appended(self.0.await.ok())
    }

    /// The outcome, if the commit is already over.
    pub fn try_wait(&mut self) -> Option<Result<Appended, LogError>> {
        match self.0.try_recv() {
            Err(oneshot::error::TryRecvError::Empty) => None,
            reply => Some(Self::appended(reply.ok())),
        }
    }

    /// The writer's reply (`None`: it went away) as the caller sees it.
    fn appended(reply: Option<Result<Outcome, StoreError>>) -> Result<Appended, LogError> {
        let outcome = reply.ok_or(LogError::ShuttingDown)??;
        Ok(Appended {
            events: outcome.events,
            duplicates: outcome.duplicates,
        })
    }
}

/// A subscription ready to start, once the caller has acknowledged it.
pub struct Pending {
    log: Arc<SessionLog>,
    sink: Sink,
    start: Seq,
    pub head_seq: Seq,
    /// Set when retention pruned events the subscriber asked for.
    pub truncated_to: Option<Seq>,
}

impl EventLog {
    /// `writer`: on SQLite, a connection of its own to commit through
    /// ([`crate::db::connect_log_writer`]).
    pub fn new(
        db: DatabaseConnection,
        writer: Option<DatabaseConnection>,
        settings: Settings,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let write_gate: Option<Arc<tokio::sync::Mutex<()>>> =
            (db.get_database_backend() == sea_orm::DatabaseBackend::Sqlite).then(Arc::default);
        let committer = write_gate.clone().map(|gate| {
            let (tx, rx) = mpsc::channel(4096);
            let writer = writer.clone().unwrap_or_else(|| db.clone());
            let weak = tx.downgrade();
            let committer =
                tasks.track_future(writer::committer(writer, gate, rx, tx, shutdown.clone()));
            writer::spawn_on_own_thread(committer);
            weak
        });
        let log = Self {
            inner: Arc::new(Inner {
                write_gate,
                committer,
                writer,
                db,
                catch_up_reads: Arc::new(Semaphore::new(settings.catch_up_reads.max(1))),
                settings,
                sessions: Mutex::default(),
                tail_bytes: Arc::default(),
                tasks,
                shutdown,
                cluster: OnceLock::new(),
            }),
        };
        if let Some(max_age) = log.inner.settings.max_age {
            log.inner.tasks.spawn(writer::prune_by_age(
                log.inner.db.clone(),
                log.inner.write_gate.clone(),
                max_age,
                log.inner.shutdown.clone(),
            ));
        }
        log
    }

    /// Closes the log's own database connection, once every writer is done
    /// (at shutdown, after the background tasks ended).
    pub async fn close(&self) -> Result<(), DbErr> {
        match &self.inner.writer {
            Some(writer) => writer.clone().close().await,
            None => Ok(()),
        }
    }

    /// Appends `events` atomically with contiguous seqs and publishes them.
    pub async fn append(
        &self,
        session: &SessionId,
        events: Vec<NewEvent>,
    ) -> Result<Appended, LogError> {
        self.append_with(session, events, None).await
    }

    /// Appends `events` and applies `effect` in the same transaction.
    pub async fn append_with(
        &self,
        session: &SessionId,
        events: Vec<NewEvent>,
        effect: Option<Box<dyn Effect>>,
    ) -> Result<Appended, LogError> {
        self.submit(session, events, effect).await?.wait().await
    }

    /// Queues an append without waiting for its commit: appends submitted
    /// one after the other commit in that order. A run streams its deltas
    /// this way, so that those arriving while a commit is in flight share
    /// the next one.
    pub async fn submit(
        &self,
        session: &SessionId,
        events: Vec<NewEvent>,
        effect: Option<Box<dyn Effect>>,
    ) -> Result<Submitted, LogError> {
        self.submit_fenced(session, events, effect, None).await
    }

    /// [`EventLog::submit`] that commits only if `fence` passes in the
    /// same transaction (a run's writes with several nodes).
    pub async fn submit_fenced(
        &self,
        session: &SessionId,
        events: Vec<NewEvent>,
        effect: Option<Box<dyn Effect>>,
        fence: Option<Fence>,
    ) -> Result<Submitted, LogError> {
        let mut events = Some((events, effect));
        for _ in 0..3 {
            let log = self.session(session).await?;
            let (reply, answer) = oneshot::channel();
            let (events_now, effect) = events.take().unwrap_or_default();
            let request = AppendRequest {
                events: events_now,
                effect,
                fence: fence.clone(),
                reply,
            };
            match log.tx.send(request).await {
                Ok(()) => return Ok(Submitted(answer)),
                // The writer retired between lookup and send: take the events
                // back and ask the next one.
                Err(mpsc::error::SendError(request)) => {
                    events = Some((request.events, request.effect));
                }
            }
        }
        Err(LogError::Restarting)
    }

    /// Prepares a subscription from `after` (exclusive). `stored` is the
    /// session's row as the caller has just read it. Errors: `conflict`
    /// when `after` is beyond the head — with several nodes, the database's
    /// head (another node may have committed what this one has not heard
    /// of yet).
    pub async fn prepare_subscription(
        &self,
        session: &SessionId,
        sink: Sink,
        after: Seq,
        stored: Window,
    ) -> Result<Pending, LogError> {
        let log = self.session(session).await?;
        let mut head_seq = log.state.lock().expect("log state").head;
        if self.clustered() && stored.head_seq > head_seq {
            // Another node committed what this one has not published yet:
            // the fill task publishes it, the catch-up reads up to it.
            log.learn(stored.head_seq);
            head_seq = stored.head_seq;
        }
        let first_seq = stored.first_seq;
        if after > head_seq {
            return Err(LogError::AfterHead {
                after,
                head: head_seq,
            });
        }
        let oldest_available = first_seq.prev();
        let (start, truncated_to) = if after < oldest_available {
            (oldest_available, Some(first_seq))
        } else {
            (after, None)
        };
        Ok(Pending {
            log,
            sink,
            start,
            head_seq,
            truncated_to,
        })
    }

    /// Checks that `caller` owns the session and may append to it, like
    /// [`crate::sessions::load_owned`], without a query while the session's
    /// log is active (the hot path of producers appending event by event).
    pub async fn authorize_append(
        &self,
        session: &SessionId,
        caller: &Identity,
    ) -> Result<(), LogError> {
        let log = self.session(session).await?;
        Ok(crate::sessions::check_owner(&log.owner, caller)?)
    }

    /// Sends a notice that is not logged (`agent:heartbeat`) to the
    /// session's Socket.IO subscribers that have room for it.
    pub fn notify(&self, session: &SessionId, event: &str, payload: &serde_json::Value) {
        let Some(log) = self.active(session) else {
            return;
        };
        let state = log.state.lock().expect("log state");
        for subscriber in state.subscribers.values() {
            if let Sink::Socket(socket) = &subscriber.sink {
                let _ = socket.emit(event, payload);
            }
        }
    }

    /// Stops delivery to `sink` for this session.
    pub fn unsubscribe(&self, session: &SessionId, sink: &SinkId) -> bool {
        self.active(session)
            .is_some_and(|log| log.remove(sink, None))
    }

    /// The session's writer state, if it is active (never created here).
    fn active(&self, session: &SessionId) -> Option<Arc<SessionLog>> {
        self.inner
            .sessions
            .lock()
            .expect("sessions")
            .get(session)
            .cloned()
    }

    /// Stored events after `after`, oldest first: at most `limit` of them
    /// and a page of bytes ([`store::read_page`]).
    pub async fn read_page(
        &self,
        session: &SessionId,
        after: Seq,
        limit: u64,
    ) -> Result<store::Page, LogError> {
        let max_bytes = self.inner.settings.page_bytes;
        Ok(store::read_page(&self.inner.db, session, after, limit, max_bytes).await?)
    }

    /// The events of [`EventLog::read_page`].
    pub async fn read(
        &self,
        session: &SessionId,
        after: Seq,
        limit: u64,
    ) -> Result<Vec<Arc<Committed>>, LogError> {
        Ok(self.read_page(session, after, limit).await?.events)
    }

    /// The session's writer state, created on first use.
    async fn session(&self, id: &SessionId) -> Result<Arc<SessionLog>, LogError> {
        if let Some(log) = self.active(id) {
            return Ok(log);
        }
        let (owner, window) = store::window(&self.inner.db, id)
            .await?
            .ok_or_else(|| LogError::NoSession(id.clone()))?;
        let mut sessions = self.inner.sessions.lock().expect("sessions");
        if let Some(log) = sessions.get(id) {
            return Ok(log.clone());
        }
        let (tx, rx) = mpsc::channel(1024);
        let log = Arc::new(SessionLog {
            id: id.clone(),
            owner,
            db: self.inner.db.clone(),
            settings: self.inner.settings.clone(),
            tx,
            state: Mutex::new(State {
                head: window.head_seq,
                tail: Tail::new(&self.inner.settings, self.inner.tail_bytes.clone()),
                subscribers: HashMap::new(),
                learnt: window.head_seq,
                filling: false,
            }),
            catch_up_reads: self.inner.catch_up_reads.clone(),
            tasks: self.inner.tasks.clone(),
            shutdown: self.inner.shutdown.clone(),
        });
        sessions.insert(id.clone(), log.clone());
        // SQLite: where this session's groups are committed, together with
        // other sessions'. Once the committer has ended (at shutdown) no
        // writer starts, and appends are refused as by a writer that ended.
        match self.inner.committer.as_ref().map(mpsc::WeakSender::upgrade) {
            Some(None) => {}
            committer => {
                let writer = writer::run(self.inner.clone(), log.clone(), rx, committer.flatten());
                self.inner.tasks.spawn(writer);
            }
        }
        Ok(log)
    }
}

impl Pending {
    /// Registers the subscriber and starts replaying from the chosen seq;
    /// live delivery follows without a gap or a duplicate.
    pub fn start(self) {
        self.log.subscribe(self.sink, self.start);
    }
}
