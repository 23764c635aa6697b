//! The web port from a test's side: a WebSocket client whose every wait is
//! bounded ([`WebClient`], tungstenite over a blocking socket, plain or
//! TLS), and one raw HTTP exchange ([`http`]) for what a browser would
//! ask and what it would be answered.

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use tungstenite::client::IntoClientRequest;
use tungstenite::http::HeaderValue;
use tungstenite::protocol::frame::coding::CloseCode;
use tungstenite::protocol::WebSocketConfig;
use tungstenite::{Message, WebSocket};

use crate::replies::{PASSWORD, USERNAME, WELCOME};
use crate::wait::IO_TIMEOUT;

/// How long one read waits before the client looks at its deadline.
const TICK: Duration = Duration::from_millis(20);

/// A socket to the web port: plain, or a TLS session pinning the server's
/// certificate.
#[derive(Debug)]
pub enum WebSocketStream {
    /// `ws://`, `http://`.
    Plain(TcpStream),
    /// `wss://`, `https://`.
    Tls(Box<StreamOwned<ClientConnection, TcpStream>>),
}

impl WebSocketStream {
    /// A plain connection to `addr`, from `source` if given.
    pub fn connect(addr: SocketAddr, source: Option<IpAddr>) -> WebSocketStream {
        WebSocketStream::Plain(socket(addr, source))
    }

    /// A TLS connection to `addr` that trusts only the certificate of
    /// `fingerprint`.
    pub fn connect_tls(addr: SocketAddr, fingerprint: &str) -> WebSocketStream {
        let trust = Arc::new(confab::net::trust::Trust::pinned(fingerprint));
        let config = confab::net::trust::Trust::client_config(trust).expect("TLS config");
        let session =
            ClientConnection::new(config, ServerName::from(addr.ip())).expect("TLS session");
        let socket = socket(addr, None);
        WebSocketStream::Tls(Box::new(StreamOwned::new(session, socket)))
    }
}

/// A connected socket to `addr`, from `source` if given, whose reads wait
/// at most [`TICK`].
fn socket(addr: SocketAddr, source: Option<IpAddr>) -> TcpStream {
    let stream = match source {
        None => TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect"),
        Some(source) => crate::client::connect_from(addr, source),
    };
    stream.set_read_timeout(Some(TICK)).expect("read timeout");
    stream.set_nodelay(true).expect("nodelay");
    stream
}

impl Read for WebSocketStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            WebSocketStream::Plain(socket) => socket.read(buf),
            WebSocketStream::Tls(tls) => tls.read(buf),
        }
    }
}

impl Write for WebSocketStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            WebSocketStream::Plain(socket) => socket.write(buf),
            WebSocketStream::Tls(tls) => tls.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            WebSocketStream::Plain(socket) => socket.flush(),
            WebSocketStream::Tls(tls) => tls.flush(),
        }
    }
}

/// Whether `e` says only that a read's wait ran out.
fn timed_out(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// A WebSocket session with the server's web port.
#[derive(Debug)]
pub struct WebClient {
    ws: WebSocket<WebSocketStream>,
}

/// How a WebSocket ended, as the client saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// A close frame with this code, then the end of the connection.
    Closed(CloseCode),
    /// The connection ended without a close frame.
    Dropped,
}

impl WebClient {
    /// Opens `/ws` on `addr` (plain), without an `Origin` header; panics
    /// if the server refuses.
    pub fn connect(addr: SocketAddr) -> WebClient {
        WebClient::open(WebSocketStream::connect(addr, None), addr, None).expect("open /ws")
    }

    /// Opens `/ws` over `stream` to `addr`, with `origin` as the `Origin`
    /// header if given: the session, or the server's refusal (an HTTP
    /// answer shows as `tungstenite::Error::Http`).
    pub fn open(
        stream: WebSocketStream,
        addr: SocketAddr,
        origin: Option<&str>,
    ) -> Result<WebClient, tungstenite::Error> {
        let scheme = match stream {
            WebSocketStream::Plain(_) => "ws",
            WebSocketStream::Tls(_) => "wss",
        };
        let mut request = format!("{scheme}://{addr}/ws").into_client_request()?;
        if let Some(origin) = origin {
            let value = HeaderValue::from_str(origin).expect("an origin header");
            request.headers_mut().insert("Origin", value);
        }
        let config = WebSocketConfig::default().max_message_size(Some(64 << 20));
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut attempt = tungstenite::client::client_with_config(request, stream, Some(config));
        loop {
            match attempt {
                Ok((ws, _)) => return Ok(WebClient { ws }),
                Err(tungstenite::HandshakeError::Failure(e)) => return Err(e),
                Err(tungstenite::HandshakeError::Interrupted(mid)) => {
                    assert!(Instant::now() < deadline, "the WebSocket handshake hung");
                    attempt = mid.handshake();
                }
            }
        }
    }

    /// Sends `text` as one text message.
    pub fn send(&mut self, text: &str) {
        self.send_message(Message::text(text));
    }

    /// Sends any message.
    pub fn send_message(&mut self, message: Message) {
        self.ws.send(message).expect("send a message");
    }

    /// The next message within `wait`, pings skipped (tungstenite answers
    /// them); `None` if none came. Panics if the session ends.
    pub fn poll(&mut self, wait: Duration) -> Option<Message> {
        let deadline = Instant::now() + wait;
        loop {
            match self.ws.read() {
                Ok(Message::Ping(_)) => {}
                Ok(message) => return Some(message),
                Err(tungstenite::Error::Io(e)) if timed_out(&e) => {
                    if Instant::now() >= deadline {
                        return None;
                    }
                }
                Err(e) => panic!("the session ended: {e}"),
            }
        }
    }

    /// The next message; panics if none comes within [`IO_TIMEOUT`].
    pub fn message(&mut self) -> Message {
        self.poll(IO_TIMEOUT)
            .unwrap_or_else(|| panic!("no message within {IO_TIMEOUT:?}"))
    }

    /// The next message, which must be the text `expected`.
    #[track_caller]
    pub fn expect(&mut self, expected: &str) {
        match self.message() {
            Message::Text(text) => assert_eq!(text.as_str(), expected),
            other => panic!("expected the text {expected:?}, got {other:?}"),
        }
    }

    /// The next messages, which must be the texts `expected` in order.
    #[track_caller]
    pub fn expect_all(&mut self, expected: &[&str]) {
        for text in expected {
            self.expect(text);
        }
    }

    /// Nothing arrives for `ms` milliseconds.
    #[track_caller]
    pub fn expect_silence(&mut self, ms: u64) {
        if let Some(message) = self.poll(Duration::from_millis(ms)) {
            panic!("expected silence, got {message:?}");
        }
    }

    /// The login dialogue from the first prompt to the welcome message.
    pub fn login(&mut self, user: &str, pass: &str) {
        self.expect(USERNAME);
        self.send(user);
        self.expect(PASSWORD);
        self.send(pass);
        self.expect(WELCOME);
    }

    /// Reads, skipping any text, until the session ends (within
    /// [`IO_TIMEOUT`]): how it ended, and the texts that came first.
    pub fn ending(&mut self) -> (Ending, Vec<String>) {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut texts = Vec::new();
        let mut code = None;
        loop {
            assert!(Instant::now() < deadline, "the session did not end");
            match self.ws.read() {
                Ok(Message::Text(text)) => texts.push(text.as_str().to_owned()),
                Ok(Message::Close(frame)) => {
                    code = Some(frame.map_or(CloseCode::Status, |f| f.code));
                }
                Ok(_) => {}
                Err(tungstenite::Error::Io(e)) if timed_out(&e) => {}
                Err(tungstenite::Error::ConnectionClosed) => {
                    let ending = code.map_or(Ending::Dropped, Ending::Closed);
                    return (ending, texts);
                }
                Err(_) => return (code.map_or(Ending::Dropped, Ending::Closed), texts),
            }
        }
    }
}

/// An HTTP answer, read to the end of the connection.
#[derive(Debug, Clone)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers, names in lower case.
    pub headers: Vec<(String, String)>,
    /// What followed the head.
    pub body: Vec<u8>,
}

impl Answer {
    /// The value of the header `name` (lower case), if there is one.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Sends `request` as it is over `stream` and reads the answer until the
/// server closes the connection (within [`IO_TIMEOUT`]).
pub fn http(mut stream: WebSocketStream, request: &[u8]) -> Answer {
    stream.write_all(request).expect("send the request");
    stream.flush().expect("send the request");
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        assert!(
            Instant::now() < deadline,
            "the server did not close after answering; got {}",
            String::from_utf8_lossy(&bytes)
        );
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => bytes.extend_from_slice(&chunk[..n]),
            Err(e) if timed_out(&e) => {}
            // A reset after the whole answer (the server closed with
            // unread input) ends it too.
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset && !bytes.is_empty() => break,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
            Err(e) => panic!("reading the answer: {e}"),
        }
    }
    parse_answer(&bytes)
}

/// The status, headers and body of an answer's bytes.
fn parse_answer(bytes: &[u8]) -> Answer {
    let text = String::from_utf8_lossy(bytes);
    let (head, _) = text
        .split_once("\r\n\r\n")
        .unwrap_or_else(|| panic!("no complete head in {text:?}"));
    let body = bytes[head.len() + 4..].to_vec();
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("no status in {status_line:?}"));
    let headers = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    Answer {
        status,
        headers,
        body,
    }
}
