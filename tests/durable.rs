//! Durable state end to end: offline messages, block lists and bans kept in
//! a data directory across `kill -9`, damaged journals, crashes during
//! compaction, the mailbox bound, the directory lock, and `--ephemeral`.

mod common;

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant, SystemTime};

use common::{Client, Options, ProcessOptions, ServerProcess, TempDir, TestServer, IO_TIMEOUT};
use confab::chat::{Chat, ChatConfig, Replayed, SessionId, WallClock};
use confab::journal::lock::DirLock;
use confab::journal::{CompactStep, Fsync, Journal, JournalOptions, OnDamage, Record};
use confab::server::Storage;

/// Waits until nothing holds the lock of `dir`. A process that another
/// test forks inherits this process's descriptors until it calls `exec`,
/// and with them, for that moment, a lock this test just released.
fn wait_unlocked(dir: &Path) {
    common::wait_until("the data directory lock to be free", || {
        DirLock::acquire(dir).map_or_else(|e| e.kind() != std::io::ErrorKind::WouldBlock, |_| true)
    });
}

fn offline(user: &str) -> String {
    format!("{user} is offline. Your message will be delivered when they log in")
}

const BLOCKED: &str = "Your message could not be delivered as the recipient has blocked you";

/// `confab-server` on `dir` with a ban of `ban` seconds and these extra
/// arguments.
fn start(dir: &Path, ban: &str, extra: &[&str], env: &[(&str, &str)]) -> ServerProcess {
    let mut args = vec!["--data-dir".to_string(), dir.display().to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    ServerProcess::start(ProcessOptions {
        args,
        block_duration: Some(ban.into()),
        env: env
            .iter()
            .map(|&(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..ProcessOptions::default()
    })
}

fn kill_9(mut server: ServerProcess) {
    server.signal(libc::SIGKILL);
    server.wait(IO_TIMEOUT);
}

/// Logs `user` in expecting exactly `mail` after the welcome line, and
/// nothing more.
fn login_expecting_mail(server: &ServerProcess, user: &str, pass: &str, mail: &[String]) -> Client {
    let mut client = server.login(user, pass);
    for line in mail {
        client.expect_line(line);
    }
    client.barrier();
    client
}

#[test]
fn everything_acknowledged_survives_kill_9() {
    const BAN: f64 = 1.5;
    let tmp = TempDir::new("durable-kill");
    let server = start(&tmp.data(), "1.5", &[], &[]);
    let mut yoda = server.login("yoda", "wise");
    let mut hans = server.login("hans", "falcon");
    yoda.expect_line("hans logged in");
    let mut expected = Vec::new();
    // Pipelined: every acknowledgement may share a commit with others.
    for i in 0..20 {
        yoda.send(&format!("message luke from yoda {i}\n"));
        expected.push(format!("yoda: from yoda {i}"));
    }
    for _ in 0..20 {
        yoda.expect_line(&offline("luke"));
    }
    hans.send("message luke from hans  with  spaces\n");
    hans.expect_line(&offline("luke"));
    expected.push("hans: from hans  with  spaces".into());
    yoda.send("block vader\n");
    yoda.expect_line("vader is blocked");
    yoda.send("block leia\nunblock leia\n");
    yoda.expect_lines(&["leia is blocked", "leia is unblocked"]);
    let mut vader = server.connect();
    vader.get_banned("vader");
    vader.expect_eof();
    let banned_at = Instant::now();
    kill_9(server);

    // Restart a little later, so that a ban restored with its full
    // duration from the restart would outlast the real one.
    thread::sleep(Duration::from_millis(300));
    let server = start(&tmp.data(), "1.5", &[], &[]);
    server.connect().expect_banned("vader", "sithlord");
    let mut luke = login_expecting_mail(&server, "luke", "lightsaber", &expected);
    luke.logout();
    let mut leia = server.login("leia", "blasterpistol");
    leia.send("message yoda not blocked\n");
    leia.expect_line(&offline("yoda"));

    let ban_end = banned_at + Duration::from_secs_f64(BAN);
    thread::sleep(ban_end.saturating_duration_since(Instant::now()) + Duration::from_millis(150));
    let mut vader = server.login("vader", "sithlord");
    vader.send("message yoda hi\n");
    vader.expect_line(BLOCKED);
    kill_9(server);

    // Delivered mail is gone for good; new mail and the block stay.
    let server = start(&tmp.data(), "1.5", &[], &[]);
    let _luke = login_expecting_mail(&server, "luke", "lightsaber", &[]);
    let mut yoda =
        login_expecting_mail(&server, "yoda", "wise", &["leia: not blocked".to_string()]);
    yoda.send("whoelse\n");
    yoda.expect_line("luke");
    let mut vader = server.login("vader", "sithlord");
    vader.send("message yoda hi\n");
    vader.expect_line(BLOCKED);
}

#[test]
fn a_kill_in_the_middle_of_a_burst_keeps_every_acknowledged_message() {
    // Long enough to span many loop iterations (64 KiB are read per
    // connection per iteration), short enough that the acknowledgements
    // stay under the server's backlog limit while nobody reads them.
    const SENT: usize = 8000;
    const ACKED: usize = 1000;
    let pad = "x".repeat(200);
    let tmp = TempDir::new("durable-burst");
    let server = start(&tmp.data(), "0.5", &["--mailbox-max", "100000"], &[]);
    let mut yoda = server.login("yoda", "wise");
    let mut writer = yoda.writer();
    let burst: String = (0..SENT)
        .map(|i| format!("message luke {i:05} {pad}\n"))
        .collect();
    let sending = thread::spawn(move || {
        // The server is killed mid-burst: the write may fail.
        let _ = std::io::Write::write_all(&mut writer, burst.as_bytes());
    });
    for _ in 0..ACKED {
        yoda.expect_line(&offline("luke"));
    }
    kill_9(server);
    sending.join().expect("the writer thread");

    // Whatever was stored is a prefix of the burst, in order, once each,
    // and holds at least everything acknowledged.
    let server = start(&tmp.data(), "0.5", &["--mailbox-max", "100000"], &[]);
    let mut luke = server.login("luke", "lightsaber");
    luke.send("help\n");
    let mut kept = 0;
    loop {
        let line = luke.read_line();
        if line == common::HELP[0] {
            break;
        }
        assert_eq!(line, format!("yoda: {kept:05} {pad}"));
        kept += 1;
    }
    luke.expect_lines(&common::HELP[1..]);
    assert!(
        kept >= ACKED,
        "{kept} of {ACKED} acknowledged messages kept"
    );
}

/// The test accounts without `user`.
fn accounts_without(user: &str) -> Vec<(String, String)> {
    common::ACCOUNTS
        .iter()
        .filter(|(name, _)| *name != user)
        .map(|&(u, p)| (u.to_string(), p.to_string()))
        .collect()
}

/// `confab-server` on `dir` knowing `accounts`, with warnings logged.
fn start_with_accounts(
    dir: &Path,
    accounts: Vec<(String, String)>,
    extra: &[&str],
) -> ServerProcess {
    let mut args = vec!["--data-dir".to_string(), dir.display().to_string()];
    args.extend(extra.iter().map(|a| a.to_string()));
    ServerProcess::start(ProcessOptions {
        args,
        accounts,
        env: vec![("RUST_LOG".into(), "warn".into())],
        ..ProcessOptions::default()
    })
}

#[test]
fn records_about_removed_accounts_are_kept_until_they_come_back_or_are_pruned() {
    let tmp = TempDir::new("durable-removed");
    let server = start(&tmp.data(), "0.5", &[], &[]);
    let mut yoda = server.login("yoda", "wise");
    yoda.send("message luke hi\nmessage hans hello\nblock luke\n");
    yoda.expect_lines(&[&offline("luke"), &offline("hans"), "luke is blocked"]);
    kill_9(server);

    // Without luke: his records are kept, and he is unknown meanwhile.
    let server = start_with_accounts(&tmp.data(), accounts_without("luke"), &[]);
    let warnings = server.stderr_lines();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("kept 2 records about accounts not in the credentials file")),
        "{warnings:?}"
    );
    login_expecting_mail(&server, "hans", "falcon", &["yoda: hello".to_string()]).logout();
    let mut yoda = server.login("yoda", "wise");
    yoda.send("message luke are you there\n");
    yoda.expect_line("Error. Invalid user");
    kill_9(server);

    // Back: his mail and yoda's block of him are there.
    let server = start(&tmp.data(), "0.5", &[], &[]);
    let mut luke = login_expecting_mail(&server, "luke", "lightsaber", &["yoda: hi".to_string()]);
    luke.send("message yoda still blocked?\n");
    luke.expect_line(BLOCKED);
    luke.logout();
    let mut yoda = server.login("yoda", "wise");
    yoda.send("message luke again\n");
    yoda.expect_line(&offline("luke"));
    kill_9(server);

    // --prune-removed drops them for good.
    let server = start_with_accounts(&tmp.data(), accounts_without("luke"), &["--prune-removed"]);
    let warnings = server.stderr_lines();
    assert!(
        warnings.iter().any(|l| l.contains("dropped")
            && l.contains("records about accounts not in the credentials file (--prune-removed)")),
        "{warnings:?}"
    );
    kill_9(server);
    let server = start(&tmp.data(), "0.5", &[], &[]);
    let mut luke = login_expecting_mail(&server, "luke", "lightsaber", &[]);
    luke.send("message yoda not blocked now\n");
    luke.expect_line(&offline("yoda"));
}

/// Writes three messages for luke, stops the server, damages the journal
/// with `damage`, restarts with warnings on, and checks what luke gets and
/// what was logged.
fn damaged_tail(damage: impl FnOnce(&Path), kept: usize) {
    let tmp = TempDir::new("durable-damage");
    let server = start(&tmp.data(), "0.5", &[], &[]);
    let mut yoda = server.login("yoda", "wise");
    let mail: Vec<String> = (0..3).map(|i| format!("yoda: message {i}")).collect();
    for i in 0..3 {
        yoda.send(&format!("message luke message {i}\n"));
        yoda.expect_line(&offline("luke"));
    }
    kill_9(server);
    let journal = confab_testkit::newest_journal(&tmp.data());
    let before = std::fs::metadata(&journal).expect("stat").len();
    damage(&journal);

    let server = start(&tmp.data(), "0.5", &[], &[("RUST_LOG", "warn")]);
    let warnings = server.stderr_lines();
    let offset = before / 3 * kept as u64;
    assert!(
        warnings
            .iter()
            .any(|l| l.contains("WARN") && l.contains(&format!("at offset {offset}"))),
        "expected a warning naming offset {offset}: {warnings:?}"
    );
    login_expecting_mail(&server, "luke", "lightsaber", &mail[..kept]);
}

#[test]
fn a_truncated_journal_keeps_every_intact_record_and_warns() {
    damaged_tail(
        |path| {
            let len = std::fs::metadata(path).expect("stat").len();
            let file = std::fs::OpenOptions::new()
                .write(true)
                .open(path)
                .expect("open the journal");
            file.set_len(len - 5).expect("truncate");
        },
        2,
    );
}

/// Runs `confab-server` on `dir` (the test accounts) to its end; returns
/// its exit status and stderr.
fn start_expecting_exit(tmp: &TempDir, extra: &[&str]) -> (std::process::ExitStatus, String) {
    let credentials = tmp.0.join("accounts.txt");
    let text: String = common::ACCOUNTS
        .iter()
        .map(|(u, p)| format!("{u} {p}\n"))
        .collect();
    std::fs::write(&credentials, text).expect("write credentials");
    common::run_to_end(
        Command::new(env!("CARGO_BIN_EXE_confab-server"))
            .args(["0", "1", "30", "--credentials"])
            .arg(&credentials)
            .arg("--data-dir")
            .arg(tmp.data())
            .args(extra),
    )
}

/// Every file of the data directory with its bytes, but the lock.
fn contents(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .expect("list the data directory")
        .map(|e| e.expect("entry"))
        .filter(|e| e.file_name() != "lock")
        .map(|e| {
            let bytes = std::fs::read(e.path()).expect("read");
            (e.file_name().to_string_lossy().into_owned(), bytes)
        })
        .collect();
    files.sort();
    files
}

/// `n` acknowledged messages for luke, `yoda: number I`, then a kill.
fn queue_for_luke(tmp: &TempDir, n: usize) -> Vec<String> {
    let server = start(&tmp.data(), "0.5", &[], &[]);
    let mut yoda = server.login("yoda", "wise");
    let mut mail = Vec::new();
    for i in 0..n {
        yoda.send(&format!("message luke number {i:04}\n"));
        mail.push(format!("yoda: number {i:04}"));
    }
    for _ in 0..n {
        yoda.expect_line(&offline("luke"));
    }
    kill_9(server);
    mail
}

#[test]
fn a_flipped_byte_before_the_tail_stops_the_start_and_recover_keeps_the_rest() {
    let tmp = TempDir::new("durable-flip");
    let mail = queue_for_luke(&tmp, 200);
    let journal = confab_testkit::newest_journal(&tmp.data());
    let mut bytes = std::fs::read(&journal).expect("read the journal");
    let record = bytes.len() / 200;
    // In the 21st record: 10 % into the journal.
    let at = record * 20 + record / 2;
    bytes[at] ^= 0x40;
    std::fs::write(&journal, &bytes).expect("write the journal");
    let before = contents(&tmp.data());

    let (status, stderr) = start_expecting_exit(&tmp, &[]);
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    let offset = format!("at offset {}", record * 20);
    for needle in [
        &journal.display().to_string(),
        "checksum mismatch",
        &offset,
        "--recover",
    ] {
        assert!(stderr.contains(needle), "{needle:?} not in {stderr:?}");
    }
    assert_eq!(contents(&tmp.data()), before, "nothing may be rewritten");

    let server = start(&tmp.data(), "0.5", &["--recover"], &[]);
    let warnings = server.stderr_lines();
    assert!(
        warnings
            .iter()
            .any(|l| l.contains(&format!("dropped {record} damaged bytes in 1 stretch "))),
        "{warnings:?}"
    );
    let aside: Vec<PathBuf> = std::fs::read_dir(tmp.data())
        .expect("list")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.to_string_lossy().contains(".damaged-"))
        .collect();
    assert_eq!(aside.len(), 1, "{aside:?}");
    assert_eq!(
        std::fs::read(&aside[0]).expect("read"),
        bytes,
        "the damaged file is kept as it was"
    );
    let mut kept = mail.clone();
    kept.remove(20);
    let mut luke = login_expecting_mail(&server, "luke", "lightsaber", &kept);
    luke.logout();
    kill_9(server);
    // The recovered directory starts as a healthy one.
    let server = start(&tmp.data(), "0.5", &[], &[]);
    login_expecting_mail(&server, "luke", "lightsaber", &[]);
}

#[test]
fn a_truncated_snapshot_stops_the_start_and_recover_keeps_its_intact_half() {
    let tmp = TempDir::new("durable-snapshot");
    let mail = queue_for_luke(&tmp, 100);
    // The next start writes the snapshot; kill it once it listens.
    kill_9(start(&tmp.data(), "0.5", &[], &[]));
    let snapshot = tmp.data().join("snapshot");
    let bytes = std::fs::read(&snapshot).expect("read the snapshot");
    let half = bytes.len() / 2;
    std::fs::write(&snapshot, &bytes[..half]).expect("truncate the snapshot");
    let before = contents(&tmp.data());

    let (status, stderr) = start_expecting_exit(&tmp, &[]);
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert!(
        stderr.contains(&snapshot.display().to_string()) && stderr.contains("cut short"),
        "{stderr:?}"
    );
    assert_eq!(contents(&tmp.data()), before, "nothing may be rewritten");

    let server = start(&tmp.data(), "0.5", &["--recover"], &[]);
    let header = 20;
    let record = (bytes.len() - header) / 100;
    let whole = (half - header) / record;
    let mut luke = login_expecting_mail(&server, "luke", "lightsaber", &mail[..whole]);
    luke.logout();
    assert!(
        std::fs::read_dir(tmp.data()).expect("list").any(|e| e
            .expect("entry")
            .file_name()
            .to_string_lossy()
            .starts_with("snapshot.damaged-")),
        "the damaged snapshot is kept"
    );
}

#[test]
fn a_journal_past_the_compaction_size_is_compacted_and_loses_nothing() {
    let tmp = TempDir::new("durable-compact");
    let info = [("RUST_LOG", "info")];
    let server = start(&tmp.data(), "0.5", &["--compact-at", "300"], &info);
    let mut yoda = server.login("yoda", "wise");
    let mut expected = Vec::new();
    for i in 0..40 {
        yoda.send(&format!("message luke number {i}\n"));
        yoda.expect_line(&offline("luke"));
        expected.push(format!("yoda: number {i}"));
    }
    yoda.send("block hans\n");
    yoda.expect_line("hans is blocked");
    // Compacted, more than once: the snapshot holds more than the first
    // 300 bytes of history, and the journal is not much larger than the
    // larger of the limit and the snapshot once the compaction the last
    // appends started (on its thread) is done.
    let sizes = || {
        let journal =
            std::fs::metadata(confab_testkit::newest_journal(&tmp.data())).map_or(0, |m| m.len());
        let snapshot = std::fs::metadata(tmp.data().join("snapshot")).map_or(0, |m| m.len());
        (journal, snapshot)
    };
    common::wait_until("the journal to be compacted", || {
        let (journal, snapshot) = sizes();
        snapshot > 300 && journal < snapshot.max(300) + 100
    });
    // Operators (and the hardening bench) find it in the journal's log.
    common::wait_until("the compaction's log line", || {
        server
            .stderr_lines()
            .iter()
            .any(|l| l.contains("confab::journal] compacted "))
    });
    kill_9(server);
    let server = start(&tmp.data(), "0.5", &["--compact-at", "300"], &[]);
    login_expecting_mail(&server, "luke", "lightsaber", &expected).logout();
    let mut hans = server.login("hans", "falcon");
    hans.send("message yoda hi\n");
    hans.expect_line(BLOCKED);
}

/// The domain and its journal as the server wires them, driven directly.
struct Node {
    chat: Chat,
    journal: Journal,
    clock: WallClock,
}

const OPTIONS: JournalOptions = JournalOptions {
    fsync: Fsync::Always,
    compact_at: 1 << 20,
};

impl Node {
    fn open(dir: &Path) -> Node {
        let clock = WallClock::new(Instant::now(), SystemTime::now());
        let mut chat = Chat::new(
            common::accounts(),
            ChatConfig::new(Duration::from_secs(3600), Duration::from_secs(3600)),
        );
        wait_unlocked(dir);
        let (journal, _) = Journal::open(dir, OPTIONS, OnDamage::Stop, |record| {
            assert_eq!(chat.apply_record(record, clock), Replayed::Applied);
        })
        .expect("open the data directory");
        chat.record_changes(clock);
        Node {
            chat,
            journal,
            clock,
        }
    }

    /// Runs `lines` on session 0 after logging in as yoda, and commits.
    fn as_yoda(&mut self, lines: &[&str]) {
        let now = self.clock.at;
        let sid = SessionId(0);
        self.chat
            .connect(sid, Ipv4Addr::LOCALHOST.into(), true, now);
        for line in ["yoda", "wise"].iter().chain(lines) {
            self.chat.line(sid, line, now);
        }
        self.chat.disconnect(sid, now);
        let outbox = self.chat.outbox();
        self.journal.stage(outbox.records());
        outbox.clear();
        self.journal.commit().expect("commit");
    }

    /// The live state, as text.
    fn state(&self) -> Vec<String> {
        let records: Vec<Record<'_>> = self.chat.snapshot(self.clock).collect();
        records.iter().map(|r| format!("{r:?}")).collect()
    }
}

#[test]
fn a_crash_at_any_step_of_a_compaction_leaves_the_state_intact() {
    for step in CompactStep::ALL {
        let tmp = TempDir::new("durable-steps");
        let mut node = Node::open(&tmp.data());
        node.as_yoda(&["message luke one", "block vader", "message leia two"]);
        node.journal
            .compact(node.chat.snapshot(node.clock))
            .expect("compact");
        node.as_yoda(&["message luke three", "unblock vader", "block hans"]);
        let state = node.state();
        assert_eq!(state.len(), 4, "{state:?}");
        node.journal
            .compact_until(node.chat.snapshot(node.clock), step)
            .expect("compaction up to the crash");
        drop(node);

        let mut node = Node::open(&tmp.data());
        assert_eq!(node.state(), state, "after a crash after {step:?}");
        node.as_yoda(&["message luke four"]);
        drop(node);
        let node = Node::open(&tmp.data());
        assert_eq!(node.state().len(), 5, "after a crash after {step:?}");
    }
}

#[test]
fn a_full_mailbox_refuses_and_stores_nothing() {
    let tmp = TempDir::new("durable-full");
    let server = TestServer::with(Options {
        mailbox_max: 2,
        storage: Storage::Durable {
            dir: tmp.data(),
            options: OPTIONS,
            on_damage: OnDamage::Stop,
        },
        ..Options::default()
    });
    let mut yoda = server.login("yoda");
    yoda.send("message luke one\nmessage luke two\nmessage luke three\n");
    yoda.expect_line(&offline("luke"));
    yoda.expect_line(&offline("luke"));
    yoda.expect_line("Error. luke's mailbox is full");
    let mut luke = server.login("luke");
    luke.expect_lines(&["yoda: one", "yoda: two"]);
    luke.barrier();
    yoda.expect_line("luke logged in");
    luke.logout();
    yoda.expect_line("luke logged out");
    yoda.send("message luke again\n");
    yoda.expect_line(&offline("luke"));
    drop((yoda, server));
    wait_unlocked(&tmp.data());

    // Nothing of the refused message was stored either.
    let server = TestServer::with(Options {
        storage: Storage::Durable {
            dir: tmp.data(),
            options: OPTIONS,
            on_damage: OnDamage::Stop,
        },
        ..Options::default()
    });
    let mut luke = server.login("luke");
    luke.expect_line("yoda: again");
    luke.barrier();
}

/// Runs `confab-server` to its end with these arguments after the
/// durations, in `cwd`; returns its exit status and stderr.
fn run_to_end(cwd: &Path, args: &[&str]) -> (std::process::ExitStatus, String) {
    let credentials = cwd.join("credentials.txt");
    std::fs::write(&credentials, "yoda wise\n").expect("write credentials");
    common::run_to_end(
        Command::new(env!("CARGO_BIN_EXE_confab-server"))
            .args(["0", "1", "30", "--credentials"])
            .arg(&credentials)
            .args(args)
            .current_dir(cwd),
    )
}

#[test]
fn a_second_server_on_the_same_directory_is_refused() {
    let tmp = TempDir::new("durable-lock");
    let first = start(&tmp.data(), "0.5", &[], &[]);
    let data = tmp.data().display().to_string();
    let (status, stderr) = run_to_end(&tmp.0, &["--data-dir", &data]);
    assert_eq!(status.code(), Some(1), "stderr: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains(&data) && stderr.contains("in use by another confab-server"),
        "{stderr:?}"
    );
    // And what to do instead.
    assert!(
        stderr.contains("another --data-dir") && stderr.contains("--ephemeral"),
        "{stderr:?}"
    );
    // The first one is unharmed.
    let mut yoda = first.login("yoda", "wise");
    yoda.barrier();
}

#[test]
fn a_data_directory_that_cannot_be_created_is_a_clear_error() {
    let tmp = TempDir::new("durable-nodir");
    let file = tmp.0.join("a-file");
    std::fs::write(&file, "").expect("write a file");
    let under_file = file.join("data").display().to_string();
    let (status, stderr) = run_to_end(&tmp.0, &["--data-dir", &under_file]);
    assert_eq!(status.code(), Some(1), "stderr: {stderr:?}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(
        stderr.contains(&under_file) && stderr.contains("cannot create"),
        "{stderr:?}"
    );
}

#[test]
fn the_default_data_directory_is_in_the_working_directory() {
    let tmp = TempDir::new("durable-default");
    let server = start(&tmp.0.join("confab-data"), "0.5", &[], &[]);
    // Without the option, a server started in the same place wants the
    // same directory, and finds it locked.
    let (status, stderr) = run_to_end(&tmp.0, &[]);
    assert_eq!(status.code(), Some(1), "{stderr:?}");
    assert!(
        stderr.contains("./confab-data: in use by another confab-server"),
        "{stderr:?}"
    );
    drop(server);
}

#[test]
fn help_says_what_fsync_never_risks() {
    let output = Command::new(env!("CARGO_BIN_EXE_confab-server"))
        .arg("--help")
        .stdin(Stdio::null())
        .output()
        .expect("run confab-server --help");
    assert!(output.status.success(), "{output:?}");
    let help = String::from_utf8_lossy(&output.stdout).replace(char::is_whitespace, " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    for needle in [
        "--data-dir <DIR>",
        "[default: ./confab-data]",
        "--ephemeral",
        "--fsync <WHEN>",
        "NOT a power loss or an OS crash",
        "--compact-at <BYTES>",
        "--mailbox-max <N>",
    ] {
        assert!(help.contains(needle), "{needle:?} not in {help}");
    }
}

#[test]
fn ephemeral_writes_nothing_and_forgets_on_restart() {
    let tmp = TempDir::new("durable-ephemeral");
    let options = || ProcessOptions {
        args: vec!["--ephemeral".into()],
        cwd: Some(tmp.0.clone()),
        ..ProcessOptions::default()
    };
    let server = ServerProcess::start(options());
    let mut yoda = server.login("yoda", "wise");
    yoda.send("message luke hi\n");
    yoda.expect_line(&offline("luke"));
    yoda.send("block vader\n");
    yoda.expect_line("vader is blocked");
    kill_9(server);
    let entries: Vec<_> = std::fs::read_dir(&tmp.0)
        .expect("list")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert!(entries.is_empty(), "something was written: {entries:?}");

    let server = ServerProcess::start(options());
    login_expecting_mail(&server, "luke", "lightsaber", &[]).logout();
    let mut vader = server.login("vader", "sithlord");
    vader.send("message yoda hi\n");
    vader.expect_line(&offline("yoda"));
}
