//! The `confab` terminal client as a child process: standard input written
//! line by line, standard output and error read on threads so that every
//! wait is bounded by [`TIMEOUT`] and a client that hangs fails its test
//! instead of stalling the suite.

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

/// Longest any single expectation may wait.
pub const TIMEOUT: Duration = Duration::from_secs(5);

const WELCOME: &str = "Welcome to the greatest messaging application ever!\n";

/// The client's binary, built by cargo next to the test executable (see
/// [`crate::artifacts::binary`]).
fn client_bin() -> PathBuf {
    crate::artifacts::binary("confab").unwrap_or_else(|e| panic!("confab: {e}"))
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
pub struct Output {
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

    /// Everything received so far, as text.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.bytes).into_owned()
    }

    /// Waits until `needle` appears after what was matched before, and
    /// moves past it.
    pub fn expect(&mut self, needle: &str) {
        assert!(
            self.seen_within(needle, TIMEOUT),
            "{needle:?} not seen; output was {:?}",
            self.text()
        );
    }

    /// Whether `needle` appears after what was matched before within
    /// `wait`; if it does, moves past it.
    pub fn seen_within(&mut self, needle: &str, wait: Duration) -> bool {
        let deadline = Instant::now() + wait;
        let needle = needle.as_bytes();
        if needle.is_empty() {
            return true;
        }
        let mut from = self.matched;
        loop {
            if let Some(at) = self.bytes[from..]
                .windows(needle.len())
                .position(|window| window == needle)
            {
                self.matched = from + at + needle.len();
                return true;
            }
            // Only what arrives next can complete a match.
            from = self.bytes.len().saturating_sub(needle.len()).max(from);
            if !self.receive_until(deadline) {
                return false;
            }
        }
    }

    /// Waits for the pipe to close and returns what was written after the
    /// last match.
    pub fn rest(&mut self) -> String {
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
pub fn wait_exit(child: &mut Child) -> ExitStatus {
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

/// A running `confab`; killed on drop.
pub struct ClientProcess {
    /// The process.
    pub child: Child,
    stdin: Option<Box<dyn Write + Send>>,
    /// What it writes to standard output.
    pub stdout: Output,
    /// What it writes to standard error.
    pub stderr: Output,
}

impl ClientProcess {
    /// Starts a client whose standard input the test writes.
    pub fn start(port: u16) -> Self {
        Self::with_stdin(port, Stdio::piped())
    }

    /// Starts a client on `127.0.0.1:port` with `stdin` as its standard
    /// input.
    pub fn with_stdin(port: u16, stdin: Stdio) -> Self {
        Self::spawn(&["127.0.0.1", &port.to_string()], &[], stdin)
    }

    /// Starts `confab ARGS` with `env` added to its environment and
    /// `stdin` as its standard input.
    pub fn spawn(args: &[&str], env: &[(&str, &str)], stdin: Stdio) -> Self {
        let mut child = Command::new(client_bin())
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(stdin)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start confab");
        let stdin = child
            .stdin
            .take()
            .map(|s: ChildStdin| Box::new(s) as Box<dyn Write + Send>);
        let stdout = Output::new(child.stdout.take().expect("client stdout"));
        let stderr = Output::new(child.stderr.take().expect("client stderr"));
        Self {
            child,
            stdin,
            stdout,
            stderr,
        }
    }

    /// Starts `confab ARGS` (with `env`) on a pseudo-terminal: standard
    /// input, output and error are its terminal, so what it writes to
    /// either comes out of [`ClientProcess::stdout`] (with `\r\n` line
    /// ends) and [`ClientProcess::send`] types on its keyboard.
    pub fn on_terminal(args: &[&str], env: &[(&str, &str)]) -> Self {
        Self::program_on_terminal(&client_bin(), args, env)
    }

    /// Starts `program ARGS` (with `env`) on a pseudo-terminal, as
    /// [`ClientProcess::on_terminal`] starts `confab`: for the workspace's
    /// other interactive binaries (`confab-passwd`).
    pub fn program_on_terminal(program: &Path, args: &[&str], env: &[(&str, &str)]) -> Self {
        let (mut master, mut slave) = (-1, -1);
        // SAFETY: openpty writes two descriptors into the given integers
        // and reads no name, termios or window size (all null).
        let rc = unsafe {
            libc::openpty(
                &mut master,
                &mut slave,
                std::ptr::null_mut(),
                std::ptr::null(),
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
        // SAFETY: openpty returned two open descriptors that nothing else
        // owns.
        let (master, slave) = unsafe { (File::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
        let terminal = |fd: &OwnedFd| Stdio::from(fd.try_clone().expect("dup the terminal"));
        let mut child = Command::new(program)
            .args(args)
            .env_remove("RUST_LOG")
            .envs(env.iter().copied())
            .stdin(terminal(&slave))
            .stdout(terminal(&slave))
            .stderr(terminal(&slave))
            .spawn()
            .unwrap_or_else(|e| panic!("start {}: {e}", program.display()));
        drop(slave);
        let reader = master.try_clone().expect("dup the terminal");
        let stdout = Output::new(reader);
        // Nothing comes separately: the terminal carries both streams.
        let stderr = Output::new(std::io::empty());
        child.stdin = None;
        Self {
            child,
            stdin: Some(Box::new(master)),
            stdout,
            stderr,
        }
    }

    /// Types one line.
    pub fn send(&mut self, line: &str) {
        let stdin = self.stdin.as_mut().expect("client stdin is open");
        stdin
            .write_all(format!("{line}\n").as_bytes())
            .expect("write to client");
    }

    /// Ends standard input, as Ctrl-D does.
    pub fn close_stdin(&mut self) {
        self.stdin = None;
    }

    /// Answers the prompts and waits for the welcome.
    pub fn login(&mut self, username: &str, password: &str) {
        self.stdout.expect("Username: ");
        self.send(username);
        self.stdout.expect("Password: ");
        self.send(password);
        self.stdout.expect(WELCOME);
    }

    /// Waits, bounded, for the client to exit.
    pub fn wait(&mut self) -> ExitStatus {
        wait_exit(&mut self.child)
    }
}

impl Drop for ClientProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
