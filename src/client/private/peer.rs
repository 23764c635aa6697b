//! One connection with another client: where it is in the handshake, its
//! link and the line it is reading, and how it is closed.

use std::io::{self, ErrorKind};
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;
use mio::Registry;

use super::{DRAIN_LIMIT, READ_CHUNK};
use crate::net::lines::LineSplitter;
use crate::net::link::Link;
use crate::net::stream::Stream;

/// Where a peer connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stage {
    /// Outgoing: the TCP connection is being made.
    Connecting,
    /// Outgoing: `hello` is sent, `ok` is awaited.
    AwaitOk,
    /// Incoming: `hello` is awaited.
    AwaitHello,
    /// Incoming: `hello` came with a token the server has not given (yet:
    /// its line may still be on the way).
    AwaitToken,
    /// The session is open.
    Open,
}

/// One connection with another client.
pub(super) struct Peer {
    /// The connection (plain, or TLS when the server link is) and what
    /// waits to be written to it.
    pub(super) link: Link<Stream>,
    pub(super) stage: Stage,
    /// The other user: known from the start when connecting, once the
    /// token is checked when accepting.
    pub(super) user: String,
    /// The session's token: known from the start when connecting, from
    /// the `hello` line when accepting.
    pub(super) token: String,
    pub(super) lines: LineSplitter,
    /// Bytes read after a `hello` whose token is not known yet, read again
    /// once it is.
    pub(super) held: Vec<u8>,
    /// When the handshake must be over.
    pub(super) deadline: Option<Instant>,
}

impl Peer {
    /// A connection in `stage` that must finish its handshake by
    /// `deadline`.
    pub(super) fn new(link: Link<Stream>, stage: Stage, deadline: Instant) -> Self {
        Self {
            link,
            stage,
            user: String::new(),
            token: String::new(),
            lines: LineSplitter::default(),
            held: Vec::new(),
            deadline: Some(deadline),
        }
    }

    /// An outgoing connection whose session is not open yet.
    pub(super) fn is_starting(&self) -> bool {
        matches!(self.stage, Stage::Connecting | Stage::AwaitOk)
    }
}

/// Whether a non-blocking connect has finished: `Ok(false)` while it is
/// still going, the error if it failed.
pub(super) fn connection_status(stream: &TcpStream) -> io::Result<bool> {
    if let Some(error) = stream.take_error()? {
        return Err(error);
    }
    match stream.peer_addr() {
        Ok(_) => Ok(true),
        Err(error) if error.kind() == ErrorKind::NotConnected => Ok(false),
        Err(error) => Err(error),
    }
}

/// Whether ending the connection from this side must say `stop`: the peer
/// may have opened the session already once it has read our `hello`.
pub(super) fn says_stop(stage: Stage) -> bool {
    matches!(stage, Stage::AwaitOk | Stage::Open)
}

/// Closes a connection: what is queued is written if the socket takes it at once, unread input is dropped so the
/// close is an orderly end of stream, and the socket is shut down.
pub(super) fn close(mut peer: Peer, registry: &Registry) {
    if let Err(error) = peer.link.deregister(registry) {
        log::debug!("private connection: deregister: {error}");
    }
    if peer.stage != Stage::Connecting {
        // Best effort: what the socket takes at once.
        let _ = peer.link.flush();
    }
    let mut buf = [0; READ_CHUNK];
    let mut drained = 0;
    while drained < DRAIN_LIMIT {
        match peer.link.read(&mut buf) {
            Ok(n @ 1..) => drained += n,
            _ => break,
        }
    }
    if let Err(error) = peer.link.transport().socket().shutdown(Shutdown::Both) {
        log::debug!("private connection: shutdown: {error}");
    }
}
