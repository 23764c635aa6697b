//! Failed passwords counted per address, so that one client cannot ban
//! every account by guessing: past `--max-failures-per-ip` failures within
//! one BLOCK_DURATION window, the address's next password is refused,
//! counts for no username, and closes the connection, until the window
//! ends. Trusted addresses are never counted (see [`crate::trust`]).
//!
//! Every window is as long as every other, so windows end in the order
//! they began: a queue of them is also the order to forget them in, and no
//! timer is needed.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::trust::IpKey;

/// One address's failures in its current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    failures: u32,
    ends: Instant,
}

/// The failure windows of every address that failed recently.
#[derive(Debug, Default)]
pub struct FailureWindows {
    windows: HashMap<IpKey, Window>,
    /// The windows by when they end, oldest first.
    ending: VecDeque<(Instant, IpKey)>,
}

impl FailureWindows {
    /// The windows `windows` (address, failures, end), `ending` the order
    /// to forget them in (see [`FailureWindows::ending`]).
    pub(super) fn restored(
        windows: Vec<(IpKey, u32, Instant)>,
        ending: Vec<(Instant, IpKey)>,
    ) -> FailureWindows {
        let windows = windows
            .into_iter()
            .map(|(key, failures, ends)| (key, Window { failures, ends }))
            .collect();
        FailureWindows {
            windows,
            ending: ending.into(),
        }
    }

    /// Every address's window: its failures and when it ends, by address.
    pub(super) fn windows(&self) -> Vec<(IpKey, u32, Instant)> {
        let mut windows: Vec<_> = self
            .windows
            .iter()
            .map(|(&key, window)| (key, window.failures, window.ends))
            .collect();
        windows.sort_unstable_by_key(|&(key, _, _)| key);
        windows
    }

    /// The windows by when they end, oldest first: the order they are
    /// forgotten in.
    pub(super) fn ending(&self) -> impl Iterator<Item = (Instant, IpKey)> + '_ {
        self.ending.iter().copied()
    }

    /// Whether `key` has used up its `max` failures in a window still
    /// running at `now`.
    pub fn over_limit(&mut self, key: IpKey, max: u32, now: Instant) -> bool {
        self.forget_ended(now);
        self.windows.get(&key).is_some_and(|w| w.failures >= max)
    }

    /// Counts a failed password from `key`, opening a window of `length`
    /// if it has none.
    pub fn note_failure(&mut self, key: IpKey, length: Duration, now: Instant) {
        self.forget_ended(now);
        if let Some(window) = self.windows.get_mut(&key) {
            window.failures = window.failures.saturating_add(1);
            return;
        }
        let ends = now + length;
        self.windows.insert(key, Window { failures: 1, ends });
        self.ending.push_back((ends, key));
    }

    /// Forgets the windows that have ended at `now`.
    fn forget_ended(&mut self, now: Instant) {
        while let Some(&(ends, key)) = self.ending.front().filter(|(ends, _)| *ends <= now) {
            self.ending.pop_front();
            if self.windows.get(&key).is_some_and(|w| w.ends == ends) {
                self.windows.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_window_counts_failures_until_it_ends() {
        let key = IpKey::of("10.0.0.1".parse().expect("ip"));
        let other = IpKey::of("10.0.0.2".parse().expect("ip"));
        let t0 = Instant::now();
        let window = Duration::from_secs(10);
        let mut w = FailureWindows::default();
        w.note_failure(key, window, t0);
        assert!(!w.over_limit(key, 2, t0));
        w.note_failure(key, window, t0 + Duration::from_secs(1));
        assert!(w.over_limit(key, 2, t0 + Duration::from_secs(9)));
        assert!(!w.over_limit(other, 2, t0));
        assert_eq!(w.windows.len(), 1, "not ended yet");
        assert!(!w.over_limit(key, 2, t0 + window), "ended");
        assert!(w.windows.is_empty() && w.ending.is_empty(), "forgotten");
        // A new window for the same address starts with its next failure.
        w.note_failure(key, window, t0 + window);
        assert!(!w.over_limit(key, 2, t0 + window));
    }
}
