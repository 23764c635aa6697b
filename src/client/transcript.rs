//! The conversation as the terminal UI shows it: what each line of the
//! server (or of the client itself) is — a message, your own message, a
//! private one, a notice, an error, mail from while you were away — and
//! how it looks: a `HH:MM` timestamp, each other user's name in a colour
//! of its own, notices and errors set apart.
//!
//! Pure: the text (already made safe by the sanitizer) and the time in,
//! the styled line out.

use std::fmt::Write;

use crossterm::style::{Attribute, Color, Stylize};

use crate::protocol::{
    ACCOUNT_BANNED, ACCOUNT_REMOVED, ALREADY_LOGGED_IN, BROADCAST_PARTIAL, INVALID_COMMAND,
    INVALID_PASSWORD, INVALID_USERNAME, MESSAGE_BLOCKED, PASSWORD_BANNED,
};

/// What the client adds to the server's unknown-command error.
pub(super) const HELP_HINT: &str = " (type help for the list of commands)";

/// The server's lines that are failures, though not `Error.` lines.
const FAILURES: [&str; 8] = [
    INVALID_USERNAME,
    INVALID_PASSWORD,
    PASSWORD_BANNED,
    ACCOUNT_BANNED,
    ALREADY_LOGGED_IN,
    MESSAGE_BLOCKED,
    BROADCAST_PARTIAL,
    ACCOUNT_REMOVED,
];

/// Colours a name can get: readable on dark and light backgrounds, none of
/// them the red of errors.
const NAME_COLOURS: [Color; 8] = [
    Color::Cyan,
    Color::Green,
    Color::Yellow,
    Color::Magenta,
    Color::Blue,
    Color::DarkCyan,
    Color::DarkGreen,
    Color::DarkMagenta,
];

/// One line of the conversation.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Entry<'a> {
    /// `from: text`, from the server.
    Message { from: &'a str, text: &'a str },
    /// What you sent: to one user, or to everyone with `to` `None`.
    Sent {
        me: &'a str,
        to: Option<&'a str>,
        text: &'a str,
        private: bool,
    },
    /// A private message from `from`.
    Private { from: &'a str, text: &'a str },
    /// Presence, replies, and the client's own news.
    Notice(&'a str),
    /// Something refused or failed.
    Error(&'a str),
}

impl<'a> Entry<'a> {
    /// What a line from the server is.
    pub(super) fn of_server(line: &'a str) -> Self {
        if line.starts_with("Error.") || FAILURES.contains(&line) {
            return Entry::Error(line);
        }
        match message(line) {
            Some((from, text)) => Entry::Message { from, text },
            None => Entry::Notice(line),
        }
    }

    /// What one of the client's own lines is (private messaging's news).
    pub(super) fn of_client(line: &'a str) -> Self {
        if line.starts_with("Error.") || line.starts_with("confab:") {
            return Entry::Error(line);
        }
        match line.split_once("(private): ") {
            Some((from, text)) if is_name(from) => Entry::Private { from, text },
            _ => Entry::Notice(line),
        }
    }

    /// The names of users this line shows (for completion).
    pub(super) fn names(&self) -> Option<&'a str> {
        match *self {
            Entry::Message { from, .. } | Entry::Private { from, .. } => Some(from),
            Entry::Sent { to, .. } => to,
            Entry::Notice(line) => {
                let name = [
                    " logged in",
                    " logged out",
                    " is blocked",
                    " is unblocked",
                    " started private messaging with you",
                ]
                .iter()
                .find_map(|end| line.strip_suffix(end))
                .or(Some(line))?;
                (is_name(name) && name != "Goodbye").then_some(name)
            }
            Entry::Error(_) => None,
        }
    }
}

/// `from: text` when `from` can be a username.
fn message(line: &str) -> Option<(&str, &str)> {
    let (from, text) = line.split_once(": ")?;
    is_name(from).then_some((from, text))
}

/// Whether `word` can be a username: one word, not empty.
fn is_name(word: &str) -> bool {
    !word.is_empty() && !word.contains([' ', '\t', ':'])
}

/// How lines are styled: with colours, or plain (`NO_COLOR`, `--no-color`).
#[derive(Debug, Clone, Copy)]
pub(super) struct Style {
    /// Whether to use colours and attributes.
    pub(super) colour: bool,
}

impl Style {
    /// `entry` as shown, stamped `stamp` (`HH:MM`).
    pub(super) fn line(&self, stamp: &str, entry: &Entry<'_>) -> String {
        let mut out = self.paint(stamp, Some(Color::DarkGrey), None);
        out.push(' ');
        match *entry {
            Entry::Message { from, text } => {
                let _ = write!(out, "{}: {text}", self.name(from));
            }
            Entry::Sent {
                me,
                to,
                text,
                private,
            } => {
                let me = self.paint(me, None, Some(Attribute::Bold));
                let to = to.map_or_else(|| "everyone".to_owned(), |to| self.name(to));
                let marker = if private {
                    self.paint(" (private)", Some(Color::DarkYellow), None)
                } else {
                    String::new()
                };
                let _ = write!(out, "{me} → {to}{marker}: {text}");
            }
            Entry::Private { from, text } => {
                let marker = self.paint("(private)", Some(Color::DarkYellow), None);
                let _ = write!(out, "{} {marker}: {text}", self.name(from));
            }
            Entry::Notice(text) => {
                out.push_str(&self.paint(&format!("* {text}"), Some(Color::DarkGrey), None));
            }
            Entry::Error(text) => {
                let hint = if text == INVALID_COMMAND {
                    HELP_HINT
                } else {
                    ""
                };
                out.push_str(&self.paint(&format!("! {text}{hint}"), Some(Color::Red), None));
            }
        }
        out
    }

    /// A user's name in its colour.
    pub(super) fn name(&self, name: &str) -> String {
        self.paint(name, Some(colour_of(name)), Some(Attribute::Bold))
    }

    /// `text` in `colour` and `attribute`, when colours are on.
    pub(super) fn paint(
        &self,
        text: &str,
        colour: Option<Color>,
        attribute: Option<Attribute>,
    ) -> String {
        if !self.colour {
            return text.to_owned();
        }
        let mut styled = text.stylize();
        if let Some(colour) = colour {
            styled = styled.with(colour);
        }
        if let Some(attribute) = attribute {
            styled = styled.attribute(attribute);
        }
        styled.to_string()
    }
}

/// The colour of `name`: always the same for the same name.
fn colour_of(name: &str) -> Color {
    // FNV-1a: stable across runs and builds, unlike the std hasher.
    let hash = name.bytes().fold(0xcbf2_9ce4_8422_2325_u64, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0100_0000_01b3)
    });
    NAME_COLOURS[(hash % NAME_COLOURS.len() as u64) as usize]
}

#[cfg(test)]
mod tests {
    use super::*;

    const PLAIN: Style = Style { colour: false };

    #[test]
    fn server_lines_are_sorted() {
        assert_eq!(
            Entry::of_server("hans: hi: there"),
            Entry::Message {
                from: "hans",
                text: "hi: there"
            }
        );
        assert_eq!(
            Entry::of_server("Error. Usage: message <user> <message>"),
            Entry::Error("Error. Usage: message <user> <message>")
        );
        assert_eq!(
            Entry::of_server("Invalid Password. Please try again"),
            Entry::Error("Invalid Password. Please try again")
        );
        assert_eq!(
            Entry::of_server("hans logged in"),
            Entry::Notice("hans logged in")
        );
        assert_eq!(
            Entry::of_client("hans(private): psst"),
            Entry::Private {
                from: "hans",
                text: "psst"
            }
        );
    }

    #[test]
    fn names_come_from_messages_presence_and_whoelse() {
        assert_eq!(Entry::of_server("hans: hi").names(), Some("hans"));
        assert_eq!(Entry::of_server("vader logged out").names(), Some("vader"));
        assert_eq!(Entry::of_server("luke").names(), Some("luke"));
        assert_eq!(Entry::of_server("Goodbye").names(), None);
        assert_eq!(Entry::of_server("No other users are online").names(), None);
    }

    #[test]
    fn lines_as_shown() {
        let sent = Entry::Sent {
            me: "yoda",
            to: Some("hans"),
            text: "on my way",
            private: false,
        };
        assert_eq!(PLAIN.line("14:02", &sent), "14:02 yoda → hans: on my way");
        let all = Entry::Sent {
            me: "yoda",
            to: None,
            text: "hi",
            private: false,
        };
        assert_eq!(PLAIN.line("14:02", &all), "14:02 yoda → everyone: hi");
        assert_eq!(
            PLAIN.line("09:00", &Entry::of_server(INVALID_COMMAND)),
            format!("09:00 ! {INVALID_COMMAND}{HELP_HINT}")
        );
        assert_eq!(
            PLAIN.line("09:00", &Entry::of_server("hans logged in")),
            "09:00 * hans logged in"
        );
        assert_eq!(
            PLAIN.line("09:00", &Entry::of_client("hans(private): psst")),
            "09:00 hans (private): psst"
        );
    }

    #[test]
    fn colours_are_stable_and_can_be_off() {
        let colour = Style { colour: true };
        assert_eq!(colour.name("hans"), colour.name("hans"));
        assert!(colour.name("hans").contains('\x1b'));
        assert!(!PLAIN
            .line("09:00", &Entry::of_server("hans: hi"))
            .contains('\x1b'));
        let names = ["hans", "yoda", "vader", "luke", "leia"];
        let colours: std::collections::HashSet<_> = names
            .iter()
            .map(|n| format!("{:?}", colour_of(n)))
            .collect();
        assert!(colours.len() > 1);
    }
}
