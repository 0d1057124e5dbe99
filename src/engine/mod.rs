//! Agent runs (PROTOCOL §4.4): `agent:execute` and `agent:stop`, and the
//! tool relay (§4.5): [`gateways`] (the registry), [`calls`] (the rows and
//! their states) and `relay` (delivery, results, approvals).
//!
//! - **One run at a time per session.** A session with work has a slot: the
//!   active run and the runs queued behind it — at most
//!   `limits.max_queued_runs` of them, and `limits.max_queued_runs_per_user`
//!   across a user's sessions (a queued run holds its message in memory);
//!   past either, `enqueue` answers `busy` and changes nothing. Its driver
//!   task executes them in order, one after the other, and goes away with
//!   the last one.
//! - **Who may run.** Only a session's owner may execute in it (admins may
//!   stop), at most `limits.execute_rate` requests per user; both are
//!   checked, like the request's text, before anything is stored.
//! - **Decisions are serialized.** `execute` and `stop` take the slot's gate
//!   (an async mutex) for their whole decision, so two identical requests
//!   that race find each other (idempotency by `client_msg_id`), and a stop
//!   cannot slip between a check and a start.
//! - **Stop and interrupt** cancel the run's `Control` token; the run
//!   drops its provider stream at once and ends through its one exit path
//!   (`run::finish`), which records the partial text, cancels open tool
//!   calls and writes `run.finished` and the session's `idle` status in one
//!   transaction. The queued runs they drop end together in one write.
//! - **Shutdown** refuses new runs, ends every session's queued runs and
//!   interrupts the active ones, and waits for them — all of it within the
//!   shutdown timeout; what it could not finish, the next start does.
//! - **Tool calls.** After each provider step the run logs the calls, makes
//!   a row for each, and waits until every row has ended — answered by a
//!   gateway or the user, denied, timed out — logging each `tool.result`
//!   as it comes. Whoever answers moves the row and wakes the run; the run
//!   also re-reads its rows every few seconds (an answer taken by another
//!   node, a gateway that went away).
//! - **Recovery.** Runs left active by a process that died are finished
//!   `interrupted` at start ([`recovery`]).

pub mod calls;
mod compile;
pub mod conversation;
mod error;
pub mod gateways;
mod nodes;
pub mod provider;
pub mod record;
pub mod recovery;
mod registration;
mod relay;
mod request;
mod run;
mod schema;
mod shared_gateways;
mod slot;
mod tools;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use entity::states::RunStatus;
use entity::{message, run as run_row};
use sea_orm::{ColumnTrait, DatabaseConnection, EntityTrait, QueryFilter};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::auth::{Identity, UserId};
use crate::config::Limits;
use crate::error::Chain;
use crate::ids::SessionId;
use crate::log::fence;
use crate::log::{EventLog, Fence, Lease, LogError};
use crate::rate::KeyedLimiter;
pub use error::EngineError;
pub use nodes::NodeSettings;
pub use provider::Provider;
pub use record::Reason;
pub use relay::Answerer;
pub use request::{Accepted, Execute, MAX_CLIENT_MSG_ID_CHARS, MAX_CONTENT_BYTES, OnBusy};
use slot::{Entry, QueuedPerUser, Slot, Ticket};

/// How often gone gateways past their grace are dropped.
const SWEEP_GATEWAYS: Duration = Duration::from_secs(30);

/// How long `agent:stop` waits for the run's `run.finished` to be committed.
const STOP_WAIT: Duration = Duration::from_secs(10);

/// Tunables of the engine.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Provider calls per run at most.
    pub max_steps: u32,
    /// A run that sent nothing for this long sends `agent:heartbeat`.
    pub heartbeat: Duration,
    /// How long a tool call may wait for a gateway's result.
    pub tool_timeout: Duration,
    /// The server's limits (the execute rate, the queues' bounds).
    pub limits: Limits,
    /// With several nodes: this node and the length of its run leases.
    pub nodes: Option<nodes::NodeSettings>,
}

impl Settings {
    /// When a call that starts waiting for a gateway now times out.
    fn tool_deadline(&self) -> chrono::DateTime<chrono::Utc> {
        crate::time::now()
            + chrono::Duration::from_std(self.tool_timeout).unwrap_or(chrono::Duration::MAX)
    }
}

#[derive(Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

struct Inner {
    db: DatabaseConnection,
    log: EventLog,
    provider: Arc<dyn Provider>,
    settings: Settings,
    tasks: TaskTracker,
    /// Cancelled when the server shuts down (after the runs ended).
    shutdown: CancellationToken,
    slots: Mutex<HashMap<SessionId, Arc<Slot>>>,
    stopping: AtomicBool,
    /// Connected gateways and their tools.
    registry: gateways::Registry,
    /// Runs waiting for tool calls, by run id.
    wakers: Mutex<HashMap<String, Arc<tokio::sync::Notify>>>,
    /// `agent:execute` requests per user (`limits.execute_rate`).
    execute_rate: KeyedLimiter<UserId>,
    /// Runs queued per user, across sessions.
    queued: Arc<QueuedPerUser>,
    /// With several nodes: how control messages reach the other nodes.
    bus: std::sync::OnceLock<crate::cluster::Cluster>,
}

impl Engine {
    pub fn new(
        db: DatabaseConnection,
        log: EventLog,
        provider: Arc<dyn Provider>,
        settings: Settings,
        tasks: TaskTracker,
        shutdown: CancellationToken,
    ) -> Self {
        let execute_rate =
            KeyedLimiter::new(settings.limits.execute_rate, "agent:execute requests");
        let registry = gateways::Registry::new(settings.tool_timeout);
        let engine = Self {
            inner: Arc::new(Inner {
                db,
                log,
                provider,
                settings,
                tasks,
                shutdown,
                slots: Mutex::default(),
                stopping: AtomicBool::new(false),
                registry,
                wakers: Mutex::default(),
                execute_rate,
                queued: Arc::default(),
                bus: std::sync::OnceLock::new(),
            }),
        };
        // Gone gateways leave the registry once their grace is over.
        let inner = Arc::downgrade(&engine.inner);
        let shutdown = engine.inner.shutdown.clone();
        engine.inner.tasks.spawn(async move {
            let mut every = tokio::time::interval(SWEEP_GATEWAYS);
            loop {
                tokio::select! {
                    _ = every.tick() => {}
                    () = shutdown.cancelled() => return,
                }
                match inner.upgrade() {
                    Some(inner) => inner.registry.sweep(),
                    None => return,
                }
            }
        });
        engine
    }

    /// Finishes the runs a previous process left active; see [`recovery`].
    /// With several nodes, nothing: the runs of nodes that are gone are
    /// taken over once their lease ends ([`nodes`]).
    /// Then it starts the queued runs the last process left, in order.
    pub async fn recover(&self) -> Result<usize, LogError> {
        if self.inner.settings.nodes.is_some() {
            return Ok(0);
        }
        let (finished, queued) = recovery::recover(&self.inner.db, &self.inner.log).await?;
        for session in queued {
            let slot = self.inner.slot(&session);
            let started = {
                let _gate = slot.gate.lock().await;
                self.inner.start_stored_queue(&slot, &session, None).await
            };
            self.inner.release(&session, slot);
            match started {
                Ok(count) => tracing::info!(
                    session_id = %session, runs = count,
                    "starting the queued runs the last process left"
                ),
                Err(error) => tracing::error!(
                    error = %Chain(&error), session_id = %session,
                    "cannot start the queued runs the last process left"
                ),
            }
        }
        Ok(finished)
    }

    /// `agent:execute`: logs the user message and starts a run, or queues
    /// it, or refuses, per `on_busy`. Only the session's owner may, within
    /// the execute rate and the queues' bounds.
    #[tracing::instrument(skip_all, fields(session_id = %request.session_id))]
    pub async fn execute(
        &self,
        caller: &Identity,
        request: Execute,
    ) -> Result<Accepted, EngineError> {
        request.check()?;
        self.inner.execute_rate.check(&caller.user_id)?;
        let (session, row) = crate::sessions::resolve_owned(
            &self.inner.db,
            caller,
            &request.session_id,
            "session_id",
        )
        .await?;
        let owner = UserId::new(row.owner);
        let slot = self.inner.slot(&session);
        let result = self.execute_in(&slot, &session, owner, request).await;
        self.inner.release(&session, slot);
        result
    }

    async fn execute_in(
        &self,
        slot: &Arc<Slot>,
        session: &SessionId,
        owner: UserId,
        request: Execute,
    ) -> Result<Accepted, EngineError> {
        let limits = &self.inner.settings.limits;
        let _gate = slot.gate.lock().await;
        if let Some(id) = &request.client_msg_id {
            if let Some(found) = slot.state.lock().expect("slot").find(id) {
                return Ok(found);
            }
            if let Some(found) = self.inner.find_message(session, id).await? {
                return Ok(found);
            }
        }
        if self.inner.stopping.load(Ordering::SeqCst) {
            return Err(EngineError::ShuttingDown);
        }
        let (busy, queued) = {
            let state = slot.state.lock().expect("slot");
            (state.active.is_some(), state.queue.len())
        };
        if !busy {
            let entry = Entry::new(owner, request.content, request.client_msg_id);
            return match self.inner.launch(slot, session, entry, None).await? {
                Launched::Started(accepted) => Ok(accepted),
                Launched::Elsewhere(entry) => {
                    self.inner
                        .execute_elsewhere(session, entry, request.on_busy)
                        .await
                }
            };
        }
        match request.on_busy {
            OnBusy::Reject => {
                return Err(EngineError::RunActive(session.clone()));
            }
            // Checked under the gate: only the driver changes the queue
            // meanwhile, and it only takes from it.
            OnBusy::Enqueue if queued >= limits.max_queued_runs => {
                return Err(EngineError::SessionQueueFull {
                    session: session.clone(),
                    queued,
                    max: limits.max_queued_runs,
                });
            }
            _ => {}
        }
        let ticket = match request.on_busy {
            OnBusy::Enqueue => Some(self.inner.queue_ticket(&owner)?),
            _ => None,
        };
        let mut entry = Entry::new(owner, request.content, request.client_msg_id);
        entry.ticket = ticket;
        if let Err(error) = record::insert_queued_run(&self.inner.db, session, entry.stored()).await
        {
            // With several nodes: the same request, queued by another node
            // at the same moment.
            let error = crate::log::StoreError::from(error);
            if let (crate::log::StoreError::Duplicate(_), Some(id)) = (&error, &entry.client_msg_id)
                && let Some(found) = self.inner.find_message(session, id).await?
            {
                return Ok(found);
            }
            return Err(error.into());
        }
        let dropped = {
            let mut state = slot.state.lock().expect("slot");
            match &state.active {
                // The active run ended while the row was written.
                None => None,
                Some(active) if request.on_busy == OnBusy::Interrupt => {
                    active.control.stop(Reason::Interrupted);
                    let dropped: Vec<_> = state.queue.drain(..).collect();
                    state.queue.push_back(entry.clone());
                    Some((dropped, state.fence()))
                }
                Some(_) => {
                    state.queue.push_back(entry.clone());
                    Some((Vec::new(), None))
                }
            }
        };
        match dropped {
            None => match self
                .inner
                .launch(slot, session, entry.started(), None)
                .await?
            {
                Launched::Started(accepted) => Ok(accepted),
                // Another node took the session meanwhile: the row is
                // queued there (see `execute_elsewhere`).
                Launched::Elsewhere(entry) => Ok(entry.accepted()),
            },
            Some((dropped, fence)) => {
                if request.on_busy == OnBusy::Interrupt {
                    self.inner
                        .drop_remote_queued(session, &[&entry.run_id], fence.clone())
                        .await;
                }
                run::finish_unstarted(&self.inner, session, &dropped, Reason::Interrupted, fence)
                    .await;
                Ok(entry.accepted())
            }
        }
    }

    /// `agent:stop`: ends the active run (`stopped`) and drops the queued
    /// ones. Answers once `run.finished` is committed; `false` when nothing
    /// was running.
    #[tracing::instrument(skip_all, fields(session_id = %session_id))]
    pub async fn stop(&self, caller: &Identity, session_id: &str) -> Result<bool, EngineError> {
        let (session, _) =
            crate::sessions::resolve(&self.inner.db, caller, session_id, "session_id").await?;
        let slot = self
            .inner
            .slots
            .lock()
            .expect("slots")
            .get(&session)
            .cloned();
        let Some(slot) = slot else {
            // With several nodes, the run may be on another one.
            return self.inner.stop_elsewhere(&session).await;
        };
        let stopped = {
            let _gate = slot.gate.lock().await;
            match self.inner.end_all(&session, &slot, Reason::Stopped).await {
                Some(finished) => {
                    let _ = tokio::time::timeout(STOP_WAIT, finished.cancelled()).await;
                    Some(true)
                }
                None => None,
            }
        };
        self.inner.release(&session, slot);
        match stopped {
            Some(stopped) => Ok(stopped),
            None => self.inner.stop_elsewhere(&session).await,
        }
    }

    /// Finishes every active run `interrupted` and drops the queued ones,
    /// before the server stops (PROTOCOL §1). New runs are refused. All of
    /// it — the writes that end queued runs, waiting for the active ones —
    /// happens within `timeout`; runs it could not finish stay in the
    /// database as they were, and the next start finishes them. With
    /// several nodes, queued runs stay queued: the node that takes the
    /// session next (`nodes`) starts them.
    pub async fn shutdown(&self, timeout: Duration) {
        self.inner.stopping.store(true, Ordering::SeqCst);
        let slots: Vec<(SessionId, Arc<Slot>)> = self
            .inner
            .slots
            .lock()
            .expect("slots")
            .iter()
            .map(|(id, slot)| (id.clone(), slot.clone()))
            .collect();
        let inner = &self.inner;
        let work = async {
            // Every session at once; each waits for a decision in flight
            // (which, once `stopping` is set, starts nothing new).
            let ends = slots.iter().map(|(session, slot)| async move {
                let _gate = slot.gate.lock().await;
                inner.end_all(session, slot, Reason::Interrupted).await
            });
            let waits: Vec<CancellationToken> = futures_util::future::join_all(ends)
                .await
                .into_iter()
                .flatten()
                .collect();
            if !waits.is_empty() {
                tracing::info!(runs = waits.len(), "interrupting active runs");
            }
            futures_util::future::join_all(waits.iter().map(|w| w.cancelled())).await;
        };
        if tokio::time::timeout(timeout, work).await.is_err() {
            tracing::warn!(
                ?timeout,
                "some runs did not finish before the shutdown timeout; the next start will"
            );
        }
    }
}

impl Inner {
    /// Starts `entry` on an idle session and the driver that runs it and
    /// whatever gets queued behind it. With several nodes, it first takes
    /// the session's lease (or, with `held`, already holds it): when
    /// another node holds it, nothing changes and the entry comes back.
    async fn launch(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        session: &SessionId,
        entry: Entry,
        held: Option<Lease>,
    ) -> Result<Launched, EngineError> {
        let (lease, fence) = match held {
            Some(lease) => (Some(lease.clone()), Some(Fence::Hold(lease))),
            None => match self.next_lease(session).await? {
                Some(lease) => (Some(lease.clone()), Some(Fence::Take(lease))),
                None => (None, None),
            },
        };
        {
            let mut state = slot.state.lock().expect("slot");
            state.active = Some(entry.clone());
            state.lease = lease;
            state.lost = false;
        }
        if let Err(error) = run::start(self, session, &entry, fence).await {
            {
                let mut state = slot.state.lock().expect("slot");
                state.active = None;
                state.lease = None;
            }
            if error.is_lease_held() {
                return Ok(Launched::Elsewhere(entry));
            }
            entry.control.finished.cancel();
            return Err(error.into());
        }
        let accepted = entry.accepted();
        let inner = self.clone();
        let slot = slot.clone();
        let session = session.clone();
        self.tasks
            .spawn(async move { inner.drive(slot, session, entry).await });
        Ok(Launched::Started(accepted))
    }

    /// Drops the session's queued runs (each finished with `reason`) and
    /// tells the active one to end with `reason`; returns the token that is
    /// cancelled once it has ended.
    async fn end_all(
        &self,
        session: &SessionId,
        slot: &Slot,
        reason: Reason,
    ) -> Option<CancellationToken> {
        let (active, dropped, fence) = {
            let mut state = slot.state.lock().expect("slot");
            if self.hands_over() {
                // The driver leaves them queued, stored with their message.
                (state.active.clone(), Vec::new(), state.fence())
            } else {
                (
                    state.active.clone(),
                    state.queue.drain(..).collect::<Vec<_>>(),
                    state.fence(),
                )
            }
        };
        if active.is_some() && !self.hands_over() {
            self.drop_remote_queued(session, &[], fence.clone()).await;
        }
        run::finish_unstarted(self, session, &dropped, reason, fence).await;
        let active = active?;
        active.control.stop(reason);
        Some(active.control.finished)
    }

    /// Shutting down with several nodes: queued runs stay queued for
    /// another node.
    fn hands_over(&self) -> bool {
        self.settings.nodes.is_some() && self.stopping.load(Ordering::SeqCst)
    }

    /// Counts one more run queued by `user`, or `busy` when they have as
    /// many queued across their sessions as the limits allow.
    fn queue_ticket(&self, user: &UserId) -> Result<Arc<Ticket>, EngineError> {
        let max = self.settings.limits.max_queued_runs_per_user;
        match self.queued.take(user, max) {
            Ok(ticket) => Ok(Arc::new(ticket)),
            Err(held) => Err(EngineError::UserQueueFull { held, max }),
        }
    }

    fn slot(&self, session: &SessionId) -> Arc<Slot> {
        self.slots
            .lock()
            .expect("slots")
            .entry(session.clone())
            .or_default()
            .clone()
    }

    /// Forgets an idle slot once nobody else holds it (taking a slot needs
    /// the map's lock, so nobody can be about to).
    fn release(&self, session: &SessionId, slot: Arc<Slot>) {
        drop(slot);
        let mut slots = self.slots.lock().expect("slots");
        if let Some(slot) = slots.get(session)
            && Arc::strong_count(slot) == 1
        {
            let state = slot.state.lock().expect("slot");
            let idle = state.active.is_none() && state.queue.is_empty();
            drop(state);
            if idle {
                slots.remove(session);
            }
        }
    }

    /// The run a stored user message with this `client_msg_id` started.
    async fn find_message(
        &self,
        session: &SessionId,
        client_msg_id: &str,
    ) -> Result<Option<Accepted>, EngineError> {
        let row = message::Entity::find()
            .filter(message::Column::SessionId.eq(session.as_str()))
            .filter(message::Column::ClientMsgId.eq(client_msg_id))
            .one(&self.db)
            .await?;
        if let Some(found) = row.and_then(|m| {
            Some(Accepted {
                run_id: m.run_id?,
                message_id: m.id,
            })
        }) {
            return Ok(Some(found));
        }
        // Queued, not started yet (perhaps by another node).
        let queued = run_row::Entity::find()
            .filter(run_row::Column::SessionId.eq(session.as_str()))
            .filter(run_row::Column::ClientMsgId.eq(client_msg_id))
            .filter(run_row::Column::Status.eq(RunStatus::Queued))
            .one(&self.db)
            .await?;
        Ok(queued.map(|r| Accepted {
            run_id: r.id,
            message_id: r.message_id,
        }))
    }

    /// Runs `first` (already started), then each queued run in turn — or,
    /// once the server is shutting down, none: they end `interrupted`.
    /// With several nodes it renews the session's lease meanwhile, takes in
    /// the runs other nodes queued, and gives the lease up at the end; if
    /// another node took the lease over, it writes nothing more.
    async fn drive(self: Arc<Self>, slot: Arc<Slot>, session: SessionId, first: Entry) {
        let lease = slot.state.lock().expect("slot").lease.clone();
        let renewing = CancellationToken::new();
        if let Some(lease) = &lease {
            metrics::counter!(crate::metrics::CLUSTER_LEASES_TAKEN).increment(1);
            metrics::gauge!(crate::metrics::CLUSTER_LEASES_HELD).increment(1.0);
            let renew = self.clone().renew(
                slot.clone(),
                session.clone(),
                lease.clone(),
                renewing.clone(),
            );
            self.tasks.spawn(renew);
        }
        let fence = lease.clone().map(Fence::Hold);
        let mut current = first;
        loop {
            run::run(self.clone(), &session, &current, fence.clone()).await;
            current.control.finished.cancel();
            if let Some(fence) = &fence
                && !self.stopping.load(Ordering::SeqCst)
                && self.still_holds(&slot, &session, fence).await
            {
                self.take_in_queued(&slot, &session, &current.owner).await;
            }
            loop {
                let (next, dropped, lost) = {
                    let mut state = slot.state.lock().expect("slot");
                    if self.stopping.load(Ordering::SeqCst) || state.lost {
                        state.active = None;
                        (None, state.queue.drain(..).collect::<Vec<_>>(), state.lost)
                    } else {
                        state.active = state.queue.pop_front().map(Entry::started);
                        (state.active.clone(), Vec::new(), false)
                    }
                };
                if lost || self.hands_over() {
                    // The node that takes the session next runs them.
                    for entry in &dropped {
                        entry.control.finished.cancel();
                    }
                } else {
                    run::finish_unstarted(
                        &self,
                        &session,
                        &dropped,
                        Reason::Interrupted,
                        fence.clone(),
                    )
                    .await;
                }
                let Some(next) = next else {
                    renewing.cancel();
                    if lease.is_some() {
                        metrics::gauge!(crate::metrics::CLUSTER_LEASES_HELD).decrement(1.0);
                    }
                    if let Some(lease) = &lease
                        && !slot.state.lock().expect("slot").lost
                        && let Err(error) = fence::release(&self.db, &session, lease).await
                    {
                        tracing::warn!(
                            error = %Chain(&error), session_id = %session,
                            "cannot give the session's lease up; it ends by itself"
                        );
                    }
                    slot.state.lock().expect("slot").lease = None;
                    self.release(&session, slot);
                    return;
                };
                match run::start(&self, &session, &next, fence.clone()).await {
                    Ok(()) => {
                        current = next;
                        break;
                    }
                    Err(error) => {
                        tracing::error!(
                            error = %Chain(&error), run_id = %next.run_id,
                            "cannot start a queued run"
                        );
                        if error.is_fenced() {
                            slot.state.lock().expect("slot").lost = true;
                        }
                        let failed = std::slice::from_ref(&next);
                        run::finish_unstarted(
                            &self,
                            &session,
                            failed,
                            Reason::Error,
                            fence.clone(),
                        )
                        .await;
                    }
                }
            }
        }
    }
}

/// What [`Inner::launch`] did.
enum Launched {
    Started(Accepted),
    /// Another node holds the session's lease: the entry, untouched.
    Elsewhere(Entry),
}
