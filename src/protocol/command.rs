//! Parsing one decoded line of a logged-in user into a [`Command`], and
//! the error line for a line that does not parse ([`ParseError`]).

use std::fmt;

use super::INVALID_COMMAND;
use crate::fingerprint::Fingerprint;

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
    /// `privateport <port> [<fingerprint>]`: sent by the `confab` client,
    /// not typed: it accepts private sessions on this TCP port of the
    /// address its connection comes from, over TLS with the certificate of
    /// `fingerprint` if one is given (a client whose server link is TLS).
    PrivatePort {
        /// The port, 1 to 65535.
        port: u16,
        /// Its private sessions' certificate, if they are TLS.
        fingerprint: Option<Fingerprint>,
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

/// Splits off the first space-separated word of `s` (which has no leading
/// spaces); the rest has its leading spaces removed. The space is ASCII,
/// so a byte search finds it, and splitting there keeps both halves
/// valid UTF-8.
#[inline]
fn split_word(s: &str) -> (&str, &str) {
    let bytes = s.as_bytes();
    let Some(at) = find_space(bytes) else {
        return (s, "");
    };
    let rest = bytes[at..]
        .iter()
        .position(|&b| b != b' ')
        .map_or(s.len(), |n| at + n);
    (&s[..at], &s[rest..])
}

/// The first space in `bytes`, looked for eight bytes at a time: the words
/// it separates (keywords, usernames) are short, where a call to a
/// vectorised search costs more than it saves.
#[inline]
fn find_space(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = u64::from_ne_bytes([0x01; 8]);
    const HIGHS: u64 = u64::from_ne_bytes([0x80; 8]);
    const SPACES: u64 = u64::from_ne_bytes([b' '; 8]);
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mut word = [0; 8];
        word.copy_from_slice(chunk);
        // A byte of `x` is zero where the word has a space; the lowest
        // flagged byte is the first zero (flags above a zero may be false).
        let x = u64::from_le_bytes(word) ^ SPACES;
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(at + zeros.trailing_zeros() as usize / 8);
        }
        at += 8;
    }
    let tail = chunks.remainder();
    tail.iter().position(|&b| b == b' ').map(|n| at + n)
}

/// Parses one decoded, non-empty line of a logged-in user (as returned by
/// [`decode_line`]: no surrounding spaces).
///
/// [`decode_line`]: super::decode_line
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
        "privateport" => {
            let (port, print) = split_word(rest);
            let port = parse_whole(port).and_then(|n| u16::try_from(n).ok());
            let fingerprint = match print {
                "" => Some(None),
                print => Fingerprint::parse(print).map(Some),
            };
            match (port, fingerprint) {
                (Some(port), Some(fingerprint)) if port != 0 => {
                    Ok(Command::PrivatePort { port, fingerprint })
                }
                _ => usage(Keyword::PrivatePort),
            }
        }
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
    #[test]
    fn find_space_finds_the_first_space_wherever_it_is() {
        // Bytes next to a space in value, the high ones among them, so
        // that a wrong carry or a flag on the wrong byte would show.
        let fillers = [b'a', b'!', 0x1f, 0x21, 0x80, 0xa0, 0xff, 0x00];
        for len in 0..40 {
            for filler in fillers {
                let mut bytes = vec![filler; len];
                assert_eq!(find_space(&bytes), None, "{bytes:?}");
                for first in 0..len {
                    bytes.fill(filler);
                    bytes[first] = b' ';
                    if first + 3 < len {
                        bytes[first + 3] = b' ';
                    }
                    assert_eq!(find_space(&bytes), Some(first), "{bytes:?}");
                }
            }
        }
    }

    use super::*;

    fn usage(k: Keyword) -> Result<Command<'static>, ParseError> {
        Err(ParseError::Usage(k))
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
            let fingerprint = None;
            assert_eq!(
                parse(line),
                Ok(Command::PrivatePort { port, fingerprint }),
                "{line}"
            );
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
            "privateport 80 SHA256:short",
            "privateport SHA256:0000000000000000000000000000000000000000000",
        ] {
            assert_eq!(parse(bad), usage(Keyword::PrivatePort), "{bad}");
        }
        let print = Fingerprint([7; 32]);
        assert_eq!(
            parse(&format!("privateport 5000 {print}")),
            Ok(Command::PrivatePort {
                port: 5000,
                fingerprint: Some(print)
            })
        );
        assert_eq!(
            parse(&format!("privateport 5000 {print} x")),
            usage(Keyword::PrivatePort)
        );
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
}
