//! Offline mail: storing a message for a user who is offline, within the
//! bounds on one mailbox and on all stored mail, and handing a user's
//! backlog to the server at the pace their client reads.
//!
//! A message leaves its mailbox only once the server reports it written
//! to the recipient's socket ([`Chat::backlog_written`]), so a recipient
//! who leaves midway gets the rest at the next login.

use super::mailbox;
use super::sessions::Stage;
use super::users::UserId;
use super::{Chat, SessionId};
use crate::journal::record::Record;
use crate::protocol::{self, Reply};

/// The durable side of the domain: how much mail is stored, and whether
/// durable changes can be written at all.
#[derive(Debug)]
pub(super) struct Storage {
    /// Cost of the mail in all mailboxes (see [`mailbox::cost`]).
    pub(super) stored: u64,
    /// Whether durable changes can be written; see
    /// [`Chat::set_storage_available`].
    pub(super) available: bool,
}

impl Default for Storage {
    fn default() -> Storage {
        Storage {
            stored: 0,
            available: true,
        }
    }
}

impl Chat {
    /// Stores `text` from `me` for `them`, who is offline and did not
    /// block `me`; `to` is the name as `me` typed it. The checks in the
    /// order of `protocol.md`: storage unavailable, mailbox full, storage
    /// full.
    pub(super) fn store_mail(
        &mut self,
        sid: SessionId,
        me: UserId,
        them: UserId,
        to: &str,
        text: &str,
    ) {
        let from = &self.users[me].name;
        let line = Reply::Message { from, text }.to_string();
        let cost = mailbox::cost(line.len());
        if !self.storage.available {
            return self.outbox.line(sid, protocol::STORAGE_UNAVAILABLE);
        }
        if self.users[them].mailbox.len() >= self.config.mailbox_max {
            return self.outbox.reply(sid, Reply::MailboxFull { user: to });
        }
        if self.storage.stored + cost > self.config.store_max {
            return self.outbox.line(sid, protocol::STORAGE_FULL);
        }
        let seq = self.users[them].mailbox.push(line.into_boxed_str());
        self.storage.stored += cost;
        self.outbox.record(&Record::MailboxAppend {
            recipient: &self.users[them].name,
            seq: Some(seq),
            sender: &self.users[me].name,
            text,
        });
        self.outbox.reply(sid, Reply::Offline { user: to });
        self.outbox.hold(sid);
    }

    /// The lines of `sid`'s offline mail not yet reported written, oldest
    /// first, from the `from`th on (the server skips those it has already
    /// queued). Empty once the backlog is written, or if `sid` is not
    /// logged in.
    pub fn backlog(&self, sid: SessionId, from: usize) -> impl Iterator<Item = &str> + '_ {
        let user = match self.sessions.get(sid).map(|s| s.stage) {
            Some(Stage::LoggedIn(user)) => Some(&self.users[user]),
            _ => None,
        };
        user.into_iter()
            .flat_map(move |user| user.mailbox.lines_from(from))
    }

    /// The `n` oldest lines of `sid`'s backlog were written to its socket:
    /// they leave the mailbox. The record is not held: written before the
    /// change is durable, the mail is given again after a crash in between
    /// (a duplicate), where holding it would lose it to a crash after the
    /// commit.
    pub fn backlog_written(&mut self, sid: SessionId, n: usize) {
        let Some(Stage::LoggedIn(user)) = self.sessions.get(sid).map(|s| s.stage) else {
            return;
        };
        let account = &mut self.users[user];
        if let Some((through, freed)) = account.mailbox.take_oldest(n) {
            self.storage.stored -= freed;
            self.outbox.record(&Record::MailboxTaken {
                recipient: &account.name,
                through,
            });
        }
    }
}
