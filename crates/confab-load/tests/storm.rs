//! Login storms against the in-process server (the testkit's
//! [`TestServer`]): every client logs in, and every client hears of every
//! login after its own, in the server's order, exactly once. They check
//! behaviour, never speed; each is bounded by its run's deadlines.

use std::time::Duration;

use confab_load::{self as load, LoadConfig, Report, Workload};
use confab_testkit::{Options, TestServer};

/// A storm of `clients` users with `in_flight` logins at a time against a
/// fresh server holding presence lines for `presence_delay`.
fn storm(clients: usize, in_flight: usize, presence_delay: Duration) -> Report {
    // Each client is a descriptor here and another in the server's thread.
    let limit = confab::fdlimit::raise_to_hard_limit().expect("read the open-file limit");
    let needed = 2 * clients as u64 + 100;
    assert!(
        limit >= needed,
        "a storm of {clients} needs {needed} descriptors; the hard limit is {limit}"
    );
    let placeholder = "127.0.0.1:9".parse().expect("address");
    let mut config = LoadConfig::new(Workload::Storm, placeholder);
    config.clients = clients;
    config.in_flight = in_flight;
    config.setup_timeout = Duration::from_secs(15);
    config.drain = Duration::from_secs(2);
    let server = TestServer::try_with(Options {
        presence_delay,
        ..Options::for_accounts(load::accounts(config.users_needed()))
    })
    .expect("server starts");
    config.target = server.addr;
    let report = load::run(&config).expect("storm run");
    server.stop().expect("server stops cleanly");
    report
}

/// Every client logged in and heard of every later login once, in order.
fn assert_every_login_heard_in_order(report: &Report, clients: usize) {
    let clients = clients as u64;
    assert_eq!(report.logins, clients, "{report}");
    assert_eq!(report.expected, clients * (clients - 1) / 2, "{report}");
    assert_eq!(report.delivered, report.expected, "{report}");
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.duplicated, 0, "{report}");
    assert_eq!(report.misordered, 0, "{report}");
    assert_eq!(report.disconnects, 0, "{report}");
    assert_eq!(report.notice_count, 0, "{report}");
}

#[test]
fn a_storm_of_a_thousand_logins_at_once_is_heard_by_everyone_in_order() {
    let report = storm(1000, 1000, Duration::from_millis(2));
    assert_every_login_heard_in_order(&report, 1000);
}

#[test]
fn a_storm_without_a_presence_delay_is_heard_by_everyone_in_order() {
    let report = storm(200, 20, Duration::ZERO);
    assert_every_login_heard_in_order(&report, 200);
}
