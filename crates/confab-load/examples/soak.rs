//! Soak test: starts the real `confab-server` as a child process and drives
//! it with mixed traffic from hundreds of clients for a given time (see
//! [`confab_load::soak`] for what the clients do and what is checked).
//!
//! ```text
//! cargo run --release -p confab-load --example soak -- --duration 600 [--clients 300] [--seed 1]
//! ```
//!
//! The server binary is `confab-server` next to this example's directory
//! (`target/release/` for `target/release/examples/soak`), or `--server
//! PATH`. When run by `cargo run` without `--server`, the example first has
//! cargo build that binary in the same profile, so it is never stale
//! (`confab_testkit::artifacts::built`). The
//! server gets a generated credentials file in a temporary directory,
//! TIMEOUT 30 s (every client sends at least every 1.5 s), BLOCK_DURATION
//! 60 s, and listens on a free port of 127.0.0.1.
//!
//! One thread drives every client on one `mio` loop; a second only copies
//! the server's stderr. At the end the server gets SIGTERM and must exit 0.
//! The exit status is 1 if anything required was lost or duplicated, the
//! protocol was broken, a client was disconnected or stuck, the server's
//! descriptors did not return to their count before the first client, or
//! the server did not shut down cleanly.

use std::io::{self, BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, ExitStatus, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use confab_load::soak::{self, SoakConfig, MAX_CLIENTS, MIN_CLIENTS};
use confab_load::write_credentials;
use confab_testkit::artifacts;

/// TIMEOUT given to the server, in seconds.
const TIMEOUT: &str = "30";
/// BLOCK_DURATION given to the server, in seconds (nobody fails a login).
const BLOCK_DURATION: &str = "60";
/// How long the server may take to start listening.
const START_LIMIT: Duration = Duration::from_secs(10);
/// How long the server may take to exit after SIGTERM.
const STOP_LIMIT: Duration = Duration::from_secs(10);

/// Drives a confab server with mixed traffic and checks that nothing is
/// lost and no descriptor leaks.
#[derive(Debug, Parser)]
#[command(about)]
struct Args {
    /// Seconds of traffic.
    #[arg(long, value_name = "SECS", default_value_t = 60,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    duration: u64,
    /// Clients (three quarters steady, one quarter churning).
    #[arg(long, value_name = "N", default_value_t = 300,
          value_parser = clap::value_parser!(u64).range(MIN_CLIENTS as u64..=MAX_CLIENTS as u64))]
    clients: u64,
    /// Seed of every random choice.
    #[arg(long, value_name = "N", default_value_t = 1)]
    seed: u64,
    /// The `confab-server` binary [default: next to this example's
    /// directory].
    #[arg(long, value_name = "PATH")]
    server: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(args) {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(message) => {
            eprintln!("soak: {message}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the soak; `Ok(false)` if it found a problem.
fn run(args: Args) -> Result<bool, String> {
    let server_path = match args.server.clone() {
        Some(path) => path,
        None => artifacts::built("confab-server").map_err(|e| format!("confab-server: {e}"))?,
    };
    let clients = usize::try_from(args.clients).map_err(|e| e.to_string())?;
    if let Err(e) = confab::fdlimit::raise_to_hard_limit() {
        eprintln!("soak: cannot raise the open-file limit: {e}");
    }
    let dir = std::env::temp_dir().join(format!("confab-soak-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let result = soak_in(&dir, &server_path, clients, &args);
    if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("soak: cannot remove {}: {e}", dir.display());
    }
    result
}

fn soak_in(dir: &Path, server_path: &Path, clients: usize, args: &Args) -> Result<bool, String> {
    let credentials = dir.join("credentials.txt");
    write_credentials(&credentials, clients)
        .map_err(|e| format!("{}: {e}", credentials.display()))?;
    let max_clients = (clients + 100).max(10_000).to_string();
    // Offline messages, blocks and bans go to the journal, as in production.
    let data_dir = dir.join("data");
    let (server, addr) = ServerProcess::start(
        server_path,
        &[
            "0",
            BLOCK_DURATION,
            TIMEOUT,
            "--credentials",
            &credentials.to_string_lossy(),
            "--max-clients",
            &max_clients,
            "--data-dir",
            &data_dir.to_string_lossy(),
        ],
    )
    .map_err(|e| format!("{}: {e}", server_path.display()))?;
    eprintln!(
        "soak: {} (pid {}) on {addr}: {clients} clients for {} s, seed {}",
        server_path.display(),
        server.pid(),
        args.duration,
        args.seed
    );
    let mut config = SoakConfig::new(addr, server.pid());
    config.clients = clients;
    config.duration = Duration::from_secs(args.duration);
    config.seed = args.seed;
    let report = soak::run(&config).map_err(|e| format!("soak: {e}"))?;
    let status = server
        .stop()
        .map_err(|e| format!("stopping the server: {e}"))?;
    print!("{report}");
    println!("server exit   {status}");
    let mut failures = report.failures();
    if !status.success() {
        failures.push(format!("the server exited with {status} after SIGTERM"));
    }
    if failures.is_empty() {
        println!("result        PASS");
        Ok(true)
    } else {
        println!("result        FAIL: {}", failures.join("; "));
        Ok(false)
    }
}

/// The server as a child process. Dropping it kills the process if it is
/// still running.
struct ServerProcess {
    child: Child,
    stopped: bool,
}

impl ServerProcess {
    /// Starts `path` with `args` and waits until it says where it listens.
    /// Its further stderr is copied to ours by a thread.
    fn start(path: &Path, args: &[&str]) -> io::Result<(ServerProcess, SocketAddr)> {
        let mut child = Command::new(path)
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()?;
        let stderr = child.stderr.take();
        let server = ServerProcess {
            child,
            stopped: false,
        };
        let stderr = stderr.ok_or_else(|| io::Error::other("no stderr pipe"))?;
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("server-stderr".into())
            .spawn(move || {
                let mut announced = false;
                for line in BufReader::new(stderr).lines() {
                    let Ok(line) = line else {
                        return;
                    };
                    let addr = line.strip_prefix("listening on ");
                    match addr.map(str::parse::<SocketAddr>) {
                        Some(Ok(addr)) if !announced => {
                            announced = true;
                            // The receiver only goes away if start() gave up.
                            let _ = tx.send(addr);
                        }
                        _ => eprintln!("confab-server: {line}"),
                    }
                }
            })?;
        let addr = rx.recv_timeout(START_LIMIT).map_err(|_| {
            io::Error::new(
                io::ErrorKind::TimedOut,
                "did not say `listening on ADDR` (see its messages above)",
            )
        })?;
        Ok((server, addr))
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits for the exit (killing the process after
    /// [`STOP_LIMIT`]).
    fn stop(mut self) -> io::Result<ExitStatus> {
        self.stopped = true;
        let pid = libc::pid_t::try_from(self.child.id()).map_err(io::Error::other)?;
        // SAFETY: kill has no memory effects; the pid is our unreaped child.
        if unsafe { libc::kill(pid, libc::SIGTERM) } != 0 {
            return Err(io::Error::last_os_error());
        }
        let deadline = Instant::now() + STOP_LIMIT;
        loop {
            if let Some(status) = self.child.try_wait()? {
                return Ok(status);
            }
            if Instant::now() >= deadline {
                self.child.kill()?;
                return self.child.wait();
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        if !self.stopped {
            // Best effort: the run failed and the server must not outlive it.
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
