//! The comparison driver's loop: every client of one run on one `mio`
//! poll, speaking protocol `P`.
//!
//! Each turn, as in the load engine, lets the senders queue what their
//! window allows (the "pump"); writes every client with queued output;
//! polls; and reads every readable client until `WouldBlock` into one
//! shared scratch buffer, cutting it into the protocol's frames (an
//! unfinished frame waits in the wire for the next read).
//!
//! Each client's requests draw replies in order, so a client only counts
//! them: its connection is ready when the replies to its greeting and
//! subscription have come (`awaited` reaches 0); a Redis sender's
//! publications are acknowledged one reply each.

use std::io;
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use confab_testkit::procfs::memory;
use hdrhistogram::Histogram;
use mio::net::TcpStream;
use mio::{Events, Poll, Token};

use super::protocol::{BadFrame, Frame, Protocol, Publication};
use super::report::PeerReport;
use super::{PeerConfig, PeerWorkload};
use crate::client::{parse_stamp, write_stamp};
use crate::report::{Latency, ServerMemory};
use crate::wire::{
    self, Broken, Dirty, LineTooLong, Unread, Wire, MAX_LINE, READS_PER_TURN, SCRATCH_SIZE,
};
use crate::STAMP_LEN;

/// Most bytes a sender queues before writing.
const OUT_CAP: usize = 64 * 1024;
/// Most bytes one sender writes per loop turn, so that a fast socket does
/// not starve reading.
const PUMP_BUDGET: usize = 256 * 1024;
/// Most connections being set up at once (but in a storm), so that the
/// server's listen backlog never overflows.
const MAX_CONNECTING: usize = 128;
/// Poll events handled per turn.
const EVENTS_CAPACITY: usize = 1024;
/// Notices kept verbatim in the report.
const MAX_NOTICES: usize = 8;
/// Characters of a notice kept.
const NOTICE_CHARS: usize = 120;
/// Largest latency the histogram tells apart (a minute, in nanoseconds).
const MAX_LATENCY_NS: u64 = 60_000_000_000;
/// The subject of every fanout subscriber.
const FANOUT: &[u8] = b"fanout";
/// The subject of every storm client.
const PRESENCE: &[u8] = b"presence";

/// What a client does in its workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Role {
    /// Pipelines publications to every subscriber of [`FANOUT`].
    Publisher,
    /// Receives stamped messages (fanout subscriber, direct receiver).
    Listener,
    /// Pipelines publications to client `to`'s subject (direct).
    Sender { to: usize },
    /// Answers every message with one to its partner (pingpong).
    Echo,
    /// Subscribes to [`PRESENCE`], then announces itself once (storm).
    Presence,
    /// Holds a subscription and does nothing (idle).
    Idle,
}

/// Where a client's connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not connected yet.
    Offline,
    /// Connected; waiting for the replies to its greeting and
    /// subscription.
    Hello,
    /// Published its presence; waiting for the server to acknowledge it
    /// (storm).
    Announcing,
    /// Ready: subscribed, and (storm) announced.
    Online,
    /// Closed for good.
    Closed,
}

/// One client connection and its counters.
struct Client {
    role: Role,
    phase: Phase,
    wire: Wire,
    /// The subject it subscribes to, if any.
    subject: Option<Vec<u8>>,
    /// What it publishes; empty if nothing.
    publication: Publication,
    /// Replies still due before its current phase is over.
    awaited: u32,
    /// Messages it published.
    sent: u64,
    /// Messages it received (storm: those it had to receive).
    received: u64,
    /// Replies to its publications (Redis).
    acked: u64,
    /// Storm: how many presences were published before its subscription
    /// was confirmed; it must receive every later one.
    joined_at: Option<u64>,
}

impl Client {
    fn new(role: Role, subject: Option<Vec<u8>>) -> Client {
        Client {
            role,
            phase: Phase::Offline,
            wire: Wire::default(),
            subject,
            publication: Publication::default(),
            awaited: 0,
            sent: 0,
            received: 0,
            acked: 0,
            joined_at: None,
        }
    }

    /// Queues its publication with `stamp` at the start of the payload and
    /// `seq` (storm) after it.
    fn queue_stamped(&mut self, stamp: u64, seq: Option<u64>) {
        let at = self.publication.payload_at;
        let bytes = &mut self.publication.bytes;
        write_stamp(&mut bytes[at..at + STAMP_LEN], stamp);
        if let Some(seq) = seq {
            write_stamp(&mut bytes[at + STAMP_LEN..at + 2 * STAMP_LEN], seq);
        }
        self.wire.queue(&self.publication.bytes);
        self.sent += 1;
    }
}

/// Counters of the whole run.
struct Stats {
    bytes: u64,
    /// Storm: presences received from clients that published before the
    /// receiver's subscription was confirmed, which it may or may not get.
    extra: u64,
    disconnects: u64,
    notices: Vec<String>,
    notice_count: u64,
    latency: Histogram<u64>,
    first_progress: Option<Instant>,
    last_progress: Option<Instant>,
}

impl Stats {
    fn progress(&mut self, now: Instant) {
        self.first_progress.get_or_insert(now);
        self.last_progress = Some(now);
    }
}

/// Runs `config` with protocol `P`: sets up, drives the workload, drains
/// and reports.
pub(super) fn run<P: Protocol>(config: &PeerConfig) -> io::Result<PeerReport> {
    let before = config.server_pid.map(memory).transpose()?;
    let mut driver = Driver::<P>::new(config)?;
    let setup_deadline = Instant::now() + config.setup_timeout;
    let start = match config.workload {
        PeerWorkload::Storm => {
            // The storm is the setup: every delivery during it counts.
            driver.started = true;
            let start = Instant::now();
            driver.connect_all(setup_deadline)?;
            driver.drain()?;
            start
        }
        PeerWorkload::Idle => {
            driver.connect_all(setup_deadline)?;
            let start = Instant::now();
            driver.hold(config.duration)?;
            start
        }
        _ => {
            driver.connect_all(setup_deadline)?;
            let start = driver.measure()?;
            driver.drain()?;
            start
        }
    };
    let server_memory = match (config.server_pid, before) {
        (Some(pid), Some(before)) => Some(ServerMemory {
            before,
            after: memory(pid)?,
        }),
        _ => None,
    };
    Ok(driver.report(config, start, server_memory))
}

/// The driver: every client of one run on one poll loop.
struct Driver<P> {
    workload: PeerWorkload,
    target: SocketAddr,
    poll: Poll,
    events: Events,
    /// Tokens and readiness of the last poll: (client, readable, writable).
    ready: Vec<(usize, bool, bool)>,
    /// Readable clients that wait for no answer, not read yet.
    unread: Unread,
    clients: Vec<Client>,
    scratch: Vec<u8>,
    /// Where greetings, pongs and syncs are built before they are queued.
    request: Vec<u8>,
    dirty: Dirty,
    /// Time zero of the stamps.
    epoch: Instant,
    /// Clients still to connect, last first.
    to_connect: Vec<usize>,
    /// Clients connected and not yet ready.
    connecting: usize,
    max_connecting: usize,
    /// Clients whose setup is over: ready, or lost during a storm.
    settled: usize,
    /// Deliveries count (and storm clients announce).
    started: bool,
    /// Senders may start new messages.
    sending: bool,
    /// A sender stopped only for its per-turn budget: poll without waiting.
    busy: bool,
    /// Most messages in flight per receiver.
    window_lines: u64,
    /// A lower bound of the deliveries every open fanout subscriber has
    /// received; recomputed when it holds the publisher back.
    floor: u64,
    /// Presences published so far (storm): the next one's sequence number.
    announced: u64,
    duration: Duration,
    drain: Duration,
    stats: Stats,
    protocol: PhantomData<P>,
}

impl<P: Protocol> Driver<P> {
    fn new(config: &PeerConfig) -> io::Result<Driver<P>> {
        let n = config.clients;
        let size = config.message_size;
        let inbox = |i: usize| format!("inbox.{i:04}").into_bytes();
        let mut clients = Vec::new();
        let mut subject_len = FANOUT.len();
        match config.workload {
            PeerWorkload::Fanout => {
                let mut publisher = Client::new(Role::Publisher, None);
                publisher.publication = P::publication(FANOUT, size);
                clients.push(publisher);
                clients.extend((0..n).map(|_| Client::new(Role::Listener, Some(FANOUT.to_vec()))));
            }
            PeerWorkload::Direct => {
                subject_len = inbox(0).len();
                for pair in 0..n {
                    let r = 2 * pair + 1;
                    let mut sender = Client::new(Role::Sender { to: r }, None);
                    sender.publication = P::publication(&inbox(r), size);
                    clients.push(sender);
                    clients.push(Client::new(Role::Listener, Some(inbox(r))));
                }
            }
            PeerWorkload::Pingpong => {
                subject_len = inbox(0).len();
                for i in 0..n / 2 * 2 {
                    let mut client = Client::new(Role::Echo, Some(inbox(i)));
                    client.publication = P::publication(&inbox(i ^ 1), size);
                    clients.push(client);
                }
            }
            PeerWorkload::Storm => {
                for _ in 0..n {
                    let mut client = Client::new(Role::Presence, Some(PRESENCE.to_vec()));
                    client.publication = P::publication(PRESENCE, 2 * STAMP_LEN);
                    clients.push(client);
                }
            }
            PeerWorkload::Idle => {
                clients.extend((0..n).map(|i| Client::new(Role::Idle, Some(inbox(i)))));
            }
        }
        let delivery_len = P::delivery_len(&vec![b'x'; subject_len], size);
        let latency = Histogram::new_with_bounds(1, MAX_LATENCY_NS, 3)
            .map_err(|e| io::Error::other(format!("histogram: {e}")))?;
        Ok(Driver {
            workload: config.workload,
            target: config.target,
            poll: Poll::new()?,
            events: Events::with_capacity(EVENTS_CAPACITY),
            ready: Vec::new(),
            unread: Unread::default(),
            to_connect: (0..clients.len()).rev().collect(),
            clients,
            scratch: vec![0; SCRATCH_SIZE],
            request: Vec::new(),
            dirty: Dirty::default(),
            epoch: Instant::now(),
            connecting: 0,
            max_connecting: match config.workload {
                PeerWorkload::Storm => config.in_flight,
                _ => MAX_CONNECTING,
            },
            settled: 0,
            started: false,
            sending: false,
            busy: false,
            window_lines: (config.window / delivery_len).max(1) as u64,
            floor: 0,
            announced: 0,
            duration: config.duration,
            drain: config.drain,
            stats: Stats {
                bytes: 0,
                extra: 0,
                disconnects: 0,
                notices: Vec::new(),
                notice_count: 0,
                latency,
                first_progress: None,
                last_progress: None,
            },
            protocol: PhantomData,
        })
    }

    // ----- phases ---------------------------------------------------------

    /// Connects every client, at most `max_connecting` being set up at a
    /// time, until each is ready (storm: announced); fails if that is not
    /// done by `deadline`.
    fn connect_all(&mut self, deadline: Instant) -> io::Result<()> {
        loop {
            while self.connecting < self.max_connecting {
                let Some(i) = self.to_connect.pop() else {
                    break;
                };
                self.connect(i)?;
            }
            if self.settled == self.clients.len() {
                return Ok(());
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "{} of {} clients ready before the setup timeout",
                        self.settled,
                        self.clients.len()
                    ),
                ));
            }
            self.turn(Some(deadline - now))?;
        }
    }

    /// Sends for the configured duration; returns when sending started.
    fn measure(&mut self) -> io::Result<Instant> {
        self.started = true;
        self.sending = true;
        let start = Instant::now();
        let end = start + self.duration;
        if self.workload == PeerWorkload::Pingpong {
            let now_ns = self.now_ns();
            for i in 0..self.clients.len() {
                self.clients[i].queue_stamped(now_ns, None);
                self.dirty.mark(i, &mut self.clients[i].wire);
            }
        }
        loop {
            let now = Instant::now();
            if now >= end {
                break;
            }
            self.turn(Some(end - now))?;
        }
        self.sending = false;
        Ok(start)
    }

    /// Waits, at most the configured drain time, for everything sent to
    /// arrive.
    fn drain(&mut self) -> io::Result<()> {
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

    /// Keeps the connections for `duration`, answering the server's pings.
    fn hold(&mut self, duration: Duration) -> io::Result<()> {
        let end = Instant::now() + duration;
        loop {
            let now = Instant::now();
            if now >= end {
                return Ok(());
            }
            self.turn(Some(end - now))?;
        }
    }

    /// Whether everything sent has arrived.
    fn drained(&self) -> bool {
        let open = |c: &&Client| c.phase != Phase::Closed;
        match self.workload {
            PeerWorkload::Fanout => {
                let sent = self.clients[0].sent;
                let listeners = self.clients.iter().filter(|c| c.role == Role::Listener);
                listeners.filter(open).all(|c| c.received >= sent)
            }
            PeerWorkload::Direct => self.clients.iter().all(|c| match c.role {
                Role::Sender { to } => {
                    let receiver = &self.clients[to];
                    receiver.phase == Phase::Closed || receiver.received >= c.sent
                }
                _ => true,
            }),
            PeerWorkload::Pingpong => {
                let sent: u64 = self.clients.iter().map(|c| c.sent).sum();
                let received: u64 = self.clients.iter().map(|c| c.received).sum();
                received >= sent
            }
            PeerWorkload::Storm => self
                .clients
                .iter()
                .filter(open)
                .all(|c| c.received >= self.required(c)),
            PeerWorkload::Idle => true,
        }
    }

    /// The presences storm client `c` must receive.
    fn required(&self, c: &Client) -> u64 {
        c.joined_at.map_or(0, |at| self.announced - at)
    }

    /// The report of a run whose measurement started at `start`.
    fn report(
        &self,
        config: &PeerConfig,
        start: Instant,
        server_memory: Option<ServerMemory>,
    ) -> PeerReport {
        let of_role = |role: fn(Role) -> bool| self.clients.iter().filter(move |c| role(c.role));
        let received = |role: fn(Role) -> bool| of_role(role).map(|c| c.received).sum::<u64>();
        let sent = |role: fn(Role) -> bool| of_role(role).map(|c| c.sent).sum::<u64>();
        let (sent, expected, delivered) = match self.workload {
            PeerWorkload::Fanout => {
                let sent = sent(|r| r == Role::Publisher);
                let listeners = of_role(|r| r == Role::Listener).count() as u64;
                (sent, sent * listeners, received(|r| r == Role::Listener))
            }
            PeerWorkload::Direct => {
                let sent = sent(|r| matches!(r, Role::Sender { .. }));
                (sent, sent, received(|r| r == Role::Listener))
            }
            PeerWorkload::Pingpong => {
                let sent = sent(|r| r == Role::Echo);
                (sent, sent, received(|r| r == Role::Echo))
            }
            PeerWorkload::Storm => {
                let expected = self.clients.iter().map(|c| self.required(c)).sum();
                (self.announced, expected, received(|r| r == Role::Presence))
            }
            PeerWorkload::Idle => (0, 0, 0),
        };
        let elapsed = match self.stats.last_progress {
            Some(last) => last.saturating_duration_since(start),
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
        PeerReport {
            peer: config.peer,
            workload: self.workload,
            clients: self.clients.len(),
            in_flight: (self.workload == PeerWorkload::Storm).then_some(config.in_flight),
            elapsed,
            sent,
            expected,
            delivered,
            lost: expected.saturating_sub(delivered),
            extra: self.stats.extra,
            bytes_received: self.stats.bytes,
            disconnects: self.stats.disconnects,
            notices: self.stats.notices.clone(),
            notice_count: self.stats.notice_count,
            latency,
            server_memory,
        }
    }

    // ----- the loop -------------------------------------------------------

    /// One turn: let the senders queue, write what is queued, poll (not
    /// longer than `timeout`), and read what is readable: a client waiting
    /// for the replies to its greeting or its announcement at once, the
    /// others a few hundred a turn (see [`Unread`]), as `confab-load` does.
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
        let ready = std::mem::take(&mut self.ready);
        let mut scratch = std::mem::take(&mut self.scratch);
        let result = self.on_events(&ready, &mut scratch);
        self.scratch = scratch;
        self.ready = ready;
        result
    }

    /// Handles the readiness of one poll, then reads up to
    /// [`READS_PER_TURN`] clients of the [`Unread`] queue.
    fn on_events(&mut self, ready: &[(usize, bool, bool)], scratch: &mut [u8]) -> io::Result<()> {
        for &(i, readable, writable) in ready {
            let client = &mut self.clients[i];
            if writable && client.wire.pending() > 0 {
                self.dirty.mark(i, &mut client.wire);
            }
            if readable && matches!(client.phase, Phase::Hello | Phase::Announcing) {
                self.read(i, scratch)?;
            } else if readable {
                self.unread.defer(i);
            }
        }
        for _ in 0..READS_PER_TURN {
            let Some(i) = self.unread.next() else {
                break;
            };
            self.read(i, scratch)?;
        }
        Ok(())
    }

    fn now_ns(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_nanos()).unwrap_or(u64::MAX)
    }

    // ----- connections ----------------------------------------------------

    /// Connects client `i` and queues its greeting and subscription.
    fn connect(&mut self, i: usize) -> io::Result<()> {
        let stream = TcpStream::connect(self.target)
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {}: {e}", self.target)))?;
        stream.set_nodelay(true)?;
        let client = &mut self.clients[i];
        // WRITABLE tells when the connect completed and the greeting can go.
        client
            .wire
            .open(stream, self.poll.registry(), Token(i), true)?;
        self.request.clear();
        client.awaited = P::hello(&mut self.request, client.subject.as_deref());
        client.wire.queue(&self.request);
        client.phase = Phase::Hello;
        self.connecting += 1;
        self.dirty.mark(i, &mut self.clients[i].wire);
        Ok(())
    }

    /// Client `i` has all the replies to its greeting: it is ready, or
    /// (storm) announces itself.
    fn on_hello_done(&mut self, i: usize, now: Instant) {
        if self.clients[i].role != Role::Presence {
            self.clients[i].phase = Phase::Online;
            self.connecting -= 1;
            self.settled += 1;
            return;
        }
        let now_ns = self.now_ns();
        let seq = self.announced;
        self.announced += 1;
        let client = &mut self.clients[i];
        client.joined_at = Some(seq);
        client.queue_stamped(now_ns, Some(seq));
        self.request.clear();
        client.awaited = P::PUBLISH_REPLIES + P::sync(&mut self.request);
        client.wire.queue(&self.request);
        client.phase = Phase::Announcing;
        self.stats.progress(now);
        self.dirty.mark(i, &mut self.clients[i].wire);
    }

    /// Deregisters and closes client `i`'s socket.
    fn close(&mut self, i: usize) -> io::Result<()> {
        let client = &mut self.clients[i];
        if matches!(client.phase, Phase::Hello | Phase::Announcing) {
            self.connecting -= 1;
            self.settled += 1;
        }
        client.phase = Phase::Closed;
        client.wire.close(self.poll.registry())?;
        Ok(())
    }

    /// Client `i` lost its connection for `reason`: fatal before the
    /// measurement, a counted disconnect afterwards.
    fn lost(&mut self, i: usize, reason: String) -> io::Result<()> {
        let what = format!("client {i}: {reason}");
        if !self.started {
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, what));
        }
        self.stats.disconnects += 1;
        self.notice(what);
        self.close(i)
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
    /// complete frame.
    fn read(&mut self, i: usize, scratch: &mut [u8]) -> io::Result<()> {
        loop {
            let received = match self.clients[i].wire.read(scratch) {
                Ok(Some(received)) => received,
                Ok(None) => return Ok(()),
                Err(Broken::Closed) => {
                    return self.lost(i, "the server closed the connection".into())
                }
                Err(Broken::Failed(e)) => return self.lost(i, format!("read: {e}")),
            };
            self.stats.bytes += received.new as u64;
            let text = received.text;
            let now = Instant::now();
            let now_ns = self.now_ns();
            let mut at = 0;
            loop {
                match P::frame(&text[at..]) {
                    Ok(Some((frame, len))) => {
                        self.on_frame(i, frame, now, now_ns)?;
                        at += len;
                    }
                    Ok(None) => break,
                    Err(BadFrame(what)) => return self.lost(i, format!("{}: {what}", P::NAME)),
                }
                if !self.clients[i].wire.is_open() {
                    return Ok(());
                }
            }
            if let Err(LineTooLong) = self.clients[i].wire.keep_partial(&text[at..]) {
                return self.lost(i, format!("a frame longer than {MAX_LINE} bytes"));
            }
            // Answer now (a pong, an echo) rather than after the rest of
            // this poll's events: the reply's latency is measured.
            if self.clients[i].wire.pending() > 0 {
                self.flush(i)?;
            }
        }
    }

    /// Handles one frame received by client `i`.
    fn on_frame(
        &mut self,
        i: usize,
        frame: Frame<'_>,
        now: Instant,
        now_ns: u64,
    ) -> io::Result<()> {
        match frame {
            Frame::Message(payload) => self.on_message(i, payload, now, now_ns),
            Frame::Reply(value) => self.on_reply(i, value, now),
            Frame::Ping => {
                self.request.clear();
                P::pong(&mut self.request);
                self.clients[i].wire.queue(&self.request);
                self.dirty.mark(i, &mut self.clients[i].wire);
            }
            Frame::Error(text) => {
                let what = format!("{} error: {}", P::NAME, String::from_utf8_lossy(text));
                if !self.started {
                    return Err(io::Error::new(io::ErrorKind::ConnectionRefused, what));
                }
                self.notice(format!("client {i}: {what}"));
            }
            Frame::Other => {}
        }
        Ok(())
    }

    /// Client `i` received a message with `payload`.
    fn on_message(&mut self, i: usize, payload: &[u8], now: Instant, now_ns: u64) {
        let Some(sent_ns) = parse_stamp(payload) else {
            let shown = String::from_utf8_lossy(payload).into_owned();
            return self.notice(format!("client {i}: an unstamped message {shown}"));
        };
        if !self.started {
            return self.notice(format!("client {i}: a message before the run started"));
        }
        if self.workload == PeerWorkload::Storm {
            let seq = payload.get(STAMP_LEN..).and_then(parse_stamp);
            let joined_at = self.clients[i].joined_at;
            match (seq, joined_at) {
                (Some(seq), Some(at)) if seq >= at => self.clients[i].received += 1,
                (Some(_), _) => {
                    self.stats.extra += 1;
                    return;
                }
                (None, _) => return self.notice(format!("client {i}: a presence without a seq")),
            }
        } else {
            self.clients[i].received += 1;
        }
        self.stats.progress(now);
        self.stats
            .latency
            .saturating_record(now_ns.saturating_sub(sent_ns));
        let sending = self.sending;
        let client = &mut self.clients[i];
        if client.role == Role::Echo && sending {
            client.queue_stamped(now_ns, None);
            self.dirty.mark(i, &mut self.clients[i].wire);
        }
    }

    /// Client `i` received the reply to its oldest request; `value` is a
    /// Redis integer (a publication's receivers).
    fn on_reply(&mut self, i: usize, value: Option<i64>, now: Instant) {
        let client = &mut self.clients[i];
        match client.phase {
            Phase::Hello => {
                client.awaited = client.awaited.saturating_sub(1);
                if client.awaited == 0 {
                    self.on_hello_done(i, now);
                }
            }
            Phase::Announcing => {
                client.awaited = client.awaited.saturating_sub(1);
                if client.awaited == 0 {
                    client.phase = Phase::Online;
                    self.connecting -= 1;
                    self.settled += 1;
                    self.stats.progress(now);
                }
            }
            Phase::Online => {
                client.acked += 1;
                if value.is_some_and(|receivers| receivers < 1) {
                    self.notice(format!("client {i}: a publication no subscriber received"));
                }
            }
            Phase::Offline | Phase::Closed => {}
        }
    }

    // ----- sending --------------------------------------------------------

    /// Lets every sender queue what its window allows.
    fn pump(&mut self) -> io::Result<()> {
        self.busy = false;
        if !self.sending {
            return Ok(());
        }
        match self.workload {
            PeerWorkload::Fanout => self.pump_sender(0),
            PeerWorkload::Direct => {
                for i in (0..self.clients.len()).step_by(2) {
                    self.pump_sender(i)?;
                }
                Ok(())
            }
            PeerWorkload::Pingpong | PeerWorkload::Storm | PeerWorkload::Idle => Ok(()),
        }
    }

    /// Messages of sender `i` that count as arrived for its window: taken
    /// by its receiver (by the slowest subscriber, for fanout) and, where
    /// publications are acknowledged, acknowledged.
    fn arrived(&mut self, i: usize) -> u64 {
        let sent = self.clients[i].sent;
        let received = match self.clients[i].role {
            Role::Sender { to } => self.clients[to].received,
            _ => {
                if sent.saturating_sub(self.floor) >= self.window_lines {
                    self.floor = self.slowest_listener(sent);
                }
                self.floor
            }
        };
        if P::PUBLISH_REPLIES > 0 {
            received.min(self.clients[i].acked)
        } else {
            received
        }
    }

    /// The fewest deliveries any open listener has received, or `none` if
    /// there is none.
    fn slowest_listener(&self, none: u64) -> u64 {
        let open = self
            .clients
            .iter()
            .filter(|c| c.role == Role::Listener && c.phase != Phase::Closed);
        open.map(|c| c.received).min().unwrap_or(none)
    }

    /// Queues and writes publications of sender `i` while its window and
    /// this turn's budget allow.
    fn pump_sender(&mut self, i: usize) -> io::Result<()> {
        let mut budget = PUMP_BUDGET;
        loop {
            if self.clients[i].phase != Phase::Online {
                return Ok(());
            }
            let arrived = self.arrived(i);
            let now_ns = self.now_ns();
            let client = &mut self.clients[i];
            let in_flight = client.sent.saturating_sub(arrived);
            let mut room = self.window_lines.saturating_sub(in_flight);
            if room == 0 {
                return Ok(());
            }
            let len = client.publication.bytes.len();
            while room > 0 && client.wire.pending() + len <= OUT_CAP && budget >= len {
                client.queue_stamped(now_ns, None);
                room -= 1;
                budget -= len;
            }
            self.flush(i)?;
            if self.clients[i].wire.pending() > 0 {
                // Its WRITABLE edge comes when the socket drains.
                return Ok(());
            }
            if budget < len {
                self.busy = true;
                return Ok(());
            }
        }
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
