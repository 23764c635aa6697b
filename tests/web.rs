//! The web port (`--web-port`) over real sockets: the page and its policy,
//! the HTTP refusals, the Origin rule, WebSocket sessions that are chat
//! sessions like TCP ones (login, chat both ways, presence, limits,
//! timeouts, no private messaging), what closes only one socket, the
//! per-address and server limits, and all of it over TLS.

mod common;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use common::{Client, Options, ProcessOptions, ServerProcess, TestServer, USERNAME, WELCOME};
use confab::server::{MAX_HEAD, MAX_HEADERS};
use confab_testkit::web::{http, Answer, Ending, WebClient, WebSocketStream};
use tungstenite::protocol::frame::coding::{CloseCode, Data, OpCode};
use tungstenite::protocol::frame::Frame;
use tungstenite::Message;

/// A server with a web port and the default test options but `change`.
fn web_server(change: impl FnOnce(&mut Options)) -> TestServer {
    let mut options = Options {
        web: true,
        ..Options::default()
    };
    change(&mut options);
    TestServer::with(options)
}

fn web_addr(server: &TestServer) -> SocketAddr {
    server.web_addr.expect("a web port")
}

/// `GET path` with `headers` (each ending in `\r\n`) over plain HTTP.
fn get(addr: SocketAddr, path: &str, headers: &str) -> Answer {
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\n{headers}\r\n");
    http(WebSocketStream::connect(addr, None), request.as_bytes())
}

/// The headers of a valid upgrade request, the `Host` left out.
const UPGRADE: &str = "Upgrade: websocket\r\nConnection: Upgrade\r\n\
    Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

/// The text of the first `<tag>` element of `html`.
fn element<'h>(html: &'h str, tag: &str) -> &'h str {
    let open = html
        .find(&format!("<{tag}"))
        .unwrap_or_else(|| panic!("no <{tag}>"));
    let start = open + html[open..].find('>').expect("an open tag") + 1;
    let end = start
        + html[start..]
            .find(&format!("</{tag}>"))
            .expect("a close tag");
    &html[start..end]
}

/// The CSP hash source of `text`.
fn hash_source(text: &str) -> String {
    use base64::Engine;
    let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let encoded = base64::engine::general_purpose::STANDARD.encode(digest);
    format!("'sha256-{encoded}'")
}

/// What the server sends back to `request` until it closes, whatever it
/// is, read raw.
fn raw_exchange(addr: SocketAddr, request: &[u8]) -> Vec<u8> {
    use std::io::{Read, Write};
    let mut stream = WebSocketStream::connect(addr, None);
    stream.write_all(request).expect("send");
    let deadline = Instant::now() + common::IO_TIMEOUT;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        assert!(Instant::now() < deadline, "the server did not close");
        match stream.read(&mut buf) {
            Ok(0) => return got,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return got,
            Err(_) => {}
        }
    }
}

/// Whether opening `/ws` with `origin` is refused with `403`.
fn refused_with(addr: SocketAddr, origin: Option<&str>) -> Option<u16> {
    match WebClient::open(WebSocketStream::connect(addr, None), addr, origin) {
        Ok(_) => None,
        Err(tungstenite::Error::Http(answer)) => Some(answer.status().as_u16()),
        Err(e) => panic!("neither a session nor an HTTP refusal: {e}"),
    }
}

// ------------------------------------------------------------ the page

#[test]
fn get_root_serves_the_page_with_a_policy_that_allows_exactly_its_script_and_style() {
    let server = web_server(|_| {});
    let addr = web_addr(&server);
    let page = get(addr, "/", "");
    assert_eq!(page.status, 200);
    assert_eq!(
        page.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert_eq!(page.header("x-content-type-options"), Some("nosniff"));
    assert_eq!(page.header("referrer-policy"), Some("no-referrer"));
    assert_eq!(page.header("cache-control"), Some("no-store"));
    let html = String::from_utf8(page.body.clone()).expect("the page is UTF-8");
    assert_eq!(
        page.header("content-length"),
        Some(html.len().to_string().as_str())
    );
    assert!(!html.contains("/*STYLE*/") && !html.contains("/*SCRIPT*/"));
    let csp = page.header("content-security-policy").expect("a CSP");
    let script = hash_source(element(&html, "script"));
    let style = hash_source(element(&html, "style"));
    assert_eq!(
        csp,
        format!(
            "default-src 'none'; script-src {script}; style-src {style}; connect-src 'self'; \
             img-src 'self' data:; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
    );
    // HEAD: the same head, no body.
    let request = format!("HEAD / HTTP/1.1\r\nHost: {addr}\r\n\r\n");
    let head = http(WebSocketStream::connect(addr, None), request.as_bytes());
    assert_eq!(head.status, 200);
    assert_eq!(head.headers, page.headers);
    assert!(head.body.is_empty());
    // Each answer closed its connection; none became a session.
    server.wait_for_connections(0);
}

#[test]
fn unknown_paths_other_methods_and_oversized_heads_are_refused() {
    let server = web_server(|_| {});
    let addr = web_addr(&server);
    assert_eq!(get(addr, "/favicon.ico", "").status, 404);
    assert_eq!(get(addr, "/ws/", "").status, 404);
    let post = format!("POST / HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\n\r\n");
    let answer = http(WebSocketStream::connect(addr, None), post.as_bytes());
    assert_eq!(answer.status, 405);
    assert_eq!(answer.header("allow"), Some("GET, HEAD"));
    let garbage = http(
        WebSocketStream::connect(addr, None),
        b"\x16\x03\x01hello\r\n\r\n",
    );
    assert_eq!(garbage.status, 400);
    // A head one byte over the limit, and one header too many.
    let mut long = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nX-Long: ").into_bytes();
    long.resize(MAX_HEAD + 1, b'a');
    assert_eq!(
        http(WebSocketStream::connect(addr, None), &long).status,
        431
    );
    let many: String = (0..MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
    assert_eq!(get(addr, "/", &many).status, 431);
    // Just within both limits it is served.
    let fewer: String = (0..MAX_HEADERS - 1)
        .map(|i| format!("X-{i}: y\r\n"))
        .collect();
    assert_eq!(get(addr, "/", &fewer).status, 200);
    server.wait_for_connections(0);
}

#[test]
fn a_bad_upgrade_is_400() {
    let server = web_server(|_| {});
    let addr = web_addr(&server);
    for missing in ["Sec-WebSocket-Key", "Sec-WebSocket-Version", "Upgrade"] {
        let headers: String = UPGRADE
            .split_inclusive("\r\n")
            .filter(|h| !h.starts_with(missing))
            .collect();
        assert_eq!(get(addr, "/ws", &headers).status, 400, "without {missing}");
    }
    let old = UPGRADE.replace("Version: 13", "Version: 8");
    assert_eq!(get(addr, "/ws", &old).status, 400);
    // The whole request is a 101 (the control that the ones above fail
    // only for what they lack); what follows it, before the client waited
    // for the 101, is refused.
    let request = format!("GET /ws HTTP/1.1\r\nHost: {addr}\r\n{UPGRADE}\r\n");
    let mut whole = request.into_bytes();
    assert_eq!(refused_with(addr, None), None);
    whole.extend_from_slice(b"\x81\x80abcd");
    assert!(raw_exchange(addr, &whole).starts_with(b"HTTP/1.1 400"));
}

// ------------------------------------------------------------ the Origin rule

#[test]
fn only_the_pages_own_origin_a_given_one_or_none_may_open_a_session() {
    let server = web_server(|o| o.web_origins = vec!["https://chat.example.org".into()]);
    let addr = web_addr(&server);
    assert_eq!(refused_with(addr, None), None);
    assert_eq!(refused_with(addr, Some(&format!("http://{addr}"))), None);
    assert_eq!(refused_with(addr, Some("https://chat.example.org")), None);
    for wrong in [
        "http://evil.example",
        "https://chat.example.org.evil.example",
        "null",
    ] {
        assert_eq!(refused_with(addr, Some(wrong)), Some(403), "{wrong}");
    }
    // The page's own origin over plain HTTP is http://, not https://.
    let tls_origin = format!("https://{addr}");
    assert_eq!(refused_with(addr, Some(&tls_origin)), Some(403));
    // The page itself is refused to another site's request too.
    let answer = get(addr, "/", "Origin: http://evil.example\r\n");
    assert_eq!(answer.status, 403);
}

// ------------------------------------------------------------ sessions

#[test]
fn a_web_user_and_a_tcp_user_chat_both_ways_with_presence() {
    let server = web_server(|_| {});
    let mut hans = server.login("hans");
    let mut yoda = server.web();
    // The prompts are messages of their own, without a newline.
    yoda.expect(USERNAME);
    yoda.send("yoda");
    yoda.expect("Password: ");
    yoda.send("wise");
    yoda.expect(WELCOME);
    hans.expect_line("yoda logged in");
    yoda.send("whoelse");
    yoda.expect("hans");
    yoda.send("message hans over the web");
    hans.expect_line("yoda: over the web");
    hans.send("message yoda back over TCP\n");
    yoda.expect("hans: back over TCP");
    hans.send("broadcast to everyone\n");
    yoda.expect("hans: to everyone");
    // A line may end in \r\n or \n in its message like over TCP.
    yoda.send("message hans two\r\n");
    hans.expect_line("yoda: two");
    // A second web user: the two see each other like any users.
    let mut vader = server.web_login("vader");
    yoda.expect("vader logged in");
    hans.expect_line("vader logged in");
    vader.send("broadcast from the dark side");
    yoda.expect("vader: from the dark side");
    hans.expect_line("vader: from the dark side");
    drop(vader);
    yoda.expect("vader logged out");
    hans.expect_line("vader logged out");
    // Logout: Goodbye, then a normal close.
    yoda.send("logout");
    let (ending, texts) = yoda.ending();
    assert_eq!(texts, ["Goodbye"]);
    assert_eq!(ending, Ending::Closed(CloseCode::Normal));
    hans.expect_line("yoda logged out");
    server.wait_for_connections(1);
}

#[test]
fn a_message_with_a_newline_is_the_line_before_it() {
    let server = web_server(|_| {});
    let mut hans = server.login("hans");
    let mut yoda = server.web_login("yoda");
    hans.expect_line("yoda logged in");
    yoda.send("message hans first\nlogout");
    hans.expect_line("yoda: first");
    // The rest was no command: the session goes on.
    yoda.send("whoelse");
    yoda.expect("hans");
    yoda.expect_silence(100);
}

#[test]
fn a_message_over_max_line_is_line_too_long_and_the_session_goes_on() {
    let server = web_server(|o| o.max_line = 100);
    let mut yoda = server.web_login("yoda");
    yoda.send(&format!("broadcast {}", "x".repeat(100)));
    yoda.expect("Error. Line too long");
    yoda.send(&format!("broadcast {}", "x".repeat(90)));
    yoda.expect_silence(100);
    yoda.send("whoelse");
    yoda.expect("No other users are online");
}

#[test]
fn private_messaging_is_refused_to_web_sessions() {
    let server = web_server(|_| {});
    let mut hans = server.login("hans");
    hans.send("privateport 5000\n");
    let mut yoda = server.web_login("yoda");
    hans.expect_line("yoda logged in");
    yoda.send("startprivate hans");
    yoda.expect("Error. Private messaging needs the confab client");
    yoda.send("privateport 6000");
    yoda.expect("Error. Private messaging needs the confab client");
    hans.send("startprivate yoda\n");
    hans.expect_line("Error. yoda cannot accept private messaging");
}

#[test]
fn stamps_work_over_websocket() {
    let server = web_server(|_| {});
    let mut hans = server.login("hans");
    hans.send("message yoda are you there?\n");
    hans.expect_line("yoda is offline. Your message will be delivered when they log in");
    let mut yoda = server.web();
    yoda.expect(USERNAME);
    yoda.send("!stamps");
    yoda.expect_all(&["!stamps on", USERNAME]);
    yoda.send("yoda");
    yoda.expect("Password: ");
    yoda.send("wise");
    yoda.expect(WELCOME);
    let Message::Text(queued) = yoda.message() else {
        panic!("no stamped message");
    };
    let rest = queued.strip_prefix("!queued ").expect("!queued");
    let (seconds, text) = rest.split_once(' ').expect("a time");
    assert!(seconds.parse::<u64>().is_ok(), "{queued}");
    assert_eq!(text, "hans: are you there?");
    yoda.expect("!queued end");
}

#[test]
fn offline_mail_reaches_a_slow_web_reader_in_full_and_in_order() {
    let server = web_server(|_| {});
    let mut hans = server.login("hans");
    let text = "x".repeat(900);
    let n = 600;
    for i in 0..n {
        hans.send(&format!("message yoda {i} {text}\n"));
    }
    for _ in 0..n {
        hans.expect_line("yoda is offline. Your message will be delivered when they log in");
    }
    // A small receive window, and a pause before reading: what the
    // socket does not take waits (a smaller window only slows TCP down).
    let addr = web_addr(&server);
    let stream = WebSocketStream::connect(addr, None);
    if let WebSocketStream::Plain(socket) = &stream {
        socket2::SockRef::from(socket)
            .set_recv_buffer_size(32 * 1024)
            .expect("receive buffer");
    }
    let mut yoda = WebClient::open(stream, addr, None).expect("a session");
    yoda.expect(USERNAME);
    yoda.send("yoda");
    yoda.expect("Password: ");
    yoda.send("wise");
    std::thread::sleep(Duration::from_millis(300));
    yoda.expect(WELCOME);
    for i in 0..n {
        yoda.expect(&format!("hans: {i} {text}"));
    }
    hans.expect_line("yoda logged in");
    yoda.send("whoelse");
    yoda.expect("hans");
}

#[test]
fn a_web_session_times_out_like_any_other() {
    let server = web_server(|o| o.timeout = Duration::from_millis(500));
    let mut yoda = server.web_login("yoda");
    let started = Instant::now();
    let (ending, texts) = yoda.ending();
    assert_eq!(texts, ["You have been logged out due to inactivity"]);
    assert_eq!(ending, Ending::Closed(CloseCode::Normal));
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Before the login it is the login that times out.
    let mut early = server.web();
    early.expect(USERNAME);
    let (_, texts) = early.ending();
    assert_eq!(texts, ["Login timed out"]);
}

#[test]
fn pings_are_answered() {
    let server = web_server(|_| {});
    let mut yoda = server.web_login("yoda");
    yoda.send_message(Message::Ping(b"are you there".to_vec().into()));
    assert_eq!(
        yoda.message(),
        Message::Pong(b"are you there".to_vec().into())
    );
    yoda.send("whoelse");
    yoda.expect("No other users are online");
}

#[test]
fn what_breaks_the_websocket_closes_only_that_socket() {
    let server = web_server(|_| {});
    let mut hans = server.login("hans");
    let mut luke = server.web_login("luke");
    hans.expect_line("luke logged in");
    let text_frame = |bytes: Vec<u8>, data: Data, fin: bool| {
        Message::Frame(Frame::message(bytes, OpCode::Data(data), fin))
    };
    let cases: [(&str, Vec<Message>, CloseCode); 4] = [
        (
            "a frame over 64 KiB",
            vec![Message::text("x".repeat(64 * 1024 + 1))],
            CloseCode::Size,
        ),
        (
            "a message over 64 KiB in frames under it",
            vec![
                text_frame(vec![b'x'; 40 * 1024], Data::Text, false),
                text_frame(vec![b'x'; 40 * 1024], Data::Continue, true),
            ],
            CloseCode::Size,
        ),
        (
            "a binary message",
            vec![Message::Binary(b"whoelse".to_vec().into())],
            CloseCode::Unsupported,
        ),
        (
            "a text that is not UTF-8",
            vec![text_frame(b"\xff\xfe".to_vec(), Data::Text, true)],
            CloseCode::Invalid,
        ),
    ];
    for (what, messages, code) in cases {
        let mut yoda = server.web_login("yoda");
        hans.expect_line("yoda logged in");
        luke.expect("yoda logged in");
        for message in messages {
            yoda.send_message(message);
        }
        let (ending, texts) = yoda.ending();
        assert_eq!(ending, Ending::Closed(code), "{what}");
        assert!(texts.is_empty(), "{what}: {texts:?}");
        hans.expect_line("yoda logged out");
        luke.expect("yoda logged out");
        // The others go on.
        luke.send("message hans still here");
        hans.expect_line("luke: still here");
    }
    // Exactly 64 KiB is a line like any (too long for --max-line).
    luke.send(&"x".repeat(64 * 1024));
    luke.expect("Error. Line too long");
    server.wait_for_connections(2);
}

#[test]
fn a_shutdown_says_so_and_closes_web_sessions() {
    let server = web_server(|_| {});
    let mut yoda = server.web_login("yoda");
    // A connection that never makes its request does not hold it up.
    let _silent = WebSocketStream::connect(web_addr(&server), None);
    let started = Instant::now();
    server.stop().expect("stop");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "waited for the silent one"
    );
    let (ending, texts) = yoda.ending();
    assert_eq!(texts, ["Server is shutting down"]);
    assert_eq!(ending, Ending::Closed(CloseCode::Normal));
}

#[test]
fn the_server_limit_counts_web_connections() {
    let server = web_server(|o| o.max_clients = 2);
    let mut hans = server.login("hans");
    let yoda = server.web_login("yoda");
    hans.expect_line("yoda logged in");
    let full = get(web_addr(&server), "/", "");
    assert_eq!(full.status, 503);
    assert_eq!(full.body, b"Error. Server is full\n");
    let mut tcp = server.connect();
    tcp.expect_line("Error. Server is full");
    drop(yoda);
    hans.expect_line("yoda logged out");
    server.wait_for_connections(1);
    assert_eq!(get(web_addr(&server), "/", "").status, 200);
}

// ------------------------------------------------------------ the binary

/// An untrusted address: loopback is trusted by default.
fn attacker() -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))
}

/// The binary with a web port and `args`; its web address.
fn process(args: &[&str]) -> (ServerProcess, SocketAddr) {
    let mut all = vec!["--web-port".to_string(), "0".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    let process = ServerProcess::start(ProcessOptions {
        args: all,
        ..ProcessOptions::default()
    });
    let early = process.lines_before_listening();
    let web = early
        .iter()
        .find_map(|l| l.strip_prefix("web listening on "))
        .unwrap_or_else(|| panic!("no `web listening on` line: {early:?}"))
        .parse()
        .expect("a web address");
    (process, web)
}

#[test]
fn the_per_address_limit_counts_web_connections() {
    let (server, web) = process(&["--max-per-ip", "2"]);
    let mut tcp = Client::connect_from(server.addr, attacker());
    tcp.expect(USERNAME);
    let stream = WebSocketStream::connect(web, Some(attacker()));
    let mut ws = WebClient::open(stream, web, None).expect("a session");
    ws.expect(USERNAME);
    // The third connection of the address is refused on either port.
    let request = format!("GET / HTTP/1.1\r\nHost: {web}\r\n\r\n");
    let refused = http(
        WebSocketStream::connect(web, Some(attacker())),
        request.as_bytes(),
    );
    assert_eq!(refused.status, 503);
    assert_eq!(
        refused.body,
        b"Error. Too many connections from your address\n"
    );
    let mut third = Client::connect_from(server.addr, attacker());
    third.expect_line("Error. Too many connections from your address");
    // Trusted loopback is not counted.
    assert_eq!(get(web, "/", "").status, 200);
    // A web connection that leaves frees its slot.
    drop(ws);
    common::wait_until("the web slot to be free", || {
        let request = format!("GET / HTTP/1.1\r\nHost: {web}\r\n\r\n");
        let stream = WebSocketStream::connect(web, Some(attacker()));
        http(stream, request.as_bytes()).status == 200
    });
}

#[test]
fn a_request_must_come_within_the_http_timeout_and_the_login_within_its_own() {
    let (_server, web) = process(&["--login-timeout", "0.5"]);
    let started = Instant::now();
    let silent = http(WebSocketStream::connect(web, None), b"");
    assert_eq!(silent.status, 408);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(400) && waited < Duration::from_secs(3),
        "{waited:?}"
    );
    let mut ws = WebClient::open(WebSocketStream::connect(web, None), web, None).expect("open");
    ws.expect(USERNAME);
    let (_, texts) = ws.ending();
    assert_eq!(texts, ["Login timed out"]);
}

#[test]
fn over_tls_the_page_is_https_and_sessions_are_wss() {
    let (server, web) = process(&["--tls"]);
    let early = server.lines_before_listening();
    let fingerprint = early
        .iter()
        .find_map(|l| l.strip_prefix("tls fingerprint "))
        .expect("a fingerprint")
        .to_string();
    let request = format!("GET / HTTP/1.1\r\nHost: {web}\r\n\r\n");
    let page = http(
        WebSocketStream::connect_tls(web, &fingerprint),
        request.as_bytes(),
    );
    assert_eq!(page.status, 200);
    assert!(page.header("content-security-policy").is_some());
    // Plaintext is not spoken there.
    let plain = raw_exchange(web, request.as_bytes());
    assert!(!plain.starts_with(b"HTTP"), "answered in plaintext");
    // The own origin is https:// over TLS.
    let own = format!("https://{web}");
    let stream = WebSocketStream::connect_tls(web, &fingerprint);
    let mut yoda = WebClient::open(stream, web, Some(&own)).expect("a wss session");
    yoda.login("yoda", "wise");
    let mut hans = Client::connect_tls(server.addr, &fingerprint);
    hans.login("hans", "falcon");
    yoda.expect("hans logged in");
    yoda.send("message hans over wss");
    hans.expect_line("yoda: over wss");
    hans.send("message yoda over TLS\n");
    yoda.expect("hans: over TLS");
    yoda.send("logout");
    let (ending, texts) = yoda.ending();
    assert_eq!(texts, ["Goodbye"]);
    assert_eq!(ending, Ending::Closed(CloseCode::Normal));
    let stream = WebSocketStream::connect_tls(web, &fingerprint);
    let http_origin = format!("http://{web}");
    match WebClient::open(stream, web, Some(&http_origin)) {
        Err(tungstenite::Error::Http(answer)) => assert_eq!(answer.status().as_u16(), 403),
        other => panic!("expected 403, got {:?}", other.map(|_| "a session")),
    }
}
