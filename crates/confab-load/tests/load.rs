//! Smoke tests of the load engine: every workload at a tiny scale against
//! an in-process server (the testkit's [`TestServer`]), and those that
//! `cargo bench` also runs over TLS or WebSocket against one speaking TLS
//! ([`Options::tls`]) or with a web port ([`Options::web`]). They check behaviour — everything sent arrives,
//! nothing unexpected is said — never speed.

use std::time::Duration;

use confab_load::{self as load, LoadConfig, Report, Workload};
use confab_testkit::{journal_in, Options, TestServer};

/// Runs `workload` briefly with `clients` clients against a fresh server
/// (or, for the ceiling, none), after `adjust` tweaks the configuration.
fn run_small(workload: Workload, clients: usize, adjust: impl FnOnce(&mut LoadConfig)) -> Report {
    run_small_on(Over::Tcp, workload, clients, adjust)
}

/// [`run_small`] against a server speaking TLS, every client pinning its
/// certificate.
fn run_tls(workload: Workload, clients: usize, adjust: impl FnOnce(&mut LoadConfig)) -> Report {
    run_small_on(Over::Tls, workload, clients, adjust)
}

/// What the clients speak to the server.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Over {
    Tcp,
    Tls,
    /// WebSocket, to the server's web port.
    Web,
}

/// [`run_small`], over `over`.
fn run_small_on(
    over: Over,
    workload: Workload,
    clients: usize,
    adjust: impl FnOnce(&mut LoadConfig),
) -> Report {
    let placeholder = "127.0.0.1:9".parse().expect("address");
    let mut config = LoadConfig::new(workload, placeholder);
    config.clients = clients;
    config.churners = 2;
    config.duration = Duration::from_millis(300);
    config.drain = Duration::from_secs(5);
    config.setup_timeout = Duration::from_secs(20);
    adjust(&mut config);
    if workload == Workload::Ceiling {
        return load::run(&config).expect("ceiling run");
    }
    let server = TestServer::try_with(Options {
        tls: over == Over::Tls,
        web: over == Over::Web,
        ..Options::for_accounts(load::accounts(config.users_needed()))
    })
    .expect("server starts");
    config.target = server.web_addr.unwrap_or(server.addr);
    config.tls = server.fingerprint.clone();
    config.web = over == Over::Web;
    assert_eq!(
        config.tls.is_some(),
        over == Over::Tls,
        "a TLS server has a fingerprint"
    );
    let report = load::run(&config).expect("load run");
    server.stop().expect("server stops cleanly");
    report
}

/// Everything sent arrived and nothing unexpected happened.
fn assert_clean(report: &Report) {
    assert_eq!(report.lost, 0, "{report}");
    assert_eq!(report.delivered, report.expected, "{report}");
    assert_eq!(report.disconnects, 0, "{report}");
    assert_eq!(report.notice_count, 0, "{report}");
}

#[test]
fn fanout_delivers_every_broadcast_to_every_listener() {
    let report = run_small(Workload::Fanout, 5, |_| {});
    assert_clean(&report);
    assert!(report.sent > 0, "{report}");
    assert_eq!(report.expected, report.sent * 5, "{report}");
    assert!(report.latency.is_some(), "{report}");
}

#[test]
fn direct_delivers_every_message() {
    let report = run_small(Workload::Direct, 5, |_| {});
    assert_clean(&report);
    assert!(report.delivered > 0, "{report}");
    assert_eq!(report.clients, 10);
}

#[test]
fn offline_messages_are_all_acknowledged_with_a_data_directory() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("load-offline-{}", std::process::id()));
    let mut config = LoadConfig::new(Workload::Offline, "127.0.0.1:9".parse().expect("address"));
    config.clients = 5;
    config.duration = Duration::from_millis(300);
    config.setup_timeout = Duration::from_secs(20);
    let server = TestServer::try_with(Options {
        mailbox_max: usize::MAX,
        store_max: u64::MAX,
        storage: journal_in(&dir),
        ..Options::for_accounts(load::accounts(config.users_needed()))
    })
    .expect("server starts");
    config.target = server.addr;
    let report = load::run(&config).expect("load run");
    server.stop().expect("server stops cleanly");
    let journal_bytes: u64 = std::fs::read_dir(&dir)
        .expect("list the data directory")
        .map(|e| e.expect("entry").metadata().expect("stat").len())
        .sum();
    std::fs::remove_dir_all(&dir).expect("remove the data directory");
    assert_clean(&report);
    assert!(report.delivered > 0, "{report}");
    assert_eq!(report.clients, 5);
    assert!(report.latency.is_some(), "{report}");
    // Every acknowledged message is on disk: at least its text.
    assert!(
        journal_bytes >= report.delivered * 64,
        "{journal_bytes} bytes for {} messages",
        report.delivered
    );
}

#[test]
fn pingpong_keeps_messages_going() {
    let report = run_small(Workload::Pingpong, 6, |_| {});
    assert_clean(&report);
    // More than the first message of each client: answers kept coming.
    assert!(report.delivered > 6, "{report}");
}

#[test]
fn logins_count_every_presence_line() {
    let report = run_small(Workload::Logins, 5, |_| {});
    assert_clean(&report);
    assert!(report.logins > 0, "{report}");
    // Each login and each logout is told to the 5 online users.
    assert_eq!(report.expected, 5 * 2 * report.logins, "{report}");
}

#[test]
fn idle_reports_the_server_memory() {
    let report = run_small(Workload::Idle, 5, |c| {
        // The server is a thread of this process: its memory is ours.
        c.server_pid = Some(std::process::id());
    });
    assert_clean(&report);
    assert_eq!(report.clients, 5);
    assert!(report.server_memory.is_some(), "{report}");
    assert!(report.figure().is_some(), "{report}");
}

#[test]
fn ceiling_delivers_every_line_written() {
    let report = run_small(Workload::Ceiling, 5, |_| {});
    assert_clean(&report);
    assert!(report.delivered > 0, "{report}");
}

#[test]
fn message_limit_stops_sending() {
    let report = run_small(Workload::Direct, 2, |c| {
        c.duration = Duration::from_secs(20);
        c.messages = Some(100);
    });
    assert_clean(&report);
    assert_eq!(report.sent, 100, "{report}");
}

#[test]
fn small_windows_still_deliver_everything() {
    // One line in flight per listener at a time.
    let report = run_small(Workload::Fanout, 3, |c| c.window = 1);
    assert_clean(&report);
    assert!(report.sent > 0, "{report}");
}

#[test]
fn wrong_accounts_fail_the_setup() {
    // A server that knows none of the generated users refuses the login.
    let server = TestServer::try_with(Options::for_accounts(vec![confab::credentials::Account {
        username: "yoda".into(),
        password: "wise".into(),
    }]))
    .expect("server starts");
    let mut config = LoadConfig::new(Workload::Direct, server.addr);
    config.clients = 1;
    config.setup_timeout = Duration::from_secs(10);
    let err = load::run(&config).expect_err("login refused");
    assert!(err.to_string().contains("login refused"), "{err}");
    server.stop().expect("server stops cleanly");
}

#[test]
fn credentials_file_round_trips() {
    let path = std::env::temp_dir().join(format!("confab-load-test-{}.txt", std::process::id()));
    load::write_credentials(&path, 3).expect("written");
    let accounts = confab::credentials::load(&path).expect("readable");
    std::fs::remove_file(&path).expect("removed");
    assert_eq!(accounts, load::accounts(3));
}

#[test]
fn storm_tells_everyone_of_every_later_login() {
    let report = run_small(Workload::Storm, 5, |c| c.in_flight = 2);
    assert_clean(&report);
    assert_eq!(report.logins, 5, "{report}");
    assert_eq!(report.expected, 5 * 4 / 2, "{report}");
    assert_eq!(report.duplicated + report.misordered, 0, "{report}");
}

#[test]
fn every_connection_reaches_the_prompt() {
    // The count ends the run, not the time: a slow (debug, busy) machine
    // still makes all 40.
    let report = run_small(Workload::Handshakes, 4, |c| {
        c.messages = Some(40);
        c.duration = Duration::from_secs(30);
    });
    assert_clean(&report);
    assert_eq!(report.sent, 40, "{report}");
    assert!(report.latency.is_some(), "{report}");
}

#[test]
fn every_tls_handshake_reaches_the_prompt() {
    let report = run_tls(Workload::Handshakes, 4, |c| {
        c.messages = Some(40);
        c.duration = Duration::from_secs(30);
    });
    assert_clean(&report);
    assert_eq!(report.sent, 40, "{report}");
    assert!(report.latency.is_some(), "{report}");
}

#[test]
fn fanout_over_tls_delivers_every_broadcast_to_every_listener() {
    let report = run_tls(Workload::Fanout, 5, |_| {});
    assert_clean(&report);
    assert!(report.sent > 0, "{report}");
    assert_eq!(report.expected, report.sent * 5, "{report}");
}

#[test]
fn fanout_over_tls_with_one_line_in_flight_still_delivers_everything() {
    let report = run_tls(Workload::Fanout, 3, |c| c.window = 1);
    assert_clean(&report);
    assert!(report.sent > 0, "{report}");
}

#[test]
fn direct_over_tls_delivers_every_message() {
    let report = run_tls(Workload::Direct, 5, |_| {});
    assert_clean(&report);
    assert!(report.delivered > 0, "{report}");
}

#[test]
fn a_certificate_of_another_fingerprint_fails_the_setup() {
    let server = TestServer::try_with(Options {
        tls: true,
        ..Options::for_accounts(load::accounts(2))
    })
    .expect("server starts");
    let mut config = LoadConfig::new(Workload::Direct, server.addr);
    config.clients = 1;
    config.setup_timeout = Duration::from_secs(10);
    config.tls = Some(format!("SHA256:{}", "A".repeat(43)));
    let err = load::run(&config).expect_err("certificate refused");
    let fingerprint = server.fingerprint.clone().expect("a TLS server");
    assert!(err.to_string().contains(&fingerprint), "{err}");
    server.stop().expect("server stops cleanly");
}

#[test]
fn fanout_over_websocket_delivers_every_broadcast_to_every_listener() {
    let report = run_small_on(Over::Web, Workload::Fanout, 5, |_| {});
    assert_clean(&report);
    assert!(report.sent > 0, "{report}");
    assert_eq!(report.expected, report.sent * 5, "{report}");
}

#[test]
fn idle_over_websocket_reports_the_server_memory() {
    let report = run_small_on(Over::Web, Workload::Idle, 5, |c| {
        // The server is a thread of this process: its memory is ours.
        c.server_pid = Some(std::process::id());
    });
    assert_clean(&report);
    assert_eq!(report.clients, 5);
    assert!(report.server_memory.is_some(), "{report}");
    assert!(report.figure().is_some(), "{report}");
}
