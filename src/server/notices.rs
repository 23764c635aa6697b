//! Presence lines held for a moment (`--presence-delay`), so that the
//! lines of a login storm reach each user in one `write` per delay rather
//! than one per login.
//!
//! Only [`Effect::Notice`](crate::chat::Effect::Notice) output is held:
//! nobody waits for it. A notice's text is copied here once, whatever the
//! number of recipients, and each recipient has one range of it; the
//! notices of consecutive events to one user are adjacent, so the range
//! grows instead of being copied. Anything else sent to a user first lets
//! that user's held notices go ahead of it, so every user's output stays in
//! the order the domain made it; a connection that goes away forgets its
//! notices, so none reaches a later connection with its key.
//!
//! Notices wait `--presence-delay`. While the loop has other work, they
//! wait longer when letting the last ones go took long (thousands of users
//! online): four times that, at most a second, so that a storm's writes
//! take a bounded share of the loop. A loop with nothing else to do lets
//! them go as soon as the delay has passed: pacing only ever yields to
//! other work, so the last lines of a storm are not kept waiting for it.

use std::ops::Range;
use std::time::{Duration, Instant};

/// Bytes of notice text held at most: past it, every held notice is let
/// go at the end of the iteration.
pub const NOTICE_LIMIT: usize = 256 * 1024;

/// Held notices wait at least this many times as long as letting the last
/// ones go took, so that writing them costs the loop at most about a
/// fifth of its time however many users are online.
const RELEASE_SHARE: u32 = 4;

/// The longest notices ever wait, whatever the last release took.
const MAX_HOLD: Duration = Duration::from_secs(1);

/// The notices held, by connection key. The default holds for no time at
/// least: [`Notices::new`] sets `--presence-delay`.
#[derive(Debug, Default)]
pub struct Notices {
    /// The text of every held notice, each once.
    text: Vec<u8>,
    /// Per key, the range of `text` held for it (empty if none).
    ranges: Vec<Range<usize>>,
    /// Keys with a held range.
    keys: Vec<usize>,
    /// The outbox range last copied into `text`, and where it went: the
    /// many notices of one event share one text.
    last: Option<(Range<usize>, Range<usize>)>,
    /// When the oldest held notice was held.
    since: Option<Instant>,
    /// How long notices wait at least (`--presence-delay`).
    delay: Duration,
    /// How long letting the last notices go took.
    last_release: Duration,
}

impl Notices {
    /// Nothing held yet; notices will wait `delay` at least.
    pub fn new(delay: Duration) -> Notices {
        Notices {
            delay,
            ..Notices::default()
        }
    }

    /// Whether notices are held for `key`.
    #[inline]
    pub fn holds(&self, key: usize) -> bool {
        self.ranges.get(key).is_some_and(|r| r.start != r.end)
    }

    /// When the held notices may go out (the loop wakes then), if any are
    /// held: `--presence-delay` after the oldest.
    pub fn due(&self) -> Option<Instant> {
        self.since.map(|since| since + self.delay)
    }

    /// Whether the held notices go out at `now`: when too much is held;
    /// when they are due and the loop is `idle` (its last wait brought no
    /// events); or, however busy the loop, once they have waited
    /// [`RELEASE_SHARE`] times what the last release took (at most
    /// [`MAX_HOLD`]) if that is longer than the delay.
    pub fn should_go(&self, now: Instant, idle: bool) -> bool {
        let Some(since) = self.since else {
            return false;
        };
        if self.is_full() {
            return true;
        }
        let paced = (self.last_release * RELEASE_SHARE).min(MAX_HOLD);
        let waited = now.saturating_duration_since(since);
        waited >= self.delay && (idle || waited >= paced)
    }

    /// Remembers how long letting the held notices go took.
    pub fn released_in(&mut self, took: Duration) {
        self.last_release = took;
    }

    /// Whether the held text has outgrown [`NOTICE_LIMIT`].
    fn is_full(&self) -> bool {
        self.text.len() > NOTICE_LIMIT
    }

    /// Forgets which outbox text was copied last: the outbox starts over.
    pub fn outbox_cleared(&mut self) {
        self.last = None;
    }

    /// Holds for `key` the notice whose text is `bytes` at `source` in the
    /// outbox, made at `now` (the wait starts then if nothing is held yet).
    /// Returns text held for
    /// `key` earlier that the new notice does not continue: the caller
    /// delivers it first (see [`Notices::text`]).
    #[inline]
    pub fn hold(
        &mut self,
        key: usize,
        source: Range<usize>,
        bytes: &[u8],
        now: Instant,
    ) -> Option<Range<usize>> {
        let text = match &self.last {
            Some((copied, at)) if *copied == source => at.clone(),
            _ => {
                let start = self.text.len();
                self.text.extend_from_slice(bytes);
                let at = start..self.text.len();
                self.last = Some((source, at.clone()));
                at
            }
        };
        self.since.get_or_insert(now);
        if key >= self.ranges.len() {
            self.ranges.resize(key + 1, 0..0);
        }
        let held = &mut self.ranges[key];
        if held.start == held.end {
            *held = text;
            self.keys.push(key);
            None
        } else if held.end == text.start {
            held.end = text.end;
            None
        } else {
            Some(std::mem::replace(held, text))
        }
    }

    /// Takes what is held for `key` (empty if nothing): a range of
    /// [`Notices::text`], valid until [`Notices::clear`].
    #[inline]
    pub fn take(&mut self, key: usize) -> Range<usize> {
        self.ranges
            .get_mut(key)
            .map_or(0..0, |held| std::mem::replace(held, 0..0))
    }

    /// The held text of a range [`Notices::take`] or [`Notices::hold`]
    /// returned.
    pub fn text(&self, range: Range<usize>) -> &[u8] {
        &self.text[range]
    }

    /// Takes the list of keys that may hold notices (some may have been
    /// taken since); give it back with [`Notices::clear`].
    pub fn take_keys(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.keys)
    }

    /// Forgets every held notice, keeping the buffers for reuse.
    pub fn clear(&mut self, mut keys: Vec<usize>) {
        for &key in &keys {
            self.take(key);
        }
        keys.clear();
        self.keys = keys;
        self.text.clear();
        self.last = None;
        self.since = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_is_copied_once_and_consecutive_events_join() {
        let now = Instant::now();
        let mut notices = Notices::default();
        for key in [1, 2, 3] {
            assert_eq!(notices.hold(key, 0..12, b"a logged in\n", now), None);
        }
        for key in [1, 2] {
            assert_eq!(notices.hold(key, 12..24, b"b logged in\n", now), None);
        }
        assert_eq!(notices.text(0..24), b"a logged in\nb logged in\n");
        let one = notices.take(1);
        assert_eq!(notices.text(one), b"a logged in\nb logged in\n");
        let three = notices.take(3);
        assert_eq!(notices.text(three), b"a logged in\n");
        assert!(notices.holds(2));
        assert!(!notices.holds(1));
        assert_eq!(notices.due(), Some(now));
        assert!(notices.should_go(now, true), "no delay by default");
    }

    #[test]
    fn a_notice_that_does_not_follow_returns_what_was_held() {
        let now = Instant::now();
        let mut notices = Notices::default();
        notices.hold(1, 0..12, b"a logged in\n", now);
        notices.hold(2, 20..32, b"b logged in\n", now);
        let earlier = notices.hold(1, 40..53, b"c logged out\n", now);
        assert_eq!(
            earlier.map(|r| notices.text(r).to_vec()),
            Some(b"a logged in\n".to_vec())
        );
        let rest = notices.take(1);
        assert_eq!(notices.text(rest), b"c logged out\n");
    }

    #[test]
    fn notices_wait_the_delay_and_a_busy_loop_paces_them() {
        let now = Instant::now();
        let ms = Duration::from_millis;
        let mut notices = Notices::new(ms(10));
        assert!(!notices.should_go(now, true), "nothing held");
        notices.hold(1, 0..12, b"a logged in\n", now);
        assert_eq!(notices.due(), Some(now + ms(10)));
        assert!(!notices.should_go(now + ms(9), true));
        assert!(notices.should_go(now + ms(10), true));
        assert!(notices.should_go(now + ms(10), false), "fast releases");
        // A release that took 15 ms: a busy loop waits 60 ms, an idle one
        // only the delay.
        notices.released_in(ms(15));
        assert!(!notices.should_go(now + ms(59), false));
        assert!(notices.should_go(now + ms(60), false));
        assert!(notices.should_go(now + ms(10), true));
        assert_eq!(notices.due(), Some(now + ms(10)));
        notices.released_in(Duration::from_secs(2));
        assert!(!notices.should_go(now + MAX_HOLD - ms(1), false));
        assert!(notices.should_go(now + MAX_HOLD, false));
    }

    #[test]
    fn too_much_held_goes_at_once() {
        let now = Instant::now();
        let mut notices = Notices::new(Duration::from_secs(1));
        let line = [b'x'; 1024];
        for event in 0..=NOTICE_LIMIT / line.len() {
            assert!(!notices.should_go(now, false));
            let at = event * line.len();
            notices.hold(1, at..at + line.len(), &line, now);
        }
        assert!(notices.should_go(now, false));
    }

    #[test]
    fn clearing_forgets_every_key_and_the_copy() {
        let now = Instant::now();
        let mut notices = Notices::default();
        notices.hold(4, 0..12, b"a logged in\n", now);
        let keys = notices.take_keys();
        notices.clear(keys);
        assert!(!notices.holds(4));
        assert_eq!(notices.due(), None);
        // The same outbox range later is new text.
        notices.hold(4, 0..12, b"z logged in\n", now);
        let held = notices.take(4);
        assert_eq!(notices.text(held), b"z logged in\n");
    }
}
