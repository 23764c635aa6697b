//! The wire protocol as text: turning one received line into a [`Command`],
//! and every line the server sends, in one place.
//!
//! Nothing here does I/O, so the parser can be unit-tested and fuzzed on its
//! own. The wording of every reply is fixed by `protocol.md`, and this is
//! the one place that spells it: a line that never changes is a constant
//! (`&str`, so that the server copies it without formatting and clients
//! match on it in patterns), a line with arguments is a [`Reply`], and the
//! answers to a line that could not be read or parsed are [`LineError`]
//! and [`ParseError`].

use std::fmt;
use std::net::SocketAddr;

use crate::token::Hex;

/// The first login prompt; like [`PASSWORD_PROMPT`] it has no newline so that
/// typing after it in `nc` feels natural.
pub const USERNAME_PROMPT: &str = "Username: ";
/// The second login prompt.
pub const PASSWORD_PROMPT: &str = "Password: ";
/// Sent after a successful login, before any queued offline messages.
pub const WELCOME: &str = "Welcome to the greatest messaging application ever!";
/// Login with a username that is not in the credentials file.
pub const INVALID_USERNAME: &str = "Invalid Username. Please try again";
/// First or second consecutive wrong password.
pub const INVALID_PASSWORD: &str = "Invalid Password. Please try again";
/// Third consecutive wrong password: the account is banned.
pub const PASSWORD_BANNED: &str =
    "Invalid Password. Your account has been blocked. Please try again later";
/// Any password for an account that is currently banned.
pub const ACCOUNT_BANNED: &str =
    "Your account is blocked due to multiple login failures. Please try again later";
/// Right password for a user that is online on another connection.
pub const ALREADY_LOGGED_IN: &str = "This user is already logged in";
/// Reply to `logout`, sent after the user is already offline.
pub const GOODBYE: &str = "Goodbye";
/// Idle timeout of a logged-in user.
pub const INACTIVITY_LOGOUT: &str = "You have been logged out due to inactivity";
/// Idle timeout before login completed.
pub const LOGIN_TIMED_OUT: &str = "Login timed out";
/// A message whose recipient blocked the sender.
pub const MESSAGE_BLOCKED: &str =
    "Your message could not be delivered as the recipient has blocked you";
/// A broadcast that skipped someone online because they blocked the sender.
pub const BROADCAST_PARTIAL: &str = "Your message could not be delivered to some recipients";
/// `whoelse` with nobody to list.
pub const NO_OTHER_USERS: &str = "No other users are online";
/// `whoelsesince` with nobody to list.
pub const NO_OTHER_USERS_SINCE: &str = "No other users since then";
/// A command naming a user that is not in the credentials file.
pub const INVALID_USER: &str = "Error. Invalid user";
/// `message` to oneself.
pub const CANNOT_MESSAGE_SELF: &str = "Error. Cannot message self";
/// `block` of oneself.
pub const CANNOT_BLOCK_SELF: &str = "Error. Cannot block self";
/// `unblock` of oneself.
pub const CANNOT_UNBLOCK_SELF: &str = "Error. Cannot unblock self";
/// A line after login that is not a known command.
pub const INVALID_COMMAND: &str = "Error. Invalid command";
/// A line longer than the line limit.
pub const LINE_TOO_LONG: &str = "Error. Line too long";
/// A line that is not valid UTF-8.
pub const INVALID_ENCODING: &str = "Error. Invalid encoding";
/// A connection beyond `--max-clients`.
pub const SERVER_FULL: &str = "Error. Server is full";
/// A connection beyond `--max-per-ip` from one untrusted address.
pub const TOO_MANY_CONNECTIONS: &str = "Error. Too many connections from your address";
/// A password from an untrusted address past its `--max-failures-per-ip`.
pub const TOO_MANY_FAILURES: &str =
    "Error. Too many failed logins from your address. Please try again later";
/// An offline `message` when stored mail has reached `--store-max`.
pub const STORAGE_FULL: &str = "Error. Server storage is full";
/// A durable command (offline `message`, `block`, `unblock`) while the
/// journal cannot be written.
pub const STORAGE_UNAVAILABLE: &str = "Error. Server storage is unavailable";
/// Sent to every connection when the server stops.
pub const SHUTTING_DOWN: &str = "Server is shutting down";
/// The reply to `help`: one line per command with its arguments.
pub const HELP: &[&str] = &[
    "message <user> <message>",
    "broadcast <message>",
    "whoelse",
    "whoelsesince <seconds>",
    "block <user>",
    "unblock <user>",
    "logout",
    "help",
];
/// `startprivate`, `private` or `stopprivate` from a session that never
/// sent `privateport`: only the `confab` client can take part.
pub const PRIVATE_NEEDS_CLIENT: &str = "Error. Private messaging needs the confab client";
/// `startprivate` of oneself.
pub const CANNOT_PRIVATE_SELF: &str = "Error. Cannot start private messaging with self";
/// `startprivate` when the server could not draw a random token: nothing
/// is sent to the other user.
pub const PRIVATE_UNAVAILABLE: &str = "Error. Private messaging is unavailable";
/// [`Reply::PrivateNotEnabled`] as a string: the server's reply when a
/// registered client passes on `private` or `stopprivate`, and the
/// `confab` client's own when it has no such session.
pub fn private_not_enabled(user: &str) -> String {
    Reply::PrivateNotEnabled { user }.to_string()
}
/// Follows [`HELP`] for a session that sent `privateport`: the commands its
/// client handles itself.
pub const PRIVATE_HELP: &[&str] = &[
    "startprivate <user>",
    "private <user> <message>",
    "stopprivate <user>",
];
/// First word of a line the server sends only to a session that sent
/// `privateport`, for its client to act on: the introduction lines of
/// `startprivate`, never shown to the user as they are.
pub const PRIVATE_PREFIX: &str = "!private";
/// Second word of the `!private` line that tells the target of a
/// `startprivate` to expect the starter: `!private accept <user> <token>`.
pub const PRIVATE_ACCEPT: &str = "accept";
/// Second word of the `!private` line that tells the starter where to
/// connect: `!private connect <user> <ip>:<port> <token>`.
pub const PRIVATE_CONNECT: &str = "connect";

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
    /// `!private accept <user> <token>`: to the target of `startprivate`,
    /// whose client is to expect `<user>` presenting `<token>`.
    PrivateAccept {
        /// The starter.
        user: &'a str,
        /// What the starter's client will present.
        token: Hex,
    },
    /// `!private connect <user> <ip>:<port> <token>`: to the starter, whose
    /// client is to dial `<user>` there and present `<token>` (an IPv6
    /// address in brackets).
    PrivateConnect {
        /// The target.
        user: &'a str,
        /// Where the target's client listens.
        address: SocketAddr,
        /// What to present.
        token: Hex,
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
            Reply::Message { .. } | Reply::PrivateAccept { .. } | Reply::PrivateConnect { .. } => {
                return None
            }
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
            Reply::PrivateAccept { user, token } => {
                write!(out, "{PRIVATE_PREFIX} {PRIVATE_ACCEPT} {user} {token}")
            }
            Reply::PrivateConnect {
                user,
                address,
                token,
            } => write!(
                out,
                "{PRIVATE_PREFIX} {PRIVATE_CONNECT} {user} {address} {token}"
            ),
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

/// `fmt::Write` into a byte vector.
struct ByteSink<'v>(&'v mut Vec<u8>);

impl fmt::Write for ByteSink<'_> {
    #[inline]
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

/// One command of a logged-in user, borrowing its arguments from the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command<'a> {
    /// `message <user> <message>`: send text to one user, online or not.
    Message {
        /// The recipient's username as typed.
        to: &'a str,
        /// The rest of the line, inner spaces kept.
        text: &'a str,
    },
    /// `broadcast <message>`: send text to everyone online.
    Broadcast {
        /// The rest of the line, inner spaces kept.
        text: &'a str,
    },
    /// `whoelse`: list the other users online now.
    WhoElse,
    /// `whoelsesince <seconds>`: list users online within a window.
    WhoElseSince {
        /// The window; values too large for `u64` saturate (any whole
        /// number is valid, and a window longer than the server's uptime
        /// lists everyone it has seen).
        seconds: u64,
    },
    /// `block <user>`: stop receiving from and being seen by `<user>`.
    Block {
        /// The username as typed.
        user: &'a str,
    },
    /// `unblock <user>`: undo a `block`.
    Unblock {
        /// The username as typed.
        user: &'a str,
    },
    /// `logout`: end the session.
    Logout,
    /// `help`: list the commands.
    Help,
    /// `privateport <port>`: sent by the `confab` client, not typed: it
    /// accepts private sessions on this TCP port of the address its
    /// connection comes from.
    PrivatePort {
        /// The port, 1 to 65535.
        port: u16,
    },
    /// `startprivate <user>`: ask the server to introduce the two clients.
    StartPrivate {
        /// The username as typed.
        user: &'a str,
    },
    /// `private <user> <message>`: handled by the `confab` client; reaching
    /// the server means no session with `<user>` exists.
    Private {
        /// The recipient's username as typed.
        to: &'a str,
        /// The rest of the line, inner spaces kept.
        text: &'a str,
    },
    /// `stopprivate <user>`: handled by the `confab` client, like
    /// [`Command::Private`].
    StopPrivate {
        /// The username as typed.
        user: &'a str,
    },
}

/// Why a line did not parse into a [`Command`]; its `Display` is the exact
/// error line the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParseError {
    /// Not a known command keyword.
    InvalidCommand,
    /// A known keyword with missing or extra arguments.
    Usage(Keyword),
}

/// The command keywords, used to name the usage line of a malformed command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keyword {
    /// `message`
    Message,
    /// `broadcast`
    Broadcast,
    /// `whoelse`
    WhoElse,
    /// `whoelsesince`
    WhoElseSince,
    /// `block`
    Block,
    /// `unblock`
    Unblock,
    /// `logout`
    Logout,
    /// `help`
    Help,
    /// `privateport`
    PrivatePort,
    /// `startprivate`
    StartPrivate,
    /// `private`
    Private,
    /// `stopprivate`
    StopPrivate,
}

impl Keyword {
    /// The exact usage line for this command.
    pub fn usage(self) -> &'static str {
        match self {
            Keyword::Message => "Error. Usage: message <user> <message>",
            Keyword::Broadcast => "Error. Usage: broadcast <message>",
            Keyword::WhoElse => "Error. Usage: whoelse",
            Keyword::WhoElseSince => "Error. Usage: whoelsesince <seconds>",
            Keyword::Block => "Error. Usage: block <user>",
            Keyword::Unblock => "Error. Usage: unblock <user>",
            Keyword::Logout => "Error. Usage: logout",
            Keyword::Help => "Error. Usage: help",
            Keyword::PrivatePort => "Error. Usage: privateport <port>",
            Keyword::StartPrivate => "Error. Usage: startprivate <user>",
            Keyword::Private => "Error. Usage: private <user> <message>",
            Keyword::StopPrivate => "Error. Usage: stopprivate <user>",
        }
    }
}

impl ParseError {
    /// The exact error line, as `Display` shows it.
    pub fn text(self) -> &'static str {
        match self {
            ParseError::InvalidCommand => INVALID_COMMAND,
            ParseError::Usage(keyword) => keyword.usage(),
        }
    }
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Why a received line could not even be read as text; its `Display` is
/// the exact error line the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Longer than the line limit; the rest of it up to `\n` is discarded.
    TooLong,
    /// Not valid UTF-8.
    InvalidEncoding,
}

impl LineError {
    /// The exact error line, as `Display` shows it.
    pub fn text(self) -> &'static str {
        match self {
            LineError::TooLong => LINE_TOO_LONG,
            LineError::InvalidEncoding => INVALID_ENCODING,
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Turns the bytes of one received line (without its `\n`) into text:
/// strips one trailing `\r` and the surrounding spaces. `Ok(None)` is a line
/// that is empty after that, which the protocol ignores (it is not
/// activity).
pub fn decode_line(raw: &[u8]) -> Result<Option<&str>, LineError> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let text = std::str::from_utf8(raw).map_err(|_| LineError::InvalidEncoding)?;
    let text = text.trim_matches(' ');
    Ok((!text.is_empty()).then_some(text))
}

/// Splits off the first space-separated word of `s` (which has no leading
/// spaces); the rest has its leading spaces removed. The space is ASCII,
/// so a byte search finds it, and splitting there keeps both halves
/// valid UTF-8.
fn split_word(s: &str) -> (&str, &str) {
    match s.bytes().position(|b| b == b' ') {
        Some(at) => (&s[..at], s[at + 1..].trim_start_matches(' ')),
        None => (s, ""),
    }
}

/// Parses one decoded, non-empty line of a logged-in user (as returned by
/// [`decode_line`]: no surrounding spaces).
pub fn parse(line: &str) -> Result<Command<'_>, ParseError> {
    let (keyword, rest) = split_word(line);
    let usage = |k: Keyword| Err(ParseError::Usage(k));
    match keyword {
        "message" => match user_and_text(rest) {
            Some((to, text)) => Ok(Command::Message { to, text }),
            None => usage(Keyword::Message),
        },
        "broadcast" if rest.is_empty() => usage(Keyword::Broadcast),
        "broadcast" => Ok(Command::Broadcast { text: rest }),
        "whoelse" if rest.is_empty() => Ok(Command::WhoElse),
        "whoelse" => usage(Keyword::WhoElse),
        "whoelsesince" => match parse_whole(rest) {
            Some(seconds) => Ok(Command::WhoElseSince { seconds }),
            None => usage(Keyword::WhoElseSince),
        },
        "block" => match single_word(rest) {
            Some(user) => Ok(Command::Block { user }),
            None => usage(Keyword::Block),
        },
        "unblock" => match single_word(rest) {
            Some(user) => Ok(Command::Unblock { user }),
            None => usage(Keyword::Unblock),
        },
        "logout" if rest.is_empty() => Ok(Command::Logout),
        "logout" => usage(Keyword::Logout),
        "help" if rest.is_empty() => Ok(Command::Help),
        "help" => usage(Keyword::Help),
        "privateport" => match parse_whole(rest).and_then(|n| u16::try_from(n).ok()) {
            Some(port) if port != 0 => Ok(Command::PrivatePort { port }),
            _ => usage(Keyword::PrivatePort),
        },
        "startprivate" => match single_word(rest) {
            Some(user) => Ok(Command::StartPrivate { user }),
            None => usage(Keyword::StartPrivate),
        },
        "private" => match user_and_text(rest) {
            Some((to, text)) => Ok(Command::Private { to, text }),
            None => usage(Keyword::Private),
        },
        "stopprivate" => match single_word(rest) {
            Some(user) => Ok(Command::StopPrivate { user }),
            None => usage(Keyword::StopPrivate),
        },
        _ => Err(ParseError::InvalidCommand),
    }
}

/// `rest` if it is exactly one word.
fn single_word(rest: &str) -> Option<&str> {
    (!rest.is_empty() && !rest.contains(' ')).then_some(rest)
}

/// A user and the text after it (`message`, `private`), both non-empty.
fn user_and_text(rest: &str) -> Option<(&str, &str)> {
    let (user, text) = split_word(rest);
    (!user.is_empty() && !text.is_empty()).then_some((user, text))
}

/// A whole number ≥ 0 written in ASCII digits; saturates instead of
/// overflowing.
fn parse_whole(rest: &str) -> Option<u64> {
    let digits = single_word(rest)?;
    if !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(digits.bytes().fold(0u64, |n, d| {
        n.saturating_mul(10).saturating_add(u64::from(d - b'0'))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(k: Keyword) -> Result<Command<'static>, ParseError> {
        Err(ParseError::Usage(k))
    }

    #[test]
    fn decode_strips_one_cr_and_spaces() {
        assert_eq!(decode_line(b"  whoelse \r"), Ok(Some("whoelse")));
        assert_eq!(decode_line(b"a\r\r"), Ok(Some("a\r")));
        assert_eq!(decode_line(b""), Ok(None));
        assert_eq!(decode_line(b"   \r"), Ok(None));
        assert_eq!(decode_line(b"\r"), Ok(None));
    }

    #[test]
    fn decode_rejects_invalid_utf8() {
        assert_eq!(decode_line(b"\xff\xfe"), Err(LineError::InvalidEncoding));
        assert_eq!(decode_line(b"abc\xc3"), Err(LineError::InvalidEncoding));
        assert_eq!(decode_line("héllo".as_bytes()), Ok(Some("héllo")));
    }

    #[test]
    fn message_keeps_inner_spaces() {
        assert_eq!(
            parse("message yoda  hello   there"),
            Ok(Command::Message {
                to: "yoda",
                text: "hello   there"
            })
        );
        assert_eq!(
            parse("message   yoda x"),
            Ok(Command::Message {
                to: "yoda",
                text: "x"
            })
        );
    }

    #[test]
    fn message_needs_user_and_text() {
        assert_eq!(parse("message"), usage(Keyword::Message));
        assert_eq!(parse("message yoda"), usage(Keyword::Message));
    }

    #[test]
    fn broadcast() {
        assert_eq!(
            parse("broadcast hi  all"),
            Ok(Command::Broadcast { text: "hi  all" })
        );
        assert_eq!(parse("broadcast"), usage(Keyword::Broadcast));
    }

    #[test]
    fn commands_without_arguments() {
        assert_eq!(parse("whoelse"), Ok(Command::WhoElse));
        assert_eq!(parse("whoelse x"), usage(Keyword::WhoElse));
        assert_eq!(parse("logout"), Ok(Command::Logout));
        assert_eq!(parse("logout now"), usage(Keyword::Logout));
        assert_eq!(parse("help"), Ok(Command::Help));
        assert_eq!(parse("help me"), usage(Keyword::Help));
    }

    #[test]
    fn whoelsesince_takes_a_whole_number() {
        assert_eq!(
            parse("whoelsesince 30"),
            Ok(Command::WhoElseSince { seconds: 30 })
        );
        assert_eq!(
            parse("whoelsesince 0"),
            Ok(Command::WhoElseSince { seconds: 0 })
        );
        assert_eq!(
            parse("whoelsesince 99999999999999999999999"),
            Ok(Command::WhoElseSince { seconds: u64::MAX })
        );
        for bad in [
            "whoelsesince",
            "whoelsesince -1",
            "whoelsesince 1.5",
            "whoelsesince abc",
            "whoelsesince +3",
            "whoelsesince 1 2",
            "whoelsesince ３",
        ] {
            assert_eq!(parse(bad), usage(Keyword::WhoElseSince), "{bad}");
        }
    }

    #[test]
    fn block_and_unblock_take_one_user() {
        assert_eq!(parse("block yoda"), Ok(Command::Block { user: "yoda" }));
        assert_eq!(parse("block"), usage(Keyword::Block));
        assert_eq!(parse("block a b"), usage(Keyword::Block));
        assert_eq!(parse("unblock yoda"), Ok(Command::Unblock { user: "yoda" }));
        assert_eq!(parse("unblock"), usage(Keyword::Unblock));
        assert_eq!(parse("unblock a  b"), usage(Keyword::Unblock));
    }

    #[test]
    fn privateport_takes_a_port_from_1_to_65535() {
        for (line, port) in [
            ("privateport 1", 1),
            ("privateport 5000", 5000),
            ("privateport   65535", 65535),
            ("privateport 0080", 80),
        ] {
            assert_eq!(parse(line), Ok(Command::PrivatePort { port }), "{line}");
        }
        for bad in [
            "privateport",
            "privateport 0",
            "privateport 65536",
            "privateport 99999999999999999999999",
            "privateport +1",
            "privateport -1",
            "privateport 1.5",
            "privateport 0x50",
            "privateport 80 81",
            "privateport ８０",
        ] {
            assert_eq!(parse(bad), usage(Keyword::PrivatePort), "{bad}");
        }
    }

    #[test]
    fn startprivate_and_stopprivate_take_one_user() {
        assert_eq!(
            parse("startprivate  yoda"),
            Ok(Command::StartPrivate { user: "yoda" })
        );
        assert_eq!(parse("startprivate"), usage(Keyword::StartPrivate));
        assert_eq!(parse("startprivate a b"), usage(Keyword::StartPrivate));
        assert_eq!(
            parse("stopprivate yoda"),
            Ok(Command::StopPrivate { user: "yoda" })
        );
        assert_eq!(parse("stopprivate"), usage(Keyword::StopPrivate));
        assert_eq!(parse("stopprivate a  b"), usage(Keyword::StopPrivate));
    }

    #[test]
    fn private_is_parsed_like_message() {
        assert_eq!(
            parse("private   yoda  hello   there"),
            Ok(Command::Private {
                to: "yoda",
                text: "hello   there"
            })
        );
        assert_eq!(parse("private"), usage(Keyword::Private));
        assert_eq!(parse("private yoda"), usage(Keyword::Private));
        assert_eq!(parse("Private yoda hi"), Err(ParseError::InvalidCommand));
        assert_eq!(parse("privates yoda hi"), Err(ParseError::InvalidCommand));
    }

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
        let accept = Reply::PrivateAccept { user: "u", token };
        assert_renders(accept, "!private accept u abababababababababababababababab");
        let address = SocketAddr::new("2001:db8::7".parse().expect("ip"), 5000);
        let connect = Reply::PrivateConnect {
            user: "u",
            address,
            token,
        };
        let line = "!private connect u [2001:db8::7]:5000 abababababababababababababababab";
        assert_renders(connect, line);
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
    fn messages_are_read_back_at_the_first_separator() {
        assert_eq!(Reply::read_message("yoda: a: b"), Some(("yoda", "a: b")));
        assert_eq!(Reply::read_message("yoda logged in"), None);
    }

    #[test]
    fn private_not_enabled_names_the_user_as_given() {
        assert_eq!(
            private_not_enabled("Bob"),
            "Error. Private messaging to Bob not enabled"
        );
    }

    #[test]
    fn private_usage_lines_are_exact() {
        for (keyword, line) in [
            (Keyword::PrivatePort, "Error. Usage: privateport <port>"),
            (Keyword::StartPrivate, "Error. Usage: startprivate <user>"),
            (Keyword::Private, "Error. Usage: private <user> <message>"),
            (Keyword::StopPrivate, "Error. Usage: stopprivate <user>"),
        ] {
            assert_eq!(ParseError::Usage(keyword).to_string(), line);
        }
    }

    #[test]
    fn keywords_are_lowercase_and_exact() {
        for bad in ["Message yoda hi", "WHOELSE", "logouts", "hel", "x", "\0"] {
            assert_eq!(parse(bad), Err(ParseError::InvalidCommand), "{bad}");
        }
    }

    #[test]
    fn error_lines_are_exact() {
        assert_eq!(
            ParseError::InvalidCommand.to_string(),
            "Error. Invalid command"
        );
        assert_eq!(
            ParseError::Usage(Keyword::WhoElseSince).to_string(),
            "Error. Usage: whoelsesince <seconds>"
        );
        assert_eq!(LineError::TooLong.to_string(), "Error. Line too long");
        assert_eq!(
            LineError::InvalidEncoding.to_string(),
            "Error. Invalid encoding"
        );
    }
}
