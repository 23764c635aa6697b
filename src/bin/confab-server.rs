//! `confab-server <PORT> <BLOCK_DURATION> <TIMEOUT>`: the command-line front
//! end of [`confab::server`]. It only turns arguments into a
//! [`confab::server::Config`]; all behaviour lives in the library.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use confab::cluster::ClusterConfig;
use confab::credentials::CredentialsError;
use confab::identity::IdentitySource;
use confab::journal::{Fsync, JournalOptions, OnDamage};
use confab::rate::Rate;
use confab::server::{defaults, Config, Server, Storage};
use confab::trust::{Cidr, Trust};
use log::{info, warn};

/// The confab chat server: one core, thousands of connections, a plain-text
/// protocol (so `nc` and `telnet` are clients too).
#[derive(Debug, Parser)]
#[command(name = "confab-server", version, long_about = None)]
struct Args {
    /// TCP port to listen on; 0 picks a free one.
    port: u16,
    /// Seconds a username stays banned after 3 consecutive wrong passwords
    /// (fractions allowed, e.g. 0.5).
    #[arg(value_parser = parse_seconds)]
    block_duration: Duration,
    /// Seconds without a command after which a connection is logged out
    /// (fractions allowed).
    #[arg(value_parser = parse_seconds)]
    timeout: Duration,
    /// The accounts, one `username password` per line; blank lines and
    /// lines starting with `#` are skipped.
    #[arg(long, value_name = "FILE", default_value = "credentials.txt")]
    credentials: PathBuf,
    /// Address or host name to listen on (a name's first address is
    /// used); `::` or `0.0.0.0` to listen everywhere.
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1")]
    bind: String,
    /// Longest accepted line in bytes (not counting the newline), at most
    /// 1048576.
    #[arg(long, value_name = "BYTES", default_value_t = defaults::MAX_LINE,
          value_parser = parse_max_line)]
    max_line: usize,
    /// Unsent output bytes after which a client that does not read is
    /// disconnected.
    #[arg(long, value_name = "BYTES", default_value_t = defaults::MAX_PENDING,
          value_parser = parse_positive::<usize>)]
    max_pending: usize,
    /// Most connections at once; one more is told the server is full.
    #[arg(long, value_name = "N", default_value_t = defaults::MAX_CLIENTS,
          value_parser = parse_positive::<usize>)]
    max_clients: usize,
    /// Seconds a shutdown (SIGINT, SIGTERM) may spend flushing output
    /// before it closes every connection; a second signal exits at once.
    #[arg(long, value_name = "SECS", default_value = "2", value_parser = parse_seconds)]
    shutdown_grace: Duration,
    /// Where offline messages, block lists and bans are kept (created if
    /// missing). One server at a time may use a directory.
    #[arg(long, value_name = "DIR", default_value = defaults::DATA_DIR,
          conflicts_with = "ephemeral")]
    data_dir: PathBuf,
    /// Keep everything in memory: a restart forgets offline messages,
    /// block lists and bans, and nothing is written to disk.
    #[arg(long)]
    ephemeral: bool,
    /// When acknowledged changes reach the disk. `always`: each loop
    /// iteration's changes are fsynced before the replies that promise them
    /// are sent. `never`: they are only written, which survives the server
    /// crashing but NOT a power loss or an OS crash — acknowledged messages,
    /// blocks and bans from the last seconds may then be lost.
    #[arg(long, value_name = "WHEN", default_value = "always")]
    fsync: Fsync,
    /// Journal size in bytes past which it is compacted into a snapshot.
    #[arg(long, value_name = "BYTES", default_value_t = defaults::COMPACT_AT,
          value_parser = parse_positive::<u64>)]
    compact_at: u64,
    /// Most messages queued for one offline user; beyond it the sender is
    /// told the mailbox is full and nothing is stored.
    #[arg(long, value_name = "N", default_value_t = defaults::MAILBOX_MAX,
          value_parser = parse_positive::<usize>)]
    mailbox_max: usize,
    /// Most bytes of offline mail stored in all (each message counts its
    /// sender, its text and 32 bytes); beyond it the sender is told the
    /// server's storage is full and nothing is stored.
    #[arg(long, value_name = "BYTES", default_value_t = defaults::STORE_MAX,
          value_parser = parse_positive::<u64>)]
    store_max: u64,
    /// Start even though the data directory is damaged: keep every intact
    /// record, set the damaged files aside (renamed, never deleted) and
    /// say how much was dropped. Without it, damage other than a torn last
    /// record stops the start and changes nothing.
    #[arg(long, conflicts_with = "ephemeral")]
    recover: bool,
    /// Drop the offline mail, blocks and bans of accounts that are no
    /// longer in the credentials file (by default they are kept, for when
    /// the account comes back).
    #[arg(long, conflicts_with = "ephemeral")]
    prune_removed: bool,
    /// A network whose clients skip the per-address limits (connections,
    /// failed logins, command rate), as ADDRESS/PREFIX; repeatable. The
    /// default trusts loopback only; `none` trusts nobody.
    #[arg(long, value_name = "CIDR", default_values = ["127.0.0.1/32", "::1/128"],
          value_parser = parse_trust)]
    trust: Vec<Option<Cidr>>,
    /// Most connections at once from one untrusted address (an IPv6 client
    /// counts as its /64); one more is told so and closed.
    #[arg(long, value_name = "N", default_value_t = defaults::MAX_PER_IP,
          value_parser = parse_positive::<usize>)]
    max_per_ip: usize,
    /// Failed passwords one untrusted address may make per BLOCK_DURATION;
    /// past them its passwords are refused (counting for no username) and
    /// its connection is closed, until the window passes.
    #[arg(long, value_name = "N", default_value_t = defaults::MAX_FAILURES_PER_IP,
          value_parser = parse_positive::<u32>)]
    max_failures_per_ip: u32,
    /// Seconds from connecting within which the login must be complete,
    /// whatever is typed meanwhile.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_seconds)]
    login_timeout: Duration,
    /// Lines a second an untrusted connection may send; past its burst it
    /// is read more slowly (never cut off, nothing dropped).
    #[arg(long, value_name = "N", default_value_t = defaults::RATE,
          value_parser = parse_positive::<u32>)]
    rate: u32,
    /// Lines an untrusted connection may send at once before `--rate`
    /// paces it.
    #[arg(long, value_name = "N", default_value_t = defaults::BURST,
          value_parser = parse_positive::<u32>)]
    burst: u32,
    /// Connections the kernel may hold for the server before it accepts
    /// them (a login storm's handshakes wait there instead of being
    /// dropped); the kernel's somaxconn caps it, which is logged.
    #[arg(long, value_name = "N", default_value_t = defaults::BACKLOG,
          value_parser = parse_positive::<u32>)]
    backlog: u32,
    /// Milliseconds presence lines (`logged in`, `logged out`) may be held
    /// so that a burst of logins reaches each user in one write; 0 sends
    /// them at once (at most 1000). Replies and messages are never held.
    #[arg(long, value_name = "MS", default_value_t = defaults::PRESENCE_DELAY_MS,
          value_parser = clap::value_parser!(u64).range(0..=1000))]
    presence_delay: u64,
    /// Speak TLS (1.2 and 1.3 only) on PORT. Without --tls-cert and
    /// --tls-key the server makes a self-signed certificate at its first
    /// start and keeps it in the data directory (a new one at each start
    /// with --ephemeral); it prints the certificate's fingerprint at start.
    #[arg(long)]
    tls: bool,
    /// The certificate chain to serve, PEM, leaf first (with --tls-key).
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The certificate's private key, PEM (with --tls-cert).
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Also listen in plaintext on this port (at --bind), for `nc` on a
    /// trusted network; with --tls only.
    #[arg(long, value_name = "PORT")]
    plain_port: Option<u16>,
    /// Also serve the web page and its WebSocket sessions on this port (at
    /// --bind); HTTPS with --tls, with the same certificate.
    #[arg(long, value_name = "PORT")]
    web_port: Option<u16>,
    /// An origin (`https://host[:port]`) whose pages may open WebSocket
    /// sessions besides the page's own; repeatable; with --web-port.
    #[arg(long, value_name = "ORIGIN", requires = "web_port",
          value_parser = confab::server::parse_origin)]
    web_origin: Vec<String>,
    /// Be a node of the cluster whose log is on this NATS server
    /// (`nats://HOST:PORT`, JetStream enabled); the state is then the
    /// cluster's, kept in NATS, and no data directory is used.
    #[arg(long, value_name = "URL", conflicts_with_all = ["data_dir", "ephemeral", "recover"])]
    cluster: Option<String>,
    /// This node's name in the cluster [default: the host name and PORT].
    #[arg(long, value_name = "NAME", requires = "cluster")]
    node: Option<String>,
    /// How long a node may be silent in the log before the others log its
    /// users out.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = parse_seconds,
          requires = "cluster")]
    node_timeout: Duration,
    /// The JetStream stream that holds the cluster's log.
    #[arg(
        long,
        value_name = "NAME",
        default_value = "confab",
        requires = "cluster"
    )]
    cluster_stream: String,
    /// How many copies of the stream JetStream keeps, when the first node
    /// creates it (3 for production, on three NATS servers).
    #[arg(long, value_name = "N", default_value_t = 1, value_parser = parse_positive::<usize>,
          requires = "cluster")]
    cluster_replicas: usize,
    /// How many log entries apart the cluster's snapshots are taken (the
    /// log is trimmed behind the older of the two kept).
    #[arg(long, value_name = "N", default_value_t = 10_000, value_parser = parse_positive::<u64>,
          requires = "cluster")]
    cluster_snapshot_every: u64,
}

/// Longest duration accepted on the command line (ten years), so that
/// adding it to a clock reading can never overflow.
const MAX_SECONDS: f64 = 10.0 * 365.0 * 24.0 * 3600.0;

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let seconds: f64 = s
        .parse()
        .map_err(|_| format!("`{s}` is not a number of seconds"))?;
    if !(seconds > 0.0 && seconds <= MAX_SECONDS) {
        return Err(format!(
            "`{s}` must be more than 0 and at most {MAX_SECONDS} seconds"
        ));
    }
    Duration::try_from_secs_f64(seconds).map_err(|e| format!("`{s}`: {e}"))
}

/// A whole number above 0, of any unsigned type.
fn parse_positive<T: std::str::FromStr + Default + PartialOrd>(s: &str) -> Result<T, String> {
    match s.parse::<T>() {
        Ok(n) if n > T::default() => Ok(n),
        _ => Err(format!("`{s}` is not a whole number above 0")),
    }
}

fn parse_max_line(s: &str) -> Result<usize, String> {
    let n = parse_positive::<usize>(s)?;
    if n > defaults::MAX_LINE_LIMIT {
        return Err(format!("`{s}` is more than {}", defaults::MAX_LINE_LIMIT));
    }
    Ok(n)
}

/// A network for `--trust`, or `none`.
fn parse_trust(s: &str) -> Result<Option<Cidr>, String> {
    if s == "none" {
        return Ok(None);
    }
    s.parse().map(Some)
}

/// The address `--bind` names with `port`: an IP address as it is, a host
/// name's first address.
fn resolve(host: &str, port: u16) -> Result<SocketAddr, String> {
    (host, port)
        .to_socket_addrs()
        .map_err(|e| format!("cannot resolve --bind {host}: {e}"))?
        .next()
        .ok_or_else(|| format!("cannot resolve --bind {host}: it has no address"))
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Silent by default, except for damage found in the data directory:
    // an operator must hear about records cut off a journal.
    let filter = env_logger::Env::default()
        .default_filter_or("confab::journal=warn,confab::credentials=warn,confab::reload=warn");
    env_logger::Builder::from_env(filter).init();
    match run(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("confab-server: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> Result<(), String> {
    let accounts = confab::credentials::load(&args.credentials).map_err(|e| match e {
        // The OS's reason names only the path: say which file it is.
        CredentialsError::Io { .. } => format!("credentials file {e}"),
        e => e.to_string(),
    })?;
    match confab::fdlimit::raise_to_hard_limit() {
        Ok(limit) => info!("open-file limit: {limit}"),
        Err(e) => warn!("cannot raise the open-file limit: {e}"),
    }
    let bind = resolve(&args.bind, args.port)?;
    let mut config = Config::new(bind, args.block_duration, args.timeout);
    config.chat.login_timeout = args.login_timeout;
    config.chat.max_failures_per_ip = args.max_failures_per_ip;
    config.chat.mailbox_max = args.mailbox_max;
    config.chat.store_max = args.store_max;
    config.chat.prune_removed = args.prune_removed;
    config.max_line = args.max_line;
    config.max_pending = args.max_pending;
    config.max_clients = args.max_clients;
    config.shutdown_grace = args.shutdown_grace;
    if args.trust.len() > 1 && args.trust.contains(&None) {
        return Err("--trust none trusts nobody: it cannot be given with networks".into());
    }
    config.trust = Trust::new(args.trust.into_iter().flatten().collect());
    config.max_per_ip = args.max_per_ip;
    config.rate = Rate::new(args.rate, args.burst);
    config.backlog = args.backlog;
    config.presence_delay = Duration::from_millis(args.presence_delay);
    if (args.tls_cert.is_some() || args.plain_port.is_some()) && !args.tls {
        return Err("--tls-cert, --tls-key and --plain-port go with --tls".into());
    }
    config.tls = args.tls.then_some(match (args.tls_cert, args.tls_key) {
        (Some(cert), Some(key)) => IdentitySource::Files { cert, key },
        _ => IdentitySource::Generated,
    });
    config.plain_port = args.plain_port;
    config.web_port = args.web_port;
    config.web_origins = args.web_origin;
    config.credentials = Some(args.credentials.clone());
    if let Some(url) = &args.cluster {
        let mut cluster = ClusterConfig::new(url);
        cluster.node = args.node.clone();
        cluster.node_timeout = args.node_timeout;
        cluster.stream = args.cluster_stream.clone();
        cluster.replicas = args.cluster_replicas;
        cluster.snapshot_every = args.cluster_snapshot_every;
        config.cluster = Some(cluster);
    } else if !args.ephemeral {
        config.storage = Storage::Durable {
            dir: args.data_dir,
            options: JournalOptions {
                fsync: args.fsync,
                compact_at: args.compact_at,
            },
            on_damage: if args.recover {
                OnDamage::Recover
            } else {
                OnDamage::Stop
            },
        };
    }
    let total = accounts.len();
    let clear = accounts
        .iter()
        .filter(|a| !confab::passwords::is_hashed(&a.password))
        .count();
    let mut server = Server::bind(config, accounts).map_err(|e| e.to_string())?;
    server
        .handle_signals()
        .map_err(|e| format!("cannot handle signals: {e}"))?;
    if clear > 0 {
        let file = args.credentials.display();
        warn!(
            target: "confab::credentials",
            "{clear} of {} passwords in {file} are stored in clear; hash them with \
             `confab-passwd upgrade {file}`",
            total
        );
    }
    let addr = server.local_addr().map_err(|e| e.to_string())?;
    if let Some(plain) = server.plain_addr() {
        let plain = plain.map_err(|e| e.to_string())?;
        eprintln!("listening in plaintext on {plain}");
    }
    if let Some(web) = server.web_addr() {
        let web = web.map_err(|e| e.to_string())?;
        eprintln!("web listening on {web}");
    }
    if let Some(fingerprint) = server.tls_fingerprint() {
        eprintln!("tls fingerprint {fingerprint}");
    }
    eprintln!("listening on {addr}");
    server.run().map_err(|e| format!("poll loop failed: {e}"))
}
