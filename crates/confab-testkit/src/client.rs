//! A line-oriented test client over a `TcpStream`, plain or TLS: what it
//! sends is exact bytes, what it expects is exact bytes, and every read is
//! bounded by [`IO_TIMEOUT`], so a broken server fails a test instead of
//! hanging it.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::ClientConnection;

use crate::accounts::password;
use crate::replies::{
    ACCOUNT_BANNED, HELP, INVALID_PASSWORD, PASSWORD, PASSWORD_BANNED, USERNAME, WELCOME,
};
use crate::wait::IO_TIMEOUT;

/// Renders bytes readably in failure messages.
pub fn show(bytes: &[u8]) -> String {
    const LIMIT: usize = 300;
    if bytes.len() > LIMIT {
        format!(
            "{:?}... ({} bytes)",
            String::from_utf8_lossy(&bytes[..LIMIT]),
            bytes.len()
        )
    } else {
        format!("{:?}", String::from_utf8_lossy(bytes))
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A test client: what it sends is exact bytes, what it expects is exact
/// bytes, and every wait is bounded by [`IO_TIMEOUT`].
pub struct Client {
    stream: TcpStream,
    /// The TLS session over the stream, for a client of a TLS port.
    tls: Option<Box<ClientConnection>>,
    /// Received and not yet consumed by an expectation.
    buf: Vec<u8>,
}

/// A socket connected to `addr` from the local address `source`.
pub fn connect_from(addr: SocketAddr, source: IpAddr) -> TcpStream {
    use socket2::{Domain, Protocol, SockAddr, Socket, Type};
    let socket =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).expect("socket");
    socket
        .bind(&SockAddr::from(SocketAddr::new(source, 0)))
        .unwrap_or_else(|e| panic!("bind to {source}: {e}"));
    socket
        .connect_timeout(&SockAddr::from(addr), IO_TIMEOUT)
        .expect("connect");
    socket.into()
}

impl Client {
    /// A new connection to `addr`; nothing read yet.
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        Client::from_stream(stream)
    }

    /// A connection to `addr` from the local address `source` (such as
    /// `127.0.0.2`, which the server does not trust by default).
    pub fn connect_from(addr: SocketAddr, source: IpAddr) -> Client {
        Client::from_stream(connect_from(addr, source))
    }

    /// A client on an open connection: no Nagle delay, bounded writes.
    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("set_nodelay");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        Client {
            stream,
            tls: None,
            buf: Vec::new(),
        }
    }

    /// A TLS connection to `addr` that trusts only the certificate of
    /// `fingerprint`; the handshake runs as the first reads and writes go.
    pub fn connect_tls(addr: SocketAddr, fingerprint: &str) -> Client {
        let trust = std::sync::Arc::new(confab::net::trust::Trust::pinned(fingerprint));
        let config = confab::net::trust::Trust::client_config(trust).expect("TLS config");
        let name = ServerName::from(addr.ip());
        let session = ClientConnection::new(config, name).expect("TLS session");
        let mut client = Client::connect(addr);
        client.tls = Some(Box::new(session));
        client.write_records().expect("send the client hello");
        client
    }

    /// The TLS session, for a client of a TLS port.
    pub fn tls(&self) -> Option<&ClientConnection> {
        self.tls.as_deref()
    }

    /// Writes every record the TLS session has ready.
    fn write_records(&mut self) -> io::Result<()> {
        if let Some(tls) = &mut self.tls {
            while tls.wants_write() {
                tls.write_tls(&mut self.stream)?;
            }
        }
        Ok(())
    }

    /// Reads what comes next, plain or through the TLS session, into
    /// `chunk`; `Ok(0)` is the end of the stream.
    fn read_some(&mut self, chunk: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.stream.read(chunk);
        };
        loop {
            match tls.reader().read(chunk) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if tls.read_tls(&mut self.stream)? == 0 {
                return Ok(0);
            }
            tls.process_new_packets().map_err(io::Error::other)?;
            while tls.wants_write() {
                tls.write_tls(&mut self.stream)?;
            }
        }
    }

    /// The socket, for what the client has no method for.
    pub fn stream(&self) -> &TcpStream {
        &self.stream
    }

    /// Another handle on the same socket, for writing from another thread.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the stream")
    }

    /// Fixes the socket's receive buffer at `bytes` (which also turns off
    /// the kernel's automatic sizing of it).
    pub fn set_receive_buffer(&self, bytes: usize) {
        let value = libc::c_int::try_from(bytes).expect("buffer size");
        self.set_socket_option(libc::SO_RCVBUF, "SO_RCVBUF", &value);
    }

    /// Sets the `SOL_SOCKET` option `option` (called `name` in the failure
    /// message) to `value`, whose type must be the option's.
    fn set_socket_option<T>(&self, option: libc::c_int, name: &str, value: &T) {
        use std::os::fd::AsRawFd;
        // SAFETY: a valid socket descriptor and an option of its own size.
        let rc = unsafe {
            libc::setsockopt(
                self.stream.as_raw_fd(),
                libc::SOL_SOCKET,
                option,
                (value as *const T).cast(),
                std::mem::size_of::<T>() as libc::socklen_t,
            )
        };
        assert_eq!(rc, 0, "setsockopt {name}: {}", io::Error::last_os_error());
    }

    /// Sends exactly `text` (the caller adds `\n`).
    pub fn send(&mut self, text: &str) {
        self.send_bytes(text.as_bytes());
    }

    /// Sends exactly `bytes`.
    pub fn send_bytes(&mut self, bytes: &[u8]) {
        let sent = match &mut self.tls {
            Some(tls) => tls.writer().write_all(bytes),
            None => self.stream.write_all(bytes),
        };
        if let Err(e) = sent.and_then(|()| self.write_records()) {
            panic!("sending {}: {e}", show(bytes));
        }
    }

    /// Reads once more into the buffer, waiting until `deadline` at most.
    /// `Ok(0)` is end of stream.
    fn fill(&mut self, deadline: Instant) -> io::Result<usize> {
        let now = Instant::now();
        if now >= deadline {
            return Err(io::ErrorKind::TimedOut.into());
        }
        let wait = (deadline - now).max(Duration::from_millis(1));
        self.stream.set_read_timeout(Some(wait))?;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.read_some(&mut chunk) {
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    return Ok(n);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Expects exactly these bytes next (a prompt has no newline).
    pub fn expect(&mut self, expected: &str) {
        self.expect_bytes(expected.as_bytes());
    }

    /// Expects exactly these bytes next.
    pub fn expect_bytes(&mut self, expected: &[u8]) {
        if !self.await_bytes(expected, Instant::now() + IO_TIMEOUT) {
            panic!(
                "expected {}, got {} and then a timeout",
                show(expected),
                show(&self.buf)
            );
        }
    }

    /// Whether exactly `expected` arrives by `deadline` (then it is
    /// consumed); `false` if less of it came in time (what came stays
    /// buffered). Panics if something else or end of stream comes instead.
    fn await_bytes(&mut self, expected: &[u8], deadline: Instant) -> bool {
        loop {
            let n = self.buf.len().min(expected.len());
            if self.buf[..n] != expected[..n] {
                panic!(
                    "expected {}, got {}",
                    show(expected),
                    show(&self.buf[..self.buf.len().min(expected.len().max(80))])
                );
            }
            if n == expected.len() {
                self.buf.drain(..n);
                return true;
            }
            match self.fill(deadline) {
                Ok(0) => panic!(
                    "expected {}, got {} and then end of stream",
                    show(expected),
                    show(&self.buf)
                ),
                Ok(_) => {}
                Err(e) if is_timeout(&e) => return false,
                Err(e) => panic!(
                    "expected {}, got {} and then: {e}",
                    show(expected),
                    show(&self.buf)
                ),
            }
        }
    }

    /// Expects `line` and its `\n` next.
    pub fn expect_line(&mut self, line: &str) {
        self.expect(&format!("{line}\n"));
    }

    /// Expects these lines next, in this order.
    pub fn expect_lines(&mut self, lines: &[&str]) {
        for line in lines {
            self.expect_line(line);
        }
    }

    /// The next line, without its `\n`; panics on end of stream, timeout or
    /// invalid UTF-8.
    pub fn read_line(&mut self) -> String {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut searched = 0;
        loop {
            if let Some(i) = self.buf[searched..].iter().position(|&b| b == b'\n') {
                let end = searched + i;
                let line: Vec<u8> = self.buf.drain(..=end).take(end).collect();
                return String::from_utf8(line)
                    .unwrap_or_else(|e| panic!("a line that is not UTF-8: {e}"));
            }
            searched = self.buf.len();
            match self.fill(deadline) {
                Ok(0) => panic!(
                    "expected a line, got {} and then end of stream",
                    show(&self.buf)
                ),
                Ok(_) => {}
                Err(e) => panic!("expected a line, got {} and then: {e}", show(&self.buf)),
            }
        }
    }

    /// The next line if one is complete within `ms`, else `None` (a partial
    /// line stays buffered). Panics on end of stream or errors.
    pub fn poll_line(&mut self, ms: u64) -> Option<String> {
        let deadline = Instant::now() + Duration::from_millis(ms);
        match self.next_line_by(deadline) {
            Ok(line) => Some(line),
            Err(e) if is_timeout(&e) => None,
            Err(e) => panic!("reading after {}: {e}", show(&self.buf)),
        }
    }

    /// The next line, or `None` at the end of the stream (an unfinished
    /// line before it is dropped). Panics if neither comes within
    /// [`IO_TIMEOUT`].
    pub fn line_or_end(&mut self) -> Option<String> {
        match self.next_line_by(Instant::now() + IO_TIMEOUT) {
            Ok(line) => Some(line),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
                ) =>
            {
                None
            }
            Err(e) => panic!("reading after {}: {e}", show(&self.buf)),
        }
    }

    /// The next complete line, reading until `deadline`; the end of the
    /// stream is `UnexpectedEof`.
    fn next_line_by(&mut self, deadline: Instant) -> io::Result<String> {
        loop {
            if let Some(end) = self.buf.iter().position(|&b| b == b'\n') {
                let line: Vec<u8> = self.buf.drain(..=end).take(end).collect();
                return Ok(String::from_utf8(line)
                    .unwrap_or_else(|e| panic!("a line that is not UTF-8: {e}")));
            }
            if self.fill(deadline)? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
        }
    }

    /// Whether exactly `expected` arrives within `ms` (then it is consumed);
    /// `false` if less of it came in time (what came stays buffered).
    /// Panics if something else or end of stream comes instead.
    pub fn arrives_within(&mut self, expected: &str, ms: u64) -> bool {
        self.await_bytes(
            expected.as_bytes(),
            Instant::now() + Duration::from_millis(ms),
        )
    }

    /// Reads whatever has arrived, without waiting; returns how many bytes
    /// that was (lines read this way come out of [`Client::poll_line`]
    /// with a zero wait). Panics on end of stream or errors.
    pub fn read_available(&mut self) -> usize {
        self.stream.set_nonblocking(true).expect("set_nonblocking");
        let mut total = 0;
        let mut chunk = [0u8; 16 * 1024];
        let result = loop {
            match self.read_some(&mut chunk) {
                Ok(0) => break Err(io::Error::from(io::ErrorKind::UnexpectedEof)),
                Ok(n) => {
                    self.buf.extend_from_slice(&chunk[..n]);
                    total += n;
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break Ok(total),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        self.stream.set_nonblocking(false).expect("set_nonblocking");
        result.unwrap_or_else(|e| panic!("reading after {}: {e}", show(&self.buf)))
    }

    /// Expects reading to fail (a TLS handshake that does not verify, for
    /// instance) with nothing received first; returns the error.
    pub fn expect_failure(&mut self) -> io::Error {
        match self.fill(Instant::now() + IO_TIMEOUT) {
            Err(e) if !is_timeout(&e) && self.buf.is_empty() => e,
            Err(e) => panic!("expected a failure, got {} and {e}", show(&self.buf)),
            Ok(_) => panic!("expected a failure, got {}", show(&self.buf)),
        }
    }

    /// Expects the server to close the connection with nothing more sent.
    pub fn expect_eof(&mut self) {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if !self.buf.is_empty() {
                panic!("expected end of stream, got {}", show(&self.buf));
            }
            match self.fill(deadline) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) => panic!("expected end of stream, got: {e}"),
            }
        }
    }

    /// Reads and throws away everything until the server closes the
    /// connection (end of stream or reset); returns how many bytes came.
    pub fn drain_to_close(&mut self) -> usize {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut total = self.buf.len();
        self.buf.clear();
        loop {
            match self.fill(deadline) {
                Ok(0) => return total,
                Ok(n) => {
                    total += n;
                    self.buf.clear();
                }
                Err(e) if is_timeout(&e) => {
                    panic!("the server did not close the connection within {IO_TIMEOUT:?}")
                }
                Err(_) => return total,
            }
        }
    }

    /// Asserts that nothing arrives (not even end of stream) for `ms`.
    pub fn expect_silence(&mut self, ms: u64) {
        assert!(
            self.buf.is_empty(),
            "expected silence, got {}",
            show(&self.buf)
        );
        let deadline = Instant::now() + Duration::from_millis(ms);
        loop {
            match self.fill(deadline) {
                Ok(0) => panic!("expected silence for {ms} ms, got end of stream"),
                Ok(_) => panic!("expected silence for {ms} ms, got {}", show(&self.buf)),
                Err(e) if is_timeout(&e) => {
                    if Instant::now() >= deadline {
                        return;
                    }
                }
                Err(e) => panic!("expected silence for {ms} ms, got: {e}"),
            }
        }
    }

    /// The whole login dialogue from the first prompt to the welcome line.
    pub fn login(&mut self, user: &str, pass: &str) {
        self.expect(USERNAME);
        self.enter(user, pass);
    }

    /// The login dialogue after `Username: ` has been read.
    pub fn enter(&mut self, user: &str, pass: &str) {
        self.send(&format!("{user}\n"));
        self.expect(PASSWORD);
        self.send(&format!("{pass}\n"));
        self.expect_line(WELCOME);
    }

    /// Three wrong passwords for `user`, from `Username: ` on: two
    /// failures, then the ban (the server closes the connection next).
    pub fn get_banned(&mut self, user: &str) {
        self.expect(USERNAME);
        self.send(&format!("{user}\n"));
        for _ in 0..2 {
            self.expect(PASSWORD);
            self.send("foolish\n");
            self.expect_line(INVALID_PASSWORD);
        }
        self.expect(PASSWORD);
        self.send("foolish\n");
        self.expect_line(PASSWORD_BANNED);
    }

    /// A login as the banned `user` with `pass`, right or wrong, from
    /// `Username: ` on: the banned-account reply after the password, then
    /// the close.
    pub fn expect_banned(&mut self, user: &str, pass: &str) {
        self.expect(USERNAME);
        self.send(&format!("{user}\n"));
        self.expect(PASSWORD);
        self.send(&format!("{pass}\n"));
        self.expect_line(ACCOUNT_BANNED);
        self.expect_eof();
    }

    /// Sends `help` and expects its reply as the very next lines: proof that
    /// nothing else was sent to this client before it.
    pub fn barrier(&mut self) {
        self.send("help\n");
        self.expect_lines(&HELP);
    }

    /// Sends `logout` and expects `Goodbye`, then the close.
    pub fn logout(&mut self) {
        self.send("logout\n");
        self.expect_line("Goodbye");
        self.expect_eof();
    }

    /// Closes both directions without waiting for the server.
    pub fn shutdown_both(&self) {
        self.stream.shutdown(Shutdown::Both).expect("shutdown");
    }

    /// Closes the socket with a reset (`SO_LINGER` 0) instead of a FIN.
    pub fn reset(self) {
        let linger = libc::linger {
            l_onoff: 1,
            l_linger: 0,
        };
        self.set_socket_option(libc::SO_LINGER, "SO_LINGER", &linger);
        drop(self);
    }
}

/// yoda and hans (test accounts) logged in at `addr`, in that order, with
/// the login announcement read.
pub fn two_users(addr: SocketAddr) -> (Client, Client) {
    let mut yoda = Client::connect(addr);
    yoda.login("yoda", password("yoda"));
    let mut hans = Client::connect(addr);
    hans.login("hans", password("hans"));
    yoda.expect_line("hans logged in");
    (yoda, hans)
}

/// yoda, hans and vader logged in at `addr`, in that order, with every
/// login announcement read.
pub fn three_users(addr: SocketAddr) -> (Client, Client, Client) {
    let (mut yoda, mut hans) = two_users(addr);
    let mut vader = Client::connect(addr);
    vader.login("vader", password("vader"));
    yoda.expect_line("vader logged in");
    hans.expect_line("vader logged in");
    (yoda, hans, vader)
}
