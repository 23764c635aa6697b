//! `!stamps` over real sockets: a v1 client's offline mail is byte for
//! byte what it was; a client that asks gets each message with the time it
//! was stored, in order, then `!queued end` before anything else; the times
//! survive restarts; `!stamps` anywhere but the username prompt is what v1
//! makes of it.

mod common;

use std::thread;
use std::time::{Duration, SystemTime};

use common::{Client, Options, TempDir, TestServer, HELP, PASSWORD, USERNAME, WELCOME};
use confab::protocol::Reply;
use confab_testkit::journal_in;

const OFFLINE: &str = "luke is offline. Your message will be delivered when they log in";

/// Milliseconds since the Unix epoch now.
fn unix_now_ms() -> u64 {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

/// What a stamp may read for a message stored after this reading: its
/// second, or the one before if the reading is within the few
/// milliseconds the server's pairing of its two clocks may round off.
fn earliest_stamp() -> u64 {
    unix_now_ms().saturating_sub(10) / 1000
}

/// What a stamp may read for a message stored before this reading.
fn latest_stamp() -> u64 {
    unix_now_ms() / 1000
}

/// yoda leaves luke these messages, each acknowledged before the next,
/// and stays online.
fn leave_for_luke(server: &TestServer, texts: &[&str]) -> Client {
    let mut yoda = server.login("yoda");
    for text in texts {
        yoda.send(&format!("message luke {text}\n"));
        yoda.expect_line(OFFLINE);
    }
    yoda
}

/// A connection that asked for stamps and is at the username prompt again.
fn connect_stamped(server: &TestServer) -> Client {
    let mut client = server.connect();
    client.expect(USERNAME);
    client.send("!stamps\n");
    client.expect("!stamps on\n");
    client.expect(USERNAME);
    client
}

/// Reads `n` stamped lines and returns their times and messages, checking
/// that each is a `!queued` line.
fn read_stamped(client: &mut Client, n: usize) -> Vec<(Option<u64>, String)> {
    (0..n)
        .map(|_| {
            let line = client.read_line();
            let (at, message) = Reply::read_queued(&line)
                .unwrap_or_else(|| panic!("not a stamped message: {line:?}"));
            (at, message.to_owned())
        })
        .collect()
}

/// Checks that every time is known and within `[before, after]` (see
/// [`earliest_stamp`], [`latest_stamp`]), never decreasing, and that the
/// messages are `expected` in order.
#[track_caller]
fn assert_stamped(got: &[(Option<u64>, String)], expected: &[&str], before: u64, after: u64) {
    let messages: Vec<&str> = got.iter().map(|(_, m)| m.as_str()).collect();
    assert_eq!(messages, expected);
    let mut last = 0;
    for (at, message) in got {
        let at = at.unwrap_or_else(|| panic!("{message:?} has no time"));
        assert!(
            (before..=after).contains(&at),
            "{message:?} stamped {at}, not within {before}..={after}"
        );
        assert!(
            at >= last,
            "{message:?} stamped earlier than the one before"
        );
        last = at;
    }
}

#[test]
fn a_v1_client_gets_its_mail_byte_for_byte_as_before() {
    let server = TestServer::start();
    leave_for_luke(&server, &["first: with a colon", "second  with spaces"]).logout();
    let mut luke = server.connect();
    luke.send("luke\nlightsaber\nhelp\n");
    let mut expected = format!(
        "{USERNAME}{PASSWORD}{WELCOME}\nyoda: first: with a colon\nyoda: second  with spaces\n"
    );
    for line in HELP {
        expected.push_str(line);
        expected.push('\n');
    }
    luke.expect(&expected);
    luke.expect_silence(200);
}

#[test]
fn a_stamps_client_gets_its_mail_with_its_times_in_order_then_the_end() {
    let server = TestServer::start();
    let before = earliest_stamp();
    let mut yoda = leave_for_luke(&server, &["one", "two: with a colon", "three  spaced"]);
    let after = latest_stamp();
    let mut luke = connect_stamped(&server);
    // Pipelined: the reply to `whoelse` is sent while the backlog is
    // written, and must follow its end.
    luke.send("luke\nlightsaber\nwhoelse\n");
    luke.expect(PASSWORD);
    luke.expect_line(WELCOME);
    let got = read_stamped(&mut luke, 3);
    assert_stamped(
        &got,
        &[
            "yoda: one",
            "yoda: two: with a colon",
            "yoda: three  spaced",
        ],
        before,
        after,
    );
    luke.expect_line("!queued end");
    luke.expect_line("yoda");
    luke.barrier();
    yoda.expect_line("luke logged in");
    // Delivered: the next login has no mail, and only the end.
    luke.logout();
    yoda.expect_line("luke logged out");
    let mut luke = connect_stamped(&server);
    luke.enter("luke", "lightsaber");
    luke.expect_line("!queued end");
    luke.barrier();
}

#[test]
fn without_mail_the_end_follows_the_welcome_at_once() {
    let server = TestServer::start();
    let mut luke = connect_stamped(&server);
    luke.enter("luke", "lightsaber");
    luke.expect_line("!queued end");
    luke.barrier();
}

#[test]
fn stamps_is_trimmed_like_any_line_and_answered_again_when_sent_again() {
    let server = TestServer::start();
    let mut luke = server.connect();
    luke.expect(USERNAME);
    luke.send("  !stamps \r\n!stamps\n!stamps on\n");
    luke.expect("!stamps on\nUsername: !stamps on\nUsername: ");
    luke.expect("Invalid Username. Please try again\nUsername: ");
    luke.enter("luke", "lightsaber");
    luke.expect_line("!queued end");
    luke.barrier();
}

#[test]
fn stamps_at_the_password_prompt_is_a_wrong_password_and_after_login_an_invalid_command() {
    let server = TestServer::start();
    let mut luke = server.connect();
    luke.expect(USERNAME);
    luke.send("luke\n");
    luke.expect(PASSWORD);
    luke.send("!stamps\n");
    luke.expect("Invalid Password. Please try again\nPassword: ");
    luke.send("lightsaber\n");
    luke.expect_line(WELCOME);
    luke.send("!stamps\n");
    luke.expect_line("Error. Invalid command");
    luke.barrier();
}

#[test]
fn the_times_survive_restarts_with_the_durable_store() {
    let tmp = TempDir::new("stamps-restart");
    let durable = || Options {
        storage: journal_in(&tmp.data()),
        ..Options::default()
    };
    let server = TestServer::with(durable());
    let before = earliest_stamp();
    leave_for_luke(&server, &["kept", "and kept"]).logout();
    let after = latest_stamp();
    server.stop().expect("stop");
    // Into the next second, so that a time made up at the restart would
    // be later than `after`.
    while unix_now_ms() / 1000 <= after {
        thread::sleep(Duration::from_millis(20));
    }
    // The first restart reads the journal and compacts it; the second
    // reads the snapshot that made.
    for _ in 0..2 {
        let server = TestServer::with(durable());
        server.stop().expect("stop");
    }
    let server = TestServer::with(durable());
    let mut luke = connect_stamped(&server);
    luke.enter("luke", "lightsaber");
    let got = read_stamped(&mut luke, 2);
    assert_stamped(&got, &["yoda: kept", "yoda: and kept"], before, after);
    luke.expect_line("!queued end");
    luke.barrier();
}
