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
//!
//! This module holds the configuration, the run's stages and its loop;
//! `client` a client's connection, login and leaving, and the lines it
//! reads; `traffic` the commands online clients send; `model` the record of
//! every message and what must become of it; `report` what the run found.

mod client;
mod model;
mod report;
mod traffic;

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confab::server::defaults;
use confab_testkit::procfs::{memory, open_descriptors};
use confab_testkit::Rng;
use mio::{Events, Poll, Token};

use self::client::{Block, Client, Phase};
use self::model::{Broadcast, Direct, Expect, Mail};
use super::accounts;
use super::report::mib;
use super::wire::{self, Broken, Dirty, Wire, SCRATCH_SIZE};

pub use report::SoakReport;

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
/// Notices kept verbatim in the report.
const MAX_NOTICES: usize = 20;

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
    dirty: Dirty,
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
        let mut rng = Rng::new(config.seed);
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
            let mut enemy = rng.below(n - 1);
            if enemy >= i {
                enemy += 1;
            }
            clients.push(Client {
                steady: is_steady,
                garbage,
                enemy,
                block: Block::Unblocked,
                phase: Phase::Offline,
                wire: Wire::default(),
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
            dirty: Dirty::default(),
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
                        && c.wire.pending() == 0
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

    /// One turn: write what is queued (as far as the sockets take it),
    /// poll for at most a tick, handle the events, then run the schedule.
    fn turn(&mut self) -> io::Result<()> {
        for i in self.dirty.take() {
            match self.clients[i].wire.flush(self.poll.registry(), Token(i))? {
                Ok(()) => {}
                Err(Broken::Closed) => self.on_closed(i, "took no bytes".into())?,
                Err(Broken::Failed(e)) => self.on_closed(i, format!("write failed: {e}"))?,
            }
        }
        wire::poll_retrying(&mut self.poll, &mut self.events, Some(TICK))?;
        let ready: Vec<(usize, bool, bool)> = self.events.iter().map(wire::readiness).collect();
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = ready
            .into_iter()
            .try_for_each(|(i, readable, writable)| -> io::Result<()> {
                if writable {
                    self.dirty.mark(i, &mut self.clients[i].wire);
                }
                if readable {
                    self.read(i, &mut scratch)?;
                }
                Ok(())
            });
        self.scratch = scratch;
        result?;
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
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remote_targets_and_bad_counts_are_refused() {
        let config = SoakConfig::new("10.0.0.1:9".parse().expect("address"), 1);
        assert!(config.validate().is_err());
        let mut config = SoakConfig::new("127.0.0.1:9".parse().expect("address"), 1);
        config.clients = MIN_CLIENTS - 1;
        assert!(config.validate().is_err());
    }
}
