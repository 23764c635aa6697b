//! The poll loop: one thread, one `mio::Poll`, every socket.
//!
//! Each iteration: wait for readiness or the next deadline; accept until
//! `WouldBlock` ([`admission`] decides who may stay); read each readable
//! connection and feed every complete line to [`Chat`] ([`input`]), staging
//! the text of its effects per recipient ([`staging`]); fire due timers;
//! then, at the end, remove doomed connections (the one place that does,
//! which also tells the domain so it can announce the leaver) and write
//! each connection's staged and pending output once ([`output`]), committing
//! the iteration's durable changes before the output that promises them
//! goes out ([`commit`]). Where each connection stands in that schedule is
//! kept by [`conns`].
//!
//! Durability: records of durable changes that the domain produced during
//! an iteration are committed to the [`Journal`] once, at the end of it
//! (one `write`, one `fdatasync`). Connections the domain held — they were
//! promised something the records describe — are flushed only after that
//! commit; every other connection is flushed before it, so online delivery
//! never waits for the disk. A failing commit is retried with back-off
//! and never stops the server; a compaction is encoded a slice per
//! iteration.
//!
//! Offline mail is written at the pace the client reads (see
//! [`backlog`]): a slice of the mailbox per iteration, each line reported
//! to the domain once the socket took it.

mod admission;
mod backlog;
mod cluster;
mod commit;
mod config;
mod conn;
mod conns;
mod input;
mod listener;
mod notices;
mod output;
mod reload;
mod staging;
mod verify;
pub mod web;

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token, Waker};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook_mio::v1_0::Signals;

use crate::chat::{Chat, SessionId, WallClock};
use crate::credentials::Account;
use crate::deadlines::Deadlines;
use crate::identity::Identity;
use crate::journal::Journal;
use crate::net::link::Link;
use crate::net::stream::Stream;
use crate::net::tls::TlsStream;
use crate::net::web::WebStream;
use crate::protocol;
use admission::{Admission, TooMany};
use commit::{open_journal, Durability};
pub use config::{defaults, Config, Storage};
use conn::Conn;
use conns::Conns;
use input::Input;
pub use input::READ_BUDGET;
use staging::Staging;
use verify::Verifier;
pub use web::http::{parse_origin, MAX_HEAD, MAX_HEADERS};
use web::{HttpStage, Web};

/// The listener's token; connections use their slab key, which is always
/// smaller.
const LISTENER: Token = Token(usize::MAX);
/// The token of the waker that [`ShutdownHandle`] and the compaction
/// thread use.
const WAKER: Token = Token(usize::MAX - 1);
/// The token of the SIGINT/SIGTERM/SIGHUP source, once [`Server::handle_signals`]
/// registered it.
const SIGNALS: Token = Token(usize::MAX - 2);
/// The token of the plaintext listener beside a TLS one (`--plain-port`).
const PLAIN_LISTENER: Token = Token(usize::MAX - 3);
/// The token of the web listener (`--web-port`).
const WEB_LISTENER: Token = Token(usize::MAX - 4);
/// How long a connection being closed may take to accept its last output.
const LINGER: Duration = Duration::from_secs(2);
/// How long to wait before accepting again after running out of file
/// descriptors.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);
/// Poll events handled per wake-up.
const EVENTS_CAPACITY: usize = 1024;
/// How often output buffers left empty are freed (a busy connection reuses
/// its buffer from one iteration to the next, an idle one ends up holding
/// none).
const RELEASE_INTERVAL: Duration = Duration::from_secs(1);

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
    /// A web connection's request is due.
    HttpDeadline { key: usize, serial: u64 },
}

/// The loop's own timers and the states they end.
#[derive(Debug, Default)]
struct Timers {
    deadlines: Deadlines<LoopTimer>,
    /// Accepting is paused after descriptors ran out.
    accept_paused: bool,
    /// A [`LoopTimer::ReleaseBuffers`] is armed.
    release_armed: bool,
}

/// What other threads use to reach the loop.
struct Control {
    /// Set to stop [`Server::run`].
    stop: Arc<AtomicBool>,
    /// Wakes the poll.
    waker: Arc<Waker>,
    /// SIGINT and SIGTERM, once [`Server::handle_signals`] registered them.
    signals: Option<Signals>,
    /// Connections open, for [`ConnectionGauge`].
    open: Arc<AtomicUsize>,
}

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
    /// The plaintext listener beside a TLS one, if asked for.
    plain_listener: Option<TcpListener>,
    /// The web listener and its page, if asked for.
    web: Option<Web>,
    /// The certificate the main listener speaks TLS with, if it does.
    identity: Option<Identity>,
    config: Config,
    chat: Chat,
    conns: Conns,
    staging: Staging,
    input: Input,
    /// The data directory's journal, unless the server is ephemeral.
    durability: Option<Durability>,
    /// Hashed passwords being verified off the loop.
    verifier: Verifier,
    admission: Admission,
    timers: Timers,
    control: Control,
    /// This server's part in a cluster (`--cluster`).
    cluster: Option<cluster::Node>,
}

impl Server {
    /// Loads the accounts into the domain, opens the data directory (its
    /// lock, the replay of its journal, a compaction) unless the storage is
    /// ephemeral, loads or makes the TLS certificate if the server speaks
    /// TLS, and binds the listeners. Errors say which of these failed.
    pub fn bind(config: Config, accounts: Vec<Account>) -> io::Result<Server> {
        let mut chat = Chat::new(accounts.clone(), config.chat);
        chat.set_wall_clock(WallClock::new(Instant::now(), SystemTime::now()));
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
        let identity = match &config.tls {
            None => None,
            Some(source) => Some(Identity::load(source, config.storage.dir()).map_err(|e| {
                io::Error::new(io::ErrorKind::InvalidInput, format!("TLS certificate: {e}"))
            })?),
        };
        if config.plain_port.is_some() && identity.is_none() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a plaintext port is only for beside a TLS one",
            ));
        }
        let poll = Poll::new()?;
        let listen = |bind: SocketAddr, token: Token| -> io::Result<TcpListener> {
            let listen_error =
                |e: io::Error| io::Error::new(e.kind(), format!("cannot listen on {bind}: {e}"));
            let mut listener = listener::bind(bind, config.backlog).map_err(listen_error)?;
            poll.registry()
                .register(&mut listener, token, Interest::READABLE)?;
            Ok(listener)
        };
        let listener = listen(config.bind, LISTENER)?;
        let plain_listener = match config.plain_port {
            Some(port) => Some(listen(
                SocketAddr::new(config.bind.ip(), port),
                PLAIN_LISTENER,
            )?),
            None => None,
        };
        let web = match config.web_port {
            Some(port) => {
                let listener = listen(SocketAddr::new(config.bind.ip(), port), WEB_LISTENER)?;
                let web = Web::new(listener, identity.is_some(), config.web_origins.clone());
                Some(web.map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?)
            }
            None => None,
        };
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let durability = journal.map(|journal| with_wake(journal, &waker));
        let cluster = match &config.cluster {
            None => None,
            Some(cluster) => {
                if durability.is_some() {
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidInput,
                        "a cluster node keeps its state in NATS, not in a data directory",
                    ));
                }
                let port = listener.local_addr()?.port();
                let name = cluster
                    .node
                    .clone()
                    .unwrap_or_else(|| default_node_name(port));
                let node =
                    cluster::Node::join(cluster, name, config.chat, &accounts, &mut chat, &waker)?;
                Some(node)
            }
        };
        Ok(Server {
            admission: Admission::new(config.trust.clone(), config.max_per_ip),
            staging: Staging::new(config.presence_delay),
            poll,
            listener,
            plain_listener,
            web,
            identity,
            chat,
            config,
            conns: Conns::default(),
            input: Input::default(),
            durability,
            verifier: Verifier::default(),
            timers: Timers::default(),
            control: Control {
                stop: Arc::new(AtomicBool::new(false)),
                waker,
                signals: None,
                open: Arc::new(AtomicUsize::new(0)),
            },
            cluster,
        })
    }

    /// The address the listener is bound to (with the real port when 0 was
    /// asked for).
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The address of the plaintext listener beside the TLS one, if any.
    pub fn plain_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.plain_listener.as_ref().map(TcpListener::local_addr)
    }

    /// The address of the web listener (`--web-port`), if any.
    pub fn web_addr(&self) -> Option<io::Result<SocketAddr>> {
        self.web.as_ref().map(|web| web.listener.local_addr())
    }

    /// The fingerprint of the certificate the server speaks TLS with, if
    /// it does (see [`crate::identity::fingerprint`]).
    pub fn tls_fingerprint(&self) -> Option<String> {
        self.identity.as_ref().map(Identity::fingerprint)
    }

    /// A handle that stops [`Server::run`] from another thread.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        ShutdownHandle {
            flag: Arc::clone(&self.control.stop),
            waker: Arc::clone(&self.control.waker),
        }
    }

    /// Makes SIGINT and SIGTERM shut the server down gracefully, as a
    /// [`ShutdownHandle`] does (a second one during the shutdown ends it at
    /// once), and SIGHUP reload the certificate and the accounts
    /// ([`reload`]). The signals arrive through the same poll as the
    /// sockets.
    /// SIGXFSZ is ignored: a file-size limit then fails the write that
    /// passes it (`EFBIG`), which the journal survives like a full disk,
    /// instead of killing the process.
    pub fn handle_signals(&mut self) -> io::Result<()> {
        // SAFETY: setting a signal's disposition to SIG_IGN runs no code.
        if unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) } == libc::SIG_ERR {
            return Err(io::Error::last_os_error());
        }
        let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP])?;
        self.poll
            .registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)?;
        self.control.signals = Some(signals);
        Ok(())
    }

    /// The signals that arrived since the last call: whether one asks to
    /// stop (SIGINT, SIGTERM), and whether one asks to reload (SIGHUP).
    fn signalled(&mut self) -> (bool, bool) {
        let Some(signals) = self.control.signals.as_mut() else {
            return (false, false);
        };
        signals
            .pending()
            .fold((false, false), |(stop, reload), signal| {
                (stop || signal != SIGHUP, reload || signal == SIGHUP)
            })
    }

    /// A gauge of how many connections are open, readable from any thread
    /// while the server runs (updated once per loop iteration).
    pub fn connection_gauge(&self) -> ConnectionGauge {
        ConnectionGauge(Arc::clone(&self.control.open))
    }

    /// Serves until shut down through a [`ShutdownHandle`]; then tells every
    /// connection, flushes what it can within [`Config::shutdown_grace`],
    /// and returns.
    pub fn run(&mut self) -> io::Result<()> {
        let mut events = Events::with_capacity(EVENTS_CAPACITY);
        while !self.control.stop.load(Ordering::SeqCst) {
            self.wait(&mut events)?;
            let now = Instant::now();
            for event in &events {
                match event.token() {
                    LISTENER => self.accept(LISTENER, now),
                    PLAIN_LISTENER => self.accept(PLAIN_LISTENER, now),
                    WEB_LISTENER => self.accept(WEB_LISTENER, now),
                    WAKER => {}
                    SIGNALS => {
                        let (stop, reload) = self.signalled();
                        if reload {
                            self.reload(now);
                        }
                        if stop {
                            info!("signal received");
                            self.control.stop.store(true, Ordering::SeqCst);
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
            self.take_answers(now);
            self.take_log(now);
            self.read_unread(now);
            self.fire_timers(now);
            self.finish_iteration(now, events.is_empty());
            self.cluster_turn(now);
            if let Some(failure) = self.cluster_failure() {
                return Err(io::Error::other(failure));
            }
            self.control.open.store(self.conns.len(), Ordering::Relaxed);
        }
        let result = self.shut_down(&mut events);
        self.control.open.store(self.conns.len(), Ordering::Relaxed);
        result
    }

    /// Polls until readiness or the next deadline, retrying interruptions;
    /// does not sleep while input is left unread, offline mail waits to be
    /// queued, or a compaction takes slices.
    fn wait(&mut self, events: &mut Events) -> io::Result<()> {
        let now = Instant::now();
        let retry = self.durability.as_ref().and_then(Durability::retry_at);
        // In a cluster the log ticks the domain's timers (see `cluster`).
        let domain = match self.cluster {
            Some(_) => self.cluster_deadline(),
            None => self.chat.next_deadline(),
        };
        let next = [
            domain,
            self.timers.deadlines.next(),
            self.staging.notices.due(),
            retry,
        ]
        .into_iter()
        .flatten()
        .min();
        let compacting = self
            .durability
            .as_ref()
            .is_some_and(Durability::wants_slice);
        let timeout = if self.conns.wants_another_turn() || compacting || self.log_left() {
            Some(Duration::ZERO)
        } else {
            // Round up so that the loop never wakes just before a deadline.
            next.map(|at| at.saturating_duration_since(now) + Duration::from_millis(1))
        };
        loop {
            match self.poll.poll(events, timeout) {
                Ok(()) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Accepts what waits on every listener (accepting was paused, and
    /// their edges may have passed meanwhile).
    fn accept_all(&mut self, now: Instant) {
        self.accept(LISTENER, now);
        if self.plain_listener.is_some() {
            self.accept(PLAIN_LISTENER, now);
        }
        if self.web.is_some() {
            self.accept(WEB_LISTENER, now);
        }
    }

    /// Accepts what waits on the listener of `token` until it would block.
    fn accept(&mut self, token: Token, now: Instant) {
        while !self.timers.accept_paused {
            let listener = match token {
                PLAIN_LISTENER => self.plain_listener.as_ref(),
                WEB_LISTENER => self.web.as_ref().map(|web| &web.listener),
                _ => Some(&self.listener),
            };
            let Some(listener) = listener else {
                return;
            };
            match listener.accept() {
                Ok((stream, peer)) => {
                    let tls = token != PLAIN_LISTENER && self.identity.is_some();
                    self.admit(stream, peer, tls, token == WEB_LISTENER, now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::ConnectionAborted => {}
                Err(e) if is_out_of_descriptors(&e) => {
                    warn!("accept: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.timers.accept_paused = true;
                    self.timers
                        .deadlines
                        .arm(now + ACCEPT_BACKOFF, LoopTimer::AcceptRetry);
                }
                Err(e) => {
                    warn!("accept: {e}");
                    return;
                }
            }
        }
    }

    /// Takes a new connection (a TLS session if `tls`, a web connection
    /// before its request if `web`) unless the server is full or its
    /// address has too many.
    fn admit(
        &mut self,
        mut stream: TcpStream,
        peer: SocketAddr,
        tls: bool,
        web: bool,
        now: Instant,
    ) {
        // Best effort: a fresh socket's send buffer takes one line (an
        // HTTP answer saying it on the web port). Over TLS nothing can be
        // said before a handshake: the close says it.
        let mut refuse = |line: &str| {
            let answer = match web {
                true => web::http::Status::Unavailable.answer(Some(line)),
                false => format!("{line}\n").into_bytes(),
            };
            if !tls {
                let _ = io::Write::write_all(&mut stream, &answer);
            }
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
        let stream = match (&self.identity, tls) {
            (Some(identity), true) => match rustls::ServerConnection::new(identity.config()) {
                Ok(session) => Stream::from(TlsStream::new(stream, session)),
                Err(e) => {
                    warn!("{peer}: TLS session: {e}");
                    self.admission.release(address);
                    return;
                }
            },
            _ => Stream::from(stream),
        };
        let stream = match web {
            true => Stream::from(WebStream::new(stream)),
            false => stream,
        };
        let key = self.conns.vacant_key();
        let mut link = Link::new(stream);
        if let Err(e) = link.register(self.poll.registry(), Token(key), false) {
            warn!("{peer}: register: {e}");
            self.admission.release(address);
            return;
        }
        debug!("{peer}: connected as #{key}");
        self.conns.insert(|serial| Conn::new(link, serial, address));
        if web {
            // A session only once it is a WebSocket (see `web`).
            if let Some(conn) = self.conns.live(key) {
                conn.http = Some(Box::new(HttpStage::new(peer.ip())));
                let serial = conn.serial;
                self.arm_http_deadline(key, serial, now);
            }
        } else if self.cluster.is_some() {
            self.cluster_connect(key, peer.ip(), address.is_none(), false);
        } else {
            self.chat
                .connect(SessionId(key), peer.ip(), address.is_none(), now);
            self.apply_effects();
        }
        // The client may have sent its username already; its edge came
        // before registration, so look now.
        self.read(key, now);
    }

    fn fire_timers(&mut self, now: Instant) {
        if self.cluster.is_none() {
            self.chat.expire(now);
            self.apply_effects();
        }
        while let Some((_, timer)) = self.timers.deadlines.pop_due(now) {
            match timer {
                LoopTimer::Linger { key, serial } => {
                    if self.conns.get(key).is_some_and(|c| c.serial == serial) {
                        debug!("#{key}: did not take its last output in time");
                        self.conns.doom(key);
                    }
                }
                LoopTimer::AcceptRetry => {
                    self.timers.accept_paused = false;
                    self.accept_all(now);
                }
                LoopTimer::ReleaseBuffers => {
                    self.timers.release_armed = false;
                    for conn in self.conns.iter_mut() {
                        conn.release_idle_buffer();
                    }
                    return_free_memory();
                }
                LoopTimer::Resume { key, serial } => self.resume(key, serial, now),
                LoopTimer::HttpDeadline { key, serial } => self.http_expired(key, serial),
            }
        }
    }

    /// The one place a connection is removed: the domain is told (it
    /// announces a logged-in user's departure) and the socket is closed.
    fn remove(&mut self, key: usize, now: Instant) {
        let Some(mut conn) = self.conns.remove(key) else {
            return;
        };
        let serial = conn.serial;
        if let Err(e) = conn.link.deregister(self.poll.registry()) {
            debug!("#{key}: deregister: {e}");
        }
        debug!("#{key}: closed");
        self.admission.release(conn.address());
        drop(conn);
        // The key may be reused at once: nothing staged may reach the next
        // connection.
        self.forget_staged(key);
        self.verifier.forget(key);
        if self.cluster.is_some() {
            self.cluster_disconnect(key, serial);
        } else {
            self.chat.disconnect(SessionId(key), now);
            self.apply_effects();
        }
        if self.timers.accept_paused {
            self.timers.accept_paused = false;
            self.accept_all(now);
        }
    }

    /// Tells everyone the server stops, flushes (and retries a failing
    /// commit) for at most [`Config::shutdown_grace`], and closes every
    /// connection.
    fn shut_down(&mut self, events: &mut Events) -> io::Result<()> {
        info!("shutting down");
        if let Err(e) = self.poll.registry().deregister(&mut self.listener) {
            debug!("deregister listener: {e}");
        }
        let now = Instant::now();
        if self.cluster_mode() {
            self.cluster_leave();
        } else {
            self.chat.shutdown(now);
            self.apply_effects();
        }
        // Web connections that are no session yet have nobody to tell.
        for key in self.conns.keys_where(|conn| conn.http.is_some()) {
            self.conns.doom(key);
        }
        self.finish_iteration(now, true);
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
                if event.token() == SIGNALS && self.signalled().0 {
                    warn!("second signal: exiting without flushing");
                    self.conns.clear();
                    return Ok(());
                }
                if event.is_writable() {
                    self.conns.mark_dirty(event.token().0);
                }
            }
            self.finish_iteration(Instant::now(), true);
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

/// Drives `journal`, waking the poll whenever its compaction thread has
/// room for another slice or has ended.
fn with_wake(mut journal: Journal, waker: &Arc<Waker>) -> Durability {
    let waker = Arc::clone(waker);
    journal.set_wake(Arc::new(move || {
        let _ = waker.wake();
    }));
    Durability::new(journal)
}

/// A node's name when `--node` is not given: the host name and the
/// listening port.
fn default_node_name(port: u16) -> String {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most `buf.len()` bytes into `buf`.
    let host = if unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) } == 0 {
        let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
        String::from_utf8_lossy(&buf[..end]).into_owned()
    } else {
        "localhost".to_owned()
    };
    format!("{host}:{port}")
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
