//! Private messaging, as far as the server takes part: a session's client
//! registers its port (`privateport`), and `startprivate` introduces two
//! such clients to each other with a fresh token. The private messages
//! never pass through the server, and nothing here is durable.
//!
//! The introduction goes to the target first, so that its client knows the
//! token before the starter's client can present it, and the target's
//! address never reaches a user the target blocked.

use std::net::SocketAddr;

use super::users::UserId;
use super::{Chat, SessionId};
use crate::fingerprint::Fingerprint;
use crate::protocol::{self, Reply};
use crate::token::Hex;

impl Chat {
    /// Whether the session sent `privateport`: its client takes part in
    /// private messaging.
    pub(super) fn takes_private(&self, sid: SessionId) -> bool {
        self.sessions
            .get(sid)
            .is_some_and(|session| session.private_port.is_some())
    }

    /// The session's client cannot take part in private messaging (a
    /// browser's, over WebSocket): its `privateport` is answered with
    /// `Error. Private messaging needs the confab client`, like its
    /// `startprivate`, so the server never introduces it to anyone.
    pub fn without_private(&mut self, sid: SessionId) {
        if let Some(session) = self.sessions.get_mut(sid) {
            session.no_private = true;
        }
    }

    /// `privateport`: the session's client listens on `port` of the
    /// connection's address, over TLS with the certificate of
    /// `fingerprint` if given; the last one counts. Refused for a session
    /// [`Chat::without_private`].
    pub(super) fn private_port(
        &mut self,
        sid: SessionId,
        port: u16,
        fingerprint: Option<Fingerprint>,
    ) {
        if let Some(session) = self.sessions.get_mut(sid) {
            if session.no_private {
                return self.outbox.line(sid, protocol::PRIVATE_NEEDS_CLIENT);
            }
            session.private_port = Some(port);
            session.private_print = fingerprint.map(Box::new);
        }
    }

    /// `private` or `stopprivate` reaching the server: the client handles
    /// them itself when it has a session with `user`.
    pub(super) fn no_private_session(&mut self, sid: SessionId, user: &str) {
        if self.takes_private(sid) {
            self.outbox.reply(sid, Reply::PrivateNotEnabled { user });
        } else {
            self.outbox.line(sid, protocol::PRIVATE_NEEDS_CLIENT);
        }
    }

    /// `startprivate`: the checks in the order the README lists them,
    /// then the introduction.
    pub(super) fn start_private(&mut self, sid: SessionId, me: UserId, name: &str) {
        if !self.takes_private(sid) {
            return self.outbox.line(sid, protocol::PRIVATE_NEEDS_CLIENT);
        }
        let Some(them) = self.other_user(sid, me, name, protocol::CANNOT_PRIVATE_SELF) else {
            return;
        };
        let target = &self.users[them];
        if target.has_blocked(me) {
            return self.outbox.reply(sid, Reply::PrivateBlocked { user: name });
        }
        let Some(their_sid) = target.session else {
            return self.outbox.reply(sid, Reply::PrivateOffline { user: name });
        };
        let print = |sid| {
            self.sessions
                .get(sid)
                .and_then(|session| session.private_print.as_deref().copied())
        };
        let (mine, theirs) = (print(sid), print(their_sid));
        let listening = self
            .sessions
            .get(their_sid)
            .and_then(|session| Some(SocketAddr::new(session.ip, session.private_port?)));
        // A client on a TLS link talks privately over TLS only, so both
        // registered a certificate or neither did.
        let Some(address) = listening.filter(|_| mine.is_some() == theirs.is_some()) else {
            return self
                .outbox
                .reply(sid, Reply::PrivateNotAccepted { user: name });
        };
        let drawn = self.given_token.take().unwrap_or_else(|| (self.tokens)());
        let Some(token) = drawn else {
            return self.outbox.line(sid, protocol::PRIVATE_UNAVAILABLE);
        };
        let token = Hex(token);
        let starter = &self.users[me].name;
        self.outbox.reply(
            their_sid,
            Reply::PrivateAccept {
                user: starter,
                token,
                fingerprint: mine,
            },
        );
        self.outbox.reply(
            sid,
            Reply::PrivateConnect {
                user: name,
                address,
                token,
                fingerprint: theirs,
            },
        );
    }
}
