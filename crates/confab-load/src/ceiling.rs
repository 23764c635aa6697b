//! The physical fan-out limit: a minimal `mio` loop on its own thread that
//! writes pre-built lines to every accepted socket, with no protocol, no
//! parsing and no per-message work at all.
//!
//! It accepts the expected number of connections, then for `duration`
//! writes one cyclic batch of identical lines to each socket whenever the
//! socket can take more (until `WouldBlock`, then on its `WRITABLE` edge),
//! and finally closes them. The load engine reads and parses those lines
//! exactly as it reads a fan-out's deliveries, so the two figures compare.
//!
//! Like the fan-out's broadcaster, the writer keeps at most a window of
//! lines in flight to each reader: the engine publishes each reader's
//! count of received lines in a shared [`Progress`] table, indexed by the
//! reader's port. A socket held back by its window has no readiness event
//! to wake the writer, so while any is held the writer also wakes every
//! millisecond to look again.

use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

use super::wire::poll_retrying;

/// The listener's token; sockets use their index.
const LISTENER: Token = Token(usize::MAX);
/// Bytes of the pre-built batch (whole lines).
const BATCH_BYTES: usize = 64 * 1024;
/// Poll events handled per wake-up.
const EVENTS_CAPACITY: usize = 1024;
/// How often the writer looks at sockets held back by their window.
const HELD_RECHECK: Duration = Duration::from_millis(1);

/// Lines received by each reader, indexed by the reader's local port: the
/// load engine stores, the writer loads.
pub(super) type Progress = Arc<[AtomicU64]>;

/// A [`Progress`] table with every count at zero.
fn new_progress() -> Progress {
    (0..=u16::MAX).map(|_| AtomicU64::new(0)).collect()
}

/// The writer thread, running.
pub(super) struct Ceiling {
    addr: SocketAddr,
    progress: Progress,
    thread: JoinHandle<io::Result<Vec<u64>>>,
}

/// What the writer needs to know besides its sockets.
struct Plan {
    count: usize,
    batch: Vec<u8>,
    line_len: u64,
    window_lines: u64,
    duration: Duration,
    accept_timeout: Duration,
    progress: Progress,
}

impl Ceiling {
    /// Listens on `127.0.0.1` and a free port; once `sockets` connections
    /// arrived (within `accept_timeout`), writes copies of `line` to each
    /// for `duration`, at most `window_lines` lines ahead of what its reader
    /// reported in [`Ceiling::progress`].
    pub(super) fn start(
        sockets: usize,
        line: &[u8],
        window_lines: u64,
        duration: Duration,
        accept_timeout: Duration,
    ) -> io::Result<Ceiling> {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let addr = listener.local_addr()?;
        let copies = (BATCH_BYTES / line.len()).max(1);
        let progress = new_progress();
        let plan = Plan {
            count: sockets,
            batch: line.repeat(copies),
            line_len: line.len() as u64,
            window_lines,
            duration,
            accept_timeout,
            progress: Arc::clone(&progress),
        };
        let thread = thread::Builder::new()
            .name("confab-ceiling".into())
            .spawn(move || serve(listener, &plan))?;
        Ok(Ceiling {
            addr,
            progress,
            thread,
        })
    }

    /// Where the writer listens.
    pub(super) fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// The table where readers report the lines they received.
    pub(super) fn progress(&self) -> Progress {
        Arc::clone(&self.progress)
    }

    /// Waits for the writer to finish; returns the bytes written to each
    /// socket.
    pub(super) fn finish(self) -> io::Result<Vec<u64>> {
        self.thread
            .join()
            .map_err(|_| io::Error::other("ceiling thread panicked"))?
    }
}

/// The writer's loop: accept the sockets, write for the duration, close.
fn serve(mut listener: TcpListener, plan: &Plan) -> io::Result<Vec<u64>> {
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(EVENTS_CAPACITY);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)?;
    let accept_deadline = Instant::now() + plan.accept_timeout;
    let mut sockets: Vec<Socket> = Vec::with_capacity(plan.count);
    while sockets.len() < plan.count {
        let now = Instant::now();
        if now >= accept_deadline {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("ceiling: {} of {} connected", sockets.len(), plan.count),
            ));
        }
        poll_retrying(&mut poll, &mut events, Some(accept_deadline - now))?;
        loop {
            match listener.accept() {
                Ok((mut stream, peer)) => {
                    stream.set_nodelay(true)?;
                    poll.registry().register(
                        &mut stream,
                        Token(sockets.len()),
                        Interest::WRITABLE,
                    )?;
                    sockets.push(Socket {
                        stream,
                        port: usize::from(peer.port()),
                        written: 0,
                        held: false,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
    poll.registry().deregister(&mut listener)?;
    let mut held = Vec::new();
    for (i, socket) in sockets.iter_mut().enumerate() {
        write_some(socket, plan, i, &mut held)?;
    }
    let end = Instant::now() + plan.duration;
    loop {
        let now = Instant::now();
        if now >= end {
            break;
        }
        let mut timeout = end - now;
        if !held.is_empty() {
            timeout = timeout.min(HELD_RECHECK);
        }
        poll_retrying(&mut poll, &mut events, Some(timeout))?;
        for event in &events {
            let i = event.token().0;
            if let Some(socket) = sockets.get_mut(i) {
                write_some(socket, plan, i, &mut held)?;
            }
        }
        for i in std::mem::take(&mut held) {
            let socket = &mut sockets[i];
            socket.held = false;
            write_some(socket, plan, i, &mut held)?;
        }
    }
    let mut written = Vec::with_capacity(sockets.len());
    for socket in &mut sockets {
        poll.registry().deregister(&mut socket.stream)?;
        // The reader sees the end of the stream after the last byte.
        socket.stream.shutdown(std::net::Shutdown::Write)?;
        written.push(socket.written);
    }
    Ok(written)
}

/// One accepted socket.
struct Socket {
    stream: TcpStream,
    /// The reader's port: its index in the progress table.
    port: usize,
    /// Bytes written so far (the batch repeats, so this is also where in
    /// the batch the next write starts).
    written: u64,
    /// Listed in the held list.
    held: bool,
}

/// Writes the cyclic batch to socket `i` until it would block or its reader
/// has a full window in flight; in the second case lists it in `held`.
fn write_some(socket: &mut Socket, plan: &Plan, i: usize, held: &mut Vec<usize>) -> io::Result<()> {
    let batch_len = plan.batch.len() as u64;
    loop {
        let received = plan.progress[socket.port].load(Ordering::Relaxed);
        let allowed = (received + plan.window_lines) * plan.line_len;
        let room = allowed.saturating_sub(socket.written);
        if room == 0 {
            if !socket.held {
                socket.held = true;
                held.push(i);
            }
            return Ok(());
        }
        let at = socket.written % batch_len;
        let len = room.min(batch_len - at);
        // Both bounds are within the batch, whose length fits in usize.
        let chunk = &plan.batch[at as usize..(at + len) as usize];
        match socket.stream.write(chunk) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => socket.written += n as u64,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}
