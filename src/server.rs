//! The poll loop: one thread, one `mio::Poll`, every socket.
//!
//! Each iteration: wait for readiness or the next deadline; accept until
//! `WouldBlock`; read each readable connection into one shared scratch
//! buffer and feed every complete line to [`Chat`], staging the text of its
//! effects per recipient (a range of the domain's shared outbox, so a burst
//! of lines for one recipient becomes one range); fire due timers; then, at
//! the end, remove doomed connections (the one place that does, which also
//! tells the domain so it can announce the leaver) and write each
//! connection's staged and pending output once. `WRITABLE` interest is
//! registered only while output is pending.
//!
//! Durability: records of durable changes that the domain produced during
//! an iteration are committed to the [`Journal`] once, at the end of it
//! (one `write`, one `fdatasync`). Connections the domain held — they were
//! promised something the records describe — are flushed only after that
//! commit; every other connection is flushed before it, so online delivery
//! never waits for the disk. A failing commit is retried with back-off
//! and never stops the server (see [`commit`]); a compaction is encoded a
//! slice per iteration.
//!
//! Offline mail is written at the pace the client reads (see
//! [`crate::backlog`]): a slice of the mailbox per iteration, each line
//! reported to the domain once the socket took it.
//!
//! Fairness: a connection is read at most [`READ_BUDGET`] bytes per
//! iteration. One that still had data is remembered (edge-triggered
//! readiness will not fire again for it) and served in the next iteration,
//! after the others had their turn. A connection from an untrusted address
//! is also held to the command rate: once it is ahead, it is not read
//! until its next line is due (TCP back-pressure slows the client), and
//! what it had sent already waits in its stash.
//!
//! Admission: beyond `--max-clients` connections, or `--max-per-ip` from
//! one untrusted address (see [`admission`]), a new connection is told so
//! and closed.

use std::io::{self, Read};
use std::net::{Shutdown, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;
use slab::Slab;

mod admission;
mod commit;

use crate::backlog::Backlog;
use crate::chat::{Chat, ChatConfig, Effect, Outbox, Replayed, SessionId, WallClock};
use crate::conn::Conn;
use crate::credentials::Account;
use crate::deadlines::Deadlines;
use crate::journal::{CompactStep, Journal, JournalOptions, OnDamage};
use crate::protocol;
use crate::rate::Rate;
use crate::trust::Trust;
use admission::{Admission, TooMany};
use commit::Durability;

/// The listener's token; connections use their slab key, which is always
/// smaller.
const LISTENER: Token = Token(usize::MAX);
/// The token of the waker that [`ShutdownHandle`] uses.
const WAKER: Token = Token(usize::MAX - 1);
/// The token of the SIGINT/SIGTERM source, once [`Server::handle_signals`]
/// registered it.
const SIGNALS: Token = Token(usize::MAX - 2);
/// Size of the shared read buffer.
const SCRATCH_SIZE: usize = 64 * 1024;
/// Bytes read from one connection per loop iteration, so that a client
/// pipelining megabytes cannot starve the others.
pub const READ_BUDGET: usize = SCRATCH_SIZE;
/// Bytes read at a time from a connection held to the command rate: far
/// more than its rate lets it send in a second, and all it may hold
/// unhandled in its stash while it waits.
const RATED_READ: usize = 8 * 1024;
/// How long a connection being closed may take to accept its last output.
const LINGER: Duration = Duration::from_secs(2);
/// How long to wait before accepting again after running out of file
/// descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Poll events handled per wake-up.
const EVENTS_CAPACITY: usize = 1024;

/// Everything the server needs besides the accounts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Ban and idle durations.
    pub chat: ChatConfig,
    /// Longest accepted line in bytes, not counting `\n` and one `\r`.
    pub max_line: usize,
    /// Most unsent output bytes per connection before it is cut off.
    pub max_pending: usize,
    /// Most connections at once; one more is told the server is full.
    pub max_clients: usize,
    /// How long a shutdown may spend flushing `Server is shutting down`
    /// and other pending output before it closes what is left.
    pub shutdown_grace: Duration,
    /// Where mailboxes, block lists and bans are kept.
    pub storage: Storage,
    /// Networks whose clients skip the per-address limits.
    pub trust: Trust,
    /// Most connections at once from one untrusted address.
    pub max_per_ip: usize,
    /// The command rate of a connection from an untrusted address.
    pub rate: Rate,
}

impl Config {
    /// A server on `bind` with these durations and every other setting at
    /// its default (see [`defaults`]), keeping everything in memory.
    pub fn new(bind: SocketAddr, block_duration: Duration, timeout: Duration) -> Config {
        Config {
            bind,
            chat: ChatConfig::new(block_duration, timeout),
            max_line: defaults::MAX_LINE,
            max_pending: defaults::MAX_PENDING,
            max_clients: defaults::MAX_CLIENTS,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            storage: Storage::Ephemeral,
            trust: Trust::loopback(),
            max_per_ip: defaults::MAX_PER_IP,
            rate: Rate::new(defaults::RATE, defaults::BURST),
        }
    }
}

/// Where the durable state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In memory only: a restart forgets mailboxes, block lists and bans.
    Ephemeral,
    /// In a data directory (see [`crate::journal`]), replayed at start.
    Durable {
        /// The data directory; created if missing.
        dir: PathBuf,
        /// How the journal is written.
        options: JournalOptions,
        /// What the start does with damage other than a torn tail.
        on_damage: OnDamage,
    },
}

/// Defaults of the limits, shared by the command line and tests.
pub mod defaults {
    /// `--max-line`.
    pub const MAX_LINE: usize = 1024;
    /// `--max-pending`: 1 MiB.
    pub const MAX_PENDING: usize = 1 << 20;
    /// `--max-clients`.
    pub const MAX_CLIENTS: usize = 10_000;
    /// `--shutdown-grace`: 2 s.
    pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
    /// `--mailbox-max`.
    pub const MAILBOX_MAX: usize = 1000;
    /// `--store-max`: 128 MiB.
    pub const STORE_MAX: u64 = 128 << 20;
    /// `--login-timeout`: 60 s.
    pub const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
    /// `--max-failures-per-ip`.
    pub const MAX_FAILURES_PER_IP: u32 = 10;
    /// `--max-per-ip`.
    pub const MAX_PER_IP: usize = 16;
    /// `--rate`: lines a second.
    pub const RATE: u32 = 20;
    /// `--burst`.
    pub const BURST: u32 = 40;
    /// The largest `--max-line`: a journal record must stay far below
    /// what reading a journal accepts as one record.
    pub const MAX_LINE_LIMIT: usize = 1 << 20;
    /// `--compact-at`: 64 MiB.
    pub const COMPACT_AT: u64 = 64 << 20;
    /// `--data-dir`.
    pub const DATA_DIR: &str = "./confab-data";
}

/// How [`Server::materialize`] hands staged output to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Materialize {
    /// Copy it into the connection's output buffer (in the middle of an
    /// iteration, when the outbox has grown past [`STAGE_LIMIT`]).
    Copy,
    /// At the end of an iteration: write it straight from the outbox to a
    /// connection with nothing pending, copying only what the socket did
    /// not take. This is the connection's one write of the iteration.
    WriteThrough,
}

/// Timers of the loop itself (the domain's are in [`Chat`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LoopTimer {
    /// A closing connection did not take its last output in time.
    Linger { key: usize, serial: u64 },
    /// Try accepting again after descriptors ran out.
    AcceptRetry,
    /// Free the output buffers of connections with nothing pending.
    ReleaseBuffers,
    /// A connection that got ahead of its rate may be read again.
    Resume { key: usize, serial: u64 },
}

/// Outbox text held for coalescing before it is copied to the connections.
const STAGE_LIMIT: usize = 256 * 1024;
/// How often output buffers left empty are freed; see
/// [`Conn::release_idle_buffer`].
const RELEASE_INTERVAL: Duration = Duration::from_secs(1);

/// Stops a running [`Server`] from another thread: every connection is told
/// the server is shutting down and [`Server::run`] returns.
#[derive(Debug, Clone)]
pub struct ShutdownHandle {
    flag: Arc<AtomicBool>,
    waker: Arc<Waker>,
}

impl ShutdownHandle {
    /// Asks the server to shut down; returns at once.
    pub fn shutdown(&self) -> io::Result<()> {
        self.flag.store(true, Ordering::SeqCst);
        self.waker.wake()
    }
}

/// How many connections a running [`Server`] holds, for tests and
/// monitoring: a connection leak shows up here.
#[derive(Debug, Clone)]
pub struct ConnectionGauge(Arc<AtomicUsize>);

impl ConnectionGauge {
    /// Connections open at the end of the last loop iteration.
    pub fn get(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// The chat server: a bound listener and all connection state.
pub struct Server {
    poll: Poll,
    listener: TcpListener,
    config: Config,
    chat: Chat,
    conns: Slab<Conn>,
    scratch: Vec<u8>,
    join: Vec<u8>,
    /// Connections with output to write or a close to finish.
    dirty: Vec<usize>,
    /// Per slab key, the outbox range staged for that connection.
    staged: Vec<Range<usize>>,
    /// Keys with a staged range.
    staged_keys: Vec<usize>,
    /// Connections to remove at the end of this iteration.
    doomed: Vec<usize>,
    /// Connections that may still have input after using their budget.
    unread: Vec<usize>,
    /// Connections whose output waits for the next commit.
    held: Vec<usize>,
    /// Connections whose socket took all the offline mail queued for it:
    /// more is queued next iteration.
    backlogged: Vec<usize>,
    /// The data directory's journal, unless the server is ephemeral.
    durability: Option<Durability>,
    admission: Admission,
    timers: Deadlines<LoopTimer>,
    accept_paused: bool,
    /// A [`LoopTimer::ReleaseBuffers`] is armed.
    release_armed: bool,
    next_serial: u64,
    stop: Arc<AtomicBool>,
    waker: Arc<Waker>,
    signals: Option<Signals>,
    open: Arc<AtomicUsize>,
}

impl Server {
    /// Loads the accounts into the domain, opens the data directory (its
    /// lock, the replay of its journal, a compaction) unless the storage is
    /// ephemeral, and binds the listener. Errors say which of these failed.
    pub fn bind(config: Config, accounts: Vec<Account>) -> io::Result<Server> {
        let mut chat = Chat::new(accounts, config.chat);
        let journal = match &config.storage {
            Storage::Ephemeral => None,
            Storage::Durable {
                dir,
                options,
                on_damage,
            } => {
                let journal = open_journal(&mut chat, dir, *options, *on_damage).map_err(|e| {
                    io::Error::new(e.kind(), format!("data directory {}: {e}", dir.display()))
                })?;
                Some(journal)
            }
        };
        let bind = config.bind;
        let listen_error =
            |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {bind}: {e}"));
        let poll = Poll::new()?;
        let mut listener = TcpListener::bind(bind).map_err(listen_error)?;
        poll.registry()
            .register(&mut listener, LISTENER, Interest::READABLE)?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let durability = journal.map(|mut journal| {
            let waker = Arc::clone(&waker);
            journal.set_wake(Arc::new(move || {
                let _ = waker.wake();
            }));
            Durability::new(journal)
        });
        info!("listening on {}", listener.local_addr()?);
        Ok(Server {
            admission: Admission::new(config.trust.clone(), config.max_per_ip),
            poll,
            listener,
            chat,
            config,
            conns: Slab::new(),
            scratch: vec![0; SCRATCH_SIZE],
            join: Vec::new(),
            dirty: Vec::new(),
            staged: Vec::new(),
            staged_keys: Vec::new(),
            doomed: Vec::new(),
            unread: Vec::new(),
            held: Vec::new(),
            backlogged: Vec::new(),
            durability,
            timers: Deadlines::default(),
            accept_paused: false,
            release_armed: false,
            next_serial: 0,
            stop: Arc::new(AtomicBool::new(false)),
            waker,
            signals: None,
            open: Arc::new(AtomicUsize::new(0)),
        })
    }

    /// The address the listener is bound to (with the real port when 0 was
    /// asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// A handle that stops [`Server::run`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: Arc::clone(&self.stop),
            waker: Arc::clone(&self.waker),
        }
    }

    /// Makes SIGINT and SIGTERM shut the server down gracefully, as a
    /// [`ShutdownHandle`] does; a second signal during the shutdown ends it
    /// at once. The signals arrive through the same poll as the sockets.
    /// SIGXFSZ is ignored: a file-size limit then fails the write that
    /// passes it (`EFBIG`), which the journal survives like a full disk,
    /// instead of killing the process.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        // SAFETY: setting a signal's disposition to SIG_IGN runs no code.
        if unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
        let mut signals = Signals::new([SIGINT, SIGTERM])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.signals = Some(signals);
        Ok(())
    }

    /// Whether a signal arrived since the last call.
    fn signalled(&mut self) -> bool {
        self.signals
            .as_mut()
            .is_some_and(|signals| signals.pending().count() > 0)
    }

    /// A gauge of how many connections are open, readable from any thread
    /// while the server runs (updated once per loop iteration).
    pub fn connection_gauge(&self) -> ConnectionGauge {
        ConnectionGauge(Arc::clone(&self.open))
    }

    /// Serves until shut down through a [`ShutdownHandle`]; then tells every
    /// connection, flushes what it can within [`Config::shutdown_grace`],
    /// and returns.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        while !self.stop.load(Ordering::SeqCst) {
            self.wait(&mut events)?;
            let now = Instant::now();
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(now),
                    WAKER => {}
                    SIGNALS => {
                        if self.signalled() {
                            info!("signal received");
                            self.stop.store(true, Ordering::SeqCst);
                        }
                    }
                    // A hang-up or a socket error is read like input: the
                    // read reports it, and the connection is removed.
                    Token(key) => self.on_event(
                        key,
                        event.is_readable() || event.is_read_closed() || event.is_error(),
                        event.is_writable(),
                    ),
                }
            }
            self.read_unread(now);
            self.fire_timers(now);
            self.finish_iteration(now);
            self.open.store(self.conns.len(), Ordering::Relaxed);
        }
        let result = self.shut_down(&mut events);
        self.open.store(self.conns.len(), Ordering::Relaxed);
        result
    }

    /// Polls until readiness or the next deadline, retrying interruptions.
    fn wait(&mut self, events: &mut Events) -> io::Result<()> {
        let now = Instant::now();
        let retry = self.durability.as_ref().and_then(Durability::retry_at);
        let next = [self.chat.next_deadline(), self.timers.next(), retry]
            .into_iter()
            .flatten()
            .min();
        let compacting = self
            .durability
            .as_ref()
            .is_some_and(Durability::wants_slice);
        let timeout = if self.unread.is_empty() && self.backlogged.is_empty() && !compacting {
            // Round up so that the loop never wakes just before a deadline.
            next.map(|at| at.saturating_duration_since(now) + Duration::from_millis(1))
        } else {
            Some(Duration::ZERO)
        };
        loop {
            match self.poll.poll(events, timeout) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    fn accept(&mut self, now: Instant) {
        while !self.accept_paused {
            match self.listener.accept() {
                Ok((stream, peer)) => self.admit(stream, peer, now),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    warn!("accept: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.accept_paused = true;
                    self.timers
                        .arm(now + ACCEPT_BACKOFF, LoopTimer::AcceptRetry);
                }
                Err(e) => {
                    warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    fn admit(&mut self, mut stream: TcpStream, peer: SocketAddr, now: Instant) {
        // Best effort: a fresh socket's send buffer takes one line.
        let mut refuse = |line: &str| {
            let _ = io::Write::write_all(&mut stream, format!("{line}\n").as_bytes());
        };
        if self.conns.len() >= self.config.max_clients {
            debug!("{peer}: refused, server full");
            return refuse(protocol::SERVER_FULL);
        }
        let address = match self.admission.admit(peer.ip()) {
            Ok(address) => address,
            Err(TooMany) => {
                debug!("{peer}: refused, too many connections from its address");
                return refuse(protocol::TOO_MANY_CONNECTIONS);
            }
        };
        if let Err(e) = stream.set_nodelay(true) {
            debug!("{peer}: set_nodelay: {e}");
        }
        let entry = self.conns.vacant_entry();
        let key = entry.key();
        if let Err(e) = self
            .poll
            .registry()
            .register(&mut stream, Token(key), Interest::READABLE)
        {
            warn!("{peer}: register: {e}");
            self.admission.release(address);
            return;
        }
        debug!("{peer}: connected as #{key}");
        entry.insert(Conn::new(stream, self.next_serial, address));
        self.next_serial += 1;
        self.chat
            .connect(SessionId(key), peer.ip(), address.is_none(), now);
        self.apply_effects();
        // The client may have sent its username already; its edge came
        // before registration, so look now.
        self.read(key, now);
    }

    fn on_event(&mut self, key: usize, readable: bool, writable: bool) {
        let Some(conn) = self.conns.get(key) else {
            return;
        };
        if conn.doomed {
            return;
        }
        let waiting = conn.unread;
        if writable {
            self.mark_dirty(key);
        }
        // A connection waiting in `unread` is read there, within its budget.
        if readable && !waiting {
            self.read(key, Instant::now());
        }
    }

    /// Serves connections that used their read budget last iteration, and
    /// queues more offline mail for those whose socket took all of it.
    fn read_unread(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.unread) {
            if let Some(conn) = self.conns.get_mut(key) {
                conn.unread = false;
                self.read(key, now);
            }
        }
        for key in std::mem::take(&mut self.backlogged) {
            self.mark_dirty(key);
        }
    }

    /// Handles what `key` had stashed, then reads up to [`READ_BUDGET`]
    /// bytes from it and handles every complete line, as far as its rate
    /// allows.
    fn read(&mut self, key: usize, now: Instant) {
        self.handle_stash(key, now);
        let mut budget = READ_BUDGET;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.doomed || conn.closing || conn.paused() {
                return;
            }
            if budget == 0 {
                if !conn.unread {
                    conn.unread = true;
                    self.unread.push(key);
                }
                return;
            }
            let chunk = if conn.limited.is_some() {
                RATED_READ
            } else {
                SCRATCH_SIZE
            };
            let want = budget.min(chunk);
            match conn.stream.read(&mut self.scratch[..want]) {
                Ok(0) => {
                    // A half-close: the peer may still read, so what is
                    // pending goes out before the connection is removed.
                    debug!("#{key}: peer finished sending");
                    self.close_after_flush(key);
                    return;
                }
                Ok(n) => {
                    budget -= n;
                    let scratch = std::mem::take(&mut self.scratch);
                    self.consume(key, &scratch[..n], now);
                    self.scratch = scratch;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("#{key}: read: {e}");
                    self.doom(key);
                    return;
                }
            }
        }
    }

    /// Handles the input `key` read earlier but had to leave for later.
    fn handle_stash(&mut self, key: usize, now: Instant) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        let Some(limited) = conn.limited.as_deref_mut() else {
            return;
        };
        if limited.paused || limited.stash.is_empty() {
            return;
        }
        let stash = std::mem::take(&mut limited.stash);
        self.consume(key, &stash, now);
    }

    /// Feeds the lines of `data` (just read, or stashed) to the domain,
    /// one line per unit of the connection's rate; once it is ahead of its
    /// rate, the rest goes to its stash and it is paused until its next
    /// line is due.
    fn consume(&mut self, key: usize, data: &[u8], now: Instant) {
        let sid = SessionId(key);
        let rate = self.config.rate;
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.get_mut(key) else {
                return;
            };
            if conn.doomed || conn.closing {
                return;
            }
            let serial = conn.serial;
            if let Some(limited) = conn.limited.as_deref_mut() {
                if let Err(due) = limited.pace.ready(rate, now) {
                    if pos < data.len() {
                        limited.stash.extend_from_slice(&data[pos..]);
                        limited.paused = true;
                        self.timers.arm(due, LoopTimer::Resume { key, serial });
                    }
                    return;
                }
            }
            let Some(item) =
                conn.lines
                    .next_line(data, &mut pos, &mut self.join, self.config.max_line)
            else {
                return;
            };
            if let Some(limited) = conn.limited.as_deref_mut() {
                limited.pace.count(rate, now);
            }
            match item.and_then(protocol::decode_line) {
                Ok(None) => continue,
                Ok(Some(line)) => self.chat.line(sid, line, now),
                Err(error) => self.chat.line_error(sid, error, now),
            }
            self.apply_effects();
        }
    }

    fn fire_timers(&mut self, now: Instant) {
        self.chat.expire(now);
        self.apply_effects();
        while let Some((_, timer)) = self.timers.pop_due(now) {
            match timer {
                LoopTimer::Linger { key, serial } => {
                    if self.conns.get(key).is_some_and(|c| c.serial == serial) {
                        debug!("#{key}: did not take its last output in time");
                        self.doom(key);
                    }
                }
                LoopTimer::AcceptRetry => {
                    self.accept_paused = false;
                    self.accept(now);
                }
                LoopTimer::ReleaseBuffers => {
                    self.release_armed = false;
                    for (_, conn) in &mut self.conns {
                        conn.release_idle_buffer();
                    }
                    return_free_memory();
                }
                LoopTimer::Resume { key, serial } => {
                    let Some(conn) = self.conns.get_mut(key).filter(|c| c.serial == serial) else {
                        continue;
                    };
                    if let Some(limited) = conn.limited.as_deref_mut() {
                        limited.paused = false;
                    }
                    self.read(key, now);
                }
            }
        }
    }

    /// Takes the domain's effects: records go to the journal's next
    /// commit, held sessions are marked first (so that nothing of theirs is
    /// written early), closes are marked at once, sends are staged (see
    /// [`Server::stage`]), a backlog starts.
    fn apply_effects(&mut self) {
        let mut outbox = std::mem::take(self.chat.outbox());
        if let Some(durability) = &mut self.durability {
            if !outbox.records().is_empty() {
                durability.journal().stage(outbox.records());
            }
        }
        for sid in outbox.held() {
            if let Some(conn) = self.conns.get_mut(sid.0) {
                if !conn.held {
                    conn.held = true;
                    self.held.push(sid.0);
                }
            }
        }
        for effect in outbox.effects() {
            match effect {
                Effect::Send { to, text } => self.stage(to.0, text.clone(), &outbox),
                Effect::Close(sid) => self.close_after_flush(sid.0),
                Effect::Backlog(sid) => self.start_backlog(sid.0, &outbox),
            }
        }
        outbox.clear_effects();
        let over = outbox.text_len() > STAGE_LIMIT;
        *self.chat.outbox() = outbox;
        if over {
            self.materialize(Materialize::Copy);
        }
    }

    /// Remembers that `text` of the outbox goes to `key`, without copying
    /// it yet: when the next line for `key` directly follows it in the
    /// outbox (a burst of broadcasts does that), the two are copied as one.
    /// This keeps the per-delivery work in a small array instead of the
    /// connection, and turns many small copies into one large one.
    fn stage(&mut self, key: usize, text: Range<usize>, outbox: &Outbox) {
        if key >= self.staged.len() {
            self.staged.resize(key + 1, 0..0);
        }
        let staged = &mut self.staged[key];
        if staged.start == staged.end {
            *staged = text;
            self.staged_keys.push(key);
        } else if staged.end == text.start {
            staged.end = text.end;
        } else {
            let earlier = std::mem::replace(staged, text);
            self.deliver(key, outbox.text(earlier));
        }
    }

    /// From now on `key`'s output waits behind its offline mail: what was
    /// staged for it before (the welcome) goes first.
    fn start_backlog(&mut self, key: usize, outbox: &Outbox) {
        if let Some(staged) = self.staged.get_mut(key) {
            let before = std::mem::replace(staged, 0..0);
            self.deliver(key, outbox.text(before));
        }
        if let Some(conn) = self.conns.get_mut(key) {
            conn.backlog = Some(Box::default());
        }
        self.mark_dirty(key);
    }

    /// Hands every staged range to its connection (see [`Materialize`]),
    /// and forgets the outbox text.
    fn materialize(&mut self, how: Materialize) {
        let mut outbox = std::mem::take(self.chat.outbox());
        let keys = std::mem::take(&mut self.staged_keys);
        for &key in &keys {
            let range = std::mem::replace(&mut self.staged[key], 0..0);
            let bytes = outbox.text(range);
            let rest = match how {
                Materialize::Copy => bytes,
                Materialize::WriteThrough => self.write_through(key, bytes),
            };
            if !rest.is_empty() {
                self.deliver(key, rest);
            }
        }
        self.staged_keys = keys;
        self.staged_keys.clear();
        outbox.clear();
        *self.chat.outbox() = outbox;
    }

    /// Writes `bytes` from the shared outbox straight to a connection that
    /// has nothing pending and is not held for a commit, saving the copy
    /// into its buffer; returns what the socket did not take (all of it for
    /// a connection that cannot be written now, none for one that is gone).
    fn write_through<'b>(&mut self, key: usize, bytes: &'b [u8]) -> &'b [u8] {
        let Some(conn) = self.conns.get_mut(key) else {
            return &[];
        };
        if conn.doomed {
            return &[];
        }
        if conn.held || conn.has_output() || conn.backlog.is_some() || bytes.is_empty() {
            return bytes;
        }
        match conn.write_direct(bytes) {
            Ok(n) => &bytes[n..],
            Err(e) => {
                debug!("#{key}: write: {e}");
                self.doom(key);
                &[]
            }
        }
    }

    /// Queues bytes on a connection, cutting it off if that would put it
    /// more than `max_pending` bytes behind.
    fn deliver(&mut self, key: usize, bytes: &[u8]) {
        let max_pending = self.config.max_pending;
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.doomed || bytes.is_empty() {
            return;
        }
        if conn.pending() + bytes.len() > max_pending {
            // Make room by writing now (unless the output waits for the
            // commit); a reader this far behind that still cannot take it
            // is cut off.
            let failed = !conn.held && conn.flush().is_err();
            if failed || conn.pending() + bytes.len() > max_pending {
                debug!("#{key}: more than {max_pending} bytes pending, cutting off");
                conn.discard_output();
                self.doom(key);
                return;
            }
        }
        conn.queue(bytes);
        if !conn.dirty {
            conn.dirty = true;
            self.dirty.push(key);
        }
    }

    fn close_after_flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if !conn.closing {
            conn.closing = true;
            let serial = conn.serial;
            self.timers
                .arm(Instant::now() + LINGER, LoopTimer::Linger { key, serial });
        }
        self.mark_dirty(key);
    }

    fn mark_dirty(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.dirty {
                conn.dirty = true;
                self.dirty.push(key);
            }
        }
    }

    fn doom(&mut self, key: usize) {
        if let Some(conn) = self.conns.get_mut(key) {
            if !conn.doomed {
                conn.doomed = true;
                self.doomed.push(key);
            }
        }
    }

    /// Flushes every connection that does not wait for the commit, commits
    /// the iteration's records, then flushes the held connections; then
    /// takes a step of compaction. A failed commit keeps what it promises
    /// held until a retry succeeds (see [`commit`]).
    fn finish_iteration(&mut self, now: Instant) {
        loop {
            self.flush_unheld(now);
            let Some(durability) = &mut self.durability else {
                break;
            };
            if !durability.has_pending() && self.held.is_empty() {
                break;
            }
            if !durability.may_commit(now) || !durability.commit(&mut self.chat, now) {
                break;
            }
            for key in std::mem::take(&mut self.held) {
                if let Some(conn) = self.conns.get_mut(key) {
                    conn.held = false;
                }
                self.mark_dirty(key);
            }
        }
        if let Some(durability) = &mut self.durability {
            durability.compaction_step(&mut self.chat, now);
        }
    }

    /// Removes doomed connections and flushes dirty ones that are not held
    /// until neither is left: a removal announces the leaver to others
    /// (more output), and a failed write dooms a connection.
    fn flush_unheld(&mut self, now: Instant) {
        loop {
            while let Some(key) = self.doomed.pop() {
                self.remove(key, now);
            }
            self.materialize(Materialize::WriteThrough);
            let dirty = std::mem::take(&mut self.dirty);
            for &key in &dirty {
                self.flush(key);
            }
            self.dirty = dirty;
            self.dirty.clear();
            if self.doomed.is_empty() {
                return;
            }
        }
    }

    /// Writes a connection's output, closes it if it was closing and is
    /// done, and keeps its `WRITABLE` interest in step with its output.
    fn flush(&mut self, key: usize) {
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        conn.dirty = false;
        // A held connection is marked dirty again when it is released.
        if conn.doomed || conn.held {
            return;
        }
        let written = if conn.backlog.is_some() {
            self.flush_backlog(key)
        } else {
            conn.flush()
        };
        if let Err(e) = written {
            debug!("#{key}: write: {e}");
            self.doom(key);
            return;
        }
        let Some(conn) = self.conns.get_mut(key) else {
            return;
        };
        if conn.holds_idle_buffer() && !self.release_armed {
            self.release_armed = true;
            self.timers
                .arm(Instant::now() + RELEASE_INTERVAL, LoopTimer::ReleaseBuffers);
        }
        let pending = conn.has_output();
        if conn.closing && !pending {
            let _ = conn.stream.shutdown(Shutdown::Write);
            self.doom(key);
            return;
        }
        if pending != conn.writable_interest {
            let interest = if pending {
                Interest::READABLE | Interest::WRITABLE
            } else {
                Interest::READABLE
            };
            match self
                .poll
                .registry()
                .reregister(&mut conn.stream, Token(key), interest)
            {
                Ok(()) => conn.writable_interest = pending,
                Err(e) => {
                    warn!("#{key}: reregister: {e}");
                    self.doom(key);
                }
            }
        }
    }

    /// Writes a connection's offline mail: queues more of it if little is
    /// left ahead of the socket, writes, tells the domain which lines the
    /// socket took whole (they leave the mailbox), and once all are out
    /// lets what waited behind them follow. A closing connection gives the
    /// rest up: it stays in the mailbox for the next login.
    fn flush_backlog(&mut self, key: usize) -> io::Result<()> {
        let sid = SessionId(key);
        let Some(conn) = self.conns.get_mut(key) else {
            return Ok(());
        };
        if conn.closing {
            conn.end_backlog();
            return conn.flush();
        }
        if let Some((out, backlog)) = conn.backlog_mut() {
            if Backlog::wants_more(out) {
                for line in self.chat.backlog(sid, backlog.queued()) {
                    if backlog.queue(out, line) {
                        break;
                    }
                }
            }
        }
        conn.flush()?;
        let Some((out, backlog)) = conn.backlog_mut() else {
            return Ok(());
        };
        let written = backlog.written(out);
        let all_queued = self.chat.backlog(sid, backlog.queued()).next().is_none();
        if backlog.queued() == 0 && all_queued {
            conn.end_backlog();
            conn.flush()?;
        } else if !conn.has_output() {
            self.backlogged.push(key);
        }
        if written > 0 {
            self.chat.backlog_written(sid, written);
            self.apply_effects();
        }
        Ok(())
    }

    /// The one place a connection is removed: the domain is told (it
    /// announces a logged-in user's departure) and the socket is closed.
    fn remove(&mut self, key: usize, now: Instant) {
        let Some(mut conn) = self.conns.try_remove(key) else {
            return;
        };
        if let Err(e) = self.poll.registry().deregister(&mut conn.stream) {
            debug!("#{key}: deregister: {e}");
        }
        debug!("#{key}: closed");
        self.admission.release(conn.address());
        drop(conn);
        // The key may be reused at once: nothing staged may reach the next
        // connection.
        if let Some(staged) = self.staged.get_mut(key) {
            *staged = 0..0;
        }
        self.chat.disconnect(SessionId(key), now);
        self.apply_effects();
        if self.accept_paused {
            self.accept_paused = false;
            self.accept(now);
        }
    }

    /// Tells everyone the server stops, flushes for at most
    /// [`Config::shutdown_grace`], and
    /// closes every connection.
    fn shut_down(&mut self, events: &mut Events) -> io::Result<()> {
        info!("shutting down");
        if let Err(e) = self.poll.registry().deregister(&mut self.listener) {
            debug!("deregister listener: {e}");
        }
        let now = Instant::now();
        self.chat.shutdown(now);
        self.apply_effects();
        self.finish_iteration(now);
        let deadline = now + self.config.shutdown_grace;
        while !self.conns.is_empty() || self.durability.as_ref().is_some_and(|d| d.has_pending()) {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            let retry = self.durability.as_ref().and_then(Durability::retry_at);
            let wake = retry.map_or(deadline, |at| at.min(deadline));
            match self
                .poll
                .poll(events, Some(wake.saturating_duration_since(now)))
            {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
            for event in events.iter() {
                if event.token() == SIGNALS && self.signalled() {
                    warn!("second signal: exiting without flushing");
                    self.conns.clear();
                    return Ok(());
                }
                if event.is_writable() {
                    self.mark_dirty(event.token().0);
                }
            }
            self.finish_iteration(Instant::now());
        }
        if let Some(durability) = &self.durability {
            if durability.has_pending() {
                warn!(
                    target: "confab::journal",
                    "stopping with changes the journal could not take; nothing acknowledged is \
                     among them"
                );
            }
        }
        self.conns.clear();
        Ok(())
    }
}

/// Opens the data directory, replays it into `chat`, compacts it (so that
/// every start begins with a fresh journal), and makes `chat` record its
/// changes from now on. After a recovery, the new snapshot must be
/// written, or the start fails: it is what replaces the damaged files.
fn open_journal(
    chat: &mut Chat,
    dir: &std::path::Path,
    options: JournalOptions,
    on_damage: OnDamage,
) -> io::Result<Journal> {
    let clock = WallClock::new(Instant::now(), SystemTime::now());
    let (mut removed, mut dropped) = (0u64, 0u64);
    let (mut journal, loaded) = Journal::open(dir, options, on_damage, |record| {
        match chat.apply_record(record, clock) {
            Replayed::Applied => {}
            Replayed::Removed => removed += 1,
            Replayed::Dropped => dropped += 1,
        }
    })?;
    info!("{}: loaded {} records", dir.display(), loaded.records);
    // Logged as the journal's, so that these show by default too.
    if removed > 0 {
        warn!(
            target: "confab::journal",
            "{}: kept {removed} records about accounts not in the credentials file (their \
             offline mail and blocks), for when they come back; --prune-removed drops them",
            dir.display()
        );
    }
    if dropped > 0 {
        warn!(
            target: "confab::journal",
            "{}: dropped {dropped} records about accounts not in the credentials file \
             (--prune-removed)",
            dir.display()
        );
    }
    for file in &loaded.recovered {
        let bytes: u64 = file.dropped.iter().map(|d| d.len).sum();
        let stretches = file.dropped.len();
        warn!(
            target: "confab::journal",
            "recovered {}: dropped {bytes} damaged bytes in {stretches} stretch{} (the first: \
             {} at offset {}); the file as it was is kept as {}",
            file.path.display(),
            if stretches == 1 { "" } else { "es" },
            file.dropped.first().map_or("", |d| d.reason),
            file.dropped.first().map_or(0, |d| d.offset),
            file.aside.display()
        );
    }
    if !loaded.recovered.is_empty() {
        journal
            .compact_until(chat.snapshot(clock), CompactStep::RemoveOld)
            .map_err(|e| io::Error::new(e.kind(), format!("writing the recovered state: {e}")))?;
        warn!(
            target: "confab::journal",
            "recovered {}: kept {} records in a new snapshot",
            dir.display(),
            loaded.records
        );
    } else {
        journal.compact(chat.snapshot(clock))?;
    }
    chat.record_changes(clock);
    Ok(journal)
}

/// `EMFILE` or `ENFILE`: the process or the system ran out of descriptors.
fn is_out_of_descriptors(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE | libc::ENFILE))
}

/// Gives memory freed by the allocator back to the system. A burst (a
/// login storm, a flood of broadcasts) grows output buffers all over the
/// heap; once they are freed, glibc keeps the pages unless asked, and the
/// server's resident size would stay at the burst's peak.
fn return_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only walks the allocator's own free lists.
    unsafe {
        libc::malloc_trim(0);
    }
}
