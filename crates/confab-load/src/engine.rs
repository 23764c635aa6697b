//! The client side of a load run: one `mio` poll loop on one thread owning
//! every client connection.
//!
//! Each client has a [`Role`] in the workload and a [`Phase`] in its
//! connection's life. Each turn of the loop lets the senders queue what
//! their window allows (the "pump"); writes every client with queued output
//! until `WouldBlock`, registering `WRITABLE` only while output remains;
//! polls; and reads every readable client until `WouldBlock` into one
//! shared scratch buffer, handling each complete line (prompts are
//! recognised as the leftover partial line).
//! Clients waiting for an answer (a login in progress, a churner, a
//! handshake) are read in the turn their readiness arrives, the others a
//! few hundred a turn (see [`Unread`]). Over TLS a client is written
//! whenever its session has output (its client hello at connect, its
//! handshake's last flight after a read), not only when it queued a line.
//!
//! Flow control keeps the server out of its slow-reader limit: a sender may
//! be at most `window` bytes of delivered lines ahead of its receiver (of
//! the slowest listener, for a broadcast; of the slowest online user's
//! presence lines, for logins; of its own acknowledgements, for offline
//! messages). In a storm nobody sends but the logins, which are bounded by
//! the logins in flight; what one user hears of the others' (at most a
//! line per client) stays far below that limit.

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use confab::credentials::Account;
use confab::net::stream::Stream;
use confab::net::web::WebStream;
use confab::protocol::{self, Reply};
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Poll, Token};

use super::ceiling::Progress;
use super::client::{is_presence, parse_stamp, Client, Phase, Role};
use super::report::{Latency, Report, ServerMemory};
use super::storm;
use super::tls::TlsClient;
use super::wire::{
    self, find_newline, set_linger_zero, Broken, Dirty, LineTooLong, Unread, MAX_LINE,
    READS_PER_TURN, SCRATCH_SIZE,
};
use super::{account_index, accounts, delivered_line, message_prefix, LoadConfig, Workload};

/// Most bytes a sender queues before writing.
const OUT_CAP: usize = 64 * 1024;
/// Most bytes one sender writes per loop turn, so that a fast socket does
/// not starve reading.
const PUMP_BUDGET: usize = 256 * 1024;
/// Most connections logging in at once during setup, so that the server's
/// listen backlog never overflows.
const MAX_CONNECTING: usize = 128;
/// Poll events handled per turn.
const EVENTS_CAPACITY: usize = 1024;
/// Notices kept verbatim in the report.
const MAX_NOTICES: usize = 8;
/// Characters of a notice kept.
const NOTICE_CHARS: usize = 120;
/// Largest latency the histogram tells apart (a minute, in nanoseconds);
/// longer ones are recorded as this.
const MAX_LATENCY_NS: u64 = 60_000_000_000;

/// Counters of the whole run.
struct Stats {
    bytes: u64,
    lines: u64,
    logins: u64,
    /// Churner sessions that ended after logging in (each a `logged out`
    /// for every online user).
    leaves: u64,
    disconnects: u64,
    notices: Vec<String>,
    notice_count: u64,
    latency: Histogram<u64>,
    /// The first and the last delivery (or, for logins, login; for a
    /// storm, the first connect and the last welcome or expected presence
    /// line).
    first_progress: Option<Instant>,
    last_progress: Option<Instant>,
    /// The last welcome of a storm.
    last_welcome: Option<Instant>,
}

impl Stats {
    fn progress(&mut self, now: Instant) {
        self.first_progress.get_or_insert(now);
        self.last_progress = Some(now);
    }
}

/// The load engine: every client of one run on one poll loop.
pub(super) struct Engine {
    workload: Workload,
    target: SocketAddr,
    /// The second node of a cluster run ([`LoadConfig::peer_target`]).
    peer_target: Option<SocketAddr>,
    /// The client side of every connection's TLS session, if the run
    /// speaks TLS.
    tls: Option<TlsClient>,
    /// Every connection is a WebSocket to the web port.
    web: bool,
    poll: Poll,
    events: Events,
    /// Tokens and readiness of the last poll: (client, readable, writable).
    ready: Vec<(usize, bool, bool)>,
    /// Readable clients that wait for no answer, not read yet.
    unread: Unread,
    clients: Vec<Client>,
    accounts: Vec<Account>,
    scratch: Vec<u8>,
    dirty: Dirty,
    /// Time zero of the stamps.
    epoch: Instant,
    /// Clients still to connect during setup, last first.
    to_connect: Vec<usize>,
    connecting: usize,
    /// Most clients connecting or logging in at once during setup (the
    /// logins in flight of a storm).
    max_connecting: usize,
    logged_in: usize,
    /// Clients connected during setup (all but churners).
    initial: usize,
    /// The measurement started: deliveries count.
    started: bool,
    /// Senders may start new messages.
    sending: bool,
    /// A sender stopped only for its per-turn budget: poll without waiting.
    busy: bool,
    /// Most messages in flight per receiver.
    window_lines: u64,
    /// Stop sending after this many messages in total.
    limit: Option<u64>,
    total_sent: u64,
    /// A lower bound of the deliveries every open listener (fanout) or
    /// watcher (logins) has received; recomputed when it holds a sender
    /// back.
    floor: u64,
    duration: Duration,
    drain: Duration,
    /// Where ceiling readers report the lines they received.
    progress: Option<Progress>,
    /// Per client, the send stamps of its offline messages not yet
    /// acknowledged, oldest first (acknowledgements carry no stamp, but
    /// come in order).
    unacked: Vec<VecDeque<u64>>,
    /// Per client of a storm, the clients whose logins were announced to
    /// it, in the order heard (empty for other workloads).
    heard: Vec<Vec<u32>>,
    /// Announcements heard by all clients of a storm, and how many a clean
    /// storm has: n(n − 1)/2.
    heard_total: u64,
    heard_expected: u64,
    /// What follows the user's name in a `logged in` line.
    logged_in_suffix: Vec<u8>,
    stats: Stats,
}

impl Engine {
    /// Creates the clients of `config`'s workload, to connect to `target`;
    /// ceiling readers report their progress in `progress`.
    pub(super) fn new(
        config: &LoadConfig,
        target: SocketAddr,
        progress: Option<Progress>,
    ) -> io::Result<Engine> {
        let now = Instant::now();
        let workload = config.workload;
        let n = config.clients;
        // Ceiling readers need no accounts but are named like users.
        let accounts = accounts(config.users_needed().max(n).max(1));
        let name = |i: usize| accounts[i].username.as_str();
        let size = config.message_size;
        let mut clients = Vec::new();
        match workload {
            Workload::Fanout | Workload::Ceiling => {
                // The ceiling's lines look like broadcasts of the first user.
                if workload == Workload::Fanout {
                    let mut broadcaster = Client::new(Role::Broadcaster, 0, now);
                    broadcaster.set_template("broadcast ", size);
                    clients.push(broadcaster);
                }
                let first = clients.len();
                for i in 0..n {
                    let mut listener = Client::new(Role::Listener, first + i, now);
                    listener.prefix = message_prefix(name(0));
                    clients.push(listener);
                }
            }
            Workload::Direct => {
                for pair in 0..n {
                    let (s, r) = (2 * pair, 2 * pair + 1);
                    let mut sender = Client::new(Role::Sender { to: r }, s, now);
                    sender.set_template(&format!("message {} ", name(r)), size);
                    let mut receiver = Client::new(Role::Listener, r, now);
                    receiver.prefix = message_prefix(name(s));
                    clients.push(sender);
                    clients.push(receiver);
                }
            }
            Workload::Pingpong => {
                for i in 0..n / 2 * 2 {
                    let partner = i ^ 1;
                    let mut client = Client::new(Role::Echo, i, now);
                    client.set_template(&format!("message {} ", name(partner)), size);
                    client.prefix = message_prefix(name(partner));
                    clients.push(client);
                }
            }
            Workload::Logins => {
                clients.extend((0..n).map(|i| Client::new(Role::Watcher, i, now)));
                let churners = n..n + config.churners;
                clients.extend(churners.map(|i| Client::new(Role::Churner, i, now)));
            }
            Workload::Offline => {
                for i in 0..n {
                    let recipient = name(n + i);
                    let mut sender = Client::new(Role::OfflineSender, i, now);
                    sender.set_template(&format!("message {recipient} "), size);
                    sender.prefix = Reply::Offline { user: recipient }.to_string().into_bytes();
                    clients.push(sender);
                }
            }
            Workload::Idle => clients.extend((0..n).map(|i| Client::new(Role::Idle, i, now))),
            Workload::Handshakes => {
                clients.extend((0..n).map(|i| Client::new(Role::Handshaker, i, now)));
            }
            Workload::Storm => clients.extend((0..n).map(|i| Client::new(Role::Arrival, i, now))),
        }
        let n_clients = clients.len();
        // Churners and handshakers connect while the run measures.
        let to_connect: Vec<usize> = (0..clients.len())
            .rev()
            .filter(|&i| !matches!(clients[i].role, Role::Churner | Role::Handshaker))
            .collect();
        let line_len = match workload {
            Workload::Logins => Reply::LoggedOut { user: name(0) }.to_string().len() + 1,
            Workload::Offline => Reply::Offline { user: name(0) }.to_string().len() + 1,
            _ => delivered_line(name(0), size).len(),
        };
        let latency = Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
            .map_err(|e| io::Error::other(format!("histogram: {e}")))?;
        let storm = workload == Workload::Storm;
        let (max_connecting, heard) = if storm {
            (config.in_flight, vec![Vec::new(); n_clients])
        } else {
            (MAX_CONNECTING, Vec::new())
        };
        let logged_in_suffix = Reply::LoggedIn { user: "" }.to_string().into_bytes();
        let tls = match &config.tls {
            Some(fingerprint) => Some(TlsClient::new(fingerprint, target)?),
            None => None,
        };
        Ok(Engine {
            workload,
            target,
            peer_target: config.peer_target,
            tls,
            web: config.web,
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_CAPACITY),
            ready: Vec::new(),
            unread: Unread::default(),
            initial: to_connect.len(),
            to_connect,
            clients,
            accounts,
            scratch: vec![0; SCRATCH_SIZE],
            dirty: Dirty::default(),
            epoch: now,
            connecting: 0,
            max_connecting,
            logged_in: 0,
            started: false,
            sending: false,
            busy: false,
            window_lines: (config.window / line_len).max(1) as u64,
            limit: config.messages,
            total_sent: 0,
            floor: 0,
            duration: config.duration,
            drain: config.drain,
            progress,
            unacked: vec![VecDeque::new(); n_clients],
            heard,
            heard_total: 0,
            heard_expected: if storm {
                (n_clients as u64) * (n_clients as u64).saturating_sub(1) / 2
            } else {
                0
            },
            logged_in_suffix,
            stats: Stats {
                bytes: 0,
                lines: 0,
                logins: 0,
                leaves: 0,
                disconnects: 0,
                notices: Vec::new(),
                notice_count: 0,
                latency,
                first_progress: None,
                last_progress: None,
                last_welcome: None,
            },
        })
    }

    // ----- phases ---------------------------------------------------------

    /// Connects and logs in every client but the churners, at most
    /// [`MAX_CONNECTING`] (in a storm, the logins in flight) at a time;
    /// fails if that is not done by `deadline` or a login is refused.
    pub(super) fn log_in_all(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            while self.connecting < self.max_connecting {
                let Some(i) = self.to_connect.pop() else {
                    break;
                };
                self.connect(i)?;
                self.connecting += 1;
            }
            if self.logged_in == self.initial {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} of {} clients logged in before the setup timeout",
                        self.logged_in, self.initial
                    ),
                ));
            }
            self.turn(Some(deadline - now))?;
        }
    }

    /// The storm: logs every client in, the logins in flight at a time,
    /// then reads until every announcement of those logins arrived or
    /// `deadline` passed (what is missing then is lost); returns when the
    /// first client connected. Fails like [`Engine::log_in_all`].
    pub(super) fn storm(&mut self, deadline: Instant) -> io::Result<Instant> {
        let start = Instant::now();
        self.stats.first_progress = Some(start);
        self.log_in_all(deadline)?;
        while self.heard_total < self.heard_expected {
            let now = Instant::now();
            if now >= deadline {
                break;
            }
            self.turn(Some(deadline - now))?;
        }
        Ok(start)
    }

    /// Reads until nothing arrived for `quiet` (the presence lines of the
    /// logins are through), or until `deadline`.
    pub(super) fn settle(&mut self, quiet: Duration, deadline: Instant) -> io::Result<()> {
        let mut seen = self.stats.bytes;
        let mut since = Instant::now();
        loop {
            let now = Instant::now();
            let until = (since + quiet).min(deadline);
            if now >= until {
                return Ok(());
            }
            self.turn(Some(until - now))?;
            if self.stats.bytes != seen {
                seen = self.stats.bytes;
                since = Instant::now();
            }
        }
    }

    /// Sends for the configured duration or message count; returns when
    /// sending started.
    pub(super) fn measure(&mut self) -> io::Result<Instant> {
        self.started = true;
        self.sending = true;
        let start = Instant::now();
        let end = start + self.duration;
        if self.workload == Workload::Pingpong {
            let now_ns = self.now_ns();
            for i in 0..self.clients.len() {
                if self.may_send() {
                    self.clients[i].queue_stamped(now_ns);
                    self.total_sent += 1;
                    self.dirty.mark(i, &mut self.clients[i].wire);
                }
            }
        }
        loop {
            let now = Instant::now();
            if now >= end || !self.may_send() {
                break;
            }
            self.turn(Some(end - now))?;
        }
        self.sending = false;
        Ok(start)
    }

    /// Waits, at most the configured drain time, for everything sent to
    /// arrive (and for churners to finish their cycle).
    pub(super) fn drain(&mut self) -> io::Result<()> {
        let end = Instant::now() + self.drain;
        while !self.drained() {
            let now = Instant::now();
            if now >= end {
                break;
            }
            self.turn(Some(end - now))?;
        }
        Ok(())
    }

    /// The report of a run whose sending started at `start`. For the
    /// ceiling, `written_lines` is what its writer wrote.
    pub(super) fn report(
        &self,
        start: Instant,
        written_lines: Option<u64>,
        server_memory: Option<ServerMemory>,
    ) -> Report {
        let received = |role: fn(Role) -> bool| -> u64 {
            let of_role = self.clients.iter().filter(|c| role(c.role));
            of_role.map(|c| c.received).sum()
        };
        let sent_by = |role: fn(Role) -> bool| -> u64 {
            let of_role = self.clients.iter().filter(|c| role(c.role));
            of_role.map(|c| c.sent).sum()
        };
        let listeners = self.count(|r| r == Role::Listener) as u64;
        let check = if self.workload == Workload::Storm {
            storm::check(&self.heard)
        } else {
            storm::StormCheck::default()
        };
        let (sent, expected, delivered) = match self.workload {
            Workload::Fanout => {
                let sent = sent_by(|r| r == Role::Broadcaster);
                (sent, sent * listeners, received(|r| r == Role::Listener))
            }
            Workload::Direct => {
                let sent = sent_by(|r| matches!(r, Role::Sender { .. }));
                (sent, sent, received(|r| r == Role::Listener))
            }
            Workload::Pingpong => {
                let sent = sent_by(|r| r == Role::Echo);
                (sent, sent, received(|r| r == Role::Echo))
            }
            Workload::Offline => {
                let sent = sent_by(|r| r == Role::OfflineSender);
                (sent, sent, received(|r| r == Role::OfflineSender))
            }
            Workload::Handshakes => {
                let sent = sent_by(|r| r == Role::Handshaker);
                (sent, sent, received(|r| r == Role::Handshaker))
            }
            Workload::Logins => {
                let watchers = self.count(|r| r == Role::Watcher) as u64;
                let events = self.stats.logins + self.stats.leaves;
                let sent = sent_by(|r| r == Role::Churner);
                (sent, watchers * events, received(|r| r == Role::Watcher))
            }
            Workload::Storm => (self.initial as u64, check.expected, check.delivered),
            Workload::Idle => (0, 0, 0),
            Workload::Ceiling => {
                let written = written_lines.unwrap_or(0);
                (written, written, received(|r| r == Role::Listener))
            }
        };
        // The ceiling's writer may start a moment before the engine does.
        let begin = self
            .stats
            .first_progress
            .map_or(start, |first| first.min(start));
        let elapsed = match self.stats.last_progress {
            Some(last) => last.saturating_duration_since(begin),
            None => self.duration,
        };
        let h = &self.stats.latency;
        let latency = (!h.is_empty()).then(|| Latency {
            samples: h.len(),
            p50: Duration::from_nanos(h.value_at_quantile(0.5)),
            p99: Duration::from_nanos(h.value_at_quantile(0.99)),
            p999: Duration::from_nanos(h.value_at_quantile(0.999)),
            max: Duration::from_nanos(h.max()),
        });
        Report {
            workload: self.workload,
            clients: self.initial,
            elapsed,
            sent,
            expected,
            delivered,
            lost: expected.saturating_sub(delivered),
            duplicated: check.duplicated,
            misordered: check.misordered,
            logins: self.stats.logins,
            logging_in: self
                .stats
                .last_welcome
                .map(|last| last.saturating_duration_since(begin)),
            bytes_received: self.stats.bytes,
            lines_received: self.stats.lines,
            disconnects: self.stats.disconnects,
            notices: self.stats.notices.clone(),
            notice_count: self.stats.notice_count,
            latency,
            server_memory,
        }
    }

    fn count(&self, role: fn(Role) -> bool) -> usize {
        self.clients.iter().filter(|c| role(c.role)).count()
    }

    /// Whether everything sent has arrived (and no churner is mid-cycle).
    fn drained(&self) -> bool {
        let open = |c: &&Client| c.phase != Phase::Closed;
        match self.workload {
            Workload::Fanout => {
                let sent = self.clients[0].sent;
                let listeners = self.clients.iter().filter(|c| c.role == Role::Listener);
                listeners.filter(open).all(|c| c.received >= sent)
            }
            Workload::Direct => self.clients.iter().all(|c| match c.role {
                Role::Sender { to } => {
                    let receiver = &self.clients[to];
                    receiver.phase == Phase::Closed || receiver.received >= c.sent
                }
                _ => true,
            }),
            Workload::Pingpong => {
                let sent: u64 = self.clients.iter().map(|c| c.sent).sum();
                let received: u64 = self.clients.iter().map(|c| c.received).sum();
                received >= sent
            }
            Workload::Offline => self
                .clients
                .iter()
                .filter(open)
                .all(|c| c.received >= c.sent),
            Workload::Logins => {
                let events = self.stats.logins + self.stats.leaves;
                self.clients.iter().filter(open).all(|c| match c.role {
                    Role::Churner => c.phase == Phase::Offline,
                    _ => c.received >= events,
                })
            }
            Workload::Handshakes => self
                .clients
                .iter()
                .filter(open)
                .all(|c| c.phase == Phase::Offline),
            Workload::Storm => self.heard_total >= self.heard_expected,
            Workload::Idle => true,
            Workload::Ceiling => self.clients.iter().all(|c| c.phase == Phase::Closed),
        }
    }

    // ----- the loop -------------------------------------------------------

    /// One turn: let the senders queue, write what is queued, poll (not
    /// longer than `timeout`), and read what is readable.
    fn turn(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.pump()?;
        for i in self.dirty.take() {
            self.flush(i)?;
        }
        let timeout = if self.busy || !self.unread.is_empty() {
            Some(Duration::ZERO)
        } else {
            timeout
        };
        wire::poll_retrying(&mut self.poll, &mut self.events, timeout)?;
        self.ready.clear();
        self.ready.extend(self.events.iter().map(wire::readiness));
        let mut ready = std::mem::take(&mut self.ready);
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.on_events(&ready, &mut scratch);
        self.scratch = scratch;
        ready.clear();
        self.ready = ready;
        result
    }

    /// Handles the readiness of one poll: clients waiting for an answer are
    /// read now, the others join the [`Unread`] queue; then reads up to
    /// [`READS_PER_TURN`] of it.
    fn on_events(&mut self, ready: &[(usize, bool, bool)], scratch: &mut [u8]) -> io::Result<()> {
        for &(i, readable, writable) in ready {
            let Some(client) = self.clients.get(i) else {
                continue;
            };
            let now = readable && client.awaits_answer();
            if readable && !now {
                self.unread.defer(i);
            }
            self.on_ready(i, now, writable, scratch)?;
        }
        for _ in 0..READS_PER_TURN {
            let Some(i) = self.unread.next() else {
                break;
            };
            self.read(i, scratch)?;
        }
        Ok(())
    }

    /// Handles one poll event of client `i`, reading into `scratch`.
    fn on_ready(
        &mut self,
        i: usize,
        readable: bool,
        writable: bool,
        scratch: &mut [u8],
    ) -> io::Result<()> {
        if self.clients[i].phase == Phase::Connecting {
            self.finish_connect(i)?;
        }
        if writable && self.clients[i].wire.has_output() {
            self.dirty.mark(i, &mut self.clients[i].wire);
        }
        if readable {
            self.read(i, scratch)?;
        }
        Ok(())
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    fn may_send(&self) -> bool {
        self.sending && self.limit.is_none_or(|limit| self.total_sent < limit)
    }

    /// Messages still allowed by the message limit.
    fn remaining(&self) -> u64 {
        self.limit
            .map_or(u64::MAX, |limit| limit.saturating_sub(self.total_sent))
    }

    fn name(&self, i: usize) -> &str {
        &self.accounts[self.clients[i].account].username
    }

    /// The server client `i` connects to: with a peer target, the direct
    /// pairs alternate between the two nodes, pair 0 sending from the
    /// target to the peer, pair 1 from the peer to the target, and so on,
    /// so that every message crosses from one node to the other.
    fn target_of(&self, i: usize) -> SocketAddr {
        match self.peer_target {
            Some(peer) if (i ^ (i >> 1)) & 1 == 1 => peer,
            _ => self.target,
        }
    }

    // ----- connections ----------------------------------------------------

    /// Starts client `i`'s connection (a TLS session, if the run speaks
    /// TLS, whose client hello goes at the next flush).
    fn connect(&mut self, i: usize) -> io::Result<()> {
        let target = self.target_of(i);
        let socket = TcpStream::connect(target)
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {target}: {e}")))?;
        let port = socket.local_addr()?.port();
        let stream = match &self.tls {
            Some(tls) => tls.open(socket)?,
            None => socket.into(),
        };
        let stream = match self.web {
            true => Stream::from(WebStream::client(stream, &target.to_string())),
            false => stream,
        };
        // Ceiling readers speak no protocol: `WRITABLE` tells when the
        // connect completed.
        let ceiling = self.workload == Workload::Ceiling;
        let client = &mut self.clients[i];
        client
            .wire
            .open(stream, self.poll.registry(), Token(i), ceiling)?;
        if client.wire.has_output() {
            self.dirty.mark(i, &mut client.wire);
        }
        client.port = port;
        client.phase = if ceiling {
            Phase::Connecting
        } else {
            Phase::UserPrompt
        };
        client.since = Instant::now();
        Ok(())
    }

    /// A ceiling reader's connect completed (or failed).
    fn finish_connect(&mut self, i: usize) -> io::Result<()> {
        let client = &mut self.clients[i];
        let Some(stream) = client.wire.stream() else {
            return Ok(());
        };
        let status = match stream.take_error() {
            Ok(None) => stream.peer_addr().map(|_| ()),
            Ok(Some(e)) | Err(e) => Err(e),
        };
        match status {
            Ok(()) => {
                client
                    .wire
                    .settle_interest(self.poll.registry(), Token(i))?;
                client.phase = Phase::Online;
                self.logged_in += 1;
                self.connecting -= 1;
                Ok(())
            }
            Err(e) if e.kind() == io::ErrorKind::NotConnected => Ok(()),
            Err(e) => self.lost(i, format!("connect: {e}")),
        }
    }

    /// Deregisters and closes client `i`'s socket.
    fn close(&mut self, i: usize, phase: Phase) -> io::Result<()> {
        let client = &mut self.clients[i];
        client.phase = phase;
        client.wire.close(self.poll.registry())?;
        Ok(())
    }

    /// Client `i` lost its connection for `reason`: fatal during setup, a
    /// counted disconnect afterwards.
    fn lost(&mut self, i: usize, reason: String) -> io::Result<()> {
        let mut what = format!("{}: {reason}", self.name(i));
        if !self.started {
            if let Some(refused) = self.tls.as_ref().and_then(TlsClient::refused) {
                what.push_str(&format!(" ({refused})"));
            }
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, what));
        }
        let client = &self.clients[i];
        if client.role == Role::Churner && matches!(client.phase, Phase::Online | Phase::LoggingOut)
        {
            self.stats.leaves += 1;
        }
        self.stats.disconnects += 1;
        self.notice(what);
        self.close(i, Phase::Closed)
    }

    fn notice(&mut self, text: String) {
        self.stats.notice_count += 1;
        if self.stats.notices.len() < MAX_NOTICES {
            self.stats
                .notices
                .push(text.chars().take(NOTICE_CHARS).collect());
        }
    }

    // ----- reading --------------------------------------------------------

    /// Reads client `i` into `scratch` until `WouldBlock`, handling every
    /// complete line.
    fn read(&mut self, i: usize, scratch: &mut [u8]) -> io::Result<()> {
        loop {
            let received = match self.clients[i].wire.read(scratch) {
                Ok(Some(received)) => received,
                // A TLS session may have answered what it read (its
                // handshake's last flight) and the socket not taken it all.
                Ok(None) if self.clients[i].wire.has_output() => return self.flush(i),
                Ok(None) => return Ok(()),
                Err(Broken::Closed) => return self.on_end(i),
                Err(Broken::Failed(e)) => return self.lost(i, format!("read: {e}")),
            };
            self.stats.bytes += received.new as u64;
            self.on_bytes(i, received.text)?;
            if let Some(progress) = &self.progress {
                let client = &self.clients[i];
                progress[usize::from(client.port)].store(client.received, Ordering::Relaxed);
            }
            // Answer now (a prompt, a welcome, an echo) rather than after
            // the rest of this poll's events: the reply's latency is part
            // of what is measured.
            if self.clients[i].wire.has_output() {
                self.flush(i)?;
            }
        }
    }

    /// Handles every line of `text` (which starts with the partial line
    /// left from before) and keeps what follows the last one; that may be
    /// a login prompt.
    fn on_bytes(&mut self, i: usize, mut text: &[u8]) -> io::Result<()> {
        let now = Instant::now();
        let now_ns = self.now_ns();
        while let Some(end) = find_newline(text) {
            self.on_line(i, &text[..end], now, now_ns)?;
            text = &text[end + 1..];
        }
        self.keep_partial(i, text)
    }

    /// Keeps the start of an unfinished line; answers a complete prompt.
    fn keep_partial(&mut self, i: usize, rest: &[u8]) -> io::Result<()> {
        let client = &mut self.clients[i];
        let partial = client.wire.keep_partial(rest).map_err(|LineTooLong| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a line from the server is longer than {MAX_LINE} bytes"),
            )
        })?;
        let account = &self.accounts[client.account];
        let reply = match client.phase {
            Phase::UserPrompt
                if client.role == Role::Handshaker
                    && partial == protocol::USERNAME_PROMPT.as_bytes() =>
            {
                return self.handshake_done(i);
            }
            Phase::UserPrompt if partial == protocol::USERNAME_PROMPT.as_bytes() => {
                if let Some(stream) = client.wire.stream() {
                    stream.set_nodelay(true)?;
                }
                client.phase = Phase::PassPrompt;
                &account.username
            }
            Phase::PassPrompt if partial == protocol::PASSWORD_PROMPT.as_bytes() => {
                client.phase = Phase::Welcome;
                &account.password
            }
            _ => return Ok(()),
        };
        client.wire.answer_prompt(reply);
        self.dirty.mark(i, &mut self.clients[i].wire);
        Ok(())
    }

    /// Handles one complete line (without its `\n`) received by client `i`.
    fn on_line(&mut self, i: usize, line: &[u8], now: Instant, now_ns: u64) -> io::Result<()> {
        self.stats.lines += 1;
        match self.clients[i].phase {
            Phase::UserPrompt | Phase::PassPrompt | Phase::Welcome => {
                self.on_login_line(i, line, now)
            }
            Phase::Online => {
                self.on_online_line(i, line, now, now_ns);
                Ok(())
            }
            // The goodbye, and presence lines that raced with the logout.
            Phase::LoggingOut => Ok(()),
            Phase::Offline | Phase::Connecting | Phase::Closed => Ok(()),
        }
    }

    fn on_login_line(&mut self, i: usize, line: &[u8], now: Instant) -> io::Result<()> {
        let client = &mut self.clients[i];
        if client.phase != Phase::Welcome || line != protocol::WELCOME.as_bytes() {
            let line = String::from_utf8_lossy(line).into_owned();
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{}: login refused: {line} (does the server know the generated accounts?)",
                    self.accounts[client.account].username
                ),
            ));
        }
        client.phase = Phase::Online;
        let took = now.saturating_duration_since(client.since);
        let took_ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        if client.role != Role::Churner {
            if client.role == Role::Arrival {
                self.stats.logins += 1;
                self.stats.last_welcome = Some(now);
                self.stats.progress(now);
                self.stats.latency.saturating_record(took_ns);
            }
            self.logged_in += 1;
            self.connecting -= 1;
            return Ok(());
        }
        client.wire.queue(b"logout\n");
        client.phase = Phase::LoggingOut;
        self.stats.logins += 1;
        self.stats.progress(now);
        self.stats.latency.saturating_record(took_ns);
        self.dirty.mark(i, &mut self.clients[i].wire);
        Ok(())
    }

    fn on_online_line(&mut self, i: usize, line: &[u8], now: Instant, now_ns: u64) {
        let client = &self.clients[i];
        if client.role == Role::Arrival {
            return self.on_announcement(i, line, now);
        }
        if client.role == Role::OfflineSender && line == client.prefix.as_slice() {
            return self.acknowledged(i, now, now_ns);
        }
        let stamp = line
            .strip_prefix(client.prefix.as_slice())
            .filter(|_| !client.prefix.is_empty())
            .and_then(parse_stamp);
        if let Some(sent_ns) = stamp {
            if self.started || self.workload == Workload::Ceiling {
                self.deliver(i, sent_ns, now, now_ns);
            } else {
                self.notice(format!("message before the run started: {}", show(line)));
            }
        } else if is_presence(line) {
            if self.started && client.role == Role::Watcher {
                self.clients[i].received += 1;
            }
        } else {
            let text = format!("{}: {}", self.name(i), show(line));
            self.notice(text);
        }
    }

    fn deliver(&mut self, i: usize, sent_ns: u64, now: Instant, now_ns: u64) {
        self.stats.progress(now);
        if self.workload != Workload::Ceiling {
            self.stats
                .latency
                .saturating_record(now_ns.saturating_sub(sent_ns));
        }
        let may_send = self.may_send();
        let client = &mut self.clients[i];
        client.received += 1;
        if client.role == Role::Echo && may_send {
            client.queue_stamped(now_ns);
            self.total_sent += 1;
            self.dirty.mark(i, &mut self.clients[i].wire);
        }
    }

    /// Storm client `i` heard `line`: a login announced is recorded (the
    /// last expected one ends the storm's figure), anything else is a
    /// notice.
    fn on_announcement(&mut self, i: usize, line: &[u8], now: Instant) {
        let user = line
            .strip_suffix(self.logged_in_suffix.as_slice())
            .and_then(account_index)
            .filter(|&user| user < self.clients.len())
            .and_then(|user| u32::try_from(user).ok());
        match user {
            Some(user) => {
                self.heard[i].push(user);
                self.heard_total += 1;
                if self.heard_total <= self.heard_expected {
                    self.stats.progress(now);
                }
            }
            None => {
                let text = format!("{}: {}", self.name(i), show(line));
                self.notice(text);
            }
        }
    }

    /// Offline sender `i` got the acknowledgement of its oldest message.
    fn acknowledged(&mut self, i: usize, now: Instant, now_ns: u64) {
        match self.unacked[i].pop_front() {
            Some(sent_ns) => {
                self.stats.progress(now);
                self.stats
                    .latency
                    .saturating_record(now_ns.saturating_sub(sent_ns));
                self.clients[i].received += 1;
            }
            None => self.notice(format!("{}: an acknowledgement of nothing", self.name(i))),
        }
    }

    /// The server closed client `i`'s connection.
    fn on_end(&mut self, i: usize) -> io::Result<()> {
        let client = &self.clients[i];
        match (client.role, client.phase) {
            (Role::Churner, Phase::LoggingOut) => {
                self.stats.leaves += 1;
                self.close(i, Phase::Offline)
            }
            (Role::Listener, Phase::Online) if self.workload == Workload::Ceiling => {
                self.close(i, Phase::Closed)
            }
            _ => {
                let partial = client.wire.partial();
                let last = if partial.is_empty() {
                    String::new()
                } else {
                    format!(" after {}", show(partial))
                };
                self.lost(i, format!("server closed the connection{last}"))
            }
        }
    }

    // ----- sending --------------------------------------------------------

    /// Lets every sender queue what its window allows, and starts churner
    /// cycles.
    fn pump(&mut self) -> io::Result<()> {
        self.busy = false;
        if !self.may_send() {
            return Ok(());
        }
        match self.workload {
            Workload::Fanout => self.pump_sender(0),
            Workload::Direct => {
                for i in (0..self.clients.len()).step_by(2) {
                    self.pump_sender(i)?;
                }
                Ok(())
            }
            Workload::Offline => {
                for i in 0..self.clients.len() {
                    self.pump_sender(i)?;
                }
                Ok(())
            }
            Workload::Logins => self.start_churners(),
            Workload::Handshakes => self.start_handshakes(),
            Workload::Pingpong | Workload::Idle | Workload::Ceiling | Workload::Storm => Ok(()),
        }
    }

    /// Deliveries that every receiver of sender `i` has taken, as far as
    /// the window is concerned.
    fn acked(&mut self, i: usize) -> u64 {
        let sent = self.clients[i].sent;
        match self.clients[i].role {
            Role::Sender { to } => self.clients[to].received,
            Role::OfflineSender => self.clients[i].received,
            _ => {
                if sent.saturating_sub(self.floor) >= self.window_lines {
                    self.floor = self.slowest(Role::Listener, sent);
                }
                self.floor
            }
        }
    }

    /// The fewest deliveries any open client of `role` has received, or
    /// `none` if there is no such client.
    fn slowest(&self, role: Role, none: u64) -> u64 {
        let open = self
            .clients
            .iter()
            .filter(|c| c.role == role && c.phase != Phase::Closed);
        open.map(|c| c.received).min().unwrap_or(none)
    }

    /// Queues and writes commands of sender `i` while its window, the
    /// message limit and this turn's budget allow.
    fn pump_sender(&mut self, i: usize) -> io::Result<()> {
        let mut budget = PUMP_BUDGET;
        loop {
            if !self.clients[i].wire.is_open() {
                return Ok(());
            }
            let acked = self.acked(i);
            let remaining = self.remaining();
            let now_ns = self.now_ns();
            let client = &mut self.clients[i];
            let in_flight = client.sent.saturating_sub(acked);
            let mut room = self.window_lines.saturating_sub(in_flight).min(remaining);
            if room == 0 {
                return Ok(());
            }
            let len = client.template.len();
            while room > 0 && client.wire.pending() + len <= OUT_CAP && budget >= len {
                client.queue_stamped(now_ns);
                if client.role == Role::OfflineSender {
                    self.unacked[i].push_back(now_ns);
                }
                self.total_sent += 1;
                room -= 1;
                budget -= len;
            }
            self.flush(i)?;
            if self.clients[i].wire.has_output() {
                // Its WRITABLE edge comes when the socket drains.
                return Ok(());
            }
            if budget < len {
                self.busy = true;
                return Ok(());
            }
        }
    }

    /// Starts a new cycle for every offline churner, while the slowest
    /// online user is less than a window of presence lines behind.
    fn start_churners(&mut self) -> io::Result<()> {
        for i in 0..self.clients.len() {
            if self.clients[i].role != Role::Churner || self.clients[i].phase != Phase::Offline {
                continue;
            }
            let events = self.stats.logins + self.stats.leaves;
            if events.saturating_sub(self.floor) >= self.window_lines {
                self.floor = self.slowest(Role::Watcher, events);
                if events.saturating_sub(self.floor) >= self.window_lines {
                    return Ok(());
                }
            }
            if self.remaining() == 0 {
                return Ok(());
            }
            self.connect(i)?;
            self.clients[i].sent += 1;
            self.total_sent += 1;
        }
        Ok(())
    }

    /// Connects every handshaker that is between connections, while the
    /// message limit allows.
    fn start_handshakes(&mut self) -> io::Result<()> {
        for i in 0..self.clients.len() {
            if self.remaining() == 0 {
                return Ok(());
            }
            if self.clients[i].phase != Phase::Offline {
                continue;
            }
            self.connect(i)?;
            self.clients[i].sent += 1;
            self.total_sent += 1;
        }
        Ok(())
    }

    /// Handshaker `i` got its prompt: the connection is made; it closes
    /// with a reset, as a client that has what it came for, so that its
    /// port is free at once (closed the usual way, a run's connections
    /// would hold the ephemeral ports in TIME_WAIT for a minute, and the
    /// runs after it would find few).
    fn handshake_done(&mut self, i: usize) -> io::Result<()> {
        let now = Instant::now();
        let client = &mut self.clients[i];
        if let Some(socket) = client.wire.stream() {
            set_linger_zero(socket)?;
        }
        client.received += 1;
        let took = now.saturating_duration_since(client.since);
        let took_ns = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.stats.latency.saturating_record(took_ns);
        self.stats.progress(now);
        self.close(i, Phase::Offline)
    }

    // ----- writing --------------------------------------------------------

    /// Writes client `i`'s output until done or `WouldBlock`, and keeps its
    /// `WRITABLE` interest in step.
    fn flush(&mut self, i: usize) -> io::Result<()> {
        match self.clients[i].wire.flush(self.poll.registry(), Token(i))? {
            Ok(()) => Ok(()),
            Err(Broken::Closed) => self.lost(i, "write: wrote nothing".into()),
            Err(Broken::Failed(e)) => self.lost(i, format!("write: {e}")),
        }
    }
}

/// A received line for a notice.
fn show(line: &[u8]) -> String {
    String::from_utf8_lossy(line).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn with_a_peer_target_every_pair_crosses_and_the_directions_alternate() {
        let target: SocketAddr = "127.0.0.1:1".parse().expect("address");
        let peer: SocketAddr = "127.0.0.1:2".parse().expect("address");
        let mut config = LoadConfig::new(Workload::Direct, target);
        config.clients = 4;
        let engine = Engine::new(&config, target, None).expect("an engine");
        assert!((0..8).all(|i| engine.target_of(i) == target));

        config.peer_target = Some(peer);
        let engine = Engine::new(&config, target, None).expect("an engine");
        let mut senders = Vec::new();
        for pair in 0..4 {
            let (s, r) = (2 * pair, 2 * pair + 1);
            assert_eq!(engine.clients[s].role, Role::Sender { to: r });
            assert_ne!(engine.target_of(s), engine.target_of(r), "pair {pair}");
            senders.push(engine.target_of(s));
        }
        assert_eq!(senders, [target, peer, target, peer]);
    }
}
