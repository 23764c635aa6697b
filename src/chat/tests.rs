//! Tests of the chat domain against `protocol.md`, through its public API.
//!
//! Every reply is spelled out literally here (not through the constants of
//! `protocol.rs`), so a wording change anywhere breaks a test. Time is
//! simulated: every call takes an `Instant` derived from one `t0`.
//!
//! This file is the harness that plays the server, and what the tests
//! share; the tests are in one submodule per idea.

use super::*;
use crate::credentials::Account;
use crate::journal::record::{self, Record};
use crate::protocol::LineError;
use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::SystemTime;

const BLOCK: Duration = Duration::from_secs(10);
const TIMEOUT: Duration = Duration::from_secs(60);

const WELCOME: &str = "Welcome to the greatest messaging application ever!\n";
const USERNAME: &str = "Username: ";
const PASSWORD: &str = "Password: ";
const INVALID_USERNAME: &str = "Invalid Username. Please try again\nUsername: ";
const INVALID_PASSWORD: &str = "Invalid Password. Please try again\nPassword: ";
const NOW_BANNED: &str =
    "Invalid Password. Your account has been blocked. Please try again later\n";
const BANNED: &str =
    "Your account is blocked due to multiple login failures. Please try again later\n";
const ALREADY_ONLINE: &str = "This user is already logged in\nUsername: ";
const INACTIVE: &str = "You have been logged out due to inactivity\n";
const LOGIN_TIMED_OUT: &str = "Login timed out\n";
const GOODBYE: &str = "Goodbye\n";
const MESSAGE_BLOCKED: &str =
    "Your message could not be delivered as the recipient has blocked you\n";
const PARTIAL: &str = "Your message could not be delivered to some recipients\n";
const NOBODY_ONLINE: &str = "No other users are online\n";
const NOBODY_SINCE: &str = "No other users since then\n";

const Y: SessionId = SessionId(1);
const H: SessionId = SessionId(2);
const V: SessionId = SessionId(3);
const L: SessionId = SessionId(4);

fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn offline(user: &str) -> String {
    format!("{user} is offline. Your message will be delivered when they log in\n")
}

/// Accounts of these (username, password) pairs, in order.
fn accounts(pairs: &[(&str, &str)]) -> Vec<Account> {
    pairs
        .iter()
        .map(|&(u, p)| Account {
            username: u.to_owned(),
            password: p.to_owned(),
        })
        .collect()
}

/// The domain plus what every session received, drained after each call.
struct Harness {
    chat: Chat,
    /// Bytes received by each session since its last `take`.
    received: HashMap<SessionId, Vec<u8>>,
    /// Sessions that got `Effect::Close` (forgotten when the id reconnects).
    closed: HashSet<SessionId>,
    /// Journal records produced since the last `take_records`.
    records: Vec<u8>,
    /// Sessions held since the last `take_records`.
    held: Vec<SessionId>,
    /// Whether a login's backlog is written at once, as to a client that
    /// reads as fast as the server writes (the default); tests of the
    /// streamed backlog turn it off and drive [`Chat::backlog`]
    /// themselves, and then find it here.
    auto_backlog: bool,
    /// Sessions whose backlog is waiting, when `auto_backlog` is off.
    backlogs: Vec<SessionId>,
}

impl Harness {
    fn new() -> Harness {
        let accounts = accounts(&[
            ("yoda", "wise"),
            ("hans", "falcon"),
            ("vader", "sithlord"),
            ("luke", "lightsaber"),
        ]);
        let mut config = ChatConfig::new(BLOCK, TIMEOUT);
        // Tests of the login deadline set their own.
        config.login_timeout = secs(3600);
        Harness::with(accounts, config)
    }

    fn with(accounts: Vec<Account>, config: ChatConfig) -> Harness {
        Harness {
            chat: Chat::new(accounts, config),
            received: HashMap::new(),
            closed: HashSet::new(),
            records: Vec::new(),
            held: Vec::new(),
            auto_backlog: true,
            backlogs: Vec::new(),
        }
    }

    /// A harness with the test accounts and `config` changed by `tune`.
    fn tuned(tune: impl FnOnce(&mut ChatConfig)) -> Harness {
        let mut h = Harness::new();
        let mut config = h.chat.config;
        tune(&mut config);
        let accounts = h
            .chat
            .users
            .iter()
            .map(|u| Account {
                username: u.name.to_string(),
                password: u.password.as_deref().unwrap_or_default().to_owned(),
            })
            .collect();
        h = Harness::with(accounts, config);
        h
    }

    /// Moves the outbox into the transcripts, checking that nothing is sent
    /// to a closed session, that nothing is closed twice, and that the poll
    /// loop would wake up in time for every pending timer.
    #[track_caller]
    fn drain(&mut self) {
        let outbox = self.chat.outbox();
        let effects = outbox.effects().to_vec();
        let texts: Vec<Vec<u8>> = effects
            .iter()
            .map(|e| match e {
                Effect::Send { text, .. } | Effect::Notice { text, .. } => {
                    outbox.text(text.clone()).to_vec()
                }
                _ => Vec::new(),
            })
            .collect();
        self.records.extend_from_slice(outbox.records());
        self.held.extend_from_slice(outbox.held());
        outbox.clear();
        for (effect, text) in effects.iter().zip(texts) {
            match effect {
                Effect::Send { to, .. } | Effect::Notice { to, .. } => {
                    assert!(!self.closed.contains(to), "{to:?} got output after Close");
                    self.received
                        .entry(*to)
                        .or_default()
                        .extend_from_slice(&text);
                }
                Effect::Close(sid) => {
                    assert!(self.closed.insert(*sid), "{sid:?} closed twice");
                }
                Effect::Backlog(sid) if self.auto_backlog => {
                    let n = self.read_backlog(*sid, usize::MAX);
                    self.chat.backlog_written(*sid, n);
                    let outbox = self.chat.outbox();
                    self.records.extend_from_slice(outbox.records());
                    assert!(outbox.effects().is_empty());
                    outbox.clear();
                }
                Effect::Backlog(sid) => self.backlogs.push(*sid),
            }
        }
        self.check_deadlines();
    }

    /// Appends up to `n` lines of `sid`'s backlog to what it received;
    /// returns how many.
    fn read_backlog(&mut self, sid: SessionId, n: usize) -> usize {
        let lines: Vec<String> = self
            .chat
            .backlog(sid, 0)
            .take(n)
            .map(|line| format!("{line}\n"))
            .collect();
        let received = self.received.entry(sid).or_default();
        for line in &lines {
            received.extend_from_slice(line.as_bytes());
        }
        lines.len()
    }

    /// `next_deadline` is never later than an idle timeout or a ban end.
    #[track_caller]
    fn check_deadlines(&self) {
        let next = self.chat.next_deadline();
        for session in self.chat.sessions.iter() {
            let due = session.last_activity + TIMEOUT;
            assert!(next.is_some_and(|d| d <= due), "idle deadline missed");
        }
        for user in self.chat.users.iter() {
            if let Some(until) = user.banned_until {
                assert!(next.is_some_and(|d| d <= until), "ban end missed");
            }
        }
    }

    /// Connects `sid` from 127.0.0.1.
    #[track_caller]
    fn connect(&mut self, sid: SessionId, now: Instant) {
        self.connect_from(sid, Ipv4Addr::LOCALHOST.into(), now);
    }

    #[track_caller]
    fn connect_from(&mut self, sid: SessionId, ip: IpAddr, now: Instant) {
        self.closed.remove(&sid);
        self.chat.connect(sid, ip, false, now);
        self.drain();
    }

    /// Connects `sid` from a trusted address.
    #[track_caller]
    fn connect_trusted(&mut self, sid: SessionId, ip: IpAddr, now: Instant) {
        self.closed.remove(&sid);
        self.chat.connect(sid, ip, true, now);
        self.drain();
    }

    #[track_caller]
    fn send(&mut self, sid: SessionId, line: &str, now: Instant) {
        self.chat.line(sid, line, now);
        self.drain();
    }

    /// Sends a line and returns what `sid` received since its last take.
    #[track_caller]
    fn ask(&mut self, sid: SessionId, line: &str, now: Instant) -> String {
        self.send(sid, line, now);
        self.take(sid)
    }

    #[track_caller]
    fn line_error(&mut self, sid: SessionId, error: LineError, now: Instant) -> String {
        self.chat.line_error(sid, error, now);
        self.drain();
        self.take(sid)
    }

    #[track_caller]
    fn disconnect(&mut self, sid: SessionId, now: Instant) {
        self.chat.disconnect(sid, now);
        self.drain();
    }

    #[track_caller]
    fn expire(&mut self, now: Instant) {
        self.chat.expire(now);
        self.drain();
    }

    #[track_caller]
    fn shutdown(&mut self, now: Instant) {
        self.chat.shutdown(now);
        self.drain();
    }

    /// What `sid` received since the last take.
    #[track_caller]
    fn take(&mut self, sid: SessionId) -> String {
        let bytes = self.received.remove(&sid).unwrap_or_default();
        String::from_utf8(bytes).expect("output is UTF-8")
    }

    /// The effects not drained yet, in order, as (session, line) for a
    /// `Send` and (session, `None`) for a `Close`; then drains them as
    /// usual (so the lines are also in what each session received).
    #[track_caller]
    fn take_effects(&mut self) -> Vec<(SessionId, Option<String>)> {
        let outbox = self.chat.outbox();
        let effects = outbox
            .effects()
            .iter()
            .map(|e| match e {
                Effect::Send { to, text } | Effect::Notice { to, text } => (
                    *to,
                    Some(String::from_utf8_lossy(outbox.text(text.clone())).into_owned()),
                ),
                Effect::Close(sid) | Effect::Backlog(sid) => (*sid, None),
            })
            .collect();
        self.drain();
        effects
    }

    /// Forgets what every session received (for set-up steps).
    fn discard(&mut self) {
        self.received.clear();
    }

    fn closed(&self, sid: SessionId) -> bool {
        self.closed.contains(&sid)
    }

    /// Connects `sid`, types the username (checking the prompts) and the
    /// password, and returns what the password got.
    #[track_caller]
    fn try_login(&mut self, sid: SessionId, user: &str, pass: &str, now: Instant) -> String {
        self.connect(sid, now);
        assert_eq!(self.take(sid), USERNAME);
        assert_eq!(self.ask(sid, user, now), PASSWORD);
        self.ask(sid, pass, now)
    }

    /// Logs in and returns the queued offline messages after the welcome.
    #[track_caller]
    fn login_with_mail(&mut self, sid: SessionId, user: &str, pass: &str, now: Instant) -> String {
        let got = self.try_login(sid, user, pass, now);
        let mail = got.strip_prefix(WELCOME);
        assert!(mail.is_some(), "login of {user} got {got:?}");
        assert!(self.chat.is_online(user));
        assert!(!self.closed(sid));
        mail.unwrap_or_default().to_owned()
    }

    /// Logs in a user that has no offline messages.
    #[track_caller]
    fn login(&mut self, sid: SessionId, user: &str, pass: &str, now: Instant) {
        assert_eq!(self.login_with_mail(sid, user, pass, now), "");
    }

    /// Bans `user` with three wrong passwords on a new session `sid`.
    #[track_caller]
    fn ban(&mut self, sid: SessionId, user: &str, now: Instant) {
        assert_eq!(self.try_login(sid, user, "wrong1", now), INVALID_PASSWORD);
        assert_eq!(self.ask(sid, "wrong2", now), INVALID_PASSWORD);
        assert!(!self.closed(sid));
        assert_eq!(self.ask(sid, "wrong3", now), NOW_BANNED);
        assert!(self.closed(sid));
    }

    /// Runs the timers the way the poll loop does (sleep until
    /// `next_deadline`, then `expire`) up to `until`, and returns every
    /// session closed meanwhile with the instant it was closed at.
    #[track_caller]
    fn run_timers(&mut self, until: Instant) -> Vec<(SessionId, Instant)> {
        let mut closes = Vec::new();
        for _ in 0..1000 {
            match self.chat.next_deadline() {
                Some(at) if at <= until => {
                    let before = self.closed.clone();
                    self.expire(at);
                    let mut new: Vec<_> = self.closed.difference(&before).copied().collect();
                    new.sort();
                    closes.extend(new.into_iter().map(|sid| (sid, at)));
                }
                _ => return closes,
            }
        }
        panic!("expire does not advance next_deadline");
    }
}

/// A harness whose domain records changes, with a wall clock reading
/// `WALL_MS` at `t0`.
fn recording(t0: Instant) -> Harness {
    let mut h = Harness::new();
    h.chat.record_changes(wall(t0));
    h
}

const WALL_MS: u64 = 1_700_000_000_000;

fn wall(t0: Instant) -> WallClock {
    WallClock {
        at: t0,
        unix_ms: WALL_MS,
    }
}

impl Harness {
    /// The records produced since the last call, and the held sessions.
    fn take_records(&mut self) -> (Vec<Record<'static>>, Vec<SessionId>) {
        let bytes = std::mem::take(&mut self.records);
        let mut records = Vec::new();
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let len = record::FRAME_HEADER
                + u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            let record = record::check_frame(&rest[..len]).expect("an intact record");
            records.push(leak(record));
            rest = &rest[len..];
        }
        (records, std::mem::take(&mut self.held))
    }
}

/// A record that owns nothing (the test leaks its few strings).
fn leak(record: Record<'_>) -> Record<'static> {
    let s = |text: &str| -> &'static str { Box::leak(text.to_owned().into_boxed_str()) };
    match record {
        Record::MailboxAppend {
            recipient,
            seq,
            stored_unix_ms,
            sender,
            text,
        } => Record::MailboxAppend {
            recipient: s(recipient),
            seq,
            stored_unix_ms,
            sender: s(sender),
            text: s(text),
        },
        Record::MailboxTaken { recipient, through } => Record::MailboxTaken {
            recipient: s(recipient),
            through,
        },
        Record::MailboxDelivered { recipient } => Record::MailboxDelivered {
            recipient: s(recipient),
        },
        Record::Block { user, target } => Record::Block {
            user: s(user),
            target: s(target),
        },
        Record::Unblock { user, target } => Record::Unblock {
            user: s(user),
            target: s(target),
        },
        Record::Ban {
            user,
            until_unix_ms,
        } => Record::Ban {
            user: s(user),
            until_unix_ms,
        },
        Record::BanCleared { user } => Record::BanCleared { user: s(user) },
    }
}

mod commands;
mod durable;
mod groups;
mod hardening;
mod hashed;
mod inactivity;
mod login;
mod mail;
mod presence;
mod private;
mod reload;
mod shutdown;
mod stamps;
mod state;
mod state_garbage;
mod state_random;
