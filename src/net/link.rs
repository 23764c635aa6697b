//! A connection's one write path: a stream, the output waiting for it, and
//! the `WRITABLE` interest that follows from what is waiting.
//!
//! Every non-blocking connection of the project — the server's clients,
//! the client's link to its server, private peers, the load engine's
//! clients — writes the same way: queue bytes, write until the socket
//! would block, keep the rest, and be registered for `WRITABLE` exactly
//! while something is left ([`Link::interest`]). [`Link`] is that, once.
//!
//! What sits between the socket and the protocol's bytes is a
//! [`Transport`]. A plain TCP stream is one; a TLS session (rustls'
//! `ServerConnection` over the stream) or WebSocket framing would be
//! another: it takes the protocol's bytes in [`Transport::write_bytes`]
//! (encrypting or framing them into a buffer of its own, which it writes
//! out in [`Transport::flush_layer`]) and gives the protocol's bytes back
//! in [`Transport::read_bytes`]. Nothing above the link knows which it is.
//! A plain link can also take bytes straight from a caller's buffer when
//! nothing is waiting ([`Link::write_now`]): the server's fan-out writes
//! from its shared outbox that way without copying.

use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

use super::outbuf::OutBuf;

/// The stream under a [`Link`]: the socket, or a layer over it that turns
/// the protocol's bytes into the socket's and back.
pub trait Transport: Source {
    /// Reads protocol bytes into `buf`: `Ok(0)` is the end of the stream,
    /// `WouldBlock` that nothing is there now.
    fn read_bytes(&mut self, buf: &mut [u8]) -> io::Result<usize>;

    /// Takes what it can of `bytes` without blocking and returns how many
    /// (0 when it takes nothing now); an error means the connection is
    /// broken. A layer that buffers (TLS) may take more than the socket
    /// did: it writes what it made of them until the socket would block,
    /// and keeps the rest ([`Transport::layer_pending`]).
    fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<usize>;

    /// Writes the layer's own waiting bytes (records, frames) until the
    /// socket would block; returns whether some are left. A plain stream
    /// has none.
    fn flush_layer(&mut self) -> io::Result<bool> {
        Ok(false)
    }

    /// Whether the layer has bytes of its own waiting for the socket.
    fn layer_pending(&self) -> bool {
        false
    }

    /// Ends the sending side once everything is written.
    fn shutdown_write(&mut self) -> io::Result<()>;
}

impl Transport for TcpStream {
    fn read_bytes(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.read(buf)
    }

    /// Writes until everything is written or the socket would block,
    /// retrying interruptions; a write of nothing is a broken connection.
    fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut written = 0;
        while written < bytes.len() {
            match self.write(&bytes[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(written)
    }

    fn shutdown_write(&mut self) -> io::Result<()> {
        self.shutdown(Shutdown::Write)
    }
}

/// A stream and its waiting output. See the module documentation.
#[derive(Debug)]
pub struct Link<T = TcpStream> {
    transport: T,
    out: OutBuf,
    /// Whether the stream is registered for `WRITABLE` too.
    writable: bool,
}

impl<T: Transport> Link<T> {
    /// Wraps `transport`, registered for nothing yet.
    pub fn new(transport: T) -> Link<T> {
        Link {
            transport,
            out: OutBuf::default(),
            writable: false,
        }
    }

    /// Registers the stream under `token`, for `READABLE`, and for
    /// `WRITABLE` too if `writable` (a client waiting for its connect to
    /// complete wants that).
    pub fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        writable: bool,
    ) -> io::Result<()> {
        registry.register(&mut self.transport, token, interest(writable))?;
        self.writable = writable;
        Ok(())
    }

    /// Deregisters the stream, before it is dropped.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(&mut self.transport)
    }

    /// The stream.
    pub fn transport(&self) -> &T {
        &self.transport
    }

    /// The stream, for what only it can do (options, a half-close).
    pub fn transport_mut(&mut self) -> &mut T {
        &mut self.transport
    }

    /// The output waiting to be written.
    pub fn out(&self) -> &OutBuf {
        &self.out
    }

    /// The output waiting to be written, to queue into it directly.
    pub fn out_mut(&mut self) -> &mut OutBuf {
        &mut self.out
    }

    /// Bytes queued and not written yet.
    #[inline]
    pub fn pending(&self) -> usize {
        self.out.pending()
    }

    /// Whether anything waits for the socket, the layer's own bytes
    /// included.
    #[inline]
    pub fn has_output(&self) -> bool {
        self.out.pending() > 0 || self.transport.layer_pending()
    }

    /// Queues bytes for [`Link::flush`].
    #[inline]
    pub fn queue(&mut self, bytes: &[u8]) {
        self.out.push(bytes);
    }

    /// Writes what waits until it is all written or the socket would
    /// block: the layer's own bytes first, then the queue in one
    /// [`Transport::write_bytes`] (which writes until the socket would
    /// block; a TLS session makes records of as much of it at once as its
    /// buffer takes). An error means the connection is broken (a write of
    /// nothing is reported as `WriteZero`).
    #[inline]
    pub fn flush(&mut self) -> io::Result<()> {
        if self.transport.flush_layer()? {
            return Ok(());
        }
        if self.out.pending() > 0 {
            let n = self.transport.write_bytes(self.out.unwritten())?;
            self.out.consume(n);
        }
        Ok(())
    }

    /// Writes `bytes` straight from the caller's buffer, bypassing the
    /// queue, and returns how many the stream took; the caller queues the
    /// rest. Only when nothing waits, so that the order of the output is
    /// kept. A layer that buffers takes everything and may keep some of it
    /// for the socket: then [`Link::has_output`] is true afterwards, and
    /// the caller must see that [`Link::update_interest`] follows.
    #[inline]
    pub fn write_now(&mut self, bytes: &[u8]) -> io::Result<usize> {
        debug_assert!(!self.has_output());
        self.transport.write_bytes(bytes)
    }

    /// Reads protocol bytes into `buf`, retrying interruptions: `Ok(0)` is
    /// the end of the stream, `WouldBlock` that nothing is there now.
    #[inline]
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.transport.read_bytes(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }

    /// The interest the link needs: `READABLE`, and `WRITABLE` while
    /// output waits for the socket.
    pub fn interest(&self) -> Interest {
        interest(self.has_output())
    }

    /// Re-registers the stream if [`Link::interest`] changed since it was
    /// last registered (a system call, so only then).
    #[inline]
    pub fn update_interest(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        let want = self.has_output();
        if want != self.writable {
            registry.reregister(&mut self.transport, token, interest(want))?;
            self.writable = want;
        }
        Ok(())
    }

    /// Ends the sending side (once everything is written).
    pub fn shutdown_write(&mut self) -> io::Result<()> {
        self.transport.shutdown_write()
    }

    /// Drops everything queued and frees its buffer.
    pub fn discard_output(&mut self) {
        self.out = OutBuf::default();
    }

    /// Whether the output buffer holds memory but nothing to write.
    pub fn holds_idle_buffer(&self) -> bool {
        self.out.holds_idle_memory()
    }

    /// Frees the output buffer if nothing waits in it.
    pub fn release_idle_buffer(&mut self) {
        self.out.release_if_empty();
    }
}

/// `READABLE`, and `WRITABLE` too if `writable`.
fn interest(writable: bool) -> Interest {
    if writable {
        Interest::READABLE | Interest::WRITABLE
    } else {
        Interest::READABLE
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mio::{Events, Poll};
    use std::time::Duration;

    /// A connected pair: a link on the accepting side, the other end as a
    /// blocking std stream.
    fn pair() -> (Link, std::net::TcpStream) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer =
            std::net::TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (accepted, _) = listener.accept().expect("accept");
        accepted.set_nonblocking(true).expect("nonblocking");
        (Link::new(TcpStream::from_std(accepted)), peer)
    }

    #[test]
    fn output_that_the_socket_does_not_take_waits_and_wants_writable() {
        let (mut link, mut peer) = pair();
        let poll = Poll::new().expect("poll");
        link.register(poll.registry(), Token(1), false)
            .expect("register");
        assert_eq!(link.interest(), Interest::READABLE);
        // More than any socket buffer takes at once.
        let chunk = vec![b'x'; 1 << 20];
        for _ in 0..16 {
            link.queue(&chunk);
        }
        link.flush().expect("flush");
        assert!(link.has_output(), "the socket took 16 MiB at once");
        assert_eq!(link.interest(), Interest::READABLE | Interest::WRITABLE);
        link.update_interest(poll.registry(), Token(1))
            .expect("interest");
        // The peer reads everything; the link writes the rest as it can.
        let total = 16 << 20;
        let reader = std::thread::spawn(move || {
            let mut got = 0;
            let mut buf = vec![0u8; 1 << 16];
            while got < total {
                got += peer.read(&mut buf).expect("read");
            }
            got
        });
        let mut poll = poll;
        let mut events = Events::with_capacity(8);
        while link.has_output() {
            poll.poll(&mut events, Some(Duration::from_secs(5)))
                .expect("poll");
            link.flush().expect("flush");
        }
        link.update_interest(poll.registry(), Token(1))
            .expect("interest");
        assert_eq!(link.interest(), Interest::READABLE);
        assert_eq!(reader.join().expect("reader"), total);
    }

    #[test]
    fn write_now_takes_what_the_socket_takes_and_a_closed_peer_breaks_the_link() {
        let (mut link, peer) = pair();
        assert_eq!(link.write_now(b"hello\n").expect("write"), 6);
        drop(peer);
        // The peer's reset surfaces on a later write.
        let mut broke = false;
        for _ in 0..100 {
            link.queue(&[b'y'; 4096]);
            if link.flush().is_err() {
                broke = true;
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        assert!(broke, "writing to a closed peer never failed");
    }

    #[test]
    fn reads_report_the_end_of_the_stream() {
        let (mut link, mut peer) = pair();
        peer.write_all(b"abc").expect("write");
        drop(peer);
        let mut buf = [0u8; 16];
        let mut got = Vec::new();
        loop {
            match link.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(e) => panic!("read: {e}"),
            }
        }
        assert_eq!(got, b"abc");
    }
}
