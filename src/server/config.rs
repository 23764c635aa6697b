//! What a server is told at start: where to listen, the domain's limits,
//! the connection limits, and where its durable state lives, with the
//! defaults the command line and the tests share.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::chat::ChatConfig;
use crate::cluster::ClusterConfig;
use crate::identity::IdentitySource;
use crate::journal::{JournalOptions, OnDamage};
use crate::rate::Rate;
use crate::trust::Trust;

/// Everything the server needs besides the accounts.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where to listen; port 0 picks a free port.
    pub bind: SocketAddr,
    /// Ban and idle durations.
    pub chat: ChatConfig,
    /// Longest accepted line in bytes, not counting `\n` and one `\r`.
    pub max_line: usize,
    /// Most unsent output bytes per connection before it is cut off.
    pub max_pending: usize,
    /// Most connections at once; one more is told the server is full.
    pub max_clients: usize,
    /// How long a shutdown may spend flushing `Server is shutting down`
    /// and other pending output before it closes what is left.
    pub shutdown_grace: Duration,
    /// Where mailboxes, block lists and bans are kept.
    pub storage: Storage,
    /// Networks whose clients skip the per-address limits.
    pub trust: Trust,
    /// Most connections at once from one untrusted address.
    pub max_per_ip: usize,
    /// The command rate of a connection from an untrusted address.
    pub rate: Rate,
    /// Handshakes the kernel may hold for the listener before it accepts
    /// them (clamped by the kernel's `somaxconn`).
    pub backlog: u32,
    /// How long presence lines may be held so that several reach a user
    /// in one write (zero: at once).
    pub presence_delay: Duration,
    /// The credentials file the accounts came from, read again on SIGHUP;
    /// `None`: the accounts are fixed.
    pub credentials: Option<PathBuf>,
    /// The certificate the listener speaks TLS with; `None`: plaintext.
    pub tls: Option<IdentitySource>,
    /// A plaintext listener beside the TLS one, on the same address with
    /// this port (0 picks a free one); only with [`Config::tls`].
    pub plain_port: Option<u16>,
    /// A web listener (the page and WebSocket sessions) on the same
    /// address with this port (0 picks a free one); HTTPS with
    /// [`Config::tls`].
    pub web_port: Option<u16>,
    /// Origins whose pages may open WebSocket sessions besides the page's
    /// own (`--web-origin`; see [`super::parse_origin`]).
    pub web_origins: Vec<String>,
    /// The cluster this server is a node of (`--cluster`); `None`: a
    /// single server.
    pub cluster: Option<ClusterConfig>,
}

impl Config {
    /// A server on `bind` with these durations and every other setting at
    /// its default (see [`defaults`]), keeping everything in memory.
    pub fn new(bind: SocketAddr, block_duration: Duration, timeout: Duration) -> Config {
        Config {
            bind,
            chat: ChatConfig::new(block_duration, timeout),
            max_line: defaults::MAX_LINE,
            max_pending: defaults::MAX_PENDING,
            max_clients: defaults::MAX_CLIENTS,
            shutdown_grace: defaults::SHUTDOWN_GRACE,
            storage: Storage::Ephemeral,
            trust: Trust::loopback(),
            max_per_ip: defaults::MAX_PER_IP,
            rate: Rate::new(defaults::RATE, defaults::BURST),
            backlog: defaults::BACKLOG,
            presence_delay: Duration::from_millis(defaults::PRESENCE_DELAY_MS),
            credentials: None,
            tls: None,
            plain_port: None,
            web_port: None,
            web_origins: Vec::new(),
            cluster: None,
        }
    }
}

impl Storage {
    /// The data directory, unless the storage is ephemeral.
    pub fn dir(&self) -> Option<&std::path::Path> {
        match self {
            Storage::Ephemeral => None,
            Storage::Durable { dir, .. } => Some(dir),
        }
    }
}

/// Where the durable state lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Storage {
    /// In memory only: a restart forgets mailboxes, block lists and bans.
    Ephemeral,
    /// In a data directory (see [`crate::journal`]), replayed at start.
    Durable {
        /// The data directory; created if missing.
        dir: PathBuf,
        /// How the journal is written.
        options: JournalOptions,
        /// What the start does with damage other than a torn tail.
        on_damage: OnDamage,
    },
}

/// Defaults of the limits, shared by the command line and tests.
pub mod defaults {
    /// `--max-line`.
    pub const MAX_LINE: usize = 1024;
    /// `--max-pending`: 1 MiB.
    pub const MAX_PENDING: usize = 1 << 20;
    /// `--max-clients`.
    pub const MAX_CLIENTS: usize = 10_000;
    /// `--shutdown-grace`: 2 s.
    pub const SHUTDOWN_GRACE: std::time::Duration = std::time::Duration::from_secs(2);
    /// `--mailbox-max`.
    pub const MAILBOX_MAX: usize = 1000;
    /// `--store-max`: 128 MiB.
    pub const STORE_MAX: u64 = 128 << 20;
    /// `--login-timeout`: 60 s.
    pub const LOGIN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);
    /// `--max-failures-per-ip`.
    pub const MAX_FAILURES_PER_IP: u32 = 10;
    /// `--max-per-ip`.
    pub const MAX_PER_IP: usize = 16;
    /// `--rate`: lines a second.
    pub const RATE: u32 = 20;
    /// `--burst`.
    pub const BURST: u32 = 40;
    /// `--backlog`: the listen backlog.
    pub const BACKLOG: u32 = 1024;
    /// `--presence-delay`, in milliseconds.
    pub const PRESENCE_DELAY_MS: u64 = 10;
    /// The largest `--max-line`: a journal record must stay far below
    /// what reading a journal accepts as one record.
    pub const MAX_LINE_LIMIT: usize = 1 << 20;
    /// `--compact-at`: 64 MiB.
    pub const COMPACT_AT: u64 = 64 << 20;
    /// `--data-dir`.
    pub const DATA_DIR: &str = "./confab-data";
}
