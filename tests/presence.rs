//! Presence lines held for `--presence-delay`, over real sockets: they keep
//! their place in each user's output, go out on their own when the delay
//! runs out, and never outlive the connection they were for.

mod common;

use common::{Client, ProcessOptions, ServerProcess, HELP, USERNAME};

/// A server that holds presence lines for `ms` milliseconds.
fn server(ms: &str) -> ServerProcess {
    ServerProcess::start(ProcessOptions {
        args: vec!["--presence-delay".into(), ms.into()],
        ..ProcessOptions::default()
    })
}

#[test]
fn held_presence_goes_out_ahead_of_any_later_reply() {
    // A delay far longer than the test, so that only the reply can have
    // let the presence line out.
    let server = server("1000");
    let mut yoda = server.login("yoda", "wise");
    let _hans = server.login("hans", "falcon");
    yoda.send("whoelse\n");
    yoda.expect_lines(&["hans logged in", "hans"]);
    yoda.barrier();
}

#[test]
fn held_presence_goes_out_on_its_own_when_the_delay_runs_out() {
    let server = server("50");
    let mut yoda = server.login("yoda", "wise");
    let mut hans = server.login("hans", "falcon");
    // Neither yoda nor anyone else sends yoda anything: only the delay
    // can let these out.
    yoda.expect_line("hans logged in");
    hans.logout();
    yoda.expect_line("hans logged out");
    yoda.barrier();
}

#[test]
fn a_login_and_logout_within_the_delay_are_both_told_in_order_once() {
    let server = server("1000");
    let mut yoda = server.login("yoda", "wise");
    for _ in 0..3 {
        let mut hans = server.login("hans", "falcon");
        hans.logout();
    }
    yoda.send("help\n");
    yoda.expect_lines(&[
        "hans logged in",
        "hans logged out",
        "hans logged in",
        "hans logged out",
        "hans logged in",
        "hans logged out",
    ]);
    yoda.expect_lines(&HELP);
    yoda.barrier();
}

#[test]
fn presence_held_for_a_connection_that_left_never_reaches_the_next_one() {
    let server = server("1000");
    let yoda = server.login("yoda", "wise");
    // hans's login is held for yoda when yoda's connection goes away.
    let mut hans = server.login("hans", "falcon");
    drop(yoda);
    // Until the server has seen yoda go: yoda's departure is told once.
    let mut told = 0;
    for _ in 0..100 {
        hans.send("whoelse\n");
        match hans.read_line().as_str() {
            "yoda logged out" => {
                told += 1;
                assert_eq!(hans.read_line(), "No other users are online");
                break;
            }
            "yoda" => std::thread::sleep(std::time::Duration::from_millis(10)),
            other => panic!("hans got {other:?}"),
        }
    }
    assert_eq!(told, 1, "yoda's departure was not told");
    // The next connection takes yoda's slot; its first bytes are its own.
    let mut next = Client::connect(server.addr);
    next.expect(USERNAME);
    next.enter("luke", "lightsaber");
    next.barrier();
}
