//! End-to-end tests of the terminal client: the real `confab-server` and
//! `confab` clients run as child processes, standard input is fed line by
//! line and standard output is checked. Every wait is bounded by
//! [`TIMEOUT`], so a client that hangs fails its test instead of stalling
//! the suite.

mod common;

use std::net::TcpListener;
use std::process::{Command, Stdio};

use common::client_process::{ClientProcess, TIMEOUT};

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

/// A port on which nothing listens: bound, then released.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// hans, then yoda, logged in through their own clients.
fn hans_then_yoda(server: &Server) -> (ClientProcess, ClientProcess) {
    let mut hans = ClientProcess::start(server.port);
    hans.login("hans", "falcon");
    let mut yoda = ClientProcess::start(server.port);
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
    let mut yoda = ClientProcess::start(server.port);
    yoda.login("yoda", "wise");

    server.kill();

    assert_eq!(yoda.stdout.rest(), "Connection closed by server\n");
    assert_eq!(yoda.wait().code(), Some(0));
}

#[test]
fn server_going_away_during_a_prompt_is_reported_on_its_own_line() {
    let mut server = Server::start();
    let mut yoda = ClientProcess::start(server.port);
    yoda.stdout.expect("Username: ");

    server.kill();

    assert_eq!(yoda.stdout.rest(), "\nConnection closed by server\n");
    assert_eq!(yoda.wait().code(), Some(0));
}

#[test]
fn refused_connection_fails_with_one_line() {
    let port = closed_port();
    let mut client = ClientProcess::with_stdin(port, Stdio::null());

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
    let mut client = ClientProcess::with_stdin(server.port, Stdio::null());

    assert_eq!(client.wait().code(), Some(0));
    let shown = client.stdout.rest();
    assert!(
        shown.is_empty() || shown == "Username: \n",
        "stdout was {shown:?}"
    );
    assert_eq!(client.stderr.rest(), "");
}

#[test]
fn port_zero_is_refused_as_an_argument() {
    let mut client = ClientProcess::with_stdin(0, Stdio::null());

    // A usage error (clap's exit status), not a failed connection.
    assert_eq!(client.wait().code(), Some(2));
    let error = client.stderr.rest();
    assert!(
        error.contains("'0'") && error.contains("<PORT>") && !error.contains("connect"),
        "stderr was {error:?}"
    );
    assert_eq!(client.stdout.rest(), "");
}

#[test]
fn version_names_the_client() {
    let output = Command::new(env!("CARGO_BIN_EXE_confab"))
        .arg("-V")
        .stdin(Stdio::null())
        .output()
        .expect("run confab -V");
    assert!(output.status.success(), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        format!("confab {}\n", env!("CARGO_PKG_VERSION"))
    );
}
