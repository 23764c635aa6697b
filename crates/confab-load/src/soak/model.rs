//! The record of every message a soak sends and what must become of it:
//! decided from what the clients know when the command is queued, settled
//! when the message arrives (or when its recipient changes a block), and
//! tallied in the report.

use super::client::Block;
use super::Soak;

/// What a message's recipient must do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Expect {
    /// Receive it exactly once.
    Must,
    /// Not receive it: the recipient blocks the sender.
    MustNot,
    /// Either.
    Maybe,
    /// A message for an offline user.
    Offline(Mail),
}

/// Where a message for an offline user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mail {
    /// Sent; the server has not answered yet.
    Sent,
    /// The server answered that it stored it.
    Stored,
    /// The recipient is logging in: it comes after the welcome.
    Due,
    /// Received.
    Delivered,
    /// Not received in a session that ended cleanly: lost.
    Lost,
    /// The recipient dropped its connection before reading it.
    Dropped,
    /// The sender's session ended before the server answered.
    Unanswered,
}

/// One `message` command.
pub(super) struct Direct {
    pub(super) from: u32,
    pub(super) to: u32,
    pub(super) expect: Expect,
    pub(super) got: u32,
}

/// One `broadcast` command.
pub(super) struct Broadcast {
    pub(super) from: u32,
    /// Recipients that must receive it, one bit each.
    pub(super) must: Vec<u64>,
    /// Recipients that must not.
    pub(super) must_not: Vec<u32>,
    /// Recipients that received it.
    pub(super) got: Vec<u64>,
}

/// A message an enemy sent, as its recipient remembers it.
#[derive(Debug, Clone, Copy)]
pub(super) enum Ref {
    Direct(u32),
    Broadcast(u32),
}

/// The text of message `id` (tag `d` for `message`, `b` for `broadcast`):
/// inner spaces and a non-ASCII letter included, never a trailing space.
fn message_text(tag: char, id: u32) -> String {
    let tail = "z".repeat(1 + id as usize % 23);
    format!("{tag}{id:x} café  {tail}")
}

/// The tag and id of a text made by [`message_text`], if it is one exactly.
fn parse_text(text: &str) -> Option<(char, u32)> {
    let tag = text.chars().next().filter(|c| matches!(c, 'd' | 'b'))?;
    let (head, _) = text.split_once(' ')?;
    let id = u32::from_str_radix(head.get(1..)?, 16).ok()?;
    (message_text(tag, id) == text).then_some((tag, id))
}

pub(super) fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

pub(super) fn set_bit(bits: &mut [u64], i: usize, on: bool) {
    if on {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

impl Soak {
    /// What a message from `from` to `to` queued now must do.
    pub(super) fn expect(&self, from: usize, to: usize) -> Expect {
        let recipient = &self.clients[to];
        if recipient.enemy != from {
            return if recipient.steady {
                Expect::Must
            } else {
                Expect::Maybe
            };
        }
        match recipient.block {
            Block::Unblocked if recipient.steady => Expect::Must,
            Block::Blocked => Expect::MustNot,
            _ => Expect::Maybe,
        }
    }

    pub(super) fn new_direct(&mut self, from: usize, to: usize, expect: Expect) -> (u32, String) {
        let id = self.directs.len() as u32;
        self.directs.push(Direct {
            from: from as u32,
            to: to as u32,
            expect,
            got: 0,
        });
        (id, message_text('d', id))
    }

    /// Records a broadcast from `i` that nobody is required to receive
    /// or refused; returns its text.
    pub(super) fn new_broadcast(&mut self, i: usize) -> String {
        let id = self.broadcasts.len() as u32;
        let words = self.clients.len().div_ceil(64);
        self.broadcasts.push(Broadcast {
            from: i as u32,
            must: vec![0; words],
            must_not: Vec::new(),
            got: vec![0; words],
        });
        message_text('b', id)
    }

    /// Message `r` to client `i` is no longer required, if not received.
    pub(super) fn release_must(&mut self, i: usize, r: Ref) {
        match r {
            Ref::Direct(id) => {
                let record = &mut self.directs[id as usize];
                if record.expect == Expect::Must && record.got == 0 {
                    record.expect = Expect::Maybe;
                    self.outstanding -= 1;
                }
            }
            Ref::Broadcast(id) => {
                let record = &mut self.broadcasts[id as usize];
                if bit(&record.must, i) && !bit(&record.got, i) {
                    set_bit(&mut record.must, i, false);
                    self.outstanding -= 1;
                }
            }
        }
    }

    /// Message `r` to client `i` is no longer forbidden.
    pub(super) fn release_must_not(&mut self, i: usize, r: Ref) {
        match r {
            Ref::Direct(id) => {
                let record = &mut self.directs[id as usize];
                if record.expect == Expect::MustNot {
                    record.expect = Expect::Maybe;
                }
            }
            Ref::Broadcast(id) => {
                let must_not = &mut self.broadcasts[id as usize].must_not;
                must_not.retain(|&to| to as usize != i);
            }
        }
    }

    /// Client `i` received message `text` from `from`.
    pub(super) fn on_message(&mut self, i: usize, from: usize, text: &str) {
        self.stats.received += 1;
        let Some((tag, id)) = parse_text(text) else {
            self.violation(i, format!("corrupt message from {from}: {text:?}"));
            return;
        };
        if tag == 'd' {
            self.on_direct(i, from, id);
        } else {
            self.on_broadcast(i, from, id);
        }
    }

    fn on_direct(&mut self, i: usize, from: usize, id: u32) {
        let Some(record) = self.directs.get_mut(id as usize) else {
            self.violation(i, format!("unknown message d{id:x}"));
            return;
        };
        if record.from as usize != from || record.to as usize != i {
            let (f, t) = (record.from, record.to);
            self.violation(i, format!("message d{id:x} of {f} to {t} came from {from}"));
            return;
        }
        record.got += 1;
        if record.got > 1 {
            self.stats.duplicates += 1;
            self.violation(i, format!("message d{id:x} received again"));
            return;
        }
        match record.expect {
            Expect::Must => {
                self.stats.received_tracked += 1;
                self.outstanding -= 1;
            }
            Expect::Maybe => {}
            Expect::MustNot => self.violation(i, format!("d{id:x} arrived though blocked")),
            Expect::Offline(Mail::Due) => {
                record.expect = Expect::Offline(Mail::Delivered);
                self.stats.offline_delivered += 1;
                let due = &mut self.clients[i].due;
                if let Some(at) = due.iter().position(|&d| d == id) {
                    due.swap_remove(at);
                }
            }
            Expect::Offline(mail) => {
                self.violation(i, format!("offline message d{id:x} arrived while {mail:?}"));
            }
        }
    }

    fn on_broadcast(&mut self, i: usize, from: usize, id: u32) {
        let Some(record) = self.broadcasts.get_mut(id as usize) else {
            self.violation(i, format!("unknown broadcast b{id:x}"));
            return;
        };
        if record.from as usize != from || from == i {
            let f = record.from;
            self.violation(i, format!("broadcast b{id:x} of {f} came from {from}"));
            return;
        }
        if bit(&record.got, i) {
            self.stats.duplicates += 1;
            self.violation(i, format!("broadcast b{id:x} received again"));
            return;
        }
        set_bit(&mut record.got, i, true);
        if bit(&record.must, i) {
            self.stats.received_tracked += 1;
            self.outstanding -= 1;
        } else if record.must_not.contains(&(i as u32)) {
            self.violation(i, format!("b{id:x} arrived though blocked"));
        }
    }

    /// Client `i` heard that its message to `to` was stored.
    pub(super) fn on_stored(&mut self, i: usize, to: usize) {
        match self.clients[i].waits.pop_front() {
            Some((expected, id)) if expected == to => {
                self.directs[id as usize].expect = Expect::Offline(Mail::Stored);
                self.stats.offline_stored += 1;
                let recipient = &mut self.clients[to];
                recipient.held -= 1;
                recipient.mailbox.push(id);
            }
            other => {
                if let Some(wait) = other {
                    self.clients[i].waits.push_front(wait);
                }
                self.violation(i, format!("unexpected offline answer for {to}"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        for id in [0, 1, 22, 23, 0xdead] {
            for tag in ['d', 'b'] {
                let text = message_text(tag, id);
                assert!(!text.ends_with(' '));
                assert_eq!(parse_text(&text), Some((tag, id)));
            }
        }
        assert_eq!(parse_text("d1 café  zzz"), None, "wrong tail");
        assert_eq!(parse_text("x1 café  zz"), None, "unknown tag");
        assert_eq!(parse_text("é1 café"), None);
    }

    #[test]
    fn bits() {
        let mut bits = vec![0u64; 2];
        set_bit(&mut bits, 70, true);
        assert!(bit(&bits, 70) && !bit(&bits, 6));
        set_bit(&mut bits, 70, false);
        assert!(!bit(&bits, 70));
    }
}
