//! Publishing to subscribers, and catching up those that fell behind.
//!
//! Invariant: for each subscriber, either it is live and `head` is the last
//! seq it was handed, or exactly one catch-up task owns its delivery. Both
//! the switch to live ([`catch_up`]) and publishing ([`SessionLog::publish`])
//! happen under the session's state lock, which is what makes the seam
//! between replay and live delivery exact.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::SemaphorePermit;

use super::sink::{Delivery, Sink, SinkId};
use super::{Committed, SessionLog, State, Subscriber, store};
use crate::ids::Seq;

/// Events in one catch-up page at most (and at most `page_bytes` of them).
const PAGE: usize = 500;
/// While its sink is full, a catch-up keeps at most this part of the page
/// it was delivering (but at least the event that did not fit); the rest
/// is read again once the sink has room. A stalled subscriber thus holds
/// little besides what its sink already holds.
const KEPT_WHILE_FULL: usize = 16;

impl SessionLog {
    /// Registers `sink` (replacing an earlier subscription of the same sink)
    /// and starts catching it up from `start`, or makes it live at once
    /// when `start` is the head.
    pub(super) fn subscribe(self: &Arc<Self>, sink: Sink, start: Seq) {
        let cancelled = Arc::new(AtomicBool::new(false));
        let id = sink.id();
        let live = {
            let mut state = self.state.lock().expect("log state");
            // Nothing to catch up: live from now on, as the catch-up task
            // would make it at its first look, without starting one.
            let live = start >= state.head;
            let previous = state.subscribers.insert(
                id.clone(),
                Subscriber {
                    sink: sink.clone(),
                    live,
                    cancelled: cancelled.clone(),
                },
            );
            if let Some(previous) = previous {
                previous.cancelled.store(true, Ordering::SeqCst);
            }
            live
        };
        if !live {
            self.spawn_catch_up(id, sink, cancelled, start);
        }
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
            ..
        } = &mut *state;
        if last.seq <= *head {
            // Already known (another node's commit, learnt first, that
            // included these): every subscriber gets them from the log.
            return;
        }
        if first.seq != head.next() {
            // Someone else appended to this session in between (another
            // node): whoever is live reads the difference from the database.
            if first.seq > head.next() && !subscribers.is_empty() {
                metrics::counter!(crate::metrics::CLUSTER_GAP_EVENTS)
                    .increment(first.seq.prev().count_after(*head));
            }
            tail.clear();
            for (id, sub) in subscribers.iter_mut().filter(|(_, s)| s.live) {
                sub.live = false;
                self.spawn_catch_up(id.clone(), sub.sink.clone(), sub.cancelled.clone(), *head);
            }
        }
        tail.extend(events);
        *head = last.seq;

        let mut closed = Vec::new();
        let mut delivered = 0u64;
        for (id, sub) in subscribers.iter_mut().filter(|(_, s)| s.live) {
            for event in events {
                match sub.sink.deliver(event) {
                    Delivery::Sent => delivered += 1,
                    Delivery::Full => {
                        tracing::debug!(
                            session_id = %self.id, ?id, seq = event.seq.get(),
                            "subscriber fell behind; catching up from the log"
                        );
                        sub.live = false;
                        metrics::counter!(crate::metrics::CATCH_UPS).increment(1);
                        self.spawn_catch_up(
                            id.clone(),
                            sub.sink.clone(),
                            sub.cancelled.clone(),
                            event.seq.prev(),
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

    /// Another node committed up to `to` (learnt from a notice, a head
    /// check or the database): live subscribers read what they miss from
    /// the database, then rejoin live delivery. Nothing when `to` is not
    /// past the head.
    pub(super) fn advance(self: &Arc<Self>, to: Seq) {
        let mut state = self.state.lock().expect("log state");
        let State {
            head,
            tail,
            subscribers,
            ..
        } = &mut *state;
        if to <= *head {
            return;
        }
        if !subscribers.is_empty() {
            metrics::counter!(crate::metrics::CLUSTER_GAP_EVENTS).increment(to.count_after(*head));
        }
        // The tail ends at the head; what lies between is not in memory.
        tail.clear();
        for (id, sub) in subscribers.iter_mut().filter(|(_, s)| s.live) {
            sub.live = false;
            self.spawn_catch_up(id.clone(), sub.sink.clone(), sub.cancelled.clone(), *head);
        }
        *head = to;
    }

    fn spawn_catch_up(
        self: &Arc<Self>,
        id: SinkId,
        sink: Sink,
        cancelled: Arc<AtomicBool>,
        cursor: Seq,
    ) {
        let catching_up = catch_up(self.clone(), id, sink, cancelled, cursor);
        self.tasks
            .spawn(self.shutdown.clone().run_until_cancelled_owned(catching_up));
    }
}

/// How handing a page over to a sink went.
enum Handed {
    All,
    /// The sink is full; the events not handed over are left in the page.
    Full,
    Closed,
    Cancelled,
}

/// Hands events over from the front of `page` until the sink is full,
/// moving `cursor` to the last one handed over.
fn hand_over(
    sink: &Sink,
    page: &mut VecDeque<Arc<Committed>>,
    cursor: &mut Seq,
    cancelled: &AtomicBool,
) -> (Handed, u64) {
    let mut sent = 0;
    let handed = loop {
        let Some(event) = page.front() else {
            break Handed::All;
        };
        if cancelled.load(Ordering::SeqCst) {
            break Handed::Cancelled;
        }
        match sink.deliver(event) {
            Delivery::Sent => {
                *cursor = event.seq;
                sent += 1;
                page.pop_front();
            }
            Delivery::Full => break Handed::Full,
            Delivery::Closed => break Handed::Closed,
        }
    };
    metrics::counter!(crate::metrics::DELIVERIES).increment(sent);
    (handed, sent)
}

/// How long a catch-up's sink has been full, and how often it was found so.
#[derive(Default)]
struct Stall {
    since: Option<Instant>,
    attempt: u32,
}

impl Stall {
    fn progressed(&mut self) {
        *self = Self::default();
    }

    /// Waits a little for room for `next`; false once the sink has been full
    /// for longer than `lag_timeout`.
    async fn wait(&mut self, sink: &Sink, next: &Committed, lag_timeout: Duration) -> bool {
        let since = *self.since.get_or_insert_with(Instant::now);
        if since.elapsed() > lag_timeout {
            return false;
        }
        sink.wait_for_room(next, self.attempt).await;
        self.attempt += 1;
        true
    }
}

/// What follows a catch-up's cursor.
enum Next<'a> {
    /// Nothing: the subscriber is live now.
    Live,
    /// A page, with the permit it holds when it was read from the database.
    Page(Vec<Arc<Committed>>, Option<SemaphorePermit<'a>>),
    /// The database read failed; try again.
    Retry,
}

/// The next page after `cursor`: from the tail when it has it, otherwise
/// from the database under a read permit. Makes the subscriber live,
/// under the state lock, when there is nothing after `cursor`.
async fn next_page<'a>(
    log: &'a SessionLog,
    id: &SinkId,
    cancelled: &Arc<AtomicBool>,
    cursor: Seq,
) -> Next<'a> {
    let page_bytes = log.settings.page_bytes;
    let (from_tail, head) = {
        let mut state = log.state.lock().expect("log state");
        if cursor >= state.head {
            if let Some(sub) = state.subscribers.get_mut(id)
                && Arc::ptr_eq(&sub.cancelled, cancelled)
            {
                sub.live = true;
            }
            return Next::Live;
        }
        (state.tail.after(cursor, PAGE, page_bytes), state.head)
    };
    if let Some(page) = from_tail {
        return Next::Page(page, None);
    }
    // The semaphore is never closed; were it, reading without is harmless.
    let permit = log.catch_up_reads.acquire().await.ok();
    match store::read_page(&log.db, &log.id, cursor, PAGE as u64, page_bytes).await {
        Ok(mut page) => {
            // Never past the head read above: what follows it is handed
            // over by publishing (or by the next catch-up), so that nothing
            // committed but not yet published is delivered twice.
            let published = page.events.partition_point(|e| e.seq <= head);
            page.events.truncate(published);
            Next::Page(page.events, permit)
        }
        Err(error) => {
            drop(permit);
            tracing::warn!(session_id = %log.id, %error, "catch-up read failed; retrying");
            tokio::time::sleep(Duration::from_millis(500)).await;
            Next::Retry
        }
    }
}

/// Delivers everything after `cursor` to one subscriber, a page at a time,
/// then makes it live. While its sink is full it keeps only a little of
/// the page it was delivering ([`KEPT_WHILE_FULL`]) and no read permit.
/// A subscriber that lags is dropped, then told so as soon as it has room.
/// Runs until the server shuts down at the latest
/// ([`SessionLog::spawn_catch_up`]).
async fn catch_up(
    log: Arc<SessionLog>,
    id: SinkId,
    sink: Sink,
    cancelled: Arc<AtomicBool>,
    cursor: Seq,
) {
    let Some(last_seq) = deliver(&log, &id, &sink, &cancelled, cursor).await else {
        return;
    };
    if drop_lagging(&log, &id, &cancelled, last_seq) {
        let session_id = log.id.clone();
        drop(log);
        sink.send_lagged(session_id.as_str(), last_seq).await;
    }
}

/// The delivery part of [`catch_up`]: `Some(cursor)` when the subscriber
/// lags behind `cursor + 1` (its sink stayed full for `lag_timeout`, or
/// what follows was pruned meanwhile), `None` when it is live or gone.
async fn deliver(
    log: &SessionLog,
    id: &SinkId,
    sink: &Sink,
    cancelled: &Arc<AtomicBool>,
    mut cursor: Seq,
) -> Option<Seq> {
    let mut stall = Stall::default();
    // Read but not yet delivered: the sink was full.
    let mut held: VecDeque<Arc<Committed>> = VecDeque::new();
    loop {
        if cancelled.load(Ordering::SeqCst) {
            return None;
        }
        let handed = if let Some(next) = held.front() {
            if !stall.wait(sink, next, log.settings.lag_timeout).await {
                return Some(cursor);
            }
            hand_over(sink, &mut held, &mut cursor, cancelled)
        } else {
            let (page, permit) = match next_page(log, id, cancelled, cursor).await {
                Next::Live => return None,
                Next::Retry => continue,
                Next::Page(page, permit) => (page, permit),
            };
            if page.first().is_none_or(|e| e.seq != cursor.next()) {
                // What comes next was pruned while this subscriber was behind.
                return Some(cursor);
            }
            let mut page = VecDeque::from(page);
            let handed = hand_over(sink, &mut page, &mut cursor, cancelled);
            if let (Handed::Full, _) = handed {
                let kept = store::fitting(
                    page.iter().map(|e| e.size() as i64),
                    log.settings.page_bytes / KEPT_WHILE_FULL,
                );
                page.truncate(kept);
                held = page;
            }
            drop(permit);
            handed
        };
        match handed {
            (Handed::All | Handed::Full, sent) => {
                if sent > 0 {
                    stall.progressed();
                }
            }
            (Handed::Closed, _) => {
                log.remove(id, Some(cancelled));
                return None;
            }
            (Handed::Cancelled, _) => return None,
        }
    }
}

/// Removes a lagging subscriber; false when it was removed or replaced
/// meanwhile.
fn drop_lagging(log: &SessionLog, id: &SinkId, cancelled: &Arc<AtomicBool>, last_seq: Seq) -> bool {
    let removed = log.remove(id, Some(cancelled));
    if removed {
        metrics::counter!(crate::metrics::LAGGING_DROPS).increment(1);
        tracing::info!(session_id = %log.id, ?id, last_seq = last_seq.get(), "subscriber dropped for lagging");
    }
    removed
}
