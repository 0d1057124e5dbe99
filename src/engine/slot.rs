//! A session's runs in memory: the active one and those queued behind it,
//! each with the [`Control`] that stops it and tells when it has ended.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

use super::{Accepted, Reason};
use crate::auth::UserId;
use crate::ids::{MessageId, RunId};

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
}

impl SlotState {
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
}

impl Entry {
    pub(super) fn new(owner: UserId, content: String, client_msg_id: Option<String>) -> Self {
        Self {
            run_id: RunId::generate(),
            message_id: MessageId::generate(),
            owner,
            content: content.into(),
            client_msg_id,
            control: Control::default(),
        }
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
