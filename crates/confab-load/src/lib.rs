//! confab-load: load generation for confab, many clients driven from one
//! thread, and what the server delivered to them; the soak engine
//! ([`soak`]); the same workloads against nats-server and Redis
//! ([`peers`]); behind the `confab-load` and `confab-peer` binaries, the
//! soak example and the throughput bench.
//!
//! A run ([`run`]) connects every client of a [`Workload`] on one `mio`
//! loop (the `engine` module), logs them in with generated accounts
//! ([`accounts`]), waits until the presence chatter of the logins has
//! settled, then drives the workload for [`LoadConfig::duration`] (or
//! [`LoadConfig::messages`]), stops sending, and drains for at most
//! [`LoadConfig::drain`]. In [`Workload::Storm`] the logins and their
//! chatter are what is measured, and the `storm` module checks what every
//! client heard; in [`Workload::Handshakes`], connections themselves. With
//! [`LoadConfig::tls`] every client speaks TLS (the `tls` module), pinning
//! the server's certificate. With [`LoadConfig::peer_target`], `direct`
//! runs against two nodes of a cluster, each pair's sender on one and its
//! receiver on the other. Every message carries its send time (nanoseconds
//! since the run started, 16 hex digits at the start of the text), so the
//! receiver of each delivery records its latency. Senders keep a bounded
//! number of bytes in flight ([`LoadConfig::window`]), far below the
//! server's 1 MiB slow-reader limit, so the server never has a reason to cut
//! a client off; anything it does not deliver by the end of the drain is
//! reported as lost.
//!
//! Every phase has a deadline, and runs only ever talk to loopback
//! addresses. The server's memory and descriptors come from
//! `confab_testkit::procfs`, the soak's random choices from
//! `confab_testkit::Rng`.

mod ceiling;
mod client;
mod engine;
pub mod peers;
mod report;
pub mod soak;
mod storm;
mod tls;
mod wire;

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use confab::credentials::Account;
use confab::protocol::Reply;
use confab_testkit::procfs::memory;

pub use report::{Latency, Report, ServerMemory};
pub use wire::find_newline;

use engine::Engine;

/// Bytes of the send timestamp at the start of every message text: the
/// nanoseconds since the run started, as 16 lowercase hex digits.
pub const STAMP_LEN: usize = 16;

/// Longest message text a run sends, so that `message <user> <text>` stays
/// under the server's default 1024-byte line limit.
pub const MAX_MESSAGE_SIZE: usize = 960;

/// How long the clients must hear nothing before the login chatter counts
/// as settled and the measurement starts.
const QUIET: Duration = Duration::from_millis(100);

/// Refuses a run against a `target` that is not on this machine (runs
/// that need none pass `None`), or with a message size that cannot hold
/// the send stamp or would overflow the server's line limit; `runs` names
/// the runs in the error.
fn check_target_and_size(
    target: Option<SocketAddr>,
    message_size: usize,
    runs: &str,
) -> io::Result<()> {
    let invalid = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
    if let Some(target) = target.filter(|t| !t.ip().is_loopback()) {
        return invalid(format!(
            "target {target} is not a loopback address; {runs} stay on this machine"
        ));
    }
    if !(STAMP_LEN..=MAX_MESSAGE_SIZE).contains(&message_size) {
        return invalid(format!(
            "message size {message_size} is not between {STAMP_LEN} and {MAX_MESSAGE_SIZE}"
        ));
    }
    Ok(())
}

/// A named load pattern. The names are those of `confab-load --workload`
/// and of `cargo bench`'s filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Workload {
    /// One broadcaster pipelines `broadcast <text>` to CLIENTS logged-in
    /// listeners (default 1,000), keeping at most WINDOW bytes in flight
    /// to the slowest listener. Figure: deliveries/s (lines received by
    /// listeners). Needs CLIENTS + 1 accounts.
    Fanout,
    /// CLIENTS pairs (default 100): each sender pipelines
    /// `message <partner> <text>` to its partner, at most WINDOW bytes in
    /// flight per pair. Figure: messages/s delivered. Needs 2 × CLIENTS
    /// accounts.
    Direct,
    /// CLIENTS clients (default 50, rounded down to even) in pairs; each
    /// starts with one message to its partner and answers every message it
    /// receives with one, so CLIENTS messages are always in flight, like
    /// unpipelined request/response clients. Figure: messages/s and
    /// latency percentiles. Needs CLIENTS accounts.
    Pingpong,
    /// CLIENTS senders (default 100), each pipelining
    /// `message <user> <text>` to its own user who never logs in, at most
    /// WINDOW bytes of acknowledgements in flight. Figure: messages/s
    /// acknowledged (`<user> is offline. Your message will be delivered
    /// ...`), each one stored in a mailbox and, on a server with a data
    /// directory, committed to its journal first; latency is send to
    /// acknowledgement. Needs 2 × CLIENTS accounts, and a server whose
    /// `--mailbox-max` holds what a run sends.
    Offline,
    /// CHURNERS clients (default 10) connect, log in, log out and repeat
    /// while CLIENTS other users stay online (default 1,000) and receive
    /// every `logged in`/`logged out` presence line, which is counted and
    /// checked for loss. Figure: logins/s; latency is connect to welcome.
    /// Needs CLIENTS + CHURNERS accounts.
    Logins,
    /// A login storm: CLIENTS users (default 5,000) connect and log in,
    /// at most IN_FLIGHT logins in progress at once (from connect to
    /// welcome), and stay online; each login is announced to everyone
    /// already online, n(n − 1)/2 `logged in` lines in all. Every client
    /// records the logins it hears of; at the end each must have heard
    /// exactly the logins after its own, in the server's order, once each,
    /// and anything else is reported as lost, duplicated or misordered.
    /// Figure: seconds from the first connect until the last expected
    /// presence line arrived (and logins/s up to the last welcome); latency
    /// is connect to welcome. Needs CLIENTS accounts.
    Storm,
    /// CLIENTS clients (default 50) each connect, wait for the
    /// `Username: ` prompt (with --tls-fingerprint, after a full TLS
    /// handshake) and reset the connection, over and over: CLIENTS
    /// connections in progress at once. Figure: connections/s (prompts
    /// received); latency is connect to prompt. The reset leaves no port
    /// in TIME_WAIT, where a minute of closed connections would hold the
    /// ephemeral range. Needs no accounts.
    Handshakes,
    /// CLIENTS logged-in connections that do nothing (default 10,000),
    /// held for DURATION once their login chatter settled. Figure: growth
    /// of the server's resident memory per connection over the empty
    /// server; needs --server-pid. Needs CLIENTS accounts.
    Idle,
    /// No chat server: a minimal in-process `mio` loop writes pre-built
    /// lines shaped like fanout's deliveries to CLIENTS sockets (default
    /// 1,000), which the load engine reads and parses exactly as in
    /// `fanout`. Figure:
    /// deliveries/s, this machine's physical fan-out limit. Ignores
    /// --target.
    Ceiling,
}

impl Workload {
    /// Every workload, in the order the benchmark prints them.
    pub const ALL: [Workload; 9] = [
        Workload::Fanout,
        Workload::Storm,
        Workload::Direct,
        Workload::Pingpong,
        Workload::Offline,
        Workload::Logins,
        Workload::Handshakes,
        Workload::Idle,
        Workload::Ceiling,
    ];

    /// The workload's name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Fanout => "fanout",
            Workload::Direct => "direct",
            Workload::Pingpong => "pingpong",
            Workload::Offline => "offline",
            Workload::Logins => "logins",
            Workload::Storm => "storm",
            Workload::Handshakes => "handshakes",
            Workload::Idle => "idle",
            Workload::Ceiling => "ceiling",
        }
    }

    /// The default of [`LoadConfig::clients`]: listeners, pairs, clients,
    /// senders, online users, users logging in, connections in progress or
    /// idle connections, as the workload counts them.
    pub fn default_clients(self) -> usize {
        match self {
            Workload::Fanout | Workload::Logins | Workload::Ceiling => 1000,
            Workload::Direct | Workload::Offline => 100,
            Workload::Pingpong | Workload::Handshakes => 50,
            Workload::Storm => 5000,
            Workload::Idle => 10_000,
        }
    }
}

/// Everything a load run needs.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// What to do.
    pub workload: Workload,
    /// The server; must be a loopback address. Unused by
    /// [`Workload::Ceiling`], which starts its own writer.
    pub target: SocketAddr,
    /// The workload's main count (see [`Workload::default_clients`]).
    pub clients: usize,
    /// Clients that log in and out repeatedly in [`Workload::Logins`].
    pub churners: usize,
    /// Most logins in progress at once in [`Workload::Storm`], each from
    /// its connect until its welcome.
    pub in_flight: usize,
    /// How long to send (for [`Workload::Idle`]: how long to hold the
    /// connections before reading the server's memory).
    pub duration: Duration,
    /// Stop sending after this many messages (or logins, or connections)
    /// in total, if that comes before `duration`.
    pub messages: Option<u64>,
    /// Bytes of each message text, the timestamp included; at least
    /// [`STAMP_LEN`], at most [`MAX_MESSAGE_SIZE`].
    pub message_size: usize,
    /// Most bytes of delivered lines a sender keeps in flight towards one
    /// receiver (towards the slowest, for broadcasts and presence).
    pub window: usize,
    /// After sending stops, how long to wait for what is still in flight
    /// (after a storm: the longest it listens for stray presence lines).
    pub drain: Duration,
    /// How long connecting and logging in every client may take, the
    /// settling of their presence chatter included (in
    /// [`Workload::Storm`]: the whole storm, until the last presence line).
    pub setup_timeout: Duration,
    /// The server's process id, to report its memory (`/proc/PID/status`).
    pub server_pid: Option<u32>,
    /// Speak TLS, trusting only the server certificate of this
    /// fingerprint (`SHA256:...`, as the server prints it); `None`:
    /// plaintext. Every connection makes a full handshake.
    pub tls: Option<String>,
    /// Speak WebSocket: `target` is the server's web port, and every
    /// connection upgrades `/ws` and then sends and receives its lines as
    /// text messages, as the browser page does.
    pub web: bool,
    /// A second node of the same cluster as `target`, for
    /// [`Workload::Direct`] only (loopback, plaintext): half the pairs
    /// send from `target` to users logged in here and the other half from
    /// here to `target`, so that every message crosses from one node to
    /// the other through the cluster's log. `None`: every client is on
    /// `target`.
    pub peer_target: Option<SocketAddr>,
}

impl LoadConfig {
    /// The defaults for `workload` against `target`: the workload's default
    /// clients, 10 churners, 100 logins in flight, 5 s, 64-byte messages, a
    /// 64 KiB window, 2 s of drain, 60 s to set up, no message limit, no
    /// server memory, plaintext TCP, one server.
    pub fn new(workload: Workload, target: SocketAddr) -> LoadConfig {
        LoadConfig {
            workload,
            target,
            clients: workload.default_clients(),
            churners: 10,
            in_flight: 100,
            duration: Duration::from_secs(5),
            messages: None,
            message_size: 64,
            window: 64 * 1024,
            drain: Duration::from_secs(2),
            setup_timeout: Duration::from_secs(60),
            server_pid: None,
            tls: None,
            web: false,
            peer_target: None,
        }
    }

    /// How many accounts (`user0001`, ...) the server must know for this
    /// run.
    pub fn users_needed(&self) -> usize {
        match self.workload {
            Workload::Fanout => self.clients + 1,
            Workload::Direct | Workload::Offline => 2 * self.clients,
            Workload::Pingpong => self.clients / 2 * 2,
            Workload::Logins => self.clients + self.churners,
            Workload::Idle | Workload::Storm => self.clients,
            Workload::Handshakes | Workload::Ceiling => 0,
        }
    }

    fn validate(&self) -> io::Result<()> {
        let invalid = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        let target = (self.workload != Workload::Ceiling).then_some(self.target);
        check_target_and_size(target, self.message_size, "load runs")?;
        if let Some(peer) = self.peer_target {
            check_target_and_size(Some(peer), self.message_size, "load runs")?;
            if self.workload != Workload::Direct {
                return invalid(format!(
                    "a peer target is for direct only, not {}",
                    self.workload.name()
                ));
            }
            if self.tls.is_some() {
                return invalid(
                    "a peer target speaks no TLS: one fingerprint pins one node".into(),
                );
            }
        }
        let least = match self.workload {
            Workload::Pingpong => 2,
            Workload::Idle | Workload::Logins => 0,
            _ => 1,
        };
        if self.clients < least {
            return invalid(format!(
                "{} needs at least {least} clients",
                self.workload.name()
            ));
        }
        if self.workload == Workload::Logins && self.churners == 0 {
            return invalid("logins needs at least 1 churner".into());
        }
        if self.workload == Workload::Storm && self.in_flight == 0 {
            return invalid("storm needs at least 1 login in flight".into());
        }
        if self.workload == Workload::Storm && u32::try_from(self.clients).is_err() {
            return invalid(format!("storm cannot count {} clients", self.clients));
        }
        if self.workload == Workload::Ceiling && self.tls.is_some() {
            return invalid("ceiling speaks no TLS: its writer is a bare socket loop".into());
        }
        Ok(())
    }
}

/// The generated accounts `user0001 pw0001`, `user0002 pw0002`, ... (more
/// digits past 9,999).
pub fn accounts(n: usize) -> Vec<Account> {
    (1..=n)
        .map(|i| Account {
            username: format!("user{i:04}"),
            password: format!("pw{i:04}"),
        })
        .collect()
}

/// The index in [`accounts`] of the generated account named `name`, if
/// `name` is spelled exactly as [`accounts`] spells one.
fn account_index(name: &[u8]) -> Option<usize> {
    let digits = name.strip_prefix(b"user")?;
    // Spelled as `accounts` spells it: four digits, or more without a
    // leading zero (at most 19, which any u64 holds). A storm checks
    // every line with this, so it is a plain loop.
    let spelled = match digits.len() {
        4 => true,
        5..=19 => digits[0] != b'0',
        _ => false,
    };
    if !spelled {
        return None;
    }
    let mut number = 0u64;
    for &digit in digits {
        let value = digit.wrapping_sub(b'0');
        if value > 9 {
            return None;
        }
        number = number * 10 + u64::from(value);
    }
    usize::try_from(number.checked_sub(1)?).ok()
}

/// Writes the first `n` generated [`accounts`] as a credentials file for
/// `confab-server --credentials`.
pub fn write_credentials(path: &Path, n: usize) -> io::Result<()> {
    let mut out = BufWriter::new(File::create(path)?);
    for account in accounts(n) {
        writeln!(out, "{} {}", account.username, account.password)?;
    }
    out.into_inner().map_err(|e| e.into_error())?.sync_all()
}

/// What every line delivering a message from `sender` starts with: the
/// message with no text.
fn message_prefix(sender: &str) -> Vec<u8> {
    Reply::Message {
        from: sender,
        text: "",
    }
    .to_string()
    .into_bytes()
}

/// The line a receiver gets for one message of `message_size` bytes from
/// `sender`, with a zero timestamp: `<sender>: <stamp><padding>\n`.
fn delivered_line(sender: &str, message_size: usize) -> Vec<u8> {
    let mut line = message_prefix(sender);
    line.resize(line.len() + STAMP_LEN, b'0');
    line.resize(line.len() + message_size - STAMP_LEN, b'x');
    line.push(b'\n');
    line
}

/// Runs one load run to the end and reports it. Fails if a client cannot
/// connect or log in within [`LoadConfig::setup_timeout`] (or the server's
/// memory cannot be read); what happens after the setup — disconnects,
/// unexpected lines, lost messages — is reported, not an error.
///
/// The run takes at most `setup_timeout + duration + drain` plus the time to
/// close the connections (a storm at most `setup_timeout + drain`).
pub fn run(config: &LoadConfig) -> io::Result<Report> {
    config.validate()?;
    let before = config.server_pid.map(memory).transpose()?;
    let setup_deadline = Instant::now() + config.setup_timeout;
    let line = delivered_line(&accounts(1)[0].username, config.message_size);
    let ceiling = if config.workload == Workload::Ceiling {
        let window_lines = (config.window / line.len()).max(1) as u64;
        Some(ceiling::Ceiling::start(
            config.clients,
            &line,
            window_lines,
            config.duration,
            config.setup_timeout,
        )?)
    } else {
        None
    };
    let target = ceiling.as_ref().map_or(config.target, |c| c.addr());
    let progress = ceiling.as_ref().map(|c| c.progress());
    let mut engine = Engine::new(config, target, progress)?;
    let start = if config.workload == Workload::Storm {
        let start = engine.storm(setup_deadline)?;
        // Anything heard after the last expected line is a fault to count.
        engine.settle(QUIET, Instant::now() + config.drain)?;
        start
    } else {
        engine.log_in_all(setup_deadline)?;
        // The ceiling's writer starts at once, and handshakes log nobody
        // in: there is no chatter to wait for.
        if !matches!(config.workload, Workload::Ceiling | Workload::Handshakes) {
            engine.settle(QUIET, setup_deadline)?;
        }
        let start = engine.measure()?;
        engine.drain()?;
        start
    };
    let written_lines = match ceiling {
        Some(ceiling) => {
            let line_len = line.len() as u64;
            Some(ceiling.finish()?.iter().map(|bytes| bytes / line_len).sum())
        }
        None => None,
    };
    let server_memory = match (config.server_pid, before) {
        (Some(pid), Some(before)) => Some(ServerMemory {
            before,
            after: memory(pid)?,
        }),
        _ => None,
    };
    Ok(engine.report(start, written_lines, server_memory))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_numbered_from_one() {
        let accounts = accounts(2);
        assert_eq!(accounts[0].username, "user0001");
        assert_eq!(accounts[0].password, "pw0001");
        assert_eq!(accounts[1].username, "user0002");
    }

    #[test]
    fn generated_names_map_back_to_their_index() {
        for (i, account) in accounts(12_000).iter().enumerate() {
            assert_eq!(account_index(account.username.as_bytes()), Some(i));
        }
        for name in [
            "user1",
            "user00001",
            "user0000",
            "user",
            "userx001",
            "user00x1",
            "yoda",
        ] {
            assert_eq!(account_index(name.as_bytes()), None, "{name}");
        }
        assert_eq!(account_index(b"user99999999999999999999999"), None);
    }

    #[test]
    fn delivered_line_has_the_message_size() {
        let line = delivered_line("user0001", 20);
        assert_eq!(line, b"user0001: 0000000000000000xxxx\n");
    }

    #[test]
    fn names_match_the_command_line() {
        use clap::ValueEnum;
        for workload in Workload::ALL {
            let value = workload
                .to_possible_value()
                .expect("every variant is a value");
            assert_eq!(value.get_name(), workload.name());
        }
    }

    #[test]
    fn remote_targets_are_refused() {
        let config = LoadConfig::new(Workload::Direct, "10.0.0.1:9".parse().expect("address"));
        let err = run(&config).expect_err("not loopback");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn peer_targets_are_loopback_and_for_direct_only() {
        let local = "127.0.0.1:9".parse().expect("address");
        let mut config = LoadConfig::new(Workload::Direct, local);
        config.peer_target = Some("10.0.0.1:9".parse().expect("address"));
        let err = run(&config).expect_err("not loopback");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let mut config = LoadConfig::new(Workload::Fanout, local);
        config.peer_target = Some(local);
        let err = run(&config).expect_err("not direct");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let mut config = LoadConfig::new(Workload::Direct, local);
        config.peer_target = Some(local);
        config.tls = Some(format!("SHA256:{}", "A".repeat(43)));
        let err = run(&config).expect_err("not over TLS");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
