//! The one HTTP request a web connection makes, judged (pure): what it
//! asks for, whether it may, and the bytes of each answer.
//!
//! A request head is at most [`MAX_HEAD`] bytes with at most
//! [`MAX_HEADERS`] headers (past either: `431`). `GET /` (and `HEAD /`)
//! is the page; `GET /ws` with a valid WebSocket upgrade is `101`; other
//! paths are `404`, other methods `405`, anything malformed `400`. A
//! request with an `Origin` header is answered only if that is the page's
//! own origin (the scheme the listener speaks and the request's `Host`) or
//! one given with `--web-origin`; otherwise `403`: a page of another site
//! cannot open a WebSocket to the server with its visitor's browser
//! (cross-site WebSocket hijacking). A request without `Origin` is not a
//! browser's page and is answered.

use base64::Engine;
use tungstenite::handshake::derive_accept_key;

/// The largest request head, with its blank line.
pub const MAX_HEAD: usize = 8 * 1024;
/// The most headers a request may have.
pub const MAX_HEADERS: usize = 32;

/// What the listener knows that a request is judged against.
#[derive(Debug, Clone)]
pub struct Site {
    /// `https` over TLS, `http` otherwise.
    pub scheme: &'static str,
    /// Origins allowed besides the page's own (`--web-origin`), as given.
    pub origins: Vec<String>,
}

/// What to do with the bytes of a request read so far.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The head is not complete yet.
    Partial,
    /// The page; `head_only` for `HEAD`.
    Page {
        /// Headers without the body.
        head_only: bool,
    },
    /// A valid upgrade: answer `101` with this `Sec-WebSocket-Accept`.
    Upgrade {
        /// The accept key of the request's `Sec-WebSocket-Key`.
        accept: String,
    },
    /// An error answer, then close.
    Refuse(Status),
}

/// The error answers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// 400: malformed, or a bad upgrade.
    BadRequest,
    /// 403: an `Origin` that is not allowed.
    Forbidden,
    /// 404: a path that is neither `/` nor `/ws`.
    NotFound,
    /// 405: a method other than `GET` (or `HEAD` for the page).
    MethodNotAllowed,
    /// 408: no complete request in time.
    Timeout,
    /// 431: a head over [`MAX_HEAD`] or with more than [`MAX_HEADERS`].
    TooLarge,
    /// 503: the server is full, or the address has too many connections.
    Unavailable,
}

impl Status {
    /// The status line's code and reason.
    fn line(self) -> (u16, &'static str) {
        match self {
            Status::BadRequest => (400, "Bad Request"),
            Status::Forbidden => (403, "Forbidden"),
            Status::NotFound => (404, "Not Found"),
            Status::MethodNotAllowed => (405, "Method Not Allowed"),
            Status::Timeout => (408, "Request Timeout"),
            Status::TooLarge => (431, "Request Header Fields Too Large"),
            Status::Unavailable => (503, "Service Unavailable"),
        }
    }

    /// The whole answer, with `body` (the reason if `None`) as plain text,
    /// closing the connection.
    pub fn answer(self, body: Option<&str>) -> Vec<u8> {
        let (code, reason) = self.line();
        let body = format!("{}\n", body.unwrap_or(reason));
        let extra = match self {
            Status::MethodNotAllowed => "Allow: GET, HEAD\r\n",
            _ => "",
        };
        format!(
            "HTTP/1.1 {code} {reason}\r\n\
             Content-Type: text/plain; charset=utf-8\r\n\
             Content-Length: {}\r\n\
             {extra}\
             X-Content-Type-Options: nosniff\r\n\
             Cache-Control: no-store\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }
}

/// The answer to `GET /`: the page with its policy, closing the
/// connection; the length of its head (all `HEAD /` gets) is the second.
pub fn page_answer(html: &str, csp: &str) -> (Vec<u8>, usize) {
    let head = format!(
        "HTTP/1.1 200 OK\r\n\
         Content-Type: text/html; charset=utf-8\r\n\
         Content-Length: {}\r\n\
         Content-Security-Policy: {csp}\r\n\
         X-Content-Type-Options: nosniff\r\n\
         Referrer-Policy: no-referrer\r\n\
         Cache-Control: no-store\r\n\
         Connection: close\r\n\r\n",
        html.len()
    );
    let head_len = head.len();
    let mut answer = head.into_bytes();
    answer.extend_from_slice(html.as_bytes());
    (answer, head_len)
}

/// The `101` answer that makes the connection a WebSocket.
pub fn switching(accept: &str) -> Vec<u8> {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Accept: {accept}\r\n\r\n"
    )
    .into_bytes()
}

/// Judges the bytes of a request read so far (see the module
/// documentation). Bytes after a complete head are refused for an
/// upgrade: a client must wait for the `101` before it sends frames.
pub fn judge(bytes: &[u8], site: &Site) -> Verdict {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut request = httparse::Request::new(&mut headers);
    let head_len = match request.parse(bytes) {
        Ok(httparse::Status::Partial) if bytes.len() > MAX_HEAD => {
            return Verdict::Refuse(Status::TooLarge)
        }
        Ok(httparse::Status::Partial) => return Verdict::Partial,
        Ok(httparse::Status::Complete(n)) if n > MAX_HEAD => {
            return Verdict::Refuse(Status::TooLarge)
        }
        Ok(httparse::Status::Complete(n)) => n,
        Err(httparse::Error::TooManyHeaders) => return Verdict::Refuse(Status::TooLarge),
        Err(_) => return Verdict::Refuse(Status::BadRequest),
    };
    match decide(&request, site, bytes.len() > head_len) {
        Ok(verdict) => verdict,
        Err(status) => Verdict::Refuse(status),
    }
}

/// The verdict on a complete request; `more`: bytes followed its head.
fn decide(request: &httparse::Request<'_, '_>, site: &Site, more: bool) -> Result<Verdict, Status> {
    let (Some(method), Some(target)) = (request.method, request.path) else {
        return Err(Status::BadRequest);
    };
    let host = header(request, "host")?;
    if let Some(origin) = header(request, "origin")? {
        if !allowed(origin, host, site) {
            return Err(Status::Forbidden);
        }
    }
    let path = target.split_once('?').map_or(target, |(path, _)| path);
    match (method, path) {
        ("GET" | "HEAD", "/") => Ok(Verdict::Page {
            head_only: method == "HEAD",
        }),
        ("GET", "/ws") if !more => upgrade(request),
        ("GET", "/ws") => Err(Status::BadRequest),
        (_, "/ws") => Err(Status::MethodNotAllowed),
        ("GET" | "HEAD", _) => Err(Status::NotFound),
        _ => Err(Status::MethodNotAllowed),
    }
}

/// The checks of a WebSocket opening handshake (RFC 6455, 4.2.1).
fn upgrade(request: &httparse::Request<'_, '_>) -> Result<Verdict, Status> {
    let has_token = |name: &str, token: &str| -> Result<bool, Status> {
        Ok(header(request, name)?.is_some_and(|value| {
            value
                .split(',')
                .any(|t| t.trim().eq_ignore_ascii_case(token))
        }))
    };
    if request.version != Some(1)
        || !has_token("upgrade", "websocket")?
        || !has_token("connection", "upgrade")?
        || header(request, "sec-websocket-version")?.map(str::trim) != Some("13")
    {
        return Err(Status::BadRequest);
    }
    let key = header(request, "sec-websocket-key")?
        .map(str::trim)
        .ok_or(Status::BadRequest)?;
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(key)
        .map_err(|_| Status::BadRequest)?;
    if decoded.len() != 16 {
        return Err(Status::BadRequest);
    }
    Ok(Verdict::Upgrade {
        accept: derive_accept_key(key.as_bytes()),
    })
}

/// The value of the header `name` if the request has it, as text; a
/// header given twice, or not text, is a bad request.
fn header<'r>(request: &httparse::Request<'_, 'r>, name: &str) -> Result<Option<&'r str>, Status> {
    let mut found = None;
    for header in request.headers.iter() {
        if header.name.eq_ignore_ascii_case(name) {
            if found.is_some() {
                return Err(Status::BadRequest);
            }
            found = Some(std::str::from_utf8(header.value).map_err(|_| Status::BadRequest)?);
        }
    }
    Ok(found)
}

/// Whether `origin` is the page's own (the site's scheme and `host`) or
/// one given with `--web-origin`; letters' case does not matter.
fn allowed(origin: &str, host: Option<&str>, site: &Site) -> bool {
    let origin = origin.trim();
    let own = host.is_some_and(|host| {
        origin
            .strip_prefix(site.scheme)
            .and_then(|rest| rest.strip_prefix("://"))
            .is_some_and(|rest| rest.eq_ignore_ascii_case(host.trim()))
    });
    own || site
        .origins
        .iter()
        .any(|allowed| allowed.eq_ignore_ascii_case(origin))
}

/// `--web-origin`: `http://` or `https://`, then a host with an optional
/// port, and nothing else (no path, not even `/`), as browsers send it.
pub fn parse_origin(s: &str) -> Result<String, String> {
    let rest = s
        .strip_prefix("http://")
        .or_else(|| s.strip_prefix("https://"))
        .ok_or_else(|| format!("`{s}` is not an origin: it starts with http:// or https://"))?;
    let valid = !rest.is_empty()
        && rest
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:[]".contains(&b));
    if !valid {
        return Err(format!(
            "`{s}` is not an origin: a scheme, a host and an optional port, no path"
        ));
    }
    Ok(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn site() -> Site {
        Site {
            scheme: "http",
            origins: vec!["https://chat.example.org".into()],
        }
    }

    const UPGRADE: &str = "GET /ws HTTP/1.1\r\nHost: 127.0.0.1:8080\r\nUpgrade: websocket\r\n\
        Connection: keep-alive, Upgrade\r\nSec-WebSocket-Version: 13\r\n\
        Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n";

    fn with(extra: &str) -> Vec<u8> {
        format!("{UPGRADE}{extra}\r\n").into_bytes()
    }

    #[test]
    fn an_upgrade_gets_the_accept_key_of_the_rfc() {
        assert_eq!(
            judge(&with(""), &site()),
            Verdict::Upgrade {
                accept: "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=".into()
            }
        );
    }

    #[test]
    fn the_origin_must_be_the_pages_own_or_a_given_one() {
        let own = judge(&with("Origin: http://127.0.0.1:8080\r\n"), &site());
        assert!(matches!(own, Verdict::Upgrade { .. }), "{own:?}");
        let given = judge(&with("Origin: https://CHAT.example.org\r\n"), &site());
        assert!(matches!(given, Verdict::Upgrade { .. }), "{given:?}");
        for origin in [
            "http://evil.example",
            "https://127.0.0.1:8080",
            "http://127.0.0.1:8081",
            "null",
        ] {
            let verdict = judge(&with(&format!("Origin: {origin}\r\n")), &site());
            assert_eq!(verdict, Verdict::Refuse(Status::Forbidden), "{origin}");
        }
    }

    #[test]
    fn requests_are_sorted_by_method_and_path() {
        let get = |line: &str| judge(format!("{line}\r\nHost: h\r\n\r\n").as_bytes(), &site());
        assert_eq!(get("GET / HTTP/1.1"), Verdict::Page { head_only: false });
        assert_eq!(
            get("HEAD /?x=1 HTTP/1.1"),
            Verdict::Page { head_only: true }
        );
        assert_eq!(get("GET /x HTTP/1.1"), Verdict::Refuse(Status::NotFound));
        assert_eq!(
            get("POST / HTTP/1.1"),
            Verdict::Refuse(Status::MethodNotAllowed)
        );
        assert_eq!(get("GET /ws HTTP/1.1"), Verdict::Refuse(Status::BadRequest));
        assert_eq!(
            get("GET / HTTP/1.1\r\nHost: twice"),
            Verdict::Refuse(Status::BadRequest)
        );
        assert_eq!(get("GARBAGE"), Verdict::Refuse(Status::BadRequest));
        assert_eq!(judge(b"GET / HTTP/1.1\r\nHost:", &site()), Verdict::Partial);
    }

    #[test]
    fn a_bad_upgrade_is_refused() {
        let without = |name: &str| {
            let text: String = String::from_utf8(with(""))
                .expect("text")
                .split_inclusive("\r\n")
                .filter(|line| !line.starts_with(name))
                .collect();
            judge(text.as_bytes(), &site())
        };
        for name in [
            "Upgrade",
            "Connection",
            "Sec-WebSocket-Version",
            "Sec-WebSocket-Key",
        ] {
            assert_eq!(without(name), Verdict::Refuse(Status::BadRequest), "{name}");
        }
        let short_key = UPGRADE.replace("dGhlIHNhbXBsZSBub25jZQ==", "c2hvcnQ=") + "\r\n";
        assert_eq!(
            judge(short_key.as_bytes(), &site()),
            Verdict::Refuse(Status::BadRequest)
        );
        // Frames before the 101: the client did not wait.
        let mut early = with("");
        early.extend_from_slice(b"\x81\x80");
        assert_eq!(judge(&early, &site()), Verdict::Refuse(Status::BadRequest));
    }

    #[test]
    fn a_head_too_large_or_with_too_many_headers_is_431() {
        let mut long = b"GET / HTTP/1.1\r\nX: ".to_vec();
        long.resize(MAX_HEAD + 1, b'a');
        assert_eq!(judge(&long, &site()), Verdict::Refuse(Status::TooLarge));
        let many: String = (0..=MAX_HEADERS).map(|i| format!("X-{i}: y\r\n")).collect();
        let request = format!("GET / HTTP/1.1\r\n{many}\r\n");
        assert_eq!(
            judge(request.as_bytes(), &site()),
            Verdict::Refuse(Status::TooLarge)
        );
    }

    #[test]
    fn origins_are_parsed_as_browsers_send_them() {
        assert!(parse_origin("https://chat.example.org").is_ok());
        assert!(parse_origin("http://[::1]:8080").is_ok());
        for bad in ["chat.example.org", "https://", "https://a/", "ftp://a"] {
            assert!(parse_origin(bad).is_err(), "{bad}");
        }
    }
}
