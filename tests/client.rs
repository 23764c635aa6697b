//! End-to-end tests of the terminal client: the real `confab-server` and
//! `confab` clients run as child processes, standard input is fed line by
//! line and standard output is checked. Every wait is bounded by
//! [`TIMEOUT`], so a client that hangs fails its test instead of stalling
//! the suite.

mod common;

use std::io::{Read, Write};
use std::net::TcpListener;
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Longest any single expectation may wait.
const TIMEOUT: Duration = Duration::from_secs(5);

const WELCOME: &str = "Welcome to the greatest messaging application ever!\n";

fn client_bin() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_BIN_EXE_confab"))
}

/// Reads a child's pipe on its own thread and hands the chunks over a
/// channel, so that waiting for output can time out.
fn read_in_background(mut pipe: impl Read + Send + 'static) -> Receiver<Vec<u8>> {
    let (sender, receiver) = mpsc::channel();
    thread::spawn(move || {
        let mut buf = [0; 4096];
        while let Ok(n @ 1..) = pipe.read(&mut buf) {
            if sender.send(buf[..n].to_vec()).is_err() {
                break;
            }
        }
    });
    receiver
}

/// Everything a child wrote to one pipe so far, and how far the test has
/// already matched it.
struct Output {
    chunks: Receiver<Vec<u8>>,
    bytes: Vec<u8>,
    matched: usize,
    closed: bool,
}

impl Output {
    fn new(pipe: impl Read + Send + 'static) -> Self {
        Self {
            chunks: read_in_background(pipe),
            bytes: Vec::new(),
            matched: 0,
            closed: false,
        }
    }

    fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Waits until `needle` appears after what was matched before, and
    /// moves past it.
    fn expect(&mut self, needle: &str) {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let unmatched = String::from_utf8_lossy(&self.bytes[self.matched..]).into_owned();
            if let Some(at) = unmatched.find(needle) {
                self.matched += unmatched[..at + needle.len()].len();
                return;
            }
            assert!(
                self.receive_until(deadline),
                "{needle:?} not seen; output was {:?}",
                self.text()
            );
        }
    }

    /// Waits for the pipe to close and returns what was written after the
    /// last match.
    fn rest(&mut self) -> String {
        let deadline = Instant::now() + TIMEOUT;
        while self.receive_until(deadline) {}
        assert!(self.closed, "pipe still open; output was {:?}", self.text());
        String::from_utf8_lossy(&self.bytes[self.matched..]).into_owned()
    }

    /// Takes one chunk; false once the pipe is closed or `deadline` passed.
    fn receive_until(&mut self, deadline: Instant) -> bool {
        let left = deadline.saturating_duration_since(Instant::now());
        match self.chunks.recv_timeout(left) {
            Ok(chunk) => {
                self.bytes.extend_from_slice(&chunk);
                true
            }
            Err(RecvTimeoutError::Disconnected) => {
                self.closed = true;
                false
            }
            Err(RecvTimeoutError::Timeout) => false,
        }
    }
}

/// Waits, bounded, for a child to exit.
fn wait_exit(child: &mut Child) -> ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match child.try_wait() {
            Ok(Some(status)) => return status,
            Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(10)),
            Ok(None) => panic!("process did not exit within {TIMEOUT:?}"),
            Err(error) => panic!("cannot wait for process: {error}"),
        }
    }
}

/// A running `confab-server` on a free port (ban 1 s, idle timeout 60 s)
/// with its own credentials file; killed and cleaned up on drop.
struct Server {
    process: common::ServerProcess,
    port: u16,
}

impl Server {
    fn start() -> Self {
        let process = common::ServerProcess::start(common::ProcessOptions {
            accounts: [("yoda", "wise"), ("hans", "falcon"), ("vader", "sithlord")]
                .map(|(user, pass)| (user.to_string(), pass.to_string()))
                .to_vec(),
            block_duration: Some("1".into()),
            timeout: Some("60".into()),
            ..common::ProcessOptions::default()
        });
        let port = process.addr.port();
        Self { process, port }
    }

    /// Kills the server abruptly, as a crash would.
    fn kill(&mut self) {
        self.process.signal(libc::SIGKILL);
        self.process.wait(TIMEOUT);
    }
}

/// A running `confab`; killed on drop.
struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    stdout: Output,
    stderr: Output,
}

impl Client {
    /// Starts a client whose standard input the test writes.
    fn start(port: u16) -> Self {
        Self::with_stdin(port, Stdio::piped())
    }

    fn with_stdin(port: u16, stdin: Stdio) -> Self {
        let mut child = Command::new(client_bin())
            .args(["127.0.0.1", &port.to_string()])
            .env_remove("RUST_LOG")
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start confab");
        let stdin = child.stdin.take();
        let stdout = Output::new(child.stdout.take().expect("client stdout"));
        let stderr = Output::new(child.stderr.take().expect("client stderr"));
        Self {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Types one line.
    fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("client stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to client");
    }

    /// Ends standard input, as Ctrl-D does.
    fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Answers the prompts and waits for the welcome.
    fn login(&mut self, username: &str, password: &str) {
        self.stdout.expect("Username: ");
        self.send(username);
        self.stdout.expect("Password: ");
        self.send(password);
        self.stdout.expect(WELCOME);
    }

    fn wait(&mut self) -> ExitStatus {
        wait_exit(&mut self.child)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port on which nothing listens: bound, then released.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// hans, then yoda, logged in through their own clients.
fn hans_then_yoda(server: &Server) -> (Client, Client) {
    let mut hans = Client::start(server.port);
    hans.login("hans", "falcon");
    let mut yoda = Client::start(server.port);
    yoda.login("yoda", "wise");
    (hans, yoda)
}

#[test]
fn message_reaches_the_other_client() {
    let server = Server::start();
    let (mut hans, mut yoda) = hans_then_yoda(&server);
    hans.stdout.expect("yoda logged in\n");

    yoda.send("message hans hi");

    hans.stdout.expect("yoda: hi\n");
}

#[test]
fn control_characters_from_other_users_are_shown_escaped() {
    let server = Server::start();
    let (mut hans, mut yoda) = hans_then_yoda(&server);

    yoda.send("message hans \x1b[2Jboom\x07");

    hans.stdout.expect("yoda: \\x1b[2Jboom\\x07\n");
    assert!(!hans.stdout.text().contains('\x1b'));
}

#[test]
fn end_of_input_while_logged_in_logs_out() {
    let server = Server::start();
    let (mut hans, mut yoda) = hans_then_yoda(&server);
    hans.stdout.expect("yoda logged in\n");

    yoda.close_stdin();

    hans.stdout.expect("yoda logged out\n");
    assert_eq!(yoda.wait().code(), Some(0));
    assert_eq!(yoda.stdout.rest(), "Goodbye\n");
    assert_eq!(yoda.stderr.rest(), "");
}

#[test]
fn server_going_away_is_reported() {
    let mut server = Server::start();
    let mut yoda = Client::start(server.port);
    yoda.login("yoda", "wise");

    server.kill();

    assert_eq!(yoda.stdout.rest(), "Connection closed by server\n");
    assert_eq!(yoda.wait().code(), Some(0));
}

#[test]
fn server_going_away_during_a_prompt_is_reported_on_its_own_line() {
    let mut server = Server::start();
    let mut yoda = Client::start(server.port);
    yoda.stdout.expect("Username: ");

    server.kill();

    assert_eq!(yoda.stdout.rest(), "\nConnection closed by server\n");
    assert_eq!(yoda.wait().code(), Some(0));
}

#[test]
fn refused_connection_fails_with_one_line() {
    let port = closed_port();
    let mut client = Client::with_stdin(port, Stdio::null());

    assert_eq!(client.wait().code(), Some(1));
    let error = client.stderr.rest();
    assert_eq!(error.lines().count(), 1, "stderr was {error:?}");
    assert!(
        error.starts_with(&format!("confab: cannot connect to 127.0.0.1:{port}: ")),
        "stderr was {error:?}"
    );
    assert_eq!(client.stdout.rest(), "");
}

#[test]
fn empty_standard_input_exits_cleanly() {
    let server = Server::start();
    let mut client = Client::with_stdin(server.port, Stdio::null());

    assert_eq!(client.wait().code(), Some(0));
    let shown = client.stdout.rest();
    assert!(
        shown.is_empty() || shown == "Username: \n",
        "stdout was {shown:?}"
    );
    assert_eq!(client.stderr.rest(), "");
}
