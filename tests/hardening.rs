//! What one hostile but ordinary user could do to everyone else, each over
//! real sockets against the server binary with default options unless a
//! test says otherwise: lose acknowledged offline mail at login, fill the
//! memory or the disk with stored mail, stop the server with a failing
//! disk, freeze it with a compaction, slow it with cheap commands, ban
//! every account, hold every connection slot, or push other clients off
//! with a flood. Per-address limits spare loopback by default, so the
//! attackers here connect from 127.0.0.2 and 127.0.0.3. The compaction
//! stall is measured in `tests/compaction_stall.rs`, alone, so that these
//! tests do not disturb its timing.

mod common;

use std::net::{IpAddr, Ipv4Addr};
use std::thread;
use std::time::{Duration, Instant};

use common::{Client, ProcessOptions, ServerProcess, TempDir, IO_TIMEOUT};

const TOO_MANY_FAILURES: &str =
    "Error. Too many failed logins from your address. Please try again later";
const TOO_MANY_CONNECTIONS: &str = "Error. Too many connections from your address";
const STORAGE_FULL: &str = "Error. Server storage is full";
const UNAVAILABLE: &str = "Error. Server storage is unavailable";

fn attacker() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
}

fn other_address() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 3))
}

fn offline(user: &str) -> String {
    format!("{user} is offline. Your message will be delivered when they log in")
}

/// The server binary with these arguments (ephemeral unless they name a
/// data directory) and the test accounts.
fn server(args: &[&str]) -> ServerProcess {
    ServerProcess::start(ProcessOptions {
        args: args.iter().map(|a| a.to_string()).collect(),
        ..ProcessOptions::default()
    })
}

fn kill_9(mut server: ServerProcess) {
    server.signal(libc::SIGKILL);
    server.wait(IO_TIMEOUT);
}

/// Reads lines up to and including `line`.
fn skip_until(client: &mut Client, line: &str) {
    while client.read_line() != line {}
}

// ------------------------------------------------ 1. mail given at login

/// A sender with a 46-character name, as in the report.
const LONG_NAME: &str = "a_sender_whose_name_is_forty_six_characters_xx";

/// The test accounts and [`LONG_NAME`].
fn accounts_with_long_name() -> Vec<(String, String)> {
    let mut accounts: Vec<(String, String)> = common::ACCOUNTS
        .iter()
        .map(|&(u, p)| (u.to_string(), p.to_string()))
        .collect();
    accounts.push((LONG_NAME.to_string(), "secret".to_string()));
    accounts
}

/// The longest text `message luke <text>` may carry within the default
/// line limit of 1024 bytes.
fn long_text(i: usize) -> String {
    let head = format!("{i:04} ");
    let room = 1024 - "message luke ".len() - head.len();
    format!("{head}{}", "x".repeat(room))
}

/// Queues `n` messages of the longest kind for luke from [`LONG_NAME`],
/// pipelined, and waits for every acknowledgement; returns the lines luke
/// must get.
fn fill_lukes_mailbox(server: &ServerProcess, n: usize) -> Vec<String> {
    let mut sender = server.login(LONG_NAME, "secret");
    let mut writer = sender.writer();
    let lines: Vec<String> = (0..n).map(long_text).collect();
    let burst: String = lines
        .iter()
        .map(|t| format!("message luke {t}\n"))
        .collect();
    let sending = thread::spawn(move || {
        std::io::Write::write_all(&mut writer, burst.as_bytes()).expect("send the burst");
    });
    for _ in 0..n {
        sender.expect_line(&offline("luke"));
    }
    sending.join().expect("the sending thread");
    sender.logout();
    lines
        .iter()
        .map(|text| format!("{LONG_NAME}: {text}"))
        .collect()
}

fn server_with_long_name(args: &[&str]) -> ServerProcess {
    ServerProcess::start(ProcessOptions {
        args: args.iter().map(|a| a.to_string()).collect(),
        accounts: accounts_with_long_name(),
        ..ProcessOptions::default()
    })
}

#[test]
fn a_mailbox_larger_than_the_backlog_limit_is_delivered_whole_to_a_reader_that_pauses() {
    let server = server_with_long_name(&[]);
    let mail = fill_lukes_mailbox(&server, 1000);
    assert!(
        mail.iter().map(|l| l.len() + 1).sum::<usize>() > 1 << 20,
        "the mailbox must exceed --max-pending"
    );
    let mut luke = server.login("luke", "lightsaber");
    for line in &mail[..10] {
        luke.expect_line(line);
    }
    // A pause longer than any flush: the backlog is not pending output.
    thread::sleep(Duration::from_millis(500));
    for line in &mail[10..] {
        luke.expect_line(line);
    }
    luke.barrier();
    luke.logout();
    // Delivered means gone.
    let mut luke = server.login("luke", "lightsaber");
    luke.barrier();
}

/// Messages enough (5 MiB) that the server cannot have written them all
/// into the sockets' buffers (4 MiB at most by default) while the client
/// does not read.
const MORE_THAN_BUFFERED: usize = 5000;

/// A connection with a fixed receive buffer of 64 KiB, so that the kernel
/// does not grow it while the client does not read.
fn stalling_client(server: &ServerProcess) -> Client {
    let client = Client::connect(server.addr);
    client.set_receive_buffer(64 * 1024);
    client
}

#[test]
fn live_output_to_a_user_still_reading_their_backlog_comes_after_it() {
    let server = server_with_long_name(&["--mailbox-max", "5000"]);
    let mail = fill_lukes_mailbox(&server, MORE_THAN_BUFFERED);
    let mut luke = stalling_client(&server);
    luke.login("luke", "lightsaber");
    luke.expect_line(&mail[0]);
    // While the rest waits, yoda writes to luke and hans logs in.
    let mut yoda = server.login("yoda", "wise");
    yoda.send("message luke live one\n");
    let _hans = server.login("hans", "falcon");
    yoda.expect_line("hans logged in");
    yoda.send("message luke live two\n");
    yoda.barrier();
    for line in &mail[1..] {
        luke.expect_line(line);
    }
    luke.expect_lines(&[
        "yoda logged in",
        "yoda: live one",
        "hans logged in",
        "yoda: live two",
    ]);
    luke.barrier();
}

/// Reads lines until `until` (not included) or the end of the stream.
fn lines_until(client: &mut Client, until: Option<&str>) -> Vec<String> {
    let mut lines = Vec::new();
    while let Some(line) = client.line_or_end() {
        if Some(line.as_str()) == until {
            break;
        }
        lines.push(line);
    }
    lines
}

/// `first` then `second` must be `mail` in order, nothing skipped; up to
/// `repeated` lines at the boundary may come twice (delivery is at least
/// once).
fn assert_whole(mail: &[String], first: &[String], second: &[String], repeated: usize) {
    assert_eq!(first, &mail[..first.len()], "the first session's lines");
    let resume = mail.len() - second.len();
    assert!(
        resume <= first.len() && first.len() <= resume + repeated,
        "the first session got {} lines, the second resumed at {resume}",
        first.len()
    );
    assert_eq!(second, &mail[resume..], "the second session's lines");
}

/// The backlog lines one write of the server can hold: it queues offline
/// mail at most 64 KiB ahead of the socket, and one line more. A server
/// killed after a write and before the journal records that the lines
/// left the mailbox gives them again, never more of them.
fn lines_in_one_write(mail: &[String]) -> usize {
    let shortest = mail.iter().map(String::len).min().unwrap_or(0) + 1;
    (64 * 1024_usize).div_ceil(shortest) + 1
}

#[test]
fn a_recipient_who_leaves_midway_gets_the_rest_at_the_next_login() {
    let server = server_with_long_name(&["--mailbox-max", "5000"]);
    let mail = fill_lukes_mailbox(&server, MORE_THAN_BUFFERED);
    let mut luke = stalling_client(&server);
    luke.login("luke", "lightsaber");
    for line in &mail[..50] {
        luke.expect_line(line);
    }
    luke.send("logout\n");
    let mut first: Vec<String> = mail[..50].to_vec();
    first.extend(lines_until(&mut luke, Some("Goodbye")));
    luke.expect_eof();
    assert!(
        first.len() < mail.len(),
        "the test needs a backlog left over"
    );

    let mut luke = server.login("luke", "lightsaber");
    luke.send("whoelse\n");
    let second = lines_until(&mut luke, Some("No other users are online"));
    assert_whole(&mail, &first, &second, 1);
}

#[test]
fn a_kill_during_delivery_keeps_every_undelivered_message_across_the_restart() {
    let tmp = TempDir::new("hardening-kill-delivery");
    let data = tmp.data().display().to_string();
    let args = ["--data-dir", data.as_str(), "--mailbox-max", "1100"];
    let server = server_with_long_name(&args);
    let mail = fill_lukes_mailbox(&server, 1100);
    let mut luke = stalling_client(&server);
    luke.login("luke", "lightsaber");
    for line in &mail[..100] {
        luke.expect_line(line);
    }
    kill_9(server);
    // What the dead server had written still arrives, then the end.
    let mut first: Vec<String> = mail[..100].to_vec();
    first.extend(lines_until(&mut luke, None));

    let server = server_with_long_name(&args);
    let mut luke = server.login("luke", "lightsaber");
    luke.send("whoelse\n");
    let second = lines_until(&mut luke, Some("No other users are online"));
    assert_whole(&mail, &first, &second, lines_in_one_write(&mail));
}

// ------------------------------------------- 8. failed logins per address

#[test]
fn one_address_cannot_ban_every_account() {
    let server = server(&[]);
    // Ten failures, two per username so that none is banned.
    for &(user, _) in &common::ACCOUNTS {
        let mut client = Client::connect_from(server.addr, attacker());
        client.expect(common::USERNAME);
        client.send(&format!("{user}\n"));
        client.expect(common::PASSWORD);
        for _ in 0..2 {
            client.send("guess\n");
            client.expect_line(common::INVALID_PASSWORD);
            client.expect(common::PASSWORD);
        }
    }
    // The next password, even a right one, is refused and counts for no
    // username; the connection is closed.
    let mut client = Client::connect_from(server.addr, attacker());
    client.expect(common::USERNAME);
    client.send("yoda\n");
    client.expect(common::PASSWORD);
    client.send("wise\n");
    client.expect_line(TOO_MANY_FAILURES);
    client.expect_eof();
    // A fresh username, three more guesses: refused before any can ban it.
    let mut client = Client::connect_from(server.addr, attacker());
    client.expect(common::USERNAME);
    client.send("hans\nwrong\n");
    client.expect(common::PASSWORD);
    client.expect_line(TOO_MANY_FAILURES);
    client.expect_eof();

    // Nobody else is affected, and no account is banned: yoda and hans had
    // two failures each, so had a refused password counted, they would be.
    let mut yoda = Client::connect_from(server.addr, other_address());
    yoda.login("yoda", "wise");
    let mut hans = Client::connect_from(server.addr, other_address());
    hans.login("hans", "falcon");

    // Once BLOCK_DURATION (0.5 s here) has passed, the address may log in.
    thread::sleep(Duration::from_millis(600));
    let mut vader = Client::connect_from(server.addr, attacker());
    vader.login("vader", "sithlord");
}

// ------------------------------------------------ 9. connection slots

#[test]
fn one_address_holds_at_most_max_per_ip_connections() {
    let server = server(&[]);
    let mut held: Vec<Client> = (0..16)
        .map(|_| {
            let mut c = Client::connect_from(server.addr, attacker());
            c.expect(common::USERNAME);
            c
        })
        .collect();
    let mut refused = Client::connect_from(server.addr, attacker());
    refused.expect_line(TOO_MANY_CONNECTIONS);
    refused.expect_eof();
    // Other addresses, and trusted loopback, still get in.
    let mut other = Client::connect_from(server.addr, other_address());
    other.login("yoda", "wise");
    let local: Vec<Client> = (0..20)
        .map(|_| {
            let mut c = server.connect();
            c.expect(common::USERNAME);
            c
        })
        .collect();
    // A slot freed is a slot for the address again.
    held.pop().expect("a connection").reset();
    common::wait_until("the freed slot to be usable", || {
        greeting(&Client::connect_from(server.addr, attacker())) == common::USERNAME
    });
    drop(local);
}

/// What the server says first to a new connection (it says it in one
/// write): the prompt, or why it is closing.
fn greeting(client: &Client) -> String {
    use std::io::Read;
    let mut stream = client.stream();
    stream
        .set_read_timeout(Some(IO_TIMEOUT))
        .expect("set_read_timeout");
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).expect("read the greeting");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn a_login_must_be_complete_within_the_login_timeout_however_much_is_typed() {
    let server = server(&["--login-timeout", "1"]);
    let mut slow = Client::connect_from(server.addr, attacker());
    let started = Instant::now();
    slow.expect(common::USERNAME);
    // A bogus username every 200 ms keeps the idle timer (30 s) away.
    let ended = loop {
        slow.send("nobody\n");
        // Each line follows the prompt it answers.
        match slow
            .poll_line(200)
            .as_deref()
            .map(|l| l.trim_start_matches(common::USERNAME))
        {
            Some("Login timed out") => break started.elapsed(),
            Some(line) => assert_eq!(line, "Invalid Username. Please try again"),
            None => {}
        }
        assert!(started.elapsed() < IO_TIMEOUT, "no login timeout");
    };
    slow.expect_eof();
    assert!(
        ended >= Duration::from_millis(950),
        "timed out after {ended:?}, before the deadline"
    );
    // A user who logged in in time stays.
    let mut yoda = Client::connect_from(server.addr, attacker());
    yoda.login("yoda", "wise");
    thread::sleep(Duration::from_millis(1300));
    yoda.send("whoelse\n");
    yoda.expect_line("No other users are online");
}

// ------------------------------------------------------- 10. the rate

#[test]
fn a_flooding_client_is_slowed_never_cut_off_and_loses_nothing() {
    const LINES: usize = 150;
    const LISTENERS: usize = 20;
    let mut accounts: Vec<(String, String)> = (0..LISTENERS)
        .map(|i| (format!("listener{i:02}"), "pw".to_string()))
        .collect();
    accounts.push(("flooder".into(), "pw".into()));
    let server = ServerProcess::start(ProcessOptions {
        args: ["--rate", "50", "--burst", "10"].map(String::from).to_vec(),
        accounts,
        ..ProcessOptions::default()
    });
    let mut listeners: Vec<Client> = (0..LISTENERS)
        .map(|i| server.login(&format!("listener{i:02}"), "pw"))
        .collect();
    let mut flooder = Client::connect_from(server.addr, attacker());
    flooder.login("flooder", "pw");
    for listener in &mut listeners {
        skip_until(listener, "flooder logged in");
    }
    let burst: String = (0..LINES)
        .map(|i| format!("broadcast flood {i}\n"))
        .collect();
    let sent = Instant::now();
    flooder.send(&burst);
    for i in 0..LINES {
        for listener in &mut listeners {
            listener.expect_line(&format!("flooder: flood {i}"));
        }
    }
    let took = sent.elapsed();
    // 10 at once, then 50 a second: at least 2.8 s for the rest.
    assert!(
        took >= Duration::from_millis(2500),
        "{LINES} broadcasts went out in {took:?}: the rate was not applied"
    );
    // Nobody was cut off, and the flooder got no error.
    flooder.send("whoelse\n");
    for i in 0..LISTENERS {
        flooder.expect_line(&format!("listener{i:02}"));
    }
    for listener in &mut listeners {
        listener.barrier();
    }
}

// ------------------------------------------------ 2. stored mail in total

/// Pipelines `n` offline messages of `text` from `client` to the users
/// `to` in turn; returns the replies, in order.
fn offline_burst(client: &mut Client, to: &[&str], n: usize, text: &str) -> Vec<String> {
    let mut writer = client.writer();
    let burst: String = (0..n)
        .map(|i| format!("message {} {text} {i}\n", to[i % to.len()]))
        .collect();
    let sending = thread::spawn(move || {
        std::io::Write::write_all(&mut writer, burst.as_bytes()).expect("send the burst");
    });
    let replies = (0..n).map(|_| client.read_line()).collect();
    sending.join().expect("the sending thread");
    replies
}

#[test]
fn stored_mail_has_a_total_bound_and_nothing_is_stored_past_it() {
    // Room for 20 messages of this size from yoda, over all mailboxes.
    let text = "x".repeat(200);
    let cost = "yoda: ".len() + text.len() + " 00".len() + 32;
    let server = server(&["--store-max", &(20 * cost + cost / 2).to_string()]);
    let mut yoda = server.login("yoda", "wise");
    let replies = offline_burst(&mut yoda, &["luke", "leia"], 30, &format!("{text} 0"));
    let acknowledged: Vec<usize> = (0..30)
        .filter(|&i| replies[i] == offline(["luke", "leia"][i % 2]))
        .collect();
    assert_eq!(acknowledged, (0..20).collect::<Vec<_>>(), "{replies:?}");
    assert!(
        replies[20..].iter().all(|r| r == STORAGE_FULL),
        "{:?}",
        &replies[20..]
    );
    // Exactly what was acknowledged is stored; delivering it makes room.
    let mut luke = server.login("luke", "lightsaber");
    for i in (0..20).step_by(2) {
        luke.expect_line(&format!("yoda: {text} 0 {i}"));
    }
    luke.logout();
    yoda.expect_line("luke logged in");
    yoda.expect_line("luke logged out");
    yoda.send("message luke room again\n");
    yoda.expect_line(&offline("luke"));
}

/// Bytes in the files of `dir`.
fn dir_size(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn memory_and_disk_stay_within_a_small_multiple_of_the_stored_mail_bound() {
    const STORE: u64 = 8 << 20;
    const MIB: u64 = 1 << 20;
    let tmp = TempDir::new("hardening-store");
    let data = tmp.data().display().to_string();
    let store = STORE.to_string();
    let args = [
        "--data-dir",
        &data,
        "--store-max",
        &store,
        "--mailbox-max",
        "1000000",
        "--compact-at",
        "1048576",
    ];
    let first = server(&args);
    let baseline = first.status_kib("VmHWM") * 1024;
    let mut yoda = first.login("yoda", "wise");
    // Small messages, the worst case for bookkeeping per byte: 64 bytes
    // of text, about 100 bytes of cost each, until the store is full.
    let text = "m".repeat(58);
    let mut peak_disk = 0;
    let mut full = false;
    let mut rounds = 0;
    while !full {
        let replies = offline_burst(&mut yoda, &["luke", "leia", "hans", "vader"], 5000, &text);
        full = replies.iter().any(|r| r == STORAGE_FULL);
        peak_disk = peak_disk.max(dir_size(&tmp.data()));
        rounds += 1;
        assert!(rounds < 100, "the store never filled");
    }
    let grown = first.status_kib("VmHWM") * 1024 - baseline;
    eprintln!(
        "store full after {rounds} rounds: peak memory +{} MiB, peak disk {} MiB",
        grown / MIB,
        peak_disk / MIB
    );
    assert!(grown <= 2 * STORE + 4 * MIB, "memory grew by {grown} bytes");
    assert!(
        peak_disk <= 4 * STORE + 2 * MIB,
        "the data directory held {peak_disk} bytes"
    );
    kill_9(first);

    // Loading it all again stays within the same bound.
    let restarted = server(&args);
    let loaded = restarted.status_kib("VmHWM") * 1024;
    eprintln!("after the restart: {} MiB resident at peak", loaded / MIB);
    assert!(
        loaded <= baseline + 2 * STORE + 4 * MIB,
        "loading took {loaded} bytes"
    );
    assert!(dir_size(&tmp.data()) <= 4 * STORE + 2 * MIB);
    drop(restarted);
}

// ---------------------------------------------------- 3. a failing disk

#[test]
fn a_full_disk_degrades_durable_service_and_recovers_on_its_own() {
    /// The journal may not grow past this (a file-size limit, which fails
    /// the write like a full disk).
    const LIMIT: u64 = 128 * 1024;
    /// Messages of about 950 bytes: more than the limit holds.
    const SENT: usize = 200;
    let tmp = TempDir::new("hardening-full-disk");
    let server = ServerProcess::start(ProcessOptions {
        args: vec!["--data-dir".into(), tmp.data().display().to_string()],
        max_file_size: Some(LIMIT),
        env: vec![("RUST_LOG".into(), "warn".into())],
        ..ProcessOptions::default()
    });
    let mut yoda = server.login("yoda", "wise");
    let mut hans = server.login("hans", "falcon");
    yoda.expect_line("hans logged in");
    let text = "d".repeat(900);
    let burst: String = (0..SENT)
        .map(|i| format!("message luke {text} {i:03}\n"))
        .collect();
    yoda.send(&burst);
    // The replies of every commit up to the one that failed; yoda's output
    // is held from there, so they stop.
    let mut replies = Vec::new();
    while let Some(line) = yoda.poll_line(2000) {
        assert_eq!(line, offline("luke"), "before the failure");
        replies.push(line);
    }
    assert!(
        replies.len() < SENT,
        "the file-size limit was never reached"
    );

    // Durable commands are refused and change nothing; online chat goes on.
    hans.send("message luke refused\nblock vader\n");
    hans.expect_lines(&[UNAVAILABLE, UNAVAILABLE]);
    let mut leia = server.login("leia", "blasterpistol");
    hans.expect_line("leia logged in");
    leia.send("message hans still chatting\n");
    hans.expect_line("leia: still chatting");
    let mut server = server;
    server.assert_running();

    // Space returns: the held replies arrive; each message was either
    // acknowledged (it was in the failed commit, retried) or, arriving
    // while the journal failed, refused.
    server.set_max_file_size(u64::MAX);
    while replies.len() < SENT {
        replies.push(yoda.read_line());
    }
    let mut acknowledged = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        if *reply == offline("luke") {
            acknowledged.push(format!("yoda: {text} {i:03}"));
        } else {
            assert_eq!(reply, UNAVAILABLE, "reply {i}");
        }
    }
    hans.send("message luke accepted now\n");
    hans.expect_line(&offline("luke"));
    acknowledged.push("hans: accepted now".into());
    let warnings: Vec<String> = server
        .stderr_lines()
        .into_iter()
        .filter(|l| l.contains("WARN") && l.contains("journal"))
        .collect();
    assert!(
        warnings
            .iter()
            .filter(|l| l.contains("journal commit failed"))
            .count()
            == 1
            && warnings.iter().any(|l| l.contains("writable again")),
        "{warnings:?}"
    );
    assert!(
        warnings.len() <= 4,
        "warnings are not rate-limited: {warnings:?}"
    );
    kill_9(server);

    // Every acknowledged message survived, the refused ones were not kept.
    let server = server_on(&tmp.data());
    let mut luke = server.login("luke", "lightsaber");
    for line in &acknowledged {
        luke.expect_line(line);
    }
    luke.barrier();
    let mut vader = server.login("vader", "sithlord");
    vader.send("message hans not blocked\n");
    vader.expect_line(&offline("hans"));
}

fn server_on(dir: &std::path::Path) -> ServerProcess {
    server(&["--data-dir", &dir.display().to_string()])
}

// 5. compaction: see tests/compaction_stall.rs, which runs alone.

// ------------------------------------------------- 6. cheap commands

/// Server CPU time for `rounds` of `command` from one of 100 online users,
/// with `accounts` accounts in all.
fn cpu_for_who_commands(accounts: usize, command: &str, rounds: usize) -> Duration {
    let names: Vec<(String, String)> = (0..accounts)
        .map(|i| (format!("user{i:05}"), "pw".to_string()))
        .collect();
    let server = ServerProcess::start(ProcessOptions {
        accounts: names,
        ..ProcessOptions::default()
    });
    let online: Vec<Client> = (0..100)
        .map(|i| server.login(&format!("user{i:05}"), "pw"))
        .collect();
    let mut asker = server.login("user00100", "pw");
    let last = "user00099";
    let before = server.cpu_time();
    let burst = format!("{command}\n").repeat(rounds);
    asker.send(&burst);
    for _ in 0..rounds {
        while asker.read_line() != last {}
    }
    let used = server.cpu_time() - before;
    drop(online);
    used
}

#[test]
fn whoelse_costs_what_the_online_users_cost_not_every_account() {
    for command in ["whoelse", "whoelsesince 1000000"] {
        let few = cpu_for_who_commands(110, command, 2000);
        let many = cpu_for_who_commands(10_000, command, 2000);
        eprintln!("{command}: {few:?} with 110 accounts, {many:?} with 10,000");
        assert!(
            many.as_secs_f64() <= 2.0 * few.as_secs_f64() + 0.05,
            "{command} cost {many:?} with 10,000 accounts and {few:?} with 110, 100 online in both"
        );
    }
}

#[test]
fn trust_decides_whom_the_per_address_limits_spare() {
    // Trusting 127.0.0.2 alone: it is spared, loopback is not.
    let trusting = server(&["--trust", "127.0.0.2", "--max-per-ip", "2"]);
    let spared: Vec<Client> = (0..5)
        .map(|_| Client::connect_from(trusting.addr, attacker()))
        .collect();
    for client in &spared {
        assert_eq!(greeting(client), common::USERNAME);
    }
    let local: Vec<Client> = (0..2).map(|_| trusting.connect()).collect();
    for client in &local {
        assert_eq!(greeting(client), common::USERNAME);
    }
    assert_eq!(
        greeting(&trusting.connect()),
        format!("{TOO_MANY_CONNECTIONS}\n")
    );
    drop(trusting);
    // Trusting nobody: loopback is limited too.
    let nobody = server(&["--trust", "none", "--max-per-ip", "1"]);
    let first = nobody.connect();
    assert_eq!(greeting(&first), common::USERNAME);
    assert_eq!(
        greeting(&nobody.connect()),
        format!("{TOO_MANY_CONNECTIONS}\n")
    );
}
