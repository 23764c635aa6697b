//! TLS on the server's port (`--tls`): sessions over real sockets against
//! the real binary, its certificate (made and kept, or from files), a
//! plaintext port beside it, and what a client that does not speak TLS
//! gets.

use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

use confab_testkit::client::Client;
use confab_testkit::process::{ProcessOptions, ServerProcess};
use confab_testkit::temp::TempDir;

/// A server started with `args` (and `--tls`), its certificate's
/// fingerprint and its plaintext address if it has one.
struct TlsServer {
    process: ServerProcess,
    fingerprint: String,
    plain: Option<SocketAddr>,
}

impl TlsServer {
    fn start(args: &[&str]) -> TlsServer {
        let mut all = vec!["--tls".to_string()];
        all.extend(args.iter().map(|a| a.to_string()));
        let process = ServerProcess::start(ProcessOptions {
            args: all,
            ..ProcessOptions::default()
        });
        let early = process.lines_before_listening();
        let fingerprint = early
            .iter()
            .find_map(|l| l.strip_prefix("tls fingerprint "))
            .unwrap_or_else(|| panic!("no `tls fingerprint` line before listening: {early:?}"))
            .to_string();
        let plain = early
            .iter()
            .find_map(|l| l.strip_prefix("listening in plaintext on "))
            .map(|a| a.parse().expect("plaintext address"));
        TlsServer {
            process,
            fingerprint,
            plain,
        }
    }

    /// A TLS client that trusts the server's certificate.
    fn connect(&self) -> Client {
        Client::connect_tls(self.process.addr, &self.fingerprint)
    }

    /// `user` logged in over TLS.
    fn login(&self, user: &str, pass: &str) -> Client {
        let mut client = self.connect();
        client.login(user, pass);
        client
    }
}

#[test]
fn a_tls_user_and_a_plaintext_user_chat() {
    let server = TlsServer::start(&["--plain-port", "0"]);
    assert!(
        server.fingerprint.starts_with("SHA256:") && server.fingerprint.len() == 7 + 43,
        "{}",
        server.fingerprint
    );
    let plain_addr = server.plain.expect("a plaintext port");
    assert_ne!(plain_addr.port(), server.process.addr.port());
    let mut yoda = server.login("yoda", "wise");
    let tls = yoda.tls().expect("a TLS session");
    assert!(!tls.is_handshaking());
    let mut hans = Client::connect(plain_addr);
    hans.login("hans", "falcon");
    yoda.expect_line("hans logged in");
    yoda.send("message hans over TLS\n");
    hans.expect_line("yoda: over TLS");
    hans.send("broadcast in the clear\n");
    yoda.expect_line("hans: in the clear");
    yoda.send("whoelse\n");
    yoda.expect_line("hans");
    yoda.barrier();
    hans.barrier();
    yoda.logout();
    hans.expect_line("yoda logged out");
}

#[test]
fn without_plain_port_there_is_no_plaintext_listener() {
    let server = TlsServer::start(&[]);
    assert_eq!(server.plain, None);
    let mut yoda = server.login("yoda", "wise");
    yoda.barrier();
}

#[test]
fn the_generated_certificate_is_kept_and_served_again_after_a_restart() {
    let tmp = TempDir::new("tls-kept");
    let data = tmp.data();
    let data_arg = data.to_str().expect("utf-8 path");
    let first = TlsServer::start(&["--data-dir", data_arg]);
    let key = data.join(confab::identity::KEY_FILE);
    let mode = std::fs::metadata(&key)
        .expect("key file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the key is readable by its owner only");
    first.login("yoda", "wise").barrier();
    let fingerprint = first.fingerprint.clone();
    drop(first);
    let again = TlsServer::start(&["--data-dir", data_arg]);
    assert_eq!(again.fingerprint, fingerprint);
    again.login("yoda", "wise").barrier();

    // The same files given with --tls-cert and --tls-key are served too.
    let cert = data.join(confab::identity::CERT_FILE);
    let (cert_arg, key_arg) = (cert.to_str().expect("utf-8"), key.to_str().expect("utf-8"));
    let from_files = TlsServer::start(&["--tls-cert", cert_arg, "--tls-key", key_arg]);
    assert_eq!(from_files.fingerprint, fingerprint);
    from_files.login("hans", "falcon").barrier();
}

#[test]
fn ephemeral_servers_make_a_new_certificate_each_time() {
    let a = TlsServer::start(&[]);
    let b = TlsServer::start(&[]);
    assert_ne!(a.fingerprint, b.fingerprint);
}

#[test]
fn a_plaintext_client_on_the_tls_port_is_closed_and_nothing_is_logged() {
    let server = TlsServer::start(&[]);
    for _ in 0..20 {
        let mut plain = Client::connect(server.process.addr);
        plain.send("yoda\nwise\n");
        // Whatever alert comes back, then the close.
        plain.drain_to_close();
    }
    // The server goes on, and has nothing to say about it at its default
    // log level.
    let mut yoda = server.login("yoda", "wise");
    yoda.barrier();
    let early = server.process.lines_before_listening();
    assert_eq!(server.process.stderr_lines(), early);
}

#[test]
fn a_client_that_trusts_another_certificate_gets_nothing() {
    let server = TlsServer::start(&[]);
    let other = TlsServer::start(&[]);
    let mut wrong = Client::connect_tls(server.process.addr, &other.fingerprint);
    // The handshake fails on the client's side: no prompt is ever read.
    let error = wrong.expect_failure();
    assert_eq!(error.kind(), std::io::ErrorKind::Other, "{error}");
    assert!(error.to_string().contains("certificate"), "{error}");
    server.login("yoda", "wise").barrier();
}

#[test]
fn a_silent_handshake_is_cut_off_at_the_login_timeout() {
    let server = TlsServer::start(&["--login-timeout", "0.3"]);
    let started = Instant::now();
    let mut silent = Client::connect(server.process.addr);
    silent.drain_to_close();
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[test]
fn offline_mail_reaches_a_tls_reader_in_full() {
    let server = TlsServer::start(&["--plain-port", "0"]);
    let plain = server.plain.expect("plaintext port");
    let mut yoda = Client::connect(plain);
    yoda.login("yoda", "wise");
    let text = "x".repeat(900);
    let n = 600;
    for i in 0..n {
        yoda.send(&format!("message luke {i} {text}\n"));
    }
    for _ in 0..n {
        yoda.expect_line("luke is offline. Your message will be delivered when they log in");
    }
    let mut luke = server.login("luke", "lightsaber");
    for i in 0..n {
        luke.expect_line(&format!("yoda: {i} {text}"));
    }
    luke.barrier();
}
