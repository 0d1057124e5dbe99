//! The in-memory tail of a session's log: its last published events, so
//! that catching up a few events does not touch the database.
//!
//! Bounded three ways: at most `tail_len` events and `tail_bytes` bytes per
//! session, and `tail_bytes_total` bytes across every active session
//! (shared counter). Past a bound the oldest events go first; an event
//! larger than the bounds is not kept at all. The tail is only a cache:
//! what it lacks, catch-up reads from the database. Invariant: its events
//! are contiguous and end at the session's head (or it is empty).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use super::{Committed, Settings};
use crate::ids::Seq;

pub(super) struct Tail {
    events: VecDeque<Arc<Committed>>,
    /// Bytes of `events`' envelopes.
    bytes: usize,
    /// Bytes of every session's tail.
    total: Arc<AtomicUsize>,
    max_len: usize,
    max_bytes: usize,
    max_total: usize,
}

impl Tail {
    pub(super) fn new(settings: &Settings, total: Arc<AtomicUsize>) -> Self {
        Self {
            events: VecDeque::new(),
            bytes: 0,
            total,
            max_len: settings.tail_len,
            max_bytes: settings.tail_bytes,
            max_total: settings.tail_bytes_total,
        }
    }

    /// Appends the events that follow the tail's last one, then drops the
    /// oldest until every bound holds.
    pub(super) fn extend(&mut self, events: &[Arc<Committed>]) {
        let added: usize = events.iter().map(|e| e.size()).sum();
        self.events.extend(events.iter().cloned());
        self.bytes += added;
        let mut total = self.total.fetch_add(added, Ordering::Relaxed) + added;
        let mut freed = 0;
        while self.events.len() > self.max_len
            || self.bytes > self.max_bytes
            || total > self.max_total
        {
            let Some(oldest) = self.events.pop_front() else {
                break;
            };
            self.bytes -= oldest.size();
            total -= oldest.size();
            freed += oldest.size();
        }
        self.total.fetch_sub(freed, Ordering::Relaxed);
    }

    pub(super) fn clear(&mut self) {
        self.events.clear();
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
        self.bytes = 0;
    }

    /// Up to `max_len` events after `cursor`, at most `max_bytes` of them
    /// (but at least one), when the tail still has the one right after it.
    pub(super) fn after(
        &self,
        cursor: Seq,
        max_len: usize,
        max_bytes: usize,
    ) -> Option<Vec<Arc<Committed>>> {
        let oldest = self.events.front()?.seq;
        if oldest > cursor.next() {
            return None;
        }
        let skip = usize::try_from(cursor.next().get() - oldest.get()).ok()?;
        let mut bytes = 0;
        let page = self
            .events
            .iter()
            .skip(skip)
            .take(max_len)
            .take_while(|e| {
                bytes += e.size();
                bytes <= max_bytes || bytes == e.size()
            })
            .cloned()
            .collect();
        Some(page)
    }
}

impl Drop for Tail {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: i64, bytes: usize) -> Arc<Committed> {
        let data = serde_json::value::to_raw_value(&"x".repeat(bytes)).unwrap();
        Committed::new("s", Seq::new(seq), "x.t", None, "t", &data)
    }

    fn settings(tail_len: usize, tail_bytes: usize, tail_bytes_total: usize) -> Settings {
        Settings {
            tail_len,
            tail_bytes,
            tail_bytes_total,
            ..Settings::default()
        }
    }

    fn seqs(page: &[Arc<Committed>]) -> Vec<i64> {
        page.iter().map(|e| e.seq.get()).collect()
    }

    #[test]
    fn the_oldest_events_go_first_past_the_count_or_the_bytes() {
        let total = Arc::new(AtomicUsize::new(0));
        let size = event(1, 100).size();
        let mut tail = Tail::new(&settings(3, 10 * size, usize::MAX), total.clone());
        tail.extend(&(1..=5).map(|s| event(s, 100)).collect::<Vec<_>>());
        assert_eq!(
            seqs(&tail.after(Seq::new(2), 10, usize::MAX).unwrap()),
            [3, 4, 5]
        );
        assert!(
            tail.after(Seq::new(1), 10, usize::MAX).is_none(),
            "seq 2 is gone"
        );

        let mut tail = Tail::new(&settings(100, 2 * size, usize::MAX), total.clone());
        tail.extend(&(1..=5).map(|s| event(s, 100)).collect::<Vec<_>>());
        assert_eq!(
            seqs(&tail.after(Seq::new(3), 10, usize::MAX).unwrap()),
            [4, 5]
        );
        assert_eq!(total.load(Ordering::Relaxed), 5 * size);
    }

    #[test]
    fn an_event_larger_than_the_bound_is_not_kept() {
        let total = Arc::new(AtomicUsize::new(0));
        let mut tail = Tail::new(&settings(100, 1000, usize::MAX), total.clone());
        tail.extend(&[event(1, 10)]);
        tail.extend(&[event(2, 5000)]);
        assert!(tail.after(Seq::new(1), 10, usize::MAX).is_none());
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn every_tail_counts_toward_the_total_until_it_is_dropped() {
        let total = Arc::new(AtomicUsize::new(0));
        let size = event(1, 100).size();
        let s = settings(100, usize::MAX, 3 * size);
        let mut first = Tail::new(&s, total.clone());
        first.extend(&[event(1, 100), event(2, 100)]);
        let mut second = Tail::new(&s, total.clone());
        second.extend(&[event(1, 100), event(2, 100)]);
        assert!(
            second.after(Seq::new(0), 10, usize::MAX).is_none(),
            "seq 1 made room"
        );
        assert_eq!(
            seqs(&second.after(Seq::new(1), 10, usize::MAX).unwrap()),
            [2]
        );
        assert_eq!(total.load(Ordering::Relaxed), 3 * size);
        drop(first);
        assert_eq!(total.load(Ordering::Relaxed), size);
        second.clear();
        assert_eq!(total.load(Ordering::Relaxed), 0);
    }

    #[test]
    fn a_page_from_the_tail_stops_at_the_bytes_but_holds_at_least_one() {
        let total = Arc::new(AtomicUsize::new(0));
        let mut tail = Tail::new(&settings(100, usize::MAX, usize::MAX), total);
        tail.extend(&(1..=6).map(|s| event(s, 100)).collect::<Vec<_>>());
        let size = event(1, 100).size();
        assert_eq!(
            seqs(&tail.after(Seq::new(1), 10, 2 * size + 1).unwrap()),
            [2, 3]
        );
        assert_eq!(seqs(&tail.after(Seq::new(1), 10, 1).unwrap()), [2]);
        assert_eq!(
            seqs(&tail.after(Seq::new(1), 2, usize::MAX).unwrap()),
            [2, 3]
        );
        assert!(tail.after(Seq::new(6), 10, usize::MAX).unwrap().is_empty());
    }
}
