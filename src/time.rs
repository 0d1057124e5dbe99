//! Timestamps as stored and sent: UTC, millisecond precision, so a value
//! read back from either database formats exactly as it was sent live.

use chrono::{DateTime, SubsecRound, Utc};

pub fn now() -> DateTime<Utc> {
    Utc::now().trunc_subsecs(3)
}

/// `2026-11-21T12:00:00.123Z`
pub fn format(ts: &DateTime<Utc>) -> String {
    ts.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}
