//! End-to-end tests of private messaging: a real `confab-server` and two or
//! three `confab` clients as child processes, plus raw TCP connections
//! playing an `nc` user and a hostile peer. Every wait is bounded.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::thread;
use std::time::{Duration, Instant};

use common::client_process::{ClientProcess, TIMEOUT};
use common::{ProcessOptions, ServerProcess};

/// How long a flood of 64 MiB may take to get through a client and be read
/// by the test: a debug build of the client shows every line, and on a
/// loaded two-core machine that and the test's reading take several times
/// [`TIMEOUT`]. A deadline for the flood to be over, not a speed asserted.
const FLOOD_TIMEOUT: Duration = Duration::from_secs(60);

/// A server with the test accounts and the given idle timeout (seconds).
fn server_with_timeout(timeout: &str) -> ServerProcess {
    ServerProcess::start(ProcessOptions {
        timeout: Some(timeout.into()),
        ..ProcessOptions::default()
    })
}

fn server() -> ServerProcess {
    server_with_timeout("60")
}

/// A `confab` client logged in as `user`, its private port registered
/// (the server lists the private commands in `help` only after that).
fn client(server: &ServerProcess, user: &str) -> ClientProcess {
    let mut client = ClientProcess::start(server.addr.port());
    client.login(user, common::password(user));
    client.send("help");
    client.stdout.expect("stopprivate <user>\n");
    client
}

/// `a` starts a private session with `b`, and both are told.
fn start(a: &mut ClientProcess, a_name: &str, b: &mut ClientProcess, b_name: &str) {
    a.send(&format!("startprivate {b_name}"));
    a.stdout
        .expect(&format!("Start private messaging with {b_name}\n"));
    b.stdout
        .expect(&format!("{a_name} started private messaging with you\n"));
}

/// Waits until `client` has handled everything typed and received so far:
/// the client answers this line itself, after what came before it.
fn barrier(client: &mut ClientProcess) {
    client.send("stopprivate nobody-at-all");
    client
        .stdout
        .expect("Error. Private messaging to nobody-at-all not enabled\n");
}

#[test]
fn start_exchange_both_ways_and_stop() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut hans = client(&server, "hans");

    start(&mut yoda, "yoda", &mut hans, "hans");
    yoda.send("private hans hello   there");
    hans.stdout.expect("yoda(private): hello   there\n");
    hans.send("private yoda hi yoda");
    yoda.stdout.expect("hans(private): hi yoda\n");

    // Messages through the server go on meanwhile.
    hans.send("message yoda through the server");
    yoda.stdout.expect("hans: through the server\n");

    yoda.send("stopprivate hans");
    yoda.stdout.expect("Stop private messaging with hans\n");
    hans.stdout
        .expect("yoda stopped private messaging with you\n");
    hans.send("private yoda still there?");
    hans.stdout
        .expect("Error. Private messaging to yoda not enabled\n");
    yoda.send("stopprivate hans");
    yoda.stdout
        .expect("Error. Private messaging to hans not enabled\n");

    // A new session can be started after one ended.
    start(&mut hans, "hans", &mut yoda, "yoda");
    hans.send("private yoda again");
    yoda.stdout.expect("hans(private): again\n");

    for output in [yoda.stdout.text(), hans.stdout.text()] {
        assert!(!output.contains("!private"), "machine line shown: {output}");
        assert!(!output.contains("127.0.0.1"), "address shown: {output}");
    }
}

#[test]
fn starting_errors_are_one_line_each() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut hans = client(&server, "hans");

    for (typed, reply) in [
        (
            "startprivate yoda",
            "Error. Cannot start private messaging with self",
        ),
        ("startprivate nobody", "Error. Invalid user"),
        ("startprivate vader", "Error. vader is offline"),
        ("startprivate", "Error. Usage: startprivate <user>"),
        (
            "startprivate hans vader",
            "Error. Usage: startprivate <user>",
        ),
        ("private hans", "Error. Usage: private <user> <message>"),
        ("stopprivate", "Error. Usage: stopprivate <user>"),
        (
            "private hans hi",
            "Error. Private messaging to hans not enabled",
        ),
    ] {
        yoda.send(typed);
        yoda.stdout.expect(&format!("{reply}\n"));
    }

    start(&mut yoda, "yoda", &mut hans, "hans");
    yoda.send("startprivate hans");
    yoda.stdout
        .expect("Error. Private messaging with hans already enabled\n");
    hans.send("startprivate yoda");
    hans.stdout
        .expect("Error. Private messaging with yoda already enabled\n");

    let mut long = "private hans ".to_string();
    long.push_str(&"x".repeat(1100));
    yoda.send(&long);
    yoda.stdout.expect("Error. Line too long\n");
    yoda.send("private hans short");
    hans.stdout.expect("yoda(private): short\n");
    assert!(!hans.stdout.text().contains("xxxx"));
}

#[test]
fn a_user_who_blocked_you_cannot_be_asked_and_their_address_stays_hidden() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut hans = client(&server, "hans");
    hans.send("block yoda");
    hans.stdout.expect("yoda is blocked\n");

    yoda.send("startprivate hans");
    yoda.stdout
        .expect("Error. Cannot start private messaging as hans has blocked you\n");
    hans.send("logout");
    hans.stdout.expect("Goodbye\n");
    hans.wait();
    yoda.send("startprivate hans");
    yoda.stdout
        .expect("Error. Cannot start private messaging as hans has blocked you\n");

    barrier(&mut yoda);
    assert!(!yoda.stdout.text().contains("127.0.0.1"));
}

#[test]
fn a_session_started_before_a_block_keeps_working() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut hans = client(&server, "hans");
    start(&mut yoda, "yoda", &mut hans, "hans");

    hans.send("block yoda");
    hans.stdout.expect("yoda is blocked\n");
    yoda.send("private hans can you still hear me");
    hans.stdout.expect("yoda(private): can you still hear me\n");
    yoda.send("message hans and now?");
    yoda.stdout
        .expect("Your message could not be delivered as the recipient has blocked you\n");
}

#[test]
fn logout_ends_every_session_and_the_peers_are_told() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut hans = client(&server, "hans");
    let mut vader = client(&server, "vader");
    start(&mut yoda, "yoda", &mut hans, "hans");
    start(&mut vader, "vader", &mut yoda, "yoda");
    start(&mut hans, "hans", &mut vader, "vader");

    yoda.send("logout");

    hans.stdout
        .expect("yoda stopped private messaging with you\n");
    vader
        .stdout
        .expect("yoda stopped private messaging with you\n");
    assert_eq!(yoda.wait().code(), Some(0));
    hans.send("private vader we are still here");
    vader.stdout.expect("hans(private): we are still here\n");
    hans.send("private yoda gone?");
    hans.stdout
        .expect("Error. Private messaging to yoda not enabled\n");
}

#[test]
fn end_of_input_and_signals_end_sessions_too() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut hans = client(&server, "hans");
    let mut vader = client(&server, "vader");
    start(&mut hans, "hans", &mut yoda, "yoda");
    start(&mut vader, "vader", &mut yoda, "yoda");

    hans.close_stdin();
    yoda.stdout
        .expect("hans stopped private messaging with you\n");
    assert_eq!(hans.wait().code(), Some(0));

    // SAFETY: signalling our own child by its pid.
    unsafe { libc::kill(vader.child.id() as libc::pid_t, libc::SIGTERM) };
    yoda.stdout
        .expect("vader stopped private messaging with you\n");
}

#[test]
fn an_inactivity_logout_ends_sessions() {
    let server = server_with_timeout("1.5");
    let mut yoda = client(&server, "yoda");
    let mut hans = client(&server, "hans");
    start(&mut yoda, "yoda", &mut hans, "hans");

    // Private messages are not activity; hans stays active through the
    // server while yoda goes quiet.
    yoda.send("private hans this is not activity");
    hans.stdout.expect("yoda(private): this is not activity\n");
    let deadline = Instant::now() + TIMEOUT;
    while !hans.stdout.seen_within(
        "yoda stopped private messaging with you\n",
        Duration::from_millis(300),
    ) {
        assert!(Instant::now() < deadline, "yoda was never logged out");
        hans.send("whoelsesince 0");
    }
    yoda.stdout
        .expect("You have been logged out due to inactivity\n");
    assert_eq!(yoda.wait().code(), Some(0));
}

#[test]
fn a_killed_peer_ends_the_session() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut hans = client(&server, "hans");
    start(&mut yoda, "yoda", &mut hans, "hans");

    hans.child.kill().expect("kill hans's client");
    hans.child.wait().expect("reap hans's client");

    yoda.stdout
        .expect("Private messaging with hans ended: connection lost\n");
    yoda.send("private hans are you there");
    yoda.stdout
        .expect("Error. Private messaging to hans not enabled\n");
}

#[test]
fn help_lists_the_private_commands_in_the_client_only() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    yoda.send("help");
    yoda.stdout.expect(
        "logout\nhelp\nstartprivate <user>\nprivate <user> <message>\nstopprivate <user>\n",
    );

    let mut vader = server.login("vader", common::password("vader"));
    vader.send("help\n");
    vader.expect_lines(&common::HELP);
    vader.expect_silence(200);
}

#[test]
fn an_nc_user_gets_clear_errors_and_never_a_machine_line() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut vader = server.login("vader", common::password("vader"));

    for typed in ["startprivate yoda", "private yoda hi", "stopprivate yoda"] {
        vader.send(&format!("{typed}\n"));
        vader.expect_line("Error. Private messaging needs the confab client");
    }
    yoda.send("startprivate vader");
    yoda.stdout
        .expect("Error. vader cannot accept private messaging\n");
    vader.expect_silence(300);
}

/// A raw connection logged in as `user` that registered a (fake) private
/// port, so that the server introduces it: it plays a hostile client.
fn registered_raw(server: &ServerProcess, user: &str) -> common::Client {
    let mut raw = server.login(user, common::password(user));
    raw.send("privateport 9\n");
    raw
}

/// Asks the server to introduce `raw` to `target`; returns the target's
/// address and the token.
fn introduce(raw: &mut common::Client, target: &str) -> (SocketAddr, String) {
    raw.send(&format!("startprivate {target}\n"));
    let line = raw.read_line();
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["!private", "connect", user, address, token] if *user == target => {
            (address.parse().expect("an address"), token.to_string())
        }
        _ => panic!("expected an introduction, got {line:?}"),
    }
}

/// Connects to a client's private port and says `hello` with `token`.
fn peer(address: SocketAddr, token: &str) -> TcpStream {
    let mut stream = TcpStream::connect(address).expect("connect to the private port");
    stream
        .write_all(format!("hello {token}\n").as_bytes())
        .expect("send hello");
    stream
}

/// Reads until end of stream (or reset); panics if it takes longer than
/// [`TIMEOUT`]. Returns what was read.
fn read_to_close(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
    let mut got = Vec::new();
    let mut buf = [0; 4096];
    loop {
        match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("connection not closed: {e}"),
        }
    }
    String::from_utf8_lossy(&got).into_owned()
}

/// Reads one line (bounded).
fn read_line(stream: &mut TcpStream) -> String {
    stream.set_read_timeout(Some(TIMEOUT)).expect("set timeout");
    let mut line = Vec::new();
    let mut byte = [0; 1];
    while line.last() != Some(&b'\n') {
        match stream.read(&mut byte) {
            Ok(1) => line.push(byte[0]),
            other => panic!("expected a line, got {other:?} after {line:?}"),
        }
    }
    String::from_utf8_lossy(&line).into_owned()
}

#[test]
fn a_wrong_or_reused_token_is_refused() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut mallory = registered_raw(&server, "vader");
    let (address, token) = introduce(&mut mallory, "yoda");

    // Not a hello at all: closed at once.
    let mut garbage = TcpStream::connect(address).expect("connect");
    garbage.write_all(b"message hi\n").expect("send");
    assert_eq!(read_to_close(&mut garbage), "");

    // A token the server never gave: closed, nothing shown.
    let mut wrong = token.clone();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(31.., last);
    let mut impostor = peer(address, &wrong);
    impostor.write_all(b"message I am vader\n").expect("send");
    assert_eq!(read_to_close(&mut impostor), "");

    // The right token opens the session, once.
    let mut real = peer(address, &token);
    assert_eq!(read_line(&mut real), "ok\n");
    yoda.stdout
        .expect("vader started private messaging with you\n");
    real.write_all(b"message it is me\n").expect("send");
    yoda.stdout.expect("vader(private): it is me\n");

    let mut replay = peer(address, &token);
    replay.write_all(b"message me again\n").expect("send");
    assert_eq!(read_to_close(&mut replay), "");

    barrier(&mut yoda);
    let shown = yoda.stdout.text();
    assert!(!shown.contains("I am vader"), "{shown}");
    assert!(!shown.contains("me again"), "{shown}");
    assert_eq!(shown.matches("started private messaging").count(), 1);
}

#[test]
fn a_hostile_peer_cannot_bloat_the_client() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut mallory = registered_raw(&server, "vader");

    // A line over the limit ends the session.
    let (address, token) = introduce(&mut mallory, "yoda");
    let mut long = peer(address, &token);
    assert_eq!(read_line(&mut long), "ok\n");
    yoda.stdout
        .expect("vader started private messaging with you\n");
    let mut line = b"message ".to_vec();
    line.resize(1 << 20, b'x');
    // The client may close before taking it all.
    let _ = long.write_all(&line);
    yoda.stdout
        .expect("Private messaging with vader ended: connection lost\n");

    // A peer that never reads is cut off once 1 MiB waits for it.
    let (address, token) = introduce(&mut mallory, "yoda");
    let mut stuck = peer(address, &token);
    assert_eq!(read_line(&mut stuck), "ok\n");
    yoda.stdout
        .expect("vader started private messaging with you\n");
    let text = "y".repeat(1000);
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut sent = 0;
    while !yoda.stdout.seen_within(
        "Private messaging with vader ended: connection lost\n",
        Duration::from_millis(20),
    ) {
        assert!(
            Instant::now() < deadline,
            "never cut off after {sent} lines"
        );
        for _ in 0..500 {
            yoda.send(&format!("private vader {text}"));
        }
        sent += 500;
    }
    // 1 MiB in the client, plus what the kernel buffers on both sides.
    assert!(sent <= 20_000, "cut off only after {sent} lines");
    drop(stuck);
}

#[test]
fn two_users_starting_at_once_end_up_with_one_session() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut hans = client(&server, "hans");

    for round in 0..3 {
        yoda.send("startprivate hans");
        hans.send("startprivate yoda");
        // Whichever way it went, both can now talk, exactly once each way.
        let deadline = Instant::now() + TIMEOUT;
        loop {
            yoda.send(&format!("private hans ping {round}"));
            let ping = format!("yoda(private): ping {round}\n");
            if hans.stdout.seen_within(&ping, Duration::from_millis(50)) {
                break;
            }
            assert!(Instant::now() < deadline, "no session in round {round}");
        }
        hans.send(&format!("private yoda pong {round}"));
        yoda.stdout
            .expect(&format!("hans(private): pong {round}\n"));
        for output in [yoda.stdout.text(), hans.stdout.text()] {
            assert!(!output.contains("could not be started"), "{output}");
        }
        yoda.send("stopprivate hans");
        hans.stdout
            .expect("yoda stopped private messaging with you\n");
    }
}

/// Accepts one connection on `listener`, waiting at most [`TIMEOUT`].
fn accept_within(listener: &std::net::TcpListener) -> TcpStream {
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let deadline = Instant::now() + TIMEOUT;
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).expect("blocking stream");
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("no connection came: {e}"),
        }
    }
}

#[test]
fn crossed_starts_keep_the_connection_with_the_smaller_token() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    // hans is played by hand, with a real listening port.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let mut hans = server.login("hans", common::password("hans"));
    hans.send(&format!("privateport {port}\nhelp\n"));
    while hans.read_line() != "stopprivate <user>" {}

    let mut seen = [false; 2];
    for round in 0..20 {
        if seen == [true, true] {
            break;
        }
        // yoda starts; hans's side takes the connection but does not answer.
        yoda.send("startprivate hans");
        let line = hans.read_line();
        let yoda_token = line
            .strip_prefix("!private accept yoda ")
            .unwrap_or_else(|| panic!("expected an introduction, got {line:?}"))
            .to_string();
        let mut from_yoda = accept_within(&listener);
        assert_eq!(read_line(&mut from_yoda), format!("hello {yoda_token}\n"));
        // hans starts too, before answering.
        let (address, hans_token) = introduce(&mut hans, "yoda");
        let mut to_yoda = peer(address, &hans_token);

        let kept = if hans_token < yoda_token {
            assert_eq!(read_line(&mut to_yoda), "ok\n");
            yoda.stdout
                .expect("hans started private messaging with you\n");
            assert_eq!(read_to_close(&mut from_yoda), "");
            seen[0] = true;
            to_yoda
        } else {
            assert_eq!(read_to_close(&mut to_yoda), "busy\n");
            from_yoda.write_all(b"ok\n").expect("answer yoda");
            yoda.stdout.expect("Start private messaging with hans\n");
            seen[1] = true;
            from_yoda
        };
        let mut kept = kept;
        yoda.send(&format!("private hans round {round}"));
        assert_eq!(read_line(&mut kept), format!("message round {round}\n"));
        yoda.send("stopprivate hans");
        assert_eq!(read_to_close(&mut kept), "stop\n");
    }
    assert_eq!(seen, [true, true], "both orders of tokens were seen");
    barrier(&mut yoda);
    assert!(!yoda.stdout.text().contains("could not be started"));
}

#[test]
fn a_flooding_peer_neither_bloats_the_client_nor_silences_it() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut mallory = registered_raw(&server, "vader");
    let (address, token) = introduce(&mut mallory, "yoda");
    let mut flood = peer(address, &token);
    assert_eq!(read_line(&mut flood), "ok\n");
    yoda.stdout
        .expect("vader started private messaging with you\n");

    // 64 MiB of messages, as fast as the client takes them.
    let mut line = b"message ".to_vec();
    line.resize(1023, b'f');
    line.push(b'\n');
    let burst = line.repeat(1024);
    flood
        .set_write_timeout(Some(FLOOD_TIMEOUT))
        .expect("set timeout");
    let writer = thread::spawn(move || {
        for _ in 0..64 {
            if flood.write_all(&burst).is_err() {
                break;
            }
        }
        flood
    });
    // The client still answers its user during the flood.
    for _ in 0..3 {
        barrier(&mut yoda);
    }
    let flood = writer.join().expect("the flood writer");
    yoda.send("private vader last");
    drop(flood);
    // The end of the session is shown after all 64 MiB of the flood.
    assert!(
        yoda.stdout.seen_within(
            "Private messaging with vader ended: connection lost\n",
            FLOOD_TIMEOUT
        ),
        "the session did not end after the flood"
    );
    let peak = common::status_kib(yoda.child.id(), "VmHWM");
    assert!(peak < 32 * 1024, "the client peaked at {peak} KiB");
}

#[test]
fn a_peer_that_cannot_be_reached_or_does_not_answer_is_reported() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    // hans, by hand, registers a port on which nothing listens.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = closed.local_addr().expect("address").port();
    drop(closed);
    let mut hans = server.login("hans", common::password("hans"));
    hans.send(&format!("privateport {port}\nhelp\n"));
    while hans.read_line() != "stopprivate <user>" {}

    yoda.send("startprivate hans");
    yoda.stdout
        .expect("Error. Private messaging with hans could not be started\n");

    // Now a port that takes the connection but never answers `hello`.
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = silent.local_addr().expect("address").port();
    hans.send(&format!("privateport {port}\n"));
    yoda.send("startprivate hans");
    let mut from_yoda = accept_within(&silent);
    assert!(read_line(&mut from_yoda).starts_with("hello "));
    yoda.send("private hans are you there");
    // The client gives the peer 5 s to answer.
    assert!(yoda.stdout.seen_within(
        "Error. Private messaging with hans could not be started\n",
        TIMEOUT + Duration::from_secs(3)
    ));
    assert_eq!(read_to_close(&mut from_yoda), "message are you there\n");
    yoda.send("private hans and now");
    yoda.stdout
        .expect("Error. Private messaging to hans not enabled\n");
}

#[test]
fn a_script_typed_ahead_of_the_login_starts_a_session() {
    let server = server();
    let mut hans = client(&server, "hans");
    let mut yoda = ClientProcess::start(server.addr.port());
    // Everything at once, before any prompt; blank lines answer nothing.
    yoda.send("yoda\n\n   \nwise\nstartprivate hans");

    yoda.stdout.expect("Start private messaging with hans\n");
    hans.stdout
        .expect("yoda started private messaging with you\n");
    yoda.send("private hans sent by a script");
    hans.stdout.expect("yoda(private): sent by a script\n");
    assert!(
        !yoda.stdout.text().contains("Error."),
        "{}",
        yoda.stdout.text()
    );
}

#[test]
fn a_private_line_typed_right_after_startprivate_waits_for_the_session() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    let mut hans = client(&server, "hans");
    // In one write: the session cannot be open when the second line is
    // read, so it waits for it instead of being refused.
    yoda.send("startprivate hans\nprivate hans are we alone?");
    hans.stdout
        .expect("yoda started private messaging with you\n");
    hans.stdout.expect("yoda(private): are we alone?\n");
    yoda.stdout.expect("Start private messaging with hans\n");
}

#[test]
fn a_private_line_waiting_for_a_session_that_is_refused_gets_the_error() {
    let server = server();
    let mut yoda = client(&server, "yoda");
    yoda.send("startprivate luke\nprivate luke hello?");
    yoda.stdout.expect("Error. luke is offline\n");
    yoda.stdout
        .expect("Error. Private messaging to luke not enabled\n");
}
