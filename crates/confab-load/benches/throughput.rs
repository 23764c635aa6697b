//! `cargo bench [FILTER]`: every load workload against a fresh confab
//! server, three runs each, one table row per workload with the median
//! run's figure, then the ratios: `fanout / ceiling`, each TLS row over
//! its plaintext twin, and each cluster row over `direct`. The storm has three rows, `storm-10`,
//! `storm-100` and `storm-1000`: 5,000 users logging in with that many
//! logins in flight, the figure the seconds until the last presence line
//! arrived; a storm that loses, duplicates or misorders a presence line
//! fails the bench. `fanout`, `direct` and `handshakes` each have a twin
//! over TLS (`fanout-tls`, ...): the server speaks TLS with a certificate
//! made in memory, and every load client pins it and makes a full
//! handshake. `fanout` and `idle` also have a twin over WebSocket
//! (`fanout-web`, `idle-web`): the clients connect to the server's web
//! port, upgrade `/ws`, and send and receive their lines as text
//! messages, as the browser page does. `direct` also has two rows in
//! cluster mode, each run with its own nats-server (JetStream, on
//! loopback): `direct-node`, one cluster node alone with every user on it,
//! every input going through the log; and `direct-cluster`, two nodes A
//! and B with each pair's sender on one and its receiver on the other
//! (pairs alternating), so every message goes A→B or B→A through the log.
//! Their extra column has what the log took per delivered message (its
//! entries, each a batch of one node's inputs, and the bytes JetStream
//! stored, read from the stream's info after the run) and, as for
//! `direct`, the CPU time of the server threads per message (and of the
//! nodes' NATS threads and of nats-server).
//!
//! The server runs on one thread of this process (the testkit's
//! `TestServer`; `idle` starts the real `confab-server` binary instead, so
//! that its memory is its own, brought up to date by cargo first), the load
//! engine on another; nothing is pinned. The servers are ephemeral, except
//! for `offline`'s, which journals to a fresh data directory under Cargo's
//! target directory (on the real disk, fsync on every commit). The storm's
//! server has the default `--presence-delay` and `--backlog`. `--bench`
//! (passed by cargo) is ignored; a positional FILTER runs only the rows
//! whose name contains it.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use confab::cluster::bridge::{Bridge, LogConfig};
use confab::cluster::ClusterConfig;
use confab_load::{self as load, LoadConfig, Report, Workload};
use confab_testkit::procfs::threads_cpu_time;
use confab_testkit::{artifacts, journal_in, NatsServer, Options, TestServer};

/// Runs per workload; the row shows the median.
const RUNS: usize = 3;
/// Seconds of sending per run.
const SECONDS: Duration = Duration::from_secs(2);
/// How long `idle` holds its connections before reading the server's
/// memory: longer than the server's 1 s interval for freeing idle buffers.
const IDLE_HOLD: Duration = Duration::from_millis(1500);
/// How long setting up a run may take (`idle` logs in 10,000 users, and
/// each login is announced to everyone already online).
const SETUP_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the server process may take to start or to stop.
const PROCESS_TIMEOUT: Duration = Duration::from_secs(10);
/// The logins in flight of the storm rows.
const STORM_IN_FLIGHT: [usize; 3] = [10, 100, 1000];
/// The workloads that also run over TLS, each in a row beside its
/// plaintext twin.
const OVER_TLS: [Workload; 3] = [Workload::Fanout, Workload::Direct, Workload::Handshakes];
/// The workloads that also run over WebSocket, each in a row after its
/// plaintext (and TLS) twin.
const OVER_WEB: [Workload; 2] = [Workload::Fanout, Workload::Idle];
/// The workloads that also run in cluster mode, in a `-node` and a
/// `-cluster` row after their other twins.
const IN_CLUSTER: [Workload; 1] = [Workload::Direct];
/// The ratios printed under the table: a row's figure over another's.
const RATIOS: [(&str, &str); 8] = [
    ("fanout", "ceiling"),
    ("fanout-tls", "fanout"),
    ("fanout-web", "fanout"),
    ("idle-web", "idle"),
    ("direct-tls", "direct"),
    ("direct-node", "direct"),
    ("direct-cluster", "direct"),
    ("handshakes-tls", "handshakes"),
];
/// The names of the server's threads (the testkit's `TestServer`) and of
/// a cluster node's NATS thread, whose CPU time the direct rows report.
const SERVER_THREAD: &str = "confab-server";
const NATS_THREAD: &str = "confab-nats";
/// How long reaching NATS for the stream's info may take after a run.
const NATS_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a row's server runs: alone, or as nodes of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Layout {
    /// One server, no cluster.
    Single,
    /// One cluster node: every input goes through the log.
    Node,
    /// Two cluster nodes; every message crosses from one to the other.
    Cluster,
}

/// One row of the table: a workload, for the storm how many logins are in
/// flight, and whether the clients speak TLS or WebSocket.
#[derive(Debug, Clone, Copy)]
struct Row {
    workload: Workload,
    in_flight: Option<usize>,
    tls: bool,
    web: bool,
    layout: Layout,
}

impl Row {
    /// Every row, in the order of [`Workload::ALL`], a TLS twin right
    /// after its plaintext row.
    fn all() -> Vec<Row> {
        let mut rows = Vec::new();
        for workload in Workload::ALL {
            let row = Row {
                workload,
                in_flight: None,
                tls: false,
                web: false,
                layout: Layout::Single,
            };
            if workload == Workload::Storm {
                rows.extend(STORM_IN_FLIGHT.map(|n| Row {
                    in_flight: Some(n),
                    ..row
                }));
            } else {
                rows.push(row);
            }
            if OVER_TLS.contains(&workload) {
                rows.push(Row { tls: true, ..row });
            }
            if OVER_WEB.contains(&workload) {
                rows.push(Row { web: true, ..row });
            }
            if IN_CLUSTER.contains(&workload) {
                rows.extend([Layout::Node, Layout::Cluster].map(|layout| Row { layout, ..row }));
            }
        }
        rows
    }

    /// The row's name: the workload's, the logins in flight, `-tls`,
    /// `-web`, `-node` or `-cluster`.
    fn name(&self) -> String {
        let mut name = self.workload.name().to_string();
        if let Some(n) = self.in_flight {
            name.push_str(&format!("-{n}"));
        }
        if self.tls {
            name.push_str("-tls");
        }
        if self.web {
            name.push_str("-web");
        }
        match self.layout {
            Layout::Single => {}
            Layout::Node => name.push_str("-node"),
            Layout::Cluster => name.push_str("-cluster"),
        }
        name
    }
}

fn main() -> ExitCode {
    let filter = std::env::args().skip(1).find(|arg| !arg.starts_with('-'));
    if let Err(e) = confab::fdlimit::raise_to_hard_limit() {
        eprintln!("cannot raise the open-file limit: {e}");
    }
    let selected: Vec<Row> = Row::all()
        .into_iter()
        .filter(|row| filter.as_deref().is_none_or(|f| row.name().contains(f)))
        .collect();
    let cores = thread::available_parallelism().map_or(0, |n| n.get());
    println!(
        "confab throughput: median of {RUNS} runs of {} s each, {cores} cores, nothing pinned",
        SECONDS.as_secs_f64()
    );
    println!(
        "{:<14} {:>13}  {:<13} extra (of the median run)",
        "workload", "figure", "unit"
    );
    let started = Instant::now();
    let mut failed = false;
    let mut medians = Vec::new();
    for row in selected {
        let mut runs = Vec::new();
        for _ in 0..RUNS {
            match run_once(row) {
                Ok(run) => runs.push(run),
                Err(e) => {
                    failed = true;
                    eprintln!("{}: {e}", row.name());
                }
            }
        }
        match median(&mut runs) {
            Some(middle) => {
                let report = &runs[middle].report;
                let figure = report.figure().unwrap_or(f64::NAN);
                println!(
                    "{:<14} {:>13}  {:<13} {}",
                    row.name(),
                    show_figure(report),
                    report.unit(),
                    extra(&runs[middle], &runs)
                );
                medians.push((row.name(), figure, report.unit()));
            }
            None => println!("{:<14} {:>13}", row.name(), "failed"),
        }
    }
    let median_of = |name: &str| medians.iter().find(|(row, _, _)| row == name);
    for (over, under) in RATIOS {
        if let (Some((_, a, unit)), Some((_, b, _))) = (median_of(over), median_of(under)) {
            println!(
                "{over} / {under} = {:.2}  ({} / {} {unit})",
                a / b,
                thousands(*a),
                thousands(*b)
            );
        }
    }
    println!("total {:.0} s", started.elapsed().as_secs_f64());
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

/// One run's report and, for the direct rows, what it cost besides.
struct Run {
    report: Report,
    costs: Option<Costs>,
}

impl From<Report> for Run {
    fn from(report: Report) -> Run {
        Run {
            report,
            costs: None,
        }
    }
}

/// What a direct run cost, over the whole run (logins included).
struct Costs {
    /// CPU time of the server threads (every node's loop).
    loops: Duration,
    /// In cluster mode: CPU time of the nodes' NATS threads, of
    /// nats-server, and the log's entries and stored bytes.
    cluster: Option<ClusterCosts>,
}

/// What the cluster's side of a run cost.
struct ClusterCosts {
    bridges: Duration,
    nats: Duration,
    entries: u64,
    bytes: u64,
}

/// CPU time so far of this process's threads named `name`.
fn cpu_of(name: &str) -> io::Result<Duration> {
    threads_cpu_time(std::process::id(), Some(name))
}

/// One run of `row` at the scale against a fresh server.
fn run_once(row: Row) -> io::Result<Run> {
    let workload = row.workload;
    let mut config = LoadConfig::new(workload, SocketAddr::from(([127, 0, 0, 1], 0)));
    config.duration = SECONDS;
    config.setup_timeout = SETUP_TIMEOUT;
    if row.layout != Layout::Single {
        return run_in_cluster(row.layout, config);
    }
    let report = match workload {
        Workload::Ceiling => load::run(&config),
        Workload::Offline => {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
                .join(format!("confab-bench-offline-{}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            let report = TestServer::try_with(Options {
                mailbox_max: usize::MAX,
                store_max: u64::MAX,
                storage: journal_in(&dir),
                ..Options::for_accounts(load::accounts(config.users_needed()))
            })
            .and_then(|server| {
                config.target = server.addr;
                let report = load::run(&config);
                server.stop()?;
                report
            });
            let _ = std::fs::remove_dir_all(&dir);
            report
        }
        Workload::Idle => {
            config.duration = IDLE_HOLD;
            let server = ChildServer::start(config.users_needed(), row.web)?;
            config.target = server.addr;
            config.web = row.web;
            config.server_pid = Some(server.child.id());
            let report = load::run(&config);
            server.stop()?;
            report
        }
        Workload::Storm => {
            config.in_flight = row.in_flight.unwrap_or(config.in_flight);
            let server =
                TestServer::try_with(Options::for_accounts(load::accounts(config.users_needed())))?;
            config.target = server.addr;
            let report = load::run(&config);
            server.stop()?;
            let report = report?;
            if report.faults() > 0 {
                return Err(io::Error::other(format!(
                    "{} presence lines lost, {} duplicated, {} misordered",
                    report.lost, report.duplicated, report.misordered
                )));
            }
            Ok(report)
        }
        Workload::Direct => {
            let server = TestServer::try_with(Options {
                tls: row.tls,
                ..Options::for_accounts(load::accounts(config.users_needed()))
            })?;
            config.target = server.addr;
            config.tls = server.fingerprint.clone();
            let loops = cpu_of(SERVER_THREAD)?;
            let report = load::run(&config);
            let loops = cpu_of(SERVER_THREAD)?.saturating_sub(loops);
            server.stop()?;
            return Ok(Run {
                report: report?,
                costs: Some(Costs {
                    loops,
                    cluster: None,
                }),
            });
        }
        _ => {
            let server = TestServer::try_with(Options {
                tls: row.tls,
                web: row.web,
                ..Options::for_accounts(load::accounts(config.users_needed()))
            })?;
            config.target = server.web_addr.unwrap_or(server.addr);
            config.tls = server.fingerprint.clone();
            config.web = row.web;
            let report = load::run(&config);
            server.stop()?;
            report
        }
    };
    report.map(Run::from)
}

/// One run of `config` (a direct one) against a fresh nats-server and one
/// cluster node, or two with every message crossing from one to the
/// other. The nodes take no snapshots, so that the stream still holds
/// every entry of the run when its info is read.
fn run_in_cluster(layout: Layout, mut config: LoadConfig) -> io::Result<Run> {
    let nats = NatsServer::start();
    let node = |name: &str| {
        let mut cluster = ClusterConfig::new(&nats.url());
        cluster.node = Some(name.to_owned());
        cluster.snapshot_every = u64::MAX;
        TestServer::try_with(Options {
            cluster: Some(cluster),
            ..Options::for_accounts(load::accounts(config.users_needed()))
        })
    };
    let a = node("a")?;
    let b = match layout {
        Layout::Cluster => Some(node("b")?),
        Layout::Single | Layout::Node => None,
    };
    config.target = a.addr;
    config.peer_target = b.as_ref().map(|b| b.addr);
    let nats_pid = nats
        .pid()
        .ok_or_else(|| io::Error::other("nats-server is not running"))?;
    let nats_cpu = || threads_cpu_time(nats_pid, None);
    let before = (cpu_of(SERVER_THREAD)?, cpu_of(NATS_THREAD)?, nats_cpu()?);
    let report = load::run(&config);
    let after = (cpu_of(SERVER_THREAD)?, cpu_of(NATS_THREAD)?, nats_cpu()?);
    let (entries, bytes) = stream_info(&nats)?;
    if let Some(b) = b {
        b.stop()?;
    }
    a.stop()?;
    Ok(Run {
        report: report?,
        costs: Some(Costs {
            loops: after.0.saturating_sub(before.0),
            cluster: Some(ClusterCosts {
                bridges: after.1.saturating_sub(before.1),
                nats: after.2.saturating_sub(before.2),
                entries,
                bytes,
            }),
        }),
    })
}

/// The log's entries and stored bytes, from the stream's info, through a
/// bridge of its own.
fn stream_info(nats: &NatsServer) -> io::Result<(u64, u64)> {
    let log = LogConfig {
        url: nats.url(),
        stream: ClusterConfig::new(&nats.url()).stream,
        replicas: 1,
    };
    let bridge = Bridge::connect(&log, NATS_TIMEOUT, Arc::new(|| {}))?;
    bridge.stream_info(NATS_TIMEOUT)
}

/// Sorts the runs by figure and returns the index of the middle one.
fn median(runs: &mut [Run]) -> Option<usize> {
    let figure = |r: &Run| r.report.figure().unwrap_or(f64::NAN);
    runs.sort_by(|a, b| figure(a).total_cmp(&figure(b)));
    (!runs.is_empty()).then_some(runs.len() / 2)
}

/// The figure column: seconds to the millisecond, anything else as a
/// whole number with thousands separators.
fn show_figure(report: &Report) -> String {
    if report.workload == Workload::Storm {
        report.figure_text()
    } else {
        thousands(report.figure().unwrap_or(f64::NAN))
    }
}

/// The extra column: latency, loss, memory, what a direct run cost, and
/// every run's figure.
fn extra(run: &Run, all: &[Run]) -> String {
    let report = &run.report;
    let mut parts = Vec::new();
    if let Some(rate) = report.logins_per_second() {
        parts.push(format!("{} logins/s", thousands(rate)));
    }
    if let Some(l) = &report.latency {
        let what = match report.workload {
            Workload::Logins | Workload::Storm => "login ",
            Workload::Handshakes => "prompt ",
            _ => "",
        };
        parts.push(format!("{what}p50 {} p99 {}", short(l.p50), short(l.p99)));
    }
    if let Some(m) = &report.server_memory {
        parts.push(format!(
            "RSS {:.1} -> {:.1} MiB (peak {:.1})",
            mib(m.before.rss),
            mib(m.after.rss),
            mib(m.after.peak)
        ));
    }
    if report.workload != Workload::Idle {
        parts.push(format!("lost {}", report.lost));
    }
    if report.disconnects > 0 {
        parts.push(format!("disconnects {}", report.disconnects));
    }
    if let Some(costs) = &run.costs {
        parts.push(costs_text(costs, report.delivered));
    }
    let runs: Vec<String> = all.iter().map(|run| show_figure(&run.report)).collect();
    parts.push(format!("runs {}", runs.join(" / ")));
    parts.join(", ")
}

/// What a direct run cost per message delivered: CPU time of the server
/// loops (and of the nodes' NATS threads and nats-server), and the log's
/// entries and bytes.
fn costs_text(costs: &Costs, delivered: u64) -> String {
    let messages = delivered.max(1) as f64;
    let per = |d: Duration| format!("{:.2} µs", d.as_secs_f64() * 1e6 / messages);
    let Some(cluster) = &costs.cluster else {
        return format!("cpu/msg: loop {}", per(costs.loops));
    };
    format!(
        "cpu/msg: loops {}, nats threads {}, nats-server {}; log/msg: {:.4} entries \
         ({:.0} msgs/entry), {:.0} B",
        per(costs.loops),
        per(cluster.bridges),
        per(cluster.nats),
        cluster.entries as f64 / messages,
        messages / cluster.entries.max(1) as f64,
        cluster.bytes as f64 / messages
    )
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// A duration in µs below a millisecond, else in ms.
fn short(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.1} ms", d.as_secs_f64() * 1000.0)
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

/// The real `confab-server` binary as a child process, with a generated
/// credentials file in a temporary directory and long timeouts; `addr` is
/// its web port's when it has one.
struct ChildServer {
    child: Child,
    addr: SocketAddr,
    dir: PathBuf,
}

impl ChildServer {
    fn start(users: usize, web: bool) -> io::Result<ChildServer> {
        let dir = std::env::temp_dir().join(format!("confab-bench-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let credentials = dir.join("credentials.txt");
        load::write_credentials(&credentials, users)?;
        let mut child = Command::new(artifacts::built("confab-server")?)
            .args(["0", "3600", "3600", "--ephemeral", "--max-clients"])
            .arg((users + 100).to_string())
            .arg("--credentials")
            .arg(&credentials)
            .args(if web { &["--web-port", "0"][..] } else { &[] })
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take();
        let (tx, rx) = mpsc::channel();
        // Reads `listening on ADDR` (`web listening on ADDR` with a web
        // port), then drains stderr so the server never blocks on it.
        let prefix = if web {
            "web listening on "
        } else {
            "listening on "
        };
        thread::spawn(move || {
            let Some(stderr) = stderr else { return };
            let mut tx = Some(tx);
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if let Some(addr) = line.strip_prefix(prefix) {
                    if let Some(tx) = tx.take() {
                        let _ = tx.send(addr.parse::<SocketAddr>());
                    }
                }
            }
        });
        let mut server = ChildServer {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], 0)),
            dir,
        };
        match rx.recv_timeout(PROCESS_TIMEOUT) {
            Ok(Ok(addr)) => {
                server.addr = addr;
                Ok(server)
            }
            Ok(Err(e)) => Err(io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) => Err(io::Error::other(format!(
                "confab-server did not start: {e}"
            ))),
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited in time.
    fn stop(mut self) -> io::Result<()> {
        self.terminate()
    }

    fn terminate(&mut self) -> io::Result<()> {
        if self.child.try_wait()?.is_none() {
            let pid = i32::try_from(self.child.id()).map_err(io::Error::other)?;
            // SAFETY: kill has no memory effects; the pid is our child's,
            // which has not been reaped yet.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            let deadline = Instant::now() + PROCESS_TIMEOUT;
            while self.child.try_wait()?.is_none() {
                if Instant::now() >= deadline {
                    self.child.kill()?;
                    self.child.wait()?;
                    break;
                }
                thread::sleep(Duration::from_millis(20));
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
        Ok(())
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        let _ = self.terminate();
    }
}
