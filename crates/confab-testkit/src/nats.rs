//! A real `nats-server` with JetStream as a child process ([`NatsServer`]),
//! on `127.0.0.1` and a free port, its store in a [`TempDir`], for the
//! tests of cluster mode's NATS bridge. It can be killed and restarted on
//! the same port with the same store, as an outage would.

use std::fs::File;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use crate::process::exit_within;
use crate::temp::TempDir;

/// How long a starting server gets to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(5);

/// Where Debian's `nats-server` package puts the binary, which may not be
/// on `PATH`.
const DEBIAN_BINARY: &str = "/usr/sbin/nats-server";

/// The `nats-server` binary: the first on `PATH`, else Debian's; panics if
/// there is none.
pub fn nats_server_binary() -> PathBuf {
    let on_path = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join("nats-server"))
            .find(|candidate| candidate.is_file())
    });
    let binary = on_path.unwrap_or_else(|| PathBuf::from(DEBIAN_BINARY));
    assert!(
        binary.is_file(),
        "nats-server not found: scripts/test installs it"
    );
    binary
}

/// A running `nats-server -js`, killed and reaped when dropped (its store
/// directory removed with it).
pub struct NatsServer {
    child: Option<Child>,
    port: u16,
    jetstream: bool,
    dir: TempDir,
}

impl NatsServer {
    /// Starts `nats-server -js` on a free port of `127.0.0.1`, its store in
    /// a new temporary directory, and waits until it accepts connections.
    pub fn start() -> NatsServer {
        NatsServer::start_with(true)
    }

    /// Like [`NatsServer::start`], but without JetStream.
    pub fn start_without_jetstream() -> NatsServer {
        NatsServer::start_with(false)
    }

    fn start_with(jetstream: bool) -> NatsServer {
        let mut server = NatsServer {
            child: None,
            port: free_port(),
            jetstream,
            dir: TempDir::new("nats"),
        };
        server.spawn();
        server
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        NatsServer::url_of(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
    }

    /// The NATS URL of `addr`, such as a [`TcpProxy`](crate::TcpProxy) in
    /// front of a server.
    pub fn url_of(addr: SocketAddr) -> String {
        format!("nats://{addr}")
    }

    /// The port it listens on (the same across restarts).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Its process id while it runs, to read its CPU time.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Kills it with SIGKILL and reaps it; nothing happens if it is not
    /// running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills it if it runs, then starts it again on the same port with the
    /// same store, and waits until it accepts connections.
    pub fn restart(&mut self) {
        self.kill();
        self.spawn();
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.0.join("nats-server.log")
    }

    /// Starts the process and waits until its port accepts; panics with its
    /// log if it exits or does not accept within [`START_TIMEOUT`].
    fn spawn(&mut self) {
        let log = File::options()
            .create(true)
            .append(true)
            .open(self.log_path())
            .expect("open the nats-server log");
        let mut command = Command::new(nats_server_binary());
        command
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log file"))
            .stderr(log);
        if self.jetstream {
            command.arg("-js").arg("-sd").arg(self.dir.0.join("store"));
        }
        let mut child = command.spawn().expect("spawn nats-server");
        let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, self.port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = exit_within(&mut child, Duration::ZERO) {
                panic!("nats-server exited ({status}); its log:\n{}", self.log());
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!(
                    "nats-server did not accept on {addr} within {START_TIMEOUT:?}; its log:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(10));
        }
        self.child = Some(child);
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A port of `127.0.0.1` that nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port()
}
