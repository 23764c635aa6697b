//! Shared harness of the integration tests: an in-process server on its own
//! thread, and a line-oriented test client over a plain `TcpStream` whose
//! every read is bounded, so a broken server fails a test instead of
//! hanging it.

#![allow(dead_code)]

pub mod client_process;

use std::io::{self, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use confab::credentials::Account;
use confab::server::{defaults, Config, ConnectionGauge, Server, ShutdownHandle, Storage};

/// Longest any single expectation waits for the server.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// Longest the server may take to stop after being asked to.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

pub const WELCOME: &str = "Welcome to the greatest messaging application ever!";
pub const USERNAME: &str = "Username: ";
pub const PASSWORD: &str = "Password: ";
pub const INVALID_USERNAME: &str = "Invalid Username. Please try again";
pub const INVALID_PASSWORD: &str = "Invalid Password. Please try again";
/// The reply to the failure that bans.
pub const PASSWORD_BANNED: &str =
    "Invalid Password. Your account has been blocked. Please try again later";
/// The reply to any password of a banned account.
pub const ACCOUNT_BANNED: &str =
    "Your account is blocked due to multiple login failures. Please try again later";

/// The reply to `help`, line by line.
pub const HELP: [&str; 8] = [
    "message <user> <message>",
    "broadcast <message>",
    "whoelse",
    "whoelsesince <seconds>",
    "block <user>",
    "unblock <user>",
    "logout",
    "help",
];

/// The test accounts.
pub const ACCOUNTS: [(&str, &str); 5] = [
    ("yoda", "wise"),
    ("hans", "falcon"),
    ("vader", "sithlord"),
    ("luke", "lightsaber"),
    ("leia", "blasterpistol"),
];

pub fn accounts() -> Vec<Account> {
    ACCOUNTS
        .iter()
        .map(|&(username, password)| Account {
            username: username.into(),
            password: password.into(),
        })
        .collect()
}

/// The password of a test account.
pub fn password(user: &str) -> &'static str {
    ACCOUNTS
        .iter()
        .find(|(name, _)| *name == user)
        .map(|(_, password)| *password)
        .unwrap_or_else(|| panic!("no test account {user}"))
}

/// Server settings; the default has short bans and a long idle timeout, so
/// that only the tests about inactivity see it.
#[derive(Debug, Clone)]
pub struct Options {
    pub block_duration: Duration,
    pub timeout: Duration,
    pub max_line: usize,
    pub max_pending: usize,
    pub max_clients: usize,
    pub mailbox_max: usize,
    pub store_max: u64,
    /// Ephemeral unless a test asks for a data directory.
    pub storage: Storage,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            block_duration: Duration::from_millis(500),
            timeout: Duration::from_secs(30),
            max_line: defaults::MAX_LINE,
            max_pending: defaults::MAX_PENDING,
            max_clients: defaults::MAX_CLIENTS,
            mailbox_max: defaults::MAILBOX_MAX,
            store_max: defaults::STORE_MAX,
            storage: Storage::Ephemeral,
        }
    }
}

/// A server running on its own thread; dropping it shuts the server down
/// and joins the thread, failing the test if the server failed.
pub struct TestServer {
    pub addr: SocketAddr,
    /// How many connections the server holds (updated once per loop
    /// iteration).
    pub gauge: ConnectionGauge,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    pub fn start() -> TestServer {
        TestServer::with(Options::default())
    }

    pub fn with(options: Options) -> TestServer {
        let bind = "127.0.0.1:0".parse().expect("address");
        let mut config = Config::new(bind, options.block_duration, options.timeout);
        config.max_line = options.max_line;
        config.max_pending = options.max_pending;
        config.max_clients = options.max_clients;
        config.chat.mailbox_max = options.mailbox_max;
        config.chat.store_max = options.store_max;
        config.storage = options.storage;
        let mut server = Server::bind(config, accounts()).expect("bind the server");
        let addr = server.local_addr().expect("local address");
        let handle = server.shutdown_handle();
        let gauge = server.connection_gauge();
        let thread = thread::Builder::new()
            .name("confab-server".into())
            .spawn(move || server.run())
            .expect("spawn the server thread");
        TestServer {
            addr,
            gauge,
            handle,
            thread: Some(thread),
        }
    }

    /// A new connection; nothing read yet.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A new connection logged in as `user` (a test account).
    pub fn login(&self, user: &str) -> Client {
        let mut client = self.connect();
        client.login(user, password(user));
        client
    }

    /// Waits until the server holds exactly `n` connections, at most
    /// [`IO_TIMEOUT`].
    pub fn wait_for_connections(&self, n: usize) {
        wait_until(&format!("the server to hold {n} connections"), || {
            self.gauge.get() == n
        });
    }

    /// Panics if the server thread has ended (returned or panicked).
    pub fn assert_running(&self) {
        let thread = self.thread.as_ref().expect("server thread");
        assert!(!thread.is_finished(), "the server thread has ended");
    }

    /// Shuts the server down and returns what `run` returned.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        let _ = self.handle.shutdown();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                panic!("the server did not stop within {STOP_TIMEOUT:?}");
            }
            thread::sleep(Duration::from_millis(5));
        }
        match thread.join() {
            Ok(result) => result,
            Err(_) => panic!("the server thread panicked"),
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if thread::panicking() {
            // Do not turn one failure into an abort; just ask it to stop.
            let _ = self.handle.shutdown();
            return;
        }
        if let Err(e) = self.stop_inner() {
            panic!("the server failed: {e}");
        }
    }
}

/// A fresh directory under Cargo's temporary directory, removed on drop.
pub struct TempDir(pub std::path::PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        use std::sync::atomic::{AtomicUsize, Ordering};
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "{name}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = std::fs::remove_dir_all(&path);
        std::fs::create_dir_all(&path).expect("create the temporary directory");
        TempDir(path)
    }

    /// The data directory inside it (not created).
    pub fn data(&self) -> std::path::PathBuf {
        self.0.join("data")
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

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
    /// Received and not yet consumed by an expectation.
    buf: Vec<u8>,
}

impl Client {
    pub fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect");
        Client::from_stream(stream)
    }

    /// A connection to `addr` from the local address `source` (such as
    /// `127.0.0.2`, which the server does not trust by default).
    pub fn connect_from(addr: SocketAddr, source: std::net::IpAddr) -> Client {
        use socket2::{Domain, Protocol, SockAddr, Socket, Type};
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))
            .expect("socket");
        socket
            .bind(&SockAddr::from(SocketAddr::new(source, 0)))
            .unwrap_or_else(|e| panic!("bind to {source}: {e}"));
        socket
            .connect_timeout(&SockAddr::from(addr), IO_TIMEOUT)
            .expect("connect");
        Client::from_stream(socket.into())
    }

    pub fn from_stream(stream: TcpStream) -> Client {
        stream.set_nodelay(true).expect("set_nodelay");
        stream
            .set_write_timeout(Some(IO_TIMEOUT))
            .expect("set_write_timeout");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

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

    pub fn send_bytes(&mut self, bytes: &[u8]) {
        if let Err(e) = self.stream.write_all(bytes) {
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
            match self.stream.read(&mut chunk) {
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
            match self.stream.read(&mut chunk) {
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

/// Sets the flag if dropped during a panic, so that the other threads of a
/// test stop waiting for the one that failed.
pub struct FailOnPanic<'a>(pub &'a std::sync::atomic::AtomicBool);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }
}

/// A small seeded PRNG (xorshift64) for reproducible garbage.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> XorShift {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    /// A number in `0..n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    pub fn byte(&mut self) -> u8 {
        (self.next_u64() >> 24) as u8
    }

    pub fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.byte()).collect()
    }
}

/// Polls `condition` every millisecond until it holds; panics naming `what`
/// if it does not within [`IO_TIMEOUT`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "waited {IO_TIMEOUT:?} for {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// How many descriptors this process has open (entries of `/proc/self/fd`,
/// not counting the one used to list them).
pub fn open_descriptors() -> usize {
    std::fs::read_dir("/proc/self/fd")
        .expect("list /proc/self/fd")
        .count()
        .saturating_sub(1)
}

/// Runs the test `name` of this test binary alone in a child process, with
/// `CONFAB_ISOLATED` set, and fails if it fails; returns `true` if this
/// process *is* that child, which must then run the test body. For
/// measurements of the whole process (open descriptors) that tests running
/// in parallel threads would disturb.
pub fn isolated(name: &str) -> bool {
    const VAR: &str = "CONFAB_ISOLATED";
    if std::env::var_os(VAR).is_some_and(|v| v == name) {
        return true;
    }
    let exe = std::env::current_exe().expect("path of the test binary");
    let output = std::process::Command::new(exe)
        .args([name, "--exact", "--test-threads=1", "--nocapture"])
        .env(VAR, name)
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run the test in a child process");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success() && stdout.contains("1 passed"),
        "isolated run of {name} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    false
}

/// Waits for `child` to exit, at most `timeout`; `None` if it is still
/// running.
pub fn exit_within(
    child: &mut std::process::Child,
    timeout: Duration,
) -> Option<std::process::ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `command` (`confab-server` with its arguments), which must end by
/// itself within [`IO_TIMEOUT`]; returns its exit status and stderr.
pub fn run_to_end(command: &mut std::process::Command) -> (std::process::ExitStatus, String) {
    use std::process::Stdio;
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn confab-server");
    let Some(status) = exit_within(&mut child, IO_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("confab-server did not exit within {IO_TIMEOUT:?}");
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status, stderr)
}

/// A `kB` field of a process's `/proc/PID/status` (`VmHWM`, `VmRSS`, ...).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    let status =
        std::fs::read_to_string(format!("/proc/{pid}/status")).expect("read /proc/PID/status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/PID/status"))
}

/// The server binary as a child process, killed and reaped when dropped.
pub struct ServerProcess {
    child: std::process::Child,
    pub addr: SocketAddr,
    stderr: std::sync::mpsc::Receiver<String>,
    /// Lines logged before `listening on`, not yet returned by
    /// [`ServerProcess::stderr_lines`].
    early: std::cell::RefCell<Vec<String>>,
    credentials: std::path::PathBuf,
}

/// Options of [`ServerProcess::start`].
#[derive(Debug, Default, Clone)]
pub struct ProcessOptions {
    /// Extra command-line arguments after `0 0.5 30`; `--ephemeral` is
    /// added unless they say `--data-dir` or `--ephemeral`.
    pub args: Vec<String>,
    /// Accounts for the credentials file; the test accounts if empty.
    pub accounts: Vec<(String, String)>,
    /// Soft and hard `RLIMIT_NOFILE` of the child, if set.
    pub max_open_files: Option<u64>,
    /// Soft `RLIMIT_FSIZE` of the child (the hard one stays unlimited, so
    /// that [`ServerProcess::set_max_file_size`] can raise it), if set:
    /// writes past it fail with `EFBIG`, like a full disk.
    pub max_file_size: Option<u64>,
    /// BLOCK_DURATION instead of `0.5`.
    pub block_duration: Option<String>,
    /// TIMEOUT instead of `30`.
    pub timeout: Option<String>,
    /// Extra environment variables (`RUST_LOG`, ...).
    pub env: Vec<(String, String)>,
    /// Working directory of the child, if not the test's.
    pub cwd: Option<std::path::PathBuf>,
}

impl ServerProcess {
    /// Starts `confab-server` on a free port (ban 0.5 s and idle timeout
    /// 30 s unless set) and waits for its `listening on` line; lines logged
    /// before it are kept for [`ServerProcess::stderr_lines`].
    pub fn start(options: ProcessOptions) -> ServerProcess {
        use std::io::BufRead;
        use std::os::unix::process::CommandExt;
        use std::process::{Command, Stdio};
        use std::sync::atomic::{AtomicUsize, Ordering};

        static FILES: AtomicUsize = AtomicUsize::new(0);
        let credentials = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!(
            "credentials-{}-{}",
            std::process::id(),
            FILES.fetch_add(1, Ordering::SeqCst)
        ));
        let accounts: Vec<(String, String)> = if options.accounts.is_empty() {
            ACCOUNTS
                .iter()
                .map(|&(u, p)| (u.to_string(), p.to_string()))
                .collect()
        } else {
            options.accounts.clone()
        };
        let text: String = accounts.iter().map(|(u, p)| format!("{u} {p}\n")).collect();
        std::fs::write(&credentials, text).expect("write the credentials file");

        let mut command = Command::new(env!("CARGO_BIN_EXE_confab-server"));
        let block_duration = options.block_duration.as_deref().unwrap_or("0.5");
        let timeout = options.timeout.as_deref().unwrap_or("30");
        command
            .args(["0", block_duration, timeout, "--credentials"])
            .arg(&credentials)
            .args(&options.args)
            .args(
                (!options
                    .args
                    .iter()
                    .any(|a| a == "--data-dir" || a == "--ephemeral"))
                .then_some("--ephemeral"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .envs(options.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &options.cwd {
            command.current_dir(dir);
        }
        let mut limits = Vec::new();
        if let Some(limit) = options.max_open_files {
            let limit = limit as libc::rlim_t;
            limits.push((libc::RLIMIT_NOFILE, limit, limit));
        }
        if let Some(limit) = options.max_file_size {
            limits.push((
                libc::RLIMIT_FSIZE,
                limit as libc::rlim_t,
                libc::RLIM_INFINITY,
            ));
        }
        if !limits.is_empty() {
            // SAFETY: only setrlimit, which is async-signal-safe, runs
            // between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    for &(resource, soft, hard) in &limits {
                        let limit = libc::rlimit {
                            rlim_cur: soft,
                            rlim_max: hard,
                        };
                        if libc::setrlimit(resource, &limit) != 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("spawn confab-server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = std::sync::mpsc::channel();
        thread::spawn(move || {
            for line in io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess {
            child,
            addr: "127.0.0.1:0".parse().expect("address"),
            stderr: rx,
            early: Default::default(),
            credentials,
        };
        let first = loop {
            let line = server.stderr.recv_timeout(IO_TIMEOUT).unwrap_or_else(|e| {
                panic!(
                    "no `listening on` line ({e}); stderr: {:?}",
                    server.early.borrow()
                )
            });
            if line.starts_with("listening on ") {
                break line;
            }
            server.early.borrow_mut().push(line);
        };
        let port: u16 = first
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening on 127.0.0.1:PORT`, got {first:?}"));
        assert_ne!(port, 0, "{first:?}");
        server.addr.set_port(port);
        server
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sets the running server's soft `RLIMIT_FSIZE` (see
    /// [`ProcessOptions::max_file_size`]): space "returns" to its disk.
    pub fn set_max_file_size(&self, bytes: u64) {
        let limit = libc::rlimit {
            rlim_cur: bytes as libc::rlim_t,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit on a child of this process, with a valid limit.
        let rc = unsafe {
            libc::prlimit(
                self.child.id() as libc::pid_t,
                libc::RLIMIT_FSIZE,
                &limit,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit: {}", io::Error::last_os_error());
    }

    /// A new connection; nothing read yet.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A new connection logged in as `user` with `pass`.
    pub fn login(&self, user: &str, pass: &str) -> Client {
        let mut client = self.connect();
        client.login(user, pass);
        client
    }

    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Panics if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "confab-server exited: {status}; stderr: {:?}",
                self.stderr_lines()
            );
        }
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        exit_within(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("confab-server did not exit within {timeout:?}"))
    }

    /// The lines the server logged before `listening on` and
    /// [`ServerProcess::stderr_lines`] has not returned yet.
    pub fn lines_before_listening(&self) -> Vec<String> {
        self.early.borrow().clone()
    }

    /// What the server wrote to stderr since the last call.
    pub fn stderr_lines(&self) -> Vec<String> {
        let mut lines = std::mem::take(&mut *self.early.borrow_mut());
        lines.extend(self.stderr.try_iter());
        lines
    }

    /// User plus system CPU time the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid()))
            .expect("read /proc/PID/stat");
        // Fields after the parenthesised command name; utime and stime are
        // fields 14 and 15 of the whole line.
        let rest = &stat[stat.rfind(')').expect("comm") + 2..];
        let fields: Vec<&str> = rest.split(' ').collect();
        let ticks: u64 =
            fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
        // SAFETY: sysconf only reads a configuration value.
        let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
        assert!(per_second > 0, "sysconf(_SC_CLK_TCK)");
        Duration::from_secs_f64(ticks as f64 / per_second as f64)
    }

    /// A `kB` field of `/proc/PID/status` (`VmHWM`, `VmRSS`, ...) in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        status_kib(self.pid(), field)
    }

    /// The process's open descriptors, by number, with what each refers to
    /// (some may be inherited from the test's own environment).
    pub fn descriptors(&self) -> Vec<(u32, String)> {
        let mut list: Vec<(u32, String)> = std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("list /proc/PID/fd")
            .map(|entry| {
                let entry = entry.expect("an entry of /proc/PID/fd");
                let target = std::fs::read_link(entry.path())
                    .map(|p| p.display().to_string())
                    .unwrap_or_default();
                let number = entry
                    .file_name()
                    .to_string_lossy()
                    .parse()
                    .expect("fd number");
                (number, target)
            })
            .collect();
        list.sort();
        list
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_file(&self.credentials);
    }
}
