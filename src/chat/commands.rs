//! The commands of a logged-in user: `message`, `broadcast`, `block`,
//! `unblock`, `logout` and `help`, and the dispatch of every command to
//! where it is handled (`whoelse` in [`super::presence`], offline mail in
//! [`super::mail`], private messaging in [`super::private`]).

use std::time::{Duration, Instant};

use super::users::UserId;
use super::{Chat, SessionId};
use crate::journal::record::Record;
use crate::protocol::{self, Command, Reply};

impl Chat {
    /// Carries out one parsed command of `me`, logged in on `sid`.
    pub(super) fn command(
        &mut self,
        sid: SessionId,
        me: UserId,
        command: Command<'_>,
        now: Instant,
    ) {
        match command {
            Command::Message { to, text } => self.message(sid, me, to, text, now),
            Command::Broadcast { text } => self.broadcast(sid, me, text),
            Command::WhoElse => self.who_else(sid, me, None, now),
            Command::WhoElseSince { seconds } => {
                self.who_else(sid, me, Some(Duration::from_secs(seconds)), now)
            }
            Command::Block { user } => self.block(sid, me, user),
            Command::Unblock { user } => self.unblock(sid, me, user),
            Command::Logout => {
                self.end_session(sid, now);
                self.outbox.line(sid, protocol::GOODBYE);
                self.outbox.close(sid);
            }
            Command::Help => self.help(sid),
            Command::PrivatePort { port, fingerprint } => self.private_port(sid, port, fingerprint),
            Command::StartPrivate { user } => self.start_private(sid, me, user),
            Command::Private { to: user, .. } | Command::StopPrivate { user } => {
                self.no_private_session(sid, user)
            }
        }
    }

    /// The user named `name` for a command of `me` that needs someone
    /// else; `None` once `sid` was told there is no such user, or
    /// `self_error` if it is `me`.
    pub(super) fn other_user(
        &mut self,
        sid: SessionId,
        me: UserId,
        name: &str,
        self_error: &str,
    ) -> Option<UserId> {
        let Some(them) = self.users.account(name) else {
            self.outbox.line(sid, protocol::INVALID_USER);
            return None;
        };
        if them == me {
            self.outbox.line(sid, self_error);
            return None;
        }
        Some(them)
    }

    /// `message`: at once to a recipient online, into the mailbox of one
    /// offline (stored at `now`).
    fn message(&mut self, sid: SessionId, me: UserId, to: &str, text: &str, now: Instant) {
        let Some(them) = self.other_user(sid, me, to, protocol::CANNOT_MESSAGE_SELF) else {
            return;
        };
        let recipient = &self.users[them];
        if recipient.has_blocked(me) {
            return self.outbox.line(sid, protocol::MESSAGE_BLOCKED);
        }
        match recipient.session {
            Some(their_sid) => {
                let from = &self.users[me].name;
                let range = self.outbox.render(Reply::Message { from, text });
                self.outbox.send(their_sid, range);
            }
            None => self.store_mail(sid, me, them, to, text, now),
        }
    }

    /// `broadcast`: to every other user online who did not block `me`.
    /// Not inlined into the dispatch, so that the loop over the users
    /// online keeps its values in registers.
    #[inline(never)]
    fn broadcast(&mut self, sid: SessionId, me: UserId, text: &str) {
        let from = &self.users[me].name;
        let range = self.outbox.render(Reply::Message { from, text });
        let mut skipped = false;
        for other in &self.presence.online {
            if other.user == me {
                continue;
            }
            if other.blocks_anyone && self.users[other.user].has_blocked(me) {
                skipped = true;
            } else {
                self.outbox.send(other.session, range.clone());
            }
        }
        if skipped {
            self.outbox.line(sid, protocol::BROADCAST_PARTIAL);
        }
    }

    /// `block`: a durable change, unless `name` is blocked already.
    fn block(&mut self, sid: SessionId, me: UserId, name: &str) {
        let Some(them) = self.other_user(sid, me, name, protocol::CANNOT_BLOCK_SELF) else {
            return;
        };
        let blocked = &mut self.users[me].blocked;
        let reply = match blocked.binary_search(&them) {
            Ok(_) => Reply::AlreadyBlocked { user: name },
            Err(_) if !self.storage.available => {
                return self.outbox.line(sid, protocol::STORAGE_UNAVAILABLE);
            }
            Err(at) => {
                blocked.insert(at, them);
                self.outbox.record(&Record::Block {
                    user: &self.users[me].name,
                    target: &self.users[them].name,
                });
                self.outbox.hold(sid);
                Reply::Blocked { user: name }
            }
        };
        self.outbox.reply(sid, reply);
        self.note_block_list(me);
    }

    /// `unblock`: a durable change, unless `name` is not blocked.
    fn unblock(&mut self, sid: SessionId, me: UserId, name: &str) {
        let Some(them) = self.other_user(sid, me, name, protocol::CANNOT_UNBLOCK_SELF) else {
            return;
        };
        let blocked = &mut self.users[me].blocked;
        let reply = match blocked.binary_search(&them) {
            Ok(_) if !self.storage.available => {
                return self.outbox.line(sid, protocol::STORAGE_UNAVAILABLE);
            }
            Ok(at) => {
                blocked.remove(at);
                self.outbox.record(&Record::Unblock {
                    user: &self.users[me].name,
                    target: &self.users[them].name,
                });
                self.outbox.hold(sid);
                Reply::Unblocked { user: name }
            }
            Err(_) => Reply::NotBlocked { user: name },
        };
        self.outbox.reply(sid, reply);
        self.note_block_list(me);
    }

    /// `help`: the commands, and those of private messaging for a client
    /// that takes part in it.
    fn help(&mut self, sid: SessionId) {
        let private: &[&str] = if self.takes_private(sid) {
            protocol::PRIVATE_HELP
        } else {
            &[]
        };
        for line in protocol::HELP.iter().chain(private) {
            self.outbox.line(sid, line);
        }
    }
}
