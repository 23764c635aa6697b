//! The wall clock paired with the monotonic clock, for bans and for the
//! time offline mail was stored at.
//!
//! Bans are timed with `Instant`s inside the domain, which cannot be
//! written to disk; on disk they end at a wall-clock time, so that a ban
//! still ends at its real time after a restart. A [`WallClock`] reading
//! converts between the two at the edges: when a ban is recorded, replayed
//! or put in a snapshot, and when a message is stored (its time is shown
//! to `!stamps` sessions and kept on disk with it).

use std::time::{Duration, Instant, SystemTime};

/// A reading of the wall clock paired with the [`Instant`] it was taken
/// at, to convert one to the other (see the module documentation).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// The monotonic reading.
    pub at: Instant,
    /// The wall clock at `at`, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl WallClock {
    /// Pairs `at` with `wall`, the wall clock read at the same moment (a
    /// time before the epoch counts as the epoch).
    pub fn new(at: Instant, wall: SystemTime) -> WallClock {
        let since_epoch = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        WallClock {
            at,
            unix_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The wall-clock time of `t`, in milliseconds since the epoch.
    pub fn unix_ms(&self, t: Instant) -> u64 {
        if t >= self.at {
            let ahead = u64::try_from((t - self.at).as_millis()).unwrap_or(u64::MAX);
            self.unix_ms.saturating_add(ahead)
        } else {
            let behind = u64::try_from((self.at - t).as_millis()).unwrap_or(u64::MAX);
            self.unix_ms.saturating_sub(behind)
        }
    }

    /// The `Instant` of a wall-clock time, or `None` if it is not later
    /// than this reading.
    pub fn instant(&self, unix_ms: u64) -> Option<Instant> {
        let ahead = unix_ms.checked_sub(self.unix_ms).filter(|&ms| ms > 0)?;
        self.at.checked_add(Duration::from_millis(ahead))
    }
}
