//! The per-session writer task: group commit, then publish.

use std::sync::Arc;
use std::time::Duration;

use sea_orm::DatabaseConnection;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use super::{AppendRequest, Inner, SessionLog, store};

/// Events committed per transaction at most; more waits for the next one.
const MAX_GROUP_EVENTS: usize = 10_000;
/// A writer with nothing to do and no subscribers retires after this long.
const IDLE: Duration = Duration::from_secs(60);

pub(super) async fn run(
    inner: Arc<Inner>,
    log: Arc<SessionLog>,
    mut rx: mpsc::Receiver<AppendRequest>,
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
        // An append with an effect commits alone; the others are grouped.
        let mut next = Some(first);
        while let Some(first) = next.take() {
            let alone = first.effect.is_some();
            let mut batch = vec![first];
            let mut queued = batch[0].events.len();
            while !alone && queued < MAX_GROUP_EVENTS {
                match rx.try_recv() {
                    Ok(request) if request.effect.is_some() => {
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
            commit(&log, batch).await;
        }
    }
}

async fn commit(log: &Arc<SessionLog>, mut batch: Vec<AppendRequest>) {
    let requests: Vec<_> = batch
        .iter_mut()
        .map(|r| std::mem::take(&mut r.events))
        .collect();
    let effect = batch.first_mut().and_then(|r| r.effect.take());
    let permit = match &log.write_gate {
        Some(gate) => Some(gate.lock().await),
        None => None,
    };
    let result = store::append(&log.db, &log.id, &requests, effect, log.settings.max_events).await;
    drop(permit);
    match result {
        Ok(outcomes) => {
            let committed: Vec<_> = outcomes
                .iter()
                .flat_map(|o| o.events.iter().cloned())
                .collect();
            metrics::counter!(crate::metrics::EVENTS_APPENDED).increment(committed.len() as u64);
            log.publish(&committed);
            for (request, outcome) in batch.into_iter().zip(outcomes) {
                let _ = request.reply.send(Ok(outcome));
            }
        }
        Err(error) => {
            tracing::error!(session_id = %log.id, %error, "append failed");
            let message = error.to_string();
            for request in batch {
                let _ = request.reply.send(Err(message.clone()));
            }
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
