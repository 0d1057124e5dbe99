//! `agent:execute` as a client sends it (PROTOCOL §4.4), its ack, and what
//! is refused before anything is looked up: empty or oversized content, a
//! `client_msg_id` out of bounds, and text no database can store (NUL).

use serde::{Deserialize, Serialize};

use crate::ids::{MessageId, RunId};
use crate::payload::Invalid;
use crate::payload::check_text;

/// Longest user message accepted by `agent:execute`.
pub const MAX_CONTENT_BYTES: usize = 1024 * 1024;
/// Longest `client_msg_id`.
pub const MAX_CLIENT_MSG_ID_CHARS: usize = 200;

/// `agent:execute`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Execute {
    pub session_id: String,
    pub content: String,
    #[serde(default)]
    pub client_msg_id: Option<String>,
    #[serde(default)]
    pub on_busy: OnBusy,
}

/// What `agent:execute` does when a run is already active.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnBusy {
    /// Stop the active run (`interrupted`), drop the queued ones, run this.
    #[default]
    Interrupt,
    /// Run this after the active run and those already queued.
    Enqueue,
    /// Refuse with `busy`.
    Reject,
}

/// The ack of `agent:execute`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Accepted {
    pub run_id: RunId,
    pub message_id: MessageId,
}

impl Execute {
    /// What `agent:execute` refuses before looking anything up.
    pub(super) fn check(&self) -> Result<(), Invalid> {
        if self.content.trim().is_empty() {
            return Err(Invalid::Malformed("content: must not be empty".into()));
        }
        if self.content.len() > MAX_CONTENT_BYTES {
            return Err(Invalid::TooLarge(format!(
                "content: {} bytes is more than the {MAX_CONTENT_BYTES} allowed",
                self.content.len()
            )));
        }
        check_text("content", &self.content)?;
        if let Some(id) = &self.client_msg_id {
            if id.is_empty() || id.chars().count() > MAX_CLIENT_MSG_ID_CHARS {
                return Err(Invalid::Malformed(format!(
                    "client_msg_id: must be 1 to {MAX_CLIENT_MSG_ID_CHARS} characters"
                )));
            }
            check_text("client_msg_id", id)?;
        }
        Ok(())
    }
}
