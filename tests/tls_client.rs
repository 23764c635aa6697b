//! `confab --tls`: which server certificates the client trusts, over real
//! sockets against the real server, the trust-on-first-use prompt driven
//! through a pseudo-terminal.

use std::path::Path;
use std::process::Stdio;

use confab_testkit::client::Client;
use confab_testkit::client_process::ClientProcess;
use confab_testkit::process::{ProcessOptions, ServerProcess};
use confab_testkit::temp::TempDir;

/// A TLS server (`--tls` and `args`) and its certificate's fingerprint.
fn tls_server(args: &[&str]) -> (ServerProcess, String) {
    let mut all = vec!["--tls".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let server = ServerProcess::start(ProcessOptions {
        args: all,
        ..ProcessOptions::default()
    });
    let fingerprint = server
        .lines_before_listening()
        .iter()
        .find_map(|l| l.strip_prefix("tls fingerprint ").map(str::to_string))
        .expect("a tls fingerprint line");
    (server, fingerprint)
}

/// `confab --tls EXTRA.. 127.0.0.1 PORT` with its known-servers file under
/// `config`, standard input piped.
fn client(server: &ServerProcess, config: &Path, extra: &[&str]) -> ClientProcess {
    let port = server.addr.port().to_string();
    let mut args = vec!["--tls"];
    args.extend_from_slice(extra);
    args.extend(["127.0.0.1", port.as_str()]);
    let config = config.to_str().expect("utf-8 path");
    ClientProcess::spawn(&args, &[("XDG_CONFIG_HOME", config)], Stdio::piped())
}

fn known_servers(config: &Path) -> String {
    std::fs::read_to_string(config.join("confab").join("known_servers")).unwrap_or_default()
}

/// The one line a refused client printed, after checking it exited with 1.
fn refusal(mut client: ClientProcess) -> String {
    let status = client.wait();
    assert_eq!(status.code(), Some(1), "{status}");
    let text = client.stderr.rest();
    assert_eq!(text.lines().count(), 1, "one line: {text:?}");
    assert!(client.stdout.rest().is_empty(), "nothing on stdout");
    text.trim_end().to_string()
}

#[test]
fn a_given_fingerprint_lets_the_client_in_and_another_is_refused() {
    let tmp = TempDir::new("tls-given");
    let (server, fingerprint) = tls_server(&[]);
    let mut yoda = client(&server, &tmp.0, &["--fingerprint", &fingerprint]);
    yoda.login("yoda", "wise");
    let mut hans = Client::connect_tls(server.addr, &fingerprint);
    hans.login("hans", "falcon");
    yoda.stdout.expect("hans logged in\n");
    hans.send("message yoda hello over TLS\n");
    yoda.stdout.expect("hans: hello over TLS\n");
    yoda.close_stdin();
    assert!(yoda.wait().success());
    assert_eq!(
        known_servers(&tmp.0),
        "",
        "a given fingerprint is not remembered"
    );

    let (_other, other_print) = tls_server(&[]);
    let wrong = client(&server, &tmp.0, &["--fingerprint", &other_print]);
    let line = refusal(wrong);
    assert!(line.contains(&fingerprint), "{line}");
    assert!(
        line.contains("not the one given with --fingerprint"),
        "{line}"
    );
}

#[test]
fn without_a_terminal_an_unknown_certificate_is_refused() {
    let tmp = TempDir::new("tls-unknown");
    let (server, fingerprint) = tls_server(&[]);
    let line = refusal(client(&server, &tmp.0, &[]));
    assert!(line.contains("is not trusted"), "{line}");
    assert!(line.contains(&fingerprint), "shows what to check: {line}");
    assert_eq!(known_servers(&tmp.0), "");
}

#[test]
fn on_a_terminal_the_user_is_asked_and_a_yes_is_remembered() {
    let tmp = TempDir::new("tls-tofu");
    let config = tmp.0.to_str().expect("utf-8").to_string();
    let (server, fingerprint) = tls_server(&[]);
    let port = server.addr.port().to_string();
    let target = format!("127.0.0.1:{port}");
    let mut first = ClientProcess::on_terminal(
        &["--tls", "127.0.0.1", &port],
        &[("XDG_CONFIG_HOME", &config)],
    );
    first.stdout.expect(&fingerprint);
    first
        .stdout
        .expect(&format!("Trust it for {target} from now on? [y/N] "));
    first.send("y");
    first.stdout.expect("Username: ");
    first.send("yoda");
    first.stdout.expect("Password: ");
    first.send("wise");
    first.stdout.expect("Welcome");
    first.send("logout");
    first.stdout.expect("Goodbye");
    assert!(first.wait().success());
    assert_eq!(known_servers(&tmp.0), format!("{target} {fingerprint}\n"));

    // Known now: no question, even without a terminal.
    let mut again = client(&server, &tmp.0, &[]);
    again.login("hans", "falcon");
    again.close_stdin();
    assert!(again.wait().success());
}

#[test]
fn on_a_terminal_a_no_refuses_and_remembers_nothing() {
    let tmp = TempDir::new("tls-no");
    let config = tmp.0.to_str().expect("utf-8").to_string();
    let (server, _) = tls_server(&[]);
    let port = server.addr.port().to_string();
    let mut asked = ClientProcess::on_terminal(
        &["--tls", "127.0.0.1", &port],
        &[("XDG_CONFIG_HOME", &config)],
    );
    asked.stdout.expect("[y/N] ");
    asked.send("n");
    asked.stdout.expect("is not trusted");
    assert_eq!(asked.wait().code(), Some(1));
    assert_eq!(known_servers(&tmp.0), "");
}

#[test]
fn a_remembered_server_that_shows_another_certificate_is_refused_loudly() {
    let tmp = TempDir::new("tls-changed");
    let (server, _) = tls_server(&[]);
    let (_other, other_print) = tls_server(&[]);
    let file = tmp.0.join("confab").join("known_servers");
    std::fs::create_dir_all(file.parent().expect("dir")).expect("mkdir");
    let target = format!("127.0.0.1:{}", server.addr.port());
    std::fs::write(
        &file,
        format!("# servers\n127.0.0.1:1 {other_print}\n{target} {other_print}\n"),
    )
    .expect("write");
    let line = refusal(client(&server, &tmp.0, &[]));
    assert!(line.contains("CHANGED"), "{line}");
    assert!(
        line.contains(&format!("remove line 3 of {}", file.display())),
        "{line}"
    );
}

#[test]
fn a_certificate_from_the_given_ca_verifies_without_a_question() {
    let tmp = TempDir::new("tls-ca");
    let ca_key = rcgen::KeyPair::generate().expect("key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("params");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).expect("CA");
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .expect("params")
            .signed_by(&leaf_key, &ca, &ca_key)
            .expect("leaf");
    let write = |name: &str, text: String| {
        let path = tmp.0.join(name);
        std::fs::write(&path, text).expect("write");
        path.to_str().expect("utf-8").to_string()
    };
    let ca_file = write("ca.pem", ca.pem());
    let cert_file = write("cert.pem", leaf.pem());
    let key_file = write("key.pem", leaf_key.serialize_pem());
    let (server, _) = tls_server(&["--tls-cert", &cert_file, "--tls-key", &key_file]);
    let mut yoda = client(&server, &tmp.0, &["--ca", &ca_file]);
    yoda.login("yoda", "wise");
    yoda.close_stdin();
    assert!(yoda.wait().success());
    assert_eq!(known_servers(&tmp.0), "");
    // Without the CA the same certificate is unknown.
    let line = refusal(client(&server, &tmp.0, &[]));
    assert!(line.contains("is not trusted"), "{line}");
}

/// A `confab --tls --fingerprint` client logged in as `user`.
fn tls_user(
    server: &ServerProcess,
    print: &str,
    config: &Path,
    user: &str,
    pass: &str,
) -> ClientProcess {
    let mut client = client(server, config, &["--fingerprint", print]);
    client.login(user, pass);
    client
}

#[test]
fn private_sessions_of_tls_clients_are_tls_and_work_both_ways() {
    let tmp = TempDir::new("tls-private");
    let (server, print) = tls_server(&[]);
    let mut yoda = tls_user(&server, &print, &tmp.0, "yoda", "wise");
    let mut hans = tls_user(&server, &print, &tmp.0, "hans", "falcon");
    yoda.stdout.expect("hans logged in\n");
    yoda.send("startprivate hans");
    yoda.stdout.expect("Start private messaging with hans\n");
    hans.stdout
        .expect("yoda started private messaging with you\n");
    yoda.send("private hans over TLS");
    hans.stdout.expect("yoda(private): over TLS\n");
    hans.send("private yoda and back");
    yoda.stdout.expect("hans(private): and back\n");
    // A plaintext client is never introduced to them.
    let mut vader = Client::connect_tls(server.addr, &print);
    vader.login("vader", "sithlord");
    vader.send("privateport 5000\n");
    vader.send("startprivate yoda\n");
    vader.expect_line("Error. yoda cannot accept private messaging");
}

/// A raw TLS session to the server, logged in as `user`, registering
/// `port` as its private port with the certificate of `print`.
fn raw_user(
    addr: std::net::SocketAddr,
    server_print: &str,
    user: &str,
    pass: &str,
    port: u16,
    print: &str,
) -> Client {
    let mut raw = Client::connect_tls(addr, server_print);
    raw.login(user, pass);
    raw.send(&format!("privateport {port} {print}\n"));
    raw
}

/// A certificate and key, made now.
fn made_certificate() -> (
    rustls::pki_types::CertificateDer<'static>,
    rustls::pki_types::PrivateKeyDer<'static>,
) {
    let made = rcgen::generate_simple_self_signed(vec!["peer".to_string()]).expect("cert");
    let key =
        rustls::pki_types::PrivateKeyDer::try_from(made.key_pair.serialize_der()).expect("key");
    (made.cert.der().clone(), key)
}

#[test]
fn a_peer_that_shows_another_certificate_than_it_registered_is_refused() {
    use std::io::Read;
    let tmp = TempDir::new("tls-private-wrong");
    let (server, print) = tls_server(&[]);
    let mut yoda = tls_user(&server, &print, &tmp.0, "yoda", "wise");
    // "hans" registers one certificate and serves another.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let (registered, _) = made_certificate();
    let registered = confab::identity::fingerprint(&registered);
    let mut hans = raw_user(server.addr, &print, "hans", "falcon", port, &registered);
    yoda.stdout.expect("hans logged in\n");
    yoda.send("startprivate hans");
    let line = hans.read_line();
    assert!(line.starts_with("!private accept yoda "), "{line}");
    let yoda_print = line.rsplit(' ').next().expect("fingerprint").to_string();
    assert!(yoda_print.starts_with("SHA256:"), "{line}");
    let (mut socket, _) = listener.accept().expect("yoda's client connects");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let mut first = [0u8; 1];
    socket.read_exact(&mut first).expect("first byte");
    assert_eq!(first[0], 0x16, "a TLS handshake, not `hello` in clear");
    // Serve another certificate: yoda's client must not go on.
    let (cert, key) = made_certificate();
    let config = rustls::ServerConfig::builder_with_provider(confab::identity::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert], key)
        .expect("config");
    let mut session = rustls::ServerConnection::new(std::sync::Arc::new(config)).expect("session");
    let mut replay = std::io::Cursor::new(first.to_vec()).chain(socket.try_clone().expect("clone"));
    let _ = session.read_tls(&mut replay);
    let mut io = rustls::StreamOwned::new(session, socket);
    let mut buf = [0u8; 64];
    assert!(
        !matches!(io.read(&mut buf), Ok(n) if n > 0),
        "yoda's client sent something to the wrong certificate"
    );
    yoda.stdout
        .expect("Error. Private messaging with hans could not be started\n");
}

#[test]
fn a_connecting_peer_without_the_registered_certificate_is_not_let_in() {
    use std::io::{Read, Write};
    let tmp = TempDir::new("tls-private-client-cert");
    let (server, print) = tls_server(&[]);
    let mut yoda = tls_user(&server, &print, &tmp.0, "yoda", "wise");
    let (registered, _) = made_certificate();
    let registered = confab::identity::fingerprint(&registered);
    let mut hans = raw_user(server.addr, &print, "hans", "falcon", 9, &registered);
    yoda.stdout.expect("hans logged in\n");
    hans.send("startprivate yoda\n");
    let line = hans.read_line();
    let fields: Vec<&str> = line.split(' ').collect();
    let ["!private", "connect", "yoda", address, token, yoda_print] = fields[..] else {
        panic!("unexpected introduction {line:?}");
    };
    // Connect as hans would, pinning yoda's certificate, but showing a
    // certificate other than the one registered.
    let (cert, key) = made_certificate();
    let trust = std::sync::Arc::new(confab::net::trust::Trust::pinned(yoda_print));
    let config =
        confab::net::trust::Trust::client_config_with_cert(trust, vec![cert], key).expect("config");
    let address: std::net::SocketAddr = address.parse().expect("address");
    let session = rustls::ClientConnection::new(config, address.ip().into()).expect("session");
    let socket = std::net::TcpStream::connect(address).expect("connect");
    socket
        .set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .expect("timeout");
    let mut io = rustls::StreamOwned::new(session, socket);
    io.write_all(format!("hello {token}\n").as_bytes())
        .expect("hello over TLS");
    let mut reply = Vec::new();
    let _ = io.read_to_end(&mut reply);
    assert!(
        !String::from_utf8_lossy(&reply).contains("ok"),
        "let in with the wrong certificate: {reply:?}"
    );
    yoda.send("whoelse");
    yoda.stdout.expect("hans\n");
    assert!(
        !yoda.stdout.text().contains("started private messaging"),
        "{}",
        yoda.stdout.text()
    );
}
