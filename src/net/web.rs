//! A WebSocket over a non-blocking stream, as a [`Transport`]: the
//! protocol's lines travel as text messages, one line per message, both
//! ways (see `docs/web.md`).
//!
//! A [`WebStream`] starts *raw*: its bytes are the stream's, so that the
//! server can read the HTTP request and write its answer through the same
//! link as everything else. [`WebStream::open`] queues the `101` answer
//! ahead of any frame and from then on it frames: tungstenite does the
//! WebSocket protocol (masking, fragments, control frames, the limits of
//! [`MAX_MESSAGE`]), this moves its bytes under edge-triggered readiness,
//! like [`super::tls`] does for rustls.
//!
//! Reading gives each text message as the protocol's bytes of one line:
//! the message up to its first `\n` (the rest of it is dropped, so that a
//! message is never two commands), then `\n`. Pings are answered (the pong
//! goes out with the next flush) and the peer's close is answered with
//! one; a binary message, a message over [`MAX_MESSAGE`], a text that is
//! not UTF-8 or a protocol error closes the WebSocket with a close frame
//! of its own code (1003, 1009, 1007, 1002). Any of these ends the
//! stream: the read returns `Ok(0)`, and the close frame is written like
//! other output before the connection is closed.
//!
//! Writing takes whole lines and sends each one, without its `\n`, as one
//! text message; a trailing piece without `\n` (only the prompts are
//! that) is a message of its own. Frames wait in tungstenite until the
//! socket takes them, at most [`BUFFER_LIMIT`] bytes of lines at a time;
//! past it a write takes nothing more and the rest waits in the link.
//! Once the WebSocket is closed, whatever is written is dropped.
//!
//! [`WebStream::client`] is the other side, for the load tools: it sends
//! the upgrade request itself, reads the server's answer raw up to its
//! blank line, and frames (masked, as a client must) once that was a
//! `101`; the lines it reads and writes are the same.

use std::io::{self, Read, Write};

use mio::event::Source;
use mio::{Interest, Registry, Token};
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::{CloseFrame, Role, WebSocketConfig};
use tungstenite::{Error, Message, WebSocket};

use super::link::Transport;
use crate::protocol::PROMPTS;

/// The largest frame, and the largest message, a peer may send: past it
/// the WebSocket is closed (1009).
pub const MAX_MESSAGE: usize = 64 * 1024;
/// Bytes of lines that may wait in the WebSocket for the socket; past it a
/// write takes nothing more (the link keeps the rest, bounded by the
/// server's backlog limit).
pub const BUFFER_LIMIT: usize = 64 * 1024;
/// What tungstenite reads from the socket at a time (allocated at once
/// for every connection, so small).
const READ_CHUNK: usize = 4 * 1024;
/// The most a server frame's header adds to its line.
const FRAME_OVERHEAD: usize = 10;

/// Longest answer to a client's upgrade request read before framing.
const MAX_ANSWER: usize = 4096;

/// A transport seen as `Read + Write`, as tungstenite wants its stream:
/// a write that takes nothing is `WouldBlock`, and a flush that leaves
/// bytes in the layer is too. A client's stream may have read the first
/// frames with the server's answer: they are read from `early` first.
#[derive(Debug)]
struct Layer<T>(T, Vec<u8>);

impl<T: Transport> Read for Layer<T> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if !self.1.is_empty() {
            let n = self.1.len().min(buf.len());
            buf[..n].copy_from_slice(&self.1[..n]);
            self.1.drain(..n);
            return Ok(n);
        }
        loop {
            match self.0.read_bytes(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => return result,
            }
        }
    }
}

impl<T: Transport> Write for Layer<T> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self.0.write_bytes(bytes)? {
            0 if !bytes.is_empty() => Err(io::ErrorKind::WouldBlock.into()),
            n => Ok(n),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        if self.0.flush_layer()? {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(())
    }
}

/// The limits of every server WebSocket: small reads, frames and messages
/// of at most [`MAX_MESSAGE`], and no writing on its own (the stream
/// writes when it flushes).
fn config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_CHUNK)
        .write_buffer_size(usize::MAX - 1)
        .max_write_buffer_size(usize::MAX)
        .max_frame_size(Some(MAX_MESSAGE))
        .max_message_size(Some(MAX_MESSAGE))
}

/// A stream that is raw until [`WebStream::open`], a WebSocket after. See
/// the module documentation.
#[derive(Debug)]
pub struct WebStream<T> {
    ws: WebSocket<Layer<T>>,
    /// Framing: the handshake is done.
    open: bool,
    /// Raw bytes to write before any frame (the `101` answer).
    raw: Vec<u8>,
    /// The message being read, as a line with its `\n`, and how much of it
    /// was read.
    incoming: Vec<u8>,
    taken: usize,
    /// The WebSocket is over (closed by either side, or failed): reads
    /// return the end of the stream.
    ended: bool,
    /// Frames may wait in tungstenite or below for the socket.
    unflushed: bool,
    /// Bytes of lines given to tungstenite since it last wrote everything.
    buffered: usize,
    /// A client's stream: the server's answer to its request so far,
    /// until it is complete.
    answer: Option<Vec<u8>>,
    /// A client's stream: the login prompts are read without a `\n`, as
    /// over TCP, so that its bytes are the protocol's exactly.
    bare_prompts: bool,
}

impl<T: Transport> WebStream<T> {
    /// A stream over `inner` (a connected non-blocking socket, or a layer
    /// over one), raw for now.
    pub fn new(inner: T) -> WebStream<T> {
        Self::with_role(inner, Role::Server)
    }

    /// A client's stream over `inner` (a connection, or a connect in
    /// progress, to the web port of `host`): its upgrade request of
    /// `/ws` goes out with the first flush, and it frames once the server
    /// has answered `101`.
    pub fn client(inner: T, host: &str) -> WebStream<T> {
        let mut stream = Self::with_role(inner, Role::Client);
        let key = tungstenite::handshake::client::generate_key();
        stream.raw = format!(
            "GET /ws HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\n\
             Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n\
             Sec-WebSocket-Version: 13\r\n\r\n"
        )
        .into_bytes();
        stream.answer = Some(Vec::new());
        stream.bare_prompts = true;
        stream
    }

    fn with_role(inner: T, role: Role) -> WebStream<T> {
        WebStream {
            ws: WebSocket::from_raw_socket(Layer(inner, Vec::new()), role, Some(config())),
            open: false,
            raw: Vec::new(),
            incoming: Vec::new(),
            taken: 0,
            ended: false,
            unflushed: false,
            buffered: 0,
            answer: None,
            bare_prompts: false,
        }
    }

    /// A client reads the server's answer: once its head is complete, a
    /// `101` opens framing (what followed it is the first frames), any
    /// other answer is an error.
    fn read_answer(&mut self) -> io::Result<()> {
        let mut buf = [0; 1024];
        while let Some(answer) = &mut self.answer {
            let n = self.ws.get_mut().0.read_bytes(&mut buf)?;
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            answer.extend_from_slice(&buf[..n]);
            let Some(end) = memchr::memmem::find(answer, b"\r\n\r\n") else {
                if answer.len() > MAX_ANSWER {
                    return Err(io::Error::other("the upgrade answer is too long"));
                }
                continue;
            };
            if !answer.starts_with(b"HTTP/1.1 101") {
                let status = String::from_utf8_lossy(&answer[..end.min(64)]).into_owned();
                return Err(io::Error::other(format!("upgrade refused: {status}")));
            }
            let early = answer.split_off(end + 4);
            self.ws.get_mut().1 = early;
            self.answer = None;
            self.open = true;
        }
        Ok(())
    }

    /// The stream under the WebSocket.
    pub fn inner(&self) -> &T {
        &self.ws.get_ref().0
    }

    fn inner_mut(&mut self) -> &mut T {
        &mut self.ws.get_mut().0
    }

    /// Ends the handshake: `answer` (the `101` response) is written raw,
    /// ahead of everything, and from now on the stream frames.
    pub fn open(&mut self, answer: &[u8]) {
        self.raw.extend_from_slice(answer);
        self.open = true;
    }

    /// Closes the WebSocket with `code` after what is queued; the stream
    /// ends.
    fn fail(&mut self, code: CloseCode, reason: &'static str) {
        self.ended = true;
        self.unflushed = true;
        let frame = CloseFrame {
            code,
            reason: reason.into(),
        };
        // What the socket does not take now goes out with the next flush;
        // an error here shows again there.
        let _ = self.ws.close(Some(frame));
    }

    /// Reads the next message into `incoming`; `Ok(false)` if there is
    /// none (the stream ended).
    fn next_message(&mut self) -> io::Result<bool> {
        loop {
            if self.ended {
                return Ok(false);
            }
            match self.ws.read() {
                Ok(Message::Text(text)) => {
                    let bytes = text.as_bytes();
                    let line = memchr::memchr(b'\n', bytes).map_or(bytes, |end| &bytes[..end]);
                    self.incoming.clear();
                    self.incoming.extend_from_slice(line);
                    let prompt = PROMPTS.contains(&text.as_str());
                    if !(self.bare_prompts && prompt) {
                        self.incoming.push(b'\n');
                    }
                    self.taken = 0;
                    return Ok(true);
                }
                Ok(Message::Binary(_)) => {
                    self.fail(CloseCode::Unsupported, "text messages only");
                }
                // A pong is queued for a ping, a close for a close.
                Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) => {
                    self.unflushed = true;
                }
                Ok(Message::Close(_)) => {
                    self.unflushed = true;
                    self.ended = true;
                }
                Err(Error::Io(e)) => return Err(e),
                Err(Error::ConnectionClosed | Error::AlreadyClosed) => self.ended = true,
                Err(Error::Capacity(_)) => self.fail(CloseCode::Size, "message too big"),
                Err(Error::Utf8(_)) => self.fail(CloseCode::Invalid, "text is not UTF-8"),
                Err(Error::Protocol(_)) => self.fail(CloseCode::Protocol, "protocol error"),
                Err(e) => return Err(io::Error::other(e)),
            }
        }
    }

    /// Writes the raw bytes waiting; whether some are left.
    fn flush_raw(&mut self) -> io::Result<bool> {
        if self.raw.is_empty() {
            return Ok(false);
        }
        let mut raw = std::mem::take(&mut self.raw);
        let n = self.inner_mut().write_bytes(&raw)?;
        raw.drain(..n);
        self.raw = raw;
        Ok(!self.raw.is_empty())
    }
}

/// A tungstenite error as the I/O error a link reports.
fn io_error(e: Error) -> io::Error {
    match e {
        Error::Io(e) => e,
        e => io::Error::other(e),
    }
}

impl<T: Transport> Transport for WebStream<T> {
    fn read_bytes(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.answer.is_some() {
            self.read_answer()?;
        }
        if !self.open {
            return self.inner_mut().read_bytes(buf);
        }
        if self.taken == self.incoming.len() && !self.next_message()? {
            return Ok(0);
        }
        let rest = &self.incoming[self.taken..];
        let n = rest.len().min(buf.len());
        buf[..n].copy_from_slice(&rest[..n]);
        self.taken += n;
        Ok(n)
    }

    /// Frames whole lines (and a trailing piece) as text messages and
    /// writes them, until all are taken or [`BUFFER_LIMIT`] bytes of them
    /// wait for a socket that would block.
    fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<usize> {
        if self.answer.is_some() {
            // A client's lines wait in the link until framing starts.
            return Ok(0);
        }
        if !self.open {
            return self.inner_mut().write_bytes(bytes);
        }
        if !self.ws.can_write() {
            return Ok(bytes.len());
        }
        let mut taken = 0;
        loop {
            while taken < bytes.len() && self.buffered < BUFFER_LIMIT {
                let rest = &bytes[taken..];
                let (line, used) = match memchr::memchr(b'\n', rest) {
                    Some(end) => (&rest[..end], end + 1),
                    None => (rest, rest.len()),
                };
                // The server's lines are its domain's strings; the check
                // only guards the type (SIMD: the same line goes to every
                // listener of a broadcast).
                let text = match simdutf8::basic::from_utf8(line) {
                    Ok(text) => Message::text(text),
                    Err(_) => Message::text(String::from_utf8_lossy(line).into_owned()),
                };
                match self.ws.write(text) {
                    Ok(()) => {}
                    Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(io_error(e)),
                }
                self.buffered += line.len() + FRAME_OVERHEAD;
                self.unflushed = true;
                taken += used;
            }
            // Once the socket took everything, the next lines may follow.
            if self.flush_layer()? || taken == bytes.len() {
                return Ok(taken);
            }
        }
    }

    fn flush_layer(&mut self) -> io::Result<bool> {
        if self.inner_mut().flush_layer()? || self.flush_raw()? {
            return Ok(true);
        }
        if !self.open || !self.unflushed {
            return Ok(false);
        }
        match self.ws.flush() {
            Ok(()) | Err(Error::ConnectionClosed | Error::AlreadyClosed) => {
                self.unflushed = false;
                self.buffered = 0;
                Ok(false)
            }
            Err(Error::Io(e)) if e.kind() == io::ErrorKind::WouldBlock => Ok(true),
            Err(e) => Err(io_error(e)),
        }
    }

    fn layer_pending(&self) -> bool {
        !self.raw.is_empty() || (self.open && self.unflushed) || self.inner().layer_pending()
    }

    /// Sends a close frame (unless the WebSocket is closed already),
    /// writes what it can of it, and ends the stream's sending side.
    fn shutdown_write(&mut self) -> io::Result<()> {
        if self.open && self.ws.can_write() {
            let frame = CloseFrame {
                code: CloseCode::Normal,
                reason: "".into(),
            };
            self.unflushed = true;
            let _ = self.ws.close(Some(frame));
            self.flush_layer()?;
        }
        self.inner_mut().shutdown_write()
    }
}

impl<T: Source> Source for WebStream<T> {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.ws.get_mut().0.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.ws.get_mut().0.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.ws.get_mut().0.deregister(registry)
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use mio::net::TcpStream;

    use super::*;
    use crate::net::link::Link;

    /// A server's link over an open WebSocket whose socket's send buffer
    /// is `send_buffer` bytes, and the client's WebSocket over a blocking
    /// socket that waits at most 10 ms for a read.
    fn open(send_buffer: usize) -> (Link<WebStream<TcpStream>>, WebSocket<std::net::TcpStream>) {
        let (accepted, socket) = crate::net::socket_pair(send_buffer);
        let mut web = WebStream::new(accepted);
        // The handshake is not what is tested here: no answer to skip.
        web.open(b"");
        let client = WebSocket::from_raw_socket(socket, Role::Client, None);
        (Link::new(web), client)
    }

    /// Reads text messages until `n` came, within 10 s.
    fn read_texts(client: &mut WebSocket<std::net::TcpStream>, n: usize) -> Vec<String> {
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut texts = Vec::new();
        while texts.len() < n {
            assert!(Instant::now() < deadline, "got {} of {n}", texts.len());
            match client.read() {
                Ok(Message::Text(text)) => texts.push(text.as_str().to_owned()),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(Error::Io(e))
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) => panic!("client read: {e}"),
            }
        }
        texts
    }

    #[test]
    fn lines_the_socket_did_not_take_wait_as_frames_and_arrive_whole_in_order() {
        let (mut link, mut client) = open(4096);
        let line = |i: usize| format!("{i} {}", "y".repeat(500));
        let bytes: String = (0..4000).map(|i| line(i) + "\n").collect();
        let taken = link.write_now(bytes.as_bytes()).expect("write");
        assert!(taken > 0 && taken < bytes.len(), "took {taken}");
        assert_eq!(bytes.as_bytes()[taken - 1], b'\n', "a line was cut");
        assert!(link.has_output(), "the frames the socket refused are lost");
        assert_eq!(link.interest(), Interest::READABLE | Interest::WRITABLE);
        link.queue(&bytes.as_bytes()[taken..]);
        let reader = std::thread::spawn(move || read_texts(&mut client, 4000 + 1));
        let deadline = Instant::now() + Duration::from_secs(10);
        while link.has_output() {
            assert!(Instant::now() < deadline, "the frames never left");
            link.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(1));
        }
        // A trailing piece is a message of its own.
        link.write_now(b"Username: ").expect("prompt");
        while link.has_output() {
            assert!(Instant::now() < deadline, "the prompt never left");
            link.flush().expect("flush");
        }
        let texts = reader.join().expect("reader");
        for (i, text) in texts[..4000].iter().enumerate() {
            assert_eq!(*text, line(i));
        }
        assert_eq!(texts[4000], "Username: ");
    }

    #[test]
    fn a_message_is_read_as_its_line_and_a_ping_is_answered() {
        let (mut link, mut client) = open(64 * 1024);
        client.send(Message::text("whoelse")).expect("send");
        client
            .send(Message::Ping(b"p".to_vec().into()))
            .expect("ping");
        client
            .send(Message::text("message luke a\nlogout"))
            .expect("send");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = Vec::new();
        let mut buf = [0u8; 5];
        while got.len() < b"whoelse\nmessage luke a\n".len() {
            assert!(Instant::now() < deadline, "got {got:?}");
            match link.read(&mut buf) {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => panic!("read: {e}"),
            }
        }
        assert_eq!(got, b"whoelse\nmessage luke a\n");
        assert!(link.has_output(), "no pong waits");
        link.flush().expect("flush");
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            assert!(Instant::now() < deadline, "no pong");
            match client.read() {
                Ok(Message::Pong(payload)) => break assert_eq!(&payload[..], b"p"),
                Ok(other) => panic!("unexpected {other:?}"),
                Err(Error::Io(_)) => {}
                Err(e) => panic!("client read: {e}"),
            }
        }
    }
}
