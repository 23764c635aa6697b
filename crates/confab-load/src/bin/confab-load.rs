//! `confab-load`: the command-line front end of [`confab_load`]. It only
//! turns arguments into a [`LoadConfig`] and prints the report; all
//! behaviour lives in the library.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use confab_load::{self as load, LoadConfig, Workload, MAX_MESSAGE_SIZE, STAMP_LEN};
use log::{info, warn};

const LONG_ABOUT: &str = "\
Drives a running confab server with many clients from one thread and reports
what it delivered: messages sent, delivered and lost, throughput, latency
percentiles, and the server's memory when --server-pid is given.

Every client logs in with a generated account (user0001 / pw0001, ...).
Write them once, start the server on them with a long TIMEOUT (listeners
never send, and the server logs out anyone silent for TIMEOUT seconds) and
room for enough connections, then drive it:

  confab-load --write-credentials /tmp/load-users.txt --users 11000
  confab-server 9000 60 3600 --credentials /tmp/load-users.txt --max-clients 12000 --ephemeral &
  confab-load --target 127.0.0.1:9000 --workload fanout
  confab-load --target 127.0.0.1:9000 --workload idle --server-pid $!

For --workload offline, start the server with a --data-dir (to measure the
journal) and a --mailbox-max that holds what a run sends.

A run logs every client in, waits until the login chatter is quiet, sends
for DURATION (or MESSAGES), then waits up to DRAIN for what is in flight;
anything not delivered by then is lost. Each message text starts with its
send time, so each delivery is timed. Senders keep at most WINDOW bytes in
flight per receiver, so the server never cuts a client off as a slow reader.
Only loopback targets are accepted, and every phase has a deadline.

With --tls-fingerprint every client speaks TLS to a server started with
--tls, trusting only the certificate of that fingerprint (the one the
server prints at start as `tls fingerprint SHA256:...`). No session is
resumed: each connection makes a full handshake. --workload handshakes
measures connections themselves: CLIENTS clients each connect, wait for
the username prompt (over TLS: after the handshake) and close with a
reset (which leaves no port in TIME_WAIT), over and over; its figure is
connections per second, in plaintext or over TLS. With --web every client
is a WebSocket to the server's web port instead, like the browser page.

With --peer-target, --workload direct drives two nodes of one cluster
(confab-server --cluster): each pair's sender is on one node and its
receiver on the other, pairs alternating, so every message goes through
the cluster's log from one node to the other.

A storm measures the logins themselves: at most IN_FLIGHT at a time, it
ends when the last presence line arrived (within SETUP_TIMEOUT), and exits
with 1 if any client heard of a login never, twice or out of the server's
order.

The load process raises its open-file limit to the hard limit; 10,000 idle
clients need 10,000 descriptors here and as many in the server.";

/// Drives a confab server with many clients from one thread and measures
/// it.
#[derive(Debug, Parser)]
#[command(version, long_about = LONG_ABOUT)]
struct Args {
    /// The server to drive, HOST:PORT on this machine (loopback only).
    /// Required except for `ceiling` and --write-credentials.
    #[arg(long, value_name = "HOST:PORT")]
    target: Option<String>,
    /// What to do.
    #[arg(long, value_enum, required_unless_present = "write_credentials")]
    workload: Option<Workload>,
    /// Listeners, pairs, clients, online users, users logging in,
    /// connections in progress or idle connections, as the workload counts
    /// them [default: 1000 for fanout, logins and ceiling; 100 pairs for
    /// direct; 50 for pingpong and handshakes; 5000 for storm; 10000 for
    /// idle].
    #[arg(long, value_name = "N")]
    clients: Option<usize>,
    /// Clients logging in and out in a loop (logins).
    #[arg(long, value_name = "N", default_value_t = 10)]
    churners: usize,
    /// Most logins in progress at once, each from its connect until its
    /// welcome (storm).
    #[arg(long, value_name = "N", default_value_t = 100)]
    in_flight: usize,
    /// Seconds to send (idle: to hold the connections); fractions allowed.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    duration: Duration,
    /// Stop after this many messages (or logins, or connections) if that
    /// comes first.
    #[arg(long, value_name = "N")]
    messages: Option<u64>,
    /// Bytes of each message text, its 16-digit timestamp included.
    #[arg(long, value_name = "BYTES", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(STAMP_LEN as i64..=MAX_MESSAGE_SIZE as i64))]
    message_size: u16,
    /// Bytes of delivered lines a sender may have in flight per receiver.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    window: usize,
    /// Seconds to wait after sending for what is still in flight.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    drain: Duration,
    /// Seconds that connecting and logging in every client may take.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_seconds)]
    setup_timeout: Duration,
    /// The server's process id, to report its resident memory (needed for
    /// the idle figure).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
    /// Speak TLS to a server started with --tls, trusting only its
    /// certificate of this fingerprint (as it prints it at start); every
    /// connection makes a full handshake. Not for ceiling.
    #[arg(long, value_name = "SHA256:...")]
    tls_fingerprint: Option<String>,
    /// Speak WebSocket: TARGET is the server's --web-port, every client
    /// upgrades /ws and sends and receives its lines as text messages, as
    /// the browser page does. Not for ceiling or handshakes.
    #[arg(long)]
    web: bool,
    /// A second node of TARGET's cluster (direct only, loopback,
    /// plaintext): half the pairs send from TARGET to users on this node,
    /// the other half from here to TARGET, so every message crosses nodes.
    #[arg(long, value_name = "HOST:PORT")]
    peer_target: Option<String>,
    /// Write a credentials file of generated accounts and exit.
    #[arg(
        long,
        value_name = "FILE",
        requires = "users",
        conflicts_with = "workload"
    )]
    write_credentials: Option<PathBuf>,
    /// How many accounts --write-credentials writes.
    #[arg(long, value_name = "N", requires = "write_credentials")]
    users: Option<usize>,
}

/// Longest duration accepted (a day), so no deadline can overflow.
const MAX_SECONDS: f64 = 86_400.0;

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let seconds: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(0.0..=MAX_SECONDS).contains(&seconds) {
        return Err(format!("`{s}` is not between 0 and {MAX_SECONDS} seconds"));
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{s}`: {e}"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("off")).init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("confab-load: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    if let (Some(path), Some(users)) = (&args.write_credentials, args.users) {
        load::write_credentials(path, users).map_err(|e| format!("{}: {e}", path.display()))?;
        eprintln!("wrote {users} accounts to {}", path.display());
        return Ok(());
    }
    let workload = args.workload.ok_or("--workload is required")?;
    let target = match (&args.target, workload) {
        (Some(target), _) => resolve_loopback("--target", target)?,
        (None, Workload::Ceiling) => SocketAddr::from(([127, 0, 0, 1], 0)),
        (None, _) => return Err(format!("--target is required for {}", workload.name())),
    };
    match confab::fdlimit::raise_to_hard_limit() {
        Ok(limit) => info!("open-file limit: {limit}"),
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }
    let mut config = LoadConfig::new(workload, target);
    config.clients = args.clients.unwrap_or(config.clients);
    config.churners = args.churners;
    config.in_flight = args.in_flight;
    config.duration = args.duration;
    config.messages = args.messages;
    config.message_size = usize::from(args.message_size);
    config.window = args.window;
    config.drain = args.drain;
    config.setup_timeout = args.setup_timeout;
    config.server_pid = args.server_pid;
    config.tls = args.tls_fingerprint;
    config.web = args.web;
    config.peer_target = args
        .peer_target
        .as_deref()
        .map(|peer| resolve_loopback("--peer-target", peer))
        .transpose()?;
    if !matches!(workload, Workload::Ceiling | Workload::Handshakes) {
        eprintln!(
            "{}: {} accounts needed (user0001 ...)",
            workload.name(),
            config.users_needed()
        );
    }
    let report = load::run(&config).map_err(|e| format!("{}: {e}", workload.name()))?;
    print!("{report}");
    if workload == Workload::Storm && report.faults() > 0 {
        return Err(format!(
            "storm: {} presence lines lost, {} duplicated, {} misordered",
            report.lost, report.duplicated, report.misordered
        ));
    }
    Ok(())
}

/// The first loopback address `target`, given as `flag`, resolves to.
fn resolve_loopback(flag: &str, target: &str) -> Result<SocketAddr, String> {
    let addrs = target
        .to_socket_addrs()
        .map_err(|e| format!("{flag} {target}: {e}"))?;
    addrs
        .into_iter()
        .find(|addr| addr.ip().is_loopback())
        .ok_or_else(|| format!("{flag} {target}: not a loopback address"))
}
