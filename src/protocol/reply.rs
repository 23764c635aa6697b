//! The lines the server sends that have arguments: the typed [`Reply`],
//! written into a buffer or shown with `Display`, and read back by the
//! clients that need to recognise one.

use std::fmt;
use std::net::SocketAddr;

use super::{PRIVATE_ACCEPT, PRIVATE_CONNECT, PRIVATE_PREFIX, QUEUED_PREFIX};
use crate::fingerprint::Fingerprint;
use crate::token::Hex;

/// A line the server sends that has arguments, borrowing them. Its
/// `Display` is the exact line without its newline; [`Reply::append_to`]
/// writes the same bytes straight into a buffer, which is how the domain
/// renders it once for any number of recipients.
///
/// A username in a reply is the one typed in the command, which is the
/// account's name whenever the reply is sent (names are matched exactly).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reply<'a> {
    /// `<from>: <text>`: a message or broadcast, live or from the mailbox.
    Message {
        /// The sender's username.
        from: &'a str,
        /// The text as sent.
        text: &'a str,
    },
    /// `<user> logged in`: presence, to the other users online.
    LoggedIn {
        /// Who logged in.
        user: &'a str,
    },
    /// `<user> logged out`: presence, however the session ended.
    LoggedOut {
        /// Who logged out.
        user: &'a str,
    },
    /// `<user>`: one line of the answer to `whoelse` or `whoelsesince`.
    Listed {
        /// A user online, or recently.
        user: &'a str,
    },
    /// `<user> is offline. Your message will be delivered when they log
    /// in`: the message was stored.
    Offline {
        /// The recipient.
        user: &'a str,
    },
    /// `Error. <user>'s mailbox is full`: the message was not stored.
    MailboxFull {
        /// The recipient.
        user: &'a str,
    },
    /// `<user> is blocked`: `block` changed the list.
    Blocked {
        /// Who is blocked now.
        user: &'a str,
    },
    /// `Error. <user> is already blocked`
    AlreadyBlocked {
        /// Who was blocked before.
        user: &'a str,
    },
    /// `<user> is unblocked`: `unblock` changed the list.
    Unblocked {
        /// Who is not blocked any more.
        user: &'a str,
    },
    /// `Error. <user> was not blocked`
    NotBlocked {
        /// Who was not on the list.
        user: &'a str,
    },
    /// `Error. Cannot start private messaging as <user> has blocked you`
    PrivateBlocked {
        /// The target of `startprivate`.
        user: &'a str,
    },
    /// `Error. <user> is offline`: `startprivate` to a user not logged in.
    PrivateOffline {
        /// The target of `startprivate`.
        user: &'a str,
    },
    /// `Error. <user> cannot accept private messaging`: the target's
    /// client never sent `privateport`.
    PrivateNotAccepted {
        /// The target of `startprivate`.
        user: &'a str,
    },
    /// `Error. Private messaging to <user> not enabled`: `private` or
    /// `stopprivate` with no session to `<user>`.
    PrivateNotEnabled {
        /// The user named.
        user: &'a str,
    },
    /// `!private accept <user> <token> [<fingerprint>]`: to the target of
    /// `startprivate`, whose client is to expect `<user>` presenting
    /// `<token>` (over TLS with the certificate of `<fingerprint>`, when
    /// both clients registered one).
    PrivateAccept {
        /// The starter.
        user: &'a str,
        /// What the starter's client will present.
        token: Hex,
        /// The starter's private certificate, for a TLS session.
        fingerprint: Option<Fingerprint>,
    },
    /// `!private connect <user> <ip>:<port> <token> [<fingerprint>]`: to
    /// the starter, whose client is to dial `<user>` there and present
    /// `<token>` (an IPv6 address in brackets), over TLS pinned to
    /// `<fingerprint>` when it is given.
    PrivateConnect {
        /// The target.
        user: &'a str,
        /// Where the target's client listens.
        address: SocketAddr,
        /// What to present.
        token: Hex,
        /// The target's private certificate, for a TLS session.
        fingerprint: Option<Fingerprint>,
    },
    /// `!queued <unix-seconds> <line>`: an offline message, to a session
    /// that sent `!stamps`, with the time it was stored (`-` for a time
    /// not known: mail stored by an earlier version).
    Queued {
        /// When the message was stored, in seconds since the Unix epoch.
        at: Option<u64>,
        /// The message as protocol v1 sends it: `<sender>: <text>`.
        line: &'a str,
    },
}

impl<'a> Reply<'a> {
    /// Appends the line, without its newline, to `out`: the bytes of
    /// `Display`, without a `fmt::Formatter` in between (the domain renders
    /// every message and presence line this way).
    #[inline]
    pub fn append_to(&self, out: &mut Vec<u8>) {
        // Writing into a Vec<u8> cannot fail.
        let _ = self.write(&mut ByteSink(out));
    }

    /// The user of `line` if it is the reply `shape` gives for some user:
    /// `shape` builds one of the variants that name a user and nothing
    /// else, as in `Reply::read_user(line, |user| Reply::Offline { user })`.
    /// The user must be one word, as usernames are.
    pub fn read_user(line: &str, shape: AboutUser) -> Option<&str> {
        let (before, _, after) = shape("").around_user()?;
        let user = line.strip_prefix(before)?.strip_suffix(after)?;
        (!user.is_empty() && !user.contains(' ')).then_some(user)
    }

    /// The sender and the text of `line` if it has the shape of a
    /// [`Reply::Message`]: usernames hold no spaces, so the first `": "`
    /// ends the sender.
    pub fn read_message(line: &str) -> Option<(&str, &str)> {
        line.split_once(MESSAGE_SEPARATOR)
    }

    /// The time and the message of `line` if it is a [`Reply::Queued`]:
    /// `None` for any other line, `!queued end` included.
    pub fn read_queued(line: &str) -> Option<(Option<u64>, &str)> {
        let rest = line.strip_prefix(QUEUED_PREFIX)?.strip_prefix(' ')?;
        let (at, line) = rest.split_once(' ')?;
        let at = match at {
            UNKNOWN_TIME => None,
            digits if digits.bytes().all(|b| b.is_ascii_digit()) => Some(digits.parse().ok()?),
            _ => return None,
        };
        Some((at, line))
    }

    /// The fixed words before and after the user, for the variants that
    /// name a user and nothing else.
    fn around_user(&self) -> Option<(&'static str, &'a str, &'static str)> {
        Some(match *self {
            Reply::LoggedIn { user } => ("", user, " logged in"),
            Reply::LoggedOut { user } => ("", user, " logged out"),
            Reply::Listed { user } => ("", user, ""),
            Reply::Offline { user } => (
                "",
                user,
                " is offline. Your message will be delivered when they log in",
            ),
            Reply::MailboxFull { user } => ("Error. ", user, "'s mailbox is full"),
            Reply::Blocked { user } => ("", user, " is blocked"),
            Reply::AlreadyBlocked { user } => ("Error. ", user, " is already blocked"),
            Reply::Unblocked { user } => ("", user, " is unblocked"),
            Reply::NotBlocked { user } => ("Error. ", user, " was not blocked"),
            Reply::PrivateBlocked { user } => (
                "Error. Cannot start private messaging as ",
                user,
                " has blocked you",
            ),
            Reply::PrivateOffline { user } => ("Error. ", user, " is offline"),
            Reply::PrivateNotAccepted { user } => {
                ("Error. ", user, " cannot accept private messaging")
            }
            Reply::PrivateNotEnabled { user } => {
                ("Error. Private messaging to ", user, " not enabled")
            }
            Reply::Message { .. }
            | Reply::PrivateAccept { .. }
            | Reply::PrivateConnect { .. }
            | Reply::Queued { .. } => return None,
        })
    }

    /// Writes the line into `out`: what both `Display` and
    /// [`Reply::append_to`] do, each with its own sink.
    #[inline]
    fn write<W: fmt::Write>(&self, out: &mut W) -> fmt::Result {
        match *self {
            Reply::Message { from, text } => {
                out.write_str(from)?;
                out.write_str(MESSAGE_SEPARATOR)?;
                out.write_str(text)
            }
            Reply::PrivateAccept {
                user,
                token,
                fingerprint,
            } => {
                write!(out, "{PRIVATE_PREFIX} {PRIVATE_ACCEPT} {user} {token}")?;
                fingerprint.map_or(Ok(()), |print| write!(out, " {print}"))
            }
            Reply::PrivateConnect {
                user,
                address,
                token,
                fingerprint,
            } => {
                write!(
                    out,
                    "{PRIVATE_PREFIX} {PRIVATE_CONNECT} {user} {address} {token}"
                )?;
                fingerprint.map_or(Ok(()), |print| write!(out, " {print}"))
            }
            Reply::Queued { at, line } => {
                write!(out, "{QUEUED_PREFIX} ")?;
                match at {
                    Some(at) => write!(out, "{at}")?,
                    None => out.write_str(UNKNOWN_TIME)?,
                }
                out.write_char(' ')?;
                out.write_str(line)
            }
            _ => {
                // Every other variant names a user and nothing else.
                let (before, user, after) = self.around_user().unwrap_or_default();
                if !before.is_empty() {
                    out.write_str(before)?;
                }
                out.write_str(user)?;
                out.write_str(after)
            }
        }
    }
}

impl fmt::Display for Reply<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write(f)
    }
}

/// A variant of [`Reply`] that names one user and nothing else, as a
/// function of the user, e.g. `|user| Reply::LoggedIn { user }`: what
/// [`Reply::read_user`] reads back, and how the domain says which presence
/// line to announce.
pub type AboutUser = fn(&str) -> Reply<'_>;

/// What separates the sender from the text in a [`Reply::Message`].
const MESSAGE_SEPARATOR: &str = ": ";

/// The time of a [`Reply::Queued`] whose time is not known.
const UNKNOWN_TIME: &str = "-";

/// `fmt::Write` into a byte vector.
struct ByteSink<'v>(&'v mut Vec<u8>);

impl fmt::Write for ByteSink<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The replies that name one user and nothing else, each with its
    /// exact text for the user `u`.
    const ABOUT_ONE_USER: [(AboutUser, &str); 13] = [
        (|user| Reply::LoggedIn { user }, "u logged in"),
        (|user| Reply::LoggedOut { user }, "u logged out"),
        (|user| Reply::Listed { user }, "u"),
        (
            |user| Reply::Offline { user },
            "u is offline. Your message will be delivered when they log in",
        ),
        (
            |user| Reply::MailboxFull { user },
            "Error. u's mailbox is full",
        ),
        (|user| Reply::Blocked { user }, "u is blocked"),
        (
            |user| Reply::AlreadyBlocked { user },
            "Error. u is already blocked",
        ),
        (|user| Reply::Unblocked { user }, "u is unblocked"),
        (
            |user| Reply::NotBlocked { user },
            "Error. u was not blocked",
        ),
        (
            |user| Reply::PrivateBlocked { user },
            "Error. Cannot start private messaging as u has blocked you",
        ),
        (|user| Reply::PrivateOffline { user }, "Error. u is offline"),
        (
            |user| Reply::PrivateNotAccepted { user },
            "Error. u cannot accept private messaging",
        ),
        (
            |user| Reply::PrivateNotEnabled { user },
            "Error. Private messaging to u not enabled",
        ),
    ];

    #[track_caller]
    fn assert_renders(reply: Reply<'_>, line: &str) {
        assert_eq!(reply.to_string(), line);
        let mut bytes = b"before\n".to_vec();
        reply.append_to(&mut bytes);
        assert_eq!(bytes, format!("before\n{line}").as_bytes());
    }

    #[test]
    fn replies_are_exact_and_rendered_alike_both_ways() {
        for (shape, line) in ABOUT_ONE_USER {
            assert_renders(shape("u"), line);
        }
        let (from, text) = ("yoda", "hi  there: you");
        assert_renders(Reply::Message { from, text }, "yoda: hi  there: you");
        let token = Hex([0xab; 16]);
        let accept = Reply::PrivateAccept {
            user: "u",
            token,
            fingerprint: None,
        };
        assert_renders(accept, "!private accept u abababababababababababababababab");
        let address = SocketAddr::new("2001:db8::7".parse().expect("ip"), 5000);
        let connect = Reply::PrivateConnect {
            user: "u",
            address,
            token,
            fingerprint: None,
        };
        let line = "!private connect u [2001:db8::7]:5000 abababababababababababababababab";
        assert_renders(connect, line);
        let print = Fingerprint([0; 32]);
        let accept = Reply::PrivateAccept {
            user: "u",
            token,
            fingerprint: Some(print),
        };
        let line = format!("!private accept u abababababababababababababababab {print}");
        assert_renders(accept, &line);
    }

    #[test]
    fn replies_about_one_user_are_read_back() {
        for (shape, line) in ABOUT_ONE_USER {
            assert_eq!(Reply::read_user(line, shape), Some("u"), "{line}");
            let long = shape("user0001").to_string();
            assert_eq!(Reply::read_user(&long, shape), Some("user0001"));
            assert_eq!(Reply::read_user(&shape("").to_string(), shape), None);
            assert_eq!(Reply::read_user(&shape("a b").to_string(), shape), None);
        }
        let blocked: AboutUser = |user| Reply::Blocked { user };
        assert_eq!(
            Reply::read_user("Error. u is already blocked", blocked),
            None
        );
        assert_eq!(Reply::read_user("u is unblocked", blocked), None);
        let message: AboutUser = |from| Reply::Message { from, text: "" };
        assert_eq!(
            Reply::read_user("yoda: ", message),
            None,
            "names more than a user"
        );
    }

    #[test]
    fn queued_messages_are_exact_and_read_back() {
        let stamped = Reply::Queued {
            at: Some(1_700_000_123),
            line: "yoda: hi  there",
        };
        assert_renders(stamped, "!queued 1700000123 yoda: hi  there");
        let unknown = Reply::Queued {
            at: None,
            line: "yoda: hi",
        };
        assert_renders(unknown, "!queued - yoda: hi");
        assert_eq!(
            Reply::read_queued("!queued 1700000123 yoda: hi  there"),
            Some((Some(1_700_000_123), "yoda: hi  there"))
        );
        assert_eq!(
            Reply::read_queued("!queued - yoda: hi"),
            Some((None, "yoda: hi"))
        );
        for other in [
            "!queued end",
            "!queued +5 yoda: hi",
            "!queued 12x yoda: hi",
            "!queued 99999999999999999999 yoda: hi",
            "!queuedx 5 yoda: hi",
            "yoda: hi",
        ] {
            assert_eq!(Reply::read_queued(other), None, "{other}");
        }
    }

    #[test]
    fn messages_are_read_back_at_the_first_separator() {
        assert_eq!(Reply::read_message("yoda: a: b"), Some(("yoda", "a: b")));
        assert_eq!(Reply::read_message("yoda logged in"), None);
    }
}
