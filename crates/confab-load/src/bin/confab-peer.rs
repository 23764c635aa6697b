//! `confab-peer`: the command-line front end of [`confab_load::peers`],
//! confab's workloads against nats-server or Redis. It only turns
//! arguments into a [`PeerConfig`] and prints the report; all behaviour
//! lives in the library.

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use confab_load::peers::{self, Peer, PeerConfig, PeerWorkload};
use confab_load::{MAX_MESSAGE_SIZE, STAMP_LEN};

const LONG_ABOUT: &str = "\
Drives nats-server or Redis with the pub/sub equivalent of a confab-load
workload, from one thread, and reports it in confab-load's layout, so that
the same work can be compared on the same machine (scripts/compare.sh):

  nats-server -a 127.0.0.1 -p 4222 &
  confab-peer --peer nats --target 127.0.0.1:4222 --workload direct
  redis-server --bind 127.0.0.1 --port 6379 --save '' --appendonly no &
  confab-peer --peer redis --target 127.0.0.1:6379 --workload idle --server-pid $!

fanout: one publisher, CLIENTS subscribers of one subject. direct: CLIENTS
pairs, each receiver subscribed to its own subject, its sender publishing
to it. pingpong: CLIENTS clients in pairs, each answering every message
from its partner. storm: CLIENTS clients, IN_FLIGHT at a time, each
subscribes to a presence subject and then publishes its presence once; the
figure is the time until every client received the presence of every
client that published after its subscription was confirmed. idle: CLIENTS
subscribed connections held for DURATION; the figure is the server's memory
growth per connection.

Redis is spoken in RESP3 (HELLO 3), so that a subscribed connection can
publish. Senders keep at most WINDOW bytes in flight per receiver, so
neither server cuts a slow consumer; what has not arrived by the end of
DRAIN is lost. Only loopback targets are accepted, and every phase has a
deadline.";

/// Drives nats-server or Redis like confab-load drives confab.
#[derive(Debug, Parser)]
#[command(version, long_about = LONG_ABOUT)]
struct Args {
    /// The protocol of the server.
    #[arg(long, value_enum)]
    peer: Peer,
    /// The server to drive, HOST:PORT on this machine (loopback only).
    #[arg(long, value_name = "HOST:PORT")]
    target: String,
    /// What to do.
    #[arg(long, value_enum)]
    workload: PeerWorkload,
    /// Subscribers, pairs, clients or connections, as the workload counts
    /// them [default: 1000 for fanout; 100 pairs for direct; 50 for
    /// pingpong; 5000 for storm; 10000 for idle].
    #[arg(long, value_name = "N")]
    clients: Option<usize>,
    /// Storm clients between their connect and the acknowledgement of
    /// their presence at once.
    #[arg(long, value_name = "N", default_value_t = 100)]
    in_flight: usize,
    /// Seconds to send (idle: to hold the connections); fractions allowed.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds)]
    duration: Duration,
    /// Bytes of each message's payload, its 16-digit timestamp included.
    #[arg(long, value_name = "BYTES", default_value_t = 64,
          value_parser = clap::value_parser!(u16).range(STAMP_LEN as i64..=MAX_MESSAGE_SIZE as i64))]
    message_size: u16,
    /// Bytes of delivery frames a sender may have in flight per receiver.
    #[arg(long, value_name = "BYTES", default_value_t = 64 * 1024)]
    window: usize,
    /// Seconds to wait after sending for what is still in flight.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    drain: Duration,
    /// Seconds that connecting every client may take (storm: the storm).
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_seconds)]
    setup_timeout: Duration,
    /// The server's process id, to report its resident memory (needed for
    /// the idle figure).
    #[arg(long, value_name = "PID")]
    server_pid: Option<u32>,
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
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("confab-peer: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let target = resolve_loopback(&args.target)?;
    if let Err(e) = confab::fdlimit::raise_to_hard_limit() {
        eprintln!("confab-peer: cannot raise the open-file limit: {e}");
    }
    let mut config = PeerConfig::new(args.peer, args.workload, target);
    config.clients = args.clients.unwrap_or(config.clients);
    config.in_flight = args.in_flight;
    config.duration = args.duration;
    config.message_size = usize::from(args.message_size);
    config.window = args.window;
    config.drain = args.drain;
    config.setup_timeout = args.setup_timeout;
    config.server_pid = args.server_pid;
    let what = format!("{} against {}", args.workload.name(), args.peer.name());
    let report = peers::run(&config).map_err(|e| format!("{what}: {e}"))?;
    print!("{report}");
    Ok(())
}

/// The first loopback address `target` resolves to.
fn resolve_loopback(target: &str) -> Result<SocketAddr, String> {
    let addrs = target
        .to_socket_addrs()
        .map_err(|e| format!("--target {target}: {e}"))?;
    addrs
        .into_iter()
        .find(|addr| addr.ip().is_loopback())
        .ok_or_else(|| format!("--target {target}: not a loopback address"))
}
