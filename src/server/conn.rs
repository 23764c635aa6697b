//! One client connection: its socket, the leftover of a partial line, and
//! the output waiting to be written. Where it stands in the loop's
//! schedule (dirty, doomed, held, unread) is not here but in
//! [`super::conns`], the one place that changes it.
//!
//! Reads go into the server's shared scratch buffer; a connection keeps only
//! the bytes of a line that has not ended yet, so an idle connection holds
//! no large buffer. Both buffers are bounded: a partial line by the line
//! limit (past it the line is discarded up to its `\n`), the output by the
//! server's backlog limit (past it the connection is cut off).
//!
//! A connection from an untrusted address also carries its place against
//! the command rate ([`Pace`]) and, when it got ahead of it, the input it
//! has read but not handled yet; a logged-in one with offline mail, its
//! [`Backlog`].

use std::io;

use super::backlog::Backlog;
use super::conns::Schedule;
use super::web::HttpStage;
use crate::net::lines::LineSplitter;
use crate::net::link::Link;
use crate::net::outbuf::OutBuf;
use crate::net::stream::Stream;
use crate::rate::Pace;
use crate::trust::IpKey;

/// The state of one accepted connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket (or the TLS session over it) and the output waiting
    /// for it.
    pub link: Link<Stream>,
    /// Distinguishes this connection from earlier ones in the same slab
    /// slot, for timers that refer to it.
    pub serial: u64,
    /// Cuts the input into lines, keeping an unfinished one.
    pub lines: LineSplitter,
    /// The domain closed the session (or the peer finished sending): flush
    /// the output, then close. No more input is read.
    pub closing: bool,
    /// Where it stands in the loop's schedule (only [`super::conns`] reads
    /// or changes it).
    pub schedule: Schedule,
    /// What an untrusted connection is held to; `None` for a trusted one.
    /// Boxed, like the backlog, so that a connection that needs neither
    /// costs a pointer for each.
    pub limited: Option<Box<Limited>>,
    /// Its offline mail, while that is being written.
    pub backlog: Option<Box<Backlog>>,
    /// A web connection that has not made its HTTP request yet: no
    /// session of the domain (see [`super::web`]).
    pub http: Option<Box<HttpStage>>,
}

/// The state of a connection from an untrusted address.
#[derive(Debug)]
pub struct Limited {
    /// The address it counts against for `--max-per-ip`.
    pub address: IpKey,
    /// Its place against the command rate.
    pub pace: Pace,
    /// Input read but not handled yet because the connection got ahead of
    /// its rate; handled, before anything more is read, once it may go on.
    pub stash: Vec<u8>,
    /// Ahead of its rate: nothing is read until the server's timer says.
    pub paused: bool,
}

impl Conn {
    /// Wraps a freshly accepted, registered link; `address` is what it
    /// counts against, `None` for a trusted one, which is not held to the
    /// rate.
    pub fn new(link: Link<Stream>, serial: u64, address: Option<IpKey>) -> Conn {
        Conn {
            link,
            serial,
            lines: LineSplitter::default(),
            closing: false,
            schedule: Schedule::default(),
            limited: address.map(|address| {
                Box::new(Limited {
                    address,
                    pace: Pace::default(),
                    stash: Vec::new(),
                    paused: false,
                })
            }),
            backlog: None,
            http: None,
        }
    }

    /// Bytes queued and not yet written that count against the backlog
    /// limit: while offline mail is being written, only what waits behind
    /// it.
    #[inline]
    pub fn pending(&self) -> usize {
        match &self.backlog {
            Some(backlog) => backlog.deferred.pending(),
            None => self.link.pending(),
        }
    }

    /// Whether anything at all waits for the socket.
    #[inline]
    pub fn has_output(&self) -> bool {
        self.link.has_output()
    }

    /// Queues bytes for writing, behind the offline mail if that is being
    /// written.
    #[inline]
    pub fn queue(&mut self, bytes: &[u8]) {
        match &mut self.backlog {
            Some(backlog) => backlog.deferred.push(bytes),
            None => self.link.queue(bytes),
        }
    }

    /// The output buffer and the backlog, for the server to queue mail.
    pub fn backlog_mut(&mut self) -> Option<(&mut OutBuf, &mut Backlog)> {
        let backlog = self.backlog.as_deref_mut()?;
        Some((self.link.out_mut(), backlog))
    }

    /// Whether it is ahead of its rate and waits for the server's timer.
    #[inline]
    pub fn paused(&self) -> bool {
        self.limited.as_ref().is_some_and(|l| l.paused)
    }

    /// The address it counts against, `None` for a trusted one.
    pub fn address(&self) -> Option<IpKey> {
        self.limited.as_ref().map(|l| l.address)
    }

    /// Ends the backlog: what waited behind it follows (a backlog given up
    /// halfway keeps its unstarted lines in the mailbox; see
    /// [`Backlog::abandon`]).
    pub fn end_backlog(&mut self) {
        if let Some(backlog) = self.backlog.take() {
            (*backlog).abandon(self.link.out_mut());
        }
    }

    /// Drops all queued output and frees its buffer.
    pub fn discard_output(&mut self) {
        self.link.discard_output();
        self.backlog = None;
    }

    /// Frees the output buffer if nothing is pending. The server calls this
    /// periodically rather than after every write: a busy connection reuses
    /// its buffer from one iteration to the next (no allocation and no page
    /// faults per write), an idle one ends up holding none.
    pub fn release_idle_buffer(&mut self) {
        self.link.release_idle_buffer();
    }

    /// Writes queued output until it is all written or the socket would
    /// block. An error means the connection is broken.
    #[inline]
    pub fn flush(&mut self) -> io::Result<()> {
        self.link.flush()
    }

    /// Writes `bytes` straight to the socket, bypassing the output buffer,
    /// and returns how many it took. Only for a connection with nothing
    /// pending and no offline mail in progress, so that the order of its
    /// output is kept.
    #[inline]
    pub fn write_direct(&mut self, bytes: &[u8]) -> io::Result<usize> {
        debug_assert!(self.backlog.is_none());
        self.link.write_now(bytes)
    }
}
