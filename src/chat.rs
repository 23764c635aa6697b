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
//! [`Record`]s. Once [`Chat::record_changes`] is called, every change
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
//! the backlog.
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

mod addresses;
mod mailbox;
mod snapshot;

use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant, SystemTime};

use crate::credentials::Account;
use crate::deadlines::Deadlines;
use crate::journal::record::{self, Record};
use crate::protocol::{self, Command, LineError};
use crate::token::{self, Hex, TokenSource};
use crate::trust::IpKey;
use addresses::FailureWindows;
use mailbox::Mailbox;
pub use mailbox::{cost as message_cost, MESSAGE_OVERHEAD};
pub use snapshot::SnapshotCursor;

/// The server's name for one connection (its slab key). The server must not
/// reuse an id until it has called [`Chat::disconnect`] for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SessionId(pub usize);

/// Index of an account in file order; interned so that block checks and
/// presence lists compare integers, not strings.
type UserId = u32;

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

/// A reading of the wall clock paired with the [`Instant`] it was taken
/// at. Bans are timed with `Instant`s inside the domain and with wall-clock
/// time on disk, so that a ban still ends at its real time after a restart;
/// this pairing converts between the two at the edges.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WallClock {
    /// The monotonic reading.
    pub at: Instant,
    /// The wall clock at `at`, in milliseconds since the Unix epoch.
    pub unix_ms: u64,
}

impl WallClock {
    /// Pairs `at` with `wall`, the wall clock read at the same moment (a
    /// time before the epoch counts as the epoch).
    pub fn new(at: Instant, wall: SystemTime) -> WallClock {
        let since_epoch = wall
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or(Duration::ZERO);
        WallClock {
            at,
            unix_ms: u64::try_from(since_epoch.as_millis()).unwrap_or(u64::MAX),
        }
    }

    /// The wall-clock time of `t`, in milliseconds since the epoch.
    pub fn unix_ms(&self, t: Instant) -> u64 {
        if t >= self.at {
            let ahead = u64::try_from((t - self.at).as_millis()).unwrap_or(u64::MAX);
            self.unix_ms.saturating_add(ahead)
        } else {
            let behind = u64::try_from((self.at - t).as_millis()).unwrap_or(u64::MAX);
            self.unix_ms.saturating_sub(behind)
        }
    }

    /// The `Instant` of a wall-clock time, or `None` if it is not later
    /// than this reading.
    pub fn instant(&self, unix_ms: u64) -> Option<Instant> {
        let ahead = unix_ms.checked_sub(self.unix_ms).filter(|&ms| ms > 0)?;
        self.at.checked_add(Duration::from_millis(ahead))
    }
}

/// One thing the server must do on behalf of the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Append the bytes `text` of [`Outbox::text`] to the session's output.
    Send {
        /// The recipient.
        to: SessionId,
        /// Where the bytes are in the outbox's text.
        text: Range<usize>,
    },
    /// Flush the session's pending output, then close its connection. The
    /// session is already over in the domain.
    Close(SessionId),
    /// The session just logged in and has offline mail: write it from
    /// [`Chat::backlog`] at the pace the client reads, reporting what was
    /// written with [`Chat::backlog_written`], and keep everything sent to
    /// the session after this effect until the backlog is written.
    Backlog(SessionId),
}

/// What [`Chat::apply_record`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// Applied to accounts of the credentials file.
    Applied,
    /// Applied, and it names an account that is no longer in the
    /// credentials file: kept for it, in case it comes back.
    Removed,
    /// It names an account that is no longer in the credentials file, and
    /// removed accounts are pruned: ignored.
    Dropped,
}

/// The effects of the calls since the server last drained it. The text of
/// every `Send` lives in one shared buffer, so a line sent to a thousand
/// users is rendered once and costs no allocation per recipient.
#[derive(Debug, Default)]
pub struct Outbox {
    text: Vec<u8>,
    effects: Vec<Effect>,
    /// Whether changes to durable state produce records.
    recording: bool,
    /// Framed journal records of the changes, in order.
    records: Vec<u8>,
    /// Sessions whose output must wait until `records` are durable.
    held: Vec<SessionId>,
}

impl Outbox {
    /// The effects in the order they happened.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// The bytes of a `Send` effect.
    pub fn text(&self, range: Range<usize>) -> &[u8] {
        &self.text[range]
    }

    /// The journal records of the changes made (framed, see
    /// [`record::encode`]); empty unless [`Chat::record_changes`] was
    /// called.
    pub fn records(&self) -> &[u8] {
        &self.records
    }

    /// Sessions that were sent a reply promising a change recorded in
    /// [`Outbox::records`]: none of their output may be written before
    /// those records are durable. A session may be listed more than once.
    pub fn held(&self) -> &[SessionId] {
        &self.held
    }

    /// Forgets every effect, its text, the records and the held sessions,
    /// keeping the buffers' capacity for reuse.
    pub fn clear(&mut self) {
        self.text.clear();
        self.clear_effects();
    }

    /// Forgets the effects, records and held sessions but keeps the text,
    /// so that the server can still copy ranges it has not copied yet (it
    /// coalesces consecutive lines for one recipient into one copy).
    pub fn clear_effects(&mut self) {
        self.effects.clear();
        self.records.clear();
        self.held.clear();
    }

    /// Bytes of text held.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// Renders `args` once, ending it with a newline, and returns where it
    /// is, ready to be sent to any number of sessions.
    fn render(&mut self, args: std::fmt::Arguments<'_>) -> Range<usize> {
        let start = self.text.len();
        // Writing into a Vec<u8> through fmt::Write cannot fail.
        let mut out = Utf8Sink(&mut self.text);
        let _ = out.write_fmt(args);
        self.text.push(b'\n');
        start..self.text.len()
    }

    fn send_range(&mut self, to: SessionId, text: Range<usize>) {
        self.effects.push(Effect::Send { to, text });
    }

    /// Sends one line (a newline is added).
    fn line(&mut self, to: SessionId, line: &str) {
        self.line_args(to, format_args!("{line}"));
    }

    /// Renders and sends one line (a newline is added).
    fn line_args(&mut self, to: SessionId, args: std::fmt::Arguments<'_>) {
        let range = self.render(args);
        self.send_range(to, range);
    }

    /// Appends the record of a change, if changes are recorded.
    fn record(&mut self, change: &Record<'_>) {
        if self.recording {
            record::encode(change, &mut self.records);
        }
    }

    /// Keeps `sid`'s output until the records are durable, if changes are
    /// recorded.
    fn hold(&mut self, sid: SessionId) {
        if self.recording {
            self.held.push(sid);
        }
    }

    /// Sends text with no newline: the login prompts.
    fn prompt(&mut self, to: SessionId, prompt: &str) {
        let start = self.text.len();
        self.text.extend_from_slice(prompt.as_bytes());
        self.send_range(to, start..self.text.len());
    }
}

/// `fmt::Write` into a byte vector.
struct Utf8Sink<'a>(&'a mut Vec<u8>);

impl std::fmt::Write for Utf8Sink<'_> {
    fn write_str(&mut self, s: &str) -> std::fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// Per-account state, kept for the life of the server.
#[derive(Debug)]
struct User {
    name: Box<str>,
    /// `None` for an account that is no longer in the credentials file but
    /// still has records: it cannot log in and commands do not see it.
    password: Option<Box<str>>,
    /// The session this user is logged in on.
    session: Option<SessionId>,
    /// Position in `Chat::online` while logged in.
    online_slot: usize,
    /// Consecutive wrong passwords since the last login or ban.
    failures: u8,
    /// Set while the username is banned.
    banned_until: Option<Instant>,
    /// Users this user blocked, sorted.
    blocked: Vec<UserId>,
    /// When this user's last session ended.
    last_seen: Option<Instant>,
    /// Messages that arrived while offline.
    mailbox: Mailbox,
}

impl User {
    fn new(name: Box<str>, password: Option<Box<str>>) -> User {
        User {
            name,
            password,
            session: None,
            online_slot: 0,
            failures: 0,
            banned_until: None,
            blocked: Vec::new(),
            last_seen: None,
            mailbox: Mailbox::default(),
        }
    }

    fn has_blocked(&self, other: UserId) -> bool {
        self.blocked.binary_search(&other).is_ok()
    }
}

/// One logged-in user, with what a broadcast or a presence line needs of
/// them, so that a fan-out to thousands of users reads one small array and
/// looks at a user's block list only if there is one.
#[derive(Debug, Clone, Copy)]
struct Online {
    user: UserId,
    session: SessionId,
    /// The user's block list is not empty.
    blocks_anyone: bool,
}

/// Where a session is in the login dialogue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Username,
    Password(UserId),
    LoggedIn(UserId),
}

#[derive(Debug)]
struct Session {
    stage: Stage,
    last_activity: Instant,
    /// The address the connection comes from: where a private session
    /// with this user is dialled.
    ip: IpAddr,
    /// Set by `privateport`: the session's client takes part in private
    /// messaging and listens on this port of `ip`.
    private_port: Option<u16>,
    /// The connection comes from a trusted address: its failed passwords
    /// are not counted against the address.
    trusted: bool,
    /// When it must have logged in (`None`: too far to count).
    login_by: Option<Instant>,
    /// Distinguishes this session from earlier ones with the same id, so a
    /// stale idle timer cannot touch a newer session.
    epoch: u64,
}

/// What a heap entry was armed for; checked against the state when it pops.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    /// The session's idle timeout, or its login deadline if that is
    /// earlier and it has not logged in.
    Idle {
        session: SessionId,
        epoch: u64,
    },
    BanEnd(UserId),
}

/// How many consecutive wrong passwords ban a username.
const MAX_FAILURES: u8 = 3;

/// The whole domain state. See the module documentation.
#[derive(Debug)]
pub struct Chat {
    config: ChatConfig,
    users: Vec<User>,
    by_name: HashMap<Box<str>, UserId>,
    /// Indexed by `SessionId`.
    sessions: Vec<Option<Session>>,
    /// The users logged in now, in no particular order.
    online: Vec<Online>,
    /// Users who have left, by when their last session ended: what
    /// `whoelsesince` reads besides `online`.
    departed: BTreeSet<(Instant, UserId)>,
    /// Failed passwords per untrusted address.
    failures: FailureWindows,
    deadlines: Deadlines<Timer>,
    next_epoch: u64,
    outbox: Outbox,
    /// Cost of the mail in all mailboxes (see [`message_cost`]).
    stored: u64,
    /// Whether durable changes can be written; see
    /// [`Chat::set_storage_available`].
    storage_available: bool,
    /// Set by [`Chat::record_changes`]: converts ban expiries for records.
    clock: Option<WallClock>,
    /// Draws the tokens of private-messaging introductions.
    tokens: TokenSource,
}

impl Chat {
    /// A domain with these accounts (usernames must be unique, as
    /// `credentials::parse` guarantees), nobody connected, no records,
    /// and tokens from the operating system's random number generator.
    pub fn new(accounts: Vec<Account>, config: ChatConfig) -> Chat {
        let users: Vec<User> = accounts
            .into_iter()
            .map(|a| User::new(a.username.into(), Some(a.password.into())))
            .collect();
        let by_name = users
            .iter()
            .enumerate()
            .map(|(id, u)| (u.name.clone(), id as UserId))
            .collect();
        Chat {
            config,
            users,
            by_name,
            sessions: Vec::new(),
            online: Vec::new(),
            departed: BTreeSet::new(),
            failures: FailureWindows::default(),
            deadlines: Deadlines::default(),
            next_epoch: 0,
            outbox: Outbox::default(),
            stored: 0,
            storage_available: true,
            clock: None,
            tokens: token::os_random,
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
        self.storage_available = available;
    }

    /// Bytes of stored mail, as counted against
    /// [`ChatConfig::store_max`].
    pub fn stored_bytes(&self) -> u64 {
        self.stored
    }

    /// From now on, every change to durable state appends its record to
    /// the outbox and holds the replies that promise it (see the module
    /// documentation). `clock` converts ban expiries to wall-clock time.
    pub fn record_changes(&mut self, clock: WallClock) {
        self.clock = Some(clock);
        self.outbox.recording = true;
    }

    /// Replays one record read from disk, at start, before anyone
    /// connects. A ban whose wall-clock end is not after `clock` is over
    /// and ignored. A record naming an account that is not in the
    /// credentials file is kept for it ([`Replayed::Removed`]), or dropped
    /// if the configuration prunes them.
    pub fn apply_record(&mut self, change: &Record<'_>, clock: WallClock) -> Replayed {
        let names: &[&str] = match change {
            Record::MailboxAppend { recipient, .. }
            | Record::MailboxTaken { recipient, .. }
            | Record::MailboxDelivered { recipient } => &[recipient],
            Record::Block { user, target } | Record::Unblock { user, target } => &[user, target],
            Record::Ban { user, .. } | Record::BanCleared { user } => &[user],
        };
        let mut replayed = Replayed::Applied;
        for name in names {
            if self.user_id(name).is_some_and(|u| self.is_account(u)) {
                continue;
            }
            if self.config.prune_removed {
                return Replayed::Dropped;
            }
            replayed = Replayed::Removed;
            if self.user_id(name).is_none() {
                let id = self.users.len() as UserId;
                self.by_name.insert((*name).into(), id);
                self.users.push(User::new((*name).into(), None));
            }
        }
        match *change {
            Record::MailboxAppend {
                recipient,
                seq,
                sender,
                text,
            } => {
                let them = self.by_name[recipient] as usize;
                let line = format!("{sender}: {text}").into_boxed_str();
                if let Some(added) = self.users[them].mailbox.replay_append(seq, line) {
                    self.stored += added;
                }
            }
            Record::MailboxTaken { recipient, through } => {
                let them = self.by_name[recipient] as usize;
                self.stored -= self.users[them].mailbox.take_through(through);
            }
            Record::MailboxDelivered { recipient } => {
                let them = self.by_name[recipient] as usize;
                self.stored -= self.users[them].mailbox.take_all();
            }
            Record::Block { user, target } | Record::Unblock { user, target } => {
                let (me, them) = (self.by_name[user], self.by_name[target]);
                let blocked = &mut self.users[me as usize].blocked;
                match (blocked.binary_search(&them), change) {
                    (Err(at), Record::Block { .. }) => blocked.insert(at, them),
                    (Ok(at), Record::Unblock { .. }) => {
                        blocked.remove(at);
                    }
                    _ => {}
                }
                self.note_block_list(me);
            }
            Record::Ban {
                user,
                until_unix_ms,
            } => {
                let me = self.by_name[user];
                if let Some(until) = clock.instant(until_unix_ms) {
                    let account = &mut self.users[me as usize];
                    account.banned_until = Some(until);
                    account.failures = 0;
                    self.deadlines.arm(until, Timer::BanEnd(me));
                }
            }
            Record::BanCleared { user } => {
                let me = self.by_name[user];
                self.users[me as usize].banned_until = None;
            }
        }
        replayed
    }

    /// The live durable state as records, for a snapshot: every queued
    /// message, every block, every ban still running at `clock`.
    /// Replaying them into a domain with the same accounts rebuilds it.
    pub fn snapshot(&self, clock: WallClock) -> impl Iterator<Item = Record<'_>> + '_ {
        let mut cursor = SnapshotCursor::default();
        std::iter::from_fn(move || cursor.next(self, clock))
    }

    /// The effects produced since the last [`Outbox::clear`].
    pub fn outbox(&mut self) -> &mut Outbox {
        &mut self.outbox
    }

    /// When the earliest timer is due; the poll loop must call
    /// [`Chat::expire`] no later than that.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.deadlines.next()
    }

    /// How many users are logged in.
    pub fn online_count(&self) -> usize {
        self.online.len()
    }

    /// How many messages are queued for `name`.
    pub fn mailbox_len(&self, name: &str) -> usize {
        self.user_id(name)
            .map_or(0, |u| self.users[u as usize].mailbox.len())
    }

    /// Whether `name` is logged in.
    pub fn is_online(&self, name: &str) -> bool {
        self.user_id(name)
            .is_some_and(|u| self.users[u as usize].session.is_some())
    }

    /// A new connection from `ip`: asks for the username and starts its
    /// idle timer and login deadline. `ip` is where the user's client is
    /// dialled for private messaging; an IPv4-mapped IPv6 address (an IPv4
    /// client of a dual-stack listener) is kept as the IPv4 address, which
    /// every peer can dial. A `trusted` connection's failed passwords are
    /// not counted against its address.
    pub fn connect(&mut self, sid: SessionId, ip: IpAddr, trusted: bool, now: Instant) {
        let epoch = self.next_epoch;
        self.next_epoch += 1;
        if self.sessions.len() <= sid.0 {
            self.sessions.resize_with(sid.0 + 1, || None);
        }
        let session = Session {
            stage: Stage::Username,
            last_activity: now,
            ip: ip.to_canonical(),
            private_port: None,
            trusted,
            login_by: now.checked_add(self.config.login_timeout),
            epoch,
        };
        let due = self.idle_due(&session);
        self.sessions[sid.0] = Some(session);
        self.deadlines.arm(
            due,
            Timer::Idle {
                session: sid,
                epoch,
            },
        );
        self.outbox.prompt(sid, protocol::USERNAME_PROMPT);
    }

    /// The connection is gone (closed by the peer, failed, or cut off by a
    /// limit). Ends the session if it was still going; a no-op for a session
    /// the domain closed itself.
    pub fn disconnect(&mut self, sid: SessionId, now: Instant) {
        self.end_session(sid, now);
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
            Stage::LoggedIn(user) => match protocol::parse(line) {
                Ok(command) => self.command(sid, user, command, now),
                Err(error) => {
                    let range = self.outbox.render(format_args!("{error}"));
                    self.outbox.send_range(sid, range);
                }
            },
        }
    }

    /// A line that could not be read as text. It counts as activity; during
    /// login the prompt is repeated and no password failure is counted.
    pub fn line_error(&mut self, sid: SessionId, error: LineError, now: Instant) {
        let Some(stage) = self.touch(sid, now) else {
            return;
        };
        let range = self.outbox.render(format_args!("{error}"));
        self.outbox.send_range(sid, range);
        self.reprompt(sid, stage);
    }

    /// Fires every timer due at `now`: idle timeouts and ban expiries.
    pub fn expire(&mut self, now: Instant) {
        while let Some((_, timer)) = self.deadlines.pop_due(now) {
            match timer {
                Timer::Idle { session, epoch } => self.idle_check(session, epoch, now),
                Timer::BanEnd(user) => self.lift_ban_if_over(user, now),
            }
        }
    }

    /// Tells every session that the server stops and closes it, without
    /// presence announcements (everyone is leaving at once).
    pub fn shutdown(&mut self, now: Instant) {
        for index in 0..self.sessions.len() {
            if self.sessions[index].is_some() {
                let sid = SessionId(index);
                self.outbox.line(sid, protocol::SHUTTING_DOWN);
                self.end_session_quietly(sid, now);
                self.outbox.effects.push(Effect::Close(sid));
            }
        }
    }

    /// The id of `name`, an account or one kept only for its records.
    fn user_id(&self, name: &str) -> Option<UserId> {
        self.by_name.get(name).copied()
    }

    /// The id of `name` if it is an account of the credentials file: the
    /// only users logins and commands know.
    fn account_id(&self, name: &str) -> Option<UserId> {
        self.user_id(name).filter(|&u| self.is_account(u))
    }

    fn is_account(&self, user: UserId) -> bool {
        self.users[user as usize].password.is_some()
    }

    /// Records activity and returns the session's stage, if it exists.
    fn touch(&mut self, sid: SessionId, now: Instant) -> Option<Stage> {
        let session = self.sessions.get_mut(sid.0)?.as_mut()?;
        session.last_activity = now;
        Some(session.stage)
    }

    fn session(&self, sid: SessionId) -> Option<&Session> {
        self.sessions.get(sid.0)?.as_ref()
    }

    /// Whether the session sent `privateport`: its client takes part in
    /// private messaging.
    fn takes_private(&self, sid: SessionId) -> bool {
        self.session(sid)
            .is_some_and(|session| session.private_port.is_some())
    }

    fn set_stage(&mut self, sid: SessionId, stage: Stage) {
        if let Some(Some(session)) = self.sessions.get_mut(sid.0) {
            session.stage = stage;
        }
    }

    fn reprompt(&mut self, sid: SessionId, stage: Stage) {
        match stage {
            Stage::Username => self.outbox.prompt(sid, protocol::USERNAME_PROMPT),
            Stage::Password(_) => self.outbox.prompt(sid, protocol::PASSWORD_PROMPT),
            Stage::LoggedIn(_) => {}
        }
    }

    fn username(&mut self, sid: SessionId, line: &str) {
        match self.account_id(line) {
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

    fn password(&mut self, sid: SessionId, user: UserId, line: &str, now: Instant) {
        let address = self
            .session(sid)
            .filter(|session| !session.trusted)
            .map(|session| IpKey::of(session.ip));
        if let Some(key) = address {
            if self
                .failures
                .over_limit(key, self.config.max_failures_per_ip, now)
            {
                self.outbox.line(sid, protocol::TOO_MANY_FAILURES);
                return self.close(sid, now);
            }
        }
        self.lift_ban_if_over(user, now);
        let block_duration = self.config.block_duration;
        let account = &mut self.users[user as usize];
        if account.banned_until.is_some() {
            self.outbox.line(sid, protocol::ACCOUNT_BANNED);
            self.close(sid, now);
        } else if account.password.as_deref() != Some(line) {
            if let Some(key) = address {
                self.failures.note_failure(key, block_duration, now);
            }
            let account = &mut self.users[user as usize];
            account.failures += 1;
            if account.failures >= MAX_FAILURES {
                let until = now + block_duration;
                account.banned_until = Some(until);
                self.deadlines.arm(until, Timer::BanEnd(user));
                if let Some(clock) = &self.clock {
                    self.outbox.record(&Record::Ban {
                        user: &account.name,
                        until_unix_ms: clock.unix_ms(until),
                    });
                    self.outbox.hold(sid);
                }
                self.outbox.line(sid, protocol::PASSWORD_BANNED);
                self.close(sid, now);
            } else {
                self.outbox.line(sid, protocol::INVALID_PASSWORD);
                self.outbox.prompt(sid, protocol::PASSWORD_PROMPT);
            }
        } else if account.session.is_some() {
            self.set_stage(sid, Stage::Username);
            self.outbox.line(sid, protocol::ALREADY_LOGGED_IN);
            self.outbox.prompt(sid, protocol::USERNAME_PROMPT);
        } else {
            self.log_in(sid, user);
        }
    }

    fn log_in(&mut self, sid: SessionId, user: UserId) {
        self.set_stage(sid, Stage::LoggedIn(user));
        let slot = self.online.len();
        let account = &mut self.users[user as usize];
        self.online.push(Online {
            user,
            session: sid,
            blocks_anyone: !account.blocked.is_empty(),
        });
        account.session = Some(sid);
        account.online_slot = slot;
        account.failures = 0;
        let has_mail = !account.mailbox.is_empty();
        self.outbox.line(sid, protocol::WELCOME);
        if has_mail {
            self.outbox.effects.push(Effect::Backlog(sid));
        }
        self.announce(user, "logged in");
    }

    /// The lines of `sid`'s offline mail not yet reported written, oldest
    /// first, from the `from`th on (the server skips those it has already
    /// queued). Empty once the backlog is written, or if `sid` is not
    /// logged in.
    pub fn backlog(&self, sid: SessionId, from: usize) -> impl Iterator<Item = &str> + '_ {
        let user = match self.session(sid).map(|s| s.stage) {
            Some(Stage::LoggedIn(user)) => Some(&self.users[user as usize]),
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
        let Some(Stage::LoggedIn(user)) = self.session(sid).map(|s| s.stage) else {
            return;
        };
        let account = &mut self.users[user as usize];
        if let Some((through, freed)) = account.mailbox.take_oldest(n) {
            self.stored -= freed;
            self.outbox.record(&Record::MailboxTaken {
                recipient: &account.name,
                through,
            });
        }
    }

    /// Tells every other online user, except those `subject` blocked, that
    /// `subject` logged in or out.
    fn announce(&mut self, subject: UserId, what: &str) {
        let subject_user = &self.users[subject as usize];
        let range = self
            .outbox
            .render(format_args!("{} {what}", subject_user.name));
        let subject_blocks = !subject_user.blocked.is_empty();
        for observer in &self.online {
            if observer.user == subject
                || (subject_blocks && subject_user.has_blocked(observer.user))
            {
                continue;
            }
            self.outbox.effects.push(Effect::Send {
                to: observer.session,
                text: range.clone(),
            });
        }
    }

    fn command(&mut self, sid: SessionId, me: UserId, command: Command<'_>, now: Instant) {
        match command {
            Command::Message { to, text } => self.message(sid, me, to, text),
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
                self.outbox.effects.push(Effect::Close(sid));
            }
            Command::Help => {
                let private: &[&str] = if self.takes_private(sid) {
                    protocol::PRIVATE_HELP
                } else {
                    &[]
                };
                for line in protocol::HELP.iter().chain(private) {
                    self.outbox.line(sid, line);
                }
            }
            Command::PrivatePort { port } => {
                if let Some(Some(session)) = self.sessions.get_mut(sid.0) {
                    session.private_port = Some(port);
                }
            }
            Command::StartPrivate { user } => self.start_private(sid, me, user),
            // The client handles these itself when a session exists.
            Command::Private { to: user, .. } | Command::StopPrivate { user } => {
                if self.takes_private(sid) {
                    self.outbox.line(sid, &protocol::private_not_enabled(user));
                } else {
                    self.outbox.line(sid, protocol::PRIVATE_NEEDS_CLIENT);
                }
            }
        }
    }

    /// `startprivate`: the checks in the order the README lists them,
    /// then the introduction, to the target first so that its client knows
    /// the token before the starter's client can present it. The address
    /// never reaches a user the target blocked.
    fn start_private(&mut self, sid: SessionId, me: UserId, name: &str) {
        if !self.takes_private(sid) {
            return self.outbox.line(sid, protocol::PRIVATE_NEEDS_CLIENT);
        }
        let Some(them) = self.other_user(sid, me, name, protocol::CANNOT_PRIVATE_SELF) else {
            return;
        };
        let target = &self.users[them as usize];
        if target.has_blocked(me) {
            return self.outbox.line_args(
                sid,
                format_args!("Error. Cannot start private messaging as {name} has blocked you"),
            );
        }
        let Some(their_sid) = target.session else {
            return self
                .outbox
                .line_args(sid, format_args!("Error. {name} is offline"));
        };
        let listening = self
            .session(their_sid)
            .and_then(|session| Some(SocketAddr::new(session.ip, session.private_port?)));
        let Some(address) = listening else {
            return self.outbox.line_args(
                sid,
                format_args!("Error. {name} cannot accept private messaging"),
            );
        };
        let Some(token) = (self.tokens)() else {
            return self.outbox.line(sid, protocol::PRIVATE_UNAVAILABLE);
        };
        let (prefix, token) = (protocol::PRIVATE_PREFIX, Hex(token));
        let starter = &self.users[me as usize].name;
        self.outbox.line_args(
            their_sid,
            format_args!("{prefix} {} {starter} {token}", protocol::PRIVATE_ACCEPT),
        );
        self.outbox.line_args(
            sid,
            format_args!(
                "{prefix} {} {name} {address} {token}",
                protocol::PRIVATE_CONNECT
            ),
        );
    }

    /// The user named `name` for a command of `me` that needs someone
    /// else; `None` once `sid` was told there is no such user, or
    /// `self_error` if it is `me`.
    fn other_user(
        &mut self,
        sid: SessionId,
        me: UserId,
        name: &str,
        self_error: &str,
    ) -> Option<UserId> {
        let Some(them) = self.account_id(name) else {
            self.outbox.line(sid, protocol::INVALID_USER);
            return None;
        };
        if them == me {
            self.outbox.line(sid, self_error);
            return None;
        }
        Some(them)
    }

    fn message(&mut self, sid: SessionId, me: UserId, to: &str, text: &str) {
        let Some(them) = self.other_user(sid, me, to, protocol::CANNOT_MESSAGE_SELF) else {
            return;
        };
        let recipient = &self.users[them as usize];
        if recipient.has_blocked(me) {
            return self.outbox.line(sid, protocol::MESSAGE_BLOCKED);
        }
        let sender = &self.users[me as usize].name;
        if let Some(their_sid) = recipient.session {
            let range = self.outbox.render(format_args!("{sender}: {text}"));
            return self.outbox.send_range(their_sid, range);
        }
        let line = format!("{sender}: {text}");
        let cost = message_cost(line.len());
        if !self.storage_available {
            return self.outbox.line(sid, protocol::STORAGE_UNAVAILABLE);
        }
        if recipient.mailbox.len() >= self.config.mailbox_max {
            return self
                .outbox
                .line_args(sid, format_args!("Error. {to}'s mailbox is full"));
        }
        if self.stored + cost > self.config.store_max {
            return self.outbox.line(sid, protocol::STORAGE_FULL);
        }
        let recipient = &mut self.users[them as usize];
        let seq = recipient.mailbox.push(line.into_boxed_str());
        self.stored += cost;
        self.outbox.record(&Record::MailboxAppend {
            recipient: &self.users[them as usize].name,
            seq: Some(seq),
            sender: &self.users[me as usize].name,
            text,
        });
        self.outbox.line_args(
            sid,
            format_args!("{to} is offline. Your message will be delivered when they log in"),
        );
        self.outbox.hold(sid);
    }

    fn broadcast(&mut self, sid: SessionId, me: UserId, text: &str) {
        let range = self
            .outbox
            .render(format_args!("{}: {text}", self.users[me as usize].name));
        let mut skipped = false;
        for other in &self.online {
            if other.user == me {
                continue;
            }
            if other.blocks_anyone && self.users[other.user as usize].has_blocked(me) {
                skipped = true;
            } else {
                self.outbox.effects.push(Effect::Send {
                    to: other.session,
                    text: range.clone(),
                });
            }
        }
        if skipped {
            self.outbox.line(sid, protocol::BROADCAST_PARTIAL);
        }
    }

    /// `whoelse` (no window) and `whoelsesince`: users online now or
    /// whose last session ended less than `window` ago, sorted, without
    /// `me` and without users who blocked `me`.
    /// Reads the users online and, for a window, those who left within it
    /// (`departed` is ordered by departure), never every account.
    fn who_else(&mut self, sid: SessionId, me: UserId, since: Option<Duration>, now: Instant) {
        let window = since.unwrap_or(Duration::ZERO);
        let online = self.online.iter().map(|o| o.user);
        let recent = self
            .departed
            .iter()
            .rev()
            .take_while(|&&(left, _)| now.saturating_duration_since(left) < window)
            .map(|&(_, user)| user)
            .filter(|&user| self.users[user as usize].session.is_none());
        let mut names: Vec<&str> = online
            .chain(recent)
            .filter(|&user| user != me)
            .map(|user| &self.users[user as usize])
            .filter(|user| !user.has_blocked(me))
            .map(|user| &*user.name)
            .collect();
        if names.is_empty() {
            // `whoelsesince 0` is still `whoelsesince`: it has its own reply.
            let none = match since {
                None => protocol::NO_OTHER_USERS,
                Some(_) => protocol::NO_OTHER_USERS_SINCE,
            };
            return self.outbox.line(sid, none);
        }
        names.sort_unstable();
        for name in names {
            let range = self.outbox.render(format_args!("{name}"));
            self.outbox.effects.push(Effect::Send {
                to: sid,
                text: range,
            });
        }
    }

    fn block(&mut self, sid: SessionId, me: UserId, name: &str) {
        let Some(them) = self.other_user(sid, me, name, protocol::CANNOT_BLOCK_SELF) else {
            return;
        };
        let blocked = &mut self.users[me as usize].blocked;
        let range = match blocked.binary_search(&them) {
            Ok(_) => self
                .outbox
                .render(format_args!("Error. {name} is already blocked")),
            Err(_) if !self.storage_available => {
                return self.outbox.line(sid, protocol::STORAGE_UNAVAILABLE);
            }
            Err(at) => {
                blocked.insert(at, them);
                self.outbox.record(&Record::Block {
                    user: &self.users[me as usize].name,
                    target: &self.users[them as usize].name,
                });
                self.outbox.hold(sid);
                self.outbox.render(format_args!("{name} is blocked"))
            }
        };
        self.outbox.send_range(sid, range);
        self.note_block_list(me);
    }

    fn unblock(&mut self, sid: SessionId, me: UserId, name: &str) {
        let Some(them) = self.other_user(sid, me, name, protocol::CANNOT_UNBLOCK_SELF) else {
            return;
        };
        let blocked = &mut self.users[me as usize].blocked;
        let range = match blocked.binary_search(&them) {
            Ok(_) if !self.storage_available => {
                return self.outbox.line(sid, protocol::STORAGE_UNAVAILABLE);
            }
            Ok(at) => {
                blocked.remove(at);
                self.outbox.record(&Record::Unblock {
                    user: &self.users[me as usize].name,
                    target: &self.users[them as usize].name,
                });
                self.outbox.hold(sid);
                self.outbox.render(format_args!("{name} is unblocked"))
            }
            Err(_) => self
                .outbox
                .render(format_args!("Error. {name} was not blocked")),
        };
        self.outbox.send_range(sid, range);
        self.note_block_list(me);
    }

    /// When a session is due to be closed for idleness: TIMEOUT after its
    /// last activity, or at its login deadline if that is earlier and it has
    /// not logged in.
    fn idle_due(&self, session: &Session) -> Instant {
        let idle = session.last_activity + self.config.timeout;
        match (session.stage, session.login_by) {
            (Stage::Username | Stage::Password(_), Some(login_by)) => idle.min(login_by),
            _ => idle,
        }
    }

    /// The idle timer of a session: closes it if it is due (see
    /// [`Chat::idle_due`]), arms it again for later if not.
    fn idle_check(&mut self, sid: SessionId, epoch: u64, now: Instant) {
        let Some(session) = self.session(sid).filter(|s| s.epoch == epoch) else {
            return;
        };
        let due = self.idle_due(session);
        if due > now {
            self.deadlines.arm(
                due,
                Timer::Idle {
                    session: sid,
                    epoch,
                },
            );
            return;
        }
        let message = match session.stage {
            Stage::LoggedIn(_) => protocol::INACTIVITY_LOGOUT,
            Stage::Username | Stage::Password(_) => protocol::LOGIN_TIMED_OUT,
        };
        self.outbox.line(sid, message);
        self.close(sid, now);
    }

    fn lift_ban_if_over(&mut self, user: UserId, now: Instant) {
        let account = &mut self.users[user as usize];
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
    fn close(&mut self, sid: SessionId, now: Instant) {
        self.end_session(sid, now);
        self.outbox.effects.push(Effect::Close(sid));
    }

    /// The one place a session ends: the user goes offline, their last-seen
    /// time is recorded and the other users are told, exactly once because
    /// the session is gone afterwards.
    fn end_session(&mut self, sid: SessionId, now: Instant) {
        if let Some(user) = self.end_session_quietly(sid, now) {
            self.announce(user, "logged out");
        }
    }

    /// Keeps `blocks_anyone` of an online user in step with their block
    /// list.
    fn note_block_list(&mut self, user: UserId) {
        let account = &self.users[user as usize];
        if account.session.is_some() {
            self.online[account.online_slot].blocks_anyone = !account.blocked.is_empty();
        }
    }

    /// Ends the session without telling anyone; returns the user it was
    /// logged in as.
    fn end_session_quietly(&mut self, sid: SessionId, now: Instant) -> Option<UserId> {
        let session = self.sessions.get_mut(sid.0)?.take()?;
        let Stage::LoggedIn(user) = session.stage else {
            return None;
        };
        let slot = self.users[user as usize].online_slot;
        self.online.swap_remove(slot);
        if let Some(moved) = self.online.get(slot) {
            self.users[moved.user as usize].online_slot = slot;
        }
        let account = &mut self.users[user as usize];
        account.session = None;
        if let Some(left) = account.last_seen.replace(now) {
            self.departed.remove(&(left, user));
        }
        self.departed.insert((now, user));
        Some(user)
    }
}

#[cfg(test)]
mod tests;
