//! A reference model of the chat domain and a checker that drives
//! [`Chat`] with random command sequences from several sessions and checks
//! it after every step. Used by `tests/chat_random.rs` (fixed seeds of
//! [`Rng`], which is a [`Source`]) and by the `chat` and `replicated` fuzz
//! targets (libFuzzer's bytes), so both check exactly the same things.
//!
//! A run is a stream of bytes (from a [`Source`]) decoded into operations:
//! connect, a line chosen from a small vocabulary of valid and invalid
//! commands (the private-messaging ones among them: `privateport`,
//! `startprivate`, and `private`/`stopprivate` reaching the server),
//! usernames and passwords, a line that cannot be decoded, disconnect,
//! advancing the clock (then, usually, `expire`), the server's part in
//! offline mail ([`Op::Mail`]) and its presence delay ([`Op::Release`]). The durations are
//! sub-second so that idle timeouts and ban ends happen within a run. Each
//! session connects from its own address ([`SESSION_IPS`]), so that an
//! introduction carrying the wrong session's address shows. The tokens of
//! introductions come from [`counted_token`], which the model predicts;
//! every eighth draw fails, as if the system had no randomness.
//!
//! The harness plays the server, whose output to a session is not just
//! what `Chat` sends it: after `Effect::Backlog` (a login with offline
//! mail) it pulls the mailbox with `Chat::backlog`, a few lines at a time,
//! and confirms some of the queued lines written (`Chat::backlog_written`),
//! as a client reading at its own pace would let it; what `Chat` sends the
//! session meanwhile is held and follows the whole backlog. A close gives
//! the backlog up and lets the held output out at once; a disconnect loses
//! it. Queued lines not confirmed are not written: they stay in the mailbox
//! and are handed out again at the next login. Presence lines
//! (`Effect::Notice`) are held as the server holds them for its
//! `--presence-delay`: anything else sent to the session lets them out
//! first, [`Op::Release`] (the delay running out, at any moment the bytes
//! choose) lets every held one out, and a disconnect loses them, so none
//! reaches the next connection in the slot. The model holds its expected
//! output the same way. After each step the checker verifies
//! (judging who may hear what on the `Send` effects `Chat` emitted, before
//! any holding, and the transcripts also on what the server wrote):
//!
//! - nothing is sent to, or closed on, a session that is not open, and no
//!   session is closed twice;
//! - a user is online in at most one session, and `is_online` and
//!   `online_count` agree with the model;
//! - `<user> logged out` of a leaving session reaches each observer at most
//!   once, and reaches every user online at that moment that the leaver has
//!   not blocked (and nobody else);
//! - no presence event reaches a user that its subject has blocked, and no
//!   live message reaches a user who blocked its sender (a backlog line
//!   may: the message was accepted before the block);
//! - a login emits `Backlog` exactly when the user's mailbox is not empty,
//!   right after the welcome;
//! - the backlog lines handed out from index `from` are the mailbox's from
//!   `from` on, in order: none skipped, reordered or handed out twice (the
//!   server's queued lines are not given again), and a short answer means
//!   the mailbox ends there;
//! - every line confirmed written is the user's oldest undelivered message,
//!   and only then does it leave the mailbox: `backlog_written` emits
//!   nothing, and after every step the mailboxes (`mailbox_len`, and
//!   `backlog(sid, 0)` of every session) equal the model's, so a backlog
//!   interrupted by a disconnect or a close leaves the rest, in order,
//!   for the next login;
//! - every message text is delivered at most once per user, live or
//!   confirmed from a backlog (a line queued but never written does not
//!   count: it comes again);
//! - the output held behind a backlog is released only once the whole
//!   backlog is written (or the session is closed), so a user gets the
//!   welcome, the mailbox oldest first, then everything else in order;
//!   the harness's backlog state (mode and queued lines) equals the
//!   model's after every step;
//! - a `!private` line only ever reaches a logged-in session that sent
//!   `privateport` (and that session has not ended since);
//! - the `!private connect` line, which carries the target's address,
//!   never reaches a user whom the target has blocked, and the address is
//!   the target session's IP and registered port;
//! - every token is 32 lowercase hex digits and is used for exactly one
//!   `accept`/`connect` pair, both in the same step, the `accept` (to the
//!   target, naming the starter) before the `connect` (to the starter,
//!   naming the target); the domain draws a token exactly when the model
//!   says, so never for a refused `startprivate`;
//! - what `Chat` sends every session, and what reaches it after the
//!   holding, equal the model's, byte for byte;
//! - `next_deadline` is never later than an idle timeout or a ban end, and
//!   `expire(now)` leaves nothing due at `now`.
//!
//! A harness made with [`Harness::reloading`] also replaces the domain,
//! after steps chosen by a seed of its own, by a copy loaded from its
//! saved state (`Chat::save_state`, `Chat::load_state`) by a process whose
//! clock pairs other instants with the same wall times, and goes on with
//! the copy: the checker must keep passing, and the run is the same
//! operations as without the reloads, so its [`Stats`] must be too.
//!
//! Within one `expire`, several sessions may time out; the order is the
//! implementation's choice, so the model follows the order in which the
//! timeout notices appear (after checking that exactly the idle sessions
//! timed out) and judges "online at that moment" by it.
//!
//! [`Harness::replicated`] adds the replicated mode of `cluster`: the same
//! operations also run on a cluster of two nodes, each a
//! [`Replica`](confab::cluster::replica::Replica) and its own [`Chat`] fed
//! one log of batches, and after every batch each node's effects on its
//! own sessions must be the single server's on them, byte for byte, and
//! both replicas must be in the single server's state (see that module).
//!
//! This module holds the constants, the types a run is made of and the
//! [`Harness`]; `generator` decodes the operations, `driver` runs them on
//! [`Chat`] and plays the server, `model` predicts what should happen,
//! `checker` judges what did; `reload` swaps the domain for a loaded copy,
//! and `cluster` replays it all through a cluster's log.

use std::cell::Cell;
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use confab::chat::{Chat, ChatConfig, Effect, SessionId};
use confab::credentials::Account;
use confab::protocol::{self, decode_line, Keyword, LineError};
use confab::token::TOKEN_BYTES;

use crate::rng::Rng;

mod checker;
mod cluster;
mod driver;
mod generator;
mod model;
mod reload;

/// Idle timeout of the domain under test.
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// Ban after three wrong passwords.
pub const BLOCK_DURATION: Duration = Duration::from_millis(300);
/// Sessions, by index; each is named `SessionId(index)` except in the
/// replicated mode, where its id is the one the cluster gave it.
const SESSIONS: usize = 5;
/// The accounts: username and password.
const ACCOUNTS: [(&str, &str); 4] = [
    ("yoda", "wise"),
    ("hans", "falcon"),
    ("vader", "sith"),
    ("luke", "jedi"),
];
/// A username that is not an account.
const NOBODY: &str = "nobody";
/// The address each session connects from: all loopback, all different.
/// One is IPv6, which an address is written with in brackets, and one is
/// an IPv4-mapped IPv6 address, which the domain keeps as IPv4.
const SESSION_IPS: [IpAddr; SESSIONS] = [
    IpAddr::V4(Ipv4Addr::LOCALHOST),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)),
    IpAddr::V6(Ipv6Addr::LOCALHOST),
    IpAddr::V6(Ipv4Addr::new(127, 0, 0, 4).to_ipv6_mapped()),
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 5)),
];
/// How `!private connect` writes the address of each session in
/// [`SESSION_IPS`], before `:<port>`.
const DIAL_HOSTS: [&str; SESSIONS] = ["127.0.0.1", "127.0.0.2", "[::1]", "127.0.0.4", "127.0.0.5"];
/// `privateport` arguments the parser accepts, and the port each means.
const PORTS: [(&str, u16); 5] = [
    ("1", 1),
    ("4242", 4242),
    ("5000", 5000),
    ("0080", 80),
    ("65535", 65535),
];
/// `privateport` lines that get the usage line; a registration made
/// earlier stays.
const BAD_PORT_LINES: [&str; 10] = [
    "privateport",
    "privateport 0",
    "privateport 65536",
    "privateport 99999999999999999999999",
    "privateport -1",
    "privateport +1",
    "privateport 1.5",
    "privateport 0x50",
    "privateport 80 81",
    "privateport ８０",
];
/// Malformed lines of the other private-messaging commands, and whose
/// usage line each gets (whether or not the session sent `privateport`).
const BAD_PRIVATE_LINES: [(&str, Keyword); 7] = [
    ("startprivate", Keyword::StartPrivate),
    ("startprivate yoda hans", Keyword::StartPrivate),
    ("startprivate  luke   nobody", Keyword::StartPrivate),
    ("private", Keyword::Private),
    ("private yoda", Keyword::Private),
    ("stopprivate", Keyword::StopPrivate),
    ("stopprivate yoda hans", Keyword::StopPrivate),
];
/// Lines that look like private messaging but are no command, among them
/// a client trying to pass a `!private` line on.
const NOT_PRIVATE_COMMANDS: [&str; 5] = [
    "Private yoda hi",
    "privates yoda hi",
    "STARTPRIVATE yoda",
    "privateport5000",
    "!private accept yoda 00",
];
/// The high half of every token [`counted_token`] gives, so that tokens
/// have hex letters in them; the low half is the draw's number.
const TOKEN_TAG: u128 = 0xfeed_face_cafe_d00d << 64;
/// Every how many draws [`counted_token`] fails: draws 7, 15, 23, … (from
/// 0) give no token.
const TOKEN_FAILURE_EVERY: u64 = 8;
/// Clock steps, in milliseconds, weighted towards short ones; some sit on
/// either side of the ban and idle durations.
const STEPS_MS: [u64; 16] = [
    0, 1, 2, 5, 5, 10, 10, 20, 20, 30, 50, 75, 100, 299, 300, 501,
];
/// How many recent operations a failure report lists.
const TRACE: usize = 40;

thread_local! {
    /// How many tokens [`counted_token`] has drawn on this thread since the
    /// last [`Harness::new`]: a token source is a plain `fn`, so its state
    /// lives here. One harness per thread at a time.
    static TOKENS_DRAWN: Cell<u64> = const { Cell::new(0) };
}

/// The token source the checker installs: the draws numbered from 0, each
/// given by [`token_for_draw`].
fn counted_token() -> Option<[u8; TOKEN_BYTES]> {
    let draw = TOKENS_DRAWN.get();
    TOKENS_DRAWN.set(draw + 1);
    token_for_draw(draw)
}

/// The token of draw `n` (from 0): [`TOKEN_TAG`] and `n`, except that every
/// [`TOKEN_FAILURE_EVERY`]th draw gives none.
fn token_for_draw(n: u64) -> Option<[u8; TOKEN_BYTES]> {
    (n % TOKEN_FAILURE_EVERY != TOKEN_FAILURE_EVERY - 1)
        .then(|| (TOKEN_TAG | u128::from(n)).to_be_bytes())
}

/// The account named `name`, if there is one.
fn user_index(name: &str) -> Option<usize> {
    ACCOUNTS.iter().position(|&(n, _)| n == name)
}

/// Where `!private connect` says session `s` listens, if it registered
/// `port`.
fn dial_address(s: usize, port: u16) -> String {
    format!("{}:{port}", DIAL_HOSTS[s])
}

/// Where a run's decisions come from. `None` ends the run.
pub trait Source {
    /// The next byte.
    fn byte(&mut self) -> Option<u8>;
}

/// A seeded run: the generator's bytes, without end.
impl Source for Rng {
    fn byte(&mut self) -> Option<u8> {
        Some(Rng::byte(self))
    }
}

/// What a run exercised, so a test can insist that it did something.
#[derive(Debug, Default, Clone, Copy)]
pub struct Stats {
    /// Steps run.
    pub steps: usize,
    /// Successful logins.
    pub logins: usize,
    /// Logged-in sessions ended by `logout`, `disconnect` or inactivity.
    pub leaves: usize,
    /// Sessions closed by the idle timer (logged in or not).
    pub timeouts: usize,
    /// Usernames banned after three wrong passwords.
    pub bans: usize,
    /// Logins refused because the username was banned.
    pub banned_refusals: usize,
    /// "This user is already logged in".
    pub already_online: usize,
    /// Presence lines delivered.
    pub presence: usize,
    /// Presence lines the server held past the step that made them.
    pub notices_held: usize,
    /// Steps in which held notices went out ahead of other output.
    pub notices_led: usize,
    /// [`Op::Release`] steps that let held notices go.
    pub notices_released: usize,
    /// Connections that went away with notices held (they are dropped).
    pub notices_dropped: usize,
    /// Message lines delivered to an online user.
    pub delivered: usize,
    /// Logins that started a backlog (the mailbox was not empty).
    pub backlogs: usize,
    /// Mailbox lines confirmed written from a backlog: delivered, they left
    /// the mailbox.
    pub backlog_written: usize,
    /// [`Op::Mail`] steps that pulled more lines while some were queued
    /// unconfirmed (`backlog(sid, from)` with `from > 0`).
    pub backlog_later_pulls: usize,
    /// Lines handed out again after an interruption dropped them queued but
    /// unwritten.
    pub backlog_rehanded: usize,
    /// Backlogs given up, mail left, by a disconnect or a close.
    pub backlogs_interrupted: usize,
    /// Of those, given up by a close, which let the held output out first.
    pub backlog_closes: usize,
    /// Logins whose backlog is the rest of an interrupted one.
    pub backlogs_resumed: usize,
    /// Lines `Chat` sent to a session during its backlog, held behind it.
    pub held_lines: usize,
    /// Of those, live messages.
    pub held_messages: usize,
    /// Backlog lines confirmed from a sender the recipient has blocked
    /// since the message was stored.
    pub backlog_from_blocked: usize,
    /// Messages refused because the recipient blocked the sender.
    pub blocked_refusals: usize,
    /// Broadcasts that skipped a user who blocked the sender.
    pub partial_broadcasts: usize,
    /// Most users online at once.
    pub max_online: usize,
    /// `privateport` lines accepted.
    pub registrations: usize,
    /// `startprivate` introductions made (a token, `accept` and `connect`).
    pub introductions: usize,
    /// `startprivate` refused because the target blocked the starter.
    pub private_blocked_refusals: usize,
    /// `startprivate` refused because the target was offline or had not
    /// sent `privateport`.
    pub private_unreachable: usize,
    /// `startprivate` refused because the token source failed.
    pub private_unavailable: usize,
    /// Times the domain was replaced by a copy loaded from its saved state
    /// (only with [`Harness::reloading`]).
    pub reloads: usize,
    /// Replicated mode: batches the nodes published (ticks included).
    pub batches: usize,
    /// Replicated mode: batches with the inputs of two operations or more.
    pub gathered_batches: usize,
    /// Replicated mode: empty batches, published when the clock advanced.
    pub ticks: usize,
    /// Replicated mode: batches whose publisher's clock was behind the
    /// log's time.
    pub clocks_behind: usize,
    /// Replicated mode: passwords published as the owner's verdict.
    pub verdicts: usize,
    /// Replicated mode: `startprivate` lines published with the token the
    /// single server drew for them.
    pub tokens_given: usize,
    /// Replicated mode: batches in which a connection went away and a
    /// later input connected another.
    pub reconnect_batches: usize,
    /// Replicated mode: entries applied again, or cut short, that both
    /// replicas ignored.
    pub ignored_entries: usize,
    /// Replicated mode: effects of a node's inputs on the other node's
    /// sessions.
    pub cross_effects: usize,
    /// Replicated mode: most inputs in one batch.
    pub largest_batch: usize,
}

impl Stats {
    /// Adds `other`'s counts to these, and keeps the larger of each
    /// maximum: the totals of several runs, which a test holds to the
    /// behaviours they must reach.
    pub fn add(&mut self, other: &Stats) {
        let Stats {
            steps,
            logins,
            leaves,
            timeouts,
            bans,
            banned_refusals,
            already_online,
            presence,
            notices_held,
            notices_led,
            notices_released,
            notices_dropped,
            delivered,
            backlogs,
            backlog_written,
            backlog_later_pulls,
            backlog_rehanded,
            backlogs_interrupted,
            backlog_closes,
            backlogs_resumed,
            held_lines,
            held_messages,
            backlog_from_blocked,
            blocked_refusals,
            partial_broadcasts,
            max_online,
            registrations,
            introductions,
            private_blocked_refusals,
            private_unreachable,
            private_unavailable,
            reloads,
            batches,
            gathered_batches,
            ticks,
            clocks_behind,
            verdicts,
            tokens_given,
            reconnect_batches,
            ignored_entries,
            cross_effects,
            largest_batch,
        } = *other;
        let sums = [
            (&mut self.steps, steps),
            (&mut self.logins, logins),
            (&mut self.leaves, leaves),
            (&mut self.timeouts, timeouts),
            (&mut self.bans, bans),
            (&mut self.banned_refusals, banned_refusals),
            (&mut self.already_online, already_online),
            (&mut self.presence, presence),
            (&mut self.notices_held, notices_held),
            (&mut self.notices_led, notices_led),
            (&mut self.notices_released, notices_released),
            (&mut self.notices_dropped, notices_dropped),
            (&mut self.delivered, delivered),
            (&mut self.backlogs, backlogs),
            (&mut self.backlog_written, backlog_written),
            (&mut self.backlog_later_pulls, backlog_later_pulls),
            (&mut self.backlog_rehanded, backlog_rehanded),
            (&mut self.backlogs_interrupted, backlogs_interrupted),
            (&mut self.backlog_closes, backlog_closes),
            (&mut self.backlogs_resumed, backlogs_resumed),
            (&mut self.held_lines, held_lines),
            (&mut self.held_messages, held_messages),
            (&mut self.backlog_from_blocked, backlog_from_blocked),
            (&mut self.blocked_refusals, blocked_refusals),
            (&mut self.partial_broadcasts, partial_broadcasts),
            (&mut self.registrations, registrations),
            (&mut self.introductions, introductions),
            (&mut self.private_blocked_refusals, private_blocked_refusals),
            (&mut self.private_unreachable, private_unreachable),
            (&mut self.private_unavailable, private_unavailable),
            (&mut self.reloads, reloads),
            (&mut self.batches, batches),
            (&mut self.gathered_batches, gathered_batches),
            (&mut self.ticks, ticks),
            (&mut self.clocks_behind, clocks_behind),
            (&mut self.verdicts, verdicts),
            (&mut self.tokens_given, tokens_given),
            (&mut self.reconnect_batches, reconnect_batches),
            (&mut self.ignored_entries, ignored_entries),
            (&mut self.cross_effects, cross_effects),
        ];
        for (total, count) in sums {
            *total += count;
        }
        self.max_online = self.max_online.max(max_online);
        self.largest_batch = self.largest_batch.max(largest_batch);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Username,
    Password(usize),
    LoggedIn(usize),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    /// Never connected, or disconnected.
    Free,
    /// Connected; `last_activity` is an offset from the run's start, and
    /// `private_port` what the session registered with `privateport`.
    Open {
        stage: Stage,
        last_activity: Duration,
        private_port: Option<u16>,
    },
    /// The domain closed it; the server has not called `disconnect` yet.
    Closed,
}

#[derive(Debug, Clone)]
struct User {
    name: &'static str,
    password: &'static str,
    session: Option<usize>,
    failures: u8,
    banned_until: Option<Duration>,
    blocked: BTreeSet<usize>,
    last_seen: Option<Duration>,
    mailbox: Vec<String>,
}

/// The state `protocol.md` says the domain is in.
#[derive(Debug, Clone)]
struct Model {
    now: Duration,
    users: Vec<User>,
    slots: [Slot; SESSIONS],
    /// How many tokens the domain has drawn from [`counted_token`].
    tokens_drawn: u64,
    /// The sessions whose offline mail the server is writing.
    backlogs: [Option<Backlog>; SESSIONS],
    /// Presence lines the server holds for each session (its
    /// `--presence-delay`): they go out before anything else sent to the
    /// session, or when the delay runs out, and are lost with the
    /// connection.
    notices: [Vec<u8>; SESSIONS],
}

/// A session's offline mail on its way out, as the model has it: from the
/// login until the whole mailbox is confirmed written or the session ends.
/// The lines themselves are the front of the user's mailbox.
#[derive(Debug, Clone, Default)]
struct Backlog {
    /// Mailbox lines the server has queued and not confirmed written.
    queued: usize,
    /// What the session is sent meanwhile: it follows the backlog.
    held: Vec<u8>,
}

impl Model {
    /// The port session `s` registered, if it is open and sent
    /// `privateport`.
    fn private_port(&self, s: usize) -> Option<u16> {
        match self.slots[s] {
            Slot::Open { private_port, .. } => private_port,
            Slot::Free | Slot::Closed => None,
        }
    }
}

/// A logged-in command, as generated: the model reacts to this, not to a
/// parse of the line, so the parser is not trusted here.
#[derive(Debug, Clone)]
enum Cmd {
    Message {
        to: &'static str,
        text: String,
    },
    Broadcast {
        text: String,
    },
    WhoElse,
    WhoElseSince(u64),
    Block(&'static str),
    Unblock(&'static str),
    Logout,
    Help,
    /// `privateport` with a valid port.
    PrivatePort(u16),
    /// `startprivate <user>`, the user as typed.
    StartPrivate(&'static str),
    /// `private <user> <message>` or `stopprivate <user>`: the client
    /// handles them, so reaching the server they get the same error.
    ClientOnly(&'static str),
    /// A malformed line, and the one reply it gets.
    Error(String),
}

/// One decoded operation.
#[derive(Debug, Clone)]
enum Op {
    Connect(usize),
    /// The raw bytes of the line (before `decode_line`), and what it means
    /// to a logged-in session.
    Line(usize, Vec<u8>, Option<Cmd>),
    LineError(usize, LineError),
    Disconnect(usize),
    Advance {
        step: Duration,
        expire: bool,
    },
    /// The server writes some of session `s`'s backlog: it queues up to
    /// `hand` more lines (pulled from after those it has queued), then the
    /// socket takes `confirm` of the queued lines (all of them if fewer)
    /// whole. Only decoded for a session whose backlog is being written.
    Mail {
        s: usize,
        hand: usize,
        confirm: usize,
    },
    /// The server's presence delay runs out: every held notice goes out.
    Release,
    Shutdown,
}

/// What the model says a step does.
#[derive(Debug, Default)]
struct Expected {
    /// What `Chat` sends each session.
    sent: [Vec<u8>; SESSIONS],
    /// How much of `sent` has gone on to `out` or a backlog's held output
    /// (see `Harness::route`).
    routed: [usize; SESSIONS],
    /// What the server writes to each session: `sent` unless held, backlog
    /// lines, held output released.
    out: [Vec<u8>; SESSIONS],
    closes: BTreeSet<usize>,
    /// A logged-in session ended: its user and the sessions that must hear.
    leaves: Vec<(usize, BTreeSet<usize>)>,
    /// A login: session, user, and whether it has offline mail (and so
    /// must start a backlog).
    logins: Vec<(usize, usize, bool)>,
}

/// One effect of a [`Chat`], with its text: what the replicated mode
/// compares between the single server and each replica.
#[derive(Clone, PartialEq, Eq)]
enum Done {
    Send(Vec<u8>),
    Notice(Vec<u8>),
    Close,
    Backlog,
}

/// The text as text, for failure reports.
impl std::fmt::Debug for Done {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Done::Send(text) => write!(f, "Send({:?})", String::from_utf8_lossy(text)),
            Done::Notice(text) => write!(f, "Notice({:?})", String::from_utf8_lossy(text)),
            Done::Close => f.write_str("Close"),
            Done::Backlog => f.write_str("Backlog"),
        }
    }
}

/// Takes the effects out of `chat`'s outbox, in the order they happened,
/// each with its text.
fn drain(chat: &mut Chat) -> Vec<(SessionId, Done)> {
    let outbox = chat.outbox();
    let effects = outbox
        .effects()
        .iter()
        .map(|effect| match effect {
            Effect::Send { to, text } => (*to, Done::Send(outbox.text(text.clone()).to_vec())),
            Effect::Notice { to, text } => (*to, Done::Notice(outbox.text(text.clone()).to_vec())),
            Effect::Close(sid) => (*sid, Done::Close),
            Effect::Backlog(sid) => (*sid, Done::Backlog),
        })
        .collect();
    outbox.clear();
    effects
}

/// What `Chat` did in a step, and what the harness as the server wrote.
#[derive(Debug, Default)]
struct Actual {
    /// Every effect, in order, with the session it went to.
    effects: Vec<(usize, Done)>,
    /// The bytes of the `Send` effects, by recipient.
    sent: [Vec<u8>; SESSIONS],
    /// What the server wrote to each session.
    out: [Vec<u8>; SESSIONS],
    closes: BTreeSet<usize>,
    /// Every complete line sent (and, last, any unterminated prompt) in the
    /// order it was emitted, with its recipient.
    pieces: Vec<(usize, String)>,
    /// The `Backlog` effects: the session, and whether the last thing sent
    /// to it before was the welcome (of this step).
    backlog_starts: Vec<(usize, bool)>,
    /// What an [`Op::Mail`] step did.
    mail: Option<MailStep>,
}

/// One [`Op::Mail`] step as the harness, playing the server, did it.
#[derive(Debug)]
struct MailStep {
    s: usize,
    /// How many more lines were asked for.
    hand: usize,
    /// The index they were asked from: how many were queued already.
    from: usize,
    /// What `backlog(sid, from)` gave (at most `hand` lines).
    handed: Vec<String>,
    /// The queued lines confirmed written, oldest first.
    written: Vec<String>,
    /// Whether the backlog was then done and the held output released.
    finished: bool,
}

/// The harness's server-side state for a session whose backlog it writes.
#[derive(Debug, Default)]
struct Writer {
    /// Lines pulled from `Chat::backlog` and queued for the socket, not yet
    /// confirmed written.
    queued: Vec<String>,
    /// What `Chat` sent the session since the `Backlog` effect.
    held: Vec<u8>,
}

/// The domain under test, its model, and the checker's bookkeeping.
pub struct Harness {
    chat: Chat,
    model: Model,
    t0: Instant,
    /// The id each session has in `chat`: its index, except in replicated
    /// mode, where it is the one the cluster gave its connection.
    sids: [SessionId; SESSIONS],
    /// The cluster of the replicated mode.
    cluster: Option<Box<cluster::Cluster>>,
    /// Message texts are unique; this is the next number.
    counter: u64,
    /// (message text, recipient user) pairs delivered so far.
    delivered: HashSet<(String, usize)>,
    /// The tokens of the introductions of earlier steps.
    tokens: HashSet<String>,
    /// Playing the server: the sessions whose backlog is being written.
    writers: [Option<Writer>; SESSIONS],
    /// Playing the server: the presence lines held for each session.
    notices: [Vec<u8>; SESSIONS],
    /// Backlog lines an interruption dropped queued but unwritten (for
    /// [`Stats::backlog_rehanded`]).
    unwritten: HashSet<String>,
    /// Users whose last backlog was interrupted with mail left (for
    /// [`Stats::backlogs_resumed`]).
    interrupted: [bool; ACCOUNTS.len()],
    /// The last operations and when they ran, for a failure report.
    trace: VecDeque<(Duration, Op)>,
    stats: Stats,
    done: bool,
    /// Chooses the steps after which the domain is replaced by a loaded
    /// copy, and the copy's clock; `None`: never.
    reloads: Option<Rng>,
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// A fresh domain with the four accounts and nobody connected.
    pub fn new() -> Harness {
        let users = ACCOUNTS
            .iter()
            .map(|&(name, password)| User {
                name,
                password,
                session: None,
                failures: 0,
                banned_until: None,
                blocked: BTreeSet::new(),
                last_seen: None,
                mailbox: Vec::new(),
            })
            .collect();
        let mut chat = Chat::new(accounts(), config());
        TOKENS_DRAWN.set(0);
        chat.set_token_source(counted_token);
        Harness {
            chat,
            model: Model {
                now: Duration::ZERO,
                users,
                slots: [Slot::Free; SESSIONS],
                tokens_drawn: 0,
                backlogs: Default::default(),
                notices: Default::default(),
            },
            t0: Instant::now(),
            sids: std::array::from_fn(SessionId),
            cluster: None,
            counter: 0,
            delivered: HashSet::new(),
            tokens: HashSet::new(),
            writers: Default::default(),
            notices: Default::default(),
            unwritten: HashSet::new(),
            interrupted: [false; ACCOUNTS.len()],
            trace: VecDeque::new(),
            stats: Stats::default(),
            done: false,
            reloads: None,
        }
    }

    /// A fresh domain like [`Harness::new`]'s, which after steps chosen by
    /// `seed` (a few in a hundred) is replaced by a copy loaded from its
    /// saved state by another process (see the module documentation).
    pub fn reloading(seed: u64) -> Harness {
        Harness {
            reloads: Some(Rng::new(seed)),
            ..Harness::new()
        }
    }

    /// A fresh domain as [`Harness::new`], checked as ever, and beside it
    /// a cluster of two nodes that every operation also goes through (see
    /// the module documentation): the replicated mode.
    pub fn replicated() -> Harness {
        let mut harness = Harness::new();
        let cluster = match cluster::Cluster::new() {
            Ok(cluster) => cluster,
            Err(problem) => harness.fail(problem),
        };
        harness.cluster = Some(Box::new(cluster));
        harness.sids = std::array::from_fn(cluster::unused_sid);
        harness.chat.set_wall_clock(cluster::wall_clock(harness.t0));
        harness
    }

    /// What the run has exercised so far.
    pub fn stats(&self) -> Stats {
        let mut stats = self.stats;
        if let Some(cluster) = &self.cluster {
            cluster.add_stats(&mut stats);
        }
        stats
    }

    /// Runs steps until `src` runs dry or `max_steps` were taken, then shuts
    /// the domain down (checking that too). Panics on the first violation.
    pub fn run(&mut self, src: &mut impl Source, max_steps: usize) {
        while self.stats.steps < max_steps && !self.done {
            let Some(op) = self.next_op(src) else { break };
            if let Some(cluster) = self.cluster.as_deref_mut() {
                let Some(batching) = src.byte() else { break };
                cluster.batching(batching);
            }
            self.apply(op);
            self.maybe_reload();
        }
        if !self.done {
            self.apply(Op::Shutdown);
        }
    }
}

/// The accounts of the domain under test.
fn accounts() -> Vec<Account> {
    ACCOUNTS
        .iter()
        .map(|&(u, p)| Account {
            username: u.to_owned(),
            password: p.to_owned(),
        })
        .collect()
}

/// The configuration of the domain under test.
fn config() -> ChatConfig {
    let mut config = ChatConfig::new(BLOCK_DURATION, TIMEOUT);
    config.login_timeout = Duration::from_secs(3600);
    config.mailbox_max = usize::MAX;
    config.store_max = u64::MAX;
    config
}

fn utf8(bytes: Vec<u8>) -> String {
    String::from_utf8(bytes).unwrap_or_else(|e| panic!("output is not UTF-8: {e}"))
}

/// The sender and text of a message line, `<sender>: <text>`.
fn message(line: &str) -> Option<(usize, &str)> {
    let (sender, text) = line.split_once(": ")?;
    Some((user_index(sender)?, text))
}

fn describe(op: &Op) -> String {
    match op {
        Op::Line(s, raw, _) => format!("line {s} {:?}", String::from_utf8_lossy(raw)),
        op => format!("{op:?}"),
    }
}
