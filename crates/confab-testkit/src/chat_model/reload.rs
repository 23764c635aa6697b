//! The domain replaced by a copy loaded from its saved state, as a node of
//! a cluster that joins the others: another process, whose clock pairs
//! other instants with the same wall times, loads the state and goes on.
//! The harness then calls the copy with its own instants (the run's start
//! moved to that process's instant of the same wall time), and the
//! checker judges the copy as it judged the original.

use confab::chat::WallClock;

use super::*;

/// The wall time of the run's start, in milliseconds since the epoch.
const START_UNIX_MS: u64 = 1_700_000_000_000;

/// How far, at most, the loading process's instant of the run's start is
/// from the saving one's: about 18 minutes, either way.
const MAX_SHIFT_NANOS: u64 = 1 << 40;

impl Harness {
    /// After a step, replaces the domain by a loaded copy if the reload
    /// seed says so (three steps in a hundred).
    pub(super) fn maybe_reload(&mut self) {
        let Some(rng) = self.reloads.as_mut() else {
            return;
        };
        if self.done || !rng.chance(3) {
            return;
        }
        let shift = Duration::from_nanos(rng.next_u64() % MAX_SHIFT_NANOS);
        let later = rng.chance(50);
        let t0 = match later {
            true => self.t0.checked_add(shift),
            false => self.t0.checked_sub(shift),
        };
        self.reload(t0.unwrap_or(self.t0));
    }

    /// Saves the domain, loads it as a process whose instant of the run's
    /// start is `t0` would, checks that the copy says what the original
    /// says and saves the same bytes, and goes on with the copy.
    fn reload(&mut self, t0: Instant) {
        let mut saved = Vec::new();
        let saver = WallClock {
            at: self.t0,
            unix_ms: START_UNIX_MS,
        };
        self.chat.save_state(saver, &mut saved);
        let loader = WallClock {
            at: t0,
            unix_ms: START_UNIX_MS,
        };
        let mut copy = match Chat::load_state(accounts(), config(), &saved, loader) {
            Ok(copy) => copy,
            Err(error) => self.fail(format!("the saved state does not load: {error}")),
        };
        copy.set_token_source(counted_token);
        let mut again = Vec::new();
        copy.save_state(loader, &mut again);
        if again != saved {
            self.fail("the loaded state saves other bytes".into());
        }
        let since = |start: Instant, t: Option<Instant>| t.map(|t| t.duration_since(start));
        let (before, after) = (
            since(self.t0, self.chat.next_deadline()),
            since(t0, copy.next_deadline()),
        );
        if before != after {
            self.fail(format!(
                "the next deadline is {before:?} after the start, loaded {after:?}"
            ));
        }
        self.chat = copy;
        self.t0 = t0;
        self.stats.reloads += 1;
        self.check_state();
    }
}
