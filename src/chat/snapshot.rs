//! The live durable state as records, read a slice at a time.
//!
//! A [`SnapshotCursor`] walks the accounts in order and, for each, its
//! queued mail (by sequence number, each message with the time it was
//! stored if known), its block list and its ban. It holds
//! no borrow between slices, so the state may change in between: the
//! snapshot is then "fuzzy" — each account as it was when the cursor
//! passed it — which the journal's idempotent records make as good as an
//! exact one (see [`crate::journal::record`]). Mail is resumed by sequence
//! number, so one user's large mailbox can span many slices.

use super::{Chat, WallClock};
use crate::journal::record::{self, Record};
use crate::protocol::Reply;

/// Where a snapshot being encoded has got to.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SnapshotCursor {
    user: usize,
    part: Part,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Part {
    /// The user's mail numbered from this on.
    Mail(u64),
    /// The user's block list from this index on.
    Blocks(usize),
    /// The user's ban, if any.
    Ban,
}

impl Default for Part {
    fn default() -> Part {
        Part::Mail(0)
    }
}

impl SnapshotCursor {
    /// The next record at or after the cursor, moving past it; `None` at
    /// the end of the state.
    pub fn next<'c>(&mut self, chat: &'c Chat, clock: WallClock) -> Option<Record<'c>> {
        while let Some(user) = chat.users.get(self.user) {
            let name = &*user.name;
            match self.part {
                Part::Mail(from) => {
                    let Some(entry) = user.mailbox.first_from(from) else {
                        self.part = Part::Blocks(0);
                        continue;
                    };
                    self.part = Part::Mail(entry.seq + 1);
                    let line = entry.line;
                    let (sender, text) = Reply::read_message(line).unwrap_or(("", line));
                    return Some(Record::MailboxAppend {
                        recipient: name,
                        seq: Some(entry.seq),
                        stored_unix_ms: entry.stored_ms,
                        sender,
                        text,
                    });
                }
                Part::Blocks(at) => {
                    let Some(&target) = user.blocked.get(at) else {
                        self.part = Part::Ban;
                        continue;
                    };
                    self.part = Part::Blocks(at + 1);
                    return Some(Record::Block {
                        user: name,
                        target: &chat.users[target].name,
                    });
                }
                Part::Ban => {
                    self.next_user();
                    if let Some(until) = user.banned_until.filter(|&until| until > clock.at) {
                        return Some(Record::Ban {
                            user: name,
                            until_unix_ms: clock.unix_ms(until),
                        });
                    }
                }
            }
        }
        None
    }

    /// Encodes records from the cursor on into `out` until it holds at
    /// least `budget` bytes or the state ends; returns whether it ended.
    pub fn encode(
        &mut self,
        chat: &Chat,
        clock: WallClock,
        out: &mut Vec<u8>,
        budget: usize,
    ) -> bool {
        while out.len() < budget {
            match self.next(chat, clock) {
                Some(record) => record::encode(&record, out),
                None => return true,
            }
        }
        false
    }

    fn next_user(&mut self) {
        self.user += 1;
        self.part = Part::default();
    }
}
