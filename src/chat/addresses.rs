//! Failed passwords counted per address, so that one client cannot ban
//! every account by guessing: past `--max-failures-per-ip` failures within
//! one BLOCK_DURATION window, the address's next password is refused,
//! counts for no username, and closes the connection, until the window
//! ends. Trusted addresses are never counted (see [`crate::trust`]).

use std::collections::HashMap;
use std::time::{Duration, Instant};

use crate::trust::IpKey;

/// One address's failures in its current window.
#[derive(Debug, Clone, Copy)]
struct Window {
    failures: u32,
    ends: Instant,
}

/// The failure windows of every address that failed recently; an entry
/// goes when its window ends, so the map holds only recent offenders.
#[derive(Debug, Default)]
pub struct FailureWindows {
    windows: HashMap<IpKey, Window>,
}

impl FailureWindows {
    /// Whether `key` has used up its `max` failures in a window still
    /// running at `now`.
    pub fn over_limit(&self, key: IpKey, max: u32, now: Instant) -> bool {
        self.windows
            .get(&key)
            .is_some_and(|w| w.ends > now && w.failures >= max)
    }

    /// Counts a failed password from `key`. Returns when a new window
    /// ends, for the caller to arm a timer that forgets it.
    pub fn note_failure(&mut self, key: IpKey, length: Duration, now: Instant) -> Option<Instant> {
        match self.windows.get_mut(&key) {
            Some(window) if window.ends > now => {
                window.failures = window.failures.saturating_add(1);
                None
            }
            _ => {
                let ends = now + length;
                self.windows.insert(key, Window { failures: 1, ends });
                Some(ends)
            }
        }
    }

    /// Forgets `key`'s window if it has ended at `now`.
    pub fn expire(&mut self, key: IpKey, now: Instant) {
        if self.windows.get(&key).is_some_and(|w| w.ends <= now) {
            self.windows.remove(&key);
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
        assert_eq!(w.note_failure(key, window, t0), Some(t0 + window));
        assert!(!w.over_limit(key, 2, t0));
        assert_eq!(
            w.note_failure(key, window, t0 + Duration::from_secs(1)),
            None
        );
        assert!(w.over_limit(key, 2, t0 + Duration::from_secs(9)));
        assert!(!w.over_limit(other, 2, t0));
        assert!(!w.over_limit(key, 2, t0 + window), "ended");
        w.expire(key, t0 + Duration::from_secs(5));
        assert_eq!(w.windows.len(), 1, "not ended yet");
        w.expire(key, t0 + window);
        assert!(w.windows.is_empty());
    }
}
