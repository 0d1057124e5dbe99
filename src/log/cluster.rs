//! The log as one node of several (set up with [`EventLog::join_cluster`];
//! none of this runs on a single node).
//!
//! Every node commits to the same PostgreSQL log and delivers to its own
//! subscribers only. After each commit a node sends a commit notice
//! (session, last seq) to the others ([`crate::cluster`]); a node learns a
//! head from a notice, from its periodic head check or from a subscribe
//! ([`EventLog::learn_head`]) and, when that head is past what it
//! published, switches its live subscribers of that session to catch-up:
//! they read what they miss from the database, in order, and rejoin live
//! delivery at the seq where the read ended ([`super::subscription`]). A
//! notice is only ever a hint that the database has moved: a lost one is
//! made up by the next notice or head check, a late or repeated one names a
//! head already known and changes nothing, so no notice can lose, repeat
//! or reorder an event for a subscriber.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::{EventLog, SessionLog};
use crate::ids::{Seq, SessionId};

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
            log.advance(head);
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
