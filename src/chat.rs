//! The chat domain: accounts, logins and bans, who is online, block lists,
//! offline mailboxes, and every rule of `protocol.md` about them.
//!
//! [`Chat`] is pure and synchronous. It never touches a socket and never
//! reads the clock: every call takes `now`, and every reaction is pushed
//! into an [`Outbox`] of [`Effect`]s (send these bytes to that session,
//! close that session) that the server drains. It owns the idle and ban
//! timers as a [`Deadlines`] heap, and [`Chat::next_deadline`] tells the
//! poll loop how long it may sleep.
//!
//! A session is one connection, named by the [`SessionId`] the server gives
//! it; it becomes a *user* once login succeeds. Every way a session ends
//! goes through one function (`end_session`), which is the only place that
//! announces `<user> logged out`, so that announcement happens exactly
//! once per session.
//!
//! Durable state — mailboxes, block lists and bans — changes only through
//! this module, so it is also where those changes are described as journal
//! [`Record`](crate::journal::record::Record)s. Once [`Chat::record_changes`] is called, every change
//! appends its record to the outbox ([`Outbox::records`]), and every reply
//! that promises a change (the "will be delivered" line, `<user> is
//! blocked`, `<user> is unblocked`, the ban) names its session in
//! [`Outbox::held`]: the server must not let that session's output out
//! before the records are durable. While the server cannot write them
//! ([`Chat::set_storage_available`]), durable commands are refused and
//! change nothing. Stored mail is bounded per mailbox and in total
//! ([`ChatConfig::store_max`]).
//! At start the server rebuilds the state with [`Chat::apply_record`], and
//! compacts the journal with [`Chat::snapshot`] or, while serving, a
//! [`SnapshotCursor`] a slice at a time. Records about accounts no longer
//! in the credentials file are kept (such an account cannot log in, and
//! commands do not see it) until it comes back, unless
//! [`ChatConfig::prune_removed`] drops them.
//!
//! Offline mail is not rendered at login. The login emits
//! [`Effect::Backlog`]; the server then pulls the mailbox at the pace the
//! recipient reads ([`Chat::backlog`]) and reports what reached the socket
//! ([`Chat::backlog_written`]), which is when a message leaves the
//! mailbox. Whatever else is sent to the session meanwhile waits behind
//! the backlog. A session that sent `!stamps` at the username prompt gets
//! each message with the wall-clock time it was stored at (the server
//! gives the domain a [`WallClock`] with [`Chat::set_wall_clock`]) and a
//! last line `!queued end`.
//!
//! Per-address limits: failed passwords are counted per address
//! ([`ChatConfig::max_failures_per_ip`]) unless the connection is trusted,
//! and every connection must finish logging in within
//! [`ChatConfig::login_timeout`] of connecting.
//!
//! Private messaging is only introduced here: a session that sent
//! `privateport` may `startprivate`, and the domain sends both clients a
//! `!private` line with the peer's address (the connection's IP, given to
//! [`Chat::connect`], and the registered port) and a fresh token drawn
//! from a [`TokenSource`], the one input that is not a call argument.
//! Nothing about it is durable and the private messages never pass
//! through the server.
//!
//! The domain is split by idea, one submodule each: `outbox` (what it
//! answers with), `clock` ([`WallClock`]), `users` and `sessions` (the
//! state of accounts and of connections), `login` (the dialogue, bans,
//! the idle timer, the end of a session), `commands`, `presence`
//! (announcements, `whoelse`), `mail` (offline mail and its bounds),
//! `private` (introductions), `records` and `snapshot` (the durable state
//! as records), `state` (the whole state as bytes, which a node of a
//! cluster loads to join the others: [`Chat::save_state`],
//! [`Chat::load_state`]), over `mailbox` and `addresses`. Every line it sends is
//! spelled by [`crate::protocol`]: its constants and its [`Reply`]s.
//!
//! [`Reply`]: crate::protocol::Reply

mod addresses;
mod clock;
mod commands;
mod login;
mod mail;
mod mailbox;
mod outbox;
mod presence;
mod private;
mod records;
mod sessions;
mod snapshot;
mod state;
mod users;

use std::time::{Duration, Instant};

use crate::credentials::Account;
use crate::deadlines::Deadlines;
use crate::protocol::{self, LineError};
use crate::token::{self, TokenSource};
use addresses::FailureWindows;
use mail::Storage;
use presence::Presence;
use sessions::{Sessions, Stage};
use users::{UserId, Users};

pub use clock::WallClock;
pub use mail::BacklogLine;
pub use mailbox::{cost as message_cost, MESSAGE_OVERHEAD};
pub use outbox::{Effect, Outbox, Verification};
pub use records::Replayed;
pub use snapshot::SnapshotCursor;
pub use state::StateError;

/// The server's name for one connection (its slab key). The server must not
/// reuse an id until it has called [`Chat::disconnect`] for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub usize);

/// The domain's durations and limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ChatConfig {
    /// How long a username stays banned after three wrong passwords; also
    /// the window of the per-address failure count.
    pub block_duration: Duration,
    /// How long a connection may send no non-empty line before it is closed.
    pub timeout: Duration,
    /// How long after connecting a login must be complete, however much
    /// the client types.
    pub login_timeout: Duration,
    /// Failed passwords an untrusted address may make per
    /// `block_duration`; past them its passwords are refused.
    pub max_failures_per_ip: u32,
    /// Most messages a mailbox holds.
    pub mailbox_max: usize,
    /// Most bytes of stored mail in all mailboxes together, each message
    /// costing [`message_cost`].
    pub store_max: u64,
    /// Drop, while loading, the records about accounts that are no longer
    /// in the credentials file, instead of keeping them.
    pub prune_removed: bool,
}

impl ChatConfig {
    /// The two durations of the command line, with the server's default
    /// limits (see [`crate::server::defaults`]).
    pub fn new(block_duration: Duration, timeout: Duration) -> ChatConfig {
        use crate::server::defaults;
        ChatConfig {
            block_duration,
            timeout,
            login_timeout: defaults::LOGIN_TIMEOUT,
            max_failures_per_ip: defaults::MAX_FAILURES_PER_IP,
            mailbox_max: defaults::MAILBOX_MAX,
            store_max: defaults::STORE_MAX,
            prune_removed: false,
        }
    }
}

/// What a heap entry was armed for; checked against the state when it pops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The session's idle timeout, or its login deadline if that is
    /// earlier and it has not logged in.
    Idle { session: SessionId, epoch: u64 },
    /// The end of a user's ban.
    BanEnd(UserId),
}

/// The whole domain state. See the module documentation.
#[derive(Debug)]
pub struct Chat {
    config: ChatConfig,
    /// Every account, and the users kept only for their records.
    users: Users,
    /// The connections, from `connect` until their session ends.
    sessions: Sessions,
    /// Who is online, and who left when.
    presence: Presence,
    /// Failed passwords per untrusted address.
    failures: FailureWindows,
    /// Ban ends.
    deadlines: Deadlines<Timer>,
    /// Idle timeouts and login deadlines, per group of sessions (see
    /// [`Chat::connect_in`]).
    idle: Vec<Deadlines<Timer>>,
    /// What the calls since the server last drained it produced.
    outbox: Outbox,
    /// Stored mail, and whether durable changes can be written.
    storage: Storage,
    /// Draws the tokens of private-messaging introductions.
    tokens: TokenSource,
    /// A token given with the line being handled ([`Chat::line_drawn`]),
    /// used instead of drawing one.
    given_token: Option<Option<[u8; token::TOKEN_BYTES]>>,
}

impl Chat {
    /// A domain with these accounts (usernames must be unique, as
    /// `credentials::parse` guarantees), nobody connected, no records,
    /// and tokens from the operating system's random number generator.
    pub fn new(accounts: Vec<Account>, config: ChatConfig) -> Chat {
        Chat {
            config,
            users: Users::new(accounts),
            sessions: Sessions::default(),
            presence: Presence::default(),
            failures: FailureWindows::default(),
            deadlines: Deadlines::default(),
            idle: Vec::new(),
            outbox: Outbox::default(),
            storage: Storage::default(),
            tokens: token::os_random,
            given_token: None,
        }
    }

    /// Replaces where the tokens of private-messaging introductions come
    /// from, so that tests can predict them; the default is
    /// [`token::os_random`].
    pub fn set_token_source(&mut self, source: TokenSource) {
        self.tokens = source;
    }

    /// Tells the domain whether durable changes can be written. While they
    /// cannot (the journal is failing), offline `message`, `block` and
    /// `unblock` are refused with `Error. Server storage is unavailable`
    /// and change nothing; changes that cannot be refused (a ban, mail
    /// leaving a mailbox) still happen and wait for the commit.
    pub fn set_storage_available(&mut self, available: bool) {
        self.storage.available = available;
    }

    /// Bytes of stored mail, as counted against
    /// [`ChatConfig::store_max`].
    pub fn stored_bytes(&self) -> u64 {
        self.storage.stored
    }

    /// The effects produced since the last [`Outbox::clear`].
    pub fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// When the earliest timer is due; the poll loop must call
    /// [`Chat::expire`] no later than that.
    pub fn next_deadline(&self) -> Option<Instant> {
        let idle = self.idle.iter().filter_map(Deadlines::next);
        idle.chain(self.deadlines.next()).min()
    }

    /// When the earliest timer that [`Chat::expire_group`] of `group` fires
    /// is due: an idle timeout of one of its sessions, or a ban end.
    pub fn next_deadline_of(&self, group: u32) -> Option<Instant> {
        let idle = self.idle_heap(group).and_then(Deadlines::next);
        idle.into_iter().chain(self.deadlines.next()).min()
    }

    /// How many users are logged in.
    pub fn online_count(&self) -> usize {
        self.presence.online.len()
    }

    /// How many messages are queued for `name`.
    pub fn mailbox_len(&self, name: &str) -> usize {
        self.users
            .id(name)
            .map_or(0, |u| self.users[u].mailbox.len())
    }

    /// Whether `name` is logged in.
    pub fn is_online(&self, name: &str) -> bool {
        self.users
            .id(name)
            .is_some_and(|u| self.users[u].session.is_some())
    }

    /// Whether session `sid` has logged in.
    pub fn logged_in(&self, sid: SessionId) -> bool {
        self.sessions
            .get(sid)
            .is_some_and(|session| matches!(session.stage, Stage::LoggedIn(_)))
    }

    /// A complete non-empty line from `sid`, already decoded by
    /// [`protocol::decode_line`].
    pub fn line(&mut self, sid: SessionId, line: &str, now: Instant) {
        let Some(stage) = self.touch(sid, now) else {
            return;
        };
        match stage {
            Stage::Username => self.username(sid, line),
            Stage::Password(user) => self.password(sid, user, line, now),
            // The server reads nothing more from a session whose password
            // is being verified; a line that comes anyway waits for nobody.
            Stage::Verifying(_) => {}
            Stage::LoggedIn(user) => match protocol::parse(line) {
                Ok(command) => self.command(sid, user, command, now),
                Err(error) => self.outbox.line(sid, error.text()),
            },
        }
    }

    /// A line from `sid`, like [`Chat::line`], with the token its
    /// `startprivate` (if it is one) introduces with, drawn by whoever
    /// owns the connection (`None`: no randomness was available), instead
    /// of one drawn here: in a cluster every replica handles the line, and
    /// all must send the same token.
    pub fn line_drawn(
        &mut self,
        sid: SessionId,
        line: &str,
        token: Option<[u8; token::TOKEN_BYTES]>,
        now: Instant,
    ) {
        self.given_token = Some(token);
        self.line(sid, line, now);
        self.given_token = None;
    }

    /// A line that could not be read as text. It counts as activity; during
    /// login the prompt is repeated and no password failure is counted.
    pub fn line_error(&mut self, sid: SessionId, error: LineError, now: Instant) {
        let Some(stage) = self.touch(sid, now) else {
            return;
        };
        self.outbox.line(sid, error.text());
        self.reprompt(sid, stage);
    }
}

#[cfg(test)]
mod tests;
