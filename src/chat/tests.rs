//! Tests of the chat domain against `protocol.md`, through its public API.
//!
//! Every reply is spelled out literally here (not through the constants of
//! `protocol.rs`), so a wording change anywhere breaks a test. Time is
//! simulated: every call takes an `Instant` derived from one `t0`.

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
        let accounts = [
            ("yoda", "wise"),
            ("hans", "falcon"),
            ("vader", "sithlord"),
            ("luke", "lightsaber"),
        ]
        .into_iter()
        .map(|(u, p)| Account {
            username: u.to_owned(),
            password: p.to_owned(),
        })
        .collect();
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
                Effect::Send { text, .. } => outbox.text(text.clone()).to_vec(),
                _ => Vec::new(),
            })
            .collect();
        self.records.extend_from_slice(outbox.records());
        self.held.extend_from_slice(outbox.held());
        outbox.clear();
        for (effect, text) in effects.iter().zip(texts) {
            match effect {
                Effect::Send { to, .. } => {
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
                Effect::Send { to, text } => (
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

// ---------------------------------------------------------------- login

#[test]
fn login_prompts_then_welcome() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    assert_eq!(h.take(Y), "Username: ");
    assert_eq!(h.ask(Y, "yoda", t0), "Password: ");
    assert!(!h.chat.is_online("yoda"));
    assert_eq!(h.chat.online_count(), 0);
    assert_eq!(
        h.ask(Y, "wise", t0),
        "Welcome to the greatest messaging application ever!\n"
    );
    assert!(h.chat.is_online("yoda"));
    assert!(!h.chat.is_online("hans"));
    assert!(!h.chat.is_online("nobody"));
    assert_eq!(h.chat.online_count(), 1);
    assert!(!h.closed(Y));
}

#[test]
fn unknown_username_asks_for_the_username_again() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(
        h.ask(Y, "bob", t0),
        "Invalid Username. Please try again\nUsername: "
    );
    assert_eq!(h.ask(Y, "Yoda", t0), INVALID_USERNAME);
    assert_eq!(h.ask(Y, "wise", t0), INVALID_USERNAME);
    assert!(!h.closed(Y));
    assert_eq!(h.ask(Y, "yoda", t0), PASSWORD);
    assert_eq!(h.ask(Y, "wise", t0), WELCOME);
}

#[test]
fn wrong_password_twice_asks_again_and_the_third_bans_and_closes() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    assert_eq!(
        h.try_login(Y, "yoda", "falcon", t0),
        "Invalid Password. Please try again\nPassword: "
    );
    assert!(!h.closed(Y));
    assert_eq!(h.ask(Y, "WISE", t0), INVALID_PASSWORD);
    assert!(!h.closed(Y));
    assert_eq!(
        h.ask(Y, "wis", t0),
        "Invalid Password. Your account has been blocked. Please try again later\n"
    );
    assert!(h.closed(Y));
    assert!(!h.chat.is_online("yoda"));
    // The session is over: later lines get nothing (the harness would also
    // fail on output after Close).
    assert_eq!(h.ask(Y, "wise", t0), "");
}

#[test]
fn a_banned_username_is_refused_after_the_password_prompt_whatever_the_password() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.ban(SessionId(10), "yoda", t0);
    assert_eq!(
        h.try_login(SessionId(11), "yoda", "wise", t0 + secs(1)),
        "Your account is blocked due to multiple login failures. Please try again later\n"
    );
    assert!(h.closed(SessionId(11)));
    assert_eq!(
        h.try_login(SessionId(12), "yoda", "nope", t0 + secs(2)),
        BANNED
    );
    assert!(h.closed(SessionId(12)));
    assert!(!h.chat.is_online("yoda"));
    // Other usernames are not affected.
    h.login(H, "hans", "falcon", t0 + secs(2));
}

#[test]
fn a_session_already_at_the_password_prompt_is_refused_once_the_ban_starts() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(h.ask(Y, "yoda", t0), PASSWORD);
    h.ban(SessionId(10), "yoda", t0 + secs(1));
    assert_eq!(h.ask(Y, "wise", t0 + secs(2)), BANNED);
    assert!(h.closed(Y));
}

#[test]
fn right_password_while_online_elsewhere_asks_for_the_username_and_keeps_the_count() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    let s = SessionId(10);
    assert_eq!(h.try_login(s, "yoda", "bad", t0), INVALID_PASSWORD); // 1st
    assert_eq!(
        h.ask(s, "wise", t0),
        "This user is already logged in\nUsername: "
    );
    assert!(!h.closed(s));
    assert_eq!(h.chat.online_count(), 1);
    // Back at the username prompt.
    assert_eq!(h.ask(s, "wise", t0), INVALID_USERNAME);
    assert_eq!(h.ask(s, "yoda", t0), PASSWORD);
    assert_eq!(h.ask(s, "wise", t0), ALREADY_ONLINE);
    assert_eq!(h.ask(s, "yoda", t0), PASSWORD);
    // Not counted as a failure: this is the 2nd one...
    assert_eq!(h.ask(s, "bad", t0), INVALID_PASSWORD);
    // ...and the count was not reset either: the 3rd bans.
    assert_eq!(h.ask(s, "bad", t0), NOW_BANNED);
    assert!(h.closed(s));
    // The online session is untouched.
    assert!(h.chat.is_online("yoda"));
    assert!(!h.closed(Y));
    assert_eq!(h.take(Y), "");
}

#[test]
fn two_sessions_racing_for_the_same_user() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    for s in [Y, H] {
        h.connect(s, t0);
        h.take(s);
        assert_eq!(h.ask(s, "yoda", t0), PASSWORD);
    }
    assert_eq!(h.ask(Y, "wise", t0), WELCOME);
    assert_eq!(h.ask(H, "wise", t0), ALREADY_ONLINE);
    assert_eq!(h.chat.online_count(), 1);
    assert_eq!(h.take(Y), "");
}

#[test]
fn failure_counts_are_per_username_across_sessions() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    let [s1, s2, s3, s4] = [10, 11, 12, 13].map(SessionId);
    assert_eq!(h.try_login(s1, "yoda", "bad", t0), INVALID_PASSWORD); // yoda 1
    h.disconnect(s1, t0);
    assert_eq!(h.try_login(s2, "hans", "bad", t0), INVALID_PASSWORD); // hans 1
    assert_eq!(h.try_login(s3, "yoda", "bad", t0), INVALID_PASSWORD); // yoda 2
    assert_eq!(h.try_login(s4, "yoda", "bad", t0), NOW_BANNED); // yoda 3
    assert!(h.closed(s4));
    // s3 was still at the password prompt: now banned.
    assert_eq!(h.ask(s3, "wise", t0), BANNED);
    assert!(h.closed(s3));
    // hans has one failure only.
    assert_eq!(h.ask(s2, "bad", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(s2, "falcon", t0), WELCOME);
}

#[test]
fn a_successful_login_resets_the_count() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    assert_eq!(h.try_login(Y, "yoda", "bad", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(Y, "bad", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(Y, "wise", t0), WELCOME);
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    assert_eq!(h.try_login(Y, "yoda", "bad", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(Y, "bad", t0), INVALID_PASSWORD);
    assert!(!h.closed(Y));
    assert_eq!(h.ask(Y, "bad", t0), NOW_BANNED);
}

#[test]
fn a_ban_lasts_exactly_block_duration_without_expire() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.ban(SessionId(10), "yoda", t0);
    let end = t0 + BLOCK;
    assert_eq!(
        h.try_login(SessionId(11), "yoda", "wise", end - ms(1)),
        BANNED
    );
    assert_eq!(h.try_login(Y, "yoda", "wise", end), WELCOME);
}

#[test]
fn a_ban_lasts_exactly_block_duration_with_expire() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.ban(SessionId(10), "yoda", t0);
    let end = t0 + BLOCK;
    assert!(h.chat.next_deadline().is_some_and(|d| d <= end));
    h.expire(end - ms(1));
    assert_eq!(
        h.try_login(SessionId(11), "yoda", "wise", end - ms(1)),
        BANNED
    );
    h.expire(end);
    assert_eq!(h.try_login(Y, "yoda", "wise", end), WELCOME);
}

#[test]
fn a_ban_that_ends_while_at_the_password_prompt_lets_the_user_in() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.ban(SessionId(10), "yoda", t0);
    h.connect(Y, t0 + secs(1));
    h.take(Y);
    assert_eq!(h.ask(Y, "yoda", t0 + secs(1)), PASSWORD);
    assert_eq!(h.ask(Y, "wise", t0 + BLOCK), WELCOME);
}

#[test]
fn nothing_extends_a_ban() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.ban(SessionId(10), "yoda", t0);
    for (i, (pass, at)) in [
        ("bad", secs(1)),
        ("wise", secs(2)),
        ("bad", secs(5)),
        ("bad", secs(9)),
        ("bad", BLOCK - ms(1)),
    ]
    .into_iter()
    .enumerate()
    {
        let s = SessionId(20 + i);
        assert_eq!(h.try_login(s, "yoda", pass, t0 + at), BANNED);
        assert!(h.closed(s));
    }
    assert_eq!(h.try_login(Y, "yoda", "wise", t0 + BLOCK), WELCOME);
}

#[test]
fn the_count_is_reset_when_a_ban_ends() {
    for use_expire in [false, true] {
        let t0 = Instant::now();
        let mut h = Harness::new();
        h.ban(SessionId(10), "yoda", t0);
        let t1 = t0 + BLOCK;
        if use_expire {
            h.expire(t1);
        }
        // Three new failures are needed to ban again.
        assert_eq!(h.try_login(Y, "yoda", "bad", t1), INVALID_PASSWORD);
        assert_eq!(h.ask(Y, "bad", t1), INVALID_PASSWORD);
        assert!(!h.closed(Y));
        assert_eq!(h.ask(Y, "bad", t1), NOW_BANNED);
        // And that is a new ban of its own full length.
        let t2 = t1 + BLOCK;
        if use_expire {
            h.expire(t2 - ms(1));
        }
        assert_eq!(h.try_login(H, "yoda", "wise", t2 - ms(1)), BANNED);
        if use_expire {
            h.expire(t2);
        }
        assert_eq!(h.try_login(V, "yoda", "wise", t2), WELCOME);
    }
}

#[test]
fn line_errors_during_login_repeat_the_prompt_and_are_not_password_failures() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(
        h.line_error(Y, LineError::TooLong, t0),
        "Error. Line too long\nUsername: "
    );
    assert_eq!(
        h.line_error(Y, LineError::InvalidEncoding, t0),
        "Error. Invalid encoding\nUsername: "
    );
    assert_eq!(h.ask(Y, "yoda", t0), PASSWORD);
    assert_eq!(h.ask(Y, "bad", t0), INVALID_PASSWORD); // 1st failure
    assert_eq!(
        h.line_error(Y, LineError::TooLong, t0),
        "Error. Line too long\nPassword: "
    );
    for _ in 0..3 {
        assert_eq!(
            h.line_error(Y, LineError::InvalidEncoding, t0),
            "Error. Invalid encoding\nPassword: "
        );
    }
    assert!(!h.closed(Y));
    assert_eq!(h.ask(Y, "bad", t0), INVALID_PASSWORD); // only the 2nd
    assert_eq!(h.ask(Y, "wise", t0), WELCOME);
    // After login there is no prompt to repeat.
    assert_eq!(
        h.line_error(Y, LineError::TooLong, t0),
        "Error. Line too long\n"
    );
    assert_eq!(
        h.line_error(Y, LineError::InvalidEncoding, t0),
        "Error. Invalid encoding\n"
    );
    assert!(!h.closed(Y));
}

#[test]
fn commands_are_not_understood_before_login() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(h.ask(Y, "help", t0), INVALID_USERNAME);
    assert_eq!(h.ask(Y, "logout", t0), INVALID_USERNAME);
    assert_eq!(h.ask(Y, "privateport 5000", t0), INVALID_USERNAME);
    assert!(!h.closed(Y));
}

// ------------------------------------------------------ offline messages

#[test]
fn offline_messages_follow_the_welcome_in_order_and_only_once() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(H, "hans", "falcon", t0);
    assert_eq!(
        h.ask(H, "message yoda first", t0),
        "yoda is offline. Your message will be delivered when they log in\n"
    );
    assert_eq!(
        h.ask(H, "message yoda second   with  spaces", t0),
        offline("yoda")
    );
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(h.take(H), "vader logged in\n");
    assert_eq!(h.ask(V, "message yoda from vader", t0), offline("yoda"));
    assert_eq!(h.ask(H, "message yoda third", t0), offline("yoda"));
    // Connected but not logged in is still offline.
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(h.ask(Y, "yoda", t0), PASSWORD);
    assert_eq!(h.ask(H, "message yoda fourth", t0), offline("yoda"));
    assert_eq!(
        h.ask(Y, "wise", t0),
        "Welcome to the greatest messaging application ever!\n\
         hans: first\n\
         hans: second   with  spaces\n\
         vader: from vader\n\
         hans: third\n\
         hans: fourth\n"
    );
    assert_eq!(h.take(H), "yoda logged in\n");
    assert_eq!(h.take(V), "yoda logged in\n");
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    h.login(Y, "yoda", "wise", t0); // asserts nothing follows the welcome
}

#[test]
fn mailboxes_are_per_user() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(H, "hans", "falcon", t0);
    assert_eq!(h.ask(H, "message luke to luke", t0), offline("luke"));
    assert_eq!(h.ask(H, "message yoda to yoda", t0), offline("yoda"));
    assert_eq!(h.login_with_mail(Y, "yoda", "wise", t0), "hans: to yoda\n");
    assert_eq!(
        h.login_with_mail(L, "luke", "lightsaber", t0),
        "hans: to luke\n"
    );
}

// -------------------------------------------------------------- presence

#[test]
fn login_and_logout_are_announced_to_every_other_online_user() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    assert_eq!(h.take(Y), "hans logged in\n");
    // A session that has not logged in hears nothing.
    let s = SessionId(10);
    h.connect(s, t0);
    h.take(s);
    assert_eq!(h.ask(s, "luke", t0), PASSWORD);
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(h.take(Y), "vader logged in\n");
    assert_eq!(h.take(H), "vader logged in\n");
    assert_eq!(h.ask(V, "logout", t0), GOODBYE);
    assert_eq!(h.take(Y), "vader logged out\n");
    assert_eq!(h.take(H), "vader logged out\n");
    assert_eq!(h.take(s), "");
    // A login that fails announces nothing.
    assert_eq!(h.try_login(V, "vader", "bad", t0), INVALID_PASSWORD);
    assert_eq!(h.take(Y), "");
    assert_eq!(h.take(H), "");
}

#[test]
fn presence_skips_the_users_the_subject_blocked() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login(V, "vader", "sithlord", t0);
    h.discard();
    assert_eq!(h.ask(V, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(h.take(Y), "");
    assert_eq!(h.ask(V, "logout", t0), GOODBYE);
    assert_eq!(h.take(H), "vader logged out\n");
    assert_eq!(h.take(Y), "");
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(h.take(H), "vader logged in\n");
    assert_eq!(h.take(Y), "");
    // Yoda did not block vader: vader hears about yoda.
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    assert_eq!(h.take(V), "yoda logged out\n");
    assert_eq!(h.take(H), "yoda logged out\n");
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.take(V), "yoda logged in\n");
    assert_eq!(h.take(H), "yoda logged in\n");
    // Once unblocked, yoda hears about vader again.
    assert_eq!(h.ask(V, "unblock yoda", t0), "yoda is unblocked\n");
    h.disconnect(V, t0);
    assert_eq!(h.take(Y), "vader logged out\n");
    assert_eq!(h.take(H), "vader logged out\n");
}

#[test]
fn logged_out_is_announced_exactly_once_whatever_ends_the_session() {
    let ways = [
        "logout then disconnect",
        "disconnect twice",
        "timeout then disconnect",
        "timeout then lines",
        "logout then timeout",
    ];
    for way in ways {
        let t0 = Instant::now();
        let mut h = Harness::new();
        h.login(Y, "yoda", "wise", t0);
        // Hans stays active longer than yoda.
        h.login(H, "hans", "falcon", t0 + secs(30));
        h.discard();
        let t1 = t0 + TIMEOUT;
        match way {
            "logout then disconnect" => {
                assert_eq!(h.ask(Y, "logout", t0 + secs(40)), GOODBYE);
                assert_eq!(h.take(H), "yoda logged out\n", "{way}");
                h.disconnect(Y, t0 + secs(41));
            }
            "disconnect twice" => {
                h.disconnect(Y, t0 + secs(40));
                assert_eq!(h.take(H), "yoda logged out\n", "{way}");
                h.disconnect(Y, t0 + secs(41));
            }
            "timeout then disconnect" => {
                h.expire(t1);
                assert_eq!(h.take(Y), INACTIVE, "{way}");
                assert_eq!(h.take(H), "yoda logged out\n", "{way}");
                h.disconnect(Y, t1);
            }
            "timeout then lines" => {
                h.expire(t1);
                assert_eq!(h.take(Y), INACTIVE, "{way}");
                assert_eq!(h.take(H), "yoda logged out\n", "{way}");
                assert_eq!(h.ask(Y, "logout", t1), "", "{way}");
                h.chat.line_error(Y, LineError::TooLong, t1);
                h.drain();
                h.disconnect(Y, t1);
            }
            "logout then timeout" => {
                assert_eq!(h.ask(Y, "logout", t0 + secs(1)), GOODBYE);
                assert_eq!(h.take(H), "yoda logged out\n", "{way}");
                h.expire(t1 + secs(1));
            }
            _ => unreachable!(),
        }
        assert!(!h.chat.is_online("yoda"), "{way}");
        assert_eq!(h.take(H), "", "{way}");
        assert_eq!(h.take(Y), "", "{way}");
        assert!(h.closed(Y) || way == "disconnect twice", "{way}");
    }
}

#[test]
fn sessions_that_never_logged_in_announce_nothing() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    let [a, b] = [SessionId(10), SessionId(11)];
    h.connect(a, t0);
    h.connect(b, t0);
    assert_eq!(h.ask(b, "hans", t0), "Username: Password: ");
    h.login(Y, "yoda", "wise", t0 + secs(30));
    h.disconnect(a, t0 + secs(1));
    h.expire(t0 + TIMEOUT);
    assert_eq!(h.take(b), LOGIN_TIMED_OUT);
    assert!(h.closed(b));
    assert_eq!(h.take(Y), "");
    assert_eq!(h.chat.online_count(), 1);
}

// -------------------------------------------------------------- commands

#[test]
fn message_to_an_online_user() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(Y, "message hans hello   there  friend", t0), "");
    assert_eq!(h.take(H), "yoda: hello   there  friend\n");
    assert_eq!(h.ask(H, "message yoda hi", t0), "");
    assert_eq!(h.take(Y), "hans: hi\n");
}

#[test]
fn message_errors() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "message bob hi", t0), "Error. Invalid user\n");
    assert_eq!(h.ask(Y, "message Hans hi", t0), "Error. Invalid user\n");
    assert_eq!(
        h.ask(Y, "message yoda hi", t0),
        "Error. Cannot message self\n"
    );
    assert_eq!(
        h.ask(Y, "message hans", t0),
        "Error. Usage: message <user> <message>\n"
    );
    // Nothing was stored for hans.
    h.login(H, "hans", "falcon", t0);
}

#[test]
fn message_to_a_user_who_blocked_me_is_refused_online_and_offline() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(H, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(
        h.ask(Y, "message hans hi", t0),
        "Your message could not be delivered as the recipient has blocked you\n"
    );
    assert_eq!(h.take(H), "");
    assert_eq!(h.ask(H, "logout", t0), GOODBYE);
    assert_eq!(h.take(Y), ""); // hans blocked yoda: no presence
    assert_eq!(h.ask(Y, "message hans later", t0), MESSAGE_BLOCKED);
    h.login(H, "hans", "falcon", t0); // nothing was stored
    assert_eq!(h.take(Y), "");
    // Error order: invalid user and self come first regardless.
    assert_eq!(h.ask(Y, "message bob hi", t0), "Error. Invalid user\n");
    assert_eq!(
        h.ask(Y, "message yoda hi", t0),
        "Error. Cannot message self\n"
    );
    // Hans's own messages still reach yoda, online and offline.
    assert_eq!(h.ask(H, "message yoda hey", t0), "");
    assert_eq!(h.take(Y), "hans: hey\n");
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    assert_eq!(h.take(H), "yoda logged out\n");
    assert_eq!(h.ask(H, "message yoda later", t0), offline("yoda"));
    assert_eq!(h.login_with_mail(Y, "yoda", "wise", t0), "hans: later\n");
}

#[test]
fn broadcast_reaches_everyone_online_except_the_sender_and_blockers() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login(V, "vader", "sithlord", t0);
    let s = SessionId(10); // luke, not logged in yet
    h.connect(s, t0);
    h.send(s, "luke", t0);
    h.discard();

    assert_eq!(h.ask(Y, "broadcast hello  all", t0), "");
    assert_eq!(h.take(H), "yoda: hello  all\n");
    assert_eq!(h.take(V), "yoda: hello  all\n");
    assert_eq!(h.take(s), "");

    assert_eq!(h.ask(V, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(
        h.ask(Y, "broadcast again", t0),
        "Your message could not be delivered to some recipients\n"
    );
    assert_eq!(h.take(H), "yoda: again\n");
    assert_eq!(h.take(V), "");

    // The blocker's own broadcasts still reach yoda.
    assert_eq!(h.ask(V, "broadcast from vader", t0), "");
    assert_eq!(h.take(Y), "vader: from vader\n");
    assert_eq!(h.take(H), "vader: from vader\n");

    // Blocking someone does not stop one's own broadcasts reaching them.
    assert_eq!(h.ask(Y, "block hans", t0), "hans is blocked\n");
    assert_eq!(h.ask(Y, "broadcast still", t0), PARTIAL);
    assert_eq!(h.take(H), "yoda: still\n");

    // A blocker who is offline was not skipped: no partial-delivery line.
    assert_eq!(h.ask(V, "logout", t0), GOODBYE);
    assert_eq!(h.take(H), "vader logged out\n");
    assert_eq!(h.ask(Y, "broadcast third", t0), "");
    assert_eq!(h.take(H), "yoda: third\n");

    // Broadcasts are not stored for offline users.
    assert_eq!(h.ask(s, "lightsaber", t0), WELCOME);
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(h.take(Y), "luke logged in\n"); // vader blocked yoda
    assert_eq!(
        h.ask(Y, "broadcast", t0),
        "Error. Usage: broadcast <message>\n"
    );
}

#[test]
fn broadcast_with_nobody_else_online_says_nothing() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "broadcast anyone?", t0), "");
}

#[test]
fn whoelse_lists_the_others_sorted_without_those_who_blocked_me() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "whoelse", t0), "No other users are online\n");
    let s = SessionId(10);
    h.connect(s, t0);
    assert_eq!(h.ask(s, "luke", t0), "Username: Password: ");
    assert_eq!(h.ask(Y, "whoelse", t0), NOBODY_ONLINE);
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(h.ask(s, "lightsaber", t0), WELCOME);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(Y, "whoelse", t0), "hans\nluke\nvader\n");
    assert_eq!(h.ask(s, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(h.ask(Y, "whoelse", t0), "hans\nvader\n");
    // Luke still sees yoda.
    assert_eq!(h.ask(s, "whoelse", t0), "hans\nvader\nyoda\n");
    // Users I blocked are still listed.
    assert_eq!(h.ask(Y, "block hans", t0), "hans is blocked\n");
    assert_eq!(h.ask(Y, "whoelse", t0), "hans\nvader\n");
    assert_eq!(h.ask(Y, "whoelse now", t0), "Error. Usage: whoelse\n");
    h.disconnect(V, t0);
    h.disconnect(H, t0);
    assert_eq!(h.take(Y), "vader logged out\nhans logged out\n");
    assert_eq!(h.ask(Y, "whoelse", t0), NOBODY_ONLINE);
}

#[test]
fn whoelsesince_covers_sessions_that_ended_less_than_the_window_ago() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login(V, "vader", "sithlord", t0);
    h.discard();
    assert_eq!(h.ask(V, "block yoda", t0), "yoda is blocked\n");
    let ended = t0 + secs(10);
    assert_eq!(h.ask(H, "logout", ended), GOODBYE);
    h.disconnect(V, ended);
    h.discard();

    let t1 = ended + secs(5);
    // Just under 5 s ago is less than 5 s ago.
    assert_eq!(h.ask(Y, "whoelsesince 5", t1 - ms(1)), "hans\n");
    assert_eq!(h.ask(Y, "whoelsesince 6", t1), "hans\n");
    assert_eq!(
        h.ask(Y, "whoelsesince 5", t1),
        "No other users since then\n"
    );
    assert_eq!(h.ask(Y, "whoelsesince 0", t1), NOBODY_SINCE);
    assert_eq!(h.ask(Y, "whoelse", t1), NOBODY_ONLINE);
    // Luke was never seen; vader blocked yoda.
    assert_eq!(h.ask(Y, "whoelsesince 1000000", t1), "hans\n");
    assert_eq!(
        h.ask(Y, "whoelsesince 99999999999999999999999", t1),
        "hans\n"
    );
    // Online users are listed whatever the window, sorted with the others.
    h.login(L, "luke", "lightsaber", t1);
    assert_eq!(h.take(Y), "luke logged in\n");
    assert_eq!(h.ask(Y, "whoelsesince 0", t1), "luke\n");
    assert_eq!(h.ask(Y, "whoelsesince 6", t1), "hans\nluke\n");
    // Vader sees yoda (online).
    h.login(V, "vader", "sithlord", t1);
    assert_eq!(h.ask(V, "whoelsesince 6", t1), "hans\nluke\nyoda\n");
    assert_eq!(h.ask(Y, "whoelsesince 6", t1), "hans\nluke\n");

    for bad in [
        "whoelsesince",
        "whoelsesince -1",
        "whoelsesince 1.5",
        "whoelsesince 1 2",
    ] {
        assert_eq!(
            h.ask(Y, bad, t1),
            "Error. Usage: whoelsesince <seconds>\n",
            "{bad}"
        );
    }
}

#[test]
fn whoelsesince_uses_the_end_of_the_last_session() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    assert_eq!(h.ask(H, "logout", t0 + secs(1)), GOODBYE);
    h.login(H, "hans", "falcon", t0 + secs(20));
    h.disconnect(H, t0 + secs(21));
    h.discard();
    let t1 = t0 + secs(30);
    assert_eq!(h.ask(Y, "whoelsesince 10", t1), "hans\n");
    assert_eq!(h.ask(Y, "whoelsesince 9", t1), NOBODY_SINCE);
}

#[test]
fn block_and_unblock_replies_and_errors() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(Y, "block hans", t0), "hans is blocked\n");
    assert_eq!(h.take(H), "");
    assert_eq!(
        h.ask(Y, "block hans", t0),
        "Error. hans is already blocked\n"
    );
    assert_eq!(h.ask(Y, "block bob", t0), "Error. Invalid user\n");
    assert_eq!(h.ask(Y, "block yoda", t0), "Error. Cannot block self\n");
    assert_eq!(h.ask(Y, "block luke", t0), "luke is blocked\n"); // offline, never seen
    assert_eq!(h.ask(H, "message yoda blocked", t0), MESSAGE_BLOCKED);
    assert_eq!(h.ask(Y, "unblock hans", t0), "hans is unblocked\n");
    assert_eq!(h.take(H), "");
    assert_eq!(
        h.ask(Y, "unblock hans", t0),
        "Error. hans was not blocked\n"
    );
    assert_eq!(
        h.ask(Y, "unblock vader", t0),
        "Error. vader was not blocked\n"
    );
    assert_eq!(h.ask(Y, "unblock bob", t0), "Error. Invalid user\n");
    assert_eq!(h.ask(Y, "unblock yoda", t0), "Error. Cannot unblock self\n");
    assert_eq!(h.ask(Y, "unblock luke", t0), "luke is unblocked\n");
    assert_eq!(h.ask(H, "message yoda free", t0), "");
    assert_eq!(h.take(Y), "hans: free\n");
    assert_eq!(h.ask(Y, "block", t0), "Error. Usage: block <user>\n");
    assert_eq!(
        h.ask(Y, "block hans vader", t0),
        "Error. Usage: block <user>\n"
    );
    assert_eq!(h.ask(Y, "unblock", t0), "Error. Usage: unblock <user>\n");
    assert_eq!(
        h.ask(Y, "unblock a b", t0),
        "Error. Usage: unblock <user>\n"
    );
    // None of the usage errors blocked anyone.
    assert_eq!(h.ask(H, "message yoda ok", t0), "");
    assert_eq!(h.take(Y), "hans: ok\n");
}

#[test]
fn blocks_are_kept_across_logouts_and_disconnects() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(Y, "block hans", t0), "hans is blocked\n");
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    h.login(Y, "yoda", "wise", t0);
    h.discard();
    assert_eq!(h.ask(H, "message yoda hi", t0), MESSAGE_BLOCKED);
    h.disconnect(Y, t0);
    assert_eq!(h.ask(H, "message yoda hi", t0), MESSAGE_BLOCKED);
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(
        h.ask(Y, "block hans", t0),
        "Error. hans is already blocked\n"
    );
}

#[test]
fn a_user_who_blocked_b_is_invisible_to_b_but_still_reaches_b() {
    // Yoda (A) blocks hans (B); vader is a bystander.
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login(V, "vader", "sithlord", t0);
    h.discard();
    assert_eq!(h.ask(Y, "block hans", t0), "hans is blocked\n");
    // B's messages and broadcasts do not reach A.
    assert_eq!(h.ask(H, "message yoda psst", t0), MESSAGE_BLOCKED);
    assert_eq!(h.ask(H, "broadcast hi", t0), PARTIAL);
    assert_eq!(h.take(V), "hans: hi\n");
    assert_eq!(h.take(Y), "");
    // A is hidden from B's whoelse and whoelsesince.
    assert_eq!(h.ask(H, "whoelse", t0), "vader\n");
    assert_eq!(h.ask(H, "whoelsesince 100", t0), "vader\n");
    // A sees B.
    assert_eq!(h.ask(Y, "whoelse", t0), "hans\nvader\n");
    // A's own messages and broadcasts reach B.
    assert_eq!(h.ask(Y, "message hans hello", t0), "");
    assert_eq!(h.take(H), "yoda: hello\n");
    assert_eq!(h.ask(Y, "broadcast all", t0), "");
    assert_eq!(h.take(H), "yoda: all\n");
    assert_eq!(h.take(V), "yoda: all\n");
    // B gets no presence about A; A gets presence about B.
    assert_eq!(h.ask(Y, "logout", t0 + secs(1)), GOODBYE);
    assert_eq!(h.take(H), "");
    assert_eq!(h.take(V), "yoda logged out\n");
    assert_eq!(h.ask(H, "whoelsesince 100", t0 + secs(2)), "vader\n");
    h.login(Y, "yoda", "wise", t0 + secs(2));
    assert_eq!(h.take(H), "");
    assert_eq!(h.take(V), "yoda logged in\n");
    h.disconnect(H, t0 + secs(3));
    assert_eq!(h.take(Y), "hans logged out\n");
    assert_eq!(h.take(V), "hans logged out\n");
}

#[test]
fn logout_says_goodbye_after_going_offline_and_closes() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(Y, "logout now", t0), "Error. Usage: logout\n");
    assert!(!h.closed(Y));

    h.chat.line(Y, "logout", t0);
    assert!(!h.chat.is_online("yoda"));
    assert_eq!(h.chat.online_count(), 1);
    // In effect order: others are told, then Goodbye, then Close.
    assert_eq!(
        h.take_effects(),
        [
            (H, Some("yoda logged out\n".to_owned())),
            (Y, Some("Goodbye\n".to_owned())),
            (Y, None),
        ]
    );
    assert!(h.closed(Y));
    h.discard();
    // The session is over; the id can log in again after reconnecting.
    assert_eq!(h.ask(Y, "whoelse", t0), "");
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.take(H), "yoda logged in\n");
}

#[test]
fn help_lists_the_eight_commands() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(
        h.ask(Y, "help", t0),
        "message <user> <message>\n\
         broadcast <message>\n\
         whoelse\n\
         whoelsesince <seconds>\n\
         block <user>\n\
         unblock <user>\n\
         logout\n\
         help\n"
    );
    assert_eq!(h.ask(Y, "help me", t0), "Error. Usage: help\n");
}

#[test]
fn unknown_commands_and_usage_lines() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    for (line, reply) in [
        ("hello", "Error. Invalid command"),
        ("Whoelse", "Error. Invalid command"),
        ("LOGOUT", "Error. Invalid command"),
        ("messages hans hi", "Error. Invalid command"),
        ("message", "Error. Usage: message <user> <message>"),
        ("message hans", "Error. Usage: message <user> <message>"),
        ("broadcast", "Error. Usage: broadcast <message>"),
        ("whoelse x", "Error. Usage: whoelse"),
        ("whoelsesince", "Error. Usage: whoelsesince <seconds>"),
        ("whoelsesince x", "Error. Usage: whoelsesince <seconds>"),
        ("block", "Error. Usage: block <user>"),
        ("unblock", "Error. Usage: unblock <user>"),
        ("logout x", "Error. Usage: logout"),
        ("help x", "Error. Usage: help"),
        ("privateport", "Error. Usage: privateport <port>"),
        ("privateport 0", "Error. Usage: privateport <port>"),
        ("privateport 65536", "Error. Usage: privateport <port>"),
        ("privateport +1", "Error. Usage: privateport <port>"),
        ("privateport 80 81", "Error. Usage: privateport <port>"),
        ("startprivate", "Error. Usage: startprivate <user>"),
        (
            "startprivate hans vader",
            "Error. Usage: startprivate <user>",
        ),
        ("private", "Error. Usage: private <user> <message>"),
        ("private hans", "Error. Usage: private <user> <message>"),
        ("stopprivate", "Error. Usage: stopprivate <user>"),
        ("stopprivate hans vader", "Error. Usage: stopprivate <user>"),
        ("Startprivate hans", "Error. Invalid command"),
    ] {
        assert_eq!(h.ask(Y, line, t0), format!("{reply}\n"), "{line}");
    }
    assert!(!h.closed(Y));
    assert!(h.chat.is_online("yoda"));
}

// ------------------------------------------------------ private messaging

const NEEDS_CLIENT: &str = "Error. Private messaging needs the confab client\n";
/// The tokens [`counted_token`] draws, in order.
const TOKEN_1: &str = "01010101010101010101010101010101";
const TOKEN_2: &str = "02020202020202020202020202020202";
const TOKEN_3: &str = "03030303030303030303030303030303";

thread_local! {
    /// Tokens drawn by [`counted_token`] on this test's thread.
    static TOKENS_DRAWN: Cell<u8> = const { Cell::new(0) };
}

/// A predictable token source: the n-th token is 16 bytes of value n.
fn counted_token() -> Option<[u8; 16]> {
    let n = TOKENS_DRAWN.with(|drawn| {
        drawn.set(drawn.get() + 1);
        drawn.get()
    });
    Some([n; 16])
}

/// A harness whose tokens are [`TOKEN_1`], [`TOKEN_2`], ... in order.
fn counted_tokens() -> Harness {
    TOKENS_DRAWN.with(|drawn| drawn.set(0));
    let mut h = Harness::new();
    h.chat.set_token_source(counted_token);
    h
}

impl Harness {
    /// Logs in a user that has no offline messages and registers its
    /// private port, which gets no reply.
    #[track_caller]
    fn login_private(&mut self, sid: SessionId, user: &str, pass: &str, port: u16, now: Instant) {
        self.login(sid, user, pass, now);
        assert_eq!(self.ask(sid, &format!("privateport {port}"), now), "");
    }
}

#[test]
fn privateport_is_silent_and_the_last_one_counts() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(H, "privateport 5000", t0), "");
    assert_eq!(h.ask(H, "privateport 6000", t0), "");
    // A malformed one changes nothing.
    assert_eq!(
        h.ask(H, "privateport 0", t0),
        "Error. Usage: privateport <port>\n"
    );
    assert_eq!(h.take(Y), "");
    assert_eq!(h.ask(Y, "privateport 65535", t0), "");
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        "!private connect hans 127.0.0.1:6000 01010101010101010101010101010101\n"
    );
    assert_eq!(
        h.take(H),
        "!private accept yoda 01010101010101010101010101010101\n"
    );
}

#[test]
fn startprivate_introduces_the_target_first_then_the_starter() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login_private(Y, "yoda", "wise", 5000, t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.login(V, "vader", "sithlord", t0);
    h.discard();
    h.chat.line(Y, "startprivate hans", t0);
    assert_eq!(
        h.take_effects(),
        [
            (
                H,
                Some("!private accept yoda 01010101010101010101010101010101\n".to_owned())
            ),
            (
                Y,
                Some(
                    "!private connect hans 127.0.0.1:6000 01010101010101010101010101010101\n"
                        .to_owned()
                )
            ),
        ]
    );
    h.discard();
    // Every introduction draws a new token, whoever starts it.
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        format!("!private connect hans 127.0.0.1:6000 {TOKEN_2}\n")
    );
    assert_eq!(h.take(H), format!("!private accept yoda {TOKEN_2}\n"));
    assert_eq!(
        h.ask(H, "startprivate yoda", t0),
        format!("!private connect yoda 127.0.0.1:5000 {TOKEN_3}\n")
    );
    assert_eq!(h.take(Y), format!("!private accept hans {TOKEN_3}\n"));
    assert_eq!(h.take(V), "");
    assert!(!h.closed(Y) && !h.closed(H));
}

#[test]
fn startprivate_checks_run_in_the_order_of_the_table() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login(Y, "yoda", "wise", t0);
    // Hans blocked yoda and is offline.
    h.login(H, "hans", "falcon", t0);
    assert_eq!(h.ask(H, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(h.ask(H, "logout", t0), GOODBYE);
    // Vader is online without privateport; luke is at the password prompt.
    h.login(V, "vader", "sithlord", t0);
    h.connect(L, t0);
    h.send(L, "luke", t0);
    h.discard();

    // Not registered: refused before anything else is looked at.
    for user in ["bob", "yoda", "hans", "luke", "vader"] {
        let line = format!("startprivate {user}");
        assert_eq!(h.ask(Y, &line, t0), NEEDS_CLIENT, "{user}");
    }
    assert_eq!(
        h.ask(Y, "startprivate", t0),
        "Error. Usage: startprivate <user>\n"
    );
    assert_eq!(h.ask(Y, "privateport 5000", t0), "");
    for (line, reply) in [
        ("startprivate bob", "Error. Invalid user"),
        ("startprivate Hans", "Error. Invalid user"),
        (
            "startprivate yoda",
            "Error. Cannot start private messaging with self",
        ),
        // Blocked and offline: the block is reported.
        (
            "startprivate hans",
            "Error. Cannot start private messaging as hans has blocked you",
        ),
        // Connected but not logged in is offline.
        ("startprivate luke", "Error. luke is offline"),
        (
            "startprivate vader",
            "Error. vader cannot accept private messaging",
        ),
    ] {
        assert_eq!(h.ask(Y, line, t0), format!("{reply}\n"), "{line}");
    }
    // Blocked, online and registered: still the block, and the blocker
    // hears nothing (the address is never sent to yoda).
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        "Error. Cannot start private messaging as hans has blocked you\n"
    );
    // Blocked and not registered: the block comes first too.
    assert_eq!(h.ask(V, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(
        h.ask(Y, "startprivate vader", t0),
        "Error. Cannot start private messaging as vader has blocked you\n"
    );
    assert_eq!(h.take(H), "");
    assert_eq!(h.take(V), "");
    assert_eq!(h.take(L), "");
    // No token was drawn for any refusal.
    assert_eq!(h.ask(H, "unblock yoda", t0), "yoda is unblocked\n");
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        format!("!private connect hans 127.0.0.1:6000 {TOKEN_1}\n")
    );
}

#[test]
fn privateport_belongs_to_the_session() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login_private(Y, "yoda", "wise", 5000, t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    assert_eq!(h.ask(H, "logout", t0), GOODBYE);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        "Error. hans cannot accept private messaging\n"
    );
    h.disconnect(Y, t0);
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "startprivate hans", t0), NEEDS_CLIENT);
    assert_eq!(h.take(H), "yoda logged out\nyoda logged in\n");
}

#[test]
fn the_address_is_the_targets_connection_ip_with_ipv6_in_brackets() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login_private(Y, "yoda", "wise", 5000, t0);
    for (ip, address) in [
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
            "[2001:db8::7]:6000",
        ),
        (Ipv6Addr::LOCALHOST.into(), "[::1]:6000"),
        (
            // An IPv4 client of a dual-stack listener.
            Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped().into(),
            "192.0.2.9:6000",
        ),
        (Ipv4Addr::new(198, 51, 100, 20).into(), "198.51.100.20:6000"),
    ] {
        h.connect_from(H, ip, t0);
        h.send(H, "hans", t0);
        h.send(H, "falcon", t0);
        h.send(H, "privateport 6000", t0);
        assert_eq!(h.take(H), format!("{USERNAME}{PASSWORD}{WELCOME}"));
        h.discard();
        let got = h.ask(Y, "startprivate hans", t0);
        let expected = format!("!private connect hans {address} ");
        assert!(got.starts_with(&expected), "{got:?}");
        h.disconnect(H, t0);
        h.discard();
    }
    // The starter's own address is never sent.
    h.connect_from(SessionId(9), Ipv6Addr::LOCALHOST.into(), t0);
    h.send(SessionId(9), "vader", t0);
    h.send(SessionId(9), "sithlord", t0);
    h.send(SessionId(9), "privateport 7000", t0);
    h.discard();
    assert_eq!(
        h.ask(SessionId(9), "startprivate yoda", t0),
        "!private connect yoda 127.0.0.1:5000 05050505050505050505050505050505\n"
    );
    assert_eq!(
        h.take(Y),
        "!private accept vader 05050505050505050505050505050505\n"
    );
}

#[test]
fn startprivate_without_randomness_sends_nothing_to_the_target() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.chat.set_token_source(|| None);
    h.login_private(Y, "yoda", "wise", 5000, t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        "Error. Private messaging is unavailable\n"
    );
    assert_eq!(h.take(H), "");
    assert!(!h.closed(Y) && !h.closed(H));
}

#[test]
fn the_default_tokens_are_random_hex_and_differ_each_time() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login_private(Y, "yoda", "wise", 5000, t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let connect = h.ask(Y, "startprivate hans", t0);
        let accept = h.take(H);
        let token = connect
            .strip_prefix("!private connect hans 127.0.0.1:6000 ")
            .and_then(|rest| rest.strip_suffix('\n'));
        let Some(token) = token else {
            panic!("not a connect line: {connect:?}");
        };
        assert_eq!(token.len(), 32, "{token:?}");
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        assert!(token.bytes().all(hex), "{token:?}");
        assert_eq!(accept, format!("!private accept yoda {token}\n"));
        tokens.push(token.to_owned());
    }
    assert_ne!(tokens[0], tokens[1]);
}

#[test]
fn help_lists_the_private_commands_only_after_privateport() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    let eight = "message <user> <message>\n\
                 broadcast <message>\n\
                 whoelse\n\
                 whoelsesince <seconds>\n\
                 block <user>\n\
                 unblock <user>\n\
                 logout\n\
                 help\n";
    assert_eq!(h.ask(Y, "help", t0), eight);
    assert_eq!(h.ask(Y, "privateport 5000", t0), "");
    assert_eq!(
        h.ask(Y, "help", t0),
        "message <user> <message>\n\
         broadcast <message>\n\
         whoelse\n\
         whoelsesince <seconds>\n\
         block <user>\n\
         unblock <user>\n\
         logout\n\
         help\n\
         startprivate <user>\n\
         private <user> <message>\n\
         stopprivate <user>\n"
    );
    assert_eq!(h.ask(Y, "help me", t0), "Error. Usage: help\n");
}

#[test]
fn private_and_stopprivate_reaching_the_server_are_errors() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login(Y, "yoda", "wise", t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    for line in [
        "private hans hi",
        "stopprivate hans",
        "private bob hi there",
    ] {
        assert_eq!(h.ask(Y, line, t0), NEEDS_CLIENT, "{line}");
    }
    assert_eq!(h.ask(Y, "privateport 5000", t0), "");
    for (line, reply) in [
        (
            "private hans hello  there",
            "Error. Private messaging to hans not enabled",
        ),
        (
            "stopprivate hans",
            "Error. Private messaging to hans not enabled",
        ),
        // The user is named as typed, whether or not it exists.
        (
            "private Bob hi",
            "Error. Private messaging to Bob not enabled",
        ),
        (
            "stopprivate yoda",
            "Error. Private messaging to yoda not enabled",
        ),
    ] {
        assert_eq!(h.ask(Y, line, t0), format!("{reply}\n"), "{line}");
    }
    // Even after an introduction: the session is the clients' business.
    h.ask(Y, "startprivate hans", t0);
    assert_eq!(
        h.ask(Y, "private hans hi", t0),
        "Error. Private messaging to hans not enabled\n"
    );
    for (line, reply) in [
        ("private", "Error. Usage: private <user> <message>\n"),
        ("private hans", "Error. Usage: private <user> <message>\n"),
        ("stopprivate", "Error. Usage: stopprivate <user>\n"),
        (
            "stopprivate hans luke",
            "Error. Usage: stopprivate <user>\n",
        ),
    ] {
        assert_eq!(h.ask(Y, line, t0), reply, "{line}");
    }
    assert_eq!(h.take(H), format!("!private accept yoda {TOKEN_1}\n"));
}

#[test]
fn private_messaging_is_not_durable() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.chat.set_token_source(counted_token);
    h.login_private(Y, "yoda", "wise", 5000, t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    h.send(Y, "startprivate hans", t0);
    h.send(Y, "startprivate vader", t0);
    h.send(Y, "private hans hi", t0);
    h.send(Y, "stopprivate hans", t0);
    assert_eq!(h.take_records(), (vec![], vec![]));
    let snapshot: Vec<Record<'_>> = h.chat.snapshot(wall(t0)).collect();
    assert_eq!(snapshot, []);
}

// ------------------------------------------------------------ inactivity

#[test]
fn idle_before_login_times_out_exactly_at_timeout() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    h.connect(H, t0);
    h.take(H);
    assert_eq!(h.ask(H, "yoda", t0 + secs(10)), PASSWORD);
    h.expire(t0 + TIMEOUT - ms(1));
    assert_eq!(h.take(Y), "");
    assert!(!h.closed(Y));
    h.expire(t0 + TIMEOUT);
    assert_eq!(h.take(Y), "Login timed out\n");
    assert!(h.closed(Y));
    // At the password prompt it is the same message, from the last line.
    assert_eq!(h.take(H), "");
    h.expire(t0 + secs(10) + TIMEOUT - ms(1));
    assert_eq!(h.take(H), "");
    h.expire(t0 + secs(10) + TIMEOUT);
    assert_eq!(h.take(H), LOGIN_TIMED_OUT);
    assert!(h.closed(H));
}

#[test]
fn idle_after_login_logs_out_and_announces_it() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0 + secs(30));
    h.discard();
    h.expire(t0 + TIMEOUT - ms(1));
    assert_eq!(h.take(Y), "");
    assert!(h.chat.is_online("yoda"));
    let t1 = t0 + TIMEOUT;
    h.expire(t1);
    assert_eq!(h.take(Y), "You have been logged out due to inactivity\n");
    assert!(h.closed(Y));
    assert!(!h.chat.is_online("yoda"));
    assert_eq!(h.chat.online_count(), 1);
    assert_eq!(h.take(H), "yoda logged out\n");
    // The timeout ended the session at t1.
    assert_eq!(h.ask(H, "whoelsesince 6", t1 + secs(5)), "yoda\n");
    assert_eq!(h.ask(H, "whoelsesince 5", t1 + secs(5)), NOBODY_SINCE);
}

#[test]
fn any_line_or_line_error_postpones_the_idle_timeout() {
    let kinds = [
        "command",
        "private port",
        "command error",
        "usage error",
        "line error",
        "username",
        "wrong password",
        "login line error",
    ];
    for kind in kinds {
        let t0 = Instant::now();
        let mut h = Harness::new();
        let before_login = matches!(kind, "username" | "wrong password" | "login line error");
        if before_login {
            h.connect(Y, t0);
            if kind == "wrong password" {
                h.send(Y, "yoda", t0);
            }
        } else {
            h.login(Y, "yoda", "wise", t0);
        }
        h.discard();
        let last = t0 + secs(50);
        match kind {
            "command" => h.send(Y, "whoelse", last),
            "private port" => h.send(Y, "privateport 5000", last),
            "command error" => h.send(Y, "dance", last),
            "usage error" => h.send(Y, "block", last),
            "line error" | "login line error" => {
                h.line_error(Y, LineError::InvalidEncoding, last);
            }
            "username" => h.send(Y, "yoda", last),
            "wrong password" => h.send(Y, "bad", last),
            _ => unreachable!(),
        }
        h.discard();
        h.expire(t0 + TIMEOUT);
        assert_eq!(h.take(Y), "", "{kind}");
        h.expire(last + TIMEOUT - ms(1));
        assert_eq!(h.take(Y), "", "{kind}");
        assert!(!h.closed(Y), "{kind}");
        h.expire(last + TIMEOUT);
        let expected = if before_login {
            LOGIN_TIMED_OUT
        } else {
            INACTIVE
        };
        assert_eq!(h.take(Y), expected, "{kind}");
        assert!(h.closed(Y), "{kind}");
    }
}

#[test]
fn receiving_is_not_activity() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    h.send(H, "message yoda one", t0 + secs(30));
    h.send(H, "broadcast two", t0 + secs(59));
    h.login(V, "vader", "sithlord", t0 + secs(59));
    assert_eq!(h.take(H), "vader logged in\n");
    assert_eq!(h.take(Y), "hans: one\nhans: two\nvader logged in\n");
    h.expire(t0 + TIMEOUT);
    assert_eq!(h.take(Y), INACTIVE);
    assert!(h.closed(Y));
    assert!(!h.closed(H));
    assert_eq!(h.take(H), "yoda logged out\n");
    assert_eq!(h.take(V), "yoda logged out\n");
}

#[test]
fn timers_fire_exactly_when_due_when_sleeping_until_next_deadline() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    let s = SessionId(10);
    let mut closes = Vec::new();
    // Every step first runs the timers due before it, as the poll loop does.
    let step = |h: &mut Harness, closes: &mut Vec<(SessionId, Instant)>, at: Instant| {
        closes.extend(h.run_timers(at - ms(1)));
    };
    h.connect(s, t0);
    h.login(Y, "yoda", "wise", t0);
    step(&mut h, &mut closes, t0 + secs(1));
    h.ban(SessionId(11), "vader", t0 + secs(1));
    step(&mut h, &mut closes, t0 + secs(5));
    h.login(H, "hans", "falcon", t0 + secs(5));
    step(&mut h, &mut closes, t0 + secs(10));
    h.send(Y, "whoelse", t0 + secs(10));
    step(&mut h, &mut closes, t0 + secs(45));
    h.chat.line_error(Y, LineError::TooLong, t0 + secs(45));
    h.drain();
    step(&mut h, &mut closes, t0 + secs(60));
    h.send(H, "bogus", t0 + secs(60));
    closes.extend(h.run_timers(t0 + secs(1000)));
    assert_eq!(
        closes,
        [
            (s, t0 + TIMEOUT),
            (Y, t0 + secs(45) + TIMEOUT),
            (H, t0 + secs(60) + TIMEOUT),
        ]
    );
    assert_eq!(h.take(s), "Username: Login timed out\n");
    assert_eq!(h.chat.online_count(), 0);
    // The ban ended on its own timer.
    h.login(V, "vader", "sithlord", t0 + secs(1000));
}

#[test]
fn a_reused_session_id_is_a_new_session() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(h.ask(Y, "yoda", t0), PASSWORD);
    h.disconnect(Y, t0 + secs(1));
    h.connect(Y, t0 + secs(30));
    assert_eq!(h.take(Y), USERNAME);
    h.expire(t0 + TIMEOUT);
    assert_eq!(h.take(Y), "");
    h.expire(t0 + secs(30) + TIMEOUT - ms(1));
    assert_eq!(h.take(Y), "");
    h.expire(t0 + secs(30) + TIMEOUT);
    assert_eq!(h.take(Y), LOGIN_TIMED_OUT);
}

// -------------------------------------------------------------- shutdown

#[test]
fn shutdown_tells_and_closes_every_session() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    let [at_username, at_password] = [SessionId(10), SessionId(11)];
    h.connect(at_username, t0);
    h.connect(at_password, t0);
    h.send(at_password, "luke", t0);
    h.discard();
    h.shutdown(t0 + secs(1));
    for s in [Y, H, at_username, at_password] {
        assert_eq!(h.take(s), "Server is shutting down\n", "{s:?}");
        assert!(h.closed(s), "{s:?}");
    }
    assert_eq!(h.chat.online_count(), 0);
    assert!(!h.chat.is_online("yoda"));
    // Nothing more happens to those sessions afterwards.
    for s in [Y, H, at_username, at_password] {
        h.disconnect(s, t0 + secs(1));
    }
    h.expire(t0 + secs(1000));
    for s in [Y, H, at_username, at_password] {
        assert_eq!(h.take(s), "", "{s:?}");
    }
}

// ---------------------------------------------------------------- durable state

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
            sender,
            text,
        } => Record::MailboxAppend {
            recipient: s(recipient),
            seq,
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

#[test]
fn without_recording_nothing_is_recorded_or_held() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "message luke hi", t0), offline("luke"));
    assert_eq!(h.ask(Y, "block vader", t0), "vader is blocked\n");
    assert_eq!(h.take_records(), (vec![], vec![]));
}

#[test]
fn every_durable_change_is_recorded_and_its_reply_held() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.take_records(), (vec![], vec![]));

    assert_eq!(h.ask(Y, "message luke use the force", t0), offline("luke"));
    assert_eq!(
        h.take_records(),
        (
            vec![Record::MailboxAppend {
                recipient: "luke",
                seq: Some(0),
                sender: "yoda",
                text: "use the force"
            }],
            vec![Y]
        )
    );
    // Online delivery changes nothing durable.
    h.send(Y, "message hans hi", t0);
    assert_eq!(h.take(H), "yoda: hi\n");
    assert_eq!(h.take_records(), (vec![], vec![]));

    assert_eq!(h.ask(Y, "block vader", t0), "vader is blocked\n");
    assert_eq!(h.ask(Y, "unblock vader", t0), "vader is unblocked\n");
    assert_eq!(
        h.take_records(),
        (
            vec![
                Record::Block {
                    user: "yoda",
                    target: "vader"
                },
                Record::Unblock {
                    user: "yoda",
                    target: "vader"
                }
            ],
            vec![Y, Y]
        )
    );
    // Errors change nothing.
    h.ask(Y, "unblock vader", t0);
    h.ask(Y, "block yoda", t0);
    assert_eq!(h.take_records(), (vec![], vec![]));

    assert_eq!(
        h.login_with_mail(L, "luke", "lightsaber", t0),
        "yoda: use the force\n"
    );
    assert_eq!(
        h.take_records(),
        (
            vec![Record::MailboxTaken {
                recipient: "luke",
                through: 0
            }],
            vec![]
        )
    );

    h.ban(V, "vader", t0 + secs(1));
    let until = WALL_MS + 1000 + BLOCK.as_millis() as u64;
    assert_eq!(
        h.take_records(),
        (
            vec![Record::Ban {
                user: "vader",
                until_unix_ms: until
            }],
            vec![V]
        )
    );
    h.run_timers(t0 + secs(1) + BLOCK);
    assert_eq!(
        h.take_records(),
        (vec![Record::BanCleared { user: "vader" }], vec![])
    );
}

#[test]
fn a_full_mailbox_refuses_the_message_and_stores_nothing() {
    let t0 = Instant::now();
    let mut h = Harness::tuned(|config| config.mailbox_max = 2);
    h.chat.record_changes(wall(t0));
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "message luke one", t0), offline("luke"));
    assert_eq!(h.ask(Y, "message luke two", t0), offline("luke"));
    h.take_records();
    assert_eq!(
        h.ask(Y, "message luke three", t0),
        "Error. luke's mailbox is full\n"
    );
    assert_eq!(h.take_records(), (vec![], vec![]));
    assert_eq!(
        h.login_with_mail(L, "luke", "lightsaber", t0),
        "yoda: one\nyoda: two\n"
    );
    // Delivered: room again.
    h.disconnect(L, t0);
    h.discard();
    assert_eq!(h.ask(Y, "message luke four", t0), offline("luke"));
}

#[test]
fn replaying_records_or_a_snapshot_rebuilds_the_state() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.login(Y, "yoda", "wise", t0);
    h.ask(Y, "message luke first: with a colon", t0);
    h.ask(Y, "message luke second", t0);
    h.ask(Y, "block vader", t0);
    h.ask(Y, "block hans", t0);
    h.ask(Y, "unblock hans", t0);
    h.ban(H, "hans", t0);
    let (records, _) = h.take_records();
    let snapshot: Vec<Record<'_>> = h.chat.snapshot(wall(t0)).collect();
    assert_eq!(snapshot.len(), 4, "{snapshot:?}");

    // A restart 3 s later (wall clock too): the ban has 7 s left.
    for replay in [records, snapshot.iter().cloned().map(leak).collect()] {
        let t1 = Instant::now() + secs(100);
        let clock = WallClock {
            at: t1,
            unix_ms: WALL_MS + 3000,
        };
        let mut r = Harness::new();
        r.chat.record_changes(clock);
        for record in &replay {
            assert_eq!(r.chat.apply_record(record, clock), Replayed::Applied);
        }
        assert_eq!(
            r.login_with_mail(L, "luke", "lightsaber", t1),
            "yoda: first: with a colon\nyoda: second\n"
        );
        r.login(V, "vader", "sithlord", t1);
        assert_eq!(r.ask(V, "message yoda hi", t1), MESSAGE_BLOCKED);
        r.connect(H, t1 + secs(6));
        r.ask(H, "hans", t1 + secs(6));
        assert_eq!(r.ask(H, "falcon", t1 + secs(6)), BANNED);
        r.run_timers(t1 + secs(7));
        r.login(SessionId(9), "hans", "falcon", t1 + secs(7));
    }
}

#[test]
fn replayed_bans_that_already_ended_are_ignored() {
    let t0 = Instant::now();
    let clock = wall(t0);
    let mut h = Harness::new();
    let ended = Record::Ban {
        user: "hans",
        until_unix_ms: WALL_MS,
    };
    assert_eq!(h.chat.apply_record(&ended, clock), Replayed::Applied);
    assert_eq!(h.chat.next_deadline(), None);
    h.login(H, "hans", "falcon", t0);
}

#[test]
fn the_wall_clock_converts_both_ways() {
    let t0 = Instant::now();
    let clock = wall(t0);
    assert_eq!(clock.unix_ms(t0 + ms(1500)), WALL_MS + 1500);
    assert_eq!(clock.instant(WALL_MS + 1500), Some(t0 + ms(1500)));
    assert_eq!(clock.instant(WALL_MS), None);
    assert_eq!(clock.instant(WALL_MS - 1), None);
    let epoch = WallClock::new(t0, SystemTime::UNIX_EPOCH + ms(42));
    assert_eq!(epoch.unix_ms, 42);
}

// ------------------------------------------------------ hardening: the domain

const STORAGE_FULL: &str = "Error. Server storage is full\n";
const UNAVAILABLE: &str = "Error. Server storage is unavailable\n";
const TOO_MANY_FAILURES: &str =
    "Error. Too many failed logins from your address. Please try again later\n";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn a_backlog_leaves_the_mailbox_only_as_it_is_written() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.auto_backlog = false;
    h.login(Y, "yoda", "wise", t0);
    for i in 0..5 {
        assert_eq!(h.ask(Y, &format!("message luke m{i}"), t0), offline("luke"));
    }
    h.take_records();
    assert_eq!(h.login_with_mail(L, "luke", "lightsaber", t0), "");
    assert_eq!(h.backlogs, vec![L]);
    let lines = |h: &Harness, from| h.chat.backlog(L, from).collect::<Vec<_>>().join(",");
    assert_eq!(lines(&h, 0), "yoda: m0,yoda: m1,yoda: m2,yoda: m3,yoda: m4");
    assert_eq!(lines(&h, 3), "yoda: m3,yoda: m4");
    // Two written: they go, and the change is recorded (not held).
    h.chat.backlog_written(L, 2);
    h.drain();
    assert_eq!(
        h.take_records(),
        (
            vec![Record::MailboxTaken {
                recipient: "luke",
                through: 1
            }],
            vec![]
        )
    );
    assert_eq!(h.chat.mailbox_len("luke"), 3);
    // Luke leaves halfway: the rest waits for the next login, in order.
    h.disconnect(L, t0);
    assert_eq!(h.chat.backlog(L, 0).count(), 0, "no session, no backlog");
    h.auto_backlog = true;
    assert_eq!(
        h.login_with_mail(SessionId(7), "luke", "lightsaber", t0),
        "yoda: m2\nyoda: m3\nyoda: m4\n"
    );
    assert_eq!(h.chat.mailbox_len("luke"), 0);
}

#[test]
fn stored_mail_is_bounded_in_total_and_freed_as_it_is_delivered() {
    let t0 = Instant::now();
    // Room for exactly two 10-byte messages from yoda ("yoda: " + 4).
    let cost = message_cost("yoda: 0123".len());
    let mut h = Harness::tuned(|c| c.store_max = 2 * cost);
    h.chat.record_changes(wall(t0));
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "message luke 0123", t0), offline("luke"));
    assert_eq!(h.ask(Y, "message vader 4567", t0), offline("vader"));
    h.take_records();
    assert_eq!(h.ask(Y, "message luke 8901", t0), STORAGE_FULL);
    assert_eq!(h.take_records(), (vec![], vec![]), "nothing is stored");
    assert_eq!(h.chat.stored_bytes(), 2 * cost);
    // Online delivery is not storage.
    h.login(H, "hans", "falcon", t0);
    h.discard();
    h.send(Y, "message hans still fine", t0);
    assert_eq!(h.take(H), "yoda: still fine\n");
    // Delivered mail frees its room.
    h.login_with_mail(L, "luke", "lightsaber", t0);
    assert_eq!(h.chat.stored_bytes(), cost);
    h.send(L, "logout", t0);
    h.discard();
    assert_eq!(h.ask(Y, "message luke 2345", t0), offline("luke"));
}

#[test]
fn while_storage_is_unavailable_durable_commands_change_nothing() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.ask(Y, "block vader", t0);
    h.discard();
    h.take_records();
    h.chat.set_storage_available(false);
    assert_eq!(h.ask(Y, "message luke hi", t0), UNAVAILABLE);
    assert_eq!(h.ask(Y, "block luke", t0), UNAVAILABLE);
    assert_eq!(h.ask(Y, "unblock vader", t0), UNAVAILABLE);
    // What changes nothing durable still works, errors included.
    assert_eq!(
        h.ask(Y, "block vader", t0),
        "Error. vader is already blocked\n"
    );
    assert_eq!(
        h.ask(Y, "unblock luke", t0),
        "Error. luke was not blocked\n"
    );
    h.send(Y, "message hans online", t0);
    assert_eq!(h.take(H), "yoda: online\n");
    assert_eq!(h.take_records(), (vec![], vec![]));
    assert_eq!(h.chat.mailbox_len("luke"), 0);
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(
        h.ask(V, "message yoda hi", t0),
        MESSAGE_BLOCKED,
        "the block stands"
    );
    h.chat.set_storage_available(true);
    h.discard();
    assert_eq!(h.ask(Y, "message luke hi", t0), offline("luke"));
}

#[test]
fn failed_passwords_are_limited_per_address_not_per_username() {
    let t0 = Instant::now();
    let mut h = Harness::tuned(|c| c.max_failures_per_ip = 4);
    let attacker = ip("192.0.2.7");
    // Four failures spread over two usernames, from two connections.
    for (sid, user) in [(SessionId(10), "yoda"), (SessionId(11), "hans")] {
        h.connect_from(sid, attacker, t0);
        h.take(sid);
        assert_eq!(h.ask(sid, user, t0), PASSWORD);
        assert_eq!(h.ask(sid, "guess1", t0), INVALID_PASSWORD);
        assert_eq!(h.ask(sid, "guess2", t0), INVALID_PASSWORD);
    }
    // The fifth password, even a right one, is refused and closes; it
    // counts for no username.
    assert_eq!(h.ask(SessionId(10), "wise", t0), TOO_MANY_FAILURES);
    assert!(h.closed(SessionId(10)));
    h.connect_from(SessionId(12), attacker, t0 + secs(1));
    h.take(SessionId(12));
    h.ask(SessionId(12), "vader", t0 + secs(1));
    assert_eq!(
        h.ask(SessionId(12), "sithlord", t0 + secs(1)),
        TOO_MANY_FAILURES
    );
    // Others are not affected, and the usernames are not banned.
    h.connect_from(SessionId(13), ip("192.0.2.8"), t0 + secs(1));
    h.take(SessionId(13));
    h.ask(SessionId(13), "yoda", t0 + secs(1));
    assert_eq!(h.ask(SessionId(13), "wise", t0 + secs(1)), WELCOME);
    h.send(SessionId(13), "logout", t0 + secs(1));
    // A trusted address is never counted.
    for n in 0..2 {
        let sid = SessionId(20 + n);
        h.connect_trusted(sid, attacker, t0 + secs(1));
        h.take(sid);
        h.ask(sid, "luke", t0 + secs(1));
        assert_eq!(h.ask(sid, "nope", t0 + secs(1)), INVALID_PASSWORD);
    }
    // Once the window (BLOCK_DURATION) has passed, the address may try again.
    h.run_timers(t0 + BLOCK);
    h.connect_from(SessionId(14), attacker, t0 + BLOCK);
    h.take(SessionId(14));
    h.ask(SessionId(14), "yoda", t0 + BLOCK);
    assert_eq!(h.ask(SessionId(14), "wise", t0 + BLOCK), WELCOME);
}

#[test]
fn a_login_must_be_complete_within_the_login_timeout_however_much_is_typed() {
    let t0 = Instant::now();
    let mut h = Harness::tuned(|c| c.login_timeout = secs(5));
    h.connect(Y, t0);
    h.take(Y);
    for i in 0..5 {
        assert_eq!(h.ask(Y, "nobody", t0 + secs(i)), INVALID_USERNAME);
    }
    h.login(H, "hans", "falcon", t0 + secs(1));
    h.run_timers(t0 + secs(5));
    assert_eq!(h.take(Y), LOGIN_TIMED_OUT);
    assert!(h.closed(Y));
    assert!(!h.closed(H), "a logged-in session has no login deadline");
}

#[test]
fn removed_accounts_keep_their_records_and_are_invisible_meanwhile() {
    let t0 = Instant::now();
    let clock = wall(t0);
    let mut h = Harness::new();
    let kept = [
        Record::MailboxAppend {
            recipient: "chewbacca",
            seq: Some(4),
            sender: "yoda",
            text: "hi",
        },
        Record::Block {
            user: "yoda",
            target: "chewbacca",
        },
    ];
    for record in &kept {
        assert_eq!(h.chat.apply_record(record, clock), Replayed::Removed);
    }
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(
        h.ask(Y, "message chewbacca hi", t0),
        "Error. Invalid user\n"
    );
    assert_eq!(h.ask(Y, "whoelsesince 100000", t0), NOBODY_SINCE);
    h.connect(H, t0);
    h.take(H);
    assert_eq!(h.ask(H, "chewbacca", t0), INVALID_USERNAME);
    // The snapshot keeps them for when the account returns.
    let snapshot: Vec<Record<'_>> = h.chat.snapshot(clock).collect();
    for record in &kept {
        assert!(snapshot.contains(record), "{snapshot:?}");
    }
    // Pruning drops them.
    let mut pruned = Harness::tuned(|c| c.prune_removed = true);
    for record in &kept {
        assert_eq!(pruned.chat.apply_record(record, clock), Replayed::Dropped);
    }
    assert_eq!(pruned.chat.snapshot(clock).count(), 0);
}

#[test]
fn whoelse_reads_the_online_users_and_whoelsesince_the_recent_departures() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login(V, "vader", "sithlord", t0);
    h.send(V, "logout", t0 + secs(10));
    h.send(H, "logout", t0 + secs(20));
    h.login(SessionId(8), "hans", "falcon", t0 + secs(25));
    h.discard();
    assert_eq!(h.ask(Y, "whoelse", t0 + secs(30)), "hans\n");
    // Hans is online again: listed once; vader left 20 s ago.
    assert_eq!(h.ask(Y, "whoelsesince 15", t0 + secs(30)), "hans\n");
    assert_eq!(h.ask(Y, "whoelsesince 21", t0 + secs(30)), "hans\nvader\n");
    assert_eq!(
        h.chat.presence.departed.len(),
        2,
        "one entry per user who has left"
    );
}

#[test]
fn replaying_a_fuzzy_snapshot_then_the_newer_journal_gives_the_exact_state() {
    let t0 = Instant::now();
    let clock = wall(t0);
    let mut h = recording(t0);
    h.login(Y, "yoda", "wise", t0);
    for i in 0..6 {
        h.ask(Y, &format!("message luke m{i}"), t0);
    }
    h.ask(Y, "block vader", t0);
    h.take_records();
    // A snapshot is started: luke's first three messages are encoded,
    // then the state changes before the rest is.
    let mut cursor = SnapshotCursor::default();
    let mut fuzzy = Vec::new();
    for _ in 0..3 {
        let record = cursor.next(&h.chat, clock).expect("a record");
        record::encode(&record, &mut fuzzy);
    }
    h.auto_backlog = false;
    h.login(L, "luke", "lightsaber", t0);
    h.chat.backlog_written(L, 4);
    h.drain();
    h.send(L, "logout", t0);
    h.ask(Y, "message luke m6", t0);
    h.ask(Y, "unblock vader", t0);
    h.ask(Y, "block hans", t0);
    let (newer, _) = h.take_records();
    cursor.encode(&h.chat, clock, &mut fuzzy, usize::MAX);
    let exact: Vec<Record<'static>> = h.chat.snapshot(clock).map(leak).collect();

    let mut r = Harness::new();
    let mut rest = &fuzzy[..];
    while !rest.is_empty() {
        let len = record::FRAME_HEADER
            + u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let record = record::check_frame(&rest[..len]).expect("intact");
        r.chat.apply_record(&record, clock);
        rest = &rest[len..];
    }
    for record in &newer {
        r.chat.apply_record(record, clock);
    }
    let rebuilt: Vec<Record<'static>> = r.chat.snapshot(clock).map(leak).collect();
    assert_eq!(rebuilt, exact);
    assert_eq!(r.chat.stored_bytes(), h.chat.stored_bytes());
}
