//! The texts of private messaging: the server's `!private` lines that
//! introduce two clients, and the lines the clients then send each other.
//! Pure parsing and rendering, so both can be tested without sockets.

use std::net::SocketAddr;

use crate::fingerprint::Fingerprint;
use crate::protocol::{PRIVATE_ACCEPT, PRIVATE_CONNECT, PRIVATE_PREFIX};

/// Length of a session token in hex digits (128 random bits).
const TOKEN_DIGITS: usize = 32;

/// What the server says when it introduces this client to a peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(in crate::client) enum Introduction<'a> {
    /// `!private accept <user> <token> [<fingerprint>]`: `user` will
    /// connect and present `token` (over TLS, showing the certificate of
    /// `fingerprint`, if given).
    Accept {
        /// Who will connect.
        user: &'a str,
        /// What they must present first.
        token: &'a str,
        /// The certificate they must show, for a TLS session.
        fingerprint: Option<Fingerprint>,
    },
    /// `!private connect <user> <address> <token> [<fingerprint>]`:
    /// connect to `user`'s client at `address` and present `token` (over
    /// TLS, pinned to `fingerprint`, if given).
    Connect {
        /// Whom to connect to.
        user: &'a str,
        /// Their client's listening address.
        address: SocketAddr,
        /// What to present first.
        token: &'a str,
        /// Their certificate, for a TLS session.
        fingerprint: Option<Fingerprint>,
    },
}

impl<'a> Introduction<'a> {
    /// Reads a complete server line (without its `\n`). Only a line of
    /// exactly the right shape is an introduction: `!private`, a known verb,
    /// the right number of single-space-separated fields, a well-formed
    /// address and token. Every other server line starts with a fixed text
    /// or with a username followed by `:` or a space and a word that is no
    /// verb here, so none can be mistaken for one.
    pub(in crate::client) fn parse(line: &'a [u8]) -> Option<Self> {
        let line = std::str::from_utf8(line).ok()?;
        let line = line.strip_suffix('\r').unwrap_or(line);
        let mut fields = line.split(' ');
        if fields.next()? != PRIVATE_PREFIX {
            return None;
        }
        let verb = fields.next()?;
        let mut rest: Vec<&str> = fields.collect();
        // A trailing fingerprint is the certificate of a TLS session.
        let fingerprint = match rest.last().and_then(|last| last.strip_prefix("SHA256:")) {
            Some(_) => Some(Fingerprint::parse(rest.pop()?)?),
            None => None,
        };
        match rest.as_slice() {
            [user, token] if verb == PRIVATE_ACCEPT && is_name(user) && is_token(token) => {
                Some(Introduction::Accept {
                    user,
                    token,
                    fingerprint,
                })
            }
            [user, address, token]
                if verb == PRIVATE_CONNECT && is_name(user) && is_token(token) =>
            {
                Some(Introduction::Connect {
                    user,
                    address: address.parse().ok()?,
                    token,
                    fingerprint,
                })
            }
            _ => None,
        }
    }

    /// Whether `partial`, the start of a server line, could still become a
    /// `!private` line, so that it must not be shown before it is complete.
    pub(in crate::client) fn may_start(partial: &[u8]) -> bool {
        let prefix = PRIVATE_PREFIX.as_bytes();
        let n = partial.len().min(prefix.len());
        partial[..n] == prefix[..n]
    }
}

/// A username as the server sends it: one word (the credentials file
/// splits on ASCII whitespace).
fn is_name(s: &str) -> bool {
    !s.is_empty() && !s.bytes().any(|b| b.is_ascii_whitespace())
}

/// 32 lowercase hex digits.
fn is_token(s: &str) -> bool {
    s.len() == TOKEN_DIGITS && s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// One line between two clients.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum PeerLine<'a> {
    /// `hello <token>`: the first line of the connecting side.
    Hello(&'a str),
    /// `ok`: the accepting side took the token.
    Ok,
    /// `busy`: the accepting side keeps another session with this user
    /// (made the other way at the same moment); close quietly.
    Busy,
    /// `message <text>`: a private message; the text may be any bytes.
    Message(&'a [u8]),
    /// `stop`: the sender ends the session.
    Stop,
    /// Anything else: ignored, so that later versions can add lines.
    Unknown,
}

impl<'a> PeerLine<'a> {
    /// Reads one line (without its `\n`; one trailing `\r` is ignored).
    pub(super) fn parse(line: &'a [u8]) -> Self {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if let Some(text) = line.strip_prefix(b"message ") {
            return PeerLine::Message(text);
        }
        match line {
            b"ok" => PeerLine::Ok,
            b"busy" => PeerLine::Busy,
            b"stop" => PeerLine::Stop,
            _ => match line.strip_prefix(b"hello ").map(std::str::from_utf8) {
                Some(Ok(token)) if is_token(token) => PeerLine::Hello(token),
                _ => PeerLine::Unknown,
            },
        }
    }
}

/// The line that carries a private message.
pub(super) fn message_line(text: &str) -> String {
    format!("message {text}\n")
}

/// The first line of a connection: the token from the server.
pub(super) fn hello_line(token: &str) -> String {
    format!("hello {token}\n")
}

/// The accepting side's answer to a good `hello`.
pub(super) const OK_LINE: &[u8] = b"ok\n";
/// The accepting side's answer when a session already exists.
pub(super) const BUSY_LINE: &[u8] = b"busy\n";
/// The line that ends a session.
pub(super) const STOP_LINE: &[u8] = b"stop\n";

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    #[test]
    fn introductions_parse() {
        assert_eq!(
            Introduction::parse(format!("!private accept hans {TOKEN}").as_bytes()),
            Some(Introduction::Accept {
                user: "hans",
                token: TOKEN,
                fingerprint: None
            })
        );
        let line = format!("!private connect yoda 127.0.0.1:4567 {TOKEN}\r");
        assert_eq!(
            Introduction::parse(line.as_bytes()),
            Some(Introduction::Connect {
                user: "yoda",
                address: "127.0.0.1:4567".parse().expect("address"),
                token: TOKEN,
                fingerprint: None
            })
        );
        let line = format!("!private connect yoda [::1]:80 {TOKEN}");
        assert!(Introduction::parse(line.as_bytes()).is_some());
        let print = Fingerprint([3; 32]);
        let line = format!("!private connect yoda 127.0.0.1:4567 {TOKEN} {print}");
        assert_eq!(
            Introduction::parse(line.as_bytes()),
            Some(Introduction::Connect {
                user: "yoda",
                address: "127.0.0.1:4567".parse().expect("address"),
                token: TOKEN,
                fingerprint: Some(print)
            })
        );
        let line = format!("!private accept hans {TOKEN} {print}");
        assert!(Introduction::parse(line.as_bytes()).is_some());
    }

    #[test]
    fn other_server_lines_are_not_introductions() {
        for line in [
            format!("!private: accept hans {TOKEN}"),
            format!("!private accept hans {TOKEN} extra"),
            format!("!private accept hans  {TOKEN}"),
            format!("!private accept hans {}", TOKEN.to_uppercase()),
            "!private accept hans 0123".to_owned(),
            format!("!private connect yoda localhost:80 {TOKEN}"),
            "!private logged in".to_owned(),
            "!private logged out".to_owned(),
            "!private is offline. Your message will be delivered when they log in".to_owned(),
            format!("hans: !private accept vader {TOKEN}"),
            "!private".to_owned(),
            format!("!private accept hans {TOKEN} SHA256:short"),
            format!("!private accept hans SHA256:{}", "A".repeat(43)),
        ] {
            assert_eq!(Introduction::parse(line.as_bytes()), None, "{line}");
        }
        assert_eq!(Introduction::parse(b"!private accept h\xff x"), None);
    }

    #[test]
    fn a_line_may_start_an_introduction_only_while_it_matches_the_prefix() {
        assert!(Introduction::may_start(b""));
        assert!(Introduction::may_start(b"!pri"));
        assert!(Introduction::may_start(b"!private acc"));
        assert!(!Introduction::may_start(b"hans: hi"));
        assert!(!Introduction::may_start(b"!prx"));
    }

    #[test]
    fn peer_lines_parse() {
        assert_eq!(
            PeerLine::parse(format!("hello {TOKEN}").as_bytes()),
            PeerLine::Hello(TOKEN)
        );
        assert_eq!(PeerLine::parse(b"hello 12"), PeerLine::Unknown);
        assert_eq!(PeerLine::parse(b"ok\r"), PeerLine::Ok);
        assert_eq!(PeerLine::parse(b"busy"), PeerLine::Busy);
        assert_eq!(PeerLine::parse(b"stop"), PeerLine::Stop);
        assert_eq!(
            PeerLine::parse(b"message  hi \xff"),
            PeerLine::Message(b" hi \xff")
        );
        assert_eq!(PeerLine::parse(b"stopp"), PeerLine::Unknown);
        assert_eq!(PeerLine::parse(b""), PeerLine::Unknown);
    }

    #[test]
    fn rendered_lines_parse_back() {
        assert_eq!(
            PeerLine::parse(hello_line(TOKEN).trim_end().as_bytes()),
            PeerLine::Hello(TOKEN)
        );
        assert_eq!(
            PeerLine::parse(message_line("a  b").trim_end_matches('\n').as_bytes()),
            PeerLine::Message(b"a  b")
        );
    }
}
