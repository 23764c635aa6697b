//! Private sessions: messages that go from this client straight to another
//! user's client, once the server has introduced the two.
//!
//! [`Private`] owns a listening socket (its port is registered with the
//! server as `privateport`) and one TCP connection per peer, all in the
//! client's one poll. The server's `!private accept` line says who will
//! connect and with which single-use token; its `!private connect` line
//! says where to connect and which token to present. A connection that
//! does not present a token the server gave is closed without a word, so a
//! third party that finds the port cannot pose as a user.
//!
//! Peer connections get the server's limits: lines of at most
//! [`MAX_PEER_LINE`] bytes and at most [`MAX_PEER_PENDING`] bytes the peer
//! has not read; past either the session ends. What the user should be
//! told (a message, a session starting or ending) is appended to a list of
//! notes, lines that the caller shows.

mod peer;
mod tls;
mod wire;

use std::collections::{HashMap, VecDeque};
use std::io::{self, ErrorKind};
use std::mem;
use std::net::{IpAddr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Interest, Registry, Token};
use slab::Slab;

use crate::fingerprint::Fingerprint;
use crate::net::link::Link;
use crate::net::stream::Stream;
use peer::{close, connection_status, says_stop, Peer, Stage};
use tls::PrivateTls;
pub(super) use wire::Introduction;
use wire::{hello_line, message_line, PeerLine, BUSY_LINE, OK_LINE, STOP_LINE};

/// Poll token of the listening socket; peer connections follow it.
const LISTENER: Token = Token(3);
/// Poll token of the peer connection with slab key 0.
const FIRST_PEER: usize = LISTENER.0 + 1;

/// How long an accepted connection has to present its token.
pub const HELLO_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a started session may take to be accepted by the peer.
pub const START_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a token from the server stays valid if nobody presents it.
pub const TOKEN_LIFETIME: Duration = Duration::from_secs(30);
/// Longest line a peer may send, not counting one `\r`.
pub const MAX_PEER_LINE: usize = 2048;
/// Bytes a peer may leave unread before the session is ended.
pub const MAX_PEER_PENDING: usize = 1 << 20;

/// Tokens remembered at most; the oldest is forgotten first.
const MAX_EXPECTED: usize = 64;
/// Accepted connections that have not presented a valid token yet.
const MAX_UNVERIFIED: usize = 16;
/// Size of one read from a peer.
pub(super) const READ_CHUNK: usize = 16 * 1024;
/// Bytes read from one peer before the others, standard input and the
/// screen get their turn: a peer that floods cannot make the client's
/// pending output grow or starve the rest.
const READ_BUDGET: usize = 64 * 1024;
/// Unread bytes read and dropped before closing a connection, so that the
/// close is a clean end of stream rather than a reset that could destroy
/// the last line sent.
pub(super) const DRAIN_LIMIT: usize = 64 * 1024;

/// A token the server gave for a user who is about to connect, and the
/// certificate that user must show over TLS.
struct Expected {
    user: String,
    token: String,
    fingerprint: Option<Fingerprint>,
    until: Instant,
}

/// Why a peer connection is closed; decides what the user is told.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Ending {
    /// Nothing to tell: never a session, or replaced by another one.
    Quiet,
    /// The connection failed, broke, or broke a limit.
    Lost,
    /// The peer sent `stop`.
    StoppedByPeer,
    /// The user typed `stopprivate`.
    StoppedHere,
}

/// Whether to go on reading a peer's input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flow {
    Go,
    /// Keep the rest until the token is known.
    Hold,
    /// The connection is closed.
    Ended,
}

/// This client's side of private messaging; see the module documentation.
pub(super) struct Private {
    listener: TcpListener,
    port: u16,
    peers: Slab<Peer>,
    /// The connection that is *the* session with each user (open or being
    /// started from here).
    sessions: HashMap<String, usize>,
    expected: VecDeque<Expected>,
    /// Peers whose input was left unread when their budget ran out; the
    /// poll will not report them again, so [`Private::resume`] must.
    unfinished: Vec<usize>,
    /// This client's certificate, when its server link is TLS: then every
    /// private session is TLS too.
    tls: Option<PrivateTls>,
}

impl Private {
    /// Listens on a fresh port of `ip`, the address this client reaches the
    /// server from, which is the address the server gives peers; with
    /// `tls` (the server link is TLS), makes a certificate for sessions
    /// over TLS.
    pub(super) fn listen(ip: IpAddr, tls: bool, registry: &Registry) -> io::Result<Self> {
        let tls = match tls {
            true => Some(PrivateTls::new().map_err(io::Error::other)?),
            false => None,
        };
        let mut listener = TcpListener::bind(SocketAddr::new(ip, 0))?;
        let port = listener.local_addr()?.port();
        registry.register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Self {
            tls,
            listener,
            port,
            peers: Slab::new(),
            sessions: HashMap::new(),
            expected: VecDeque::new(),
            unfinished: Vec::new(),
        })
    }

    /// The `privateport` line registering the listening port, and the
    /// certificate's fingerprint when sessions are TLS.
    pub(super) fn registration(&self) -> String {
        match &self.tls {
            Some(tls) => format!("privateport {} {}\n", self.port, tls.fingerprint()),
            None => format!("privateport {}\n", self.port),
        }
    }

    /// Whether a poll token belongs to private messaging.
    pub(super) fn owns(token: Token) -> bool {
        token.0 >= LISTENER.0
    }

    /// Whether a session with `user` is open or being started.
    pub(super) fn has_session(&self, user: &str) -> bool {
        self.sessions.contains_key(user)
    }

    /// Acts on a complete server line if it is an introduction; returns
    /// whether it was one (and so must not be shown).
    pub(super) fn introduction(
        &mut self,
        line: &[u8],
        registry: &Registry,
        now: Instant,
        notes: &mut Vec<String>,
    ) -> bool {
        match Introduction::parse(line) {
            Some(Introduction::Accept {
                user,
                token,
                fingerprint,
            }) => {
                self.expect(user, token, fingerprint, registry, now, notes);
                true
            }
            Some(Introduction::Connect {
                user,
                address,
                token,
                fingerprint,
            }) => {
                let peer = Target {
                    user,
                    address,
                    token,
                    fingerprint,
                };
                self.connect(peer, registry, now, notes);
                true
            }
            None => false,
        }
    }

    /// Sends a private message; false if there is no session with `user`.
    /// A message typed while the session is being started follows the
    /// `hello` and is lost if the session does not start.
    pub(super) fn send(
        &mut self,
        user: &str,
        text: &str,
        registry: &Registry,
        notes: &mut Vec<String>,
    ) -> bool {
        let Some(&key) = self.sessions.get(user) else {
            return false;
        };
        let peer = &mut self.peers[key];
        peer.link.queue(message_line(text).as_bytes());
        if peer.link.pending() > MAX_PEER_PENDING {
            self.end(key, Ending::Lost, registry, notes);
        } else {
            self.flush(key, registry, notes);
        }
        true
    }

    /// Ends the session with `user` at the user's request; false if there
    /// is none.
    pub(super) fn stop(
        &mut self,
        user: &str,
        registry: &Registry,
        notes: &mut Vec<String>,
    ) -> bool {
        let Some(&key) = self.sessions.get(user) else {
            return false;
        };
        self.end(key, Ending::StoppedHere, registry, notes);
        true
    }

    /// Ends every session because the client is leaving: each open peer is
    /// sent `stop`, best effort, and every connection is closed.
    pub(super) fn stop_all(&mut self, registry: &Registry) {
        for mut peer in self.peers.drain() {
            if says_stop(peer.stage) {
                peer.link.queue(STOP_LINE);
            }
            close(peer, registry);
        }
        self.sessions.clear();
    }

    /// Reacts to readiness of one of [`Private::owns`]'s tokens.
    pub(super) fn ready(
        &mut self,
        token: Token,
        registry: &Registry,
        now: Instant,
        notes: &mut Vec<String>,
    ) {
        if token == LISTENER {
            self.accept(registry, now, notes);
        } else if self.peers.contains(token.0 - FIRST_PEER) {
            self.service(token.0 - FIRST_PEER, registry, now, notes);
        }
    }

    /// Whether some peer's input is waiting for [`Private::resume`]: the
    /// caller must not sleep in its poll.
    pub(super) fn has_unfinished(&self) -> bool {
        !self.unfinished.is_empty()
    }

    /// Goes on reading the peers whose budget ran out.
    pub(super) fn resume(&mut self, registry: &Registry, now: Instant, notes: &mut Vec<String>) {
        for key in mem::take(&mut self.unfinished) {
            if self.peers.contains(key) {
                self.service(key, registry, now, notes);
            }
        }
    }

    /// The earliest moment [`Private::expire`] has something to do.
    pub(super) fn next_deadline(&self) -> Option<Instant> {
        let handshakes = self.peers.iter().filter_map(|(_, peer)| peer.deadline);
        let tokens = self.expected.iter().map(|e| e.until);
        handshakes.chain(tokens).min()
    }

    /// Drops tokens nobody presented in time and closes connections whose
    /// handshake is overdue.
    pub(super) fn expire(&mut self, registry: &Registry, now: Instant, notes: &mut Vec<String>) {
        self.expected.retain(|e| e.until > now);
        let overdue: Vec<usize> = self
            .peers
            .iter()
            .filter(|(_, peer)| peer.deadline.is_some_and(|d| d <= now))
            .map(|(key, _)| key)
            .collect();
        for key in overdue {
            log::debug!("private connection #{key}: handshake timed out");
            self.end(key, Ending::Lost, registry, notes);
        }
    }

    /// Remembers the token of a user who is about to connect (and the
    /// certificate they must show), or admits that user at once if their
    /// connection came first.
    fn expect(
        &mut self,
        user: &str,
        token: &str,
        fingerprint: Option<Fingerprint>,
        registry: &Registry,
        now: Instant,
        notes: &mut Vec<String>,
    ) {
        let early = self
            .peers
            .iter()
            .find(|(_, peer)| peer.stage == Stage::AwaitToken && peer.token == token)
            .map(|(key, _)| key);
        if let Some(key) = early {
            if !tls::shows(self.peers[key].link.transport(), fingerprint) {
                log::debug!("private connection #{key}: not {user}'s certificate");
                return self.end(key, Ending::Quiet, registry, notes);
            }
            if self.admit(key, user.to_owned(), registry, notes) == Flow::Go {
                self.service(key, registry, now, notes);
            }
            return;
        }
        if self.expected.len() >= MAX_EXPECTED {
            self.expected.pop_front();
        }
        self.expected.push_back(Expected {
            user: user.to_owned(),
            token: token.to_owned(),
            fingerprint,
            until: now + TOKEN_LIFETIME,
        });
    }

    /// Starts the session the user asked for with `startprivate`.
    fn connect(
        &mut self,
        target: Target<'_>,
        registry: &Registry,
        now: Instant,
        notes: &mut Vec<String>,
    ) {
        let Target {
            user,
            address,
            token,
            fingerprint,
        } = target;
        if self.sessions.contains_key(user) {
            // The other user started one with us meanwhile; it stands.
            log::debug!("already in a private session with {user}");
            return;
        }
        let socket = match TcpStream::connect(address) {
            Ok(socket) => socket,
            Err(error) => {
                log::debug!("private connection to {user} at {address}: {error}");
                return notes.push(could_not_start(user));
            }
        };
        let stream = match (&self.tls, fingerprint) {
            (None, None) => Ok(Stream::from(socket)),
            (Some(tls), Some(print)) => tls
                .connect(socket, print, address.ip())
                .map_err(|e| e.to_string()),
            _ => Err("the server's introduction does not match this link".to_string()),
        };
        let stream = match stream {
            Ok(stream) => stream,
            Err(error) => {
                log::debug!("private connection to {user}: {error}");
                return notes.push(could_not_start(user));
            }
        };
        let entry = self.peers.vacant_entry();
        let key = entry.key();
        // Writable tells when the connect has completed.
        let mut link = Link::new(stream);
        if let Err(error) = link.register(registry, peer_token(key), true) {
            log::debug!("private connection to {user}: {error}");
            return notes.push(could_not_start(user));
        }
        let mut peer = Peer::new(link, Stage::Connecting, now + START_TIMEOUT);
        peer.user = user.to_owned();
        peer.token = token.to_owned();
        peer.link.queue(hello_line(token).as_bytes());
        entry.insert(peer);
        self.sessions.insert(user.to_owned(), key);
    }

    /// Accepts every waiting connection, up to [`MAX_UNVERIFIED`] without a
    /// valid token at once.
    fn accept(&mut self, registry: &Registry, now: Instant, notes: &mut Vec<String>) {
        loop {
            match self.listener.accept() {
                Ok((stream, from)) => {
                    let unverified = self
                        .peers
                        .iter()
                        .filter(|(_, p)| matches!(p.stage, Stage::AwaitHello | Stage::AwaitToken))
                        .count();
                    if unverified >= MAX_UNVERIFIED {
                        log::debug!("private connection from {from}: refused, too many waiting");
                        continue;
                    }
                    let stream = match &self.tls {
                        None => Stream::from(stream),
                        Some(tls) => match tls.accept(stream) {
                            Ok(stream) => stream,
                            Err(error) => {
                                log::debug!("private connection from {from}: {error}");
                                continue;
                            }
                        },
                    };
                    let entry = self.peers.vacant_entry();
                    let key = entry.key();
                    let mut link = Link::new(stream);
                    if let Err(error) = link.register(registry, peer_token(key), false) {
                        log::debug!("private connection from {from}: {error}");
                        continue;
                    }
                    entry.insert(Peer::new(link, Stage::AwaitHello, now + HELLO_TIMEOUT));
                    // Its `hello` may have come before the registration.
                    self.service(key, registry, now, notes);
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => return,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => {
                    log::debug!("accepting a private connection: {error}");
                    return;
                }
            }
        }
    }

    /// Moves a connection on: finishes connecting, reads and acts on what
    /// the peer sent, and writes what is queued.
    fn service(&mut self, key: usize, registry: &Registry, now: Instant, notes: &mut Vec<String>) {
        let peer = &mut self.peers[key];
        if peer.stage == Stage::Connecting {
            match connection_status(peer.link.transport().socket()) {
                Ok(true) => peer.stage = Stage::AwaitOk,
                Ok(false) => return,
                Err(error) => {
                    log::debug!("private connection to {}: {error}", peer.user);
                    return self.end(key, Ending::Lost, registry, notes);
                }
            }
        }
        if self.read(key, registry, now, notes) != Flow::Ended {
            self.flush(key, registry, notes);
        }
    }

    /// Reads until the socket is drained, the connection ends, a token
    /// has to be waited for, or [`READ_BUDGET`] is used up.
    fn read(
        &mut self,
        key: usize,
        registry: &Registry,
        now: Instant,
        notes: &mut Vec<String>,
    ) -> Flow {
        let mut buf = [0; READ_CHUNK];
        let mut join = Vec::new();
        let mut taken = 0;
        loop {
            let peer = &mut self.peers[key];
            if peer.stage == Stage::AwaitToken {
                return Flow::Hold;
            }
            if taken >= READ_BUDGET {
                self.unfinished.push(key);
                return Flow::Go;
            }
            let held = mem::take(&mut peer.held);
            let chunk: &[u8] = if held.is_empty() {
                match peer.link.read(&mut buf) {
                    Ok(0) => {
                        self.end(key, Ending::Lost, registry, notes);
                        return Flow::Ended;
                    }
                    Ok(n) => {
                        taken += n;
                        &buf[..n]
                    }
                    Err(error) if error.kind() == ErrorKind::WouldBlock => return Flow::Go,
                    Err(error) => {
                        log::debug!("private connection #{key}: {error}");
                        self.end(key, Ending::Lost, registry, notes);
                        return Flow::Ended;
                    }
                }
            } else {
                &held
            };
            let mut lines = mem::take(&mut peer.lines);
            let mut pos = 0;
            let mut flow = Flow::Go;
            while let Some(item) = lines.next_line(chunk, &mut pos, &mut join, MAX_PEER_LINE) {
                flow = match item {
                    Ok(line) => self.on_line(key, line, registry, now, notes),
                    Err(error) => {
                        log::debug!("private connection #{key}: {error}");
                        self.end(key, Ending::Lost, registry, notes);
                        Flow::Ended
                    }
                };
                if flow != Flow::Go {
                    break;
                }
            }
            if flow == Flow::Ended {
                return flow;
            }
            let peer = &mut self.peers[key];
            peer.lines = lines;
            if flow == Flow::Hold {
                peer.held = chunk[pos..].to_vec();
                return flow;
            }
        }
    }

    /// Acts on one line from a peer.
    fn on_line(
        &mut self,
        key: usize,
        line: &[u8],
        registry: &Registry,
        now: Instant,
        notes: &mut Vec<String>,
    ) -> Flow {
        let peer = &mut self.peers[key];
        let ending = match (peer.stage, PeerLine::parse(line)) {
            (Stage::AwaitHello, PeerLine::Hello(token)) => {
                peer.token = token.to_owned();
                let given = self
                    .expected
                    .iter()
                    .position(|e| e.token == token && e.until > now);
                return match given.and_then(|at| self.expected.remove(at)) {
                    Some(expected) if !tls::shows(peer.link.transport(), expected.fingerprint) => {
                        log::debug!(
                            "private connection #{key}: not {}'s certificate",
                            expected.user
                        );
                        self.end(key, Ending::Quiet, registry, notes);
                        Flow::Ended
                    }
                    Some(expected) => self.admit(key, expected.user, registry, notes),
                    None => {
                        peer.stage = Stage::AwaitToken;
                        Flow::Hold
                    }
                };
            }
            (Stage::AwaitOk, PeerLine::Ok) => {
                peer.stage = Stage::Open;
                peer.deadline = None;
                notes.push(format!("Start private messaging with {}", peer.user));
                return Flow::Go;
            }
            (Stage::Open, PeerLine::Message(text)) => {
                let text = String::from_utf8_lossy(text);
                notes.push(format!("{}(private): {text}", peer.user));
                return Flow::Go;
            }
            (Stage::Open, PeerLine::Stop) => Ending::StoppedByPeer,
            (Stage::Open, _) => return Flow::Go,
            (Stage::AwaitOk, PeerLine::Busy) | (Stage::AwaitHello, _) => Ending::Quiet,
            _ => Ending::Lost,
        };
        self.end(key, ending, registry, notes);
        Flow::Ended
    }

    /// Makes an incoming connection whose token checked out the session
    /// with `user`, unless there is one already. When both users started
    /// one with each other at the same moment, the connection with the
    /// smaller token is kept: both clients decide alike.
    fn admit(
        &mut self,
        key: usize,
        user: String,
        registry: &Registry,
        notes: &mut Vec<String>,
    ) -> Flow {
        if let Some(&other) = self.sessions.get(&user) {
            let theirs = &self.peers[other];
            if theirs.is_starting() && self.peers[key].token < theirs.token {
                self.end(other, Ending::Quiet, registry, notes);
            } else {
                self.peers[key].link.queue(BUSY_LINE);
                self.end(key, Ending::Quiet, registry, notes);
                return Flow::Ended;
            }
        }
        let peer = &mut self.peers[key];
        peer.stage = Stage::Open;
        peer.deadline = None;
        peer.link.queue(OK_LINE);
        notes.push(format!("{user} started private messaging with you"));
        peer.user = user.clone();
        self.sessions.insert(user, key);
        Flow::Go
    }

    /// Writes what is queued until the socket is full, and watches for
    /// writability only while something is left.
    fn flush(&mut self, key: usize, registry: &Registry, notes: &mut Vec<String>) {
        let peer = &mut self.peers[key];
        if peer.stage == Stage::Connecting {
            return;
        }
        if let Err(error) = peer
            .link
            .flush()
            .and_then(|()| peer.link.update_interest(registry, peer_token(key)))
        {
            log::debug!("private connection #{key}: {error}");
            self.end(key, Ending::Lost, registry, notes);
        }
    }

    /// The one place a peer connection is removed: it is forgotten, closed,
    /// and the user is told what `ending` means for their session, if it
    /// was the session with that user.
    fn end(&mut self, key: usize, ending: Ending, registry: &Registry, notes: &mut Vec<String>) {
        let mut peer = self.peers.remove(key);
        let was_session = self.sessions.get(&peer.user) == Some(&key);
        if was_session {
            self.sessions.remove(&peer.user);
        }
        let user = &peer.user;
        let note = match (ending, peer.stage) {
            (Ending::Quiet, _) => None,
            _ if !was_session => None,
            (Ending::StoppedHere, _) => Some(format!("Stop private messaging with {user}")),
            (Ending::StoppedByPeer, Stage::Open) => {
                Some(format!("{user} stopped private messaging with you"))
            }
            (Ending::Lost, Stage::Open) => Some(format!(
                "Private messaging with {user} ended: connection lost"
            )),
            _ => Some(could_not_start(user)),
        };
        notes.extend(note);
        if ending == Ending::StoppedHere && says_stop(peer.stage) {
            peer.link.queue(STOP_LINE);
        }
        close(peer, registry);
    }
}

/// Where `startprivate` says to connect: the server's `!private connect`.
struct Target<'a> {
    user: &'a str,
    address: SocketAddr,
    token: &'a str,
    fingerprint: Option<Fingerprint>,
}

/// The poll token of the peer connection with slab key `key`.
fn peer_token(key: usize) -> Token {
    Token(FIRST_PEER + key)
}

/// The line for a session that did not start.
fn could_not_start(user: &str) -> String {
    format!("Error. Private messaging with {user} could not be started")
}
