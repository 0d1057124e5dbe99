//! Rate limits keyed by who asks (a user, a client address): token buckets
//! from [`governor`], refused with `rate_limited` and a retry hint.

use std::hash::Hash;
use std::num::NonZeroU32;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, NotUntil};

use crate::config::Rate;

/// How often idle keys (whose buckets are full again) are forgotten.
const FORGET_EVERY: Duration = Duration::from_secs(60);

/// A request refused by a rate.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Limited {
    /// Too many too fast: the request would pass after `retry_after`.
    #[error("{message}")]
    TooFast {
        message: String,
        retry_after: Duration,
    },
    /// More at once than the bucket ever holds: it would never pass.
    #[error("{0}")]
    OverBurst(String),
}

/// A token bucket per key; with no rate, everything passes.
pub struct KeyedLimiter<K: Hash + Eq + Clone> {
    limiter: Option<(Rate, DefaultKeyedRateLimiter<K>)>,
    /// What is counted, for the refusal: `sessions created by this user`.
    what: &'static str,
    /// When keys were last forgotten, in ms of the limiter's clock.
    last_forget_ms: AtomicU64,
}

impl<K: Hash + Eq + Clone> KeyedLimiter<K> {
    pub fn new(rate: Option<Rate>, what: &'static str) -> Self {
        Self {
            limiter: rate.map(|rate| (rate, DefaultKeyedRateLimiter::keyed(rate.quota()))),
            what,
            last_forget_ms: AtomicU64::new(0),
        }
    }

    /// Takes one token of `key`'s bucket.
    pub fn check(&self, key: &K) -> Result<(), Limited> {
        self.check_n(key, 1)
    }

    /// Takes `n` tokens of `key`'s bucket, or none.
    pub fn check_n(&self, key: &K, n: u32) -> Result<(), Limited> {
        let Some((rate, limiter)) = &self.limiter else {
            return Ok(());
        };
        self.forget_idle(limiter);
        let Some(n) = NonZeroU32::new(n) else {
            return Ok(());
        };
        match limiter.check_key_n(key, n) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => Err(refusal(self.what, rate, wait(&not_until))),
            // More than the bucket ever holds: it would never pass.
            Err(_) => Err(Limited::OverBurst(format!(
                "{n} {} in one request is more than the {rate} allowed",
                self.what
            ))),
        }
    }

    fn forget_idle(&self, limiter: &DefaultKeyedRateLimiter<K>) {
        static START: OnceLock<Instant> = OnceLock::new();
        let now_ms = START.get_or_init(Instant::now).elapsed().as_millis() as u64;
        let last = self.last_forget_ms.load(Ordering::Relaxed);
        if now_ms.saturating_sub(last) >= FORGET_EVERY.as_millis() as u64
            && self
                .last_forget_ms
                .compare_exchange(last, now_ms, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            limiter.retain_recent();
            limiter.shrink_to_fit();
        }
    }
}

fn wait(not_until: &NotUntil<<DefaultClock as Clock>::Instant>) -> Duration {
    not_until.wait_time_from(DefaultClock::default().now())
}

/// `rate_limited`: too many `what`, at most `rate`, retry after `wait`.
pub fn refusal(what: &str, rate: &Rate, wait: Duration) -> Limited {
    Limited::TooFast {
        message: format!(
            "too many {what}: at most {rate}; retry in {} ms",
            wait.as_millis().max(1)
        ),
        retry_after: wait,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_a_retry_hint() {
        let limiter = KeyedLimiter::new(Some(Rate::per_minute(3)), "sessions created");
        for _ in 0..3 {
            limiter.check(&"alice").unwrap();
        }
        let err = limiter.check(&"alice").unwrap_err();
        let Limited::TooFast {
            message,
            retry_after,
        } = &err
        else {
            panic!("{err:?}");
        };
        assert!(message.contains("sessions created") && message.contains("3/min"));
        let wait = *retry_after;
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_secs(20),
            "{wait:?}"
        );
        // Another key has its own bucket.
        limiter.check(&"bob").unwrap();
    }

    #[test]
    fn no_rate_lets_everything_through() {
        let limiter = KeyedLimiter::new(None, "anything");
        for _ in 0..10_000 {
            limiter.check_n(&1u8, 1_000).unwrap();
        }
    }

    #[test]
    fn more_than_a_bucket_holds_is_too_large() {
        let limiter = KeyedLimiter::new(Some(Rate::per_second(10)), "events");
        let err = limiter.check_n(&1u8, 11).unwrap_err();
        assert!(matches!(err, Limited::OverBurst(_)), "{err:?}");
    }
}
