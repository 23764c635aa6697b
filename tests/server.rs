//! The server over real sockets, against the exact bytes of `protocol.md`.

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{
    password, three_users, two_users, Client, FailOnPanic, Options, Rng, TestServer, HELP,
    INVALID_PASSWORD, INVALID_USERNAME, PASSWORD, PASSWORD_BANNED, USERNAME, WELCOME,
};

const ALREADY_LOGGED_IN: &str = "This user is already logged in";
const INACTIVITY: &str = "You have been logged out due to inactivity";
const LOGIN_TIMED_OUT: &str = "Login timed out";
const LINE_TOO_LONG: &str = "Error. Line too long";
const INVALID_ENCODING: &str = "Error. Invalid encoding";

/// Block duration of the servers in these tests (the harness default).
const BAN: Duration = Duration::from_millis(500);
/// Idle timeout of the servers in the inactivity tests.
const SHORT_TIMEOUT: Duration = Duration::from_millis(500);

fn short_timeout() -> TestServer {
    TestServer::with(Options {
        timeout: SHORT_TIMEOUT,
        ..Options::default()
    })
}

/// Sends one wrong password for `user` on a connection at `Username: `.
fn wrong_password(client: &mut Client, user: &str) {
    client.send(&format!("{user}\n"));
    client.expect(PASSWORD);
    client.send("not-the-password\n");
}

// ---------------------------------------------------------------- login

#[test]
fn login_happy_path() {
    let server = TestServer::start();
    let mut yoda = server.connect();
    yoda.expect(USERNAME);
    yoda.send("yoda\n");
    yoda.expect(PASSWORD);
    yoda.send("wise\n");
    yoda.expect_line(WELCOME);
    yoda.send("whoelse\n");
    yoda.expect_line("No other users are online");
}

#[test]
fn others_are_told_of_a_login() {
    let server = TestServer::start();
    let (mut yoda, mut hans) = two_users(server.addr);
    hans.barrier();
    yoda.barrier();
}

#[test]
fn unknown_username_asks_again() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.expect(USERNAME);
    client.send("chewbacca\n");
    client.expect_line(INVALID_USERNAME);
    client.expect(USERNAME);
    // Usernames are exact.
    client.send("Yoda\n");
    client.expect_line(INVALID_USERNAME);
    client.expect(USERNAME);
    client.enter("yoda", "wise");
}

#[test]
fn two_wrong_passwords_then_the_right_one() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.expect(USERNAME);
    client.send("yoda\n");
    client.expect(PASSWORD);
    client.send("foolish\n");
    client.expect_line(INVALID_PASSWORD);
    client.expect(PASSWORD);
    client.send("Wise\n");
    client.expect_line(INVALID_PASSWORD);
    client.expect(PASSWORD);
    client.send("wise\n");
    client.expect_line(WELCOME);
}

#[test]
fn three_wrong_passwords_ban_and_close() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.get_banned("yoda");
    client.expect_eof();
}

#[test]
fn failures_count_across_connections_and_the_ban_refuses_the_right_password() {
    let server = TestServer::start();
    let mut first = server.connect();
    first.expect(USERNAME);
    wrong_password(&mut first, "yoda");
    first.expect_line(INVALID_PASSWORD);
    first.expect(PASSWORD);
    first.send("foolish\n");
    first.expect_line(INVALID_PASSWORD);
    first.expect(PASSWORD);
    drop(first);

    // The third failure, on a new connection, bans.
    let mut second = server.connect();
    second.expect(USERNAME);
    wrong_password(&mut second, "yoda");
    second.expect_line(PASSWORD_BANNED);
    second.expect_eof();

    // While banned, even the right password is refused after the prompt.
    server.connect().expect_banned("yoda", "wise");

    // ... and so is a wrong one, without a new ban message.
    server.connect().expect_banned("yoda", "not-the-password");

    // Other accounts are not affected.
    server.login("hans").barrier();
}

#[test]
fn ban_expires_and_is_not_extended_by_attempts() {
    let server = TestServer::start();
    let mut client = server.connect();
    client.get_banned("yoda");
    let banned_at = Instant::now();
    client.expect_eof();

    // An attempt in the middle of the ban is refused and does not extend it.
    thread::sleep(BAN / 2);
    server.connect().expect_banned("yoda", "not-the-password");

    let after = banned_at + BAN + Duration::from_millis(100);
    thread::sleep(after.saturating_duration_since(Instant::now()));

    // The ban ended and reset the failure count: one wrong password is an
    // ordinary failure again.
    let mut client = server.connect();
    client.expect(USERNAME);
    wrong_password(&mut client, "yoda");
    client.expect_line(INVALID_PASSWORD);
    client.expect(PASSWORD);
    client.send("wise\n");
    client.expect_line(WELCOME);
}

#[test]
fn successful_login_resets_the_failure_count() {
    let server = TestServer::start();
    for _ in 0..2 {
        let mut client = server.connect();
        client.expect(USERNAME);
        wrong_password(&mut client, "yoda");
        client.expect_line(INVALID_PASSWORD);
        client.expect(PASSWORD);
        client.send("foolish\n");
        client.expect_line(INVALID_PASSWORD);
        client.expect(PASSWORD);
        client.send("wise\n");
        client.expect_line(WELCOME);
        client.logout();
    }
}

#[test]
fn duplicate_login_is_refused_and_asks_for_a_username_again() {
    let server = TestServer::start();
    let mut yoda = server.login("yoda");
    let mut other = server.connect();
    other.expect(USERNAME);
    other.send("yoda\n");
    other.expect(PASSWORD);
    other.send("wise\n");
    other.expect_line(ALREADY_LOGGED_IN);
    other.expect(USERNAME);
    // The refused attempt changed nothing for the first session.
    yoda.barrier();
    other.enter("hans", "falcon");
    yoda.expect_line("hans logged in");
    yoda.send("whoelse\n");
    yoda.expect_line("hans");
}

// ----------------------------------------------------------- inactivity

#[test]
fn login_times_out() {
    let server = short_timeout();
    let mut client = server.connect();
    client.expect(USERNAME);
    // Not before the timeout...
    client.expect_silence(SHORT_TIMEOUT.as_millis() as u64 / 2);
    // ... but soon after it.
    client.expect_line(LOGIN_TIMED_OUT);
    client.expect_eof();
}

#[test]
fn login_times_out_at_the_password_prompt_too() {
    let server = short_timeout();
    let mut client = server.connect();
    client.expect(USERNAME);
    client.send("yoda\n");
    client.expect(PASSWORD);
    client.expect_line(LOGIN_TIMED_OUT);
    client.expect_eof();
}

#[test]
fn idle_user_is_logged_out_and_others_are_told() {
    let server = short_timeout();
    let mut hans = server.login("hans");
    let mut yoda = server.login("yoda");
    hans.expect_line("yoda logged in");
    // Half the timeout later yoda is still there; hans stays active.
    yoda.expect_silence(SHORT_TIMEOUT.as_millis() as u64 / 2);
    hans.send("whoelse\n");
    hans.expect_line("yoda");
    yoda.expect_line(INACTIVITY);
    yoda.expect_eof();
    hans.expect_line("yoda logged out");
}

#[test]
fn activity_postpones_the_timeout() {
    let server = short_timeout();
    let mut yoda = server.login("yoda");
    let start = Instant::now();
    // Twice the timeout, active every 40% of it.
    while start.elapsed() < SHORT_TIMEOUT * 2 {
        thread::sleep(SHORT_TIMEOUT * 2 / 5);
        yoda.send("whoelse\n");
        yoda.expect_line("No other users are online");
    }
    // An error reply is activity too.
    thread::sleep(SHORT_TIMEOUT * 2 / 5);
    yoda.send("dance\n");
    yoda.expect_line("Error. Invalid command");
    thread::sleep(SHORT_TIMEOUT * 2 / 5);
    yoda.send("whoelse\n");
    yoda.expect_line("No other users are online");
    yoda.expect_line(INACTIVITY);
    yoda.expect_eof();
}

#[test]
fn empty_lines_are_not_activity() {
    let server = short_timeout();
    let mut yoda = server.login("yoda");
    let start = Instant::now();
    // Blank lines every 100 ms never postpone the timeout.
    let mut sent = 0;
    loop {
        yoda.send(if sent % 2 == 0 { "\n" } else { "   \r\n" });
        sent += 1;
        if let Some(line) = yoda.poll_line(100) {
            assert_eq!(line, INACTIVITY);
            break;
        }
        assert!(
            start.elapsed() < SHORT_TIMEOUT + Duration::from_millis(1500),
            "no inactivity logout although only blank lines were sent"
        );
    }
    yoda.expect_eof();
}

#[test]
fn receiving_messages_is_not_activity() {
    let server = short_timeout();
    let (mut yoda, mut hans) = two_users(server.addr);
    let mut received = 0;
    loop {
        hans.send("message yoda ping\n");
        let line = yoda.read_line();
        if line == INACTIVITY {
            break;
        }
        assert_eq!(line, "hans: ping");
        received += 1;
        assert!(
            received < 40,
            "yoda received messages for 4 s and was never logged out"
        );
        thread::sleep(Duration::from_millis(100));
    }
    yoda.expect_eof();
    assert!(
        received >= 2,
        "logged out after {received} messages, before half the timeout"
    );
    // hans was active all along: he is told once, and the ping that raced
    // the logout was stored instead.
    hans.expect_line("yoda logged out");
    hans.expect_line("yoda is offline. Your message will be delivered when they log in");
    hans.barrier();
}

// ------------------------------------------------------------ messaging

#[test]
fn message_and_its_errors() {
    let server = TestServer::start();
    let (mut yoda, mut hans, mut vader) = three_users(server.addr);
    yoda.send("message hans hello there  friend \n");
    hans.expect_line("yoda: hello there  friend");
    // The sender gets nothing, and nobody else does either.
    yoda.barrier();
    vader.barrier();
    hans.barrier();

    yoda.send("message   hans   spaced\n");
    hans.expect_line("yoda: spaced");

    yoda.send("message chewbacca hi\n");
    yoda.expect_line("Error. Invalid user");
    yoda.send("message yoda hi\n");
    yoda.expect_line("Error. Cannot message self");
    yoda.send("message hans\n");
    yoda.expect_line("Error. Usage: message <user> <message>");
    yoda.send("message\n");
    yoda.expect_line("Error. Usage: message <user> <message>");
    yoda.send("Message hans hi\n");
    yoda.expect_line("Error. Invalid command");
    hans.barrier();
}

#[test]
fn broadcast_reaches_everyone_else() {
    let server = TestServer::start();
    let (mut yoda, mut hans, mut vader) = three_users(server.addr);
    yoda.send("broadcast hi  all\n");
    hans.expect_line("yoda: hi  all");
    vader.expect_line("yoda: hi  all");
    yoda.barrier();
    yoda.send("broadcast\n");
    yoda.expect_line("Error. Usage: broadcast <message>");
    hans.barrier();
    vader.barrier();
}

#[test]
fn help_and_invalid_commands() {
    let server = TestServer::start();
    let mut yoda = server.login("yoda");
    yoda.send("help\n");
    yoda.expect_lines(&HELP);
    for (line, reply) in [
        ("dance\n", "Error. Invalid command"),
        ("WHOELSE\n", "Error. Invalid command"),
        ("whoelse now\n", "Error. Usage: whoelse"),
        ("help me\n", "Error. Usage: help"),
        ("logout now\n", "Error. Usage: logout"),
        ("block\n", "Error. Usage: block <user>"),
        ("block hans vader\n", "Error. Usage: block <user>"),
        ("unblock\n", "Error. Usage: unblock <user>"),
        ("whoelsesince\n", "Error. Usage: whoelsesince <seconds>"),
        ("whoelsesince -1\n", "Error. Usage: whoelsesince <seconds>"),
        ("whoelsesince 1.5\n", "Error. Usage: whoelsesince <seconds>"),
        ("whoelsesince abc\n", "Error. Usage: whoelsesince <seconds>"),
    ] {
        yoda.send(line);
        yoda.expect_line(reply);
    }
    // Still logged in.
    yoda.send("whoelse\n");
    yoda.expect_line("No other users are online");
}

#[test]
fn whoelse_and_whoelsesince() {
    let server = TestServer::start();
    let (mut yoda, mut hans, mut vader) = three_users(server.addr);
    yoda.send("whoelse\n");
    yoda.expect_lines(&["hans", "vader"]);
    vader.send("whoelse\n");
    vader.expect_lines(&["hans", "yoda"]);

    hans.logout();
    yoda.expect_line("hans logged out");
    vader.expect_line("hans logged out");
    yoda.send("whoelse\n");
    yoda.expect_line("vader");
    yoda.send("whoelsesince 60\n");
    yoda.expect_lines(&["hans", "vader"]);
    yoda.send("whoelsesince 0\n");
    yoda.expect_line("vader");
    // leia never logged in.
    yoda.send("whoelsesince 99999999999999999999999\n");
    yoda.expect_lines(&["hans", "vader"]);

    vader.logout();
    yoda.expect_line("vader logged out");
    yoda.send("whoelse\n");
    yoda.expect_line("No other users are online");
    yoda.send("whoelsesince 60\n");
    yoda.expect_lines(&["hans", "vader"]);
}

#[test]
fn whoelsesince_with_nobody_says_no_other_users_since_then() {
    let server = TestServer::start();
    let mut yoda = server.login("yoda");
    yoda.send("whoelsesince 60\n");
    yoda.expect_line("No other users since then");
    // A zero window is still `whoelsesince`, with its own empty reply.
    yoda.send("whoelsesince 0\n");
    yoda.expect_line("No other users since then");
}

#[test]
fn whoelsesince_window_ends() {
    let server = TestServer::start();
    let (mut yoda, mut hans) = two_users(server.addr);
    hans.logout();
    yoda.expect_line("hans logged out");
    yoda.send("whoelsesince 1\n");
    yoda.expect_line("hans");
    thread::sleep(Duration::from_millis(1100));
    yoda.send("whoelsesince 1\n");
    yoda.expect_line("No other users since then");
}

#[test]
fn block_and_unblock() {
    let server = TestServer::start();
    let (mut yoda, mut hans, mut vader) = three_users(server.addr);

    yoda.send("block hans\n");
    yoda.expect_line("hans is blocked");
    // hans is not told.
    hans.barrier();

    // hans cannot reach yoda.
    hans.send("message yoda hi\n");
    hans.expect_line("Your message could not be delivered as the recipient has blocked you");
    hans.send("broadcast hey\n");
    vader.expect_line("hans: hey");
    hans.expect_line("Your message could not be delivered to some recipients");
    yoda.barrier();

    // yoda is hidden from hans, but yoda sees hans.
    hans.send("whoelse\n");
    hans.expect_line("vader");
    hans.send("whoelsesince 60\n");
    hans.expect_line("vader");
    yoda.send("whoelse\n");
    yoda.expect_lines(&["hans", "vader"]);

    // yoda's own messages still reach hans.
    yoda.send("message hans i see you\n");
    hans.expect_line("yoda: i see you");
    yoda.send("broadcast all of you\n");
    hans.expect_line("yoda: all of you");
    vader.expect_line("yoda: all of you");
    yoda.barrier();

    // Errors.
    yoda.send("block hans\n");
    yoda.expect_line("Error. hans is already blocked");
    yoda.send("block yoda\n");
    yoda.expect_line("Error. Cannot block self");
    yoda.send("block chewbacca\n");
    yoda.expect_line("Error. Invalid user");
    yoda.send("unblock yoda\n");
    yoda.expect_line("Error. Cannot unblock self");
    yoda.send("unblock chewbacca\n");
    yoda.expect_line("Error. Invalid user");
    yoda.send("unblock vader\n");
    yoda.expect_line("Error. vader was not blocked");

    // No presence events about yoda for hans; the block survives logout.
    yoda.logout();
    vader.expect_line("yoda logged out");
    hans.barrier();
    hans.send("message yoda are you there\n");
    hans.expect_line("Your message could not be delivered as the recipient has blocked you");
    hans.send("whoelsesince 60\n");
    hans.expect_line("vader");
    let mut yoda = server.login("yoda");
    vader.expect_line("yoda logged in");
    hans.barrier();
    // Nothing from hans was stored for yoda.
    yoda.barrier();

    yoda.send("unblock hans\n");
    yoda.expect_line("hans is unblocked");
    yoda.send("unblock hans\n");
    yoda.expect_line("Error. hans was not blocked");
    hans.send("message yoda hello again\n");
    yoda.expect_line("hans: hello again");
    hans.send("broadcast everyone\n");
    yoda.expect_line("hans: everyone");
    vader.expect_line("hans: everyone");
    hans.barrier();
    hans.send("whoelse\n");
    hans.expect_lines(&["vader", "yoda"]);
    yoda.logout();
    hans.expect_line("yoda logged out");
    vader.expect_line("yoda logged out");
}

#[test]
fn blocked_sender_gets_no_login_announcement() {
    let server = TestServer::start();
    let mut yoda = server.login("yoda");
    yoda.send("block hans\n");
    yoda.expect_line("hans is blocked");
    yoda.logout();
    let mut hans = server.login("hans");
    let mut vader = server.login("vader");
    hans.expect_line("vader logged in");
    let _yoda = server.login("yoda");
    vader.expect_line("yoda logged in");
    hans.barrier();
}

#[test]
fn offline_messages_are_delivered_in_order_exactly_once() {
    let server = TestServer::start();
    let mut yoda = server.login("yoda");
    let mut vader = server.login("vader");
    yoda.expect_line("vader logged in");
    let offline = "hans is offline. Your message will be delivered when they log in";
    yoda.send("message hans first\n");
    yoda.expect_line(offline);
    vader.send("message hans second  one\n");
    vader.expect_line(offline);
    yoda.send("message hans third\n");
    yoda.expect_line(offline);

    let mut hans = server.login("hans");
    hans.expect_lines(&["yoda: first", "vader: second  one", "yoda: third"]);
    hans.barrier();
    yoda.expect_line("hans logged in");
    vader.expect_line("hans logged in");
    hans.logout();
    yoda.expect_line("hans logged out");

    let mut hans = server.login("hans");
    hans.barrier();
}

// -------------------------------------------------------------- leaving

#[test]
fn logout_says_goodbye_and_others_are_told_once() {
    let server = TestServer::start();
    let (mut yoda, mut hans, mut vader) = three_users(server.addr);
    hans.send("logout\n");
    hans.expect_line("Goodbye");
    hans.expect_eof();
    yoda.expect_line("hans logged out");
    vader.expect_line("hans logged out");
    yoda.barrier();
    vader.barrier();
    yoda.send("whoelse\n");
    yoda.expect_line("vader");
    // hans can come back.
    let mut hans = server.login("hans");
    yoda.expect_line("hans logged in");
    hans.barrier();
}

/// hans leaves by `leave`; yoda and vader must each be told exactly once.
fn dropped_connection_is_announced_once(leave: impl FnOnce(Client)) {
    let server = TestServer::start();
    let (mut yoda, hans, mut vader) = three_users(server.addr);
    leave(hans);
    yoda.expect_line("hans logged out");
    vader.expect_line("hans logged out");
    yoda.barrier();
    yoda.send("whoelse\n");
    yoda.expect_line("vader");
    vader.barrier();
    yoda.expect_silence(200);
    // hans is offline, not stuck online.
    let mut hans = server.login("hans");
    yoda.expect_line("hans logged in");
    hans.barrier();
}

#[test]
fn closed_connection_is_announced_once() {
    dropped_connection_is_announced_once(drop);
}

#[test]
fn shut_down_connection_is_announced_once() {
    dropped_connection_is_announced_once(|hans| {
        hans.shutdown_both();
        // Keep the descriptor open a little while the server notices.
        thread::sleep(Duration::from_millis(100));
    });
}

#[test]
fn reset_connection_is_announced_once() {
    dropped_connection_is_announced_once(Client::reset);
}

#[test]
fn connection_closed_before_login_announces_nothing() {
    let server = TestServer::start();
    let mut yoda = server.login("yoda");
    let mut half = server.connect();
    half.expect(USERNAME);
    half.send("hans\n");
    half.expect(PASSWORD);
    drop(half);
    thread::sleep(Duration::from_millis(100));
    yoda.barrier();
    yoda.send("whoelse\n");
    yoda.expect_line("No other users are online");
}

#[test]
fn pipelined_input_then_half_close_gets_every_reply() {
    // What `printf 'yoda\nwise\nwhoelse\n' | nc host port` does.
    let server = TestServer::start();
    let mut hans = server.login("hans");
    let mut client = server.connect();
    client.send("yoda\nwise\nwhoelse\nmessage hans bye\n");
    client
        .stream()
        .shutdown(std::net::Shutdown::Write)
        .expect("shutdown write");
    client.expect(USERNAME);
    client.expect(PASSWORD);
    client.expect_lines(&[WELCOME, "hans"]);
    client.expect_eof();
    hans.expect_lines(&["yoda logged in", "yoda: bye", "yoda logged out"]);
}

#[test]
fn shutdown_tells_every_connection() {
    let server = TestServer::start();
    let mut yoda = server.login("yoda");
    let mut waiting = server.connect();
    waiting.expect(USERNAME);
    let stopper = thread::spawn(move || server.stop());
    yoda.expect_line("Server is shutting down");
    yoda.expect_eof();
    waiting.expect_line("Server is shutting down");
    waiting.expect_eof();
    stopper
        .join()
        .expect("stopper thread")
        .expect("run returns Ok");
}

// -------------------------------------------------------------- framing

#[test]
fn crlf_is_accepted() {
    let server = TestServer::start();
    let mut hans = server.login("hans");
    let mut yoda = server.connect();
    yoda.expect(USERNAME);
    yoda.send("yoda\r\n");
    yoda.expect(PASSWORD);
    yoda.send("wise\r\n");
    yoda.expect_line(WELCOME);
    hans.expect_line("yoda logged in");
    yoda.send("whoelse\r\n");
    yoda.expect_line("hans");
    yoda.send("  message hans  a b \r\n");
    hans.expect_line("yoda: a b");
}

#[test]
fn command_split_across_writes() {
    let server = TestServer::start();
    let (mut yoda, mut hans) = two_users(server.addr);
    for piece in ["mes", "sage ha", "ns hel", "lo wor", "ld\r", "\n"] {
        yoda.send(piece);
        thread::sleep(Duration::from_millis(20));
    }
    hans.expect_line("yoda: hello world");
    // A login split too.
    let mut vader = server.connect();
    vader.expect(USERNAME);
    for piece in ["va", "der\nsith", "lo", "rd", "\n"] {
        vader.send(piece);
        thread::sleep(Duration::from_millis(20));
    }
    vader.expect(PASSWORD);
    vader.expect_line(WELCOME);
    yoda.expect_line("vader logged in");
    yoda.barrier();
}

#[test]
fn several_commands_in_one_write_are_answered_in_order() {
    let server = TestServer::start();
    let mut hans = server.login("hans");
    let mut yoda = server.connect();
    yoda.send("yoda\nwise\nwhoelse\nmessage hans one\nbogus\nmessage hans two\nhelp\nblock leia\n");
    yoda.expect(USERNAME);
    yoda.expect(PASSWORD);
    yoda.expect_lines(&[WELCOME, "hans", "Error. Invalid command"]);
    yoda.expect_lines(&HELP);
    yoda.expect_line("leia is blocked");
    hans.expect_lines(&["yoda logged in", "yoda: one", "yoda: two"]);
    hans.barrier();
}

#[test]
fn empty_and_blank_lines_are_ignored() {
    let server = TestServer::start();
    let mut yoda = server.connect();
    yoda.expect(USERNAME);
    yoda.send("\n  \n\r\n \r\n");
    yoda.send("yoda\n");
    yoda.expect(PASSWORD);
    yoda.send("\n   \n");
    yoda.send("wise\n");
    yoda.expect_line(WELCOME);
    yoda.send("\n\n   \r\n");
    yoda.send("\n \n");
    yoda.barrier();
}

fn framing_server() -> TestServer {
    TestServer::with(Options {
        max_line: 64,
        ..Options::default()
    })
}

#[test]
fn line_of_exactly_max_line_bytes_is_accepted() {
    let server = framing_server();
    let (mut yoda, mut hans) = two_users(server.addr);
    let text = "x".repeat(64 - "broadcast ".len());
    yoda.send(&format!("broadcast {text}\n"));
    hans.expect_line(&format!("yoda: {text}"));
    // One `\r` is not counted.
    yoda.send(&format!("broadcast {text}\r\n"));
    hans.expect_line(&format!("yoda: {text}"));
    // The limit is in bytes: 27 two-byte characters.
    let text = "é".repeat(27);
    let line = format!("broadcast {text}");
    assert_eq!(line.len(), 64);
    yoda.send(&format!("{line}\n"));
    hans.expect_line(&format!("yoda: {text}"));
    yoda.barrier();
}

#[test]
fn line_one_byte_too_long_gets_one_error() {
    let server = framing_server();
    let (mut yoda, mut hans) = two_users(server.addr);
    let text = "x".repeat(65 - "broadcast ".len());
    yoda.send(&format!("broadcast {text}\n"));
    yoda.expect_line(LINE_TOO_LONG);
    yoda.barrier();
    // Two `\r` are one too many.
    let text = "x".repeat(64 - "broadcast ".len());
    yoda.send(&format!("broadcast {text}\r\r\n"));
    yoda.expect_line(LINE_TOO_LONG);
    yoda.barrier();
    // Nothing of it reached hans; the connection is still usable.
    hans.barrier();
    yoda.send("message hans still here\n");
    hans.expect_line("yoda: still here");
}

#[test]
fn huge_line_gets_one_error_and_the_connection_stays_usable() {
    let server = framing_server();
    let (mut yoda, mut hans) = two_users(server.addr);
    let chunk = vec![b'x'; 64 * 1024];
    yoda.send("broadcast ");
    for _ in 0..16 {
        yoda.send_bytes(&chunk);
    }
    // The error may come before the newline; it comes once.
    yoda.send("\n");
    yoda.expect_line(LINE_TOO_LONG);
    yoda.barrier();
    hans.barrier();
    yoda.send("message hans ok\n");
    hans.expect_line("yoda: ok");
    // A huge line and a good one in one write.
    let mut both = vec![b'y'; 200_000];
    both.extend_from_slice(b"\nwhoelse\n");
    yoda.send_bytes(&both);
    yoda.expect_lines(&[LINE_TOO_LONG, "hans"]);
}

#[test]
fn invalid_utf8_gets_an_error() {
    let server = TestServer::start();
    let (mut yoda, mut hans) = two_users(server.addr);
    yoda.send_bytes(b"\xff\xfe\n");
    yoda.expect_line(INVALID_ENCODING);
    yoda.send_bytes(b"message hans caf\xc3\n");
    yoda.expect_line(INVALID_ENCODING);
    yoda.send_bytes(b"broadcast \xed\xa0\x80\r\n");
    yoda.expect_line(INVALID_ENCODING);
    yoda.barrier();
    hans.barrier();
    yoda.send("message hans café\n");
    hans.expect_line("yoda: café");
}

#[test]
fn line_errors_during_login_repeat_the_prompt_and_are_not_failures() {
    let server = framing_server();
    let mut client = server.connect();
    client.expect(USERNAME);
    client.send(&format!("{}\n", "y".repeat(65)));
    client.expect_line(LINE_TOO_LONG);
    client.expect(USERNAME);
    client.send_bytes(b"yo\xffda\n");
    client.expect_line(INVALID_ENCODING);
    client.expect(USERNAME);
    client.send("yoda\n");
    client.expect(PASSWORD);
    for _ in 0..2 {
        client.send("foolish\n");
        client.expect_line(INVALID_PASSWORD);
        client.expect(PASSWORD);
    }
    // Two failures so far; a third would ban.
    client.send_bytes(b"wi\xffse\n");
    client.expect_line(INVALID_ENCODING);
    client.expect(PASSWORD);
    client.send(&format!("{}\n", "w".repeat(65)));
    client.expect_line(LINE_TOO_LONG);
    client.expect(PASSWORD);
    // A huge line without its newline yet, then the newline.
    client.send(&"w".repeat(300_000));
    client.expect_line(LINE_TOO_LONG);
    client.expect(PASSWORD);
    client.send("\n");
    client.send("wise\n");
    client.expect_line(WELCOME);
}

// -------------------------------------------------------------- garbage

/// One piece of hostile input.
fn garbage(rng: &mut Rng) -> Vec<u8> {
    match rng.below(9) {
        0 => {
            let len = 1 + rng.below(4096);
            rng.bytes(len)
        }
        1 => vec![0; 1 + rng.below(2048)],
        2 => (0..1 + rng.below(2048))
            .map(|_| match rng.below(34) {
                32 => 0x7f,
                33 => b'\n',
                c => c as u8,
            })
            .collect(),
        3 => {
            let mut line = vec![b'A'; 50_000 + rng.below(100_000)];
            if rng.below(2) == 0 {
                line.push(b'\n');
            }
            line
        }
        4 => b"\r\r\r\n\r\n\n\r".repeat(1 + rng.below(100)),
        5 => {
            // Truncated and overlong UTF-8 sequences, surrogates.
            let pieces: [&[u8]; 6] = [
                b"\xe2\x82",
                b"\xc0\xaf",
                b"\xed\xa0\x80",
                b"\xf4\x90\x80\x80",
                b"\xf0\x9f\x98",
                "é✓😀".as_bytes(),
            ];
            let mut out = Vec::new();
            for _ in 0..1 + rng.below(50) {
                out.extend_from_slice(pieces[rng.below(pieces.len())]);
                if rng.below(4) == 0 {
                    out.push(b'\n');
                }
            }
            out
        }
        6 => {
            // Almost-commands with hostile arguments (never `logout`).
            let lines: [&[u8]; 8] = [
                b"message \x00 \xff\n",
                b"whoelsesince 99999999999999999999999999\n",
                b"whoelsesince -0\n",
                b"block \x01\x02\n",
                b"unblock \xff\n",
                b"message    \n",
                b"broadcast\t\n",
                b"help help help\n",
            ];
            lines[rng.below(lines.len())].to_vec()
        }
        7 => {
            let mut line = b"message nobody ".to_vec();
            line.extend((0..rng.below(3000)).map(|_| b' ' + rng.below(95) as u8));
            line.push(b'\n');
            line
        }
        _ => b"\n".repeat(rng.below(100)),
    }
}

/// Sends garbage for a while from a fresh connection (logged in as
/// `login` first, if given), reading everything the server says in a
/// second thread, then closes.
fn garbage_client(addr: std::net::SocketAddr, seed: u64, login: Option<&'static str>) {
    let mut client = Client::connect(addr);
    if let Some(user) = login {
        client.login(user, password(user));
    }
    let mut writer = client.writer();
    let reader = thread::spawn(move || client.drain_to_close());
    let mut rng = Rng::new(seed);
    for _ in 0..150 {
        let bytes = garbage(&mut rng);
        // Write in random pieces, so lines span reads.
        let mut rest = &bytes[..];
        while !rest.is_empty() {
            let n = (1 + rng.below(8192)).min(rest.len());
            if writer.write_all(&rest[..n]).is_err() {
                break;
            }
            rest = &rest[n..];
        }
    }
    let _ = writer.shutdown(std::net::Shutdown::Write);
    reader.join().expect("garbage reader");
}

fn is_noise(line: &str) -> bool {
    line.ends_with(" logged in")
        || line.ends_with(" logged out")
        || ["hans: ", "vader: ", "luke: "]
            .iter()
            .any(|p| line.starts_with(p))
}

#[test]
fn garbage_does_not_hurt_the_server_or_other_clients() {
    let server = TestServer::start();
    let mut yoda = server.login("yoda");
    let addr = server.addr;
    let done = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = [
        (1, None),
        (2, None),
        (3, Some("hans")),
        (4, Some("vader")),
        (5, None),
        (6, Some("luke")),
    ]
    .into_iter()
    .map(|(seed, login)| thread::spawn(move || garbage_client(addr, seed, login)))
    .collect();
    // Connections that vanish abruptly in the middle of a line.
    let vanishing = thread::spawn(move || {
        let mut rng = Rng::new(99);
        for i in 0..20 {
            let mut client = Client::connect(addr);
            let mut bytes = rng.bytes(1000);
            bytes.retain(|&b| b != b'\n');
            client.send_bytes(&bytes);
            if i % 2 == 0 {
                client.reset();
            }
        }
    });
    let watcher = {
        let done = Arc::clone(&done);
        thread::spawn(move || {
            for client in clients {
                client.join().expect("garbage client");
            }
            vanishing.join().expect("vanishing clients");
            done.store(true, Ordering::SeqCst);
        })
    };

    // The well-behaved client keeps being served all along.
    let mut rounds = 0;
    let start = Instant::now();
    while !done.load(Ordering::SeqCst) {
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "garbage clients did not finish"
        );
        yoda.send("help\n");
        let mut got = 0;
        while got < HELP.len() {
            let line = yoda.read_line();
            if is_noise(&line) {
                continue;
            }
            assert_eq!(line, HELP[got], "reply to help amid garbage");
            got += 1;
        }
        rounds += 1;
        thread::sleep(Duration::from_millis(10));
    }
    watcher.join().expect("watcher");
    assert!(rounds > 0);

    // Everyone else is gone; the server still answers everyone.
    server.assert_running();
    let mut leia = server.login("leia");
    leia.send("whoelse\n");
    leia.expect_line("yoda");
    leia.send("broadcast still alive\n");
    loop {
        let line = yoda.read_line();
        if line == "leia: still alive" {
            break;
        }
        assert!(is_noise(&line), "unexpected line for yoda: {line:?}");
    }
    server.assert_running();
}

// ----------------------------------------------------------- slow reader

/// Size of each broadcast text in the slow-reader test.
const PAD: usize = 8000;
/// Most broadcasts each active client sends (a bound if the server never
/// cuts the slow reader off; about 300 each are needed on Linux, whose
/// loopback buffers take a few MiB for a reader that never reads).
const MAX_BROADCASTS: usize = 3000;
/// Most broadcasts of one active client not yet read by the other. The
/// server does not pause a sender for slow recipients, so without this an
/// active reader that is a little slower than the other's writer would
/// fall behind by megabytes and rightly be cut off too; with it, at most
/// `WINDOW * PAD` bytes are ever pending for an active reader, well under
/// the limit and its socket buffers.
const WINDOW: usize = 6;

/// Shared counters of the slow-reader test.
#[derive(Default)]
struct Progress {
    /// Broadcasts received by yoda (index 0) and hans (index 1).
    received: [std::sync::atomic::AtomicUsize; 2],
    /// Whether each of them saw `luke logged out`.
    seen: [AtomicBool; 2],
    /// Something failed: everyone stops.
    failed: AtomicBool,
}

/// Broadcasts numbered lines, never more than [`WINDOW`] ahead of the
/// other active client's reading, until both saw the slow reader leave
/// (plus a few more), then an end marker; returns how many it sent.
fn broadcaster(mut writer: TcpStream, name: &str, other: usize, progress: &Progress) -> usize {
    let pad = "x".repeat(PAD);
    let mut sent = 0;
    let mut after = 0;
    while sent < MAX_BROADCASTS && after < 20 {
        let deadline = Instant::now() + common::IO_TIMEOUT;
        while sent >= progress.received[other].load(Ordering::SeqCst) + WINDOW {
            if progress.failed.load(Ordering::SeqCst) {
                return sent;
            }
            assert!(
                Instant::now() < deadline,
                "{name}'s broadcasts are not read"
            );
            thread::sleep(Duration::from_micros(50));
        }
        writer
            .write_all(format!("broadcast {name}-{sent} {pad}\n").as_bytes())
            .expect("broadcast");
        sent += 1;
        if progress.seen.iter().all(|s| s.load(Ordering::SeqCst)) {
            after += 1;
        }
    }
    writer
        .write_all(format!("broadcast {name}-end\n").as_bytes())
        .expect("end marker");
    sent
}

/// Reads `other`'s broadcasts in order up to its end marker, counting the
/// `luke logged out` lines; returns the client, broadcasts received and
/// announcements seen.
fn receiver(mut client: Client, other: &str, me: usize, progress: &Progress) -> (Client, usize) {
    let pad = "x".repeat(PAD);
    let mut announced = 0;
    loop {
        let line = client.read_line();
        let received = progress.received[me].load(Ordering::SeqCst);
        if line == "luke logged out" {
            announced += 1;
            progress.seen[me].store(true, Ordering::SeqCst);
        } else if line == format!("{other}: {other}-end") {
            return (client, announced);
        } else if line != format!("{other}: {other}-{received} {pad}") {
            panic!(
                "expected broadcast {received} of {other}, got {}",
                common::show(line.as_bytes())
            );
        } else {
            progress.received[me].store(received + 1, Ordering::SeqCst);
        }
    }
}

#[test]
fn slow_reader_is_cut_off_and_announced_once() {
    let server = TestServer::with(Options {
        max_pending: 64 * 1024,
        max_line: 16 * 1024,
        ..Options::default()
    });
    let (mut yoda, mut hans) = two_users(server.addr);
    let mut luke = server.login("luke");
    yoda.expect_line("luke logged in");
    hans.expect_line("luke logged in");
    // From now on luke reads nothing until the end.

    let progress = Arc::new(Progress::default());
    let mut threads = Vec::new();
    for (client, name, other, me) in [(yoda, "yoda", "hans", 0), (hans, "hans", "yoda", 1)] {
        let writer = client.writer();
        let p = Arc::clone(&progress);
        let sending = thread::spawn(move || {
            let _guard = FailOnPanic(&p.failed);
            broadcaster(writer, name, 1 - me, &p)
        });
        let p = Arc::clone(&progress);
        let receiving = thread::spawn(move || {
            let _guard = FailOnPanic(&p.failed);
            receiver(client, other, me, &p)
        });
        threads.push((sending, receiving));
    }
    let mut results = Vec::new();
    for (sending, receiving) in threads {
        let sent = sending.join().expect("broadcaster");
        let received = receiving.join().expect("receiver");
        results.push((sent, received));
    }
    let (yoda_sent, (mut yoda, yoda_told)) = results.remove(0);
    let (hans_sent, (mut hans, hans_told)) = results.remove(0);
    let got = |i: usize| progress.received[i].load(Ordering::SeqCst);
    assert_eq!(got(0), hans_sent, "yoda missed some of hans's broadcasts");
    assert_eq!(got(1), yoda_sent, "hans missed some of yoda's broadcasts");
    assert_eq!(
        (yoda_told, hans_told),
        (1, 1),
        "`luke logged out` must reach yoda and hans exactly once \
         (after {yoda_sent} + {hans_sent} broadcasts of {PAD} bytes)"
    );
    yoda.send("whoelse\n");
    yoda.expect_line("hans");
    hans.send("whoelse\n");
    hans.expect_line("yoda");
    // luke's connection was really closed.
    luke.drain_to_close();
}

// ----------------------------------------------------------- max clients

#[test]
fn connections_beyond_max_clients_are_refused() {
    let server = TestServer::with(Options {
        max_clients: 3,
        ..Options::default()
    });
    let mut a = server.connect();
    a.expect(USERNAME);
    let mut b = server.connect();
    b.expect(USERNAME);
    let mut c = server.connect();
    c.expect(USERNAME);
    let mut d = server.connect();
    d.expect_line("Error. Server is full");
    d.expect_eof();

    // A logout frees a place before the client sees the end of stream.
    a.enter("yoda", "wise");
    a.logout();
    let mut e = server.connect();
    e.expect(USERNAME);
    let mut f = server.connect();
    f.expect_line("Error. Server is full");
    f.expect_eof();

    // A dropped connection frees a place once the server notices.
    drop(b);
    let start = Instant::now();
    let mut g = loop {
        let mut g = server.connect();
        let mut first = [0u8; 1];
        g.stream()
            .set_read_timeout(Some(common::IO_TIMEOUT))
            .expect("timeout");
        let n = g.stream().peek(&mut first).expect("first byte");
        assert_eq!(n, 1, "closed without a word");
        if first[0] == b'U' {
            break g;
        }
        g.expect_line("Error. Server is full");
        g.expect_eof();
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "a closed connection still counts after 2 s"
        );
        thread::sleep(Duration::from_millis(20));
    };
    g.login("hans", "falcon");
    c.enter("vader", "sithlord");
    g.expect_line("vader logged in");
    e.enter("leia", "blasterpistol");
    g.expect_line("leia logged in");
}
