//! The per-session writer task: group commit, then publish.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::fence::Fence;
use super::store::{Outcome, StoreError};
use super::{AppendRequest, Effect, Inner, NewEvent, SessionLog, store};
use crate::error::Chain;
use crate::ids::SessionId;

/// Events committed per transaction at most; more waits for the next one.
const MAX_GROUP_EVENTS: usize = 10_000;
/// A writer with nothing to do and no subscribers retires after this long.
const IDLE: Duration = Duration::from_secs(60);

/// `committer`: on SQLite, where this session's groups are committed.
pub(super) async fn run(
    inner: Arc<Inner>,
    log: Arc<SessionLog>,
    mut rx: mpsc::Receiver<AppendRequest>,
    committer: Option<mpsc::Sender<Job>>,
) {
    loop {
        let first = tokio::select! {
            request = rx.recv() => match request {
                Some(request) => request,
                None => return,
            },
            () = tokio::time::sleep(IDLE) => {
                if retire(&inner, &log, &rx) {
                    return;
                }
                continue;
            }
            () = inner.shutdown.cancelled(), if rx.is_empty() => return,
        };
        // An append with an effect commits alone; the others are grouped
        // with those that have the same fence (a run's deltas: its lease;
        // producers: none).
        let mut next = Some(first);
        while let Some(first) = next.take() {
            let alone = first.effect.is_some();
            let mut batch = vec![first];
            let mut queued = batch[0].events.len();
            while !alone && queued < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(request) if request.effect.is_some() || request.fence != batch[0].fence => {
                        next = Some(request);
                        break;
                    }
                    Ok(request) => {
                        queued += request.events.len();
                        batch.push(request);
                    }
                    Err(_) => break,
                }
            }
            commit(&log, committer.as_ref(), inner.cluster.get(), batch).await;
        }
    }
}

/// `cluster`: with several nodes, where the commit is announced (after
/// local delivery: no subscriber here waits for Redis).
async fn commit(
    log: &Arc<SessionLog>,
    committer: Option<&mpsc::Sender<Job>>,
    cluster: Option<&super::cluster::Link>,
    mut batch: Vec<AppendRequest>,
) {
    let requests: Vec<_> = batch
        .iter_mut()
        .map(|r| std::mem::take(&mut r.events))
        .collect();
    let effect = batch.first_mut().and_then(|r| r.effect.take());
    let fence = batch.first_mut().and_then(|r| r.fence.take());
    let result = match committer {
        Some(committer) => {
            let (reply, answer) = oneshot::channel();
            let job = Job {
                session: log.id.clone(),
                requests,
                effect,
                fence,
                max_events: log.settings.max_events,
                reply,
            };
            // The committer stops only when the log is gone: the
            // requests' replies are dropped, which their callers take for
            // a shutdown.
            if committer.send(job).await.is_err() {
                return;
            }
            match answer.await {
                Ok(result) => result,
                Err(_) => return,
            }
        }
        None => {
            let group = store::Group {
                session_id: &log.id,
                requests: &requests,
                effect: effect.as_deref(),
                fence: fence.as_ref(),
                shared: cluster.is_some(),
            };
            store::append(&log.db, group, log.settings.max_events).await
        }
    };
    match result {
        Ok(outcomes) => {
            let committed: Vec<_> = outcomes
                .iter()
                .flat_map(|o| o.events.iter().cloned())
                .collect();
            metrics::counter!(crate::metrics::EVENTS_APPENDED).increment(committed.len() as u64);
            log.publish(&committed);
            if let (Some(cluster), Some(last)) = (cluster, committed.last()) {
                cluster.committed(&log.id, last.seq);
            }
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                let _ = request.reply.send(Ok(outcome));
            }
        }
        // Each caller reports the failure (its cause is logged where it
        // reaches a client or ends a run).
        Err(error) => {
            for request in batch {
                let _ = request.reply.send(Err(error.clone()));
            }
        }
    }
}

/// One session's group, handed to the [`committer`].
pub(super) struct Job {
    session: SessionId,
    requests: Vec<Vec<NewEvent>>,
    effect: Option<Box<dyn Effect>>,
    fence: Option<Fence>,
    max_events: Option<u64>,
    reply: oneshot::Sender<Result<Vec<Outcome>, StoreError>>,
}

/// SQLite has one writer at a time, so a transaction per session caps the
/// whole server at a few thousand commits a second. Instead, the session
/// writers hand their groups to this one task, which commits every group
/// waiting — of any session — in one transaction. Should that transaction
/// fail, each group is retried in a transaction of its own, so that a
/// failing group fails only its own requests.
///
/// It holds its own queue's sender (`keep_open`) until `shutdown`, then
/// ends once every session writer has ended and their groups are committed.
pub(super) async fn committer(
    db: DatabaseConnection,
    gate: Arc<tokio::sync::Mutex<()>>,
    mut rx: mpsc::Receiver<Job>,
    keep_open: mpsc::Sender<Job>,
    shutdown: CancellationToken,
) {
    let mut keep_open = Some(keep_open);
    loop {
        let first = tokio::select! {
            job = rx.recv() => match job {
                Some(job) => job,
                None => return,
            },
            () = shutdown.cancelled(), if keep_open.is_some() => {
                keep_open = None;
                continue;
            }
        };
        let mut queued: usize = first.requests.iter().map(Vec::len).sum();
        let mut jobs = vec![first];
        while queued < MAX_GROUP_EVENTS {
            match rx.try_recv() {
                Ok(job) => {
                    queued += job.requests.iter().map(Vec::len).sum::<usize>();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        let _permit = gate.lock().await;
        commit_jobs(&db, jobs).await;
    }
}

/// Runs the committer on a thread of its own, with a runtime of its own.
///
/// A commit is a few database round trips (to SQLite's own connection
/// thread), each resumed by a wake-up of the task that awaits it. On the
/// shared runtime those wake-ups wait behind whatever the workers are
/// doing, and under fan-out that is writing frames to thousands of
/// sockets: a commit that takes 0.6 ms alone took 11–15 ms at p90. Here
/// nothing else competes for the thread. Should the thread not start, the
/// committer runs on the shared runtime.
pub(super) fn spawn_on_own_thread<F>(committer: F)
where
    F: Future<Output = ()> + Send + 'static,
{
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::warn!(%error, "cannot start the commit thread's runtime; committing on the shared one");
            tokio::spawn(committer);
            return;
        }
    };
    let (start, started) = std::sync::mpsc::channel();
    let thread = std::thread::Builder::new()
        .name("switchboard-commit".into())
        .spawn(move || {
            // The committer is handed over only once the thread runs, so
            // that a failed spawn still has it to run elsewhere.
            if let Ok(committer) = started.recv() {
                runtime.block_on(committer);
            }
        });
    match thread {
        Ok(_) => {
            let _ = start.send(committer);
        }
        Err(error) => {
            tracing::warn!(%error, "cannot start the commit thread; committing on the shared runtime");
            tokio::spawn(committer);
        }
    }
}

async fn commit_jobs(db: &DatabaseConnection, jobs: Vec<Job>) {
    let max_events = jobs[0].max_events;
    let together = async {
        let groups: Vec<store::Group<'_>> = jobs.iter().map(Job::group).collect();
        let txn = crate::db::begin_write(db).await?;
        let outcomes = store::append_groups(&txn, &groups, max_events).await?;
        txn.commit().await?;
        Ok::<_, StoreError>(outcomes)
    };
    match together.await {
        Ok(outcomes) => {
            for (job, outcome) in jobs.into_iter().zip(outcomes) {
                let _ = job.reply.send(Ok(outcome));
            }
        }
        Err(error) if jobs.len() == 1 => {
            for job in jobs {
                let _ = job.reply.send(Err(error.clone()));
            }
        }
        Err(error) => {
            tracing::warn!(
                error = %Chain(&error), groups = jobs.len(),
                "a grouped commit failed; retrying each group alone"
            );
            for job in jobs {
                let result = store::append(db, job.group(), job.max_events).await;
                let _ = job.reply.send(result);
            }
        }
    }
}

impl Job {
    fn group(&self) -> store::Group<'_> {
        store::Group {
            session_id: &self.session,
            requests: &self.requests,
            effect: self.effect.as_deref(),
            fence: self.fence.as_ref(),
            // SQLite: one node only.
            shared: false,
        }
    }
}

/// Leaves the session map when idle and unsubscribed. Appenders that still
/// hold this log find its queue closed and ask a new writer.
fn retire(inner: &Inner, log: &Arc<SessionLog>, rx: &mpsc::Receiver<AppendRequest>) -> bool {
    let mut sessions = inner.sessions.lock().expect("sessions");
    let idle = rx.is_empty() && log.state.lock().expect("log state").subscribers.is_empty();
    if idle {
        sessions.remove(&log.id);
    }
    idle
}

/// Prunes events older than `max_age`, every `max_age / 2` (at most a minute).
pub(super) async fn prune_by_age(
    db: DatabaseConnection,
    write_gate: Option<Arc<tokio::sync::Mutex<()>>>,
    max_age: Duration,
    shutdown: CancellationToken,
) {
    let every = (max_age / 2).clamp(Duration::from_millis(100), Duration::from_secs(60));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = shutdown.cancelled() => return,
        }
        let cutoff = crate::time::now()
            - chrono::Duration::from_std(max_age).unwrap_or(chrono::Duration::MAX);
        let permit = match &write_gate {
            Some(gate) => Some(gate.lock().await),
            None => None,
        };
        let result = store::prune_older_than(&db, cutoff).await;
        drop(permit);
        match result {
            Ok(0) => {}
            Ok(deleted) => tracing::info!(deleted, "pruned events past the retention age"),
            Err(error) => tracing::warn!(%error, "pruning old events failed"),
        }
    }
}
