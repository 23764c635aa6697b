//! `cargo bench --bench hardening [FILTER]`: what the hardening limits
//! cost, measured against the real release `confab-server` binary, one
//! table line per figure:
//!
//! - `mailbox`: a login that delivers a full mailbox (1,000 offline
//!   messages whose `message` lines fill the default 1,024-byte line limit,
//!   from a sender with a 46-character name), from the password to the
//!   last line; median of 3 runs, on a server with a data directory and
//!   default options.
//! - `compaction`: a bystander's `whoelse` round trips while about 1 GiB
//!   of stored mail is compacted, inside the compaction's window (from the
//!   server's `compaction started` to its `compacted ...` log line) and
//!   outside it; the run with the median p99 of 3.
//! - `store-rss`: the server's peak resident memory (`VmHWM`) and the data
//!   directory's peak size while the default 128 MiB store of offline mail
//!   is filled (1,011-byte texts, the longest a default line carries, then
//!   64-byte texts) and compacted, and the `VmHWM` of a server restarted
//!   on that directory after a `kill -9` (which must then deliver every
//!   stored message once).
//! - `whoelse`: `whoelse` and `whoelsesince 1000000` pipelined by one of
//!   100 online users, with 10,000 accounts and with 110 (two servers,
//!   bursts taking turns): commands per second and the server's CPU time
//!   per command.
//! - `hashed`: 500 clients, each on a thread of its own, released at
//!   once to connect and log in with passwords hashed by
//!   `confab::passwords::hash` (Argon2id, m=19456 KiB t=2 p=1, what
//!   `confab-passwd` writes): logins per second from the first connect to
//!   the last welcome and the server's CPU time per login, beside the same
//!   accounts in clear on another server, and the ratio; median of 3 runs,
//!   hashed and clear taking turns. Throughout, a logged-in bystander
//!   sends a `message` to its logged-in partner and waits for its
//!   delivery, a round trip starting every millisecond (a bystander in a
//!   loop would take a core of two from the verification worker): p50,
//!   p99 and max within the storm (the target: p99 under 10 ms), the p99
//!   in each quarter of it, in the 0.5 s before it, and within the clear
//!   storm; the run with the median p99 of 3. The 502 hashes (the
//!   bystander pair's too) are made once on two threads and kept in
//!   `bench-cache/hashed-500.txt` under Cargo's target tmp directory,
//!   made again if it does not load, holds other names, has other
//!   parameters than a hash made now, or its first hash does not verify.
//!
//! Each row starts the server (`env!("CARGO_BIN_EXE_confab-server")`) as
//! a child process on 127.0.0.1 port 0 with generated accounts and its
//! data directory under Cargo's target directory, reads its port from the
//! `listening on` line on stderr, drives it with plain blocking
//! `std::net` clients on threads (the server is what is measured), and
//! kills and reaps it at the end. Every loop is bounded in count and every
//! read in time. `--bench` (passed by cargo) is ignored; a positional
//! FILTER runs only the rows whose name contains it. With
//! `HARDENING_DEBUG` set, `compaction` and `hashed` also print each run's
//! ten slowest round trips to stderr, and `compaction` the server's log
//! lines.

use std::ffi::OsString;
use std::fs;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::thread;
use std::time::{Duration, Instant};

use confab_testkit::procfs;

/// Runs per figure where a row repeats; the row shows the median.
const RUNS: usize = 3;
/// Longest wait for any one read or write of a client.
const IO_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the server may take to print `listening on` (a restart on a
/// full data directory replays it first).
const START_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the data directory's size and the log are polled.
const POLL: Duration = Duration::from_millis(10);

/// The first line after a successful login.
const WELCOME: &str = "Welcome to the greatest messaging application ever!";
/// The reply to a message that does not fit in the store.
const STORAGE_FULL: &str = "Error. Server storage is full";
/// The reply to a line that is not a command: ends a pipelined burst.
const INVALID_COMMAND: &str = "Error. Invalid command";

/// The line limit every row but `compaction` runs with (the default).
const MAX_LINE: usize = 1024;

/// `mailbox`: messages queued for luke.
const MAILBOX_MESSAGES: usize = 1000;
/// `mailbox`: the sender, 46 characters long.
const LONG_SENDER: &str = "a_sender_whose_name_is_forty_six_characters_xx";

/// `compaction`: the text of each stored message.
const BIG_TEXT: usize = 60_000;
/// `compaction`: `--max-line`.
const BIG_MAX_LINE: usize = 65536;
/// `compaction`: messages stored, about 1 GiB of journal records.
const BIG_MESSAGES: usize = 17_800;
/// `compaction`: `--compact-at`, so that the compaction starts once about
/// 84 % of the mail is stored.
const BIG_COMPACT_AT: u64 = 900_000_000;
/// `compaction`: the offline recipients the mail is spread over.
const BIG_RECIPIENTS: [&str; 4] = ["luke", "vader", "leia", "obiwan"];
/// `compaction`: runs (each stores and compacts 1 GiB, about 10 s).
const COMPACTION_RUNS: usize = 3;
/// `compaction`: how long one run may take from the first message to the
/// end of its compaction.
const COMPACTION_DEADLINE: Duration = Duration::from_secs(120);
/// `compaction`: how long the bystander goes on after the compaction.
const AFTERMATH: Duration = Duration::from_millis(500);
/// `compaction`: at most this many bystander round trips are recorded.
const MAX_ROUND_TRIPS: usize = 2_000_000;

/// `store-rss`: the default `--store-max`.
const STORE_MAX: u64 = 128 << 20;
/// `store-rss`: what the server counts per stored message besides its
/// line (`<sender>: <text>`).
const MESSAGE_OVERHEAD: u64 = 32;
/// `store-rss`: the recipients, alternately (one mailbox cannot hold the
/// 1.3 million 64-byte messages within `--mailbox-max 1000000`); names of
/// the same length so that every line carries the same text.
const STORE_RECIPIENTS: [&str; 2] = ["luke", "leia"];
/// `store-rss`: bytes of `message` lines written at once.
const STORE_BATCH: usize = 64 * 1024;
/// `store-rss`: how long filling the store and its compactions may take.
const STORE_DEADLINE: Duration = Duration::from_secs(60);
/// `store-rss`: compactions have ended when none has run for this long.
const SETTLED: Duration = Duration::from_millis(500);

/// `whoelse`: users online.
const ONLINE: usize = 100;
/// `whoelse`: commands pipelined per burst.
const WHOELSE_COMMANDS: usize = 5_000;
/// `whoelse`: bursts per command and number of accounts: the rate is
/// their median, the CPU time their sum (clock ticks are 10 ms: one
/// burst is only a few).
const WHOELSE_BURSTS: usize = 20;

/// `hashed`: accounts that log in at once in the storm.
const STORM_USERS: usize = 500;
/// `hashed`: the bystander, who messages [`PARTNER`] throughout.
const BYSTANDER: &str = "bystander";
/// `hashed`: the bystander's partner, who receives its messages.
const PARTNER: &str = "partner";
/// `hashed`: how long the bystander measures before the storm.
const IDLE: Duration = Duration::from_millis(500);
/// `hashed`: the bystander's pace: a round trip starts this long after
/// the previous one did, or at once if that one took longer. Not as fast
/// as it can: a bystander in a loop would take a whole core of the two
/// from the verification worker.
const PACE: Duration = Duration::from_millis(1);
/// `hashed`: how long one storm may take, and any one read of a storm
/// client (the last in the verification queue waits for all the others).
const STORM_DEADLINE: Duration = Duration::from_secs(90);
/// `hashed`: the bystander's round-trip target during the storm.
const STORM_P99_TARGET: Duration = Duration::from_millis(10);

/// One row: its name, and what measures it (the table cells of each of its
/// lines after the name).
type Row = (&'static str, fn() -> io::Result<Vec<String>>);

/// Every row, in the order they run.
const ROWS: [Row; 5] = [
    ("mailbox", mailbox),
    ("compaction", compaction),
    ("store-rss", store_rss),
    ("whoelse", whoelse),
    ("hashed", hashed),
];

/// Runs the rows FILTER selects (all without one), one after the other;
/// exits non-zero if any failed.
fn main() -> ExitCode {
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "confab hardening: the release confab-server as a child process on 127.0.0.1, \
         blocking std::net clients on threads, {cores} cores, nothing pinned"
    );
    println!("{:<10} {:>11}  {:<7} extra", "row", "figure", "unit");
    let started = Instant::now();
    let mut failed = false;
    for (name, row) in ROWS {
        if !filter.as_deref().is_none_or(|f| name.contains(f)) {
            continue;
        }
        match row() {
            Ok(lines) => {
                for line in lines {
                    println!("{name:<10} {line}");
                }
            }
            Err(e) => {
                failed = true;
                println!("{name:<10} {:>11}  {e}", "failed");
            }
        }
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

// ---------------------------------------------------------------- mailbox

/// Fills luke's mailbox with [`MAILBOX_MESSAGES`] messages of the longest
/// text a default line carries, then times luke's login from the password
/// to the last of them; three times on one server (with a data directory,
/// default options).
fn mailbox() -> io::Result<Vec<String>> {
    let dir = Scratch::new("mailbox")?;
    let credentials = write_credentials(dir.path(), &["luke", LONG_SENDER])?;
    let data = dir.path().join("data");
    let server = Server::start(&credentials, &with_data_dir(&data, &[]))?;
    let texts: Vec<String> = (0..MAILBOX_MESSAGES)
        .map(|i| {
            let head = format!("{i:04} ");
            let room = MAX_LINE - "message luke ".len() - head.len();
            format!("{head}{}", "x".repeat(room))
        })
        .collect();
    let burst: String = texts
        .iter()
        .map(|text| format!("message luke {text}\n"))
        .collect();
    let expected: Vec<String> = texts
        .iter()
        .map(|text| format!("{LONG_SENDER}: {text}"))
        .collect();
    let bytes: usize = expected.iter().map(|line| line.len() + 1).sum();
    let ack = offline_ack("luke");
    let mut times = Vec::new();
    for _ in 0..RUNS {
        let mut sender = Client::login(server.addr, LONG_SENDER)?;
        let writing = sender.write_in_background(burst.clone().into_bytes());
        for i in 0..MAILBOX_MESSAGES {
            sender
                .expect_line(&ack)
                .map_err(|e| context(e, &format!("acknowledgement {i}")))?;
        }
        joined(writing)?;
        // The mailbox is full: one more is refused.
        sender.send("message luke one too many\n")?;
        sender.expect_line("Error. luke's mailbox is full")?;
        sender.logout()?;

        let mut luke = Client::connect(server.addr)?;
        luke.expect_bytes("Username: ")?;
        luke.send("luke\n")?;
        luke.expect_bytes("Password: ")?;
        let start = Instant::now();
        luke.send(&format!("{}\n", password("luke")))?;
        luke.expect_line(WELCOME)?;
        for (i, want) in expected.iter().enumerate() {
            luke.expect_line(want)
                .map_err(|e| context(e, &format!("luke's offline message {i}")))?;
        }
        times.push(start.elapsed());
        luke.logout()?;
    }
    server.finish()?;
    let runs: Vec<String> = times.iter().map(|t| format!("{:.1}", ms(*t))).collect();
    times.sort();
    let median = times[times.len() / 2];
    Ok(vec![cells(
        format!("{:.1}", ms(median)),
        "ms",
        format!(
            "a full mailbox (the next message refused), {MAILBOX_MESSAGES} lines of {} B \
             ({:.2} MB) from the password to the last line: {:.1} MB/s; runs {} ms",
            expected[0].len() + 1,
            bytes as f64 / 1e6,
            bytes as f64 / 1e6 / median.as_secs_f64(),
            runs.join(" / ")
        ),
    )])
}

// ------------------------------------------------------------- compaction

/// One bystander round trip: when it started (since the run's start) and
/// how long it took.
#[derive(Clone, Copy)]
struct RoundTrip {
    start: Duration,
    took: Duration,
}

impl RoundTrip {
    /// Whether it overlaps the window from `from` to `to`.
    fn overlaps(&self, from: Duration, to: Duration) -> bool {
        self.start < to && self.start + self.took > from
    }
}

/// How long the round trips that `keep` selects took, sorted.
fn took_where(trips: &[RoundTrip], keep: impl Fn(&RoundTrip) -> bool) -> Vec<Duration> {
    let mut took: Vec<Duration> = trips.iter().filter(|t| keep(t)).map(|t| t.took).collect();
    took.sort();
    took
}

/// `p50 … p99 … max … (count)` of sorted round trips.
fn trip_stats(trips: &[Duration]) -> String {
    format!(
        "p50 {} p99 {} max {} ({})",
        short(percentile(trips, 0.5)),
        short(percentile(trips, 0.99)),
        short(percentile(trips, 1.0)),
        thousands(trips.len() as f64)
    )
}

/// With `HARDENING_DEBUG` set, prints the ten slowest of `trips` and the
/// window from `from` to `to` to stderr; whether it is set.
fn debug_slowest(trips: &[RoundTrip], from: Duration, to: Duration) -> bool {
    if std::env::var_os("HARDENING_DEBUG").is_none() {
        return false;
    }
    let mut slow: Vec<&RoundTrip> = trips.iter().collect();
    slow.sort_by_key(|t| std::cmp::Reverse(t.took));
    for t in slow.iter().take(10) {
        eprintln!(
            "slow round trip: {:?} at {:.3} s (window {:.3} - {:.3} s)",
            t.took,
            t.start.as_secs_f64(),
            from.as_secs_f64(),
            to.as_secs_f64()
        );
    }
    true
}

/// What one `compaction` run measured.
struct CompactionRun {
    /// Round trips that overlap the compaction's window, sorted.
    during: Vec<Duration>,
    /// When the slowest of `during` began, in seconds from the window's
    /// start (negative if it began before).
    worst_at: f64,
    /// Round trips that ended before it began (while the mail was being
    /// stored), sorted.
    before: Vec<Duration>,
    /// Round trips that began after it ended, sorted.
    after: Vec<Duration>,
    /// From `compaction started` to `compacted ...`.
    window: Duration,
    /// From the first message sent to the last acknowledgement.
    fill: Duration,
    /// Journal bytes the messages took (framing included).
    stored: u64,
    /// When the compaction started, after the first message was sent.
    started_after: Duration,
    /// The server's own account of the compaction, from its log lines.
    logged: String,
    /// The server's `VmHWM` at the end.
    peak: u64,
}

/// Stores about 1 GiB of 60 KB offline messages from yoda, online, while
/// the bystander hans, online too, asks `whoelse` in a loop; the journal
/// is compacted once most of the mail is stored. The row shows the run
/// with the median p99 during the compaction.
fn compaction() -> io::Result<Vec<String>> {
    let mut runs = Vec::new();
    for _ in 0..COMPACTION_RUNS {
        runs.push(compaction_run()?);
    }
    runs.sort_by_key(|run| percentile(&run.during, 0.99));
    let all: Vec<String> = runs
        .iter()
        .map(|run| short(percentile(&run.during, 0.99)))
        .collect();
    let run = &runs[runs.len() / 2];
    let mut outside = [run.before.as_slice(), &run.after].concat();
    outside.sort();
    Ok(vec![cells(
        format!("{:.1}", ms(percentile(&run.during, 0.99))),
        "ms p99",
        format!(
            "bystander `whoelse` round trips during the {:.1} s compaction: {} (slowest began \
             {:+.3} s into it, {}); outside it: {} [before, while storing: {}; after: {}]; \
             {:.2} GB stored in {:.1} s, compaction from {:.1} s in; server: {}; VmHWM {:.2} \
             GiB; p99 during of {COMPACTION_RUNS} runs: {}",
            run.window.as_secs_f64(),
            trip_stats(&run.during),
            run.worst_at,
            if run.started_after.as_secs_f64() + run.worst_at < run.fill.as_secs_f64() {
                "still storing"
            } else {
                "after storing"
            },
            trip_stats(&outside),
            trip_stats(&run.before),
            trip_stats(&run.after),
            run.stored as f64 / 1e9,
            run.fill.as_secs_f64(),
            run.started_after.as_secs_f64(),
            run.logged,
            run.peak as f64 / f64::from(1 << 30),
            all.join(" / "),
        ),
    )])
}

/// The server's `compaction took ...` and `compacted ...` lines, shortened:
/// the poll loop's share of the encoding, and the sizes.
fn compaction_logged(lines: &[&str]) -> String {
    let mut parts = Vec::new();
    for line in lines {
        let Some((_, message)) = line.split_once("] ") else {
            continue;
        };
        if let Some(rest) = message.strip_prefix("compaction took ") {
            let times = rest
                .split_once(" of the poll loop for encoding, ")
                .and_then(|(encoding, all)| {
                    Some((
                        debug_duration(encoding)?,
                        debug_duration(all.strip_suffix(" in all")?)?,
                    ))
                });
            match times {
                Some((encoding, all)) => parts.push(format!(
                    "{} of poll loop encoding in {} in all",
                    short(encoding),
                    short(all)
                )),
                None => parts.push(message.to_string()),
            }
        } else if message.starts_with("compacted ") {
            let sizes = message.rsplit_once(": a ").and_then(|(_, rest)| {
                let (journal, rest) = rest.split_once("-byte journal into a ")?;
                let (snapshot, _) = rest.split_once("-byte snapshot in ")?;
                Some((journal.parse::<u64>().ok()?, snapshot.parse::<u64>().ok()?))
            });
            match sizes {
                Some((journal, snapshot)) => parts.push(format!(
                    "{:.0} MB journal -> {:.0} MB snapshot",
                    journal as f64 / 1e6,
                    snapshot as f64 / 1e6
                )),
                None => parts.push(message.to_string()),
            }
        }
    }
    parts.join(", ")
}

/// A duration as `{:?}` prints it (`1.5s`, `237.05ms`, `844.07µs`).
fn debug_duration(text: &str) -> Option<Duration> {
    let split = text.find(|c: char| !c.is_ascii_digit() && c != '.')?;
    let (number, unit) = text.split_at(split);
    let scale = match unit {
        "s" => 1.0,
        "ms" => 1e-3,
        "µs" => 1e-6,
        "ns" => 1e-9,
        _ => return None,
    };
    Duration::try_from_secs_f64(number.parse::<f64>().ok()? * scale).ok()
}

/// One `compaction` run on a fresh server and data directory.
fn compaction_run() -> io::Result<CompactionRun> {
    let dir = Scratch::new("compaction")?;
    let mut names = vec!["yoda", "hans"];
    names.extend(BIG_RECIPIENTS);
    let credentials = write_credentials(dir.path(), &names)?;
    let data = dir.path().join("data");
    let compact_at = BIG_COMPACT_AT.to_string();
    let max_line = BIG_MAX_LINE.to_string();
    let mut server = Server::start(
        &credentials,
        &with_data_dir(
            &data,
            &[
                "--store-max",
                "2147483648",
                "--max-line",
                &max_line,
                "--mailbox-max",
                "1000000",
                "--fsync",
                "never",
                "--compact-at",
                &compact_at,
            ],
        ),
    )?;
    let after_start = server.log_len();
    let mut hans = Client::login(server.addr, "hans")?;
    let mut yoda = Client::login(server.addr, "yoda")?;
    hans.expect_line("yoda logged in")?;

    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let bystander = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || -> io::Result<Vec<RoundTrip>> {
            let mut trips = Vec::new();
            let deadline = base + COMPACTION_DEADLINE + AFTERMATH;
            while !stop.load(Ordering::Relaxed)
                && trips.len() < MAX_ROUND_TRIPS
                && Instant::now() < deadline
            {
                let start = Instant::now();
                hans.send("whoelse\n")?;
                hans.expect_line("yoda")?;
                trips.push(RoundTrip {
                    start: start - base,
                    took: start.elapsed(),
                });
            }
            Ok(trips)
        })
    };

    let mut writer = yoda.writer()?;
    let writing = thread::spawn(move || -> io::Result<u64> {
        let filler = "x".repeat(BIG_TEXT);
        let mut line = Vec::with_capacity(BIG_TEXT + 64);
        let mut stored = 0;
        for i in 0..BIG_MESSAGES {
            let recipient = BIG_RECIPIENTS[i % BIG_RECIPIENTS.len()];
            let head = format!("{i:06} ");
            line.clear();
            line.extend_from_slice(format!("message {recipient} {head}").as_bytes());
            line.extend_from_slice(&filler.as_bytes()[head.len()..]);
            line.push(b'\n');
            writer.write_all(&line)?;
            // A journal record: framing and lengths (17 bytes), the two
            // names and the text.
            stored += (17 + recipient.len() + "yoda".len() + BIG_TEXT) as u64;
        }
        Ok(stored)
    });
    let acks: Vec<String> = BIG_RECIPIENTS.iter().map(|r| offline_ack(r)).collect();
    let filled = (|| {
        for i in 0..BIG_MESSAGES {
            yoda.expect_line(&acks[i % acks.len()])
                .map_err(|e| context(e, &format!("acknowledgement {i}")))?;
        }
        Ok::<_, io::Error>(base.elapsed())
    })();
    let stored = joined(writing);
    let window = filled.and_then(|fill| {
        let stored = stored?;
        let deadline = base + COMPACTION_DEADLINE;
        let (at, started) = server
            .wait_log(
                after_start,
                |l| l.ends_with("] compaction started"),
                deadline,
            )
            .map_err(|e| context(e, "waiting for `compaction started`"))?;
        let (_, ended) = server
            .wait_log(at, |l| l.contains("confab::journal] compacted "), deadline)
            .map_err(|e| context(e, "waiting for `compacted`"))?;
        Ok((fill, stored, started, ended))
    });
    if window.is_ok() {
        thread::sleep(AFTERMATH);
    }
    stop.store(true, Ordering::Relaxed);
    let trips = joined(bystander);
    let (fill, stored, started, ended) = window?;
    let trips = trips?;
    let peak = procfs::memory(server.pid())?.peak;
    let logged = {
        let lines = server.lines();
        let lines: Vec<&str> = lines
            .iter()
            .skip(after_start)
            .map(|(_, line)| line.as_str())
            .collect();
        compaction_logged(&lines)
    };
    let server_lines = server.lines().clone();
    server.finish()?;
    let (from, to) = (started - base, ended - base);
    let worst_at = trips
        .iter()
        .filter(|t| t.overlaps(from, to))
        .max_by_key(|t| t.took)
        .map_or(0.0, |t| t.start.as_secs_f64() - from.as_secs_f64());
    if debug_slowest(&trips, from, to) {
        for (at, line) in server_lines.iter() {
            eprintln!(
                "{:.3} s: {line}",
                at.saturating_duration_since(base).as_secs_f64()
            );
        }
    }
    Ok(CompactionRun {
        worst_at,
        during: took_where(&trips, |t| t.overlaps(from, to)),
        before: took_where(&trips, |t| t.start + t.took <= from),
        after: took_where(&trips, |t| t.start >= to),
        window: to.saturating_sub(from),
        fill,
        stored,
        started_after: from,
        logged,
        peak,
    })
}

// -------------------------------------------------------------- store-rss

/// Fills the default store with 1 KiB texts, then on a fresh server with
/// 64-byte texts; one line each.
fn store_rss() -> io::Result<Vec<String>> {
    let longest = MAX_LINE - "message luke ".len();
    Ok(vec![store_rss_run(longest)?, store_rss_run(64)?])
}

/// Sends yoda's `message`s with `text_len`-byte texts to offline users
/// until the server says its storage is full, sampling the data
/// directory's size, waits for the compactions to end, reads the peak
/// `VmHWM`, then kills the server with SIGKILL and restarts it on the
/// same directory.
fn store_rss_run(text_len: usize) -> io::Result<String> {
    let dir = Scratch::new("store-rss")?;
    let mut names = vec!["yoda"];
    names.extend(STORE_RECIPIENTS);
    let credentials = write_credentials(dir.path(), &names)?;
    let data = dir.path().join("data");
    let args = with_data_dir(
        &data,
        &["--compact-at", "33554432", "--mailbox-max", "1000000"],
    );
    let mut server = Server::start(&credentials, &args)?;
    let after_start = server.log_len();
    let hwm_start = procfs::memory(server.pid())?.peak;

    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let sampling = Arc::clone(&sampling);
        let data = data.clone();
        thread::spawn(move || {
            let mut peak = 0;
            let deadline = Instant::now() + STORE_DEADLINE + SETTLED;
            while sampling.load(Ordering::Relaxed) && Instant::now() < deadline {
                peak = peak.max(dir_size(&data));
                thread::sleep(POLL);
            }
            peak.max(dir_size(&data))
        })
    };

    let mut yoda = Client::login(server.addr, "yoda")?;
    let cost = ("yoda: ".len() + text_len) as u64 + MESSAGE_OVERHEAD;
    let bound = 2 * usize::try_from(STORE_MAX / cost).unwrap_or(usize::MAX) + 1000;
    let stop = Arc::new(AtomicBool::new(false));
    let writing = {
        let mut writer = yoda.writer()?;
        let stop = Arc::clone(&stop);
        let text = "y".repeat(text_len);
        thread::spawn(move || -> io::Result<()> {
            let mut batch = Vec::with_capacity(STORE_BATCH + MAX_LINE + 1);
            let mut i = 0;
            while i < bound && !stop.load(Ordering::Relaxed) {
                batch.clear();
                while i < bound && batch.len() < STORE_BATCH {
                    let recipient = STORE_RECIPIENTS[i % STORE_RECIPIENTS.len()];
                    batch.extend_from_slice(format!("message {recipient} {text}\n").as_bytes());
                    i += 1;
                }
                writer.write_all(&batch)?;
            }
            // Its reply marks the end of the burst.
            writer.write_all(b"end\n")
        })
    };
    let started = Instant::now();
    let acks: Vec<String> = STORE_RECIPIENTS.iter().map(|r| offline_ack(r)).collect();
    let filled = (|| {
        let deadline = started + STORE_DEADLINE;
        let (mut stored, mut refused) = (0u64, 0u64);
        for _ in 0..=bound {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the store was not full after {STORE_DEADLINE:?}"),
                ));
            }
            let line = yoda.read_line()?;
            if acks.iter().any(|ack| ack == line) {
                stored += 1;
            } else if line == STORAGE_FULL {
                refused += 1;
                stop.store(true, Ordering::Relaxed);
            } else if line == INVALID_COMMAND {
                return Ok((stored, refused, started.elapsed()));
            } else {
                return Err(io::Error::other(format!(
                    "after {stored} messages stored: unexpected `{}`",
                    clip(line)
                )));
            }
        }
        Err(io::Error::other("more replies than messages sent"))
    })();
    stop.store(true, Ordering::Relaxed);
    let written = joined(writing);
    let settled = filled.and_then(|filled| {
        written?;
        server.wait_compactions(after_start, started + STORE_DEADLINE)?;
        Ok(filled)
    });
    sampling.store(false, Ordering::Relaxed);
    let dir_peak = sampler
        .join()
        .map_err(|_| io::Error::other("the sampling thread panicked"))?;
    let (stored, refused, fill) = settled?;
    if refused == 0 {
        return Err(io::Error::other(format!(
            "{stored} messages stored and never `{STORAGE_FULL}`"
        )));
    }
    let compactions = server
        .lines()
        .iter()
        .skip(after_start)
        .filter(|(_, line)| line.ends_with("] compaction started"))
        .count();
    let hwm_peak = procfs::memory(server.pid())?.peak;
    let dir_settled = dir_size(&data);
    server.kill()?;
    let restarted = Server::start(&credentials, &args)?;
    let restart_took = restarted.up_after;
    let hwm_restart = procfs::memory(restarted.pid())?.peak;
    // Everything stored must come back, once: the first recipient has the
    // odd messages (counting from one), the second the even ones.
    let stored_count = usize::try_from(stored).map_err(io::Error::other)?;
    let mut replied_after = Vec::new();
    for (k, recipient) in STORE_RECIPIENTS.iter().enumerate() {
        let expected = (stored_count + STORE_RECIPIENTS.len() - 1 - k) / STORE_RECIPIENTS.len();
        replied_after.push(read_mailbox(restarted.addr, recipient, expected)?);
    }
    let loaded = restarted
        .lines()
        .iter()
        .find_map(|(_, line)| {
            let (_, tail) = line.split_once(": loaded ")?;
            tail.strip_suffix(" records").map(str::to_string)
        })
        .unwrap_or_else(|| "?".into());
    restarted.finish()?;
    let growth = hwm_peak.saturating_sub(hwm_start) as f64 / STORE_MAX as f64;
    Ok(cells(
        format!("{:.1}", mib(hwm_peak)),
        "MiB",
        format!(
            "{text_len}-byte texts: {} stored ({:.1} MiB counted) in {:.1} s, {} refused; \
             VmHWM {:.1} -> {:.1} MiB, growth / 128 MiB = {growth:.2}; {compactions} \
             compactions; data dir peak {:.1} MiB (settled {:.1}); after kill -9, restart: \
             VmHWM {:.1} MiB at `listening on` ({:.2} s, {loaded} records loaded), every \
             message delivered once at login (a command sent with the password answered after \
             {} lines)",
            thousands(stored as f64),
            mib(stored * cost),
            fill.as_secs_f64(),
            thousands(refused as f64),
            mib(hwm_start),
            mib(hwm_peak),
            mib(dir_peak),
            mib(dir_settled),
            mib(hwm_restart),
            restart_took.as_secs_f64(),
            replied_after
                .iter()
                .map(|n| thousands(*n as f64))
                .collect::<Vec<_>>()
                .join(" / "),
        ),
    ))
}

/// Logs `user` in with a command (`end`) right behind the password, and
/// reads the offline mail (lines from yoda) until `expected` lines and
/// the command's reply have come; then a second `end` and its reply, to
/// catch mail beyond `expected`. Returns after how many lines of mail
/// the first reply came; an error unless exactly `expected` came.
fn read_mailbox(addr: SocketAddr, user: &str, expected: usize) -> io::Result<usize> {
    let mut client = Client::connect(addr)?;
    client.expect_bytes("Username: ")?;
    client.send(&format!("{user}\n"))?;
    client.expect_bytes("Password: ")?;
    client.send(&format!("{}\nend\n", password(user)))?;
    client.expect_line(WELCOME)?;
    let (mut mail, mut replied_after, mut second_sent) = (0, None, false);
    for _ in 0..expected + 3 {
        if replied_after.is_some() && mail >= expected && !second_sent {
            client.send("end\n")?;
            second_sent = true;
        }
        let line = client.read_line().map_err(|e| {
            context(
                e,
                &format!("{user}'s mail after {mail} of {expected} lines"),
            )
        })?;
        if line.starts_with("yoda: ") {
            mail += 1;
        } else if line != INVALID_COMMAND {
            return Err(io::Error::other(format!(
                "{user}'s mail after {mail} lines: unexpected `{}`",
                clip(line)
            )));
        } else if let Some(after) = replied_after {
            if mail != expected {
                return Err(io::Error::other(format!(
                    "{user} got {mail} messages after the restart, not {expected}"
                )));
            }
            client.logout()?;
            return Ok(after);
        } else {
            replied_after = Some(mail);
        }
    }
    Err(io::Error::other(format!(
        "{user} got more than {expected} messages after the restart"
    )))
}

// ---------------------------------------------------------------- whoelse

/// What one command cost with one number of accounts.
#[derive(Default)]
struct Cost {
    /// Commands per second of each burst.
    rates: Vec<f64>,
    /// The server's CPU clock ticks over all bursts.
    ticks: u64,
}

impl Cost {
    /// Commands per second, the median burst's.
    fn rate(&self) -> f64 {
        let mut rates = self.rates.clone();
        rates.sort_by(f64::total_cmp);
        rates.get(rates.len() / 2).copied().unwrap_or(f64::NAN)
    }

    /// The server's CPU time per command over all bursts, in µs.
    fn cpu_us(&self, ticks_per_second: u64) -> f64 {
        let commands = (self.rates.len() * WHOELSE_COMMANDS) as f64;
        self.ticks as f64 / ticks_per_second as f64 * 1e6 / commands
    }
}

/// `whoelse` and `whoelsesince 1000000` with 10,000 accounts and with
/// 110, 100 online in both: two servers at once, their bursts taking
/// turns so that the machine's changing load falls on both alike.
fn whoelse() -> io::Result<Vec<String>> {
    let commands = ["whoelse", "whoelsesince 1000000"];
    let ticks_per_second = procfs::ticks_per_second()?;
    let mut many = Crowd::start(10_000)?;
    let mut few = Crowd::start(110)?;
    let mut lines = Vec::new();
    for command in commands {
        let burst = format!("{command}\n").repeat(WHOELSE_COMMANDS).into_bytes();
        let (mut on_many, mut on_few) = (Cost::default(), Cost::default());
        for _ in 0..WHOELSE_BURSTS {
            many.burst(command, &burst, &mut on_many)?;
            few.burst(command, &burst, &mut on_few)?;
        }
        let (many_us, few_us) = (
            on_many.cpu_us(ticks_per_second),
            on_few.cpu_us(ticks_per_second),
        );
        lines.push(cells(
            thousands(on_many.rate()),
            "cmd/s",
            format!(
                "`{command}`, 10,000 accounts: {many_us:.1} µs CPU/cmd ({} ticks); 110 \
                 accounts: {} cmd/s, {few_us:.1} µs CPU/cmd ({} ticks); 10,000 / 110: rate \
                 x{:.2}, CPU x{:.2}; {ONLINE} online, median of {WHOELSE_BURSTS} bursts of {} \
                 pipelined, 99 names each",
                on_many.ticks,
                thousands(on_few.rate()),
                on_few.ticks,
                on_many.rate() / on_few.rate(),
                many_us / few_us,
                thousands(WHOELSE_COMMANDS as f64),
            ),
        ));
    }
    many.server.finish()?;
    few.server.finish()?;
    Ok(lines)
}

/// An ephemeral server with generated accounts, [`ONLINE`] of them
/// logged in (spread over the sorted names); the first asks.
struct Crowd {
    server: Server,
    /// Every online user's connection; the first one asks.
    clients: Vec<Client>,
    /// The first and the last name of every reply.
    first: String,
    last: String,
    /// Keeps the credentials file until the end.
    _dir: Scratch,
}

impl Crowd {
    /// Starts the server with `accounts` accounts and logs the crowd in;
    /// the first one has read every `logged in` of the others.
    fn start(accounts: usize) -> io::Result<Crowd> {
        let dir = Scratch::new(&format!("whoelse-{accounts}"))?;
        let names: Vec<String> = (0..accounts).map(|i| format!("user{i:05}")).collect();
        let refs: Vec<&str> = names.iter().map(String::as_str).collect();
        let credentials = write_credentials(dir.path(), &refs)?;
        let server = Server::start(&credentials, &["--ephemeral".into()])?;
        let step = (accounts / ONLINE).max(1);
        let online: Vec<&str> = (0..ONLINE).map(|i| refs[i * step]).collect();
        let mut clients = Vec::new();
        for name in &online {
            clients.push(Client::login(server.addr, name)?);
        }
        for name in &online[1..] {
            clients[0].expect_line(&format!("{name} logged in"))?;
        }
        Ok(Crowd {
            server,
            clients,
            first: online[1].to_string(),
            last: online[ONLINE - 1].to_string(),
            _dir: dir,
        })
    }

    /// Sends the [`WHOELSE_COMMANDS`] `command`s of `burst` at once and
    /// reads every reply, adding its rate and the server's CPU ticks to
    /// `cost`.
    fn burst(&mut self, command: &str, burst: &[u8], cost: &mut Cost) -> io::Result<()> {
        let pid = self.server.pid();
        let me = &mut self.clients[0];
        let before = procfs::cpu_ticks(pid)?;
        let start = Instant::now();
        let writing = me.write_in_background(burst.to_vec());
        for c in 0..WHOELSE_COMMANDS {
            for n in 0..ONLINE - 1 {
                let line = me.read_line()?;
                let want = match n {
                    0 => &self.first,
                    n if n == ONLINE - 2 => &self.last,
                    _ => continue,
                };
                if line != want {
                    return Err(io::Error::other(format!(
                        "reply {c} to `{command}`, name {n}: expected `{want}`, got `{}`",
                        clip(line)
                    )));
                }
            }
        }
        let took = start.elapsed();
        cost.ticks += procfs::cpu_ticks(pid)? - before;
        cost.rates
            .push(WHOELSE_COMMANDS as f64 / took.as_secs_f64());
        joined(writing)
    }
}

// ----------------------------------------------------------------- hashed

/// What one storm measured.
struct Storm {
    /// From the first connect to the last welcome.
    window: Duration,
    /// The server's CPU time (every thread) from opening the gate to the
    /// last welcome.
    cpu: Duration,
    /// The bystander's round trips that ended before the storm, sorted.
    idle: Vec<Duration>,
    /// Its round trips that overlap the storm, sorted.
    during: Vec<Duration>,
    /// The p99 of those that overlap each quarter of the storm.
    quarters: Vec<Duration>,
}

impl Storm {
    /// Logins per second, first connect to last welcome.
    fn rate(&self) -> f64 {
        STORM_USERS as f64 / self.window.as_secs_f64()
    }

    /// The bystander's p99 during the storm.
    fn p99(&self) -> Duration {
        percentile(&self.during, 0.99)
    }

    /// The server's CPU time per login.
    fn cpu_per_login(&self) -> Duration {
        self.cpu / STORM_USERS as u32
    }
}

/// [`STORM_USERS`] logins at once with hashed passwords and, on another
/// server, with the same accounts in clear, taking turns [`RUNS`] times;
/// a bystander messages its partner throughout. One line for the logins
/// per second, one for the bystander's round trips.
fn hashed() -> io::Result<Vec<String>> {
    confab::fdlimit::raise_to_hard_limit()?;
    let users: Vec<String> = (0..STORM_USERS).map(|i| format!("user{i:03}")).collect();
    let mut names = vec![BYSTANDER.to_string(), PARTNER.to_string()];
    names.extend(users.iter().cloned());
    let hashes = hashed_credentials(&names)?;
    let dir = Scratch::new("hashed")?;
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let clear = write_credentials(dir.path(), &refs)?;
    let (mut on_hashed, mut on_clear): (Vec<Storm>, Vec<Storm>) = (Vec::new(), Vec::new());
    for _ in 0..RUNS {
        on_hashed.push(storm(&hashes.path, &users)?);
        on_clear.push(storm(&clear, &users)?);
    }
    let list = |runs: &[Storm], show: &dyn Fn(&Storm) -> String| {
        runs.iter().map(show).collect::<Vec<_>>().join(" / ")
    };
    let hashed_list = list(&on_hashed, &|run| format!("{:.1}", run.rate()));
    let clear_list = list(&on_clear, &|run| thousands(run.rate()));
    let p99s = list(&on_hashed, &|run| short(run.p99()));
    // Line one from the runs of median rate, line two from those of
    // median p99.
    let (hashed_rate, clear_rate) = (
        median_run(&on_hashed, |run| run.window),
        median_run(&on_clear, |run| run.window),
    );
    let (hashed_run, clear_run) = (
        median_run(&on_hashed, Storm::p99),
        median_run(&on_clear, Storm::p99),
    );
    let p99 = hashed_run.p99();
    Ok(vec![
        cells(
            format!("{:.1}", hashed_rate.rate()),
            "logins/s",
            format!(
                "{STORM_USERS} clients connecting at once, passwords hashed {} ({}), first \
                 connect to last welcome: {:.1} s, server CPU {} a login; the same accounts in \
                 clear: {} logins/s ({}, CPU {} a login), clear / hashed x{:.0}; median run of \
                 {RUNS}, runs {hashed_list} hashed, {clear_list} clear",
                hashes.params,
                hashes.made.map_or_else(
                    || "cached".to_string(),
                    |took| format!("made now in {:.1} s on 2 threads", took.as_secs_f64())
                ),
                hashed_rate.window.as_secs_f64(),
                short(hashed_rate.cpu_per_login()),
                thousands(clear_rate.rate()),
                short(clear_rate.window),
                short(clear_rate.cpu_per_login()),
                clear_rate.rate() / hashed_rate.rate(),
            ),
        ),
        cells(
            format!("{:.2}", ms(p99)),
            "ms p99",
            format!(
                "bystander `message` round trips to its online partner during the hashed storm: \
                 {} (target p99 < {}: {}), p99 by quarter of the storm {}; idle before it: {}; \
                 during the clear storm: {}; median-p99 run of {RUNS}, p99s {p99s}",
                trip_stats(&hashed_run.during),
                short(STORM_P99_TARGET),
                if p99 < STORM_P99_TARGET {
                    "held"
                } else {
                    "MISSED"
                },
                hashed_run
                    .quarters
                    .iter()
                    .map(|p| short(*p))
                    .collect::<Vec<_>>()
                    .join(" / "),
                trip_stats(&hashed_run.idle),
                trip_stats(&clear_run.during),
            ),
        ),
    ])
}

/// The run in the middle when `runs` (not empty) are ordered by `key`.
fn median_run(runs: &[Storm], key: impl Fn(&Storm) -> Duration) -> &Storm {
    let mut sorted: Vec<&Storm> = runs.iter().collect();
    sorted.sort_by_key(|run| key(run));
    sorted[sorted.len() / 2]
}

/// The cached credentials file of the `hashed` row.
struct Hashes {
    /// The file.
    path: PathBuf,
    /// The Argon2 parameters of its hashes (`$argon2id$v=19$m=…,t=…,p=…`).
    params: String,
    /// How long making it took; `None` if it was cached.
    made: Option<Duration>,
}

/// The credentials file of `names` with their [`password`]s hashed by
/// `confab::passwords::hash`, kept under Cargo's target directory for the
/// next run: made anew, on two threads, unless it loads, holds exactly
/// `names` in order, every hash has the parameters of a hash made now,
/// and the first one verifies.
fn hashed_credentials(names: &[String]) -> io::Result<Hashes> {
    let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join("bench-cache")
        .join(format!("hashed-{STORM_USERS}.txt"));
    let fresh = confab::passwords::hash("parameters").map_err(io::Error::other)?;
    let params = phc_params(&fresh)
        .ok_or_else(|| io::Error::other(format!("not a PHC string: {fresh}")))?
        .to_string();
    let cached = confab::credentials::load(&path).is_ok_and(|accounts| {
        accounts.len() == names.len()
            && accounts.iter().zip(names).all(|(account, name)| {
                account.username == *name && phc_params(&account.password) == Some(&params)
            })
            && accounts.first().is_some_and(|account| {
                confab::passwords::verify_hash(&account.password, &password(&account.username))
            })
    });
    if cached {
        return Ok(Hashes {
            path,
            params,
            made: None,
        });
    }
    let started = Instant::now();
    let half = names.len().div_ceil(2).max(1);
    let lines: Vec<Vec<String>> = thread::scope(|scope| {
        let halves: Vec<_> = names
            .chunks(half)
            .map(|chunk| {
                scope.spawn(move || {
                    chunk
                        .iter()
                        .map(|name| {
                            confab::passwords::hash(&password(name))
                                .map(|hash| format!("{name} {hash}\n"))
                        })
                        .collect::<Result<Vec<String>, String>>()
                })
            })
            .collect();
        halves
            .into_iter()
            .map(|half| {
                half.join()
                    .unwrap_or_else(|_| Err("a hashing thread panicked".into()))
            })
            .collect::<Result<_, String>>()
    })
    .map_err(io::Error::other)?;
    if let Some(parent) = path.parent() {
        fs::create_dir_all(parent)?;
    }
    // Written whole, then renamed: an interrupted run leaves no half file.
    let partial = path.with_extension("partial");
    fs::write(&partial, lines.concat().concat())?;
    fs::rename(&partial, &path)?;
    Ok(Hashes {
        path,
        params,
        made: Some(started.elapsed()),
    })
}

/// The algorithm, version and parameters of a PHC string: what comes
/// before its salt.
fn phc_params(stored: &str) -> Option<&str> {
    stored.rsplitn(3, '$').nth(2)
}

/// Starts a server on `credentials`, logs the bystander and its partner
/// in, lets the bystander message its partner and wait for each delivery
/// for [`IDLE`], then logs every one of `users` in at once (each on a
/// thread of its own, all released together), the bystander going on
/// until the last welcome.
fn storm(credentials: &Path, users: &[String]) -> io::Result<Storm> {
    let server = Server::start(credentials, &["--ephemeral".into()])?;
    let mut bystander = Client::login(server.addr, BYSTANDER)?;
    let mut partner = Client::login(server.addr, PARTNER)?;
    bystander.expect_line(&format!("{PARTNER} logged in"))?;

    // Every login thread waits for the write lock to go; if this returns
    // early, the lock goes and they fail against the killed server.
    let gate = Arc::new(RwLock::new(()));
    let closed = gate.write().unwrap_or_else(PoisonError::into_inner);
    let mut logins = Vec::with_capacity(users.len());
    for user in users {
        let (gate, user, addr) = (Arc::clone(&gate), user.clone(), server.addr);
        logins.push(thread::Builder::new().spawn(
            move || -> io::Result<(Client, Instant, Instant)> {
                drop(gate.read().unwrap_or_else(PoisonError::into_inner));
                let connected = Instant::now();
                let mut client = Client::connect(addr)?;
                // The last of the queue waits for every other verification.
                client
                    .reader
                    .get_ref()
                    .set_read_timeout(Some(STORM_DEADLINE))?;
                client.log_in(&user)?;
                Ok((client, connected, Instant::now()))
            },
        )?);
    }

    let base = Instant::now();
    let stop = Arc::new(AtomicBool::new(false));
    let measuring = {
        let stop = Arc::clone(&stop);
        thread::spawn(move || -> io::Result<Vec<RoundTrip>> {
            let deadline = base + IDLE + STORM_DEADLINE;
            let mut trips: Vec<RoundTrip> = Vec::new();
            for seq in 0..MAX_ROUND_TRIPS {
                if stop.load(Ordering::Relaxed) || Instant::now() >= deadline {
                    break;
                }
                let line = format!("message {PARTNER} {seq}\n");
                let want = format!("{BYSTANDER}: {seq}");
                if let Some(last) = trips.last() {
                    let next = base + last.start + PACE;
                    thread::sleep(next.saturating_duration_since(Instant::now()));
                }
                let start = Instant::now();
                bystander.send(&line)?;
                partner.expect_line_after_logins(&want, STORM_USERS)?;
                trips.push(RoundTrip {
                    start: start - base,
                    took: start.elapsed(),
                });
            }
            Ok(trips)
        })
    };
    thread::sleep(IDLE);
    let cpu_before = procfs::cpu_time(server.pid())?;
    drop(closed);
    let logged: io::Result<Vec<_>> = logins.into_iter().map(joined).collect();
    let cpu = procfs::cpu_time(server.pid())?.saturating_sub(cpu_before);
    stop.store(true, Ordering::Relaxed);
    let trips = joined(measuring)?;
    let logged = logged?;
    server.finish()?;
    let from = logged
        .iter()
        .map(|(_, connected, _)| connected.saturating_duration_since(base))
        .min()
        .unwrap_or_default();
    let to = logged
        .iter()
        .map(|(_, _, welcomed)| welcomed.saturating_duration_since(base))
        .max()
        .unwrap_or_default();
    debug_slowest(&trips, from, to);
    let quarter = to.saturating_sub(from) / 4;
    let quarters = (0..4)
        .map(|q| {
            let start = from + quarter * q;
            let took = took_where(&trips, |t| t.overlaps(start, start + quarter));
            percentile(&took, 0.99)
        })
        .collect();
    Ok(Storm {
        window: to.saturating_sub(from),
        cpu,
        idle: took_where(&trips, |t| t.start + t.took <= from),
        during: took_where(&trips, |t| t.overlaps(from, to)),
        quarters,
    })
}

// ----------------------------------------------------------------- server

/// The `confab-server` binary as a child process, with `RUST_LOG=info`;
/// its stderr is kept, line by line, with when each line was read.
struct Server {
    child: Child,
    addr: SocketAddr,
    /// How long it took from the spawn to `listening on`.
    up_after: Duration,
    log: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Server {
    /// Starts the server on 127.0.0.1 port 0 with a 60 s ban, a one-hour
    /// timeout, the `credentials` file and `args`, and waits for its
    /// `listening on` line.
    fn start(credentials: &Path, args: &[OsString]) -> io::Result<Server> {
        let spawned = Instant::now();
        let mut child = Command::new(env!("CARGO_BIN_EXE_confab-server"))
            .args(["0", "60", "3600", "--credentials"])
            .arg(credentials)
            .args(args)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take();
        let log = Arc::new(Mutex::new(Vec::new()));
        let (tx, rx) = mpsc::channel();
        let sink = Arc::clone(&log);
        // Keeps every line, and sends the address once; drains stderr so
        // that the server never blocks on it.
        thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                let at = Instant::now();
                let addr = line.strip_prefix("listening on ").map(str::parse);
                sink.lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .push((at, line));
                if let Some(addr) = addr {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send((addr, at));
                    }
                }
            }
        });
        let mut server = Server {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            up_after: Duration::ZERO,
            log,
        };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok((Ok(addr), at)) => {
                server.addr = addr;
                server.up_after = at - spawned;
                Ok(server)
            }
            Ok((Err(e), _)) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(_) => {
                let said: Vec<String> = server.lines().iter().map(|(_, l)| l.clone()).collect();
                Err(io::Error::other(format!(
                    "confab-server did not print `listening on` within {START_TIMEOUT:?}: {}",
                    said.join(" | ")
                )))
            }
        }
    }

    /// Its process id.
    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The stderr lines so far.
    fn lines(&self) -> MutexGuard<'_, Vec<(Instant, String)>> {
        self.log.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// How many stderr lines have been read.
    fn log_len(&self) -> usize {
        self.lines().len()
    }

    /// Waits for a stderr line from the `from`th on that satisfies `what`;
    /// returns its index and when it was read.
    fn wait_log(
        &mut self,
        from: usize,
        what: impl Fn(&str) -> bool,
        deadline: Instant,
    ) -> io::Result<(usize, Instant)> {
        loop {
            if let Some((i, (at, _))) = self
                .lines()
                .iter()
                .enumerate()
                .skip(from)
                .find(|(_, (_, line))| what(line))
            {
                return Ok((i, *at));
            }
            self.check_running()?;
            if Instant::now() >= deadline {
                return Err(io::Error::new(io::ErrorKind::TimedOut, "no such log line"));
            }
            thread::sleep(POLL);
        }
    }

    /// Waits until every compaction started since the `from`th line has
    /// ended and none has started for [`SETTLED`].
    fn wait_compactions(&mut self, from: usize, deadline: Instant) -> io::Result<()> {
        let mut quiet_since = Instant::now();
        let mut seen = (0, 0);
        loop {
            let counts = self
                .lines()
                .iter()
                .skip(from)
                .fold((0, 0), |(s, e), (_, l)| {
                    if l.ends_with("] compaction started") {
                        (s + 1, e)
                    } else if l.contains("confab::journal] compacted ") {
                        (s, e + 1)
                    } else {
                        (s, e)
                    }
                });
            if counts != seen {
                seen = counts;
                quiet_since = Instant::now();
            } else if counts.0 == counts.1 && quiet_since.elapsed() >= SETTLED {
                return Ok(());
            }
            self.check_running()?;
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!(
                        "compactions still running: {} started, {} ended",
                        seen.0, seen.1
                    ),
                ));
            }
            thread::sleep(POLL);
        }
    }

    /// An error if the server has exited.
    fn check_running(&mut self) -> io::Result<()> {
        match self.child.try_wait()? {
            None => Ok(()),
            Some(status) => {
                let said: Vec<String> = self
                    .lines()
                    .iter()
                    .rev()
                    .take(5)
                    .map(|(_, l)| l.clone())
                    .collect();
                Err(io::Error::other(format!(
                    "confab-server exited ({status}); its last words: {}",
                    said.join(" | ")
                )))
            }
        }
    }

    /// Checks that it is still running, then kills and reaps it.
    fn finish(mut self) -> io::Result<()> {
        self.check_running()?;
        self.kill()
    }

    /// SIGKILL, and reaps it.
    fn kill(&mut self) -> io::Result<()> {
        if self.child.try_wait()?.is_none() {
            self.child.kill()?;
            self.child.wait()?;
        }
        Ok(())
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.kill();
    }
}

// ----------------------------------------------------------------- client

/// A blocking client: a buffered reader and a writer on one socket.
struct Client {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    line: Vec<u8>,
}

impl Client {
    /// Connects, with [`IO_TIMEOUT`] on every read and write.
    fn connect(addr: SocketAddr) -> io::Result<Client> {
        let stream = TcpStream::connect_timeout(&addr, IO_TIMEOUT)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(IO_TIMEOUT))?;
        stream.set_write_timeout(Some(IO_TIMEOUT))?;
        let writer = stream.try_clone()?;
        Ok(Client {
            reader: BufReader::with_capacity(1 << 16, stream),
            writer,
            line: Vec::new(),
        })
    }

    /// Connects and logs in as `user`, up to the welcome line.
    fn login(addr: SocketAddr, user: &str) -> io::Result<Client> {
        let mut client = Client::connect(addr)?;
        client.log_in(user)?;
        Ok(client)
    }

    /// Logs in as `user` with its [`password`], from the first prompt to
    /// the welcome line.
    fn log_in(&mut self, user: &str) -> io::Result<()> {
        self.expect_bytes("Username: ")?;
        self.send(&format!("{user}\n"))?;
        self.expect_bytes("Password: ")?;
        self.send(&format!("{}\n", password(user)))?;
        self.expect_line(WELCOME)
            .map_err(|e| context(e, &format!("logging in {user}")))
    }

    /// `logout`, up to `Goodbye`.
    fn logout(mut self) -> io::Result<()> {
        self.send("logout\n")?;
        self.expect_line("Goodbye")
    }

    /// Writes `text` whole.
    fn send(&mut self, text: &str) -> io::Result<()> {
        self.writer.write_all(text.as_bytes())
    }

    /// Another handle on the socket, to write from another thread.
    fn writer(&self) -> io::Result<TcpStream> {
        self.writer.try_clone()
    }

    /// Writes `bytes` from a thread of its own, so that this one can read
    /// the replies meanwhile.
    fn write_in_background(&self, bytes: Vec<u8>) -> thread::JoinHandle<io::Result<()>> {
        let writer = self.writer();
        thread::spawn(move || writer?.write_all(&bytes))
    }

    /// Reads exactly `want` (a prompt, which has no newline).
    fn expect_bytes(&mut self, want: &str) -> io::Result<()> {
        let mut got = vec![0; want.len()];
        self.reader.read_exact(&mut got)?;
        if got != want.as_bytes() {
            return Err(io::Error::other(format!(
                "expected `{want}`, got `{}`",
                String::from_utf8_lossy(&got)
            )));
        }
        Ok(())
    }

    /// The next line, without its newline.
    fn read_line(&mut self) -> io::Result<&str> {
        self.line.clear();
        self.reader.read_until(b'\n', &mut self.line)?;
        if self.line.pop() != Some(b'\n') {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        std::str::from_utf8(&self.line).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }

    /// Reads lines until `want`, skipping at most `most` presence lines
    /// (`<user> logged in`); an error on any other line.
    fn expect_line_after_logins(&mut self, want: &str, most: usize) -> io::Result<()> {
        for _ in 0..=most {
            let got = self.read_line()?;
            if got == want {
                return Ok(());
            }
            if !got.ends_with(" logged in") {
                return Err(io::Error::other(format!(
                    "expected `{}`, got `{}`",
                    clip(want),
                    clip(got)
                )));
            }
        }
        Err(io::Error::other(format!(
            "more than {most} presence lines before `{}`",
            clip(want)
        )))
    }

    /// Reads the next line, an error unless it is `want`.
    fn expect_line(&mut self, want: &str) -> io::Result<()> {
        let got = self.read_line()?;
        if got != want {
            return Err(io::Error::other(format!(
                "expected `{}`, got `{}`",
                clip(want),
                clip(got)
            )));
        }
        Ok(())
    }
}

// ------------------------------------------------------------------ files

/// A fresh directory under Cargo's target directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    /// `confab-hardening-PID/name` under Cargo's target directory, empty.
    fn new(name: &str) -> io::Result<Scratch> {
        let path = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("confab-hardening-{}", std::process::id()))
            .join(name);
        let _ = fs::remove_dir_all(&path);
        fs::create_dir_all(&path)?;
        Ok(Scratch(path))
    }

    /// The directory.
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
        if let Some(parent) = self.0.parent() {
            // Only if it is empty: another row may still use it.
            let _ = fs::remove_dir(parent);
        }
    }
}

/// `--data-dir DATA`, then `rest`: a server's options.
fn with_data_dir(data: &Path, rest: &[&str]) -> Vec<OsString> {
    let mut args = vec!["--data-dir".into(), data.as_os_str().to_owned()];
    args.extend(rest.iter().map(OsString::from));
    args
}

/// The password of every generated account.
fn password(user: &str) -> String {
    format!("pw-{user}")
}

/// Writes `dir/credentials.txt` with `users` and their [`password`]s.
fn write_credentials(dir: &Path, users: &[&str]) -> io::Result<PathBuf> {
    let path = dir.join("credentials.txt");
    let text: String = users
        .iter()
        .map(|user| format!("{user} {}\n", password(user)))
        .collect();
    fs::write(&path, text)?;
    Ok(path)
}

/// The total size of the files in `dir` (0 if it cannot be read; files
/// that vanish meanwhile count nothing).
fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .filter_map(|entry| entry.metadata().ok())
        .filter(|meta| meta.is_file())
        .map(|meta| meta.len())
        .sum()
}

// ---------------------------------------------------------------- helpers

/// The acknowledgement of a message stored for `user`.
fn offline_ack(user: &str) -> String {
    format!("{user} is offline. Your message will be delivered when they log in")
}

/// The outcome of a thread, its panic as an error.
fn joined<T>(handle: thread::JoinHandle<io::Result<T>>) -> io::Result<T> {
    handle
        .join()
        .unwrap_or_else(|_| Err(io::Error::other("a client thread panicked")))
}

/// `e`, saying what was being done.
fn context(e: io::Error, what: &str) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

/// The cells of a table line after the row's name.
fn cells(figure: String, unit: &str, extra: String) -> String {
    format!("{figure:>11}  {unit:<7} {extra}")
}

/// At most the first 80 characters of `s`, for error messages.
fn clip(s: &str) -> String {
    match s.char_indices().nth(80) {
        Some((i, _)) => format!("{}... ({} bytes)", &s[..i], s.len()),
        None => s.to_string(),
    }
}

/// The `q` quantile (0 to 1) of sorted durations; zero if there are none.
fn percentile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `d` in milliseconds.
fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

/// `bytes` in MiB.
fn mib(bytes: u64) -> f64 {
    bytes as f64 / f64::from(1 << 20)
}

/// A duration in µs below a millisecond, in s from a second, else in ms.
fn short(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else if d < Duration::from_secs(1) {
        format!("{:.1} ms", ms(d))
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// A whole number with thousands separators: `6,012,345`.
fn thousands(x: f64) -> String {
    let digits = format!("{:.0}", x.max(0.0));
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}
