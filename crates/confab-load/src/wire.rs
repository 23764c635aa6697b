//! One client connection of a load or soak run, as its engine's `mio` loop
//! sees it: the link (the socket, or a TLS session over it, and the output
//! not written yet, see [`confab::net::link`]) and the start of a line
//! whose `\n` has not arrived. The engines keep one [`Wire`] per client and
//! decide themselves what a closed or failed connection means.
//!
//! A TLS session has output of its own (handshake messages, records the
//! socket did not take yet), so an engine asks [`Wire::has_output`], not
//! [`Wire::pending`], whether a connection needs writing; reading a session
//! until `WouldBlock` also takes the plaintext it decrypted along with its
//! handshake, which no readiness edge would announce again.

use std::collections::VecDeque;
use std::io;
use std::os::fd::AsRawFd;
use std::time::Duration;

use confab::net::link::Link;
use confab::net::stream::Stream;
use mio::event::Event;
use mio::net::TcpStream;
use mio::{Events, Poll, Registry, Token};

/// Size of an engine's read buffer, which every [`Wire::read`] shares.
pub(super) const SCRATCH_SIZE: usize = 64 * 1024;

/// Longest unfinished line kept from the server. The protocol's lines are
/// far shorter, so a longer one means the stream is not what we think.
pub(super) const MAX_LINE: usize = 8 * 1024;

/// Why a connection is of no further use.
#[derive(Debug)]
pub(super) enum Broken {
    /// A read returned 0 (the peer closed the connection), or a write
    /// wrote nothing.
    Closed,
    /// A read or a write failed.
    Failed(io::Error),
}

/// What one read brought.
pub(super) struct Received<'a> {
    /// The unfinished line kept from earlier reads, followed by the new
    /// bytes: whole lines, then the start of the next one.
    pub(super) text: &'a [u8],
    /// How many bytes are new.
    pub(super) new: usize,
}

/// The unfinished line would be longer than [`MAX_LINE`].
#[derive(Debug)]
pub(super) struct LineTooLong;

/// One connection's link and unfinished line.
#[derive(Debug, Default)]
pub(super) struct Wire {
    link: Option<Link<Stream>>,
    /// The start of a line whose `\n` has not arrived.
    partial: Vec<u8>,
    /// Listed in its engine's [`Dirty`] list.
    dirty: bool,
}

/// The connections that have output to write, each listed once.
#[derive(Debug, Default)]
pub(super) struct Dirty(Vec<usize>);

impl Dirty {
    /// Lists connection `i`, whose wire is `wire`, unless it is listed.
    pub(super) fn mark(&mut self, i: usize, wire: &mut Wire) {
        if !std::mem::replace(&mut wire.dirty, true) {
            self.0.push(i);
        }
    }

    /// Empties the list; [`Wire::flush`] unlists each connection.
    pub(super) fn take(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.0)
    }
}

/// Clients read per turn from an [`Unread`] queue (about 5 ms of a
/// storm's presence lines).
pub(super) const READS_PER_TURN: usize = 256;

/// Readable connections whose reading may wait, oldest first, each listed
/// once. A client waiting for an answer (a login in progress) is read in
/// the turn its readiness arrives; the others join this queue, of which
/// each turn reads at most [`READS_PER_TURN`] before polling again. The
/// clients of a run stand for users on machines of their own: a login is
/// answered as soon as its reply arrives, not after this one thread has
/// read a burst of lines to thousands of others.
#[derive(Debug, Default)]
pub(super) struct Unread {
    queue: VecDeque<usize>,
    listed: Vec<bool>,
}

impl Unread {
    /// Lists connection `i` unless it is listed.
    pub(super) fn defer(&mut self, i: usize) {
        if i >= self.listed.len() {
            self.listed.resize(i + 1, false);
        }
        if !std::mem::replace(&mut self.listed[i], true) {
            self.queue.push_back(i);
        }
    }

    /// Whether no connection waits to be read.
    pub(super) fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Unlists the connection listed longest ago, to be read now.
    pub(super) fn next(&mut self) -> Option<usize> {
        let i = self.queue.pop_front()?;
        self.listed[i] = false;
        Some(i)
    }
}

impl Wire {
    /// Takes `stream`, a new connection (plain, or a TLS session whose
    /// client hello waits to be flushed), and registers it under `token`:
    /// for `READABLE`, and for `WRITABLE` too if `writable` (to learn when
    /// a connect completes). Anything left from an earlier connection is
    /// dropped.
    pub(super) fn open(
        &mut self,
        stream: impl Into<Stream>,
        registry: &Registry,
        token: Token,
        writable: bool,
    ) -> io::Result<()> {
        let mut link = Link::new(stream.into());
        link.register(registry, token, writable)?;
        self.link = Some(link);
        self.partial.clear();
        Ok(())
    }

    /// Deregisters the socket and frees the buffers; returns the socket,
    /// which closes when dropped.
    pub(super) fn close(&mut self, registry: &Registry) -> io::Result<Option<Link<Stream>>> {
        self.partial = Vec::new();
        match self.link.take() {
            Some(mut link) => {
                link.deregister(registry)?;
                Ok(Some(link))
            }
            None => Ok(None),
        }
    }

    pub(super) fn is_open(&self) -> bool {
        self.link.is_some()
    }

    /// The socket (under the TLS session, if there is one).
    pub(super) fn stream(&self) -> Option<&TcpStream> {
        self.link.as_ref().map(|link| link.transport().socket())
    }

    /// The start of a line whose `\n` has not arrived.
    pub(super) fn partial(&self) -> &[u8] {
        &self.partial
    }

    /// Bytes queued and not written yet.
    pub(super) fn pending(&self) -> usize {
        self.link.as_ref().map_or(0, Link::pending)
    }

    /// Whether anything waits for the socket: queued bytes, or a TLS
    /// session's own records.
    pub(super) fn has_output(&self) -> bool {
        self.link.as_ref().is_some_and(Link::has_output)
    }

    /// Queues `bytes` for [`Wire::flush`].
    pub(super) fn queue(&mut self, bytes: &[u8]) {
        if let Some(link) = &mut self.link {
            link.queue(bytes);
        }
    }

    /// Queues `line` and a `\n`.
    pub(super) fn queue_line(&mut self, line: &[u8]) {
        self.queue(line);
        self.queue(b"\n");
    }

    /// Writes `bytes` at once, bypassing the queue, as far as the socket
    /// takes them (best effort: for a connection dropped right after).
    pub(super) fn write_now(&mut self, bytes: &[u8]) {
        if let Some(link) = &mut self.link {
            let _ = link.write_now(bytes);
        }
    }

    /// Writes the queued output until done or `WouldBlock`, unlists the
    /// connection, and keeps it registered for `WRITABLE` exactly while
    /// output remains. The inner error is the connection's, for the engine
    /// to handle; the outer one is the registry's.
    pub(super) fn flush(
        &mut self,
        registry: &Registry,
        token: Token,
    ) -> io::Result<Result<(), Broken>> {
        self.dirty = false;
        let Some(link) = self.link.as_mut() else {
            return Ok(Ok(()));
        };
        match link.flush() {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WriteZero => return Ok(Err(Broken::Closed)),
            Err(e) => return Ok(Err(Broken::Failed(e))),
        }
        link.update_interest(registry, token)?;
        Ok(Ok(()))
    }

    /// Registers the socket for `READABLE` alone once nothing is queued
    /// (a ceiling reader whose connect completed), unless it already is.
    pub(super) fn settle_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self.link.as_mut() {
            Some(link) => link.update_interest(registry, token),
            None => Ok(()),
        }
    }

    /// Reads once into `buf` (longer than [`MAX_LINE`]), retrying when
    /// interrupted: `None` if nothing is there or the connection is closed.
    /// The unfinished line moves from the connection to the start of the
    /// bytes received; give back what follows their last `\n` with
    /// [`Wire::keep_partial`].
    pub(super) fn read<'a>(&mut self, buf: &'a mut [u8]) -> Result<Option<Received<'a>>, Broken> {
        let Some(link) = self.link.as_mut() else {
            return Ok(None);
        };
        let kept = self.partial.len();
        debug_assert!(kept < buf.len(), "no room to read after the partial line");
        match link.read(&mut buf[kept..]) {
            Ok(0) => Err(Broken::Closed),
            Ok(new) => {
                buf[..kept].copy_from_slice(&self.partial);
                self.partial.clear();
                let text = &buf[..kept + new];
                Ok(Some(Received { text, new }))
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(Broken::Failed(e)),
        }
    }

    /// Keeps `rest`, the bytes after the last `\n` of what a read
    /// received, as the start of the next line, unless the connection was
    /// closed meanwhile. Returns the unfinished line, in which a login
    /// prompt is recognised.
    pub(super) fn keep_partial(&mut self, rest: &[u8]) -> Result<&[u8], LineTooLong> {
        if self.link.is_some() {
            if self.partial.len() + rest.len() > MAX_LINE {
                return Err(LineTooLong);
            }
            self.partial.extend_from_slice(rest);
        }
        Ok(&self.partial)
    }

    /// Answers the login prompt held as the unfinished line with `reply`.
    pub(super) fn answer_prompt(&mut self, reply: &str) {
        self.partial.clear();
        self.queue_line(reply.as_bytes());
    }
}

/// Where the next `\n` is (the load engine scans every byte the server
/// sends, so the search is the `memchr` crate's vectorised one).
pub fn find_newline(bytes: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', bytes)
}

/// Makes closing `stream` reset the connection.
pub(super) fn set_linger_zero(stream: &TcpStream) -> io::Result<()> {
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

/// Polls, retrying when a signal interrupts the wait.
pub(super) fn poll_retrying(
    poll: &mut Poll,
    events: &mut Events,
    timeout: Option<Duration>,
) -> io::Result<()> {
    loop {
        match poll.poll(events, timeout) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            result => return result,
        }
    }
}

/// An event as (token, readable, writable); a closed or failed socket
/// counts as readable, so that reading it finds out what happened.
pub(super) fn readiness(event: &Event) -> (usize, bool, bool) {
    let readable = event.is_readable() || event.is_read_closed() || event.is_error();
    (event.token().0, readable, event.is_writable())
}

#[cfg(test)]
mod tests {
    use std::io::{Read as _, Write as _};
    use std::net::TcpListener;

    use super::*;

    #[test]
    fn unread_lists_each_connection_once_oldest_first() {
        let mut unread = Unread::default();
        for i in [3, 1, 3, 0] {
            unread.defer(i);
        }
        assert_eq!(unread.next(), Some(3));
        unread.defer(3);
        assert_eq!(
            std::iter::from_fn(|| unread.next()).collect::<Vec<_>>(),
            [1, 0, 3]
        );
        assert!(unread.is_empty());
    }

    #[test]
    fn finds_newlines() {
        assert_eq!(find_newline(b"ab\ncd\n"), Some(2));
        assert_eq!(find_newline(b"abc"), None);
        assert_eq!(find_newline(b""), None);
    }

    /// A connected wire registered with `poll`, and the peer's socket.
    fn connected(poll: &Poll) -> (Wire, std::net::TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let std_stream =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        std_stream.set_nonblocking(true).expect("nonblocking");
        let (peer, _) = listener.accept().expect("accept");
        let mut wire = Wire::default();
        let stream = TcpStream::from_std(std_stream);
        wire.open(stream, poll.registry(), Token(0), false)
            .expect("register");
        (wire, peer)
    }

    /// Reads until something arrives: the text and how much of it is new.
    fn read_some(wire: &mut Wire, buf: &mut [u8]) -> (Vec<u8>, usize) {
        for _ in 0..1000 {
            if let Some(received) = wire.read(buf).expect("read") {
                return (received.text.to_vec(), received.new);
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        panic!("nothing arrived");
    }

    #[test]
    fn unfinished_lines_are_joined_with_the_next_read() {
        let poll = Poll::new().expect("poll");
        let (mut wire, mut peer) = connected(&poll);
        let mut buf = vec![0; SCRATCH_SIZE];
        peer.write_all(b"one\ntw").expect("write");
        assert_eq!(read_some(&mut wire, &mut buf), (b"one\ntw".to_vec(), 6));
        assert_eq!(wire.keep_partial(b"tw").expect("short"), b"tw");
        peer.write_all(b"o\n").expect("write");
        assert_eq!(read_some(&mut wire, &mut buf), (b"two\n".to_vec(), 2));
        assert_eq!(wire.keep_partial(b"").expect("short"), b"");
        assert!(wire.keep_partial(&[b'x'; MAX_LINE + 1]).is_err());
        drop(peer);
        for _ in 0..1000 {
            match wire.read(&mut buf) {
                Ok(None) => std::thread::sleep(Duration::from_millis(1)),
                Err(Broken::Closed) => return,
                other => panic!("{:?}", other.map(|r| r.map(|r| r.new))),
            }
        }
        panic!("the close did not arrive");
    }

    #[test]
    fn flush_writes_the_queue_and_tracks_writable() {
        let poll = Poll::new().expect("poll");
        let (mut wire, mut peer) = connected(&poll);
        let mut dirty = Dirty::default();
        dirty.mark(7, &mut wire);
        dirty.mark(7, &mut wire);
        assert_eq!(dirty.take(), [7]);
        wire.queue(b"hello ");
        wire.queue_line(b"world");
        let flushed = wire.flush(poll.registry(), Token(0)).expect("registry");
        assert!(flushed.is_ok());
        assert_eq!(wire.pending(), 0);
        let interest = wire.link.as_ref().map(Link::interest);
        assert_eq!(interest, Some(mio::Interest::READABLE));
        dirty.mark(7, &mut wire);
        assert_eq!(dirty.take(), [7], "flushing unlists");
        let mut got = [0; 12];
        peer.read_exact(&mut got).expect("read");
        assert_eq!(&got, b"hello world\n");
        assert!(wire.close(poll.registry()).expect("deregister").is_some());
        assert!(!wire.is_open());
        let flushed = wire.flush(poll.registry(), Token(0)).expect("registry");
        assert!(flushed.is_ok(), "a closed wire has nothing to write");
    }
}
