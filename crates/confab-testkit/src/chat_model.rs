//! A reference model of the chat domain and a checker that drives
//! [`Chat`] with random command sequences from several sessions and checks
//! it after every step. Used by `tests/chat_random.rs` (fixed seeds of
//! [`Rng`], which is a [`Source`]) and by the `chat` fuzz target
//! (libFuzzer's bytes), so both check exactly the same things.
//!
//! A run is a stream of bytes (from a [`Source`]) decoded into operations:
//! connect, a line chosen from a small vocabulary of valid and invalid
//! commands (the private-messaging ones among them: `privateport`,
//! `startprivate`, and `private`/`stopprivate` reaching the server),
//! usernames and passwords, a line that cannot be decoded, disconnect,
//! advancing the clock (then, usually, `expire`), and the server's part in
//! offline mail ([`Op::Mail`]). The durations are
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
//! and are handed out again at the next login. The model holds its
//! expected output the same way. After each step the checker verifies
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
//! Within one `expire`, several sessions may time out; the order is the
//! implementation's choice, so the model follows the order in which the
//! timeout notices appear (after checking that exactly the idle sessions
//! timed out) and judges "online at that moment" by it.

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

/// Idle timeout of the domain under test.
pub const TIMEOUT: Duration = Duration::from_millis(500);
/// Ban after three wrong passwords.
pub const BLOCK_DURATION: Duration = Duration::from_millis(300);
/// Session ids used: `SessionId(0..SESSIONS)`.
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

/// What `Chat` did in a step, and what the harness as the server wrote.
#[derive(Debug, Default)]
struct Actual {
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
    /// Message texts are unique; this is the next number.
    counter: u64,
    /// (message text, recipient user) pairs delivered so far.
    delivered: HashSet<(String, usize)>,
    /// The tokens of the introductions of earlier steps.
    tokens: HashSet<String>,
    /// Playing the server: the sessions whose backlog is being written.
    writers: [Option<Writer>; SESSIONS],
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
}

impl Default for Harness {
    fn default() -> Self {
        Harness::new()
    }
}

impl Harness {
    /// A fresh domain with the four accounts and nobody connected.
    pub fn new() -> Harness {
        let accounts = ACCOUNTS
            .iter()
            .map(|&(u, p)| Account {
                username: u.to_owned(),
                password: p.to_owned(),
            })
            .collect();
        let mut config = ChatConfig::new(BLOCK_DURATION, TIMEOUT);
        config.login_timeout = Duration::from_secs(3600);
        config.mailbox_max = usize::MAX;
        config.store_max = u64::MAX;
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
        let mut chat = Chat::new(accounts, config);
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
            },
            t0: Instant::now(),
            counter: 0,
            delivered: HashSet::new(),
            tokens: HashSet::new(),
            writers: Default::default(),
            unwritten: HashSet::new(),
            interrupted: [false; ACCOUNTS.len()],
            trace: VecDeque::new(),
            stats: Stats::default(),
            done: false,
        }
    }

    /// What the run has exercised so far.
    pub fn stats(&self) -> Stats {
        self.stats
    }

    /// Runs steps until `src` runs dry or `max_steps` were taken, then shuts
    /// the domain down (checking that too). Panics on the first violation.
    pub fn run(&mut self, src: &mut impl Source, max_steps: usize) {
        while self.stats.steps < max_steps && !self.done {
            let Some(op) = self.next_op(src) else { break };
            self.apply(op);
        }
        if !self.done {
            self.apply(Op::Shutdown);
        }
    }

    /// Decodes the next operation; the meaning of a line depends on the
    /// session's stage, so that logins actually happen.
    fn next_op(&mut self, src: &mut impl Source) -> Option<Op> {
        let kind = src.byte()?;
        let s = usize::from(src.byte()?) % SESSIONS;
        let op = match kind % 32 {
            0 => Op::Connect(s),
            1 => Op::Disconnect(s),
            2 => match src.byte()? % 2 {
                0 => Op::LineError(s, LineError::TooLong),
                _ => Op::LineError(s, LineError::InvalidEncoding),
            },
            3..=23 => {
                let (pick, arg) = (src.byte()?, src.byte()?);
                match self.model.slots[s] {
                    Slot::Free => Op::Connect(s),
                    Slot::Closed => Op::Disconnect(s),
                    // Half the time during a backlog (the bits of `kind`
                    // above the operation), the server writes some of it,
                    // a line or two at a time and often less than it
                    // queued, so that lines wait queued across steps.
                    Slot::Open { .. } if self.model.backlogs[s].is_some() && kind & 0x20 == 0 => {
                        Op::Mail {
                            s,
                            hand: [0, 1, 1, 2][usize::from(pick % 4)],
                            confirm: [0, 0, 1, 2][usize::from(pick >> 2) % 4],
                        }
                    }
                    Slot::Open { stage, .. } => self.line(s, stage, pick, arg),
                }
            }
            24..=31 => {
                let b = src.byte()?;
                Op::Advance {
                    step: Duration::from_millis(STEPS_MS[usize::from(b % 16)]),
                    expire: b & 0x30 != 0,
                }
            }
            _ => unreachable!(),
        };
        Some(op)
    }

    fn line(&mut self, s: usize, stage: Stage, pick: u8, arg: u8) -> Op {
        let name = |i: u8| ACCOUNTS[usize::from(i) % ACCOUNTS.len()].0;
        // A user, the nobody, or (for block/unblock) a word that is not one.
        let target = |i: u8| match i % 5 {
            4 => NOBODY,
            i => name(i),
        };
        let (text, cmd): (String, Option<Cmd>) = match stage {
            Stage::Username => match pick % 16 {
                0..=9 => (name(arg).into(), None),
                10 => (NOBODY.into(), None),
                11 => ("yoda wise".into(), None),
                12 => ("whoelse".into(), None),
                13 => return Op::Line(s, b"   \r".to_vec(), None),
                14 => return Op::Line(s, b"\xffyoda".to_vec(), None),
                _ => ("wise".into(), None),
            },
            Stage::Password(u) => match pick % 16 {
                0..=7 => (ACCOUNTS[u].1.into(), None),
                8..=11 => ("wrong".into(), None),
                12 => (ACCOUNTS[(u + 1) % ACCOUNTS.len()].1.into(), None),
                13 => (ACCOUNTS[u].0.into(), None),
                14 => return Op::Line(s, b" \r".to_vec(), None),
                _ => return Op::Line(s, b"wise\xc3".to_vec(), None),
            },
            Stage::LoggedIn(me) => {
                let usage = |k: Keyword| Some(Cmd::Error(k.usage().to_owned()));
                let invalid = || Some(Cmd::Error(protocol::INVALID_COMMAND.to_owned()));
                let gap = if arg & 0x40 != 0 { "   " } else { " " };
                // One of `n` choices, not tied to the padding (`arg % 4`).
                let choose = |n: usize| usize::from(arg >> 2) % n;
                // 0..=31: the eight commands of `protocol.md`; 32..: private
                // messaging, a third of the lines. A session that has not
                // sent `privateport` mostly sends that first (unless
                // `pick` < 48, one time in five), as the `confab` client
                // does right after login: an introduction needs two
                // registered sessions online at once.
                let registered = self.model.private_port(s).is_some();
                let pick = match pick % 48 {
                    32.. if !registered && pick >= 48 => 32,
                    small => small,
                };
                match pick {
                    0..=5 => {
                        // Half the time someone offline now, so that
                        // mailboxes fill and backlogs are long.
                        let offline: Vec<&'static str> = self
                            .model
                            .users
                            .iter()
                            .filter(|user| user.session.is_none())
                            .map(|user| user.name)
                            .collect();
                        let to = match pick {
                            0..=2 if !offline.is_empty() => offline[choose(offline.len())],
                            _ => target(arg),
                        };
                        let text = self.text('m', arg);
                        (
                            format!("message{gap}{to}{gap}{text}"),
                            Some(Cmd::Message { to, text }),
                        )
                    }
                    6 => (format!("message {}", target(arg)), usage(Keyword::Message)),
                    7 => ("message".into(), usage(Keyword::Message)),
                    8..=10 => {
                        let text = self.text('b', arg);
                        (
                            format!("broadcast{gap}{text}"),
                            Some(Cmd::Broadcast { text }),
                        )
                    }
                    11 => ("broadcast".into(), usage(Keyword::Broadcast)),
                    12 => ("whoelse".into(), Some(Cmd::WhoElse)),
                    13 => (format!("whoelse {}", name(arg)), usage(Keyword::WhoElse)),
                    14 | 15 => {
                        let (word, seconds) = [
                            ("0", 0),
                            ("1", 1),
                            ("2", 2),
                            ("3600", 3600),
                            ("99999999999999999999999", u64::MAX),
                        ][usize::from(arg) % 5];
                        (
                            format!("whoelsesince{gap}{word}"),
                            Some(Cmd::WhoElseSince(seconds)),
                        )
                    }
                    16 => {
                        let word = ["", " -1", " 1.5", " x", " 1 2"][usize::from(arg) % 5];
                        (format!("whoelsesince{word}"), usage(Keyword::WhoElseSince))
                    }
                    17..=19 => {
                        // During a backlog, half the time the sender of a
                        // line still in it.
                        let mailbox = &self.model.users[me].mailbox;
                        let pending = match self.model.backlogs[s] {
                            Some(_) if arg & 0x80 == 0 && !mailbox.is_empty() => {
                                message(&mailbox[choose(mailbox.len())])
                                    .map(|(sender, _)| ACCOUNTS[sender].0)
                            }
                            _ => None,
                        };
                        let who = pending.unwrap_or_else(|| target(arg));
                        (format!("block{gap}{who}"), Some(Cmd::Block(who)))
                    }
                    20 => match arg % 2 {
                        0 => ("block".into(), usage(Keyword::Block)),
                        _ => ("block yoda hans".into(), usage(Keyword::Block)),
                    },
                    21 | 22 => {
                        let who = target(arg);
                        (format!("unblock{gap}{who}"), Some(Cmd::Unblock(who)))
                    }
                    23 => match arg % 2 {
                        0 => ("unblock".into(), usage(Keyword::Unblock)),
                        _ => ("unblock yoda  hans".into(), usage(Keyword::Unblock)),
                    },
                    24 | 25 => ("logout".into(), Some(Cmd::Logout)),
                    26 => ("logout now".into(), usage(Keyword::Logout)),
                    27 => ("help".into(), Some(Cmd::Help)),
                    28 => ("help me".into(), usage(Keyword::Help)),
                    29 => {
                        let junk = ["Message yoda hi", "hello", "WHOELSE", "logouts"];
                        (junk[usize::from(arg) % 4].into(), invalid())
                    }
                    30 => return Op::Line(s, b"    ".to_vec(), None),
                    31 => return Op::Line(s, b"\xfe\xff whoelse".to_vec(), None),
                    32..=34 => {
                        let (word, port) = PORTS[choose(PORTS.len())];
                        (
                            format!("privateport{gap}{word}"),
                            Some(Cmd::PrivatePort(port)),
                        )
                    }
                    35 => (
                        BAD_PORT_LINES[choose(BAD_PORT_LINES.len())].into(),
                        usage(Keyword::PrivatePort),
                    ),
                    36 => {
                        let (who, text) = (target(arg), self.text('p', arg));
                        (
                            format!("private{gap}{who}{gap}{text}"),
                            Some(Cmd::ClientOnly(who)),
                        )
                    }
                    37 => {
                        let who = target(arg);
                        (format!("stopprivate{gap}{who}"), Some(Cmd::ClientOnly(who)))
                    }
                    38 => {
                        let (line, keyword) = BAD_PRIVATE_LINES[choose(BAD_PRIVATE_LINES.len())];
                        (line.into(), usage(keyword))
                    }
                    39 => (
                        NOT_PRIVATE_COMMANDS[choose(NOT_PRIVATE_COMMANDS.len())].into(),
                        invalid(),
                    ),
                    40 => ("help".into(), Some(Cmd::Help)),
                    _ => {
                        // Half the time someone online now, or there would
                        // be few introductions.
                        let online: Vec<&'static str> = self
                            .model
                            .users
                            .iter()
                            .filter(|user| user.session.is_some_and(|theirs| theirs != s))
                            .map(|user| user.name)
                            .collect();
                        let who = match arg & 0x80 {
                            0 if !online.is_empty() => online[choose(online.len())],
                            _ => target(arg),
                        };
                        (
                            format!("startprivate{gap}{who}"),
                            Some(Cmd::StartPrivate(who)),
                        )
                    }
                }
            }
        };
        // Surrounding spaces and one `\r`, which decoding must remove.
        let raw = match arg % 4 {
            0 => text,
            1 => format!("  {text}"),
            2 => format!("{text}  \r"),
            _ => format!("{text}\r"),
        };
        Op::Line(s, raw.into_bytes(), cmd)
    }

    /// A fresh message text: unique, sometimes with inner spaces.
    fn text(&mut self, kind: char, arg: u8) -> String {
        self.counter += 1;
        match arg & 0x80 {
            0 => format!("{kind}{}", self.counter),
            _ => format!("{kind}{}  two  words", self.counter),
        }
    }

    fn at(&self, offset: Duration) -> Instant {
        self.t0 + offset
    }

    /// Runs one operation on the domain and checks what it did.
    fn apply(&mut self, op: Op) {
        // A connect on a slot in use is a new connection after the server
        // noticed the old one went away.
        if let Op::Connect(s) = op {
            if self.model.slots[s] != Slot::Free {
                self.apply(Op::Disconnect(s));
            }
        }
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        self.trace.push_back((self.model.now, op.clone()));
        self.stats.steps += 1;

        let pre = self.model.clone();
        let now = self.at(self.model.now);
        // Sessions that may get output during this step.
        let mut open: [bool; SESSIONS] =
            std::array::from_fn(|s| matches!(pre.slots[s], Slot::Open { .. }));
        let mut expected = Expected::default();
        let actual = match &op {
            Op::Connect(s) => {
                self.chat.connect(SessionId(*s), SESSION_IPS[*s], true, now);
                open[*s] = true;
                self.take(open)
            }
            Op::Line(s, raw, _) => {
                match decode_line(raw) {
                    Ok(Some(text)) => self.chat.line(SessionId(*s), text, now),
                    Ok(None) => {}
                    Err(error) => self.chat.line_error(SessionId(*s), error, now),
                }
                self.take(open)
            }
            Op::LineError(s, error) => {
                if open[*s] {
                    self.chat.line_error(SessionId(*s), *error, now);
                }
                self.take(open)
            }
            Op::Disconnect(s) => {
                // The connection is gone, and what waited for it with it.
                self.give_up_backlog(*s);
                self.chat.disconnect(SessionId(*s), now);
                open[*s] = false;
                self.take(open)
            }
            Op::Advance { step, expire } => {
                self.model.now += *step;
                let now = self.at(self.model.now);
                if *expire {
                    self.chat.expire(now);
                    if self.chat.next_deadline().is_some_and(|d| d <= now) {
                        self.fail("expire left a timer due".into());
                    }
                }
                self.take(open)
            }
            Op::Mail { s, hand, confirm } => self.write_backlog(*s, *hand, *confirm),
            Op::Shutdown => {
                self.chat.shutdown(now);
                self.done = true;
                self.take(open)
            }
        };

        // The model's version of the same step.
        match &op {
            Op::Connect(s) => self.model_connect(*s, &mut expected),
            Op::Line(s, raw, cmd) => match decode_line(raw) {
                Ok(Some(text)) => self.model_line(*s, text, cmd.as_ref(), &mut expected),
                Ok(None) => {}
                Err(error) => self.model_line_error(*s, error, &mut expected),
            },
            Op::LineError(s, error) => self.model_line_error(*s, *error, &mut expected),
            Op::Disconnect(s) => self.model_disconnect(*s, &mut expected),
            Op::Advance { expire: true, .. } => {
                let order = self.timeout_order(&actual);
                self.model_expire(&order, &mut expected);
            }
            Op::Advance { expire: false, .. } => {}
            Op::Mail { s, hand, confirm } => self.model_mail(*s, *hand, *confirm, &mut expected),
            Op::Shutdown => self.model_shutdown(&mut expected),
        }
        for s in 0..SESSIONS {
            self.route(s, &mut expected);
        }

        self.check_invariants(&pre, &actual, &expected);
        self.check_backlog(&pre, &actual);
        self.check_introductions(&pre, &actual);
        self.check_transcripts(&actual, &expected);
        self.check_state();
    }

    /// Drains the outbox into an [`Actual`], failing on output to a session
    /// that is not open and on a second close.
    fn take(&mut self, mut open: [bool; SESSIONS]) -> Actual {
        let mut actual = Actual::default();
        let mut partial: [Vec<u8>; SESSIONS] = Default::default();
        let mut problem = None;
        let outbox = self.chat.outbox();
        let effects = outbox.effects().to_vec();
        let texts: Vec<Vec<u8>> = effects
            .iter()
            .map(|e| match e {
                Effect::Send { text, .. } => outbox.text(text.clone()).to_vec(),
                _ => Vec::new(),
            })
            .collect();
        outbox.clear();
        for (effect, text) in effects.iter().zip(texts) {
            match effect {
                Effect::Backlog(sid) => {
                    let s = sid.0;
                    if s >= SESSIONS || !open[s] {
                        problem.get_or_insert(format!("backlog of {sid:?}, which is not open"));
                        continue;
                    }
                    if self.writers[s].is_some() {
                        problem.get_or_insert(format!("a second backlog of {sid:?}"));
                        continue;
                    }
                    let after_welcome = partial[s].is_empty()
                        && actual
                            .pieces
                            .iter()
                            .rev()
                            .find(|(to, _)| *to == s)
                            .is_some_and(|(_, line)| line == protocol::WELCOME);
                    actual.backlog_starts.push((s, after_welcome));
                    self.writers[s] = Some(Writer::default());
                }
                Effect::Send { to, .. } => {
                    let s = to.0;
                    if s >= SESSIONS || !open[s] {
                        problem.get_or_insert(format!("output to {to:?}, which is not open"));
                        continue;
                    }
                    let bytes = &text[..];
                    actual.sent[s].extend_from_slice(bytes);
                    let writer = self.writers[s].as_mut();
                    let held = writer.is_some();
                    match writer {
                        Some(writer) => writer.held.extend_from_slice(bytes),
                        None => actual.out[s].extend_from_slice(bytes),
                    }
                    for &b in bytes {
                        if b == b'\n' {
                            let line = utf8(std::mem::take(&mut partial[s]));
                            if held {
                                self.stats.held_lines += 1;
                                if message(&line).is_some() {
                                    self.stats.held_messages += 1;
                                }
                            }
                            actual.pieces.push((s, line));
                        } else {
                            partial[s].push(b);
                        }
                    }
                }
                Effect::Close(sid) => {
                    let s = sid.0;
                    if s >= SESSIONS || !open[s] {
                        problem.get_or_insert(format!("close of {sid:?}, which is not open"));
                        continue;
                    }
                    // The backlog is given up; what waited for it goes out
                    // before the close.
                    if let Some(writer) = self.give_up_backlog(s) {
                        actual.out[s].extend_from_slice(&writer.held);
                    }
                    open[s] = false;
                    actual.closes.insert(s);
                }
            }
        }
        for (s, rest) in partial.into_iter().enumerate() {
            if !rest.is_empty() {
                actual.pieces.push((s, utf8(rest)));
            }
        }
        if let Some(problem) = problem {
            self.fail(problem);
        }
        actual
    }

    /// Plays the server for [`Op::Mail`]: queues up to `hand` more lines
    /// of session `s`'s backlog, from after those already queued; the socket
    /// takes `confirm` queued lines (at most all), which go to the
    /// session's output and are reported with `backlog_written`; once
    /// nothing is queued and the backlog is empty, the held output follows
    /// and the backlog is over.
    fn write_backlog(&mut self, s: usize, hand: usize, confirm: usize) -> Actual {
        let mut actual = Actual::default();
        let sid = SessionId(s);
        let Some(writer) = self.writers[s].as_mut() else {
            return actual;
        };
        let from = writer.queued.len();
        let handed: Vec<String> = self
            .chat
            .backlog(sid, from)
            .take(hand)
            .map(str::to_owned)
            .collect();
        if from > 0 && !handed.is_empty() {
            self.stats.backlog_later_pulls += 1;
        }
        for line in &handed {
            if self.unwritten.remove(line) {
                self.stats.backlog_rehanded += 1;
            }
        }
        writer.queued.extend(handed.iter().cloned());
        let n = confirm.min(writer.queued.len());
        let written: Vec<String> = writer.queued.drain(..n).collect();
        for line in &written {
            actual.out[s].extend_from_slice(line.as_bytes());
            actual.out[s].push(b'\n');
        }
        self.chat.backlog_written(sid, n);
        if let Some(effect) = self.chat.outbox().effects().first().cloned() {
            self.fail(format!("backlog_written({sid:?}, {n}) emitted {effect:?}"));
        }
        let finished = self.writers[s]
            .as_ref()
            .is_some_and(|writer| writer.queued.is_empty())
            && self.chat.backlog(sid, 0).next().is_none();
        if finished {
            if let Some(writer) = self.writers[s].take() {
                actual.out[s].extend_from_slice(&writer.held);
            }
        }
        actual.mail = Some(MailStep {
            s,
            hand,
            from,
            handed,
            written,
            finished,
        });
        actual
    }

    /// Ends session `s`'s backlog, if it has one, before it is written
    /// whole: the lines queued and not confirmed are not written (they stay
    /// in the mailbox). Returns what the server kept for the session.
    fn give_up_backlog(&mut self, s: usize) -> Option<Writer> {
        let writer = self.writers[s].take()?;
        self.unwritten.extend(writer.queued.iter().cloned());
        Some(writer)
    }

    /// The sessions that got a timeout notice, in the order they got it,
    /// checked against the sessions that are idle.
    fn timeout_order(&self, actual: &Actual) -> Vec<usize> {
        let order: Vec<usize> = actual
            .pieces
            .iter()
            .filter(|(_, line)| {
                line == protocol::INACTIVITY_LOGOUT || line == protocol::LOGIN_TIMED_OUT
            })
            .map(|&(s, _)| s)
            .collect();
        let idle: BTreeSet<usize> = (0..SESSIONS)
            .filter(|&s| match self.model.slots[s] {
                Slot::Open { last_activity, .. } => last_activity + TIMEOUT <= self.model.now,
                _ => false,
            })
            .collect();
        let got: BTreeSet<usize> = order.iter().copied().collect();
        if got.len() != order.len() || got != idle {
            self.fail(format!(
                "expire timed out sessions {order:?}; the idle ones were {idle:?}"
            ));
        }
        order
    }

    // ---- the model ----

    fn send(expected: &mut Expected, s: usize, line: &str) {
        expected.sent[s].extend_from_slice(line.as_bytes());
        expected.sent[s].push(b'\n');
    }

    fn prompt(expected: &mut Expected, s: usize, prompt: &str) {
        expected.sent[s].extend_from_slice(prompt.as_bytes());
    }

    /// Passes what was sent to session `s` and not routed yet on: held if
    /// its backlog is being written, else to its output.
    fn route(&mut self, s: usize, expected: &mut Expected) {
        let fresh = &expected.sent[s][expected.routed[s]..];
        match &mut self.model.backlogs[s] {
            Some(backlog) => backlog.held.extend_from_slice(fresh),
            None => expected.out[s].extend_from_slice(fresh),
        }
        expected.routed[s] = expected.sent[s].len();
    }

    /// Session `s`'s backlog ends unfinished: the rest stays in the mailbox
    /// for the next login. Returns what the model held for the session.
    fn interrupt_backlog(&mut self, s: usize) -> Option<Vec<u8>> {
        let backlog = self.model.backlogs[s].take()?;
        self.stats.backlogs_interrupted += 1;
        if let Slot::Open {
            stage: Stage::LoggedIn(user),
            ..
        } = self.model.slots[s]
        {
            self.interrupted[user] = true;
        }
        Some(backlog.held)
    }

    /// The domain closes session `s`: a backlog is given up, and what it
    /// held goes out first.
    fn close(&mut self, s: usize, expected: &mut Expected) {
        self.route(s, expected);
        if let Some(held) = self.interrupt_backlog(s) {
            self.stats.backlog_closes += 1;
            expected.out[s].extend_from_slice(&held);
        }
        self.model.slots[s] = Slot::Closed;
        expected.closes.insert(s);
    }

    /// Every other online user that `subject` has not blocked hears `what`.
    fn announce(&mut self, subject: usize, what: &str, expected: &mut Expected) -> BTreeSet<usize> {
        let line = format!("{} {what}", self.model.users[subject].name);
        let mut observers = BTreeSet::new();
        for (u, user) in self.model.users.iter().enumerate() {
            if u == subject || self.model.users[subject].blocked.contains(&u) {
                continue;
            }
            if let Some(s) = user.session {
                Self::send(expected, s, &line);
                observers.insert(s);
            }
        }
        self.stats.presence += observers.len();
        observers
    }

    /// The logged-in session `s` ends (the caller handles the slot).
    fn leave(&mut self, user: usize, expected: &mut Expected) {
        let account = &mut self.model.users[user];
        account.session = None;
        account.last_seen = Some(self.model.now);
        let observers = self.announce(user, "logged out", expected);
        expected.leaves.push((user, observers));
        self.stats.leaves += 1;
    }

    fn model_connect(&mut self, s: usize, expected: &mut Expected) {
        self.model.slots[s] = Slot::Open {
            stage: Stage::Username,
            last_activity: self.model.now,
            private_port: None,
        };
        Self::prompt(expected, s, protocol::USERNAME_PROMPT);
    }

    fn model_disconnect(&mut self, s: usize, expected: &mut Expected) {
        // What the backlog held is lost with the connection.
        self.interrupt_backlog(s);
        if let Slot::Open {
            stage: Stage::LoggedIn(user),
            ..
        } = self.model.slots[s]
        {
            self.leave(user, expected);
        }
        self.model.slots[s] = Slot::Free;
    }

    /// Marks activity and returns the stage of an open session.
    fn touch(&mut self, s: usize) -> Option<Stage> {
        let now = self.model.now;
        match &mut self.model.slots[s] {
            Slot::Open {
                stage,
                last_activity,
                ..
            } => {
                *last_activity = now;
                Some(*stage)
            }
            _ => None,
        }
    }

    fn set_stage(&mut self, s: usize, new: Stage) {
        if let Slot::Open { stage, .. } = &mut self.model.slots[s] {
            *stage = new;
        }
    }

    fn model_line_error(&mut self, s: usize, error: LineError, expected: &mut Expected) {
        let Some(stage) = self.touch(s) else { return };
        Self::send(expected, s, &error.to_string());
        match stage {
            Stage::Username => Self::prompt(expected, s, protocol::USERNAME_PROMPT),
            Stage::Password(_) => Self::prompt(expected, s, protocol::PASSWORD_PROMPT),
            Stage::LoggedIn(_) => {}
        }
    }

    fn model_line(&mut self, s: usize, text: &str, cmd: Option<&Cmd>, expected: &mut Expected) {
        let Some(stage) = self.touch(s) else { return };
        match stage {
            Stage::Username => match ACCOUNTS.iter().position(|&(name, _)| name == text) {
                Some(user) => {
                    self.set_stage(s, Stage::Password(user));
                    Self::prompt(expected, s, protocol::PASSWORD_PROMPT);
                }
                None => {
                    Self::send(expected, s, protocol::INVALID_USERNAME);
                    Self::prompt(expected, s, protocol::USERNAME_PROMPT);
                }
            },
            Stage::Password(user) => self.model_password(s, user, text, expected),
            Stage::LoggedIn(me) => match cmd {
                Some(cmd) => self.model_command(s, me, cmd, expected),
                None => self.fail(format!("no command for logged-in line {text:?}")),
            },
        }
    }

    fn model_password(&mut self, s: usize, user: usize, text: &str, expected: &mut Expected) {
        let now = self.model.now;
        let account = &mut self.model.users[user];
        // A ban ends at its deadline, whether or not `expire` ran since.
        if account.banned_until.is_some_and(|until| until <= now) {
            account.banned_until = None;
            account.failures = 0;
        }
        if account.banned_until.is_some() {
            self.stats.banned_refusals += 1;
            Self::send(expected, s, protocol::ACCOUNT_BANNED);
            self.close(s, expected);
        } else if account.password != text {
            account.failures += 1;
            if account.failures >= 3 {
                account.banned_until = Some(now + BLOCK_DURATION);
                self.stats.bans += 1;
                Self::send(expected, s, protocol::PASSWORD_BANNED);
                self.close(s, expected);
            } else {
                Self::send(expected, s, protocol::INVALID_PASSWORD);
                Self::prompt(expected, s, protocol::PASSWORD_PROMPT);
            }
        } else if account.session.is_some() {
            self.stats.already_online += 1;
            self.set_stage(s, Stage::Username);
            Self::send(expected, s, protocol::ALREADY_LOGGED_IN);
            Self::prompt(expected, s, protocol::USERNAME_PROMPT);
        } else {
            account.session = Some(s);
            account.failures = 0;
            let has_mail = !account.mailbox.is_empty();
            self.set_stage(s, Stage::LoggedIn(user));
            Self::send(expected, s, protocol::WELCOME);
            if has_mail {
                // The welcome goes first; the rest waits for the mailbox.
                self.route(s, expected);
                self.model.backlogs[s] = Some(Backlog::default());
                self.stats.backlogs += 1;
                if std::mem::take(&mut self.interrupted[user]) {
                    self.stats.backlogs_resumed += 1;
                }
            }
            self.stats.logins += 1;
            expected.logins.push((s, user, has_mail));
            self.announce(user, "logged in", expected);
            let online = self.model.users.iter().filter(|u| u.session.is_some());
            self.stats.max_online = self.stats.max_online.max(online.count());
        }
    }

    /// [`Op::Mail`]: the server queues up to `hand` more of the mailbox's
    /// front; the `confirm` oldest queued lines (at most all) are written
    /// and leave the mailbox; once it is empty, with nothing queued, the
    /// held output follows.
    fn model_mail(&mut self, s: usize, hand: usize, confirm: usize, expected: &mut Expected) {
        let Slot::Open {
            stage: Stage::LoggedIn(me),
            ..
        } = self.model.slots[s]
        else {
            return;
        };
        let Some(backlog) = &mut self.model.backlogs[s] else {
            return;
        };
        let user = &mut self.model.users[me];
        let queued = (backlog.queued + hand).min(user.mailbox.len());
        let n = confirm.min(queued);
        backlog.queued = queued - n;
        for line in user.mailbox.drain(..n) {
            expected.out[s].extend_from_slice(line.as_bytes());
            expected.out[s].push(b'\n');
            if message(&line).is_some_and(|(sender, _)| user.blocked.contains(&sender)) {
                self.stats.backlog_from_blocked += 1;
            }
        }
        self.stats.backlog_written += n;
        if backlog.queued == 0 && user.mailbox.is_empty() {
            expected.out[s].extend_from_slice(&backlog.held);
            self.model.backlogs[s] = None;
        }
    }

    fn model_command(&mut self, s: usize, me: usize, cmd: &Cmd, expected: &mut Expected) {
        let my_name = self.model.users[me].name;
        match cmd {
            Cmd::Message { to, text } => {
                let Some(them) = user_index(to) else {
                    return Self::send(expected, s, protocol::INVALID_USER);
                };
                if them == me {
                    return Self::send(expected, s, protocol::CANNOT_MESSAGE_SELF);
                }
                let recipient = &mut self.model.users[them];
                if recipient.blocked.contains(&me) {
                    self.stats.blocked_refusals += 1;
                    return Self::send(expected, s, protocol::MESSAGE_BLOCKED);
                }
                let line = format!("{my_name}: {text}");
                match recipient.session {
                    Some(theirs) => {
                        self.stats.delivered += 1;
                        Self::send(expected, theirs, &line);
                    }
                    None => {
                        recipient.mailbox.push(line);
                        let offline = format!(
                            "{to} is offline. Your message will be delivered when they log in"
                        );
                        Self::send(expected, s, &offline);
                    }
                }
            }
            Cmd::Broadcast { text } => {
                let line = format!("{my_name}: {text}");
                let mut skipped = false;
                for (u, user) in self.model.users.iter().enumerate() {
                    let Some(theirs) = user.session else { continue };
                    if u == me {
                        continue;
                    }
                    if user.blocked.contains(&me) {
                        skipped = true;
                    } else {
                        self.stats.delivered += 1;
                        Self::send(expected, theirs, &line);
                    }
                }
                if skipped {
                    self.stats.partial_broadcasts += 1;
                    Self::send(expected, s, protocol::BROADCAST_PARTIAL);
                }
            }
            Cmd::WhoElse => self.model_who_else(s, me, None, expected),
            Cmd::WhoElseSince(seconds) => {
                self.model_who_else(s, me, Some(Duration::from_secs(*seconds)), expected)
            }
            Cmd::Block(name) => {
                let Some(them) = user_index(name) else {
                    return Self::send(expected, s, protocol::INVALID_USER);
                };
                if them == me {
                    return Self::send(expected, s, protocol::CANNOT_BLOCK_SELF);
                }
                let reply = if self.model.users[me].blocked.insert(them) {
                    format!("{name} is blocked")
                } else {
                    format!("Error. {name} is already blocked")
                };
                Self::send(expected, s, &reply);
            }
            Cmd::Unblock(name) => {
                let Some(them) = user_index(name) else {
                    return Self::send(expected, s, protocol::INVALID_USER);
                };
                if them == me {
                    return Self::send(expected, s, protocol::CANNOT_UNBLOCK_SELF);
                }
                let reply = if self.model.users[me].blocked.remove(&them) {
                    format!("{name} is unblocked")
                } else {
                    format!("Error. {name} was not blocked")
                };
                Self::send(expected, s, &reply);
            }
            Cmd::Logout => {
                self.leave(me, expected);
                Self::send(expected, s, protocol::GOODBYE);
                self.close(s, expected);
            }
            Cmd::Help => {
                let private: &[&str] = match self.model.private_port(s) {
                    Some(_) => protocol::PRIVATE_HELP,
                    None => &[],
                };
                for line in protocol::HELP.iter().chain(private) {
                    Self::send(expected, s, line);
                }
            }
            Cmd::PrivatePort(port) => {
                if let Slot::Open { private_port, .. } = &mut self.model.slots[s] {
                    *private_port = Some(*port);
                }
                self.stats.registrations += 1;
            }
            Cmd::StartPrivate(name) => self.model_start_private(s, me, name, expected),
            Cmd::ClientOnly(name) => {
                let reply = match self.model.private_port(s) {
                    Some(_) => protocol::private_not_enabled(name),
                    None => protocol::PRIVATE_NEEDS_CLIENT.to_owned(),
                };
                Self::send(expected, s, &reply);
            }
            Cmd::Error(reply) => Self::send(expected, s, reply),
        }
    }

    /// `startprivate`: the checks in the order of the README's table, then
    /// a token and the two introduction lines, to the target first.
    fn model_start_private(&mut self, s: usize, me: usize, name: &str, expected: &mut Expected) {
        if self.model.private_port(s).is_none() {
            return Self::send(expected, s, protocol::PRIVATE_NEEDS_CLIENT);
        }
        let Some(them) = user_index(name) else {
            return Self::send(expected, s, protocol::INVALID_USER);
        };
        if them == me {
            return Self::send(expected, s, protocol::CANNOT_PRIVATE_SELF);
        }
        let target = &self.model.users[them];
        if target.blocked.contains(&me) {
            self.stats.private_blocked_refusals += 1;
            let refusal =
                format!("Error. Cannot start private messaging as {name} has blocked you");
            return Self::send(expected, s, &refusal);
        }
        let Some(theirs) = target.session else {
            self.stats.private_unreachable += 1;
            return Self::send(expected, s, &format!("Error. {name} is offline"));
        };
        let Some(port) = self.model.private_port(theirs) else {
            self.stats.private_unreachable += 1;
            let refusal = format!("Error. {name} cannot accept private messaging");
            return Self::send(expected, s, &refusal);
        };
        let draw = self.model.tokens_drawn;
        self.model.tokens_drawn += 1;
        let Some(token) = token_for_draw(draw) else {
            self.stats.private_unavailable += 1;
            return Self::send(expected, s, protocol::PRIVATE_UNAVAILABLE);
        };
        let token = format!("{:032x}", u128::from_be_bytes(token));
        let (prefix, starter) = (protocol::PRIVATE_PREFIX, self.model.users[me].name);
        let accept = format!("{prefix} {} {starter} {token}", protocol::PRIVATE_ACCEPT);
        Self::send(expected, theirs, &accept);
        let address = dial_address(theirs, port);
        let connect = format!(
            "{prefix} {} {name} {address} {token}",
            protocol::PRIVATE_CONNECT
        );
        Self::send(expected, s, &connect);
        self.stats.introductions += 1;
    }

    fn model_who_else(
        &mut self,
        s: usize,
        me: usize,
        window: Option<Duration>,
        expected: &mut Expected,
    ) {
        let now = self.model.now;
        let mut names: Vec<&str> = self
            .model
            .users
            .iter()
            .enumerate()
            .filter(|&(u, user)| {
                u != me
                    && !user.blocked.contains(&me)
                    && (user.session.is_some()
                        || window.is_some_and(|w| {
                            user.last_seen.is_some_and(|t| now.saturating_sub(t) < w)
                        }))
            })
            .map(|(_, user)| user.name)
            .collect();
        names.sort_unstable();
        if names.is_empty() {
            let none = match window {
                None => protocol::NO_OTHER_USERS,
                Some(_) => protocol::NO_OTHER_USERS_SINCE,
            };
            return Self::send(expected, s, none);
        }
        for name in names {
            Self::send(expected, s, name);
        }
    }

    fn model_expire(&mut self, order: &[usize], expected: &mut Expected) {
        for &s in order {
            let Slot::Open { stage, .. } = self.model.slots[s] else {
                continue;
            };
            self.stats.timeouts += 1;
            match stage {
                Stage::LoggedIn(user) => {
                    Self::send(expected, s, protocol::INACTIVITY_LOGOUT);
                    self.leave(user, expected);
                }
                Stage::Username | Stage::Password(_) => {
                    Self::send(expected, s, protocol::LOGIN_TIMED_OUT);
                }
            }
            self.close(s, expected);
        }
    }

    fn model_shutdown(&mut self, expected: &mut Expected) {
        for s in 0..SESSIONS {
            let Slot::Open { stage, .. } = self.model.slots[s] else {
                continue;
            };
            if let Stage::LoggedIn(user) = stage {
                let account = &mut self.model.users[user];
                account.session = None;
                account.last_seen = Some(self.model.now);
            }
            Self::send(expected, s, protocol::SHUTTING_DOWN);
            self.close(s, expected);
        }
    }

    // ---- the checks ----

    /// The invariants, judged on what `Chat` emitted; `pre` is the model
    /// before the step, when blocks and logins are as the step found them.
    fn check_invariants(&mut self, pre: &Model, actual: &Actual, expected: &Expected) {
        // Who each session is logged in as, as the step goes on.
        let mut user_of: [Option<usize>; SESSIONS] = std::array::from_fn(|s| match pre.slots[s] {
            Slot::Open {
                stage: Stage::LoggedIn(u),
                ..
            } => Some(u),
            _ => None,
        });
        // (subject, observer session) -> how many `logged out` lines.
        let mut logged_out: HashMap<(usize, usize), usize> = HashMap::new();

        for (s, line) in &actual.pieces {
            let s = *s;
            if line == protocol::WELCOME {
                let Slot::Open {
                    stage: Stage::Password(u),
                    ..
                } = pre.slots[s]
                else {
                    self.fail(format!("welcome to session {s}, which gave no password"));
                };
                if let Some(other) = pre.users[u].session {
                    self.fail(format!(
                        "{} is online on session {other} and also logged in on session {s}",
                        pre.users[u].name
                    ));
                }
                user_of[s] = Some(u);
                continue;
            }
            let presence = line
                .strip_suffix(" logged in")
                .map(|name| (name, false))
                .or_else(|| line.strip_suffix(" logged out").map(|name| (name, true)));
            if let Some((subject, out)) = presence.and_then(|(n, out)| Some((user_index(n)?, out)))
            {
                let Some(observer) = user_of[s] else {
                    self.fail(format!(
                        "{line:?} reached session {s}, which is not logged in"
                    ));
                };
                if pre.users[subject].blocked.contains(&observer) {
                    self.fail(format!(
                        "{line:?} reached {}, whom {} has blocked",
                        pre.users[observer].name, pre.users[subject].name
                    ));
                }
                if out {
                    *logged_out.entry((subject, s)).or_default() += 1;
                }
                continue;
            }
            // A live message: a backlog line is no `Send` effect.
            if let Some((sender, text)) = message(line) {
                let Some(recipient) = user_of[s] else {
                    self.fail(format!(
                        "{line:?} reached session {s}, which is not logged in"
                    ));
                };
                if pre.users[recipient].blocked.contains(&sender) {
                    self.fail(format!(
                        "{line:?} reached {}, who has blocked {}",
                        pre.users[recipient].name, pre.users[sender].name
                    ));
                }
                if !self.delivered.insert((text.to_owned(), recipient)) {
                    self.fail(format!(
                        "{line:?} reached {} a second time",
                        pre.users[recipient].name
                    ));
                }
            }
        }

        // `logged out`: once per observer, to exactly the observers online
        // at that moment and not blocked by the leaver.
        if let Some(((subject, s), n)) = logged_out.iter().find(|(_, &n)| n > 1) {
            self.fail(format!(
                "`{} logged out` reached session {s} {n} times",
                pre.users[*subject].name
            ));
        }
        for (subject, observers) in &expected.leaves {
            for &s in observers {
                if logged_out.remove(&(*subject, s)).is_none() {
                    self.fail(format!(
                        "`{} logged out` did not reach session {s}, online then and not blocked",
                        pre.users[*subject].name
                    ));
                }
            }
        }
        if let Some(&(subject, s)) = logged_out.keys().next() {
            self.fail(format!(
                "`{} logged out` reached session {s}, which was not an observer of a leave",
                pre.users[subject].name
            ));
        }

        // A backlog starts right after the welcome of a login with mail,
        // and only then.
        for &(s, after_welcome) in &actual.backlog_starts {
            if !after_welcome {
                self.fail(format!(
                    "the backlog of session {s} does not follow its welcome"
                ));
            }
        }
        for &(s, user, has_mail) in &expected.logins {
            let started = actual.backlog_starts.iter().any(|&(b, _)| b == s);
            if started != has_mail {
                self.fail(format!(
                    "{} logged in on session {s} with {} offline messages, and a backlog \
                     started: {started}",
                    pre.users[user].name,
                    pre.users[user].mailbox.len()
                ));
            }
        }
        if let Some(&(s, _)) = actual
            .backlog_starts
            .iter()
            .find(|&&(s, _)| !expected.logins.iter().any(|&(l, _, _)| l == s))
        {
            self.fail(format!(
                "a backlog started for session {s}, which did not log in"
            ));
        }
    }

    /// An [`Op::Mail`] step, judged against `pre`: the lines handed out are
    /// the mailbox's from `from` on, and all the rest if fewer than asked
    /// for; the lines written are its front, each delivered once; the held
    /// output was released only with the mailbox written whole.
    fn check_backlog(&mut self, pre: &Model, actual: &Actual) {
        let Some(mail) = &actual.mail else {
            return;
        };
        let s = mail.s;
        let Slot::Open {
            stage: Stage::LoggedIn(user),
            ..
        } = pre.slots[s]
        else {
            self.fail(format!("a backlog for session {s}, which is not logged in"));
        };
        let (name, mailbox) = (pre.users[user].name, &pre.users[user].mailbox);
        let rest = mailbox.get(mail.from..).unwrap_or_default();
        let expected = &rest[..rest.len().min(mail.hand)];
        if mail.handed != expected {
            self.fail(format!(
                "backlog(session {s}, {}) gave {:?}; {name}'s mailbox from there is {rest:?}",
                mail.from, mail.handed
            ));
        }
        if !mailbox.starts_with(&mail.written) {
            self.fail(format!(
                "the server wrote {:?} of {name}'s backlog, which is not the front of the \
                 mailbox {mailbox:?}",
                mail.written
            ));
        }
        for line in &mail.written {
            if let Some((_, text)) = message(line) {
                if !self.delivered.insert((text.to_owned(), user)) {
                    self.fail(format!("{line:?} reached {name} a second time"));
                }
            }
        }
        if mail.finished && mail.written.len() != mailbox.len() {
            self.fail(format!(
                "{name}'s backlog ended after {:?}, with {mailbox:?} in the mailbox",
                mail.written
            ));
        }
    }

    /// The `!private` lines of a step, judged against `pre` (no step both
    /// registers a session and introduces it): only to sessions that sent
    /// `privateport`; the address never to a user the target blocked, and
    /// it is the target session's; each token in exactly one `accept` and
    /// one `connect` line, `accept` first, pairing the same two users, and
    /// never again in a later step.
    fn check_introductions(&mut self, pre: &Model, actual: &Actual) {
        // Per token: the `accept` line's (recipient, starter named) and the
        // `connect` line's (recipient, target named), as users.
        type Pair = (Option<(usize, usize)>, Option<(usize, usize)>);
        let mut pairs: BTreeMap<&str, Pair> = BTreeMap::new();
        for (s, line) in &actual.pieces {
            let s = *s;
            let Some(rest) = line.strip_prefix(protocol::PRIVATE_PREFIX) else {
                continue;
            };
            let Slot::Open {
                stage: Stage::LoggedIn(me),
                private_port: Some(_),
                ..
            } = pre.slots[s]
            else {
                self.fail(format!(
                    "{line:?} reached session {s}, which did not send privateport"
                ));
            };
            let words: Vec<&str> = rest.split(' ').collect();
            // `address` is `None` on an `accept` line.
            let (named, address, token) = match words.as_slice() {
                ["", kind, named, token] if *kind == protocol::PRIVATE_ACCEPT => {
                    (*named, None, *token)
                }
                ["", kind, named, address, token] if *kind == protocol::PRIVATE_CONNECT => {
                    (*named, Some(*address), *token)
                }
                _ => self.fail(format!("{line:?} to session {s} is not an introduction")),
            };
            let Some(other) = user_index(named) else {
                self.fail(format!("{line:?} names no user"));
            };
            let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
            if token.len() != 2 * TOKEN_BYTES || !token.bytes().all(hex) {
                self.fail(format!(
                    "{line:?}: the token is not 32 lowercase hex digits"
                ));
            }
            let pair = pairs.entry(token).or_default();
            let Some(address) = address else {
                // (A `connect` line before it already failed below.)
                if self.tokens.contains(token) || pair.0.is_some() {
                    self.fail(format!("{line:?}: the token was given before"));
                }
                pair.0 = Some((me, other));
                continue;
            };
            if pair.0.is_none() || pair.1.is_some() {
                self.fail(format!(
                    "{line:?}: the token is not that of one accept line before it"
                ));
            }
            pair.1 = Some((me, other));
            let (me_name, target) = (pre.users[me].name, &pre.users[other]);
            if target.blocked.contains(&me) {
                self.fail(format!(
                    "{line:?} reached {me_name}, whom {} has blocked",
                    target.name
                ));
            }
            let listening = target
                .session
                .and_then(|t| Some(dial_address(t, pre.private_port(t)?)));
            if Some(address) != listening.as_deref() {
                self.fail(format!(
                    "{line:?}: {} listens at {listening:?}",
                    target.name
                ));
            }
        }
        for (token, pair) in pairs {
            match pair {
                (Some((target, starter)), Some((me, named)))
                    if me == starter && named == target => {}
                (accept, connect) => self.fail(format!(
                    "token {token}: accept line (to, naming) {accept:?} and connect line \
                     {connect:?} do not pair the same two users"
                )),
            }
            self.tokens.insert(token.to_owned());
        }
    }

    /// What was sent to every session, what reached it, and the set of
    /// closes equal the model's.
    fn check_transcripts(&self, actual: &Actual, expected: &Expected) {
        for s in 0..SESSIONS {
            if actual.sent[s] != expected.sent[s] {
                self.fail(format!(
                    "session {s} was sent {:?}, the model says {:?}",
                    String::from_utf8_lossy(&actual.sent[s]),
                    String::from_utf8_lossy(&expected.sent[s]),
                ));
            }
            if actual.out[s] != expected.out[s] {
                self.fail(format!(
                    "session {s} got {:?}, the model says {:?}",
                    String::from_utf8_lossy(&actual.out[s]),
                    String::from_utf8_lossy(&expected.out[s]),
                ));
            }
        }
        if actual.closes != expected.closes {
            self.fail(format!(
                "closed sessions {:?}, the model says {:?}",
                actual.closes, expected.closes
            ));
        }
    }

    /// Online state, timers and token draws after the step.
    fn check_state(&self) {
        let drawn = TOKENS_DRAWN.get();
        if drawn != self.model.tokens_drawn {
            self.fail(format!(
                "the domain drew {drawn} tokens, the model says {}",
                self.model.tokens_drawn
            ));
        }
        let mut online = 0;
        for (u, user) in self.model.users.iter().enumerate() {
            let sessions = self
                .model
                .slots
                .iter()
                .filter(
                    |slot| matches!(slot, Slot::Open { stage: Stage::LoggedIn(v), .. } if *v == u),
                )
                .count();
            assert!(sessions <= 1, "model: {} online twice", user.name);
            let is_online = self.chat.is_online(user.name);
            if is_online != user.session.is_some() {
                self.fail(format!(
                    "is_online({}) is {is_online}, the model says {}",
                    user.name, !is_online
                ));
            }
            online += usize::from(user.session.is_some());
        }
        if self.chat.online_count() != online {
            self.fail(format!(
                "online_count() is {}, the model says {online}",
                self.chat.online_count()
            ));
        }
        self.check_mailboxes();
        // The poll loop sleeps until `next_deadline`: it must not be later
        // than any idle timeout or ban end.
        let next = self.chat.next_deadline();
        for (s, slot) in self.model.slots.iter().enumerate() {
            if let Slot::Open { last_activity, .. } = slot {
                let due = self.at(*last_activity + TIMEOUT);
                if next.is_none_or(|d| d > due) {
                    self.fail(format!(
                        "next_deadline {next:?} misses session {s}'s idle timeout"
                    ));
                }
            }
        }
        for user in &self.model.users {
            if let Some(until) = user.banned_until.filter(|&u| u > self.model.now) {
                if next.is_none_or(|d| d > self.at(until)) {
                    self.fail(format!(
                        "next_deadline {next:?} misses {}'s ban end",
                        user.name
                    ));
                }
            }
        }
    }

    /// The mailboxes, and the state of every backlog, equal the model's.
    fn check_mailboxes(&self) {
        for user in &self.model.users {
            let len = self.chat.mailbox_len(user.name);
            if len != user.mailbox.len() {
                self.fail(format!(
                    "{} has {len} offline messages, the model says {:?}",
                    user.name, user.mailbox
                ));
            }
        }
        let no_mail = Vec::new();
        for s in 0..SESSIONS {
            let backlog: Vec<&str> = self.chat.backlog(SessionId(s), 0).collect();
            let mailbox = match self.model.slots[s] {
                Slot::Open {
                    stage: Stage::LoggedIn(user),
                    ..
                } => &self.model.users[user].mailbox,
                _ => &no_mail,
            };
            if backlog != *mailbox {
                self.fail(format!(
                    "backlog(session {s}, 0) gives {backlog:?}, the model says {mailbox:?}"
                ));
            }
            let queued = self.writers[s].as_ref().map(|w| w.queued.len());
            let model = self.model.backlogs[s].as_ref().map(|b| b.queued);
            if queued != model {
                self.fail(format!(
                    "session {s}'s backlog has {queued:?} lines queued, the model says {model:?}"
                ));
            }
        }
    }

    /// Panics with `problem` and the operations that led to it.
    fn fail(&self, problem: String) -> ! {
        let mut report = format!("chat invariant violated: {problem}\nlast operations:\n");
        for (at, op) in &self.trace {
            let _ = writeln!(report, "  t={at:?} {}", describe(op));
        }
        panic!("{report}");
    }
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
