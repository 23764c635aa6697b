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
//!
//! The constants are here; the rest is split by idea, each part re-exported
//! from this module: `line` reads a received line as text
//! ([`decode_line`]), `command` parses it ([`parse`], [`Command`]), and
//! `reply` writes and reads back the lines with arguments ([`Reply`]).

mod command;
mod line;
mod reply;

pub use command::{parse, Command, Keyword, ParseError};
pub use line::{decode_line, LineError};
pub use reply::{AboutUser, Reply};

/// The first login prompt; like [`PASSWORD_PROMPT`] it has no newline so that
/// typing after it in `nc` feels natural.
pub const USERNAME_PROMPT: &str = "Username: ";
/// The second login prompt.
pub const PASSWORD_PROMPT: &str = "Password: ";
/// The two prompts: the only output not ending in `\n`.
pub const PROMPTS: [&str; 2] = [USERNAME_PROMPT, PASSWORD_PROMPT];
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
/// To a logged-in user whose account the credentials file no longer has,
/// when the server reloads it; the connection is closed.
pub const ACCOUNT_REMOVED: &str = "Your account has been removed";
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
/// A line at the username prompt that is not a username: the client asks
/// for its offline mail stamped with the time each message was stored
/// ([`Reply::Queued`]) and ended by [`QUEUED_END`].
pub const STAMPS_REQUEST: &str = "!stamps";
/// The answer to [`STAMPS_REQUEST`], before the username prompt again.
pub const STAMPS_ON: &str = "!stamps on";
/// First word of a stamped offline message ([`Reply::Queued`]) and of
/// [`QUEUED_END`], sent only to a session that sent [`STAMPS_REQUEST`].
pub const QUEUED_PREFIX: &str = "!queued";
/// After the last offline message of a session that sent
/// [`STAMPS_REQUEST`] (right after the welcome if there was none).
pub const QUEUED_END: &str = "!queued end";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_not_enabled_names_the_user_as_given() {
        assert_eq!(
            private_not_enabled("Bob"),
            "Error. Private messaging to Bob not enabled"
        );
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
