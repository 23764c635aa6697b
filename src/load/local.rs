//! A confab server on a thread of this process, for benchmarks and tests.

use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use crate::credentials::Account;
use crate::journal::{Fsync, JournalOptions, OnDamage};
use crate::server::{defaults, Config, Server, ShutdownHandle, Storage};

/// How long the server thread may take to bind.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Ban and idle durations long enough that no run meets them.
const LONG: Duration = Duration::from_secs(3600);

/// A [`Server`] running on its own thread on `127.0.0.1` and a free port,
/// with 1-hour ban and idle timeouts, the default line and backlog limits,
/// and room for every account to be connected at once; ephemeral, or
/// journaling to a data directory. Dropping it shuts the server down and
/// waits for its thread.
pub struct LocalServer {
    addr: SocketAddr,
    shutdown: ShutdownHandle,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl LocalServer {
    /// Starts an ephemeral server that knows `accounts`, with the default
    /// limits.
    pub fn start(accounts: Vec<Account>) -> io::Result<LocalServer> {
        LocalServer::start_with(accounts, |_| {})
    }

    /// Starts a server that knows `accounts` and keeps its durable state in
    /// `dir` (fsync on every commit, the default compaction size), with
    /// unbounded mailboxes and stored mail: for the `offline` workload,
    /// which measures the journal, not the bounds.
    pub fn start_durable(accounts: Vec<Account>, dir: &Path) -> io::Result<LocalServer> {
        let storage = Storage::Durable {
            dir: dir.to_path_buf(),
            options: JournalOptions {
                fsync: Fsync::Always,
                compact_at: defaults::COMPACT_AT,
            },
            on_damage: OnDamage::Stop,
        };
        LocalServer::start_with(accounts, |config| {
            config.storage = storage;
            config.chat.mailbox_max = usize::MAX;
            config.chat.store_max = u64::MAX;
        })
    }

    /// Starts an ephemeral server with default limits, as changed by
    /// `tune`. The server is built on its own thread (it is not `Send`)
    /// and reports its address back.
    fn start_with(
        accounts: Vec<Account>,
        tune: impl FnOnce(&mut Config),
    ) -> io::Result<LocalServer> {
        let mut config = Config::new(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)), LONG, LONG);
        config.max_clients = defaults::MAX_CLIENTS.max(accounts.len() + 100);
        tune(&mut config);
        let (tx, rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name("confab-server".into())
            .spawn(move || {
                let bound = Server::bind(config, accounts)
                    .and_then(|server| Ok((server.local_addr()?, server)));
                match bound {
                    Ok((addr, mut server)) => {
                        // The receiver only goes away if start() gave up.
                        if tx.send(Ok((addr, server.shutdown_handle()))).is_err() {
                            return Ok(());
                        }
                        server.run()
                    }
                    Err(e) => {
                        let _ = tx.send(Err(e));
                        Ok(())
                    }
                }
            })?;
        let (addr, shutdown) = rx.recv_timeout(START_TIMEOUT).map_err(|e| {
            io::Error::new(io::ErrorKind::TimedOut, format!("server thread: {e}"))
        })??;
        Ok(LocalServer {
            addr,
            shutdown,
            thread: Some(thread),
        })
    }

    /// Where the server listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Shuts the server down and waits for its thread; reports an error of
    /// its poll loop.
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_and_join()
    }

    fn stop_and_join(&mut self) -> io::Result<()> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        self.shutdown.shutdown()?;
        thread
            .join()
            .map_err(|_| io::Error::other("server thread panicked"))?
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        let _ = self.stop_and_join();
    }
}
