//! Per-user quotas: how many sessions a user may own and create, and how
//! many events and bytes they may append over HTTP. The rates are token
//! buckets ([`crate::rate::KeyedLimiter`]) keyed by the caller's user id;
//! the session count is read from the database when a session is created.

use crate::auth::UserId;
use crate::config::Limits;
use crate::rate::{KeyedLimiter, Limited};

pub struct Quotas {
    /// Sessions one user may own.
    pub max_sessions: Option<u64>,
    sessions_created: KeyedLimiter<UserId>,
    events_appended: KeyedLimiter<UserId>,
    bytes_appended: KeyedLimiter<UserId>,
}

impl Quotas {
    pub fn new(limits: &Limits) -> Self {
        Self {
            max_sessions: limits.max_sessions_per_user,
            sessions_created: KeyedLimiter::new(
                limits.session_rate,
                "sessions created by this user",
            ),
            events_appended: KeyedLimiter::new(limits.ingest_rate, "events appended by this user"),
            bytes_appended: KeyedLimiter::new(
                limits.ingest_bytes_rate,
                "bytes of events appended by this user",
            ),
        }
    }

    /// Takes one session creation from `user`'s budget.
    pub fn create_session(&self, user: &UserId) -> Result<(), Limited> {
        self.sessions_created.check(user)
    }

    /// Takes `events` events and `bytes` bytes from `user`'s ingest budget.
    pub fn append(&self, user: &UserId, events: usize, bytes: usize) -> Result<(), Limited> {
        let count = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
        self.events_appended.check_n(user, count(events))?;
        self.bytes_appended.check_n(user, count(bytes))
    }
}
