//! One user's offline mailbox: the messages queued while they were away,
//! oldest first, each with its sequence number, and what stored mail
//! costs against `--store-max`.
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
/// bytes.
pub fn cost(len: usize) -> u64 {
    len as u64 + MESSAGE_OVERHEAD
}

#[derive(Debug)]
struct Mail {
    seq: u64,
    /// `<sender>: <text>`, as delivered.
    line: Box<str>,
}

/// The messages queued for one user.
#[derive(Debug, Default)]
pub struct Mailbox {
    mail: VecDeque<Mail>,
    /// Greater than every sequence number this mailbox has seen.
    next_seq: u64,
}

impl Mailbox {
    /// Messages queued.
    pub fn len(&self) -> usize {
        self.mail.len()
    }

    /// Whether nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.mail.is_empty()
    }

    /// Queues a new message; returns its sequence number.
    pub fn push(&mut self, line: Box<str>) -> u64 {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.mail.push_back(Mail { seq, line });
        seq
    }

    /// Replays an append read from disk; `None` (a record of the earlier
    /// format) takes the next number. Returns the cost it added, or `None`
    /// if the mailbox already reflected it.
    pub fn replay_append(&mut self, seq: Option<u64>, line: Box<str>) -> Option<u64> {
        let seq = seq.unwrap_or(self.next_seq);
        if seq < self.next_seq {
            return None;
        }
        self.next_seq = seq + 1;
        let added = cost(line.len());
        self.mail.push_back(Mail { seq, line });
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

    /// The lines from the `from`th oldest on.
    pub fn lines_from(&self, from: usize) -> impl Iterator<Item = &str> + '_ {
        self.mail
            .range(from.min(self.mail.len())..)
            .map(|mail| &*mail.line)
    }

    /// The oldest message numbered `seq` or later, with its number.
    pub fn first_from(&self, seq: u64) -> Option<(u64, &str)> {
        let at = self.mail.partition_point(|m| m.seq < seq);
        self.mail.get(at).map(|m| (m.seq, &*m.line))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(mailbox: &Mailbox) -> Vec<&str> {
        mailbox.lines_from(0).collect()
    }

    #[test]
    fn taken_messages_leave_from_the_front() {
        let mut m = Mailbox::default();
        for text in ["a: 1", "a: 2", "b: 3"] {
            m.push(text.into());
        }
        assert_eq!(m.take_oldest(2), Some((1, cost(4) * 2)));
        assert_eq!(lines(&m), ["b: 3"]);
        assert_eq!(m.take_oldest(5), Some((2, cost(4))));
        assert!(m.is_empty());
        assert_eq!(m.take_oldest(1), None);
        // Numbers keep growing after the mailbox empties.
        assert_eq!(m.push("c: 4".into()), 3);
    }

    #[test]
    fn replays_are_idempotent() {
        let mut m = Mailbox::default();
        assert_eq!(m.replay_append(Some(5), "a: x".into()), Some(cost(4)));
        assert_eq!(m.replay_append(Some(5), "a: x".into()), None);
        assert_eq!(m.replay_append(Some(3), "a: old".into()), None);
        assert_eq!(m.replay_append(Some(6), "a: y".into()), Some(cost(4)));
        assert_eq!(m.take_through(5), cost(4));
        assert_eq!(m.take_through(5), 0);
        assert_eq!(lines(&m), ["a: y"]);
        // A take of what was never seen moves the numbers past it.
        assert_eq!(m.take_through(9), cost(4));
        assert_eq!(m.replay_append(Some(8), "a: gone".into()), None);
        assert_eq!(m.push("a: new".into()), 10);
    }

    #[test]
    fn records_of_the_earlier_format_take_the_next_number() {
        let mut m = Mailbox::default();
        m.replay_append(None, "a: 1".into());
        m.replay_append(None, "a: 2".into());
        assert_eq!(m.first_from(1), Some((1, "a: 2")));
        assert_eq!(m.take_all(), 2 * cost(4));
        assert!(m.is_empty());
        assert_eq!(m.push("a: 3".into()), 2);
    }

    #[test]
    fn lines_from_skips_those_handed_out() {
        let mut m = Mailbox::default();
        for text in ["a: 1", "a: 2", "a: 3"] {
            m.push(text.into());
        }
        assert_eq!(m.lines_from(1).collect::<Vec<_>>(), ["a: 2", "a: 3"]);
        assert_eq!(m.lines_from(7).count(), 0);
        assert_eq!(m.first_from(2), Some((2, "a: 3")));
        assert_eq!(m.first_from(3), None);
    }
}
