//! The server binary as a child process ([`ServerProcess`]), and waiting,
//! bounded, for processes to end.

use std::cell::RefCell;
use std::fs;
use std::io::{self, BufRead, Read};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::thread;
use std::time::{Duration, Instant};

use crate::accounts::ACCOUNTS;
use crate::artifacts;
use crate::client::Client;
use crate::procfs;
use crate::wait::IO_TIMEOUT;

/// The server's binary, built by cargo next to the test executable (see
/// [`artifacts::binary`]).
pub fn server_binary() -> PathBuf {
    artifacts::binary("confab-server").unwrap_or_else(|e| panic!("confab-server: {e}"))
}

/// Waits for `child` to exit, at most `timeout`; `None` if it is still
/// running.
pub fn exit_within(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Some(status);
        }
        if Instant::now() >= deadline {
            return None;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

/// Runs `command` (`confab-server` with its arguments), which must end by
/// itself within [`IO_TIMEOUT`]; returns its exit status and stderr.
pub fn run_to_end(command: &mut Command) -> (ExitStatus, String) {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn confab-server");
    let Some(status) = exit_within(&mut child, IO_TIMEOUT) else {
        let _ = child.kill();
        let _ = child.wait();
        panic!("confab-server did not exit within {IO_TIMEOUT:?}");
    };
    let mut stderr = String::new();
    child
        .stderr
        .take()
        .expect("stderr")
        .read_to_string(&mut stderr)
        .expect("read stderr");
    (status, stderr)
}

/// The server binary as a child process, killed and reaped when dropped.
pub struct ServerProcess {
    child: Child,
    /// Where it listens (`127.0.0.1` and the port it said).
    pub addr: SocketAddr,
    stderr: Receiver<String>,
    /// Lines logged before `listening on`, not yet returned by
    /// [`ServerProcess::stderr_lines`].
    early: RefCell<Vec<String>>,
    credentials: PathBuf,
}

/// Options of [`ServerProcess::start`].
#[derive(Debug, Default, Clone)]
pub struct ProcessOptions {
    /// Extra command-line arguments after `0 0.5 30`; `--ephemeral` is
    /// added unless they say `--data-dir` or `--ephemeral`.
    pub args: Vec<String>,
    /// Accounts for the credentials file; the test accounts if empty.
    pub accounts: Vec<(String, String)>,
    /// Soft and hard `RLIMIT_NOFILE` of the child, if set.
    pub max_open_files: Option<u64>,
    /// Soft `RLIMIT_FSIZE` of the child (the hard one stays unlimited, so
    /// that [`ServerProcess::set_max_file_size`] can raise it), if set:
    /// writes past it fail with `EFBIG`, like a full disk.
    pub max_file_size: Option<u64>,
    /// BLOCK_DURATION instead of `0.5`.
    pub block_duration: Option<String>,
    /// TIMEOUT instead of `30`.
    pub timeout: Option<String>,
    /// Extra environment variables (`RUST_LOG`, ...).
    pub env: Vec<(String, String)>,
    /// Working directory of the child, if not the test's.
    pub cwd: Option<PathBuf>,
}

impl ServerProcess {
    /// Starts `confab-server` on a free port (ban 0.5 s and idle timeout
    /// 30 s unless set) and waits for its `listening on` line; lines logged
    /// before it are kept for [`ServerProcess::stderr_lines`].
    pub fn start(options: ProcessOptions) -> ServerProcess {
        static FILES: AtomicUsize = AtomicUsize::new(0);
        let tmp = artifacts::target_tmp().expect("cargo's temporary directory");
        let credentials = tmp.join(format!(
            "credentials-{}-{}",
            std::process::id(),
            FILES.fetch_add(1, Ordering::SeqCst)
        ));
        let accounts: Vec<(String, String)> = if options.accounts.is_empty() {
            ACCOUNTS
                .iter()
                .map(|&(u, p)| (u.to_string(), p.to_string()))
                .collect()
        } else {
            options.accounts.clone()
        };
        let text: String = accounts.iter().map(|(u, p)| format!("{u} {p}\n")).collect();
        fs::write(&credentials, text).expect("write the credentials file");

        let mut command = Command::new(server_binary());
        let block_duration = options.block_duration.as_deref().unwrap_or("0.5");
        let timeout = options.timeout.as_deref().unwrap_or("30");
        command
            .args(["0", block_duration, timeout, "--credentials"])
            .arg(&credentials)
            .args(&options.args)
            .args(
                (!options
                    .args
                    .iter()
                    .any(|a| a == "--data-dir" || a == "--ephemeral" || a == "--cluster"))
                .then_some("--ephemeral"),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .envs(options.env.iter().map(|(k, v)| (k, v)));
        if let Some(dir) = &options.cwd {
            command.current_dir(dir);
        }
        let mut limits = Vec::new();
        if let Some(limit) = options.max_open_files {
            let limit = limit as libc::rlim_t;
            limits.push((libc::RLIMIT_NOFILE, limit, limit));
        }
        if let Some(limit) = options.max_file_size {
            limits.push((
                libc::RLIMIT_FSIZE,
                limit as libc::rlim_t,
                libc::RLIM_INFINITY,
            ));
        }
        if !limits.is_empty() {
            // SAFETY: only setrlimit, which is async-signal-safe, runs
            // between fork and exec.
            unsafe {
                command.pre_exec(move || {
                    for &(resource, soft, hard) in &limits {
                        let limit = libc::rlimit {
                            rlim_cur: soft,
                            rlim_max: hard,
                        };
                        if libc::setrlimit(resource, &limit) != 0 {
                            return Err(io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        let mut child = command.spawn().expect("spawn confab-server");
        let stderr = child.stderr.take().expect("stderr");
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for line in io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut server = ServerProcess {
            child,
            addr: "127.0.0.1:0".parse().expect("address"),
            stderr: rx,
            early: Default::default(),
            credentials,
        };
        let first = loop {
            let line = server.stderr.recv_timeout(IO_TIMEOUT).unwrap_or_else(|e| {
                panic!(
                    "no `listening on` line ({e}); stderr: {:?}",
                    server.early.borrow()
                )
            });
            if line.starts_with("listening on ") {
                break line;
            }
            server.early.borrow_mut().push(line);
        };
        let port: u16 = first
            .strip_prefix("listening on 127.0.0.1:")
            .and_then(|port| port.parse().ok())
            .unwrap_or_else(|| panic!("expected `listening on 127.0.0.1:PORT`, got {first:?}"));
        assert_ne!(port, 0, "{first:?}");
        server.addr.set_port(port);
        server
    }

    /// Where the server's web port listens: the address of the `web
    /// listening on ADDR` line it logs before `listening on` (with
    /// `--web-port`); panics if it logged none.
    pub fn web_addr(&self) -> SocketAddr {
        let early = self.early.borrow();
        let addr = early
            .iter()
            .find_map(|line| line.strip_prefix("web listening on "))
            .unwrap_or_else(|| panic!("no `web listening on` line; stderr: {early:?}"));
        addr.parse()
            .unwrap_or_else(|e| panic!("`web listening on {addr}`: {e}"))
    }

    /// The credentials file the server was started with (written by
    /// [`ServerProcess::start`]; a test may rewrite it and send SIGHUP).
    pub fn credentials_path(&self) -> &Path {
        &self.credentials
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sets the running server's soft `RLIMIT_FSIZE` (see
    /// [`ProcessOptions::max_file_size`]): space "returns" to its disk.
    pub fn set_max_file_size(&self, bytes: u64) {
        let limit = libc::rlimit {
            rlim_cur: bytes as libc::rlim_t,
            rlim_max: libc::RLIM_INFINITY,
        };
        // SAFETY: prlimit on a child of this process, with a valid limit.
        let rc = unsafe {
            libc::prlimit(
                self.child.id() as libc::pid_t,
                libc::RLIMIT_FSIZE,
                &limit,
                std::ptr::null_mut(),
            )
        };
        assert_eq!(rc, 0, "prlimit: {}", io::Error::last_os_error());
    }

    /// A new connection; nothing read yet.
    pub fn connect(&self) -> Client {
        Client::connect(self.addr)
    }

    /// A new connection logged in as `user` with `pass`.
    pub fn login(&self, user: &str, pass: &str) -> Client {
        let mut client = self.connect();
        client.login(user, pass);
        client
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).expect("pid");
        // SAFETY: sending a signal to our own child process.
        let rc = unsafe { libc::kill(pid, signal) };
        assert_eq!(rc, 0, "kill: {}", io::Error::last_os_error());
    }

    /// Panics if the process has exited.
    pub fn assert_running(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!(
                "confab-server exited: {status}; stderr: {:?}",
                self.stderr_lines()
            );
        }
    }

    /// Waits for the process to exit, at most `timeout`.
    pub fn wait(&mut self, timeout: Duration) -> ExitStatus {
        exit_within(&mut self.child, timeout)
            .unwrap_or_else(|| panic!("confab-server did not exit within {timeout:?}"))
    }

    /// The lines the server logged before `listening on` and
    /// [`ServerProcess::stderr_lines`] has not returned yet.
    pub fn lines_before_listening(&self) -> Vec<String> {
        self.early.borrow().clone()
    }

    /// What the server wrote to stderr since the last call.
    pub fn stderr_lines(&self) -> Vec<String> {
        let mut lines = std::mem::take(&mut *self.early.borrow_mut());
        lines.extend(self.stderr.try_iter());
        lines
    }

    /// User plus system CPU time the process has used so far.
    pub fn cpu_time(&self) -> Duration {
        procfs::cpu_time(self.pid()).expect("CPU time of confab-server")
    }

    /// A `kB` field of `/proc/PID/status` (`VmHWM`, `VmRSS`, ...) in KiB.
    pub fn status_kib(&self, field: &str) -> u64 {
        crate::probe::status_kib(self.pid(), field)
    }

    /// The process's open descriptors, by number, with what each refers to
    /// (some may be inherited from the test's own environment).
    pub fn descriptors(&self) -> Vec<(u32, String)> {
        procfs::descriptors(self.pid()).expect("descriptors of confab-server")
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.credentials);
    }
}
