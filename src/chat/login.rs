//! A session's life: connecting, the username and password dialogue, bans
//! after wrong passwords, the idle timer and the login deadline, and the
//! one way every session ends.
//!
//! Every way a session ends goes through [`Chat::end_session`], which is
//! the only place that announces `<user> logged out`, so that the
//! announcement happens exactly once per session.

use std::net::IpAddr;
use std::time::Instant;

use super::outbox::Verification;
use super::sessions::{Session, Stage};
use super::users::UserId;
use super::{Chat, SessionId, Timer};
use crate::credentials::Account;
use crate::deadlines::Deadlines;
use crate::journal::record::Record;
use crate::passwords;
use crate::protocol::{self, Reply};
use crate::trust::IpKey;

/// How many consecutive wrong passwords ban a username.
const MAX_FAILURES: u8 = 3;

impl Chat {
    /// A new connection from `ip`: asks for the username and starts its
    /// idle timer and login deadline. `ip` is where the user's client is
    /// dialled for private messaging; an IPv4-mapped IPv6 address (an IPv4
    /// client of a dual-stack listener) is kept as the IPv4 address, which
    /// every peer can dial. A `trusted` connection's failed passwords are
    /// not counted against its address.
    pub fn connect(&mut self, sid: SessionId, ip: IpAddr, trusted: bool, now: Instant) {
        self.connect_in(sid, ip, trusted, 0, now);
    }

    /// A new connection, like [`Chat::connect`], held by the node of a
    /// cluster that `group` names: its idle timeout and login deadline
    /// fire only in [`Chat::expire_group`] of that group, because in a
    /// cluster the node that holds the connection decides when it has been
    /// idle too long, and publishes that.
    pub fn connect_in(
        &mut self,
        sid: SessionId,
        ip: IpAddr,
        trusted: bool,
        group: u32,
        now: Instant,
    ) {
        let epoch = self.sessions.next_epoch();
        let session = Session {
            stage: Stage::Username,
            last_activity: now,
            ip: ip.to_canonical(),
            private_port: None,
            private_print: None,
            no_private: false,
            trusted,
            login_by: now.checked_add(self.config.login_timeout),
            group,
            epoch,
            stamps: false,
            end_pending: false,
        };
        let due = self.idle_due(&session);
        self.sessions.open(sid, session);
        self.arm_idle(group, due, sid, epoch);
        self.outbox.prompt(sid, protocol::USERNAME_PROMPT);
    }

    /// The connection is gone (closed by the peer, failed, or cut off by a
    /// limit). Ends the session if it was still going; a no-op for a session
    /// the domain closed itself.
    pub fn disconnect(&mut self, sid: SessionId, now: Instant) {
        self.end_session(sid, now);
    }

    /// Fires every timer due at `now`: idle timeouts and ban expiries.
    pub fn expire(&mut self, now: Instant) {
        let groups = u32::try_from(self.idle.len()).unwrap_or(u32::MAX);
        for group in 0..groups.max(1) {
            self.expire_group(group, now);
        }
    }

    /// Fires the timers due at `now` that belong to `group`: the idle
    /// timeouts and login deadlines of its sessions, and every ban end,
    /// oldest first.
    pub fn expire_group(&mut self, group: u32, now: Instant) {
        loop {
            let idle_at = self.idle_heap(group).and_then(|heap| heap.next());
            let ban_at = self.deadlines.next();
            let idle_first = match (idle_at, ban_at) {
                (Some(idle), Some(ban)) => idle <= ban,
                (Some(_), None) => true,
                (None, _) => false,
            };
            let popped = match idle_first {
                true => self.idle_heap_mut(group).pop_due(now),
                false => self.deadlines.pop_due(now),
            };
            let Some((_, timer)) = popped else {
                return;
            };
            match timer {
                Timer::Idle { session, epoch } => self.idle_check(session, epoch, now),
                Timer::BanEnd(user) => self.lift_ban_if_over(user, now),
            }
        }
    }

    /// Ends every session of `group` at once (the cluster node holding
    /// them is gone), announcing each user's departure like any leaver's.
    pub fn end_group(&mut self, group: u32, now: Instant) {
        for sid in self.sessions.ids_of(group) {
            self.close(sid, now);
        }
        if let Some(heap) = self.idle.get_mut(group as usize) {
            *heap = Deadlines::default();
        }
    }

    /// Tells every session that the server stops and closes it, without
    /// presence announcements (everyone is leaving at once).
    pub fn shutdown(&mut self, now: Instant) {
        for sid in self.sessions.ids() {
            self.outbox.line(sid, protocol::SHUTTING_DOWN);
            self.end_session_quietly(sid, now);
            self.outbox.close(sid);
        }
    }

    /// Makes `accounts` (a reloaded credentials file) the accounts: new
    /// ones can log in at once, changed passwords apply from the next
    /// login, and a removed account keeps its records (as at a start
    /// without it); if it is online it is told, closed and announced as
    /// leaving like any leaver.
    pub fn reload_accounts(&mut self, accounts: Vec<Account>, now: Instant) {
        for user in self.users.reload(accounts) {
            if let Some(sid) = self.users[user].session {
                self.outbox.line(sid, protocol::ACCOUNT_REMOVED);
                self.close(sid, now);
            }
        }
    }

    /// Records activity and returns the session's stage, if it exists.
    pub(super) fn touch(&mut self, sid: SessionId, now: Instant) -> Option<Stage> {
        let session = self.sessions.get_mut(sid)?;
        session.last_activity = now;
        Some(session.stage)
    }

    /// Asks again for what the session was asked for, if it is logging in.
    pub(super) fn reprompt(&mut self, sid: SessionId, stage: Stage) {
        match stage {
            Stage::Username => self.outbox.prompt(sid, protocol::USERNAME_PROMPT),
            Stage::Password(_) => self.outbox.prompt(sid, protocol::PASSWORD_PROMPT),
            Stage::Verifying(_) | Stage::LoggedIn(_) => {}
        }
    }

    /// A line typed at the username prompt: `!stamps`, which is never a
    /// username (the session's offline mail will be stamped with its time),
    /// or a username.
    pub(super) fn username(&mut self, sid: SessionId, line: &str) {
        if line == protocol::STAMPS_REQUEST {
            if let Some(session) = self.sessions.get_mut(sid) {
                session.stamps = true;
            }
            self.outbox.line(sid, protocol::STAMPS_ON);
            return self.outbox.prompt(sid, protocol::USERNAME_PROMPT);
        }
        match self.users.account(line) {
            Some(user) => {
                self.set_stage(sid, Stage::Password(user));
                self.outbox.prompt(sid, protocol::PASSWORD_PROMPT);
            }
            None => {
                self.outbox.line(sid, protocol::INVALID_USERNAME);
                self.outbox.prompt(sid, protocol::USERNAME_PROMPT);
            }
        }
    }

    /// A line typed at the password prompt of `user`: the per-address
    /// limit first, then the ban; then a clear password is compared at
    /// once, and a hashed one is handed to the server to verify off the
    /// loop ([`Verification`]), the session waiting for [`Chat::verified`].
    pub(super) fn password(&mut self, sid: SessionId, user: UserId, line: &str, now: Instant) {
        if self.over_failure_limit(sid, now) {
            return;
        }
        if self.refused_as_banned(sid, user, now) {
            return;
        }
        let Some(stored) = self.users[user].password.as_deref() else {
            // Removed from the credentials file meanwhile: no password fits.
            return self.password_checked(sid, user, false, now);
        };
        if !passwords::is_hashed(stored) {
            let matches = passwords::clear_matches(stored, line);
            return self.password_checked(sid, user, matches, now);
        }
        let Some(epoch) = self.sessions.get(sid).map(|s| s.epoch) else {
            return;
        };
        self.outbox.verify(Verification {
            session: sid,
            epoch,
            given: line.to_owned(),
            stored: stored.into(),
        });
        self.set_stage(sid, Stage::Verifying(user));
    }

    /// What a password typed now on `sid` would be checked against, if
    /// `sid` is at its password prompt: the account's stored password
    /// (clear or an Argon2 hash), or `None` inside if the account was
    /// removed (no password fits). In a cluster the node holding the
    /// connection checks the password itself and publishes only the
    /// verdict ([`Chat::password_judged`]), so that no password typed at
    /// a prompt is ever written to the log.
    pub fn password_wanted(&self, sid: SessionId) -> Option<Option<&str>> {
        let Stage::Password(user) = self.sessions.get(sid)?.stage else {
            return None;
        };
        Some(self.users[user].password.as_deref())
    }

    /// A password typed on `sid` at its password prompt, already checked
    /// by the caller against [`Chat::password_wanted`]: `matches` says
    /// whether it was right. Counts as activity; the per-address limit and
    /// the ban are checked first, as for [`Chat::line`]. Ignored unless
    /// `sid` is at its password prompt.
    pub fn password_judged(&mut self, sid: SessionId, matches: bool, now: Instant) {
        let Some(Stage::Password(user)) = self.touch(sid, now) else {
            return;
        };
        if self.over_failure_limit(sid, now) {
            return;
        }
        if self.refused_as_banned(sid, user, now) {
            return;
        }
        self.password_checked(sid, user, matches, now);
    }

    /// The answer to a [`Verification`] of session `sid` (of `epoch`):
    /// whether the password given matched its hash. The login goes on as
    /// for a clear password; an answer for a session that has ended, or
    /// for an earlier connection with the same id, is ignored.
    pub fn verified(&mut self, sid: SessionId, epoch: u64, matches: bool, now: Instant) {
        let Some(session) = self.sessions.get(sid).filter(|s| s.epoch == epoch) else {
            return;
        };
        let Stage::Verifying(user) = session.stage else {
            return;
        };
        // Banned by another connection's failures meanwhile.
        if self.refused_as_banned(sid, user, now) {
            return;
        }
        self.password_checked(sid, user, matches, now);
    }

    /// Whether `user` is banned at `now` (a ban that is over is lifted
    /// first), in which case `sid` is told so and closed.
    fn refused_as_banned(&mut self, sid: SessionId, user: UserId, now: Instant) -> bool {
        self.lift_ban_if_over(user, now);
        if self.users[user].banned_until.is_none() {
            return false;
        }
        self.outbox.line(sid, protocol::ACCOUNT_BANNED);
        self.close(sid, now);
        true
    }

    /// Whether `sid`'s untrusted address is over its limit of failed
    /// passwords, in which case it is told so and closed.
    fn over_failure_limit(&mut self, sid: SessionId, now: Instant) -> bool {
        let Some(key) = self.untrusted_address(sid) else {
            return false;
        };
        if !self
            .failures
            .over_limit(key, self.config.max_failures_per_ip, now)
        {
            return false;
        }
        self.outbox.line(sid, protocol::TOO_MANY_FAILURES);
        self.close(sid, now);
        true
    }

    /// The address `sid`'s failures count against, unless it is trusted.
    fn untrusted_address(&self, sid: SessionId) -> Option<IpKey> {
        self.sessions
            .get(sid)
            .filter(|session| !session.trusted)
            .map(|session| IpKey::of(session.ip))
    }

    /// The password given on `sid` for `user` was right or wrong: a
    /// failure is counted (three in a row ban the username), a success
    /// logs in unless the user is online already.
    fn password_checked(&mut self, sid: SessionId, user: UserId, matches: bool, now: Instant) {
        // An account removed by a reload while its password was verified.
        let matches = matches && self.users.is_account(user);
        if !matches {
            if let Some(key) = self.untrusted_address(sid) {
                self.failures
                    .note_failure(key, self.config.block_duration, now);
            }
            let block_duration = self.config.block_duration;
            let account = &mut self.users[user];
            account.failures = account.failures.saturating_add(1);
            if account.failures >= MAX_FAILURES {
                let until = now + block_duration;
                account.banned_until = Some(until);
                self.deadlines.arm(until, Timer::BanEnd(user));
                if let Some(clock) = self.outbox.recording() {
                    self.outbox.record(&Record::Ban {
                        user: &account.name,
                        until_unix_ms: clock.unix_ms(until),
                    });
                    self.outbox.hold(sid);
                }
                self.outbox.line(sid, protocol::PASSWORD_BANNED);
                self.close(sid, now);
            } else {
                self.set_stage(sid, Stage::Password(user));
                self.outbox.line(sid, protocol::INVALID_PASSWORD);
                self.outbox.prompt(sid, protocol::PASSWORD_PROMPT);
            }
        } else if self.users[user].session.is_some() {
            self.set_stage(sid, Stage::Username);
            self.outbox.line(sid, protocol::ALREADY_LOGGED_IN);
            self.outbox.prompt(sid, protocol::USERNAME_PROMPT);
        } else {
            self.log_in(sid, user);
        }
    }

    /// The right password: `user` is online on `sid`, welcomed, given
    /// their offline mail (with `!queued end` after it if the session sent
    /// `!stamps`), and announced.
    fn log_in(&mut self, sid: SessionId, user: UserId) {
        self.set_stage(sid, Stage::LoggedIn(user));
        self.join(user, sid);
        let account = &mut self.users[user];
        account.failures = 0;
        let has_mail = !account.mailbox.is_empty();
        let stamps = self.sessions.get_mut(sid).is_some_and(|session| {
            session.end_pending = session.stamps;
            session.stamps
        });
        self.outbox.line(sid, protocol::WELCOME);
        if has_mail || stamps {
            self.outbox.backlog(sid);
        }
        self.announce(user, |user| Reply::LoggedIn { user });
    }

    fn set_stage(&mut self, sid: SessionId, stage: Stage) {
        if let Some(session) = self.sessions.get_mut(sid) {
            session.stage = stage;
        }
    }

    /// When a session is due to be closed for idleness: TIMEOUT after its
    /// last activity, or at its login deadline if that is earlier and it has
    /// not logged in.
    fn idle_due(&self, session: &Session) -> Instant {
        let idle = session.last_activity + self.config.timeout;
        match (session.stage, session.login_by) {
            (Stage::Username | Stage::Password(_) | Stage::Verifying(_), Some(login_by)) => {
                idle.min(login_by)
            }
            _ => idle,
        }
    }

    /// The idle timer of a session: closes it if it is due (see
    /// [`Chat::idle_due`]), arms it again for later if not.
    fn idle_check(&mut self, sid: SessionId, epoch: u64, now: Instant) {
        let Some(session) = self.sessions.get(sid).filter(|s| s.epoch == epoch) else {
            return;
        };
        let due = self.idle_due(session);
        if due > now {
            let group = session.group;
            self.arm_idle(group, due, sid, epoch);
            return;
        }
        let message = match session.stage {
            Stage::LoggedIn(_) => protocol::INACTIVITY_LOGOUT,
            Stage::Username | Stage::Password(_) | Stage::Verifying(_) => protocol::LOGIN_TIMED_OUT,
        };
        self.outbox.line(sid, message);
        self.close(sid, now);
    }

    /// Arms the idle timer of session `sid` (of `epoch`) in `group`.
    fn arm_idle(&mut self, group: u32, due: Instant, sid: SessionId, epoch: u64) {
        let timer = Timer::Idle {
            session: sid,
            epoch,
        };
        self.idle_heap_mut(group).arm(due, timer);
    }

    /// The idle timers of `group`, if it has any.
    pub(super) fn idle_heap(&self, group: u32) -> Option<&Deadlines<Timer>> {
        self.idle.get(group as usize)
    }

    /// The idle timers of `group`, made if needed.
    fn idle_heap_mut(&mut self, group: u32) -> &mut Deadlines<Timer> {
        let index = group as usize;
        if self.idle.len() <= index {
            self.idle.resize_with(index + 1, Deadlines::default);
        }
        &mut self.idle[index]
    }

    /// Ends `user`'s ban if it is over at `now`, with the failure count.
    fn lift_ban_if_over(&mut self, user: UserId, now: Instant) {
        let account = &mut self.users[user];
        if account.banned_until.is_some_and(|until| until <= now) {
            account.banned_until = None;
            account.failures = 0;
            self.outbox.record(&Record::BanCleared {
                user: &account.name,
            });
        }
    }

    /// Ends the session and asks the server to close its connection once
    /// what was queued for it is flushed.
    pub(super) fn close(&mut self, sid: SessionId, now: Instant) {
        self.end_session(sid, now);
        self.outbox.close(sid);
    }

    /// The one place a session ends: the user goes offline, their last-seen
    /// time is recorded and the other users are told, exactly once because
    /// the session is gone afterwards.
    pub(super) fn end_session(&mut self, sid: SessionId, now: Instant) {
        if let Some(user) = self.end_session_quietly(sid, now) {
            self.announce(user, |user| Reply::LoggedOut { user });
        }
    }

    /// Ends the session without telling anyone; returns the user it was
    /// logged in as.
    fn end_session_quietly(&mut self, sid: SessionId, now: Instant) -> Option<UserId> {
        let session = self.sessions.take(sid)?;
        let Stage::LoggedIn(user) = session.stage else {
            return None;
        };
        self.leave(user, now);
        Some(user)
    }
}
