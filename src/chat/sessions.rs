//! The sessions the server has connected, by [`SessionId`]: where each is
//! in the login dialogue, when it was last active, and what private
//! messaging and the per-address limits need to know of its connection.

use std::net::IpAddr;
use std::time::Instant;

use super::users::UserId;
use super::SessionId;
use crate::fingerprint::Fingerprint;

/// Where a session is in the login dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Asked for the username.
    Username,
    /// Asked for this user's password.
    Password(UserId),
    /// Gave a password for this user whose hash is being verified off the
    /// loop; nothing else is read until the answer comes.
    Verifying(UserId),
    /// Logged in as this user.
    LoggedIn(UserId),
}

/// One connection, from [`Chat::connect`](super::Chat::connect) until its
/// session ends.
#[derive(Debug)]
pub(super) struct Session {
    /// Where it is in the login dialogue.
    pub(super) stage: Stage,
    /// When it last sent a non-empty line (or connected).
    pub(super) last_activity: Instant,
    /// The address the connection comes from: where a private session
    /// with this user is dialled.
    pub(super) ip: IpAddr,
    /// Set by `privateport`: the session's client takes part in private
    /// messaging and listens on this port of `ip`.
    pub(super) private_port: Option<u16>,
    /// Set by `privateport` with a fingerprint: the client's private
    /// sessions are TLS with that certificate (boxed: most sessions have
    /// none).
    pub(super) private_print: Option<Box<Fingerprint>>,
    /// Its client cannot take part in private messaging (a browser's):
    /// `privateport` is refused, so the server never introduces it.
    pub(super) no_private: bool,
    /// The connection comes from a trusted address: its failed passwords
    /// are not counted against the address.
    pub(super) trusted: bool,
    /// When it must have logged in (`None`: too far to count).
    pub(super) login_by: Option<Instant>,
    /// The group of sessions it belongs to: the node of a cluster that
    /// holds its connection (0 on a single server). Its idle timer fires
    /// only in [`Chat::expire_group`](super::Chat::expire_group) of that
    /// group.
    pub(super) group: u32,
    /// Distinguishes this session from earlier ones with the same id, so a
    /// stale idle timer cannot touch a newer session.
    pub(super) epoch: u64,
    /// Sent `!stamps` at the username prompt: its offline mail comes as
    /// `!queued <unix-seconds> <sender>: <text>`, ended by `!queued end`.
    pub(super) stamps: bool,
    /// Its backlog's `!queued end` is still to be written: from the login
    /// of a session with `stamps` until the server reports that line
    /// written.
    pub(super) end_pending: bool,
}

/// The sessions going on, indexed by `SessionId`.
#[derive(Debug, Default)]
pub(super) struct Sessions {
    slots: Vec<Option<Session>>,
    /// The epoch of the next session.
    next_epoch: u64,
}

impl Sessions {
    /// No sessions, the next one's epoch `next_epoch`.
    pub(super) fn restored(next_epoch: u64) -> Sessions {
        Sessions {
            slots: Vec::new(),
            next_epoch,
        }
    }

    /// The epoch the next session will get.
    pub(super) fn upcoming_epoch(&self) -> u64 {
        self.next_epoch
    }

    /// A fresh epoch for a new session.
    pub(super) fn next_epoch(&mut self) -> u64 {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        epoch
    }

    /// Starts `session` as `sid`, replacing any earlier one.
    pub(super) fn open(&mut self, sid: SessionId, session: Session) {
        if self.slots.len() <= sid.0 {
            self.slots.resize_with(sid.0 + 1, || None);
        }
        self.slots[sid.0] = Some(session);
    }

    /// The session `sid`, if it is going on.
    #[inline]
    pub(super) fn get(&self, sid: SessionId) -> Option<&Session> {
        self.slots.get(sid.0)?.as_ref()
    }

    /// The session `sid`, if it is going on, to change.
    #[inline]
    pub(super) fn get_mut(&mut self, sid: SessionId) -> Option<&mut Session> {
        self.slots.get_mut(sid.0)?.as_mut()
    }

    /// Ends the session `sid`; returns it if it was going on.
    pub(super) fn take(&mut self, sid: SessionId) -> Option<Session> {
        self.slots.get_mut(sid.0)?.take()
    }

    /// The ids of the sessions going on, in order.
    pub(super) fn ids(&self) -> Vec<SessionId> {
        let open = self.slots.iter().enumerate();
        open.filter(|(_, slot)| slot.is_some())
            .map(|(index, _)| SessionId(index))
            .collect()
    }

    /// The ids of the sessions of `group` going on, in order.
    pub(super) fn ids_of(&self, group: u32) -> Vec<SessionId> {
        let open = self.slots.iter().enumerate();
        open.filter(|(_, slot)| slot.as_ref().is_some_and(|s| s.group == group))
            .map(|(index, _)| SessionId(index))
            .collect()
    }

    /// Every session going on.
    #[cfg(test)]
    pub(super) fn iter(&self) -> impl Iterator<Item = &Session> + '_ {
        self.slots.iter().flatten()
    }
}
