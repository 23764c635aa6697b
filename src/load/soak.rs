//! A soak run: hundreds of clients on one `mio` loop send mixed traffic to
//! a running server for a given time, leave and come back in every way a
//! client can, and account for every message that had to arrive.
//!
//! Roles: three quarters of the clients are *steady* (logged in for the
//! whole run), the rest *churners* that log in, talk for 2–10 s, leave
//! (`logout`, half-close, plain close, reset by `SO_LINGER` 0, close in the
//! middle of a line, or a burst of commands followed by a reset), stay away
//! for 0.2–3 s and come back; one login in twenty is abandoned at a prompt.
//! A few steady clients also send garbage: over-long lines, invalid UTF-8,
//! control characters. Every online client sends one command every
//! 0.2–1.5 s: `message` to a steady user, `message` to an offline churner,
//! `broadcast`, `whoelse`, `whoelsesince`, `help`, and `block`/`unblock` of
//! one fixed other user.
//!
//! What must arrive is decided from what the clients know when a command is
//! queued, which is always before the server handles it:
//!
//! - a message or broadcast to a steady user must arrive exactly once,
//!   unless that user blocks the sender (then it must not arrive) or is
//!   changing that block (then it may). When a user queues a `block`, what
//!   its enemy sent it that has not arrived yet is no longer required; when
//!   it queues an `unblock`, what was refused is no longer forbidden.
//! - a message to a churner is only sent while the churner is offline as
//!   far as the server is concerned (a steady *witness* saw its
//!   `logged out`), and the churner does not log in again before the sender
//!   got `<user> is offline...`; everything stored that way must arrive
//!   right after the churner's next welcome.
//! - a churner that leaves abruptly first sends `block <itself>` and waits
//!   for `Error. Cannot block self`, so everything it sent before was
//!   handled; what it sends after that (the burst) is not tracked.
//!
//! After DURATION, sending stops, every churner logs in again (collecting
//! its mailbox), the run waits until everything required has arrived, then
//! every client logs out and the server's descriptors must return to where
//! they were before the first client connected. The server's memory and
//! descriptors are read from `/proc` every second.

use std::collections::VecDeque;
use std::fmt;
use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};

use super::{accounts, find_newline, memory, open_descriptors};
use crate::protocol;
use crate::server::defaults;

/// Fewest clients a run accepts (there must be steady clients, churners
/// and witnesses).
pub const MIN_CLIENTS: usize = 8;
/// Most clients a run accepts.
pub const MAX_CLIENTS: usize = 5000;

/// Steady clients that count every `<user> logged out` they receive.
const WITNESSES: usize = 3;
/// How often the loop looks at the clients' schedules.
const TICK: Duration = Duration::from_millis(20);
/// How often the server's `/proc` entries are read.
const SAMPLE_EVERY: Duration = Duration::from_secs(1);
/// Longest wait for any answer: a welcome, a goodbye, a close, a sync
/// reply, a witness's `logged out`.
const WAIT_LIMIT: Duration = Duration::from_secs(10);
/// Longest time to connect and log in every client at the start.
const SETUP_LIMIT: Duration = Duration::from_secs(60);
/// Longest time, after sending stopped, for every churner to log in again
/// and everything required to arrive.
const GATHER_LIMIT: Duration = Duration::from_secs(15);
/// Longest time for every client to log out at the end.
const CLOSE_LIMIT: Duration = Duration::from_secs(15);
/// Longest time for the server's descriptors to return to the baseline.
const SETTLE_LIMIT: Duration = Duration::from_secs(10);
/// Most clients logging in at once.
const MAX_CONNECTING: usize = 64;
/// Milliseconds between two commands of one client.
const GAP_MS: (u64, u64) = (200, 1500);
/// Milliseconds a churner stays logged in.
const SESSION_MS: (u64, u64) = (2000, 10_000);
/// Milliseconds a churner stays away.
const AWAY_MS: (u64, u64) = (200, 3000);
/// Most bytes of an over-long garbage line beyond the server's limit.
const MAX_GARBAGE_EXCESS: u64 = 200_000;
/// Size of the shared read buffer.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Longest line accepted from the server.
const MAX_SERVER_LINE: usize = 8 * 1024;
/// Notices kept verbatim in the report.
const MAX_NOTICES: usize = 20;
/// The end of the server's answer to a message for an offline user.
const OFFLINE_SUFFIX: &str = " is offline. Your message will be delivered when they log in";

/// Everything a soak run needs.
#[derive(Debug, Clone)]
pub struct SoakConfig {
    /// The server; must be a loopback address.
    pub target: SocketAddr,
    /// The server's process id, for `/proc/PID/status` and `/proc/PID/fd`.
    pub server_pid: u32,
    /// Clients, between [`MIN_CLIENTS`] and [`MAX_CLIENTS`]; the server must
    /// know that many generated accounts (`user0001`, ...).
    pub clients: usize,
    /// How long to send.
    pub duration: Duration,
    /// Seed of every random choice.
    pub seed: u64,
    /// The server's `--max-line`, so that garbage lines exceed it.
    pub max_line: usize,
    /// How often to print a progress line to stderr, if at all.
    pub progress: Option<Duration>,
}

impl SoakConfig {
    /// The defaults against `target`: 300 clients, 60 s, seed 1, the
    /// server's default line limit, progress every 10 s.
    pub fn new(target: SocketAddr, server_pid: u32) -> SoakConfig {
        SoakConfig {
            target,
            server_pid,
            clients: 300,
            duration: Duration::from_secs(60),
            seed: 1,
            max_line: defaults::MAX_LINE,
            progress: Some(Duration::from_secs(10)),
        }
    }

    fn validate(&self) -> io::Result<()> {
        let invalid = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        if !self.target.ip().is_loopback() {
            return invalid(format!("target {} is not a loopback address", self.target));
        }
        if !(MIN_CLIENTS..=MAX_CLIENTS).contains(&self.clients) {
            return invalid(format!(
                "{} clients is not between {MIN_CLIENTS} and {MAX_CLIENTS}",
                self.clients
            ));
        }
        Ok(())
    }
}

/// How a churner leaves a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Leave {
    /// `logout`, then the goodbye and the server's close.
    Logout,
    /// Shuts its writing side and reads until the server closes.
    HalfClose,
    /// Closes the socket.
    Close,
    /// Closes with `SO_LINGER` 0: a reset.
    Reset,
    /// Sends the start of a command without its newline, then closes or
    /// resets.
    MidLine,
    /// Sends a few commands and resets at once.
    Burst,
}

impl Leave {
    const ALL: [Leave; 6] = [
        Leave::Logout,
        Leave::HalfClose,
        Leave::Close,
        Leave::Reset,
        Leave::MidLine,
        Leave::Burst,
    ];

    /// Relative chance of each, in the order of [`Leave::ALL`].
    const WEIGHTS: [u64; 6] = [30, 15, 15, 15, 12, 13];

    fn name(self) -> &'static str {
        match self {
            Leave::Logout => "logout",
            Leave::HalfClose => "half-close",
            Leave::Close => "close",
            Leave::Reset => "reset",
            Leave::MidLine => "mid-line",
            Leave::Burst => "burst+reset",
        }
    }
}

/// Where a client's connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// No connection.
    Offline,
    /// Waiting for `Username: `.
    UserPrompt,
    /// Waiting for `Password: `.
    PassPrompt,
    /// Waiting for the welcome.
    Welcome,
    /// Logged in.
    Online,
    /// Sent `block <itself>` and waits for the error before leaving so.
    Quiescing(Leave),
    /// Sent `logout`.
    LoggingOut,
    /// Shut its writing side.
    HalfClosed,
    /// Given up on after something went wrong; never used again.
    Failed,
}

/// A churner's login that is abandoned at a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abort {
    AtUsername,
    AtPassword,
}

/// Where a client is in blocking its enemy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Unblocked,
    Blocking,
    Blocked,
    Unblocking,
}

/// What a message's recipient must do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Receive it exactly once.
    Must,
    /// Not receive it: the recipient blocks the sender.
    MustNot,
    /// Either.
    Maybe,
    /// A message for an offline user.
    Offline(Mail),
}

/// Where a message for an offline user is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mail {
    /// Sent; the server has not answered yet.
    Sent,
    /// The server answered that it stored it.
    Stored,
    /// The recipient is logging in: it comes after the welcome.
    Due,
    /// Received.
    Delivered,
    /// Not received in a session that ended cleanly: lost.
    Lost,
    /// The recipient dropped its connection before reading it.
    Dropped,
    /// The sender's session ended before the server answered.
    Unanswered,
}

/// One `message` command.
struct Direct {
    from: u32,
    to: u32,
    expect: Expect,
    got: u32,
}

/// One `broadcast` command.
struct Broadcast {
    from: u32,
    /// Recipients that must receive it, one bit each.
    must: Vec<u64>,
    /// Recipients that must not.
    must_not: Vec<u32>,
    /// Recipients that received it.
    got: Vec<u64>,
}

/// A message an enemy sent, as its recipient remembers it.
#[derive(Debug, Clone, Copy)]
enum Ref {
    Direct(u32),
    Broadcast(u32),
}

/// One client.
struct Client {
    steady: bool,
    garbage: bool,
    /// The one user this client blocks and unblocks.
    enemy: usize,
    block: Block,
    phase: Phase,
    stream: Option<TcpStream>,
    partial: Vec<u8>,
    out: Vec<u8>,
    out_pos: usize,
    writable: bool,
    dirty: bool,
    next_action: Instant,
    leave_at: Instant,
    /// An answer is awaited until then (see [`WAIT_LIMIT`]).
    deadline: Option<Instant>,
    abort: Option<Abort>,
    /// Required messages from the enemy not known to be received.
    guard_must: Vec<Ref>,
    /// Messages from the enemy that must not arrive.
    guard_must_not: Vec<Ref>,
    /// Messages this client sent to offline users, awaiting the answer.
    waits: VecDeque<(usize, u32)>,
    /// Messages for this client awaiting their sender's answer; it does not
    /// log in while there are any.
    held: u32,
    /// Messages stored for this client.
    mailbox: Vec<u32>,
    /// Stored messages that come after the current welcome.
    due: Vec<u32>,
    /// Sessions that ended or are ending.
    sessions_ended: u32,
    /// The server has this client offline (a witness saw it leave).
    server_offline: bool,
    goodbye: bool,
    /// Garbage lines not answered yet.
    garbage_pending: u64,
}

/// Counters of the whole run.
#[derive(Debug, Default)]
struct Stats {
    commands: u64,
    received: u64,
    received_tracked: u64,
    duplicates: u64,
    refused: u64,
    refused_broadcasts: u64,
    offline_stored: u64,
    offline_delivered: u64,
    offline_lost: u64,
    offline_dropped: u64,
    offline_unanswered: u64,
    presence: u64,
    info: u64,
    garbage_sent: u64,
    garbage_answered: u64,
    logins: u64,
    leaves: [u64; 6],
    login_aborts: u64,
    violations: u64,
    unexpected_closes: u64,
    stuck: u64,
    notices: Vec<String>,
    notice_count: u64,
}

/// What a soak run found.
#[derive(Debug, Clone, Default)]
pub struct SoakReport {
    /// How long traffic was sent.
    pub duration: Duration,
    /// The whole run, setup and wind-down included.
    pub elapsed: Duration,
    /// Clients in all.
    pub clients: usize,
    /// Of which churners.
    pub churners: usize,
    /// Of which steady clients that also send garbage.
    pub garbage_senders: usize,
    /// Commands sent, garbage included.
    pub commands: u64,
    /// `message` commands to online users.
    pub messages: u64,
    /// `message` commands to offline users.
    pub offline_messages: u64,
    /// `broadcast` commands.
    pub broadcasts: u64,
    /// Message lines received (direct, broadcast, mailbox).
    pub received: u64,
    /// Deliveries that had to arrive exactly once: to steady users that
    /// did not block the sender.
    pub tracked: u64,
    /// Of those, received.
    pub tracked_received: u64,
    /// Of those, not received (recipients that failed not counted).
    pub lost: u64,
    /// Required deliveries to recipients the server disconnected.
    pub lost_to_failed: u64,
    /// Deliveries received more than once.
    pub duplicates: u64,
    /// `... the recipient has blocked you` answers.
    pub refused: u64,
    /// `... could not be delivered to some recipients` answers.
    pub refused_broadcasts: u64,
    /// Messages the server stored for offline users.
    pub offline_stored: u64,
    /// Of those, delivered on the recipient's next login.
    pub offline_delivered: u64,
    /// Stored messages missing after a login whose session ended cleanly.
    pub offline_lost: u64,
    /// Stored messages delivered to a connection the client then dropped
    /// unread.
    pub offline_dropped: u64,
    /// Offline messages the server never answered.
    pub offline_unanswered: u64,
    /// `logged in` and `logged out` lines received.
    pub presence: u64,
    /// Lines of `whoelse`, `whoelsesince` and `help` answers.
    pub answers: u64,
    /// Garbage lines sent, and error answers to them.
    pub garbage: (u64, u64),
    /// Completed logins, the first ones included.
    pub logins: u64,
    /// Sessions ended, by way of leaving, with the way's name.
    pub leaves: Vec<(&'static str, u64)>,
    /// Logins abandoned at a prompt.
    pub login_aborts: u64,
    /// Answers that contradict the protocol or the accounting.
    pub violations: u64,
    /// Connections the server closed unexpectedly.
    pub unexpected_closes: u64,
    /// Answers that did not come within the wait limit.
    pub stuck: u64,
    /// The first notices.
    pub notices: Vec<String>,
    /// Notices in all.
    pub notice_count: u64,
    /// The server's resident memory before the first client connected.
    pub rss_start: u64,
    /// The largest resident memory sampled.
    pub rss_peak: u64,
    /// The server's `VmHWM` at the end.
    pub rss_hwm: u64,
    /// Resident memory after every client left.
    pub rss_final: u64,
    /// The server's descriptors before the first client connected.
    pub fds_baseline: usize,
    /// The most sampled.
    pub fds_peak: usize,
    /// With every client logged in, at the end.
    pub fds_connected: usize,
    /// After every client left.
    pub fds_final: usize,
}

impl SoakReport {
    /// Disconnects of every kind: sessions left and logins abandoned.
    pub fn disconnects(&self) -> u64 {
        self.leaves.iter().map(|(_, n)| n).sum::<u64>() + self.login_aborts
    }

    /// Why the run failed; empty if it passed.
    pub fn failures(&self) -> Vec<String> {
        let mut failures = Vec::new();
        let mut check = |bad: bool, what: String| {
            if bad {
                failures.push(what);
            }
        };
        check(self.lost > 0, format!("{} messages lost", self.lost));
        check(
            self.duplicates > 0,
            format!("{} duplicate deliveries", self.duplicates),
        );
        check(
            self.offline_lost > 0,
            format!("{} offline messages lost", self.offline_lost),
        );
        check(
            self.offline_unanswered > 0,
            format!("{} offline messages unanswered", self.offline_unanswered),
        );
        check(
            self.violations > 0,
            format!("{} protocol violations", self.violations),
        );
        check(
            self.unexpected_closes > 0,
            format!("{} unexpected disconnects", self.unexpected_closes),
        );
        check(self.stuck > 0, format!("{} answers never came", self.stuck));
        check(
            self.garbage.0 != self.garbage.1,
            format!(
                "{} garbage lines but {} error answers",
                self.garbage.0, self.garbage.1
            ),
        );
        check(
            self.fds_final > self.fds_baseline,
            format!(
                "descriptors leaked: {} at the end, {} before",
                self.fds_final, self.fds_baseline
            ),
        );
        failures
    }
}

/// A byte count for people.
fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

impl fmt::Display for SoakReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "duration      {:.0} s of traffic ({:.0} s in all)",
            self.duration.as_secs_f64(),
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "clients       {} ({} steady, {} of them garbage senders; {} churners)",
            self.clients,
            self.clients - self.churners,
            self.garbage_senders,
            self.churners
        )?;
        writeln!(
            f,
            "sent          {} commands: {} messages, {} to offline users, {} broadcasts",
            self.commands, self.messages, self.offline_messages, self.broadcasts
        )?;
        writeln!(
            f,
            "received      {} message lines, {} presence lines, {} lines of whoelse, whoelsesince, help",
            self.received, self.presence, self.answers
        )?;
        writeln!(
            f,
            "tracked       {} deliveries to users online throughout: {} received, {} lost, {} duplicates",
            self.tracked, self.tracked_received, self.lost, self.duplicates
        )?;
        if self.lost_to_failed > 0 {
            writeln!(
                f,
                "              {} more to users the server disconnected",
                self.lost_to_failed
            )?;
        }
        writeln!(
            f,
            "offline       {} stored, {} delivered on login, {} lost, {} dropped unread by the client, {} unanswered",
            self.offline_stored,
            self.offline_delivered,
            self.offline_lost,
            self.offline_dropped,
            self.offline_unanswered
        )?;
        writeln!(
            f,
            "refused       {} messages, {} broadcasts in part (recipient blocked the sender)",
            self.refused, self.refused_broadcasts
        )?;
        writeln!(
            f,
            "garbage       {} lines, {} error answers",
            self.garbage.0, self.garbage.1
        )?;
        let leaves: Vec<String> = self
            .leaves
            .iter()
            .map(|(name, n)| format!("{n} {name}"))
            .collect();
        writeln!(
            f,
            "disconnects   {}: {}, {} logins abandoned; {} logins",
            self.disconnects(),
            leaves.join(", "),
            self.login_aborts,
            self.logins
        )?;
        writeln!(
            f,
            "problems      {} violations, {} unexpected disconnects, {} stuck",
            self.violations, self.unexpected_closes, self.stuck
        )?;
        writeln!(
            f,
            "server RSS    {} at start, peak {} (VmHWM {}), {} at the end",
            mib(self.rss_start),
            mib(self.rss_peak),
            mib(self.rss_hwm),
            mib(self.rss_final)
        )?;
        writeln!(
            f,
            "server fds    {} at start, peak {}, {} with all connected, {} at the end",
            self.fds_baseline, self.fds_peak, self.fds_connected, self.fds_final
        )?;
        if self.notice_count > 0 {
            writeln!(
                f,
                "notices       {} (first {}):",
                self.notice_count,
                self.notices.len()
            )?;
            for notice in &self.notices {
                writeln!(f, "  {notice}")?;
            }
        }
        Ok(())
    }
}

/// SplitMix64: small, seedable, good enough to pick actions.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n` (which is above 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick(&mut self, items: &[usize]) -> usize {
        items[self.below(items.len() as u64) as usize]
    }

    fn millis(&mut self, (low, high): (u64, u64)) -> Duration {
        Duration::from_millis(low + self.below(high - low + 1))
    }
}

/// The text of message `id` (tag `d` for `message`, `b` for `broadcast`):
/// inner spaces and a non-ASCII letter included, never a trailing space.
fn message_text(tag: char, id: u32) -> String {
    let tail = "z".repeat(1 + id as usize % 23);
    format!("{tag}{id:x} café  {tail}")
}

/// The tag and id of a text made by [`message_text`], if it is one exactly.
fn parse_text(text: &str) -> Option<(char, u32)> {
    let tag = text.chars().next().filter(|c| matches!(c, 'd' | 'b'))?;
    let (head, _) = text.split_once(' ')?;
    let id = u32::from_str_radix(head.get(1..)?, 16).ok()?;
    (message_text(tag, id) == text).then_some((tag, id))
}

fn bit(bits: &[u64], i: usize) -> bool {
    bits[i / 64] & (1 << (i % 64)) != 0
}

fn set_bit(bits: &mut [u64], i: usize, on: bool) {
    if on {
        bits[i / 64] |= 1 << (i % 64);
    } else {
        bits[i / 64] &= !(1 << (i % 64));
    }
}

/// Makes closing `stream` reset the connection.
fn set_linger_zero(stream: &TcpStream) -> io::Result<()> {
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: setsockopt reads `size_of::<linger>()` bytes from a valid
    // `linger` for the duration of the call; the descriptor is open.
    let rc = unsafe {
        libc::setsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::from_ref(&linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Where the run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Setup,
    Run,
    Gather,
    Closing,
}

/// The soak engine.
struct Soak {
    config: SoakConfig,
    poll: Poll,
    events: Events,
    rng: Rng,
    stage: Stage,
    names: Vec<String>,
    passwords: Vec<String>,
    clients: Vec<Client>,
    steady: Vec<usize>,
    churners: Vec<usize>,
    witnesses: Vec<usize>,
    /// `logged out` lines each witness received about each client.
    seen_out: Vec<Vec<u32>>,
    directs: Vec<Direct>,
    broadcasts: Vec<Broadcast>,
    /// Required deliveries not received yet.
    outstanding: u64,
    scratch: Vec<u8>,
    dirty: Vec<usize>,
    stats: Stats,
    started: Instant,
    next_sample: Instant,
    next_progress: Option<Instant>,
    rss_peak: u64,
    fds_peak: usize,
}

/// Runs a soak against a running server and reports it. Fails if the
/// clients cannot log in within a minute or the server's `/proc` entries
/// cannot be read (the server died); everything else it finds is in the
/// report. Takes the configured duration plus at most about two minutes.
pub fn run(config: &SoakConfig) -> io::Result<SoakReport> {
    config.validate()?;
    let pid = config.server_pid;
    let start_memory = memory(pid)?;
    let fds_baseline = open_descriptors(pid)?;
    let mut soak = Soak::new(config.clone())?;
    soak.rss_peak = start_memory.rss;
    soak.fds_peak = fds_baseline;
    soak.setup()?;
    let run_start = Instant::now();
    soak.drive(run_start + config.duration)?;
    let duration = run_start.elapsed();
    soak.gather()?;
    soak.sample()?;
    let fds_connected = open_descriptors(pid)?;
    soak.close_all()?;
    let fds_final = settle(pid, fds_baseline)?;
    soak.sample()?;
    let end_memory = memory(pid)?;
    let mut report = soak.report();
    report.duration = duration;
    report.rss_start = start_memory.rss;
    report.rss_hwm = end_memory.peak;
    report.rss_final = end_memory.rss;
    report.fds_baseline = fds_baseline;
    report.fds_connected = fds_connected;
    report.fds_final = fds_final;
    Ok(report)
}

/// Waits until process `pid` has at most `baseline` descriptors open, or
/// [`SETTLE_LIMIT`]; returns the last count.
fn settle(pid: u32, baseline: usize) -> io::Result<usize> {
    let deadline = Instant::now() + SETTLE_LIMIT;
    loop {
        let fds = open_descriptors(pid)?;
        if fds <= baseline || Instant::now() >= deadline {
            return Ok(fds);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

impl Soak {
    fn new(config: SoakConfig) -> io::Result<Soak> {
        let n = config.clients;
        let now = Instant::now();
        let mut rng = Rng(config.seed);
        let (names, passwords) = accounts(n)
            .into_iter()
            .map(|a| (a.username, a.password))
            .unzip();
        let mut clients = Vec::with_capacity(n);
        let (mut steady, mut churners, mut witnesses) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..n {
            let is_steady = i % 4 != 3;
            let garbage = is_steady && i % 60 == 2;
            if is_steady {
                steady.push(i);
                if !garbage && witnesses.len() < WITNESSES {
                    witnesses.push(i);
                }
            } else {
                churners.push(i);
            }
            let mut enemy = rng.below(n as u64 - 1) as usize;
            if enemy >= i {
                enemy += 1;
            }
            clients.push(Client {
                steady: is_steady,
                garbage,
                enemy,
                block: Block::Unblocked,
                phase: Phase::Offline,
                stream: None,
                partial: Vec::new(),
                out: Vec::new(),
                out_pos: 0,
                writable: false,
                dirty: false,
                next_action: now,
                leave_at: now,
                deadline: None,
                abort: None,
                guard_must: Vec::new(),
                guard_must_not: Vec::new(),
                waits: VecDeque::new(),
                held: 0,
                mailbox: Vec::new(),
                due: Vec::new(),
                sessions_ended: 0,
                server_offline: true,
                goodbye: false,
                garbage_pending: 0,
            });
        }
        let next_progress = config.progress.map(|every| now + every);
        Ok(Soak {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            rng,
            stage: Stage::Setup,
            names,
            passwords,
            seen_out: vec![vec![0; n]; witnesses.len()],
            clients,
            steady,
            churners,
            witnesses,
            directs: Vec::new(),
            broadcasts: Vec::new(),
            outstanding: 0,
            scratch: vec![0; SCRATCH_SIZE],
            dirty: Vec::new(),
            stats: Stats::default(),
            started: now,
            next_sample: now,
            next_progress,
            rss_peak: 0,
            fds_peak: 0,
            config,
        })
    }

    // ----- stages -------------------------------------------------------

    /// Logs every client in.
    fn setup(&mut self) -> io::Result<()> {
        let deadline = Instant::now() + SETUP_LIMIT;
        while !self.all(|c| c.phase == Phase::Online) {
            if Instant::now() >= deadline || self.any(|c| c.phase == Phase::Failed) {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "not every client logged in ({} of {}); notices: {:?}",
                        self.count(|c| c.phase == Phase::Online),
                        self.clients.len(),
                        self.stats.notices
                    ),
                ));
            }
            self.turn()?;
        }
        let now = Instant::now();
        for i in 0..self.clients.len() {
            let gap = self.rng.millis(GAP_MS);
            let session = self.rng.millis(SESSION_MS);
            let client = &mut self.clients[i];
            client.next_action = now + gap;
            client.leave_at = now + session;
        }
        self.stage = Stage::Run;
        Ok(())
    }

    /// Sends traffic until `end`.
    fn drive(&mut self, end: Instant) -> io::Result<()> {
        while Instant::now() < end {
            self.turn()?;
        }
        Ok(())
    }

    /// Stops sending, logs every churner in again, and waits until
    /// everything required arrived.
    fn gather(&mut self) -> io::Result<()> {
        self.stage = Stage::Gather;
        let deadline = Instant::now() + GATHER_LIMIT;
        while Instant::now() < deadline && !self.gathered() {
            self.turn()?;
        }
        Ok(())
    }

    fn gathered(&self) -> bool {
        self.outstanding == 0
            && self.all(|c| {
                c.phase == Phase::Failed
                    || (c.phase == Phase::Online
                        && c.out.is_empty()
                        && c.due.is_empty()
                        && c.waits.is_empty()
                        && c.garbage_pending == 0
                        && matches!(c.block, Block::Blocked | Block::Unblocked))
            })
    }

    /// Logs every client out and closes whatever is left.
    fn close_all(&mut self) -> io::Result<()> {
        self.stage = Stage::Closing;
        for i in 0..self.clients.len() {
            if self.clients[i].phase == Phase::Online {
                self.start_logout(i);
            } else if self.clients[i].phase != Phase::Failed {
                self.stuck(i, "settling after sending stopped")?;
            }
        }
        let deadline = Instant::now() + CLOSE_LIMIT;
        while Instant::now() < deadline
            && !self.all(|c| matches!(c.phase, Phase::Offline | Phase::Failed))
        {
            self.turn()?;
        }
        for i in 0..self.clients.len() {
            if !matches!(self.clients[i].phase, Phase::Offline | Phase::Failed) {
                self.stuck(i, "logout at the end")?;
            }
        }
        Ok(())
    }

    fn all(&self, f: impl Fn(&Client) -> bool) -> bool {
        self.clients.iter().all(f)
    }

    fn any(&self, f: impl Fn(&Client) -> bool) -> bool {
        self.clients.iter().any(f)
    }

    fn count(&self, f: impl Fn(&Client) -> bool) -> usize {
        self.clients.iter().filter(|c| f(c)).count()
    }

    // ----- the loop -----------------------------------------------------

    /// One turn: write what is queued, poll for at most a tick, handle the
    /// events, then run the schedule.
    fn turn(&mut self) -> io::Result<()> {
        for i in std::mem::take(&mut self.dirty) {
            self.flush(i)?;
        }
        loop {
            match self.poll.poll(&mut self.events, Some(TICK)) {
                Ok(()) => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        let ready: Vec<(usize, bool, bool)> = self
            .events
            .iter()
            .map(|e| {
                let readable = e.is_readable() || e.is_read_closed() || e.is_error();
                (e.token().0, readable, e.is_writable())
            })
            .collect();
        for (i, readable, writable) in ready {
            if writable {
                self.mark_dirty(i);
            }
            if readable {
                self.read(i)?;
            }
        }
        self.tick(Instant::now())
    }

    fn tick(&mut self, now: Instant) -> io::Result<()> {
        if now >= self.next_sample {
            self.sample()?;
            self.next_sample = now + SAMPLE_EVERY;
        }
        if let (Some(at), Some(every)) = (self.next_progress, self.config.progress) {
            if now >= at {
                self.next_progress = Some(now + every);
                eprintln!("{}", self.progress_line(now));
            }
        }
        let logging_in = |c: &Client| {
            matches!(
                c.phase,
                Phase::UserPrompt | Phase::PassPrompt | Phase::Welcome
            )
        };
        let mut connecting = self.count(logging_in);
        for i in 0..self.clients.len() {
            if self.clients[i].deadline.is_some_and(|d| now >= d) {
                let what = match self.clients[i].phase {
                    Phase::Offline => "a witness's `logged out`",
                    Phase::Quiescing(_) => "the sync answer",
                    Phase::LoggingOut => "the goodbye and close",
                    Phase::HalfClosed => "the close after a half-close",
                    _ => "the login",
                };
                self.stuck(i, what)?;
                continue;
            }
            match self.clients[i].phase {
                Phase::Offline if connecting < MAX_CONNECTING && self.may_connect(i, now) => {
                    self.connect(i, now)?;
                    connecting += 1;
                }
                Phase::Online if self.stage == Stage::Run => {
                    let client = &self.clients[i];
                    if !client.steady && now >= client.leave_at {
                        self.leave(i, now)?;
                    } else if now >= client.next_action {
                        self.act(i, now);
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }

    fn progress_line(&self, now: Instant) -> String {
        let online = self.count(|c| c.phase == Phase::Online);
        format!(
            "soak {:>5.0} s: {} online, {} commands, {} messages + {} offline + {} broadcasts, \
             {} received, {} outstanding, {} violations, peak RSS {}, peak fds {}",
            now.duration_since(self.started).as_secs_f64(),
            online,
            self.stats.commands,
            self.directs.len() as u64 - self.offline_sent(),
            self.offline_sent(),
            self.broadcasts.len(),
            self.stats.received,
            self.outstanding,
            self.stats.violations + self.stats.unexpected_closes + self.stats.stuck,
            mib(self.rss_peak),
            self.fds_peak
        )
    }

    fn offline_sent(&self) -> u64 {
        let offline = self.directs.iter();
        offline
            .filter(|d| matches!(d.expect, Expect::Offline(_)))
            .count() as u64
    }

    /// Reads the server's memory and descriptors.
    fn sample(&mut self) -> io::Result<()> {
        let pid = self.config.server_pid;
        let memory = memory(pid)?;
        self.rss_peak = self.rss_peak.max(memory.rss);
        self.fds_peak = self.fds_peak.max(open_descriptors(pid)?);
        Ok(())
    }

    fn may_connect(&self, i: usize, now: Instant) -> bool {
        let client = &self.clients[i];
        let ready = client.server_offline && client.held == 0;
        ready
            && match self.stage {
                Stage::Setup => client.sessions_ended == 0,
                Stage::Run => now >= client.next_action,
                Stage::Gather => true,
                Stage::Closing => false,
            }
    }

    // ----- notices ------------------------------------------------------

    fn notice(&mut self, text: String) {
        self.stats.notice_count += 1;
        if self.stats.notices.len() < MAX_NOTICES {
            let at = self.started.elapsed().as_secs_f64();
            let text: String = text.chars().take(160).collect();
            self.stats.notices.push(format!("{at:.1} s: {text}"));
        }
    }

    fn violation(&mut self, i: usize, text: String) {
        self.stats.violations += 1;
        let text = format!("{}: {text}", self.names[i]);
        self.notice(text);
    }

    /// An awaited answer did not come: give up on client `i`.
    fn stuck(&mut self, i: usize, what: &str) -> io::Result<()> {
        self.stats.stuck += 1;
        self.fail(i, format!("no {what} within {WAIT_LIMIT:?}"))
    }

    /// Gives up on client `i`.
    fn fail(&mut self, i: usize, why: String) -> io::Result<()> {
        let phase = self.clients[i].phase;
        let text = format!("{}: {why} ({phase:?})", self.names[i]);
        self.notice(text);
        self.hang_up(i, false)?;
        let client = &mut self.clients[i];
        client.phase = Phase::Failed;
        client.deadline = None;
        for (to, id) in std::mem::take(&mut client.waits) {
            self.directs[id as usize].expect = Expect::Offline(Mail::Unanswered);
            self.clients[to].held -= 1;
        }
        Ok(())
    }

    // ----- connections --------------------------------------------------

    fn connect(&mut self, i: usize, now: Instant) -> io::Result<()> {
        let target = self.config.target;
        let mut stream = TcpStream::connect(target)
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {target}: {e}")))?;
        self.poll
            .registry()
            .register(&mut stream, Token(i), Interest::READABLE)?;
        let abort = if self.stage == Stage::Run && self.rng.chance(5) {
            Some(if self.rng.chance(50) {
                Abort::AtUsername
            } else {
                Abort::AtPassword
            })
        } else {
            None
        };
        let client = &mut self.clients[i];
        client.stream = Some(stream);
        client.phase = Phase::UserPrompt;
        client.deadline = Some(now + WAIT_LIMIT);
        client.abort = abort;
        client.partial.clear();
        client.out.clear();
        client.out_pos = 0;
        client.writable = false;
        client.goodbye = false;
        client.due = std::mem::take(&mut client.mailbox);
        for &id in &client.due {
            self.directs[id as usize].expect = Expect::Offline(Mail::Due);
        }
        Ok(())
    }

    /// Closes client `i`'s socket, resetting the connection if `reset`.
    fn hang_up(&mut self, i: usize, reset: bool) -> io::Result<()> {
        let client = &mut self.clients[i];
        client.partial.clear();
        client.out.clear();
        client.out_pos = 0;
        client.writable = false;
        if let Some(mut stream) = client.stream.take() {
            self.poll.registry().deregister(&mut stream)?;
            if reset {
                set_linger_zero(&stream)?;
            }
        }
        Ok(())
    }

    /// A session of client `i` ended; `clean` if the client read everything
    /// the server sent it.
    fn end_session(&mut self, i: usize, clean: bool, now: Instant) -> io::Result<()> {
        self.hang_up(i, false)?;
        let due = std::mem::take(&mut self.clients[i].due);
        for &id in &due {
            let mail = if clean { Mail::Lost } else { Mail::Dropped };
            self.directs[id as usize].expect = Expect::Offline(mail);
        }
        if clean && !due.is_empty() {
            self.stats.offline_lost += due.len() as u64;
            self.violation(i, format!("{} stored messages missing", due.len()));
        } else {
            self.stats.offline_dropped += due.len() as u64;
        }
        let waits = std::mem::take(&mut self.clients[i].waits);
        if !waits.is_empty() {
            self.stats.offline_unanswered += waits.len() as u64;
            self.violation(i, format!("{} offline messages unanswered", waits.len()));
        }
        for (to, id) in waits {
            self.directs[id as usize].expect = Expect::Offline(Mail::Unanswered);
            self.clients[to].held -= 1;
        }
        let away = self.rng.millis(AWAY_MS);
        let waiting = self.stage != Stage::Closing;
        let client = &mut self.clients[i];
        client.phase = Phase::Offline;
        client.next_action = now + away;
        client.deadline = (waiting && !client.server_offline).then_some(now + WAIT_LIMIT);
        Ok(())
    }

    /// The server closed client `i`'s connection (or reset it).
    fn on_closed(&mut self, i: usize, how: String) -> io::Result<()> {
        let now = Instant::now();
        match self.clients[i].phase {
            Phase::HalfClosed => self.end_session(i, true, now),
            Phase::LoggingOut if self.clients[i].goodbye => self.end_session(i, true, now),
            _ => {
                self.stats.unexpected_closes += 1;
                let last = String::from_utf8_lossy(&self.clients[i].partial).into_owned();
                self.fail(i, format!("server {how} (partial line {last:?})"))
            }
        }
    }

    // ----- reading ------------------------------------------------------

    fn read(&mut self, i: usize) -> io::Result<()> {
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.read_into(i, &mut scratch);
        self.scratch = scratch;
        result
    }

    fn read_into(&mut self, i: usize, scratch: &mut [u8]) -> io::Result<()> {
        loop {
            let Some(stream) = self.clients[i].stream.as_mut() else {
                return Ok(());
            };
            match stream.read(scratch) {
                Ok(0) => return self.on_closed(i, "closed the connection".into()),
                Ok(n) => self.on_bytes(i, &scratch[..n])?,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.on_closed(i, format!("read failed: {e}")),
            }
        }
    }

    /// Splits `data` into lines, joined to what was left from before; a
    /// leftover may be a prompt.
    fn on_bytes(&mut self, i: usize, mut data: &[u8]) -> io::Result<()> {
        while let Some(end) = find_newline(data) {
            let mut line = std::mem::take(&mut self.clients[i].partial);
            line.extend_from_slice(&data[..end]);
            data = &data[end + 1..];
            self.on_line(i, &line)?;
            if self.clients[i].stream.is_none() {
                return Ok(());
            }
        }
        if data.is_empty() {
            return Ok(());
        }
        self.clients[i].partial.extend_from_slice(data);
        if self.clients[i].partial.len() > MAX_SERVER_LINE {
            self.violation(i, "a line longer than 8 KiB".into());
            return self.fail(i, "line too long".into());
        }
        let client = &mut self.clients[i];
        let partial = client.partial.as_slice();
        let (reply, next, abort_at) = match client.phase {
            Phase::UserPrompt if partial == protocol::USERNAME_PROMPT.as_bytes() => {
                (&self.names[i], Phase::PassPrompt, Abort::AtUsername)
            }
            Phase::PassPrompt if partial == protocol::PASSWORD_PROMPT.as_bytes() => {
                (&self.passwords[i], Phase::Welcome, Abort::AtPassword)
            }
            _ => return Ok(()),
        };
        client.partial.clear();
        if client.abort == Some(abort_at) {
            return self.abort_login(i);
        }
        client.out.extend_from_slice(reply.as_bytes());
        client.out.push(b'\n');
        client.phase = next;
        self.mark_dirty(i);
        Ok(())
    }

    /// Abandons a login at a prompt, so the server never logged it in.
    fn abort_login(&mut self, i: usize) -> io::Result<()> {
        let reset = self.rng.chance(50);
        self.hang_up(i, reset)?;
        self.stats.login_aborts += 1;
        let away = self.rng.millis(AWAY_MS);
        let client = &mut self.clients[i];
        client.mailbox = std::mem::take(&mut client.due);
        for &id in &client.mailbox {
            self.directs[id as usize].expect = Expect::Offline(Mail::Stored);
        }
        client.phase = Phase::Offline;
        client.deadline = None;
        client.next_action = Instant::now() + away;
        Ok(())
    }

    fn on_line(&mut self, i: usize, line: &[u8]) -> io::Result<()> {
        let Ok(line) = std::str::from_utf8(line) else {
            self.violation(i, format!("invalid UTF-8 from the server: {line:?}"));
            return Ok(());
        };
        match self.clients[i].phase {
            Phase::Welcome if line == protocol::WELCOME => {
                let now = Instant::now();
                let gap = self.rng.millis(GAP_MS);
                let session = self.rng.millis(SESSION_MS);
                self.stats.logins += 1;
                let client = &mut self.clients[i];
                client.phase = Phase::Online;
                client.server_offline = false;
                client.deadline = None;
                client.next_action = now + gap;
                client.leave_at = now + session;
                Ok(())
            }
            Phase::UserPrompt | Phase::PassPrompt | Phase::Welcome => {
                self.violation(i, format!("login answered {line:?}"));
                self.fail(i, "login refused".into())
            }
            Phase::Online | Phase::Quiescing(_) | Phase::LoggingOut | Phase::HalfClosed => {
                self.on_session_line(i, line)
            }
            Phase::Offline | Phase::Failed => Ok(()),
        }
    }

    fn user(&self, name: &str) -> Option<usize> {
        let number: usize = name.strip_prefix("user")?.parse().ok()?;
        let i = number.checked_sub(1)?;
        (self.names.get(i)? == name).then_some(i)
    }

    /// Handles one line received by logged-in client `i`.
    fn on_session_line(&mut self, i: usize, line: &str) -> io::Result<()> {
        if let Some((from, text)) = line.split_once(": ") {
            if let Some(from) = self.user(from) {
                self.on_message(i, from, text);
                return Ok(());
            }
        }
        if let Some(who) = line.strip_suffix(" logged in") {
            if self.user(who).is_some() {
                self.stats.presence += 1;
                return Ok(());
            }
        }
        if let Some(who) = line.strip_suffix(" logged out").and_then(|w| self.user(w)) {
            self.stats.presence += 1;
            self.on_logged_out(i, who);
            return Ok(());
        }
        if let Some(to) = line.strip_suffix(OFFLINE_SUFFIX).and_then(|w| self.user(w)) {
            self.on_stored(i, to);
            return Ok(());
        }
        if let Some(name) = line.strip_suffix(" is blocked") {
            self.on_block_answer(i, name, Block::Blocking, Block::Blocked);
            return Ok(());
        }
        if let Some(name) = line.strip_suffix(" is unblocked") {
            self.on_block_answer(i, name, Block::Unblocking, Block::Unblocked);
            return Ok(());
        }
        match line {
            protocol::MESSAGE_BLOCKED => self.stats.refused += 1,
            protocol::BROADCAST_PARTIAL => self.stats.refused_broadcasts += 1,
            protocol::NO_OTHER_USERS | protocol::NO_OTHER_USERS_SINCE => self.stats.info += 1,
            protocol::CANNOT_BLOCK_SELF => return self.on_sync(i),
            protocol::GOODBYE if self.clients[i].phase == Phase::LoggingOut => {
                self.clients[i].goodbye = true;
            }
            protocol::LINE_TOO_LONG | protocol::INVALID_ENCODING | protocol::INVALID_COMMAND
                if self.clients[i].garbage_pending > 0 =>
            {
                self.clients[i].garbage_pending -= 1;
                self.stats.garbage_answered += 1;
            }
            _ if self.user(line).is_some() || protocol::HELP.contains(&line) => {
                self.stats.info += 1;
            }
            _ => self.violation(i, format!("unexpected line {line:?}")),
        }
        Ok(())
    }

    /// Client `i` received message `text` from `from`.
    fn on_message(&mut self, i: usize, from: usize, text: &str) {
        self.stats.received += 1;
        let Some((tag, id)) = parse_text(text) else {
            self.violation(i, format!("corrupt message from {from}: {text:?}"));
            return;
        };
        if tag == 'd' {
            self.on_direct(i, from, id);
        } else {
            self.on_broadcast(i, from, id);
        }
    }

    fn on_direct(&mut self, i: usize, from: usize, id: u32) {
        let Some(record) = self.directs.get_mut(id as usize) else {
            self.violation(i, format!("unknown message d{id:x}"));
            return;
        };
        if record.from as usize != from || record.to as usize != i {
            let (f, t) = (record.from, record.to);
            self.violation(i, format!("message d{id:x} of {f} to {t} came from {from}"));
            return;
        }
        record.got += 1;
        if record.got > 1 {
            self.stats.duplicates += 1;
            self.violation(i, format!("message d{id:x} received again"));
            return;
        }
        match record.expect {
            Expect::Must => {
                self.stats.received_tracked += 1;
                self.outstanding -= 1;
            }
            Expect::Maybe => {}
            Expect::MustNot => self.violation(i, format!("d{id:x} arrived though blocked")),
            Expect::Offline(Mail::Due) => {
                record.expect = Expect::Offline(Mail::Delivered);
                self.stats.offline_delivered += 1;
                let due = &mut self.clients[i].due;
                if let Some(at) = due.iter().position(|&d| d == id) {
                    due.swap_remove(at);
                }
            }
            Expect::Offline(mail) => {
                self.violation(i, format!("offline message d{id:x} arrived while {mail:?}"));
            }
        }
    }

    fn on_broadcast(&mut self, i: usize, from: usize, id: u32) {
        let Some(record) = self.broadcasts.get_mut(id as usize) else {
            self.violation(i, format!("unknown broadcast b{id:x}"));
            return;
        };
        if record.from as usize != from || from == i {
            let f = record.from;
            self.violation(i, format!("broadcast b{id:x} of {f} came from {from}"));
            return;
        }
        if bit(&record.got, i) {
            self.stats.duplicates += 1;
            self.violation(i, format!("broadcast b{id:x} received again"));
            return;
        }
        set_bit(&mut record.got, i, true);
        if bit(&record.must, i) {
            self.stats.received_tracked += 1;
            self.outstanding -= 1;
        } else if record.must_not.contains(&(i as u32)) {
            self.violation(i, format!("b{id:x} arrived though blocked"));
        }
    }

    /// Client `i` heard that `who` logged out.
    fn on_logged_out(&mut self, i: usize, who: usize) {
        let Some(w) = self.witnesses.iter().position(|&w| w == i) else {
            return;
        };
        if self.clients[who].enemy == i {
            // Who may have blocked this witness: it proves nothing.
            return;
        }
        self.seen_out[w][who] += 1;
        let seen = self.seen_out[w][who];
        let client = &mut self.clients[who];
        if seen > client.sessions_ended && client.phase != Phase::Failed {
            self.violation(i, format!("{who} logged out more often than it left"));
            return;
        }
        let leaving = matches!(
            client.phase,
            Phase::Offline | Phase::Quiescing(_) | Phase::LoggingOut | Phase::HalfClosed
        );
        if seen == client.sessions_ended && leaving && !client.server_offline {
            client.server_offline = true;
            if client.phase == Phase::Offline {
                client.deadline = None;
            }
        }
    }

    /// Client `i` heard that its message to `to` was stored.
    fn on_stored(&mut self, i: usize, to: usize) {
        match self.clients[i].waits.pop_front() {
            Some((expected, id)) if expected == to => {
                self.directs[id as usize].expect = Expect::Offline(Mail::Stored);
                self.stats.offline_stored += 1;
                let recipient = &mut self.clients[to];
                recipient.held -= 1;
                recipient.mailbox.push(id);
            }
            other => {
                if let Some(wait) = other {
                    self.clients[i].waits.push_front(wait);
                }
                self.violation(i, format!("unexpected offline answer for {to}"));
            }
        }
    }

    fn on_block_answer(&mut self, i: usize, name: &str, from: Block, to: Block) {
        let client = &mut self.clients[i];
        if client.block == from && self.names[client.enemy] == name {
            client.block = to;
        } else {
            self.violation(i, format!("unexpected answer about {name}"));
        }
    }

    /// The answer to `block <itself>`: everything sent before is handled.
    fn on_sync(&mut self, i: usize) -> io::Result<()> {
        let Phase::Quiescing(leave) = self.clients[i].phase else {
            self.violation(i, "unexpected sync answer".into());
            return Ok(());
        };
        let reset = match leave {
            Leave::Close => false,
            Leave::Reset => true,
            Leave::MidLine => {
                let to = self.rng.pick(&self.steady);
                let start = format!("message {} unfinished", self.names[to]);
                self.write_now(i, start.as_bytes());
                self.rng.chance(50)
            }
            Leave::Burst => {
                let to = self.rng.pick(&self.steady);
                let (_, text) = self.new_direct(i, to, Expect::Maybe);
                let broadcast = self.new_broadcast(i);
                let burst = format!(
                    "whoelse\nmessage {} {text}\nwhoelsesince 60\nbroadcast {broadcast}\n",
                    self.names[to],
                );
                self.write_now(i, burst.as_bytes());
                true
            }
            Leave::Logout | Leave::HalfClose => {
                self.violation(i, "sync answer while leaving cleanly".into());
                return Ok(());
            }
        };
        self.hang_up(i, reset)?;
        self.end_session(i, false, Instant::now())
    }

    /// Writes `bytes` at once, as far as the socket takes them.
    fn write_now(&mut self, i: usize, bytes: &[u8]) {
        if let Some(stream) = self.clients[i].stream.as_mut() {
            // Best effort: the connection is dropped right after.
            let _ = stream.write(bytes);
        }
    }

    // ----- sending ------------------------------------------------------

    fn queue(&mut self, i: usize, command: &str) {
        let client = &mut self.clients[i];
        client.out.extend_from_slice(command.as_bytes());
        client.out.push(b'\n');
        self.stats.commands += 1;
        self.mark_dirty(i);
    }

    /// Client `i`'s next command.
    fn act(&mut self, i: usize, now: Instant) {
        let gap = self.rng.millis(GAP_MS);
        self.clients[i].next_action = now + gap;
        if self.clients[i].garbage && self.rng.chance(30) {
            self.send_garbage(i);
            return;
        }
        match self.rng.below(100) {
            0..=44 => self.send_direct(i),
            45..=59 => self.send_offline(i),
            60..=64 => self.send_broadcast(i),
            65..=79 => self.queue(i, "whoelse"),
            80..=86 => {
                let seconds = self.rng.below(30);
                self.queue(i, &format!("whoelsesince {seconds}"));
            }
            87..=88 => self.queue(i, "help"),
            89..=93 => self.toggle_block(i),
            _ => self.send_direct(i),
        }
    }

    /// What a message from `from` to `to` queued now must do.
    fn expect(&self, from: usize, to: usize) -> Expect {
        let recipient = &self.clients[to];
        if recipient.enemy != from {
            return if recipient.steady {
                Expect::Must
            } else {
                Expect::Maybe
            };
        }
        match recipient.block {
            Block::Unblocked if recipient.steady => Expect::Must,
            Block::Blocked => Expect::MustNot,
            _ => Expect::Maybe,
        }
    }

    fn new_direct(&mut self, from: usize, to: usize, expect: Expect) -> (u32, String) {
        let id = self.directs.len() as u32;
        self.directs.push(Direct {
            from: from as u32,
            to: to as u32,
            expect,
            got: 0,
        });
        (id, message_text('d', id))
    }

    /// A message to a random steady user online.
    fn send_direct(&mut self, i: usize) {
        let to = self.rng.pick(&self.steady);
        if to == i || self.clients[to].phase != Phase::Online {
            self.queue(i, "whoelse");
            return;
        }
        let expect = self.expect(i, to);
        let (id, text) = self.new_direct(i, to, expect);
        match expect {
            Expect::Must => {
                self.outstanding += 1;
                if self.clients[to].enemy == i {
                    self.clients[to].guard_must.push(Ref::Direct(id));
                }
            }
            Expect::MustNot => self.clients[to].guard_must_not.push(Ref::Direct(id)),
            Expect::Maybe | Expect::Offline(_) => {}
        }
        let command = format!("message {} {text}", self.names[to]);
        self.queue(i, &command);
    }

    /// A message to a random churner the server has offline, if it picks
    /// one that does not block this client; else a message to a steady user.
    fn send_offline(&mut self, i: usize) {
        let to = self.rng.pick(&self.churners);
        let recipient = &self.clients[to];
        let unblocked = recipient.enemy != i || recipient.block == Block::Unblocked;
        if to == i || recipient.phase != Phase::Offline || !recipient.server_offline || !unblocked {
            self.send_direct(i);
            return;
        }
        let (id, text) = self.new_direct(i, to, Expect::Offline(Mail::Sent));
        self.clients[i].waits.push_back((to, id));
        self.clients[to].held += 1;
        let command = format!("message {} {text}", self.names[to]);
        self.queue(i, &command);
    }

    /// Records a broadcast from `i` that nobody is required to receive
    /// or refused; returns its text.
    fn new_broadcast(&mut self, i: usize) -> String {
        let id = self.broadcasts.len() as u32;
        let words = self.clients.len().div_ceil(64);
        self.broadcasts.push(Broadcast {
            from: i as u32,
            must: vec![0; words],
            must_not: Vec::new(),
            got: vec![0; words],
        });
        message_text('b', id)
    }

    fn send_broadcast(&mut self, i: usize) {
        let text = self.new_broadcast(i);
        let id = self.broadcasts.len() as u32 - 1;
        for to in 0..self.clients.len() {
            if to == i {
                continue;
            }
            let online = self.clients[to].phase == Phase::Online;
            let expect = self.expect(i, to);
            let record = &mut self.broadcasts[id as usize];
            match expect {
                Expect::Must if online => {
                    set_bit(&mut record.must, to, true);
                    self.outstanding += 1;
                    if self.clients[to].enemy == i {
                        self.clients[to].guard_must.push(Ref::Broadcast(id));
                    }
                }
                Expect::MustNot => {
                    record.must_not.push(to as u32);
                    self.clients[to].guard_must_not.push(Ref::Broadcast(id));
                }
                _ => {}
            }
        }
        self.queue(i, &format!("broadcast {text}"));
    }

    fn toggle_block(&mut self, i: usize) {
        let enemy = self.clients[i].enemy;
        let (verb, next) = match self.clients[i].block {
            Block::Unblocked => ("block", Block::Blocking),
            Block::Blocked => ("unblock", Block::Unblocking),
            Block::Blocking | Block::Unblocking => {
                self.queue(i, "whoelse");
                return;
            }
        };
        if next == Block::Blocking {
            // What the enemy sent that has not arrived may now be refused.
            for r in std::mem::take(&mut self.clients[i].guard_must) {
                self.release_must(i, r);
            }
        } else {
            // What the enemy sent that the server has not handled yet may
            // now be delivered.
            for r in std::mem::take(&mut self.clients[i].guard_must_not) {
                self.release_must_not(i, r);
            }
        }
        self.clients[i].block = next;
        let command = format!("{verb} {}", self.names[enemy]);
        self.queue(i, &command);
    }

    /// Message `r` to client `i` is no longer required, if not received.
    fn release_must(&mut self, i: usize, r: Ref) {
        match r {
            Ref::Direct(id) => {
                let record = &mut self.directs[id as usize];
                if record.expect == Expect::Must && record.got == 0 {
                    record.expect = Expect::Maybe;
                    self.outstanding -= 1;
                }
            }
            Ref::Broadcast(id) => {
                let record = &mut self.broadcasts[id as usize];
                if bit(&record.must, i) && !bit(&record.got, i) {
                    set_bit(&mut record.must, i, false);
                    self.outstanding -= 1;
                }
            }
        }
    }

    /// Message `r` to client `i` is no longer forbidden.
    fn release_must_not(&mut self, i: usize, r: Ref) {
        match r {
            Ref::Direct(id) => {
                let record = &mut self.directs[id as usize];
                if record.expect == Expect::MustNot {
                    record.expect = Expect::Maybe;
                }
            }
            Ref::Broadcast(id) => {
                let must_not = &mut self.broadcasts[id as usize].must_not;
                must_not.retain(|&to| to as usize != i);
            }
        }
    }

    fn send_garbage(&mut self, i: usize) {
        let line: Vec<u8> = match self.rng.below(4) {
            0 | 1 => {
                let excess = 1 + self.rng.below(MAX_GARBAGE_EXCESS) as usize;
                let mut line = vec![b'g'; self.config.max_line + excess];
                line.push(b'\n');
                line
            }
            2 => b"message user0001 \xff\xfe caf\xc3\n".to_vec(),
            _ => b"\x00\x01whoelse\x07\x1b[2J\n".to_vec(),
        };
        let client = &mut self.clients[i];
        client.out.extend_from_slice(&line);
        client.garbage_pending += 1;
        self.stats.garbage_sent += 1;
        self.stats.commands += 1;
        self.mark_dirty(i);
    }

    /// Starts client `i`'s departure in a random way.
    fn leave(&mut self, i: usize, now: Instant) -> io::Result<()> {
        if !self.clients[i].out.is_empty() {
            // Leave once what is queued is written.
            return Ok(());
        }
        let mut roll = self.rng.below(Leave::WEIGHTS.iter().sum());
        let mut way = 0;
        while roll >= Leave::WEIGHTS[way] {
            roll -= Leave::WEIGHTS[way];
            way += 1;
        }
        let leave = Leave::ALL[way];
        self.stats.leaves[way] += 1;
        self.clients[i].sessions_ended += 1;
        self.clients[i].deadline = Some(now + WAIT_LIMIT);
        match leave {
            Leave::Logout => {
                self.queue(i, "logout");
                self.clients[i].phase = Phase::LoggingOut;
            }
            Leave::HalfClose => {
                let shut = match self.clients[i].stream.as_ref() {
                    Some(stream) => stream.shutdown(Shutdown::Write),
                    None => Ok(()),
                };
                if let Err(e) = shut {
                    self.stats.unexpected_closes += 1;
                    return self.fail(i, format!("half-close failed: {e}"));
                }
                self.clients[i].phase = Phase::HalfClosed;
            }
            _ => {
                let sync = format!("block {}", self.names[i]);
                self.queue(i, &sync);
                self.clients[i].phase = Phase::Quiescing(leave);
            }
        }
        Ok(())
    }

    /// Sends `logout` at the end of the run.
    fn start_logout(&mut self, i: usize) {
        self.clients[i].sessions_ended += 1;
        self.clients[i].deadline = None;
        self.queue(i, "logout");
        self.clients[i].phase = Phase::LoggingOut;
    }

    // ----- writing ------------------------------------------------------

    fn mark_dirty(&mut self, i: usize) {
        let client = &mut self.clients[i];
        if !client.dirty {
            client.dirty = true;
            self.dirty.push(i);
        }
    }

    /// Writes client `i`'s output until done or `WouldBlock`, keeping its
    /// `WRITABLE` interest in step.
    fn flush(&mut self, i: usize) -> io::Result<()> {
        let client = &mut self.clients[i];
        client.dirty = false;
        let Some(stream) = client.stream.as_mut() else {
            return Ok(());
        };
        while client.out_pos < client.out.len() {
            match stream.write(&client.out[client.out_pos..]) {
                Ok(0) => return self.on_closed(i, "took no bytes".into()),
                Ok(n) => client.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.on_closed(i, format!("write failed: {e}")),
            }
        }
        if client.out_pos == client.out.len() {
            client.out.clear();
            client.out_pos = 0;
        }
        let want = client.out_pos < client.out.len();
        if want != client.writable {
            let interest = if want {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            self.poll
                .registry()
                .reregister(stream, Token(i), interest)?;
            client.writable = want;
        }
        Ok(())
    }

    // ----- the report ---------------------------------------------------

    fn report(&self) -> SoakReport {
        let failed: Vec<bool> = self
            .clients
            .iter()
            .map(|c| c.phase == Phase::Failed)
            .collect();
        let (mut tracked, mut lost, mut lost_to_failed) = (0, 0, 0);
        let (mut messages, mut offline_messages) = (0, 0);
        for record in &self.directs {
            match record.expect {
                Expect::Offline(_) => offline_messages += 1,
                Expect::Must => {
                    messages += 1;
                    tracked += 1;
                    if record.got == 0 {
                        if failed[record.to as usize] {
                            lost_to_failed += 1;
                        } else {
                            lost += 1;
                        }
                    }
                }
                Expect::MustNot | Expect::Maybe => messages += 1,
            }
        }
        for record in &self.broadcasts {
            for (to, &is_failed) in failed.iter().enumerate() {
                if bit(&record.must, to) {
                    tracked += 1;
                    if !bit(&record.got, to) {
                        if is_failed {
                            lost_to_failed += 1;
                        } else {
                            lost += 1;
                        }
                    }
                }
            }
        }
        let s = &self.stats;
        SoakReport {
            duration: Duration::ZERO,
            elapsed: self.started.elapsed(),
            clients: self.clients.len(),
            churners: self.churners.len(),
            garbage_senders: self.count(|c| c.garbage),
            commands: s.commands,
            messages,
            offline_messages,
            broadcasts: self.broadcasts.len() as u64,
            received: s.received,
            tracked,
            tracked_received: s.received_tracked,
            lost,
            lost_to_failed,
            duplicates: s.duplicates,
            refused: s.refused,
            refused_broadcasts: s.refused_broadcasts,
            offline_stored: s.offline_stored,
            offline_delivered: s.offline_delivered,
            offline_lost: s.offline_lost,
            offline_dropped: s.offline_dropped,
            offline_unanswered: s.offline_unanswered,
            presence: s.presence,
            answers: s.info,
            garbage: (s.garbage_sent, s.garbage_answered),
            logins: s.logins,
            leaves: Leave::ALL
                .iter()
                .zip(s.leaves)
                .map(|(l, n)| (l.name(), n))
                .collect(),
            login_aborts: s.login_aborts,
            violations: s.violations,
            unexpected_closes: s.unexpected_closes,
            stuck: s.stuck,
            notices: s.notices.clone(),
            notice_count: s.notice_count,
            rss_peak: self.rss_peak,
            fds_peak: self.fds_peak,
            ..SoakReport::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_round_trip() {
        for id in [0, 1, 22, 23, 0xdead] {
            for tag in ['d', 'b'] {
                let text = message_text(tag, id);
                assert!(!text.ends_with(' '));
                assert_eq!(parse_text(&text), Some((tag, id)));
            }
        }
        assert_eq!(parse_text("d1 café  zzz"), None, "wrong tail");
        assert_eq!(parse_text("x1 café  zz"), None, "unknown tag");
        assert_eq!(parse_text("é1 café"), None);
    }

    #[test]
    fn bits() {
        let mut bits = vec![0u64; 2];
        set_bit(&mut bits, 70, true);
        assert!(bit(&bits, 70) && !bit(&bits, 6));
        set_bit(&mut bits, 70, false);
        assert!(!bit(&bits, 70));
    }

    #[test]
    fn remote_targets_and_bad_counts_are_refused() {
        let config = SoakConfig::new("10.0.0.1:9".parse().expect("address"), 1);
        assert!(config.validate().is_err());
        let mut config = SoakConfig::new("127.0.0.1:9".parse().expect("address"), 1);
        config.clients = MIN_CLIENTS - 1;
        assert!(config.validate().is_err());
    }
}
