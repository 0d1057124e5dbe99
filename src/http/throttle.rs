//! Log lines that a flood must not turn into a flood of log lines.
//!
//! A [`LogThrottle`] lets one line through per period and counts the ones it
//! held back, so that the next line it lets through can say how many
//! occurrences it stands for. Lock-free: callers race on one atomic.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How often each kind of refusal may be logged.
pub const REFUSAL_LOG_PERIOD: Duration = Duration::from_secs(10);

pub struct LogThrottle {
    period_ms: u64,
    /// When a line was last let through, in ms since [`epoch`], plus 1
    /// (0: never).
    last_ms: AtomicU64,
    /// Occurrences held back since the last line.
    held_back: AtomicU64,
}

impl LogThrottle {
    pub const fn new(period: Duration) -> Self {
        Self {
            period_ms: period.as_millis() as u64,
            last_ms: AtomicU64::new(0),
            held_back: AtomicU64::new(0),
        }
    }

    /// Records one occurrence: `Some(n)` when it should be logged, `n` being
    /// the occurrences held back since the last line; `None` otherwise.
    pub fn admit(&self) -> Option<u64> {
        let now = epoch().elapsed().as_millis() as u64 + 1;
        let last = self.last_ms.load(Ordering::Relaxed);
        let due = last == 0 || now.saturating_sub(last) >= self.period_ms;
        if due
            && self
                .last_ms
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            return Some(self.held_back.swap(0, Ordering::Relaxed));
        }
        self.held_back.fetch_add(1, Ordering::Relaxed);
        None
    }
}

fn epoch() -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    *EPOCH.get_or_init(Instant::now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_line_per_period_then_the_count_of_those_held_back() {
        let throttle = LogThrottle::new(Duration::from_secs(3600));
        assert_eq!(throttle.admit(), Some(0));
        for _ in 0..1000 {
            assert_eq!(throttle.admit(), None);
        }
        let throttle = LogThrottle::new(Duration::ZERO);
        assert_eq!(throttle.admit(), Some(0));
        assert_eq!(throttle.admit(), Some(0));
    }
}
