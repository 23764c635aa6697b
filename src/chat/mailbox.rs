//! One user's offline mailbox: the messages queued while they were away,
//! oldest first, each with its sequence number and the wall-clock time it
//! was stored at, and what stored mail costs against `--store-max`.
//!
//! A message leaves the mailbox only once the server has written it to the
//! recipient's socket ([`Mailbox::take_oldest`]), so a recipient who
//! disconnects halfway through a long backlog finds the rest at the next
//! login. Sequence numbers make the journal's mail records idempotent: an
//! append already reflected is ignored on replay, a take removes what is
//! up to its number whatever the mailbox held before.

use std::collections::VecDeque;

/// What one stored message costs besides its text: its place in the
/// mailbox and the allocator's rounding, so that the bound on stored mail
/// is a bound on the memory it takes, whatever the messages' sizes.
pub const MESSAGE_OVERHEAD: u64 = 32;

/// The cost of a stored message whose line (`<sender>: <text>`) is `len`
/// bytes. Its time is part of [`MESSAGE_OVERHEAD`], known or not.
pub fn cost(len: usize) -> u64 {
    len as u64 + MESSAGE_OVERHEAD
}

#[derive(Debug)]
struct Mail {
    seq: u64,
    /// When it was stored, in milliseconds since the Unix epoch, or
    /// [`UNKNOWN`]: a `u64` rather than an `Option` keeps a message in
    /// 32 bytes, within [`MESSAGE_OVERHEAD`].
    stored_ms: u64,
    /// `<sender>: <text>`, as delivered.
    line: Box<str>,
}

/// [`Mail::stored_ms`] of a message whose time is not known (stored by an
/// earlier version); no wall clock reads it.
const UNKNOWN: u64 = u64::MAX;

impl Mail {
    fn new(seq: u64, stored_ms: Option<u64>, line: Box<str>) -> Mail {
        Mail {
            seq,
            stored_ms: stored_ms.filter(|&ms| ms != UNKNOWN).unwrap_or(UNKNOWN),
            line,
        }
    }

    fn stored_ms(&self) -> Option<u64> {
        (self.stored_ms != UNKNOWN).then_some(self.stored_ms)
    }
}

/// One queued message as [`Mailbox::entries_from`] and
/// [`Mailbox::first_from`] show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry<'m> {
    /// Its sequence number.
    pub seq: u64,
    /// When it was stored, in milliseconds since the Unix epoch, if known.
    pub stored_ms: Option<u64>,
    /// `<sender>: <text>`.
    pub line: &'m str,
}

impl<'m> From<&'m Mail> for Entry<'m> {
    fn from(mail: &'m Mail) -> Entry<'m> {
        Entry {
            seq: mail.seq,
            stored_ms: mail.stored_ms(),
            line: &mail.line,
        }
    }
}

/// The messages queued for one user.
#[derive(Debug, Default)]
pub struct Mailbox {
    mail: VecDeque<Mail>,
    /// Greater than every sequence number this mailbox has seen.
    next_seq: u64,
}

impl Mailbox {
    /// A mailbox holding `mail` (sequence number, time stored, line),
    /// oldest first, its next number `next_seq`; `None` unless the numbers
    /// rise and are all below `next_seq`.
    pub fn restored(next_seq: u64, mail: Vec<(u64, Option<u64>, Box<str>)>) -> Option<Mailbox> {
        let mut mailbox = Mailbox {
            mail: VecDeque::with_capacity(mail.len()),
            next_seq: 0,
        };
        for (seq, stored_ms, line) in mail {
            if seq < mailbox.next_seq {
                return None;
            }
            mailbox.next_seq = seq.checked_add(1)?;
            mailbox.mail.push_back(Mail::new(seq, stored_ms, line));
        }
        if next_seq < mailbox.next_seq {
            return None;
        }
        mailbox.next_seq = next_seq;
        Some(mailbox)
    }

    /// The number the next message pushed will get.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// Messages queued.
    pub fn len(&self) -> usize {
        self.mail.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.mail.is_empty()
    }

    /// Queues a new message stored at `stored_ms` (milliseconds since the
    /// Unix epoch, `None` if the wall clock is not known); returns its
    /// sequence number.
    pub fn push(&mut self, stored_ms: Option<u64>, line: Box<str>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.mail.push_back(Mail::new(seq, stored_ms, line));
        seq
    }

    /// Replays an append read from disk; a `seq` of `None` (a record of
    /// the first format) takes the next number, a `stored_ms` of `None` (a
    /// record without a time) leaves the time unknown. Returns the cost it
    /// added, or `None` if the mailbox already reflected it.
    pub fn replay_append(
        &mut self,
        seq: Option<u64>,
        stored_ms: Option<u64>,
        line: Box<str>,
    ) -> Option<u64> {
        let seq = seq.unwrap_or(self.next_seq);
        if seq < self.next_seq {
            return None;
        }
        self.next_seq = seq + 1;
        let added = cost(line.len());
        self.mail.push_back(Mail::new(seq, stored_ms, line));
        Some(added)
    }

    /// Removes every message numbered up to `through`; returns the cost
    /// freed.
    pub fn take_through(&mut self, through: u64) -> u64 {
        self.next_seq = self.next_seq.max(through.saturating_add(1));
        let mut freed = 0;
        while let Some(mail) = self.mail.front().filter(|m| m.seq <= through) {
            freed += cost(mail.line.len());
            self.mail.pop_front();
        }
        freed
    }

    /// Removes everything (a record of the earlier format: the whole
    /// mailbox was delivered); returns the cost freed.
    pub fn take_all(&mut self) -> u64 {
        self.take_through(self.next_seq.saturating_sub(1))
    }

    /// Removes the `n` oldest messages; returns the number of the last one
    /// and the cost freed, or `None` if `n` is 0 or the mailbox is empty.
    pub fn take_oldest(&mut self, n: usize) -> Option<(u64, u64)> {
        let last = self
            .mail
            .get(n.checked_sub(1)?.min(self.mail.len().checked_sub(1)?))?;
        let through = last.seq;
        Some((through, self.take_through(through)))
    }

    /// The messages from the `from`th oldest on.
    pub fn entries_from(&self, from: usize) -> impl Iterator<Item = Entry<'_>> + '_ {
        self.mail
            .range(from.min(self.mail.len())..)
            .map(Entry::from)
    }

    /// The oldest message numbered `seq` or later.
    pub fn first_from(&self, seq: u64) -> Option<Entry<'_>> {
        let at = self.mail.partition_point(|m| m.seq < seq);
        self.mail.get(at).map(Entry::from)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(mailbox: &Mailbox) -> Vec<&str> {
        mailbox.entries_from(0).map(|entry| entry.line).collect()
    }

    #[test]
    fn taken_messages_leave_from_the_front() {
        let mut m = Mailbox::default();
        for text in ["a: 1", "a: 2", "b: 3"] {
            m.push(None, text.into());
        }
        assert_eq!(m.take_oldest(2), Some((1, cost(4) * 2)));
        assert_eq!(lines(&m), ["b: 3"]);
        assert_eq!(m.take_oldest(5), Some((2, cost(4))));
        assert!(m.is_empty());
        assert_eq!(m.take_oldest(1), None);
        // Numbers keep growing after the mailbox empties.
        assert_eq!(m.push(None, "c: 4".into()), 3);
    }

    #[test]
    fn replays_are_idempotent() {
        let mut m = Mailbox::default();
        assert_eq!(m.replay_append(Some(5), None, "a: x".into()), Some(cost(4)));
        assert_eq!(m.replay_append(Some(5), None, "a: x".into()), None);
        assert_eq!(m.replay_append(Some(3), None, "a: old".into()), None);
        assert_eq!(m.replay_append(Some(6), None, "a: y".into()), Some(cost(4)));
        assert_eq!(m.take_through(5), cost(4));
        assert_eq!(m.take_through(5), 0);
        assert_eq!(lines(&m), ["a: y"]);
        // A take of what was never seen moves the numbers past it.
        assert_eq!(m.take_through(9), cost(4));
        assert_eq!(m.replay_append(Some(8), None, "a: gone".into()), None);
        assert_eq!(m.push(None, "a: new".into()), 10);
    }

    #[test]
    fn records_of_the_earlier_format_take_the_next_number() {
        let mut m = Mailbox::default();
        m.replay_append(None, None, "a: 1".into());
        m.replay_append(None, None, "a: 2".into());
        let second = Entry {
            seq: 1,
            stored_ms: None,
            line: "a: 2",
        };
        assert_eq!(m.first_from(1), Some(second));
        assert_eq!(m.take_all(), 2 * cost(4));
        assert!(m.is_empty());
        assert_eq!(m.push(None, "a: 3".into()), 2);
    }

    #[test]
    fn entries_from_skips_those_handed_out() {
        let mut m = Mailbox::default();
        for text in ["a: 1", "a: 2", "a: 3"] {
            m.push(None, text.into());
        }
        let rest: Vec<&str> = m.entries_from(1).map(|entry| entry.line).collect();
        assert_eq!(rest, ["a: 2", "a: 3"]);
        assert_eq!(m.entries_from(7).count(), 0);
        assert_eq!(m.first_from(2).map(|entry| entry.line), Some("a: 3"));
        assert_eq!(m.first_from(3), None);
    }

    #[test]
    fn each_message_keeps_its_time_known_or_not() {
        let mut m = Mailbox::default();
        m.push(Some(1_700_000_000_123), "a: 1".into());
        m.replay_append(Some(1), None, "a: 2".into());
        m.replay_append(Some(2), Some(0), "a: 3".into());
        let times: Vec<Option<u64>> = m.entries_from(0).map(|entry| entry.stored_ms).collect();
        assert_eq!(times, [Some(1_700_000_000_123), None, Some(0)]);
        assert_eq!(m.first_from(2).map(|entry| entry.stored_ms), Some(Some(0)));
        // The time costs nothing against --store-max beyond the overhead.
        assert_eq!(m.take_all(), 3 * cost(4));
    }

    #[test]
    fn a_message_with_its_time_fits_in_the_overhead() {
        assert!(std::mem::size_of::<Mail>() as u64 <= MESSAGE_OVERHEAD);
    }
}
