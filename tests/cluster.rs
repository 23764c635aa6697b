//! Cluster mode against a real `nats-server -js` on 127.0.0.1: two or three
//! `confab-server` processes as nodes of one chat, each user on whichever
//! node, behaving as one server would.

use std::process::Command;
use std::thread;
use std::time::{Duration, Instant};

use confab_testkit::nats::NatsServer;
use confab_testkit::process::{run_to_end, server_binary, ProcessOptions, ServerProcess};
use confab_testkit::replies::ACCOUNT_BANNED;
use confab_testkit::{password, Client};

const STORAGE_UNAVAILABLE: &str = "Error. Server storage is unavailable";

/// A node of the cluster on `nats` named `name`, with the test accounts,
/// a 30 s idle timeout and `extra` arguments.
fn node(nats: &NatsServer, name: &str, extra: &[&str]) -> ServerProcess {
    node_with(nats, name, extra, Vec::new())
}

fn node_with(
    nats: &NatsServer,
    name: &str,
    extra: &[&str],
    accounts: Vec<(String, String)>,
) -> ServerProcess {
    let mut args = vec![
        "--cluster".to_owned(),
        nats.url(),
        "--node".to_owned(),
        name.to_owned(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    ServerProcess::start(ProcessOptions {
        args,
        accounts,
        ..ProcessOptions::default()
    })
}

/// Stops `node` with SIGTERM and waits for it to exit.
fn stop(mut node: ServerProcess) {
    node.signal(libc::SIGTERM);
    let status = node.wait(Duration::from_secs(5));
    assert!(status.success(), "{status:?}");
}

/// Logs `user` in on `node`.
fn login(node: &ServerProcess, user: &str) -> Client {
    node.login(user, password(user))
}

#[test]
fn users_on_different_nodes_chat_and_see_each_others_presence() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    let mut yoda = login(&a, "yoda");
    let mut hans = login(&b, "hans");
    yoda.expect_line("hans logged in");
    yoda.send("whoelse\n");
    yoda.expect_line("hans");
    hans.send("whoelse\n");
    hans.expect_line("yoda");
    yoda.send("message hans across the cluster\n");
    hans.expect_line("yoda: across the cluster");
    hans.send("broadcast hello everyone\n");
    yoda.expect_line("hans: hello everyone");
    let mut vader = login(&a, "vader");
    yoda.expect_line("vader logged in");
    hans.expect_line("vader logged in");
    vader.send("whoelse\n");
    let mut others = [vader.read_line(), vader.read_line()];
    others.sort();
    assert_eq!(others, ["hans", "yoda"]);
    hans.logout();
    yoda.expect_line("hans logged out");
    vader.expect_line("hans logged out");
    vader.send("whoelsesince 60\n");
    let mut since = [vader.read_line(), vader.read_line()];
    since.sort();
    assert_eq!(since, ["hans", "yoda"]);
}

#[test]
fn a_second_login_on_another_node_is_refused() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    let mut yoda = login(&a, "yoda");
    let mut again = b.connect();
    again.expect("Username: ");
    again.send("yoda\n");
    again.expect("Password: ");
    again.send(&format!("{}\n", password("yoda")));
    again.expect_line("This user is already logged in");
    again.expect("Username: ");
    yoda.send("whoelse\n");
    yoda.expect_line("No other users are online");
}

#[test]
fn a_ban_from_failures_on_two_nodes_holds_on_both() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &["--trust", "none"]);
    let b = node(&nats, "b", &["--trust", "none"]);
    let mut first = a.connect();
    first.expect("Username: ");
    first.send("vader\n");
    for _ in 0..2 {
        first.expect("Password: ");
        first.send("wrong\n");
        first.expect_line("Invalid Password. Please try again");
    }
    let mut second = b.connect();
    second.expect("Username: ");
    second.send("vader\n");
    second.expect("Password: ");
    second.send("wrong\n");
    second.expect_line("Invalid Password. Your account has been blocked. Please try again later");
    second.expect_eof();
    for node in [&a, &b] {
        let mut late = node.connect();
        late.expect("Username: ");
        late.send("vader\n");
        late.expect("Password: ");
        late.send(&format!("{}\n", password("vader")));
        late.expect_line(ACCOUNT_BANNED);
        late.expect_eof();
    }
}

#[test]
fn offline_mail_queued_on_one_node_is_delivered_on_another() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    let mut hans = login(&a, "hans");
    hans.send("message yoda while you were out\n");
    hans.expect_line("yoda is offline. Your message will be delivered when they log in");
    hans.send("block vader\n");
    hans.expect_line("vader is blocked");
    let mut yoda = b.connect();
    yoda.expect("Username: ");
    yoda.send("yoda\n");
    yoda.expect("Password: ");
    yoda.send(&format!("{}\n", password("yoda")));
    yoda.expect_line("Welcome to the greatest messaging application ever!");
    yoda.expect_line("hans: while you were out");
    let mut vader = login(&b, "vader");
    yoda.expect_line("vader logged in");
    vader.send("message hans let me in\n");
    vader.expect_line("Your message could not be delivered as the recipient has blocked you");
    yoda.logout();
    // Delivered once: a login on the first node finds the mailbox empty.
    let mut again = login(&a, "yoda");
    again.expect_silence(300);
}

#[test]
fn a_killed_node_s_users_are_logged_out_everywhere_and_nothing_acknowledged_is_lost() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &["--node-timeout", "1"]);
    let b = node(&nats, "b", &["--node-timeout", "1"]);
    let mut yoda = login(&a, "yoda");
    let mut hans = login(&b, "hans");
    yoda.expect_line("hans logged in");
    hans.send("message vader kept through the crash\n");
    hans.expect_line("vader is offline. Your message will be delivered when they log in");
    // SIGKILL: no departure of its own in the log.
    b.signal(libc::SIGKILL);
    let killed = Instant::now();
    yoda.expect_line("hans logged out");
    assert!(
        killed.elapsed() < Duration::from_secs(4),
        "took {:?}",
        killed.elapsed()
    );
    yoda.send("whoelse\n");
    yoda.expect_line("No other users are online");
    let mut vader = login(&a, "vader");
    vader.expect_line("hans: kept through the crash");
    // hans may log in again, on the surviving node.
    let _hans = login(&a, "hans");
    drop(b);
}

#[test]
fn all_nodes_restarted_come_back_with_the_same_state() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &["--node-timeout", "1"]);
    let b = node(&nats, "b", &["--node-timeout", "1"]);
    let mut hans = login(&a, "hans");
    hans.send("message yoda survives restarts\n");
    hans.expect_line("yoda is offline. Your message will be delivered when they log in");
    hans.send("block vader\n");
    hans.expect_line("vader is blocked");
    hans.logout();
    // One stopped as an operator would, one killed.
    stop(a);
    drop(b);
    let a = node(&nats, "a", &["--node-timeout", "1"]);
    let b = node(&nats, "b", &["--node-timeout", "1"]);
    let mut yoda = login(&b, "yoda");
    yoda.expect_line("hans: survives restarts");
    let _hans = login(&a, "hans");
    yoda.expect_line("hans logged in");
    let mut vader = login(&a, "vader");
    vader.send("message hans still blocked\n");
    vader.expect_line("Your message could not be delivered as the recipient has blocked you");
}

#[test]
fn a_node_with_different_credentials_is_refused_with_one_line() {
    let nats = NatsServer::start();
    let _a = node(&nats, "a", &[]);
    let dir = confab_testkit::TempDir::new("cluster-credentials");
    let file = dir.0.join("credentials.txt");
    std::fs::write(&file, "yoda other\n").expect("write credentials");
    let (status, stderr) = run_to_end(
        Command::new(server_binary())
            .args(["0", "0.5", "30", "--credentials"])
            .arg(&file)
            .args(["--cluster", &nats.url(), "--node", "b"]),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    let lines: Vec<&str> = stderr
        .lines()
        .filter(|l| l.starts_with("confab-server"))
        .collect();
    assert_eq!(
        lines,
        [
            "confab-server: the credentials file differs from the cluster's accounts: every node \
          must load the same one"
        ],
        "{stderr}"
    );
}

#[test]
fn a_second_live_node_with_the_same_name_is_refused() {
    let nats = NatsServer::start();
    let _a = node(&nats, "twin", &["--node-timeout", "1"]);
    let dir = confab_testkit::TempDir::new("cluster-twin");
    let file = dir.0.join("credentials.txt");
    let accounts: String = confab_testkit::ACCOUNTS
        .iter()
        .map(|(u, p)| format!("{u} {p}\n"))
        .collect();
    std::fs::write(&file, accounts).expect("write credentials");
    let (status, stderr) = run_to_end(
        Command::new(server_binary())
            .args(["0", "0.5", "30", "--credentials"])
            .arg(&file)
            .args([
                "--cluster",
                &nats.url(),
                "--node",
                "twin",
                "--node-timeout",
                "1",
            ]),
    );
    assert_eq!(status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("confab-server: a node named twin is already running in the cluster"),
        "{stderr}"
    );
}

#[test]
fn a_short_nats_outage_logs_nobody_out_and_a_long_one_refuses_without_carrying_out_later() {
    let mut nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    let mut yoda = login(&a, "yoda");
    let mut hans = login(&b, "hans");
    yoda.expect_line("hans logged in");
    nats.kill();
    thread::sleep(Duration::from_millis(1500));
    nats.restart();
    yoda.send("message hans still here\n");
    hans.expect_line("yoda: still here");
    hans.send("whoelse\n");
    hans.expect_line("yoda");
    // Longer than an input may wait: refused, and never delivered. (A
    // batch already handed to NATS when it went away is answered by the
    // log once it is back; the pause lets the node see the outage first.)
    nats.kill();
    thread::sleep(Duration::from_millis(300));
    yoda.send("message hans lost in the outage\n");
    let line = yoda.read_line();
    assert_eq!(line, STORAGE_UNAVAILABLE);
    nats.restart();
    yoda.send("message hans after the outage\n");
    hans.expect_line("yoda: after the outage");
}

#[test]
fn a_node_joining_later_loads_the_newest_snapshot_and_replays_the_rest() {
    let nats = NatsServer::start();
    let every = ["--cluster-snapshot-every", "4"];
    let a = node(&nats, "a", &every);
    let mut hans = login(&a, "hans");
    hans.send("message yoda kept in a snapshot\n");
    hans.expect_line("yoda is offline. Your message will be delivered when they log in");
    for n in 0..12 {
        hans.send(&format!("message vader number {n}\n"));
        hans.expect_line("vader is offline. Your message will be delivered when they log in");
    }
    hans.send("block luke\n");
    hans.expect_line("luke is blocked");
    let b = ServerProcess::start(ProcessOptions {
        args: ["--cluster", &nats.url(), "--node", "b"]
            .iter()
            .chain(&every)
            .map(|a| a.to_string())
            .collect(),
        env: vec![("RUST_LOG".into(), "confab::cluster=info".into())],
        ..ProcessOptions::default()
    });
    let early = b.lines_before_listening();
    assert!(
        early
            .iter()
            .any(|line| line.contains("loaded the snapshot at")),
        "{early:?}"
    );
    // hans's session, taken over in the snapshot, is online for b.
    let mut yoda = login(&b, "yoda");
    yoda.expect_line("hans: kept in a snapshot");
    hans.expect_line("yoda logged in");
    yoda.send("whoelse\n");
    yoda.expect_line("hans");
    let mut vader = login(&b, "vader");
    for n in 0..12 {
        vader.expect_line(&format!("hans: number {n}"));
    }
    let mut luke = login(&b, "luke");
    luke.send("message hans blocked still\n");
    luke.expect_line("Your message could not be delivered as the recipient has blocked you");
}

#[test]
fn private_messaging_is_introduced_across_nodes_with_one_token() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    let mut yoda = login(&a, "yoda");
    let mut hans = login(&b, "hans");
    yoda.expect_line("hans logged in");
    yoda.send("privateport 5000\n");
    hans.send("privateport 6000\n");
    hans.send("whoelse\n");
    hans.expect_line("yoda");
    yoda.send("startprivate hans\n");
    let accept = hans.read_line();
    let connect = yoda.read_line();
    let token = accept
        .strip_prefix("!private accept yoda ")
        .unwrap_or_else(|| panic!("{accept:?}"));
    assert_eq!(token.len(), 32, "{accept:?}");
    assert_eq!(
        connect,
        format!("!private connect hans 127.0.0.1:6000 {token}")
    );
}

#[test]
fn an_idle_user_is_timed_out_by_its_own_node_and_announced_everywhere() {
    let nats = NatsServer::start();
    let idle = |name: &str| {
        ServerProcess::start(ProcessOptions {
            args: ["--cluster", &nats.url(), "--node", name]
                .iter()
                .map(|a| a.to_string())
                .collect(),
            timeout: Some("1".into()),
            ..ProcessOptions::default()
        })
    };
    let a = idle("a");
    let b = idle("b");
    let mut yoda = login(&a, "yoda");
    let mut hans = login(&b, "hans");
    yoda.expect_line("hans logged in");
    let started = Instant::now();
    // yoda keeps talking; hans says nothing.
    let mut got = Vec::new();
    while started.elapsed() < Duration::from_millis(2500) {
        yoda.send("whoelse\n");
        while let Some(line) = yoda.poll_line(200) {
            got.push(line);
            if got.last().is_some_and(|l| l == "hans logged out") {
                break;
            }
        }
        if got.last().is_some_and(|l| l == "hans logged out") {
            break;
        }
    }
    hans.expect_line("You have been logged out due to inactivity");
    hans.expect_eof();
    assert!(got.iter().any(|l| l == "hans logged out"), "{got:?}");
    yoda.send("whoelse\n");
    yoda.expect_line("No other users are online");
}

#[test]
fn no_password_typed_at_a_prompt_enters_the_log() {
    use confab::cluster::bridge::{Bridge, Event, LogConfig};
    use std::sync::Arc;
    let hashed = confab::passwords::hash("correct horse").expect("hash");
    let accounts = vec![
        ("yoda".to_owned(), hashed),
        ("hans".to_owned(), "falcon".to_owned()),
    ];
    let nats = NatsServer::start();
    let a = node_with(&nats, "a", &[], accounts.clone());
    let b = node_with(&nats, "b", &[], accounts);
    let mut yoda = a.connect();
    yoda.expect("Username: ");
    yoda.send("yoda\n");
    yoda.expect("Password: ");
    yoda.send("battery staple\n");
    yoda.expect_line("Invalid Password. Please try again");
    yoda.expect("Password: ");
    yoda.send("correct horse\nwhoelse\n");
    yoda.expect_line("Welcome to the greatest messaging application ever!");
    yoda.expect_line("No other users are online");
    let mut hans = b.connect();
    hans.expect("Username: ");
    hans.send("hans\nwrong guess\n");
    hans.expect("Password: ");
    hans.expect_line("Invalid Password. Please try again");
    let log = LogConfig {
        url: nats.url(),
        stream: "confab".into(),
        replicas: 1,
    };
    let bridge = Bridge::connect(&log, Duration::from_secs(5), Arc::new(|| {})).expect("bridge");
    let (_, last) = bridge
        .stream_bounds(Duration::from_secs(5))
        .expect("bounds");
    bridge.follow_from(1);
    let mut seen = 0;
    let mut log_bytes = Vec::new();
    while seen < last {
        match bridge.wait_event(Duration::from_secs(5)) {
            Some(Event::Entry { seq, payload, .. }) => {
                seen = seq;
                log_bytes.extend_from_slice(&payload);
            }
            Some(_) => {}
            None => panic!("the log ended at {seen} of {last}"),
        }
    }
    let contains = |needle: &[u8]| log_bytes.windows(needle.len()).any(|w| w == needle);
    assert!(contains(b"whoelse"), "the log holds the commands");
    for typed in ["correct horse", "battery staple", "wrong guess"] {
        assert!(!contains(typed.as_bytes()), "{typed:?} is in the log");
    }
}

#[test]
fn accounts_reloaded_on_one_node_switch_on_every_node() {
    let nats = NatsServer::start();
    let a = node(&nats, "a", &[]);
    let b = node(&nats, "b", &[]);
    let mut yoda = login(&b, "yoda");
    let mut accounts: String = confab_testkit::ACCOUNTS
        .iter()
        .filter(|(u, _)| *u != "yoda")
        .map(|(u, p)| format!("{u} {p}\n"))
        .collect();
    accounts.push_str("lando calrissian\n");
    std::fs::write(a.credentials_path(), accounts).expect("rewrite credentials");
    a.signal(libc::SIGHUP);
    yoda.expect_line("Your account has been removed");
    yoda.expect_eof();
    let mut lando = b.connect();
    lando.expect("Username: ");
    lando.enter("lando", "calrissian");
}

#[test]
fn a_browser_on_one_node_chats_with_a_terminal_on_another() {
    use confab_testkit::web::WebClient;
    let nats = NatsServer::start();
    let a = node(&nats, "a", &["--web-port", "0"]);
    let b = node(&nats, "b", &[]);
    let mut page = WebClient::connect(a.web_addr());
    page.login("yoda", password("yoda"));
    let mut hans = login(&b, "hans");
    page.expect("hans logged in");
    hans.send("message yoda from a terminal\n");
    page.expect("hans: from a terminal");
    page.send("message hans from a browser");
    hans.expect_line("yoda: from a browser");
    page.send("privateport 5000");
    page.expect("Error. Private messaging needs the confab client");
    hans.send("privateport 6000\n");
    hans.send("startprivate yoda\n");
    hans.expect_line("Error. yoda cannot accept private messaging");
}

#[test]
fn a_node_cut_off_from_nats_is_declared_dead_and_joins_again() {
    use confab_testkit::proxy::TcpProxy;
    use std::net::{Ipv4Addr, SocketAddr};
    let nats = NatsServer::start();
    let proxy = TcpProxy::start(SocketAddr::from((Ipv4Addr::LOCALHOST, nats.port())));
    let through = NatsServer::url_of(proxy.addr());
    let a = ServerProcess::start(ProcessOptions {
        args: ["--cluster", &through, "--node", "a", "--node-timeout", "1"]
            .iter()
            .map(|a| a.to_string())
            .collect(),
        ..ProcessOptions::default()
    });
    let b = node(&nats, "b", &["--node-timeout", "1"]);
    let mut yoda = login(&a, "yoda");
    let mut hans = login(&b, "hans");
    yoda.expect_line("hans logged in");
    proxy.partition(true);
    hans.expect_line("yoda logged out");
    hans.send("whoelse\n");
    hans.expect_line("No other users are online");
    thread::sleep(Duration::from_millis(500));
    proxy.partition(false);
    // Back in the log, a finds itself dead: it drops its connections and
    // joins again, and its users can log in anew.
    assert_eq!(yoda.line_or_end(), None);
    let _yoda = login(&a, "yoda");
    hans.expect_line("yoda logged in");
}
