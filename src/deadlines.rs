//! A min-heap of timers with lazy cancellation.
//!
//! Cancelling or moving a timer in a binary heap is expensive, so nobody
//! does: an entry carries what it was armed for, and whoever pops it checks
//! that against the current state, then drops it or arms it again. An idle
//! timeout therefore costs one heap entry per connection, not one per
//! command received.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::Instant;

/// Timers of type `K`, ordered by when they are due.
#[derive(Debug)]
pub struct Deadlines<K: Ord> {
    heap: BinaryHeap<Reverse<(Instant, K)>>,
}

impl<K: Ord> Default for Deadlines<K> {
    fn default() -> Self {
        Deadlines {
            heap: BinaryHeap::new(),
        }
    }
}

impl<K: Ord> Deadlines<K> {
    /// Arms `key` to fire at `at`.
    pub fn arm(&mut self, at: Instant, key: K) {
        self.heap.push(Reverse((at, key)));
    }

    /// When the earliest timer is due, if any; the poll loop sleeps until
    /// then.
    pub fn next(&self) -> Option<Instant> {
        self.heap.peek().map(|Reverse((at, _))| *at)
    }

    /// Removes and returns the earliest timer if it is due at `now`.
    pub fn pop_due(&mut self, now: Instant) -> Option<(Instant, K)> {
        if self.next()? <= now {
            self.heap.pop().map(|Reverse(entry)| entry)
        } else {
            None
        }
    }

    /// How many timers are armed, stale ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    /// Whether no timer is armed.
    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Every timer armed, stale ones included, in no particular order: a
    /// heap is rebuilt from them by arming each (entries that compare
    /// equal are interchangeable, so the order they are armed in changes
    /// nothing that pops).
    pub fn entries(&self) -> impl Iterator<Item = (Instant, &K)> + '_ {
        self.heap.iter().map(|Reverse((at, key))| (*at, key))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn pops_in_time_order_only_when_due() {
        let t0 = Instant::now();
        let s = Duration::from_secs(1);
        let mut d = Deadlines::default();
        d.arm(t0 + 3 * s, "c");
        d.arm(t0 + s, "a");
        d.arm(t0 + 2 * s, "b");
        assert_eq!(d.next(), Some(t0 + s));
        assert_eq!(d.pop_due(t0), None);
        assert_eq!(d.pop_due(t0 + 2 * s), Some((t0 + s, "a")));
        assert_eq!(d.pop_due(t0 + 2 * s), Some((t0 + 2 * s, "b")));
        assert_eq!(d.pop_due(t0 + 2 * s), None);
        assert_eq!(d.len(), 1);
        assert_eq!(d.pop_due(t0 + 3 * s), Some((t0 + 3 * s, "c")));
        assert!(d.is_empty());
        assert_eq!(d.next(), None);
    }
}
