//! Publishing to subscribers, and catching up those that fell behind.
//!
//! Invariant: for each subscriber, either it is live and `head` is the last
//! seq it was handed, or exactly one catch-up task owns its delivery. Both
//! the switch to live ([`catch_up`]) and publishing ([`SessionLog::publish`])
//! happen under the session's state lock, which is what makes the seam
//! between replay and live delivery exact.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use super::sink::{Delivery, Sink, SinkId};
use super::{Committed, SessionLog, State, Subscriber, store};
use crate::ids::Seq;

/// Events read from the database per catch-up page.
const PAGE: u64 = 500;

impl SessionLog {
    /// Registers `sink` (replacing an earlier subscription of the same sink)
    /// and starts catching it up from `start`.
    pub(super) fn subscribe(self: &Arc<Self>, sink: Sink, start: Seq) {
        let cancelled = Arc::new(AtomicBool::new(false));
        let id = sink.id();
        {
            let mut state = self.state.lock().expect("log state");
            let previous = state.subscribers.insert(
                id.clone(),
                Subscriber {
                    sink: sink.clone(),
                    live: false,
                    cancelled: cancelled.clone(),
                },
            );
            if let Some(previous) = previous {
                previous.cancelled.store(true, Ordering::SeqCst);
            }
        }
        self.spawn_catch_up(id, sink, cancelled, start);
    }

    /// Removes a subscriber (only the given subscription when `which` is set).
    pub(super) fn remove(&self, id: &SinkId, which: Option<&Arc<AtomicBool>>) -> bool {
        let mut state = self.state.lock().expect("log state");
        let matches = match (state.subscribers.get(id), which) {
            (Some(sub), Some(which)) => Arc::ptr_eq(&sub.cancelled, which),
            (Some(_), None) => true,
            (None, _) => false,
        };
        if matches && let Some(sub) = state.subscribers.remove(id) {
            sub.cancelled.store(true, Ordering::SeqCst);
        }
        matches
    }

    /// Publishes committed events (contiguous, ascending) to live subscribers.
    pub(super) fn publish(self: &Arc<Self>, events: &[Arc<Committed>]) {
        let (Some(first), Some(last)) = (events.first(), events.last()) else {
            return;
        };
        let mut state = self.state.lock().expect("log state");
        let State {
            head,
            tail,
            subscribers,
        } = &mut *state;
        if first.seq != *head + 1 {
            // Someone else appended to this session in between (another
            // node): whoever is live reads the difference from the database.
            tail.clear();
            for (id, sub) in subscribers.iter_mut().filter(|(_, s)| s.live) {
                sub.live = false;
                self.spawn_catch_up(id.clone(), sub.sink.clone(), sub.cancelled.clone(), *head);
            }
        }
        tail.extend(events.iter().cloned());
        let excess = tail.len().saturating_sub(self.settings.tail_len);
        tail.drain(..excess);
        *head = last.seq;

        let mut closed = Vec::new();
        let mut delivered = 0u64;
        for (id, sub) in subscribers.iter_mut().filter(|(_, s)| s.live) {
            for event in events {
                match sub.sink.deliver(event) {
                    Delivery::Sent => delivered += 1,
                    Delivery::Full => {
                        tracing::debug!(
                            session_id = %self.id, ?id, seq = event.seq,
                            "subscriber fell behind; catching up from the log"
                        );
                        sub.live = false;
                        metrics::counter!(crate::metrics::CATCH_UPS).increment(1);
                        self.spawn_catch_up(
                            id.clone(),
                            sub.sink.clone(),
                            sub.cancelled.clone(),
                            event.seq - 1,
                        );
                        break;
                    }
                    Delivery::Closed => {
                        closed.push(id.clone());
                        break;
                    }
                }
            }
        }
        metrics::counter!(crate::metrics::DELIVERIES).increment(delivered);
        for id in closed {
            if let Some(sub) = subscribers.remove(&id) {
                sub.cancelled.store(true, Ordering::SeqCst);
            }
        }
    }

    fn spawn_catch_up(
        self: &Arc<Self>,
        id: SinkId,
        sink: Sink,
        cancelled: Arc<AtomicBool>,
        cursor: Seq,
    ) {
        self.tasks
            .spawn(catch_up(self.clone(), id, sink, cancelled, cursor));
    }

    /// Up to `max` tail events after `cursor`, when the tail still has the
    /// one right after it.
    fn from_tail(state: &State, cursor: Seq, max: usize) -> Option<Vec<Arc<Committed>>> {
        let oldest = state.tail.front()?.seq;
        if oldest > cursor + 1 {
            return None;
        }
        let skip = usize::try_from(cursor + 1 - oldest).ok()?;
        Some(state.tail.iter().skip(skip).take(max).cloned().collect())
    }
}

/// Delivers everything after `cursor` to one subscriber, then makes it live.
async fn catch_up(
    log: Arc<SessionLog>,
    id: SinkId,
    sink: Sink,
    cancelled: Arc<AtomicBool>,
    mut cursor: Seq,
) {
    let mut stalled_since: Option<Instant> = None;
    let mut attempt = 0;
    loop {
        if cancelled.load(Ordering::SeqCst) {
            return;
        }
        let from_tail = {
            let mut state = log.state.lock().expect("log state");
            if cursor >= state.head {
                if let Some(sub) = state.subscribers.get_mut(&id)
                    && Arc::ptr_eq(&sub.cancelled, &cancelled)
                {
                    sub.live = true;
                }
                return;
            }
            SessionLog::from_tail(&state, cursor, PAGE as usize)
        };
        let page = match from_tail {
            Some(page) => page,
            None => match store::read(&log.db, &log.id, cursor, PAGE).await {
                Ok(page) => page,
                Err(error) => {
                    tracing::warn!(session_id = %log.id, %error, "catch-up read failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
                    continue;
                }
            },
        };
        if page.first().is_none_or(|e| e.seq != cursor + 1) {
            // What comes next was pruned while this subscriber was behind.
            drop_lagging(&log, &id, &sink, &cancelled, cursor);
            return;
        }
        metrics::counter!(crate::metrics::DELIVERIES).increment(page.len() as u64);
        for event in &page {
            loop {
                if cancelled.load(Ordering::SeqCst) {
                    return;
                }
                match sink.deliver(event) {
                    Delivery::Sent => {
                        cursor = event.seq;
                        stalled_since = None;
                        attempt = 0;
                        break;
                    }
                    Delivery::Full => {
                        let since = *stalled_since.get_or_insert_with(Instant::now);
                        if since.elapsed() > log.settings.lag_timeout {
                            drop_lagging(&log, &id, &sink, &cancelled, cursor);
                            return;
                        }
                        sink.wait_for_room(attempt).await;
                        attempt += 1;
                    }
                    Delivery::Closed => {
                        log.remove(&id, Some(&cancelled));
                        return;
                    }
                }
            }
        }
    }
}

fn drop_lagging(
    log: &SessionLog,
    id: &SinkId,
    sink: &Sink,
    cancelled: &Arc<AtomicBool>,
    last_seq: Seq,
) {
    if log.remove(id, Some(cancelled)) {
        metrics::counter!(crate::metrics::LAGGING_DROPS).increment(1);
        tracing::info!(session_id = %log.id, ?id, last_seq, "subscriber dropped for lagging");
        sink.send_lagged(log.id.as_str(), last_seq);
    }
}
