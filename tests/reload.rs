//! SIGHUP against the real binary: the credentials file and the TLS
//! certificate read again with every connection kept, and a file that does
//! not load changing nothing but a warning.

use std::fs;
use std::time::{Duration, Instant};

use confab_testkit::client::Client;
use confab_testkit::process::{ProcessOptions, ServerProcess};
use confab_testkit::temp::TempDir;

fn write_accounts(server: &ServerProcess, accounts: &[(&str, &str)]) {
    let text: String = accounts.iter().map(|(u, p)| format!("{u} {p}\n")).collect();
    fs::write(server.credentials_path(), text).expect("rewrite the credentials file");
}

/// Waits until the server logged a line containing `needle`; returns it.
fn logged(server: &ServerProcess, needle: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    loop {
        seen.extend(server.stderr_lines());
        if let Some(line) = seen.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        assert!(
            Instant::now() < deadline,
            "{needle:?} never logged: {seen:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn accounts_server() -> ServerProcess {
    ServerProcess::start(ProcessOptions {
        accounts: vec![
            ("yoda".into(), "wise".into()),
            ("hans".into(), "falcon".into()),
            ("vader".into(), "sithlord".into()),
        ],
        env: vec![("RUST_LOG".into(), "confab::reload=info".into())],
        ..ProcessOptions::default()
    })
}

#[test]
fn sighup_reloads_the_accounts_and_keeps_every_connection() {
    let server = accounts_server();
    let mut yoda = server.login("yoda", "wise");
    let mut vader = server.login("vader", "sithlord");
    yoda.expect_line("vader logged in");
    write_accounts(
        &server,
        &[
            ("hans", "millennium"),
            ("vader", "sithlord"),
            ("leia", "blaster"),
        ],
    );
    server.signal(libc::SIGHUP);
    logged(&server, "3 accounts from");
    yoda.expect_line("Your account has been removed");
    yoda.expect_eof();
    vader.expect_line("yoda logged out");
    vader.barrier();
    let mut leia = server.login("leia", "blaster");
    vader.expect_line("leia logged in");
    leia.barrier();
    let mut hans = server.connect();
    hans.expect("Username: ");
    hans.send("hans\nfalcon\n");
    hans.expect("Password: Invalid Password. Please try again\nPassword: ");
    hans.send("millennium\n");
    hans.expect_line("Welcome to the greatest messaging application ever!");
    let mut gone = server.connect();
    gone.expect("Username: ");
    gone.send("yoda\n");
    gone.expect("Invalid Username. Please try again\nUsername: ");
}

#[test]
fn a_credentials_file_that_does_not_load_changes_nothing_but_a_warning() {
    let server = accounts_server();
    let mut yoda = server.login("yoda", "wise");
    fs::write(server.credentials_path(), "yoda wise\nhans\n").expect("break the file");
    server.signal(libc::SIGHUP);
    let warning = logged(&server, "accounts not reloaded");
    assert!(
        warning.contains(&format!("{}:2:", server.credentials_path().display())),
        "names the file and line: {warning}"
    );
    yoda.barrier();
    server.login("hans", "falcon").barrier();
}

/// A self-signed certificate and key for 127.0.0.1, as PEM.
fn certificate() -> (String, String) {
    let made = rcgen::generate_simple_self_signed(vec!["127.0.0.1".to_string()]).expect("cert");
    (made.cert.pem(), made.key_pair.serialize_pem())
}

/// The fingerprint of the certificate `pem`, as the server prints it.
fn fingerprint_of(pem: &str) -> String {
    use rustls::pki_types::pem::PemObject;
    let der = rustls::pki_types::CertificateDer::from_pem_slice(pem.as_bytes()).expect("pem");
    confab::identity::fingerprint(&der)
}

#[test]
fn sighup_reloads_the_certificate_for_new_connections_only() {
    let tmp = TempDir::new("reload-tls");
    let cert = tmp.0.join("cert.pem");
    let key = tmp.0.join("key.pem");
    let (first_cert, first_key) = certificate();
    fs::write(&cert, &first_cert).expect("write");
    fs::write(&key, &first_key).expect("write");
    let server = ServerProcess::start(ProcessOptions {
        args: vec![
            "--tls".into(),
            "--tls-cert".into(),
            cert.to_str().expect("utf-8").into(),
            "--tls-key".into(),
            key.to_str().expect("utf-8").into(),
        ],
        env: vec![("RUST_LOG".into(), "confab::reload=info".into())],
        ..ProcessOptions::default()
    });
    let first = fingerprint_of(&first_cert);
    let mut yoda = Client::connect_tls(server.addr, &first);
    yoda.login("yoda", "wise");

    let (second_cert, second_key) = certificate();
    fs::write(&cert, &second_cert).expect("write");
    fs::write(&key, &second_key).expect("write");
    server.signal(libc::SIGHUP);
    let second = fingerprint_of(&second_cert);
    logged(&server, &format!("TLS certificate {second}"));
    let mut hans = Client::connect_tls(server.addr, &second);
    hans.login("hans", "falcon");
    yoda.expect_line("hans logged in");
    let mut stale = Client::connect_tls(server.addr, &first);
    let error = stale.expect_failure();
    assert!(error.to_string().contains("certificate"), "{error}");

    // A key that does not fit: the second certificate stays.
    fs::write(&key, &first_key).expect("write");
    server.signal(libc::SIGHUP);
    let warning = logged(&server, "TLS certificate not reloaded");
    assert!(
        warning.contains(key.to_str().expect("utf-8")),
        "names the file: {warning}"
    );
    let mut vader = Client::connect_tls(server.addr, &second);
    vader.login("vader", "sithlord");
    yoda.expect_line("vader logged in");
    yoda.barrier();
}
