//! Offline mail: storing a message for a user who is offline, within the
//! bounds on one mailbox and on all stored mail, with the wall-clock time
//! it was stored at, and handing a user's backlog to the server at the
//! pace their client reads.
//!
//! A message leaves its mailbox only once the server reports it written
//! to the recipient's socket ([`Chat::backlog_written`]), so a recipient
//! who leaves midway gets the rest at the next login.
//!
//! A session that sent `!stamps` before logging in gets each message as
//! `!queued <unix-seconds> <sender>: <text>` and, once the last is written
//! (or at once if there is none), `!queued end`: that line is the last of
//! its backlog, so what else is sent to the session meanwhile follows it.

use std::fmt;
use std::time::Instant;

use super::mailbox;
use super::sessions::Stage;
use super::users::UserId;
use super::{Chat, SessionId, WallClock};
use crate::journal::record::Record;
use crate::protocol::{self, Reply};

/// The durable side of the domain: how much mail is stored, whether
/// durable changes can be written at all, and the wall clock that dates
/// stored mail.
#[derive(Debug)]
pub(super) struct Storage {
    /// Cost of the mail in all mailboxes (see [`mailbox::cost`]).
    pub(super) stored: u64,
    /// Whether durable changes can be written; see
    /// [`Chat::set_storage_available`].
    pub(super) available: bool,
    /// Converts `now` to the wall-clock time a message is stored at; see
    /// [`Chat::set_wall_clock`]. Without it mail is stored with no time.
    pub(super) clock: Option<WallClock>,
}

impl Default for Storage {
    fn default() -> Storage {
        Storage {
            stored: 0,
            available: true,
            clock: None,
        }
    }
}

/// One line of a session's offline mail, as [`Chat::backlog`] hands it to
/// the server; `Display` and [`BacklogLine::append_to`] give its exact
/// text, without the newline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BacklogLine<'a> {
    /// A queued message as protocol v1 sends it: `<sender>: <text>`.
    Plain(&'a str),
    /// A queued message to a session that sent `!stamps`:
    /// `!queued <unix-seconds> <sender>: <text>` ([`Reply::Queued`]).
    Stamped {
        /// When it was stored, in seconds since the Unix epoch, if known.
        at: Option<u64>,
        /// `<sender>: <text>`.
        line: &'a str,
    },
    /// `!queued end` ([`protocol::QUEUED_END`]): the last line of the
    /// backlog of a session that sent `!stamps`.
    End,
}

impl BacklogLine<'_> {
    /// Appends the line, without its newline, to `out`.
    #[inline]
    pub fn append_to(&self, out: &mut Vec<u8>) {
        match *self {
            BacklogLine::Plain(line) => out.extend_from_slice(line.as_bytes()),
            BacklogLine::Stamped { at, line } => Reply::Queued { at, line }.append_to(out),
            BacklogLine::End => out.extend_from_slice(protocol::QUEUED_END.as_bytes()),
        }
    }
}

impl fmt::Display for BacklogLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BacklogLine::Plain(line) => f.write_str(line),
            BacklogLine::Stamped { at, line } => Reply::Queued { at, line }.fmt(f),
            BacklogLine::End => f.write_str(protocol::QUEUED_END),
        }
    }
}

impl Chat {
    /// Pairs the domain's `Instant`s with the wall clock, to date the mail
    /// stored from now on (the time a `!stamps` session is shown, kept in
    /// the mail's record). The server sets it at start; a domain without
    /// it stores mail with no time, shown as `-`.
    pub fn set_wall_clock(&mut self, clock: WallClock) {
        self.storage.clock = Some(clock);
    }

    /// Stores `text` from `me` for `them`, who is offline and did not
    /// block `me`, as stored at `now`; `to` is the name as `me` typed it.
    /// The checks in the order of `protocol.md`: storage unavailable,
    /// mailbox full, storage full.
    pub(super) fn store_mail(
        &mut self,
        sid: SessionId,
        me: UserId,
        them: UserId,
        to: &str,
        text: &str,
        now: Instant,
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
        let stored_unix_ms = self.storage.clock.map(|clock| clock.unix_ms(now));
        let seq = self.users[them]
            .mailbox
            .push(stored_unix_ms, line.into_boxed_str());
        self.storage.stored += cost;
        self.outbox.record(&Record::MailboxAppend {
            recipient: &self.users[them].name,
            seq: Some(seq),
            stored_unix_ms,
            sender: &self.users[me].name,
            text,
        });
        self.outbox.reply(sid, Reply::Offline { user: to });
        self.outbox.hold(sid);
    }

    /// The lines of `sid`'s backlog not yet reported written, oldest
    /// first, from the `from`th on (the server skips those it has already
    /// queued): its offline mail, plain or stamped, then `!queued end` if
    /// it sent `!stamps`. Empty once the backlog is written, or if `sid` is
    /// not logged in.
    pub fn backlog(
        &self,
        sid: SessionId,
        from: usize,
    ) -> impl Iterator<Item = BacklogLine<'_>> + '_ {
        let session = self.sessions.get(sid);
        let user = match session.map(|s| s.stage) {
            Some(Stage::LoggedIn(user)) => Some(&self.users[user]),
            _ => None,
        };
        let stamps = session.is_some_and(|s| s.stamps);
        // The end is the line after the last message.
        let end = user
            .filter(|user| from <= user.mailbox.len())
            .filter(|_| session.is_some_and(|s| s.end_pending))
            .map(|_| BacklogLine::End);
        let mail = user.into_iter().flat_map(move |user| {
            user.mailbox.entries_from(from).map(move |entry| {
                if stamps {
                    BacklogLine::Stamped {
                        at: entry.stored_ms.map(|ms| ms / 1000),
                        line: entry.line,
                    }
                } else {
                    BacklogLine::Plain(entry.line)
                }
            })
        });
        mail.chain(end)
    }

    /// The `n` oldest lines of `sid`'s backlog were written to its socket:
    /// the messages among them leave the mailbox (and a line past the last
    /// message was its `!queued end`). The record is not held: written
    /// before the change is durable, the mail is given again after a crash
    /// in between (a duplicate), where holding it would lose it to a crash
    /// after the commit.
    pub fn backlog_written(&mut self, sid: SessionId, n: usize) {
        let Some(session) = self.sessions.get_mut(sid) else {
            return;
        };
        let Stage::LoggedIn(user) = session.stage else {
            return;
        };
        let account = &mut self.users[user];
        if n > account.mailbox.len() {
            session.end_pending = false;
        }
        if let Some((through, freed)) = account.mailbox.take_oldest(n) {
            self.storage.stored -= freed;
            self.outbox.record(&Record::MailboxTaken {
                recipient: &account.name,
                through,
            });
        }
    }
}
