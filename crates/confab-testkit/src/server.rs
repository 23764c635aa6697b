//! The in-process server: a [`Server`] on its own thread of the test's (or
//! the bench's) process, on `127.0.0.1` and a free port. The tests use it
//! with the test accounts and short bans; the load tests and the throughput
//! bench with generated accounts and timeouts no run meets
//! ([`Options::for_accounts`]), in plaintext or over TLS ([`Options::tls`]).

use std::fs;
use std::io::{self, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use confab::cluster::ClusterConfig;
use confab::credentials::Account;
use confab::identity::IdentitySource;
use confab::journal::record::{self, Record};
use confab::journal::{Fsync, JournalOptions, OnDamage};
use confab::server::{defaults, Config, ConnectionGauge, Server, ShutdownHandle, Storage};

use crate::accounts::{accounts, password};
use crate::client::Client;
use crate::wait::wait_until;
use crate::web::{WebClient, WebSocketStream};

/// Longest the server may take to stop after being asked to.
const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// Ban and idle durations of [`Options::for_accounts`]: long enough that
/// no run meets them.
const LONG: Duration = Duration::from_secs(3600);

/// Server settings; the default has the test accounts, short bans and a
/// long idle timeout, so that only the tests about inactivity see it.
#[derive(Debug, Clone)]
pub struct Options {
    /// The accounts the server knows.
    pub accounts: Vec<Account>,
    /// BLOCK_DURATION: how long three wrong passwords ban a username.
    pub block_duration: Duration,
    /// TIMEOUT: how long a connection may stay silent.
    pub timeout: Duration,
    /// `--max-line`.
    pub max_line: usize,
    /// `--max-pending`.
    pub max_pending: usize,
    /// `--max-clients`.
    pub max_clients: usize,
    /// `--mailbox-max`.
    pub mailbox_max: usize,
    /// `--store-max`.
    pub store_max: u64,
    /// `--backlog`: handshakes the listener holds before they are
    /// accepted.
    pub backlog: u32,
    /// `--presence-delay`: how long presence lines may be held to go out
    /// together.
    pub presence_delay: Duration,
    /// Ephemeral unless a test asks for a data directory.
    pub storage: Storage,
    /// `--tls`: the port speaks TLS with a certificate the server makes
    /// (in memory, for ephemeral storage), whose fingerprint
    /// [`TestServer::fingerprint`] gives clients to pin.
    pub tls: bool,
    /// `--web-port 0`: the page and WebSocket sessions on a port of their
    /// own ([`TestServer::web_addr`]).
    pub web: bool,
    /// `--web-origin`, for each of these.
    pub web_origins: Vec<String>,
    /// `--cluster`: the server is a node of this cluster (with ephemeral
    /// storage), and [`TestServer::try_with`] returns once it has joined.
    pub cluster: Option<ClusterConfig>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            accounts: accounts(),
            block_duration: Duration::from_millis(500),
            timeout: Duration::from_secs(30),
            max_line: defaults::MAX_LINE,
            max_pending: defaults::MAX_PENDING,
            max_clients: defaults::MAX_CLIENTS,
            mailbox_max: defaults::MAILBOX_MAX,
            store_max: defaults::STORE_MAX,
            backlog: defaults::BACKLOG,
            presence_delay: Duration::from_millis(defaults::PRESENCE_DELAY_MS),
            storage: Storage::Ephemeral,
            tls: false,
            web: false,
            web_origins: Vec::new(),
            cluster: None,
        }
    }
}

impl Options {
    /// A server for `accounts` (generated ones, for load runs) with ban and
    /// idle timeouts of an hour, which no run meets, and room for every
    /// account to be connected at once; the rest as in the default.
    pub fn for_accounts(accounts: Vec<Account>) -> Options {
        Options {
            block_duration: LONG,
            timeout: LONG,
            max_clients: defaults::MAX_CLIENTS.max(accounts.len() + 100),
            accounts,
            ..Options::default()
        }
    }
}

/// Durable storage in `dir`: fsync on every commit, the default compaction
/// size, and a start refused on damage, as `confab-server --data-dir` has
/// by default.
pub fn journal_in(dir: &Path) -> Storage {
    Storage::Durable {
        dir: dir.to_path_buf(),
        options: JournalOptions {
            fsync: Fsync::Always,
            compact_at: defaults::COMPACT_AT,
        },
        on_damage: OnDamage::Stop,
    }
}

/// The newest journal file of the data directory `data` (an older one
/// may be left if the server was killed before its start-up compaction
/// finished deleting it); panics if there is none.
pub fn newest_journal(data: &Path) -> PathBuf {
    let mut journals: Vec<PathBuf> = fs::read_dir(data)
        .expect("list the data directory")
        .map(|entry| entry.expect("an entry").path())
        .filter(|path| {
            path.file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with("journal-"))
        })
        .collect();
    journals.sort();
    journals.pop().expect("a journal")
}

/// Stores a message from `sender` to `recipient`, stored at
/// `stored_unix_ms` (milliseconds since the epoch: mail of an earlier day,
/// say), in the data directory `data` of a stopped server whose mailbox for
/// `recipient` is empty: appended to its newest journal as the server would
/// have written it then.
pub fn store_mail(data: &Path, recipient: &str, sender: &str, text: &str, stored_unix_ms: u64) {
    let mut bytes = Vec::new();
    record::encode(
        &Record::MailboxAppend {
            recipient,
            seq: Some(1),
            stored_unix_ms: Some(stored_unix_ms),
            sender,
            text,
        },
        &mut bytes,
    );
    let journal = newest_journal(data);
    let mut file = fs::OpenOptions::new()
        .append(true)
        .open(&journal)
        .expect("open the journal");
    file.write_all(&bytes).expect("append to the journal");
}

/// A server running on its own thread; dropping it shuts the server down
/// and joins the thread, failing the test if the server failed.
pub struct TestServer {
    /// Where the server listens.
    pub addr: SocketAddr,
    /// How many connections the server holds (updated once per loop
    /// iteration).
    pub gauge: ConnectionGauge,
    /// The fingerprint of the server's certificate if it speaks TLS
    /// ([`Options::tls`]), for clients to pin.
    pub fingerprint: Option<String>,
    /// Where the web listener is, with [`Options::web`].
    pub web_addr: Option<SocketAddr>,
    handle: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl TestServer {
    /// A server with the default [`Options`].
    pub fn start() -> TestServer {
        TestServer::with(Options::default())
    }

    /// A server with `options`; panics if it cannot start.
    pub fn with(options: Options) -> TestServer {
        TestServer::try_with(options).expect("start the server")
    }

    /// A server with `options`, or why it could not start.
    pub fn try_with(options: Options) -> io::Result<TestServer> {
        let bind = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
        let mut config = Config::new(bind, options.block_duration, options.timeout);
        config.max_line = options.max_line;
        config.max_pending = options.max_pending;
        config.max_clients = options.max_clients;
        config.chat.mailbox_max = options.mailbox_max;
        config.chat.store_max = options.store_max;
        config.backlog = options.backlog;
        config.presence_delay = options.presence_delay;
        config.storage = options.storage;
        config.tls = options.tls.then_some(IdentitySource::Generated);
        config.web_port = options.web.then_some(0);
        config.web_origins = options.web_origins;
        config.cluster = options.cluster;
        let mut server = Server::bind(config, options.accounts)?;
        let addr = server.local_addr()?;
        let web_addr = server.web_addr().transpose()?;
        let fingerprint = server.tls_fingerprint();
        let handle = server.shutdown_handle();
        let gauge = server.connection_gauge();
        let thread = thread::Builder::new()
            .name("confab-server".into())
            .spawn(move || server.run())?;
        Ok(TestServer {
            addr,
            gauge,
            fingerprint,
            web_addr,
            handle,
            thread: Some(thread),
        })
    }

    /// A new connection, a TLS session pinning the server's certificate
    /// if it speaks TLS; nothing read yet.
    pub fn connect(&self) -> Client {
        match &self.fingerprint {
            Some(fingerprint) => Client::connect_tls(self.addr, fingerprint),
            None => Client::connect(self.addr),
        }
    }

    /// A WebSocket session on the web port ([`Options::web`]), `wss` if
    /// the server speaks TLS; nothing read yet.
    pub fn web(&self) -> WebClient {
        let addr = self.web_addr.expect("a server with a web port");
        let stream = match &self.fingerprint {
            Some(fingerprint) => WebSocketStream::connect_tls(addr, fingerprint),
            None => WebSocketStream::connect(addr, None),
        };
        WebClient::open(stream, addr, None).expect("open /ws")
    }

    /// A WebSocket session logged in as `user` (a test account).
    pub fn web_login(&self, user: &str) -> WebClient {
        let mut client = self.web();
        client.login(user, password(user));
        client
    }

    /// A new connection logged in as `user` (a test account).
    pub fn login(&self, user: &str) -> Client {
        let mut client = self.connect();
        client.login(user, password(user));
        client
    }

    /// Waits until the server holds exactly `n` connections, at most
    /// [`crate::IO_TIMEOUT`].
    pub fn wait_for_connections(&self, n: usize) {
        wait_until(&format!("the server to hold {n} connections"), || {
            self.gauge.get() == n
        });
    }

    /// Panics if the server thread has ended (returned or panicked).
    pub fn assert_running(&self) {
        let thread = self.thread.as_ref().expect("server thread");
        assert!(!thread.is_finished(), "the server thread has ended");
    }

    /// Shuts the server down and returns what `run` returned, or an error
    /// if it did not stop within 10 s or its thread panicked.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        // The flag is set even if waking the loop fails; the deadline
        // below catches a loop that never notices it.
        let _ = self.handle.shutdown();
        let deadline = Instant::now() + STOP_TIMEOUT;
        while !thread.is_finished() {
            if Instant::now() >= deadline {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    format!("the server did not stop within {STOP_TIMEOUT:?}"),
                ));
            }
            thread::sleep(Duration::from_millis(5));
        }
        thread
            .join()
            .map_err(|_| io::Error::other("the server thread panicked"))?
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if thread::panicking() {
            // Do not turn one failure into an abort; just ask it to stop.
            let _ = self.handle.shutdown();
            return;
        }
        if let Err(e) = self.stop_and_join() {
            panic!("the server failed: {e}");
        }
    }
}
