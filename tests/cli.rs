//! The `confab-server` binary: arguments, the credentials file, the
//! `listening on` line, and signals.

mod common;

use std::io::{BufRead, BufReader};
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::Duration;

use common::{Client, ProcessOptions, ServerProcess, IO_TIMEOUT};

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
    let (status, stderr) =
        common::run_to_end(Command::new(env!("CARGO_BIN_EXE_confab-server")).args(args));
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

/// A running server with the accounts of [`CREDENTIALS`], an idle timeout
/// of `timeout` seconds and these options, whose first line on stderr was
/// `listening on 127.0.0.1:PORT`.
fn start(timeout: &str, args: &[&str]) -> ServerProcess {
    let server = ServerProcess::start(ProcessOptions {
        args: args.iter().map(|a| a.to_string()).collect(),
        accounts: CREDENTIALS
            .lines()
            .map(|line| {
                let (user, pass) = line.split_once(' ').expect("`user password`");
                (user.to_string(), pass.to_string())
            })
            .collect(),
        timeout: Some(timeout.into()),
        ..ProcessOptions::default()
    });
    // Only the warning about the clear passwords of CREDENTIALS comes
    // before `listening on`.
    let early = server.lines_before_listening();
    let clear = CREDENTIALS.lines().count();
    assert!(
        early.len() == 1
            && early[0].contains(&format!(
                "{clear} of {clear} passwords in {}",
                server.credentials_path().display()
            ))
            && early[0].contains("are stored in clear; hash them with `confab-passwd upgrade "),
        "expected the clear-password warning, then `listening on 127.0.0.1:PORT`, got {early:?}"
    );
    server
}

/// A `confab-server` on a free port, started with `0 1 30 --ephemeral` and
/// these arguments; killed and reaped on drop.
struct Spawned {
    child: Child,
    /// The lines it writes to stderr, read on a thread.
    stderr: mpsc::Receiver<String>,
}

impl Spawned {
    fn start(args: &[&str]) -> Spawned {
        let mut child = Command::new(env!("CARGO_BIN_EXE_confab-server"))
            .args(["0", "1", "30", "--ephemeral"])
            .args(args)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn confab-server");
        let pipe = child.stderr.take().expect("stderr");
        let (tx, stderr) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(pipe).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Spawned { child, stderr }
    }

    /// The address of its first stderr line after the warning about
    /// clear passwords, which must be `listening on ADDR`.
    fn listening(&self) -> SocketAddr {
        let mut first = self
            .stderr
            .recv_timeout(IO_TIMEOUT)
            .expect("a first line on stderr");
        if first.contains("are stored in clear; hash them with") {
            first = self
                .stderr
                .recv_timeout(IO_TIMEOUT)
                .expect("a line after the warning");
        }
        first
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening on ADDR`, got {first:?}"))
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn help_and_version_name_the_server() {
    let output = Command::new(env!("CARGO_BIN_EXE_confab-server"))
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .expect("run confab-server --help");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout);
    let about = help.lines().next().unwrap_or_default();
    assert!(
        about.contains("chat server")
            && !about.contains("terminal client")
            && about != env!("CARGO_PKG_DESCRIPTION"),
        "the first line should describe the server alone: {about:?}"
    );
    assert!(
        help.contains("Usage: confab-server "),
        "no usage line: {help}"
    );

    let output = Command::new(env!("CARGO_BIN_EXE_confab-server"))
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .expect("run confab-server -V");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("confab-server {}\n", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn bind_accepts_a_host_name_and_prints_the_resolved_address() {
    let path = temp_file("bind-name", CREDENTIALS);
    let path = path.to_str().expect("utf-8 path");
    // What the server must pick: the first address the name resolves to.
    let expected = ("localhost", 0)
        .to_socket_addrs()
        .expect("resolve localhost")
        .next()
        .expect("an address for localhost")
        .ip();
    let server = Spawned::start(&["--bind", "localhost", "--credentials", path]);
    let addr = server.listening();
    assert_eq!(addr.ip(), expected, "listening on {addr}");
    assert_ne!(addr.port(), 0, "listening on {addr}");
    let mut yoda = Client::connect(addr);
    yoda.login("yoda", "wise");
    yoda.logout();
}

#[test]
fn a_bind_name_that_does_not_resolve_is_one_line() {
    let path = temp_file("bind-unresolvable", CREDENTIALS);
    let path = path.to_str().expect("utf-8 path");
    let run = run_to_end(&[
        "0",
        "1",
        "1",
        "--credentials",
        path,
        "--ephemeral",
        "--bind",
        "no-such-host.invalid",
    ]);
    assert_fails(&run);
    assert_eq!(run.status.code(), Some(1), "stderr: {:?}", run.stderr);
    assert_eq!(run.stderr.lines().count(), 1, "{:?}", run.stderr);
    assert!(
        run.stderr
            .starts_with("confab-server: cannot resolve --bind no-such-host.invalid: "),
        "{:?}",
        run.stderr
    );
}

#[test]
fn comment_lines_of_the_credentials_file_are_not_accounts() {
    let path = temp_file(
        "comments",
        "# test accounts, one `username password` per line\n\
         \n   # hans falcon, commented out\nyoda wise\n#vader sithlord\n",
    );
    let path = path.to_str().expect("utf-8 path");
    let server = Spawned::start(&["--credentials", path]);
    let addr = server.listening();
    let mut yoda = Client::connect(addr);
    yoda.login("yoda", "wise");
    for user in ["hans", "#vader", "#"] {
        let mut other = Client::connect(addr);
        other.expect(common::USERNAME);
        other.send(&format!("{user}\n"));
        other.expect_line(common::INVALID_USERNAME);
    }
    yoda.logout();
}

#[test]
fn starts_on_a_free_port_and_serves() {
    let server = start("30", &[]);
    let (mut yoda, mut hans) = common::two_users(server.addr);
    yoda.send("message hans hi\n");
    hans.expect_line("yoda: hi");
    // Accounts come from the file only.
    let mut other = server.connect();
    other.expect(common::USERNAME);
    other.send("vader\n");
    other.expect_line("Invalid Username. Please try again");
    yoda.logout();
    hans.expect_line("yoda logged out");
    drop(server);
}

#[test]
fn options_are_applied() {
    let server = start("0.3", &["--max-line", "16", "--max-clients", "1"]);
    let mut yoda = server.connect();
    yoda.expect(common::USERNAME);
    let mut refused = server.connect();
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
    let mut server = start("30", &[]);
    let mut yoda = server.login("yoda", "wise");
    let mut waiting = server.connect();
    waiting.expect(common::USERNAME);
    server.signal(signal);
    yoda.expect_line("Server is shutting down");
    yoda.expect_eof();
    waiting.expect_line("Server is shutting down");
    waiting.expect_eof();
    let status = server.wait(IO_TIMEOUT);
    let rest = server.stderr_lines();
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
    let mut server = start(
        "30",
        &["--shutdown-grace", "60", "--max-pending", "67108864"],
    );
    let mut yoda = server.login("yoda", "wise");
    let mut hans = server.connect();
    hans.set_receive_buffer(4096);
    hans.login("hans", "falcon");
    // About 8 MB of replies hans never reads: more than the kernel's
    // buffers hold (4 MiB at most here), less than --max-pending, so some
    // stays queued in the server.
    hans.send(&"help\n".repeat(80_000));
    yoda.expect_line("hans logged in");
    yoda.send("whoelse\n");
    yoda.expect_line("hans");
    server.signal(libc::SIGTERM);
    yoda.expect_line("Server is shutting down");
    yoda.expect_eof();
    // Longer than the default grace (2 s), so a server ignoring the option
    // would be gone by now.
    thread::sleep(Duration::from_millis(2500));
    // Fails if the server left before its grace while output was pending.
    server.assert_running();
    server.signal(libc::SIGTERM);
    let status = server.wait(IO_TIMEOUT);
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
    // Named as the credentials file, not only by its path.
    assert!(
        run.stderr
            .starts_with(&format!("confab-server: credentials file {path}: ")),
        "{:?}",
        run.stderr
    );
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
        &["0", "1", "1", "--max-line", "1048577"],
        &["0", "1", "1", "--store-max", "0"],
        &["0", "1", "1", "--max-per-ip", "0"],
        &["0", "1", "1", "--max-failures-per-ip", "0"],
        &["0", "1", "1", "--rate", "0"],
        &["0", "1", "1", "--burst", "0"],
        &["0", "1", "1", "--login-timeout", "0"],
        &["0", "1", "1", "--trust", "10.0.0.0/33"],
        &["0", "1", "1", "--trust", "localhost"],
        &["0", "1", "1", "--trust", "none", "--trust", "10.0.0.0/8"],
        &["0", "1", "1", "--recover", "--ephemeral"],
    ] {
        let mut args = args.to_vec();
        args.extend(["--credentials", path]);
        let run = run_to_end(&args);
        assert_fails(&run);
    }
}
