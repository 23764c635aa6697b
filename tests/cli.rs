//! The `confab-server` binary: arguments, the credentials file, the
//! `listening on` line, and signals.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, IO_TIMEOUT};

const BIN: &str = env!("CARGO_BIN_EXE_confab-server");

/// A child process that is killed and reaped when dropped.
struct Guard(Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Guard {
    /// Waits for the process to exit, at most [`IO_TIMEOUT`].
    fn wait(&mut self) -> ExitStatus {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            if let Some(status) = self.0.try_wait().expect("try_wait") {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "confab-server did not exit within {IO_TIMEOUT:?}"
            );
            thread::sleep(Duration::from_millis(10));
        }
    }

    fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.0.id()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", std::io::Error::last_os_error());
    }
}

/// A file in the test's scratch directory with these contents.
fn temp_file(name: &str, contents: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("cli-{}-{name}", std::process::id()));
    std::fs::write(&path, contents).expect("write the temporary file");
    path
}

const CREDENTIALS: &str = "yoda wise\nhans falcon\n";

/// The output of a run that is expected to end by itself.
struct Finished {
    status: ExitStatus,
    stderr: String,
}

fn run_to_end(args: &[&str]) -> Finished {
    let child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn confab-server");
    let mut guard = Guard(child);
    let status = guard.wait();
    let mut stderr = String::new();
    guard
        .0
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    Finished { status, stderr }
}

/// Asserts a failed start: non-zero exit, a message, no panic, no server.
fn assert_fails(run: &Finished) {
    assert!(
        !run.status.success(),
        "expected a failure, got {:?}; stderr: {:?}",
        run.status,
        run.stderr
    );
    assert!(
        run.status.code().is_some(),
        "killed by a signal: {:?}",
        run.status
    );
    assert!(!run.stderr.trim().is_empty(), "no error message");
    assert!(
        !run.stderr.contains("panicked"),
        "it panicked: {:?}",
        run.stderr
    );
    assert!(
        !run.stderr.contains("listening on"),
        "it started: {:?}",
        run.stderr
    );
}

/// Asserts a credentials error: one stderr line naming the file (and the
/// line, if given).
fn assert_credentials_error(run: &Finished, path: &str, line: Option<usize>) {
    assert_fails(run);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "expected one line, got {:?}", run.stderr);
    let needle = match line {
        Some(n) => format!("{path}:{n}:"),
        None => path.to_owned(),
    };
    assert!(
        lines[0].contains(&needle),
        "expected {needle:?} in {:?}",
        lines[0]
    );
}

/// A running server and the rest of its stderr, line by line.
struct Running {
    guard: Guard,
    addr: SocketAddr,
    stderr: Receiver<String>,
}

fn start(args: &[&str]) -> Running {
    let mut child = Command::new(BIN)
        .args(args)
        .arg("--ephemeral")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn confab-server");
    let stderr = child.stderr.take().expect("stderr");
    let guard = Guard(child);
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { break };
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let first = rx.recv_timeout(IO_TIMEOUT).expect("a first line on stderr");
    let port = first
        .strip_prefix("listening on 127.0.0.1:")
        .unwrap_or_else(|| panic!("expected `listening on 127.0.0.1:PORT`, got {first:?}"));
    let port: u16 = port
        .parse()
        .unwrap_or_else(|_| panic!("not a port in {first:?}"));
    assert_ne!(port, 0);
    Running {
        guard,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        stderr: rx,
    }
}

#[test]
fn starts_on_a_free_port_and_serves() {
    let path = temp_file("serves", CREDENTIALS);
    let path = path.to_str().expect("utf-8 path");
    let server = start(&["0", "0.5", "30", "--credentials", path]);
    let mut yoda = Client::connect(server.addr);
    yoda.login("yoda", "wise");
    let mut hans = Client::connect(server.addr);
    hans.login("hans", "falcon");
    yoda.expect_line("hans logged in");
    yoda.send("message hans hi\n");
    hans.expect_line("yoda: hi");
    // Accounts come from the file only.
    let mut other = Client::connect(server.addr);
    other.expect(common::USERNAME);
    other.send("vader\n");
    other.expect_line("Invalid Username. Please try again");
    yoda.logout();
    hans.expect_line("yoda logged out");
    drop(server);
}

#[test]
fn options_are_applied() {
    let path = temp_file("options", CREDENTIALS);
    let path = path.to_str().expect("utf-8 path");
    let server = start(&[
        "0",
        "0.5",
        "0.3",
        "--credentials",
        path,
        "--max-line",
        "16",
        "--max-clients",
        "1",
    ]);
    let mut yoda = Client::connect(server.addr);
    yoda.expect(common::USERNAME);
    let mut refused = Client::connect(server.addr);
    refused.expect_line("Error. Server is full");
    refused.expect_eof();
    yoda.send("yoda\n");
    yoda.expect(common::PASSWORD);
    yoda.send("wise\n");
    yoda.expect_line(common::WELCOME);
    yoda.send("broadcast 0123456789\n");
    yoda.expect_line("Error. Line too long");
    // A fractional timeout.
    yoda.expect_line("You have been logged out due to inactivity");
    yoda.expect_eof();
}

fn signal_stops_the_server(signal: libc::c_int) {
    let path = temp_file(&format!("signal-{signal}"), CREDENTIALS);
    let path = path.to_str().expect("utf-8 path");
    let mut server = start(&["0", "0.5", "30", "--credentials", path]);
    let mut yoda = Client::connect(server.addr);
    yoda.login("yoda", "wise");
    let mut waiting = Client::connect(server.addr);
    waiting.expect(common::USERNAME);
    server.guard.signal(signal);
    yoda.expect_line("Server is shutting down");
    yoda.expect_eof();
    waiting.expect_line("Server is shutting down");
    waiting.expect_eof();
    let status = server.guard.wait();
    let rest: Vec<String> = server.stderr.try_iter().collect();
    assert!(
        status.success(),
        "expected exit 0, got {status:?}; stderr: {rest:?}"
    );
    assert!(
        !rest.iter().any(|l| l.contains("panicked")),
        "stderr: {rest:?}"
    );
}

/// A reader that never reads keeps a shutdown waiting for the whole
/// `--shutdown-grace`, while everyone else is told and closed at once; a
/// second signal ends the wait.
#[test]
fn shutdown_waits_for_its_grace_and_a_second_signal_ends_it() {
    let path = temp_file("grace", CREDENTIALS);
    let path = path.to_str().expect("utf-8 path");
    let mut server = start(&[
        "0",
        "0.5",
        "30",
        "--credentials",
        path,
        "--shutdown-grace",
        "60",
        "--max-pending",
        "67108864",
    ]);
    let mut yoda = Client::connect(server.addr);
    yoda.login("yoda", "wise");
    let mut hans = Client::connect(server.addr);
    hans.set_receive_buffer(4096);
    hans.login("hans", "falcon");
    // About 8 MB of replies hans never reads: more than the kernel's
    // buffers hold (4 MiB at most here), less than --max-pending, so some
    // stays queued in the server.
    hans.send(&"help\n".repeat(80_000));
    yoda.expect_line("hans logged in");
    yoda.send("whoelse\n");
    yoda.expect_line("hans");
    server.guard.signal(libc::SIGTERM);
    yoda.expect_line("Server is shutting down");
    yoda.expect_eof();
    // Longer than the default grace (2 s), so a server ignoring the option
    // would be gone by now.
    thread::sleep(Duration::from_millis(2500));
    assert!(
        server.guard.0.try_wait().expect("try_wait").is_none(),
        "the server left before its grace while output was pending"
    );
    server.guard.signal(libc::SIGTERM);
    let status = server.guard.wait();
    assert!(status.success(), "expected exit 0, got {status:?}");
}

#[test]
fn sigterm_tells_everyone_and_exits_zero() {
    signal_stops_the_server(libc::SIGTERM);
}

#[test]
fn sigint_tells_everyone_and_exits_zero() {
    signal_stops_the_server(libc::SIGINT);
}

#[test]
fn missing_credentials_file() {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("cli-{}-does-not-exist", std::process::id()));
    let path = path.to_str().expect("utf-8 path");
    let run = run_to_end(&["0", "1", "1", "--credentials", path]);
    assert_credentials_error(&run, path, None);
}

#[test]
fn malformed_credentials_line() {
    let path = temp_file("malformed", "hans\n");
    let path = path.to_str().expect("utf-8 path");
    let run = run_to_end(&["0", "1", "1", "--credentials", path]);
    assert_credentials_error(&run, path, Some(1));

    let path = temp_file("malformed-3", "yoda wise\n\nhans falcon extra\n");
    let path = path.to_str().expect("utf-8 path");
    let run = run_to_end(&["0", "1", "1", "--credentials", path]);
    assert_credentials_error(&run, path, Some(3));
}

#[test]
fn duplicate_username_in_credentials() {
    let path = temp_file("duplicate", "yoda wise\nyoda other\n");
    let path = path.to_str().expect("utf-8 path");
    let run = run_to_end(&["0", "1", "1", "--credentials", path]);
    assert_credentials_error(&run, path, Some(2));
}

#[test]
fn bad_durations_are_refused() {
    let path = temp_file("durations", CREDENTIALS);
    let path = path.to_str().expect("utf-8 path");
    for bad in ["-1", "abc", "0", "", "nan", "inf", "1e30"] {
        for args in [["0", bad, "1"], ["0", "1", bad]] {
            let run = run_to_end(&[args[0], args[1], args[2], "--credentials", path]);
            assert_fails(&run);
        }
    }
}

#[test]
fn bad_arguments_are_refused() {
    let path = temp_file("arguments", CREDENTIALS);
    let path = path.to_str().expect("utf-8 path");
    for args in [
        &["0", "1"][..],
        &["70000", "1", "1"],
        &["port", "1", "1"],
        &["0", "1", "1", "--max-line", "0"],
        &["0", "1", "1", "--max-clients", "0"],
        &["0", "1", "1", "--max-pending", "-5"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--credentials", path]);
        let run = run_to_end(&args);
        assert_fails(&run);
    }
}
