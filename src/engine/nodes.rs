//! Runs across several nodes (one PostgreSQL, one Redis). Nothing here
//! runs on a single node.
//!
//! - **Leases.** A session's runs execute on the node holding its lease
//!   (`log::fence`): a node takes it, in the transaction that starts the
//!   session's first run, with the stored epoch plus one; holds it while
//!   its driver runs that run and those queued behind it (every write of
//!   theirs checks the epoch and pushes the lease's end, and a renewal
//!   every third of the lease covers the quiet times, such as waiting for
//!   a tool); and gives it up when the queue is empty. Two nodes that
//!   receive `agent:execute` for one session at once both try; one wins,
//!   and the other finds the lease held.
//! - **A run elsewhere.** An `agent:execute` that finds the lease held by
//!   another node answers `busy` for `on_busy: reject` and queues the run
//!   in the database otherwise (`runs.content`); the lease's holder takes
//!   the runs other nodes queued when its active run ends
//!   ([`Inner::take_in_queued`]). `interrupt` also asks the holder, over
//!   Redis, to interrupt its run and drop the other queued ones.
//! - **Control.** `agent:stop` on a node without the run sends `stop` on
//!   `{prefix}-runs` and answers once the database shows the session's
//!   runs ended; a call's result accepted on one node wakes its run on
//!   another with `wake`.
//! - **Takeover.** Every node checks, every [`check_every`], for sessions
//!   whose lease ended without being given up (its node died, or paused
//!   past it) — or that have runs and no lease — and takes the lease over
//!   with the next epoch: it finishes their active runs `interrupted`, as
//!   recovery after a crash does, and starts the queued ones. A node that
//!   comes back from a pause finds its epoch gone at its next write, which
//!   fails and changes nothing; its renewal finds out too, and it drops
//!   the session's runs without writing.
//! - **Start.** A starting node finishes nothing by itself: runs of nodes
//!   that are gone are taken over once their lease ends.

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use entity::states::RunStatus;
use entity::{run, session};
use futures_util::StreamExt as _;
use sea_orm::sea_query::{Expr, ExprTrait as _, Query};
use sea_orm::{
    ColumnTrait, Condition, EntityTrait, PaginatorTrait as _, QueryFilter, QueryOrder, QuerySelect,
};
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use super::record::{self, QueuedRun, Reason};
use super::slot::{Entry, Slot};
use super::{
    Accepted, Engine, EngineError, Inner, Launched, OnBusy, STOP_WAIT, recovery, run as runs,
    shared_gateways,
};
use crate::auth::UserId;
use crate::cluster::Cluster;
use crate::cluster::adapter::SocketRef;
use crate::error::Chain;
use crate::ids::{RunId, SessionId};
use crate::log::{Fence, Lease, StoreError, fence};

/// This node, and how long its leases last.
#[derive(Debug, Clone)]
pub struct NodeSettings {
    pub node: Arc<str>,
    pub lease: Duration,
}

/// Sessions taken over per check at most.
const TAKEOVERS_PER_CHECK: u64 = 100;
/// Control messages received but not yet handled at most.
const RECEIVED_CONTROL: usize = 4096;
/// How often a stop sent to another node looks for the run's end.
const STOP_POLL: Duration = Duration::from_millis(20);

/// How often a node renews its leases and looks for leases to take over:
/// a third of the lease.
fn check_every(settings: &NodeSettings) -> Duration {
    (settings.lease / 3).max(Duration::from_millis(100))
}

/// What goes between nodes on `{prefix}-runs`.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum Control {
    /// `agent:stop` from another node: end the session's runs, `stopped`.
    Stop { session: SessionId },
    /// `agent:execute` with `on_busy: interrupt` from another node, which
    /// queued `keep`: end the active run `interrupted`, drop the other
    /// queued runs.
    Interrupt { session: SessionId, keep: RunId },
    /// A call of the run changed (its result, an approval).
    Wake { run_id: RunId },
    /// `agent:heartbeat` of a run on `node`, for the session's subscribers
    /// on the other nodes.
    Heartbeat {
        session: SessionId,
        node: Arc<str>,
        beat: serde_json::Value,
    },
    /// Calls of `owner` wait for a gateway: the nodes with one of theirs
    /// deliver them (sent by `node`, which delivered to its own).
    Deliver { owner: String, node: Arc<str> },
}

impl Engine {
    /// Joins the other nodes: their control messages reach this node's
    /// runs, and the leases of nodes that stopped are taken over. Runs
    /// until shutdown.
    pub async fn join_cluster(&self, cluster: Cluster) -> anyhow::Result<()> {
        let Some(settings) = self.inner.settings.nodes.clone() else {
            return Ok(());
        };
        let messages = cluster.runs_messages(RECEIVED_CONTROL).await?;
        let _ = self.inner.bus.set(cluster);
        shared_gateways::forget_node(&self.inner.db, &settings.node).await?;
        let span = tracing::info_span!("nodes", node_id = %settings.node);
        let inner = self.inner.clone();
        self.inner
            .tasks
            .spawn(inner.receive(messages).instrument(span.clone()));
        let inner = self.inner.clone();
        self.inner.tasks.spawn(
            inner
                .vouch_for_gateways(settings.clone())
                .instrument(span.clone()),
        );
        let inner = self.inner.clone();
        self.inner
            .tasks
            .spawn(inner.take_over_leases(settings).instrument(span));
        Ok(())
    }
}

impl Inner {
    /// The lease a new driver of `session` takes: the stored epoch plus
    /// one. `None` on a single node.
    pub(super) async fn next_lease(
        &self,
        session: &SessionId,
    ) -> Result<Option<Lease>, sea_orm::DbErr> {
        let Some(settings) = &self.settings.nodes else {
            return Ok(None);
        };
        let epoch: Option<i64> = session::Entity::find()
            .select_only()
            .column(session::Column::LeaseEpoch)
            .filter(session::Column::Id.eq(session.as_str()))
            .into_tuple()
            .one(&self.db)
            .await?;
        Ok(Some(Lease {
            node: settings.node.clone(),
            epoch: epoch.unwrap_or(0) + 1,
            length: settings.lease,
        }))
    }

    /// `agent:execute` for a session whose run is on another node.
    pub(super) async fn execute_elsewhere(
        &self,
        session: &SessionId,
        entry: Entry,
        on_busy: OnBusy,
    ) -> Result<Accepted, EngineError> {
        if let Some(id) = &entry.client_msg_id
            && let Some(found) = self.find_message(session, id).await?
        {
            // The same request, accepted by the other node a moment ago.
            return Ok(found);
        }
        if on_busy == OnBusy::Reject {
            return Err(EngineError::RunActive(session.clone()));
        }
        let max = self.settings.limits.max_queued_runs;
        let queued = run::Entity::find()
            .filter(run::Column::SessionId.eq(session.as_str()))
            .filter(run::Column::Status.eq(RunStatus::Queued))
            .count(&self.db)
            .await? as usize;
        if queued >= max {
            return Err(EngineError::SessionQueueFull {
                session: session.clone(),
                queued,
                max,
            });
        }
        if let Err(error) = record::insert_queued_run(&self.db, session, entry.stored()).await {
            let error = StoreError::from(error);
            // The same request, queued by another node at the same moment.
            if let (StoreError::Duplicate(_), Some(id)) = (&error, &entry.client_msg_id)
                && let Some(found) = self.find_message(session, id).await?
            {
                return Ok(found);
            }
            return Err(error.into());
        }
        if on_busy == OnBusy::Interrupt {
            self.send(Control::Interrupt {
                session: session.clone(),
                keep: entry.run_id.clone(),
            })
            .await;
        }
        Ok(entry.accepted())
    }

    /// Ends the runs other nodes queued in the session (all but `keep`),
    /// `interrupted`. Nothing on a single node.
    pub(super) async fn drop_remote_queued(
        &self,
        session: &SessionId,
        keep: &[&RunId],
        fence: Option<Fence>,
    ) {
        if fence.is_none() {
            return;
        }
        let ids = match self.stored_queue(session).await {
            Ok(rows) => rows
                .into_iter()
                .map(|row| row.id)
                .filter(|id| !keep.contains(&id))
                .collect::<Vec<_>>(),
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "cannot read the session's queued runs");
                return;
            }
        };
        let local: HashSet<RunId> = self.local_queue(session);
        let ids: Vec<RunId> = ids.into_iter().filter(|id| !local.contains(id)).collect();
        runs::finish_stored(self, session, &ids, Reason::Interrupted, fence).await;
    }

    /// The session's queued runs as stored, oldest first.
    async fn stored_queue(&self, session: &SessionId) -> Result<Vec<run::Model>, StoreError> {
        Ok(run::Entity::find()
            .filter(run::Column::SessionId.eq(session.as_str()))
            .filter(run::Column::Status.eq(RunStatus::Queued))
            .order_by_asc(run::Column::CreatedAt)
            .order_by_asc(run::Column::Id)
            .all(&self.db)
            .await?)
    }

    /// The runs this node has queued (and running) in the session.
    fn local_queue(&self, session: &SessionId) -> HashSet<RunId> {
        let slot = self.slots.lock().expect("slots").get(session).cloned();
        let Some(slot) = slot else {
            return HashSet::new();
        };
        let state = slot.state.lock().expect("slot");
        state
            .active
            .iter()
            .chain(&state.queue)
            .map(|e| e.run_id.clone())
            .collect()
    }

    /// Queues behind the local ones the runs other nodes queued in the
    /// session (stored with their message), in the order they came.
    pub(super) async fn take_in_queued(
        &self,
        slot: &Arc<Slot>,
        session: &SessionId,
        owner: &UserId,
    ) {
        let rows = match self.stored_queue(session).await {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "cannot read the session's queued runs");
                return;
            }
        };
        let mut state = slot.state.lock().expect("slot");
        let known: HashSet<RunId> = state
            .active
            .iter()
            .chain(&state.queue)
            .map(|e| e.run_id.clone())
            .collect();
        for row in rows {
            if known.contains(&row.id) {
                continue;
            }
            let Some(content) = row.content else {
                continue;
            };
            state.queue.push_back(Entry::queued(
                row.id,
                row.message_id,
                owner.clone(),
                content,
                row.client_msg_id,
            ));
        }
    }

    /// Renews the lease after a run ended; `false` (and the slot marked
    /// lost) when another node took it over meanwhile.
    pub(super) async fn still_holds(
        &self,
        slot: &Slot,
        session: &SessionId,
        fence: &Fence,
    ) -> bool {
        match fence::check(&self.db, session, fence, crate::time::now()).await {
            Err(StoreError::Fenced(_)) => {
                metrics::counter!(crate::metrics::CLUSTER_LEASES_LOST).increment(1);
                tracing::warn!(session_id = %session, "another node took this session over");
                slot.state.lock().expect("slot").lost = true;
                false
            }
            // A failing database: the next writes find out.
            _ => true,
        }
    }

    /// Renews the session's lease every third of its length until `stop`;
    /// if another node took it over, the session's runs here end without
    /// writing anything more.
    pub(super) async fn renew(
        self: Arc<Self>,
        slot: Arc<Slot>,
        session: SessionId,
        lease: Lease,
        stop: CancellationToken,
    ) {
        let every = (lease.length / 3).max(Duration::from_millis(100));
        let fence = Fence::Hold(lease);
        loop {
            tokio::select! {
                () = tokio::time::sleep(every) => {}
                () = stop.cancelled() => return,
            }
            match fence::check(&self.db, &session, &fence, crate::time::now()).await {
                Ok(()) => {}
                Err(StoreError::Fenced(_)) => {
                    metrics::counter!(crate::metrics::CLUSTER_LEASES_LOST).increment(1);
                    tracing::warn!(
                        session_id = %session, epoch = fence.lease().epoch,
                        "another node took this session over; its runs here end without writing"
                    );
                    let active = {
                        let mut state = slot.state.lock().expect("slot");
                        state.lost = true;
                        state.active.clone()
                    };
                    if let Some(active) = active {
                        active.control.stop(Reason::Interrupted);
                    }
                    return;
                }
                Err(error) => {
                    tracing::warn!(error = %Chain(&error), session_id = %session, "cannot renew the session's lease; retrying");
                }
            }
        }
    }

    /// `agent:stop` for a session without a run on this node: asks the
    /// other nodes, and answers once the database shows the session's runs
    /// ended (`false` when it shows none).
    pub(super) async fn stop_elsewhere(&self, session: &SessionId) -> Result<bool, EngineError> {
        if self.settings.nodes.is_none() || !self.has_runs(session).await? {
            return Ok(false);
        }
        self.send(Control::Stop {
            session: session.clone(),
        })
        .await;
        let ended = async {
            loop {
                match self.has_runs(session).await {
                    Ok(false) => return,
                    Ok(true) => {}
                    Err(error) => {
                        tracing::warn!(error = %Chain(&error), "cannot read the session's runs")
                    }
                }
                tokio::time::sleep(STOP_POLL).await;
            }
        };
        let _ = tokio::time::timeout(STOP_WAIT, ended).await;
        Ok(true)
    }

    /// Whether the session has a run running or queued.
    async fn has_runs(&self, session: &SessionId) -> Result<bool, EngineError> {
        let count = run::Entity::find()
            .filter(run::Column::SessionId.eq(session.as_str()))
            .filter(run::Column::Status.is_in([RunStatus::Running, RunStatus::Queued]))
            .count(&self.db)
            .await?;
        Ok(count > 0)
    }

    /// Tells a run on another node that one of its calls changed.
    pub(super) async fn wake_elsewhere(&self, run_id: &RunId) {
        if self.settings.nodes.is_some() {
            self.send(Control::Wake {
                run_id: run_id.clone(),
            })
            .await;
        }
    }

    /// What the model is offered in a session of `owner`: with several
    /// nodes, the tools of the user's gateways on every node (read from the
    /// shared registry; this node's own if that read fails).
    pub(super) async fn offer(&self, owner: &UserId) -> super::gateways::Offer {
        if self.settings.nodes.is_none() {
            return self.registry.offer(owner);
        }
        match shared_gateways::tools(&self.db, owner, self.settings.tool_timeout).await {
            Ok(tools) => self.registry.offer_of(tools),
            Err(error) => {
                tracing::warn!(error = %Chain(&error), "cannot read the shared gateway registry; offering this node's gateways");
                self.registry.offer(owner)
            }
        }
    }

    /// Records a gateway that registered here in the shared registry.
    pub(super) async fn share_gateway(&self, owner: &UserId, gateway: &super::gateways::Gateway) {
        let Some(settings) = &self.settings.nodes else {
            return;
        };
        if let Err(error) =
            shared_gateways::register(&self.db, &settings.node, owner, gateway, settings.lease)
                .await
        {
            tracing::warn!(error = %Chain(&error), "cannot record the gateway for the other nodes");
        }
    }

    /// A gateway of this node went away: the other nodes learn it.
    pub(super) async fn unshare_gateway(&self, owner: &UserId, socket: &SocketRef) {
        let Some(settings) = &self.settings.nodes else {
            return;
        };
        if let Err(error) =
            shared_gateways::gone(&self.db, &settings.node, owner, &socket.id.to_string()).await
        {
            tracing::warn!(error = %Chain(&error), "cannot record that the gateway is gone");
        }
    }

    /// The `gateway_id`s of `owner` connected to other live nodes (none on
    /// a single node).
    pub(super) async fn gateways_elsewhere(&self, owner: &UserId) -> HashSet<String> {
        let Some(settings) = &self.settings.nodes else {
            return HashSet::new();
        };
        shared_gateways::live_elsewhere(&self.db, owner, &settings.node)
            .await
            .unwrap_or_else(|error| {
                tracing::warn!(error = %Chain(&error), "cannot read the shared gateway registry");
                HashSet::new()
            })
    }

    /// Delivers the calls of `owner` waiting for a gateway to this node's
    /// gateways, and asks the other nodes to do the same with theirs.
    pub(super) async fn deliver_everywhere(&self, owner: &UserId) {
        self.deliver(owner, None).await;
        if let Some(settings) = &self.settings.nodes {
            self.send(Control::Deliver {
                owner: owner.as_str().to_owned(),
                node: settings.node.clone(),
            })
            .await;
        }
    }

    /// Sends `agent:heartbeat` to the session's subscribers on every node.
    pub(super) async fn heartbeat(&self, session: &SessionId, beat: serde_json::Value) {
        self.log.notify(session, "agent:heartbeat", &beat);
        if let Some(settings) = &self.settings.nodes {
            self.send(Control::Heartbeat {
                session: session.clone(),
                node: settings.node.clone(),
                beat,
            })
            .await;
        }
    }

    /// Publishes `control` to every node. A message Redis does not take is
    /// lost: stops then wait their full time, and waiting runs re-read
    /// their calls within a few seconds anyway.
    async fn send(&self, control: Control) {
        let Some(bus) = self.bus.get() else {
            return;
        };
        let bytes = serde_json::to_vec(&control).expect("a control message serializes");
        match bus.publish_runs_message(bytes).await {
            Ok(()) => metrics::counter!(crate::metrics::CLUSTER_CONTROL_SENT).increment(1),
            Err(error) => tracing::warn!(%error, ?control, "a control message was not sent"),
        }
    }

    /// Handles the control messages of every node (this one's included:
    /// it has nothing to do for them).
    async fn receive(
        self: Arc<Self>,
        mut messages: socketioxide_redis::drivers::MessageStream<
            socketioxide_redis::drivers::ChanItem,
        >,
    ) {
        loop {
            let (_, bytes) = tokio::select! {
                message = messages.next() => match message {
                    Some(message) => message,
                    None => return,
                },
                () = self.shutdown.cancelled() => return,
            };
            let control: Control = match serde_json::from_slice(&bytes) {
                Ok(control) => control,
                Err(error) => {
                    tracing::warn!(%error, "an unreadable control message was ignored");
                    continue;
                }
            };
            metrics::counter!(crate::metrics::CLUSTER_CONTROL_RECEIVED).increment(1);
            let here = self.settings.nodes.as_ref().map(|s| s.node.clone());
            match control {
                Control::Wake { run_id } => self.wake(run_id.as_str()),
                Control::Heartbeat {
                    session,
                    node,
                    beat,
                } => {
                    if here.as_deref() != Some(&*node) {
                        self.log.notify(&session, "agent:heartbeat", &beat);
                    }
                }
                Control::Deliver { owner, node } => {
                    let owner = UserId::new(owner);
                    if here.as_deref() != Some(&*node) && !self.registry.gateways(&owner).is_empty()
                    {
                        let inner = self.clone();
                        self.tasks
                            .spawn(async move { inner.deliver(&owner, None).await });
                    }
                }
                Control::Stop { session } => {
                    let inner = self.clone();
                    self.tasks.spawn(async move {
                        inner.end_here(&session, Reason::Stopped, None).await;
                    });
                }
                Control::Interrupt { session, keep } => {
                    let inner = self.clone();
                    self.tasks.spawn(async move {
                        inner
                            .end_here(&session, Reason::Interrupted, Some(&keep))
                            .await;
                    });
                }
            }
        }
    }

    /// Ends the session's runs on this node, if it runs them, with
    /// `reason`, keeping the queued run `keep` (which the driver then takes
    /// in and starts).
    async fn end_here(&self, session: &SessionId, reason: Reason, keep: Option<&RunId>) {
        let slot = self.slots.lock().expect("slots").get(session).cloned();
        let Some(slot) = slot else {
            return;
        };
        {
            let _gate = slot.gate.lock().await;
            let (active, dropped, fence) = {
                let mut state = slot.state.lock().expect("slot");
                if state.active.is_none() {
                    (None, Vec::new(), None)
                } else {
                    let dropped: Vec<Entry> = state.queue.drain(..).collect();
                    (state.active.clone(), dropped, state.fence())
                }
            };
            if let Some(active) = active {
                let keep: Vec<&RunId> = keep.into_iter().collect();
                self.drop_remote_queued(session, &keep, fence.clone()).await;
                runs::finish_unstarted(self, session, &dropped, reason, fence).await;
                active.control.stop(reason);
            }
        }
        self.release(session, slot);
    }

    /// Every [`check_every`]: renews this node's gateways in the shared
    /// registry; every [`SWEEP_GATEWAYS`], deletes the rows past their
    /// grace.
    async fn vouch_for_gateways(self: Arc<Self>, settings: NodeSettings) {
        let mut every = tokio::time::interval(check_every(&settings));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut swept = tokio::time::Instant::now();
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = self.shutdown.cancelled() => return,
            }
            if let Err(error) =
                shared_gateways::renew(&self.db, &settings.node, settings.lease).await
            {
                tracing::warn!(error = %Chain(&error), "cannot renew this node's gateways");
            }
            if swept.elapsed() >= super::SWEEP_GATEWAYS {
                swept = tokio::time::Instant::now();
                if let Err(error) =
                    shared_gateways::sweep(&self.db, self.settings.tool_timeout).await
                {
                    tracing::warn!(error = %Chain(&error), "cannot delete gone gateways");
                }
            }
        }
    }

    /// Every [`check_every`]: takes over the sessions whose lease ended
    /// without being given up, and those with runs but no lease.
    async fn take_over_leases(self: Arc<Self>, settings: NodeSettings) {
        let mut every = tokio::time::interval(check_every(&settings));
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = every.tick() => {}
                () = self.shutdown.cancelled() => return,
            }
            if self.stopping.load(Ordering::SeqCst) {
                return;
            }
            let candidates = match self.orphaned(&settings).await {
                Ok(candidates) => candidates,
                Err(error) => {
                    tracing::warn!(error = %Chain(&error), "cannot look for leases to take over");
                    continue;
                }
            };
            for (session, epoch) in candidates {
                if self.slots.lock().expect("slots").contains_key(&session) {
                    continue;
                }
                let lease = Lease {
                    node: settings.node.clone(),
                    epoch: epoch + 1,
                    length: settings.lease,
                };
                if let Err(error) = self.take_over(&session, lease).await {
                    tracing::warn!(error = %Chain(&error), session_id = %session, "cannot take the session over");
                }
            }
        }
    }

    /// Sessions to take over, with their epoch: a lease that ended (or
    /// this node's own, from a process before this one), or runs without a
    /// lease.
    async fn orphaned(&self, settings: &NodeSettings) -> Result<Vec<(SessionId, i64)>, StoreError> {
        let now = crate::time::now();
        let ended: Vec<(SessionId, i64)> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .column(session::Column::LeaseEpoch)
            .filter(session::Column::LeaseNode.is_not_null())
            .filter(
                Condition::any()
                    .add(session::Column::LeaseUntil.lt(now))
                    .add(session::Column::LeaseNode.eq(settings.node.as_ref())),
            )
            .limit(TAKEOVERS_PER_CHECK)
            .into_tuple()
            .all(&self.db)
            .await?;
        let with_runs = Query::select()
            .column(run::Column::SessionId)
            .from(run::Entity)
            .and_where(
                Expr::col(run::Column::Status)
                    .is_in([RunStatus::Running.as_str(), RunStatus::Queued.as_str()]),
            )
            .to_owned();
        let unleased: Vec<(SessionId, i64)> = session::Entity::find()
            .select_only()
            .column(session::Column::Id)
            .column(session::Column::LeaseEpoch)
            .filter(session::Column::LeaseNode.is_null())
            .filter(session::Column::Id.in_subquery(with_runs))
            .limit(TAKEOVERS_PER_CHECK)
            .into_tuple()
            .all(&self.db)
            .await?;
        Ok(ended.into_iter().chain(unleased).collect())
    }

    /// Takes the session's lease with `lease` (nothing if another node
    /// did first), finishes its active runs `interrupted`, and starts the
    /// queued ones here — or gives the lease up when there are none.
    async fn take_over(
        self: &Arc<Self>,
        session: &SessionId,
        lease: Lease,
    ) -> Result<(), EngineError> {
        let slot = self.slot(session);
        let result = self.take_over_in(&slot, session, lease).await;
        self.release(session, slot);
        result
    }

    async fn take_over_in(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        session: &SessionId,
        lease: Lease,
    ) -> Result<(), EngineError> {
        let _gate = slot.gate.lock().await;
        if slot.state.lock().expect("slot").active.is_some() {
            return Ok(());
        }
        match fence::check(
            &self.db,
            session,
            &Fence::Take(lease.clone()),
            crate::time::now(),
        )
        .await
        {
            Ok(()) => {}
            Err(StoreError::LeaseHeld(_)) => return Ok(()),
            Err(error) => return Err(error.into()),
        }
        metrics::counter!(crate::metrics::CLUSTER_LEASES_TAKEN_OVER).increment(1);
        let fence = Fence::Hold(lease.clone());
        let finished = recovery::finish_active(&self.db, &self.log, session, Some(fence)).await?;
        tracing::info!(
            session_id = %session, epoch = lease.epoch, finished,
            "took the session over from a node that stopped renewing its lease"
        );
        self.start_stored_queue(slot, session, Some(lease)).await?;
        Ok(())
    }

    /// Starts the session's stored queued runs here, in order (the caller
    /// holds the slot's gate, and `lease` if several nodes); gives the
    /// lease up when there are none. Returns how many.
    pub(super) async fn start_stored_queue(
        self: &Arc<Self>,
        slot: &Arc<Slot>,
        session: &SessionId,
        lease: Option<Lease>,
    ) -> Result<usize, EngineError> {
        let owner: Option<String> = session::Entity::find()
            .select_only()
            .column(session::Column::Owner)
            .filter(session::Column::Id.eq(session.as_str()))
            .into_tuple()
            .one(&self.db)
            .await?;
        let mut queued = Vec::new();
        let mut unreadable = Vec::new();
        for row in self.stored_queue(session).await? {
            match (&owner, row.content) {
                (Some(owner), Some(content)) => queued.push(Entry::queued(
                    row.id,
                    row.message_id,
                    UserId::new(owner.clone()),
                    content,
                    row.client_msg_id,
                )),
                // Queued by a version that did not store the message.
                _ => unreadable.push(row.id),
            }
        }
        let fence = lease.clone().map(Fence::Hold);
        runs::finish_stored(self, session, &unreadable, Reason::Interrupted, fence).await;
        let count = queued.len();
        let mut queued = queued.into_iter();
        let Some(first) = queued.next() else {
            if let Some(lease) = &lease {
                fence::release(&self.db, session, lease).await?;
            }
            return Ok(0);
        };
        slot.state.lock().expect("slot").queue.extend(queued);
        match self.launch(slot, session, first, lease).await? {
            Launched::Started(_) | Launched::Elsewhere(_) => Ok(count),
        }
    }
}

impl Entry {
    /// The entry as its queued row stores it.
    pub(super) fn stored(&self) -> QueuedRun<'_> {
        QueuedRun {
            run_id: &self.run_id,
            message_id: &self.message_id,
            content: &self.content,
            client_msg_id: self.client_msg_id.as_deref(),
        }
    }
}
