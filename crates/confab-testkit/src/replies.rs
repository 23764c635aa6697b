//! The server's fixed lines, spelled out here rather than taken from
//! `confab::protocol`, so that a test compares the server's bytes with the
//! protocol as written down, not with the server's own constants.

/// The line that ends a successful login.
pub const WELCOME: &str = "Welcome to the greatest messaging application ever!";
/// The first prompt (no newline).
pub const USERNAME: &str = "Username: ";
/// The second prompt (no newline).
pub const PASSWORD: &str = "Password: ";
/// The reply to a username that is not an account.
pub const INVALID_USERNAME: &str = "Invalid Username. Please try again";
/// The reply to a wrong password that does not ban yet.
pub const INVALID_PASSWORD: &str = "Invalid Password. Please try again";
/// The reply to the failure that bans.
pub const PASSWORD_BANNED: &str =
    "Invalid Password. Your account has been blocked. Please try again later";
/// The reply to any password of a banned account.
pub const ACCOUNT_BANNED: &str =
    "Your account is blocked due to multiple login failures. Please try again later";

/// The reply to `help`, line by line.
pub const HELP: [&str; 8] = [
    "message <user> <message>",
    "broadcast <message>",
    "whoelse",
    "whoelsesince <seconds>",
    "block <user>",
    "unblock <user>",
    "logout",
    "help",
];
