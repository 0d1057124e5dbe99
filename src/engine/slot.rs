//! A session's runs in memory: the active one and those queued behind it,
//! each with the [`Control`] that stops it and tells when it has ended.
//!
//! A queued run holds its message in memory until it starts, so queued runs
//! are counted per user across sessions ([`QueuedPerUser`]): an enqueued
//! entry carries a [`Ticket`], given back when it leaves the queue —
//! started ([`Entry::started`]) or dropped.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::{Accepted, Reason};
use crate::auth::UserId;
use crate::ids::{MessageId, RunId};
use crate::log::{Fence, Lease};

/// A session's runs: the active one and those queued behind it.
#[derive(Default)]
pub(super) struct Slot {
    pub(super) gate: tokio::sync::Mutex<()>,
    pub(super) state: Mutex<SlotState>,
}

#[derive(Default)]
pub(super) struct SlotState {
    pub(super) active: Option<Entry>,
    pub(super) queue: VecDeque<Entry>,
    /// With several nodes: the session's lease, held while a driver runs.
    pub(super) lease: Option<Lease>,
    /// The lease was taken over by another node: nothing more is written.
    pub(super) lost: bool,
}

impl SlotState {
    /// What the writes of the session's runs must pass: holding the lease.
    pub(super) fn fence(&self) -> Option<Fence> {
        self.lease.clone().map(Fence::Hold)
    }

    pub(super) fn find(&self, client_msg_id: &str) -> Option<Accepted> {
        self.active
            .iter()
            .chain(&self.queue)
            .find(|e| e.client_msg_id.as_deref() == Some(client_msg_id))
            .map(Entry::accepted)
    }
}

/// A run that was accepted.
#[derive(Clone)]
pub(super) struct Entry {
    pub(super) run_id: RunId,
    pub(super) message_id: MessageId,
    /// The session's owner: whose gateways run its tools.
    pub(super) owner: UserId,
    pub(super) content: Arc<str>,
    pub(super) client_msg_id: Option<String>,
    pub(super) control: Control,
    /// Set while the entry waits in a queue (`on_busy: enqueue`).
    pub(super) ticket: Option<Arc<Ticket>>,
}

impl Entry {
    pub(super) fn new(owner: UserId, content: String, client_msg_id: Option<String>) -> Self {
        Self::queued(
            RunId::generate(),
            MessageId::generate(),
            owner,
            content,
            client_msg_id,
        )
    }

    /// An entry for a run already stored as queued.
    pub(super) fn queued(
        run_id: RunId,
        message_id: MessageId,
        owner: UserId,
        content: String,
        client_msg_id: Option<String>,
    ) -> Self {
        Self {
            run_id,
            message_id,
            owner,
            content: content.into(),
            client_msg_id,
            control: Control::default(),
            ticket: None,
        }
    }

    /// The entry as it leaves the queue to run: no longer counted queued.
    pub(super) fn started(mut self) -> Self {
        self.ticket = None;
        self
    }

    pub(super) fn accepted(&self) -> Accepted {
        Accepted {
            run_id: self.run_id.clone(),
            message_id: self.message_id.clone(),
        }
    }
}

/// How a run is told to stop, and how others learn that it has ended.
#[derive(Clone, Default)]
pub(super) struct Control {
    pub(super) cancel: CancellationToken,
    reason: Arc<Mutex<Option<Reason>>>,
    /// Cancelled once the run's end is committed (or given up on).
    pub(super) finished: CancellationToken,
}

impl Control {
    /// Asks the run to end with `reason` (the first reason given wins).
    pub(super) fn stop(&self, reason: Reason) {
        self.reason.lock().expect("reason").get_or_insert(reason);
        self.cancel.cancel();
    }

    pub(super) fn reason(&self) -> Option<Reason> {
        *self.reason.lock().expect("reason")
    }
}

/// How many runs each user has queued, across sessions.
#[derive(Default)]
pub(super) struct QueuedPerUser(Mutex<HashMap<UserId, usize>>);

impl QueuedPerUser {
    /// Counts one more queued run of `user`; `Err` with how many they have
    /// when that is `max` already.
    pub(super) fn take(self: &Arc<Self>, user: &UserId, max: usize) -> Result<Ticket, usize> {
        let mut counts = self.0.lock().expect("queued per user");
        let count = counts.entry(user.clone()).or_default();
        if *count >= max {
            let held = *count;
            if held == 0 {
                counts.remove(user);
            }
            return Err(held);
        }
        *count += 1;
        Ok(Ticket {
            user: user.clone(),
            counts: self.clone(),
        })
    }
}

/// One queued run counted for its user; dropping it uncounts the run.
pub(super) struct Ticket {
    user: UserId,
    counts: Arc<QueuedPerUser>,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        let mut counts = self.counts.0.lock().expect("queued per user");
        if let Some(count) = counts.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                counts.remove(&self.user);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_gets_tickets_up_to_the_bound_and_each_comes_back_when_dropped() {
        let counts = Arc::new(QueuedPerUser::default());
        let alice = UserId::new("alice");
        let first = counts.take(&alice, 2).unwrap();
        let _second = counts.take(&alice, 2).unwrap();
        assert_eq!(counts.take(&alice, 2).err(), Some(2));
        assert!(counts.take(&UserId::new("bob"), 2).is_ok());
        drop(first);
        let _third = counts.take(&alice, 2).unwrap();
        assert_eq!(counts.take(&UserId::new("carol"), 0).err(), Some(0));
        assert!(!counts.0.lock().unwrap().contains_key(&UserId::new("carol")));
    }
}
