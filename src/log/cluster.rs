//! The log as one node of several (set up with [`EventLog::join_cluster`];
//! none of this runs on a single node).
//!
//! Every node commits to the same PostgreSQL log and delivers to its own
//! subscribers only. After each commit a node sends a commit notice
//! (session, last seq) to the others ([`crate::cluster`]); a node learns a
//! head from a notice, from its periodic head check or from a subscribe
//! ([`EventLog::learn_head`]) and, when that head is past what it
//! published, one fill task per session reads the missing events from the
//! database — once for all its subscribers, up to the highest head learnt
//! meanwhile — and publishes them exactly as if this node had committed
//! them: contiguous with the head, they go to live subscribers and the
//! tail; already published, they are skipped; past a gap, live subscribers
//! catch up from the database ([`super::subscription`]). A
//! notice is only ever a hint that the database has moved: a lost one is
//! made up by the next notice or head check, a late or repeated one names a
//! head already known and changes nothing, so no notice can lose, repeat
//! or reorder an event for a subscriber.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::{EventLog, SessionLog, store};
use crate::ids::{Seq, SessionId};

/// Events read from the database per fill at most.
const FILL_PAGE: u64 = 500;

/// A commit this node made: the session and its new head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Commit {
    pub session: SessionId,
    pub last_seq: Seq,
}

/// What the log needs from the cluster: where to send its commit notices.
pub(super) struct Link {
    pub(super) commits: mpsc::Sender<Commit>,
}

impl Link {
    /// Queues a notice without waiting: when the queue is full the notice
    /// is dropped (the other nodes' head checks find the commit anyway).
    pub(super) fn committed(&self, session: &SessionId, last_seq: Seq) {
        let commit = Commit {
            session: session.clone(),
            last_seq,
        };
        if self.commits.try_send(commit).is_err() {
            metrics::counter!(crate::metrics::CLUSTER_NOTICES_DROPPED).increment(1);
        }
    }
}

impl EventLog {
    /// Makes this log one node's of several: commit notices go to
    /// `commits`. Called once, before anything is appended.
    pub fn join_cluster(&self, commits: mpsc::Sender<Commit>) {
        let _ = self.inner.cluster.set(Link { commits });
    }

    /// True when this log is one of several nodes'.
    pub fn clustered(&self) -> bool {
        self.inner.cluster.get().is_some()
    }

    /// The database head of `session` is at least `head` (a notice, a
    /// head check): local subscribers behind it catch up from the
    /// database. Nothing happens when the session has no local subscriber
    /// or `head` is not new.
    pub fn learn_head(&self, session: &SessionId, head: Seq) {
        if let Some(log) = self.active(session) {
            log.learn(head);
        }
    }

    /// The sessions this node delivers to (those with a local subscriber),
    /// with the head each has published, for the head check.
    pub fn watched(&self) -> Vec<(SessionId, Seq)> {
        let sessions: Vec<Arc<SessionLog>> = self
            .inner
            .sessions
            .lock()
            .expect("sessions")
            .values()
            .cloned()
            .collect();
        sessions
            .iter()
            .filter_map(|log| {
                let state = log.state.lock().expect("log state");
                (!state.subscribers.is_empty()).then(|| (log.id.clone(), state.head))
            })
            .collect()
    }
}

impl SessionLog {
    /// Another node committed up to `head`: unless it is already published
    /// or being fetched, a fill task reads it from the database and
    /// publishes it.
    pub(super) fn learn(self: &Arc<Self>, head: Seq) {
        let mut state = self.state.lock().expect("log state");
        if head <= state.head || head <= state.learnt {
            return;
        }
        state.learnt = head;
        if state.filling {
            return;
        }
        state.filling = true;
        drop(state);
        let filling = fill(self.clone());
        self.tasks
            .spawn(self.shutdown.clone().run_until_cancelled_owned(filling));
    }
}

/// Reads what follows the published head from the database, up to the
/// highest head learnt, a page at a time, and publishes it; ends once the
/// head reaches what was learnt.
async fn fill(log: Arc<SessionLog>) {
    loop {
        let (head, learnt) = {
            let mut state = log.state.lock().expect("log state");
            if state.head >= state.learnt || state.subscribers.is_empty() {
                state.filling = false;
                // Nobody to deliver to: the next subscription reads the
                // database itself; only the head must be right.
                let learnt = state.learnt;
                drop(state);
                if learnt > Seq::ZERO {
                    log.advance(learnt);
                }
                return;
            }
            (state.head, state.learnt)
        };
        let page = {
            let _permit = log.catch_up_reads.acquire().await.ok();
            let limit = FILL_PAGE.min(learnt.count_after(head));
            store::read_page(&log.db, &log.id, head, limit, log.settings.page_bytes).await
        };
        match page {
            Ok(page) => {
                let mut events = page.events;
                let end = events.partition_point(|e| e.seq <= learnt);
                events.truncate(end);
                if events.is_empty() {
                    // Gone already (retention): subscribers find out
                    // through catch-up.
                    log.advance(learnt);
                    continue;
                }
                metrics::counter!(crate::metrics::CLUSTER_GAP_EVENTS)
                    .increment(events.len() as u64);
                log.publish(&events);
            }
            Err(error) => {
                tracing::warn!(session_id = %log.id, %error, "reading another node's events failed; retrying");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
        }
    }
}
