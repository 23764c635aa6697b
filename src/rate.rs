//! A per-connection command rate: N lines a second with a burst of B.
//!
//! The limit is the generic cell rate algorithm: each line moves a
//! theoretical arrival time one interval (1/N s) on, and a line is taken
//! only while that time is less than B - 1 intervals ahead of now. It
//! costs one `Instant` per connection and no timer while a client stays
//! within its rate. The server enforces it by not reading a client that is
//! ahead (TCP back-pressure slows the client down); lines are never
//! dropped and nobody is cut off for it.

use std::time::{Duration, Instant};

/// A rate of lines with a burst.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    interval: Duration,
    tolerance: Duration,
}

impl Rate {
    /// `per_second` lines a second, `burst` of them at once (both ≥ 1).
    pub fn new(per_second: u32, burst: u32) -> Rate {
        let interval = Duration::from_secs(1) / per_second.max(1);
        Rate {
            interval,
            tolerance: interval * (burst.max(1) - 1),
        }
    }
}

/// One connection's place against a [`Rate`].
#[derive(Debug, Clone, Copy, Default)]
pub struct Pace {
    /// When the next line would be on time; `None` until the first line.
    due: Option<Instant>,
}

impl Pace {
    /// Whether the rate allows one more line at `now`; if not, when it
    /// will.
    pub fn ready(&self, rate: Rate, now: Instant) -> Result<(), Instant> {
        let due = self.due.map_or(now, |due| due.max(now));
        match due.checked_sub(rate.tolerance) {
            Some(allowed_from) if allowed_from > now => Err(allowed_from),
            _ => Ok(()),
        }
    }

    /// Counts one line at `now`.
    pub fn count(&mut self, rate: Rate, now: Instant) {
        let due = self.due.map_or(now, |due| due.max(now));
        self.due = Some(due + rate.interval);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn take(pace: &mut Pace, rate: Rate, now: Instant) -> Result<(), Instant> {
        pace.ready(rate, now)?;
        pace.count(rate, now);
        Ok(())
    }

    #[test]
    fn a_burst_then_one_line_per_interval() {
        let rate = Rate::new(20, 40);
        let t0 = Instant::now();
        let mut pace = Pace::default();
        for i in 0..40 {
            assert_eq!(take(&mut pace, rate, t0), Ok(()), "line {i} of the burst");
        }
        let next = take(&mut pace, rate, t0).expect_err("past the burst");
        assert_eq!(next, t0 + Duration::from_millis(50));
        assert_eq!(take(&mut pace, rate, next), Ok(()));
        assert!(take(&mut pace, rate, next).is_err());
        // Idle time earns back the burst, not more.
        let later = next + Duration::from_secs(60);
        for _ in 0..40 {
            assert_eq!(take(&mut pace, rate, later), Ok(()));
        }
        assert!(take(&mut pace, rate, later).is_err());
    }

    #[test]
    fn over_a_long_run_the_rate_holds() {
        let rate = Rate::new(20, 40);
        let t0 = Instant::now();
        let mut pace = Pace::default();
        let mut now = t0;
        let mut taken = 0u32;
        while now < t0 + Duration::from_secs(10) {
            match take(&mut pace, rate, now) {
                Ok(()) => taken += 1,
                Err(at) => now = at,
            }
        }
        // 40 at once, then 20 a second for 10 s.
        assert!((239..=241).contains(&taken), "{taken}");
    }
}
