//! The credentials file: one `username password` per line, the password in
//! clear or as an Argon2 hash in PHC string format (see
//! [`crate::passwords`]); blank lines and comments (lines whose first
//! non-blank character is `#`) are skipped.
//!
//! It is read once at start; any problem stops the server with a one-line
//! error naming the file and the line, because a server that silently
//! skipped a bad account would lock that user out with no explanation.
//!
//! `confab-passwd` edits it with [`set_password`] and [`hash_clear`], which
//! change one word where it stands and keep every other byte, and writes
//! it back with [`save`].

use std::collections::HashSet;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

/// One account: a username and its password, in file order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Account {
    /// The login name; unique, no spaces.
    pub username: String,
    /// The password in clear (compared exactly, in constant time), or its
    /// Argon2 hash as a PHC string (starting with `$argon2`).
    pub password: String,
}

/// Why the credentials file could not be loaded.
#[derive(Debug)]
pub enum CredentialsError {
    /// The file could not be read at all.
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// A line that is not `username password`, or repeats a username.
    Line {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// The file holds no account at all, so nobody could ever log in.
    Empty {
        /// The file.
        path: PathBuf,
    },
}

impl fmt::Display for CredentialsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CredentialsError::Io { path, source } => {
                write!(f, "{}: {source}", path.display())
            }
            CredentialsError::Line { path, line, reason } => {
                write!(f, "{}:{line}: {reason}", path.display())
            }
            CredentialsError::Empty { path } => {
                write!(f, "{}: no accounts", path.display())
            }
        }
    }
}

impl std::error::Error for CredentialsError {}

/// Reads and parses the credentials file at `path`.
pub fn load(path: &Path) -> Result<Vec<Account>, CredentialsError> {
    let bytes = std::fs::read(path).map_err(|source| CredentialsError::Io {
        path: path.to_owned(),
        source,
    })?;
    parse(path, &bytes)
}

/// Parses the contents of a credentials file; `path` only names it in
/// errors. Blank lines and comments (a `#` after optional blanks, then
/// anything) are skipped, and a `\r` before `\n` is ignored; every other
/// line must be exactly two space-separated words, valid UTF-8.
pub fn parse(path: &Path, bytes: &[u8]) -> Result<Vec<Account>, CredentialsError> {
    let mut accounts = Vec::new();
    let mut seen = HashSet::new();
    for (index, raw) in bytes.split(|&b| b == b'\n').enumerate() {
        let line = index + 1;
        let error = |reason: String| CredentialsError::Line {
            path: path.to_owned(),
            line,
            reason,
        };
        if raw.trim_ascii_start().starts_with(b"#") {
            continue;
        }
        let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
        let text = std::str::from_utf8(raw).map_err(|_| error("not valid UTF-8".into()))?;
        let mut words = text.split_ascii_whitespace();
        let (username, password) = match (words.next(), words.next(), words.next()) {
            (None, _, _) => continue,
            (Some(u), Some(p), None) => (u, p),
            _ => return Err(error("expected `username password`".into())),
        };
        if !seen.insert(username.to_owned()) {
            return Err(error(format!("duplicate username `{username}`")));
        }
        if crate::passwords::is_hashed(password) {
            crate::passwords::check_hash(password).map_err(error)?;
        }
        accounts.push(Account {
            username: username.to_owned(),
            password: password.to_owned(),
        });
    }
    if accounts.is_empty() {
        return Err(CredentialsError::Empty {
            path: path.to_owned(),
        });
    }
    Ok(accounts)
}

/// Checks that `username` can name an account: not empty, without blanks
/// or control characters (a line holds exactly two words, and the name is
/// typed at the server's `Username: ` prompt), and not starting with `#`
/// (the line would be a comment).
pub fn check_username(username: &str) -> Result<(), String> {
    if username.is_empty() {
        Err("the username is empty".into())
    } else if username
        .chars()
        .any(|c| c.is_whitespace() || c.is_control())
    {
        Err(format!(
            "the username {username:?} holds a blank or a control character"
        ))
    } else if username.starts_with('#') {
        Err(format!("the username {username:?} starts with `#`"))
    } else {
        Ok(())
    }
}

/// Checks that `text` can be edited as a credentials file: it parses, or it
/// only lacks accounts (a new or commented-only file, to which one can be
/// added). The editing functions below expect text this accepts.
pub fn check_editable(path: &Path, text: &[u8]) -> Result<(), CredentialsError> {
    match parse(path, text) {
        Ok(_) | Err(CredentialsError::Empty { .. }) => Ok(()),
        Err(error) => Err(error),
    }
}

/// `text` with `username`'s password set to `stored` (a word, such as a
/// PHC string): the password on its line is replaced where it stands, or,
/// for a new user, a line `username stored` is appended, after a line end
/// if `text` does not end with one, in the line-end style of its first
/// line (`\r\n` or `\n`). Every other byte is kept, so comments, blank
/// lines, order and spacing survive the edit.
pub fn set_password(text: &[u8], username: &str, stored: &str) -> Vec<u8> {
    let line = entries(text)
        .into_iter()
        .find(|entry| text[entry.username.clone()] == *username.as_bytes());
    if let Some(entry) = line {
        return splice(text, vec![(entry.password, stored.to_owned())]);
    }
    let end = line_end(text);
    let mut edited = text.to_vec();
    if !edited.is_empty() && !edited.ends_with(b"\n") {
        edited.extend_from_slice(end);
    }
    edited.extend_from_slice(username.as_bytes());
    edited.push(b' ');
    edited.extend_from_slice(stored.as_bytes());
    edited.extend_from_slice(end);
    edited
}

/// `text` with every clear password replaced where it stands by what
/// `hash` makes of it (passwords already hashed, and every other byte,
/// are kept), and how many were hashed. `hash` is
/// [`crate::passwords::hash`] but for tests; its first error is returned.
pub fn hash_clear(
    text: &[u8],
    mut hash: impl FnMut(&str) -> Result<String, String>,
) -> Result<(Vec<u8>, usize), String> {
    let mut hashed = Vec::new();
    for entry in entries(text) {
        let password = std::str::from_utf8(&text[entry.password.clone()])
            .map_err(|_| "a password is not valid UTF-8".to_owned())?;
        if !crate::passwords::is_hashed(password) {
            hashed.push((entry.password, hash(password)?));
        }
    }
    let count = hashed.len();
    Ok((splice(text, hashed), count))
}

/// Writes `text` as the credentials file at `path` atomically (see
/// [`crate::atomic`]), after checking that it parses: over the file there,
/// keeping its permissions and owner, or as a new file of mode 0600, as
/// it holds passwords.
pub fn save(path: &Path, text: &[u8]) -> Result<(), String> {
    parse(path, text).map_err(|e| e.to_string())?;
    let written = match std::fs::symlink_metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::atomic::write(path, text, 0o600)
        }
        _ => crate::atomic::replace(path, text),
    };
    written.map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Where an account line's two words are in the text.
struct Entry {
    username: Range<usize>,
    password: Range<usize>,
}

/// The account lines of `text`, in order, found as [`parse`] finds them
/// (comments skipped, words split at ASCII whitespace).
fn entries(text: &[u8]) -> Vec<Entry> {
    let mut entries = Vec::new();
    let mut start = 0;
    for raw in text.split(|&b| b == b'\n') {
        let offset = start;
        start += raw.len() + 1;
        if raw.trim_ascii_start().starts_with(b"#") {
            continue;
        }
        let mut words = words(raw).map(|word| word.start + offset..word.end + offset);
        if let (Some(username), Some(password), None) = (words.next(), words.next(), words.next()) {
            entries.push(Entry { username, password });
        }
    }
    entries
}

/// Where the words of `line` are, separated by ASCII whitespace as
/// `split_ascii_whitespace` separates them.
fn words(line: &[u8]) -> impl Iterator<Item = Range<usize>> + '_ {
    let mut at = 0;
    std::iter::from_fn(move || {
        let start = at + line[at..].iter().position(|b| !b.is_ascii_whitespace())?;
        let end = line[start..]
            .iter()
            .position(u8::is_ascii_whitespace)
            .map_or(line.len(), |length| start + length);
        at = end;
        Some(start..end)
    })
}

/// `text` with each range (in order, none overlapping) replaced by its
/// string.
fn splice(text: &[u8], replacements: Vec<(Range<usize>, String)>) -> Vec<u8> {
    let mut edited = Vec::with_capacity(text.len());
    let mut kept = 0;
    for (range, with) in replacements {
        edited.extend_from_slice(&text[kept..range.start]);
        edited.extend_from_slice(with.as_bytes());
        kept = range.end;
    }
    edited.extend_from_slice(&text[kept..]);
    edited
}

/// The line end of `text`'s first line, `\r\n` or `\n` (also when it has
/// none yet), for a line added to it.
fn line_end(text: &[u8]) -> &'static [u8] {
    match text.iter().position(|&b| b == b'\n') {
        Some(at) if at > 0 && text[at - 1] == b'\r' => b"\r\n",
        _ => b"\n",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A valid Argon2id PHC string (of `wise`).
    const HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$LN2YTVnRQTYfR9Ij6Ris8A$0bVHE4Ql7y5WXr+ZVeQTkY6Q0eohOMfHYu5NPNOGJNg";

    fn parse_str(s: &str) -> Result<Vec<Account>, CredentialsError> {
        parse(Path::new("creds.txt"), s.as_bytes())
    }

    #[test]
    fn reads_accounts_skipping_blank_lines_and_cr() {
        let accounts = parse_str("yoda wise\r\n\n  hans   falcon  \n").expect("valid file");
        assert_eq!(
            accounts,
            vec![
                Account {
                    username: "yoda".into(),
                    password: "wise".into()
                },
                Account {
                    username: "hans".into(),
                    password: "falcon".into()
                },
            ]
        );
    }

    #[test]
    fn comment_lines_are_skipped() {
        let text = "# accounts: username password\n  # indented\r\n\t#tab\n\
                    yoda wise\n#hans falcon\nvader #sith\n# \u{e9}\n";
        let accounts = parse_str(text).expect("valid file");
        assert_eq!(
            accounts,
            vec![
                Account {
                    username: "yoda".into(),
                    password: "wise".into()
                },
                Account {
                    username: "vader".into(),
                    password: "#sith".into()
                },
            ]
        );
        // A comment holds anything, even bytes that are not UTF-8; line
        // numbers still count it.
        let err = parse(Path::new("c"), b"# \xff\nyoda\n").expect_err("malformed");
        assert_eq!(err.to_string(), "c:2: expected `username password`");
        let err = parse_str("# only a comment\n").expect_err("empty");
        assert_eq!(err.to_string(), "creds.txt: no accounts");
    }

    #[test]
    fn malformed_line_names_file_and_line() {
        let err = parse_str("yoda wise\nhans\n").expect_err("malformed");
        assert_eq!(err.to_string(), "creds.txt:2: expected `username password`");
        let err = parse_str("a b c\n").expect_err("malformed");
        assert_eq!(err.to_string(), "creds.txt:1: expected `username password`");
    }

    #[test]
    fn duplicate_username_is_an_error() {
        let err = parse_str("yoda wise\nyoda other\n").expect_err("duplicate");
        assert_eq!(err.to_string(), "creds.txt:2: duplicate username `yoda`");
    }

    #[test]
    fn invalid_utf8_and_empty_files_are_errors() {
        let err = parse(Path::new("c"), b"yoda \xff\n").expect_err("bad utf8");
        assert_eq!(err.to_string(), "c:1: not valid UTF-8");
        let err = parse_str("\n\n").expect_err("empty");
        assert_eq!(err.to_string(), "creds.txt: no accounts");
    }

    #[test]
    fn hashed_passwords_are_read_and_broken_hashes_named() {
        let accounts = parse_str(&format!("r2d2 {HASH}\nyoda wise\n")).expect("valid");
        assert_eq!(accounts[0].password, HASH);
        let err = parse_str("yoda wise\nr2d2 $argon2id$v=19$m=19456\n").expect_err("broken");
        assert!(
            err.to_string()
                .starts_with("creds.txt:2: not an Argon2 PHC string"),
            "{err}"
        );
    }

    #[test]
    fn missing_file_is_an_error() {
        let err = load(Path::new("/nonexistent/credentials.txt")).expect_err("missing");
        assert!(err
            .to_string()
            .starts_with("/nonexistent/credentials.txt: "));
    }

    /// `set_password` on `text`, as text, checked to parse.
    fn set(text: &str, username: &str) -> String {
        check_editable(Path::new("c"), text.as_bytes()).expect("editable");
        let edited = set_password(text.as_bytes(), username, HASH);
        parse(Path::new("c"), &edited).expect("the result parses");
        String::from_utf8(edited).expect("UTF-8")
    }

    #[test]
    fn a_replaced_password_keeps_its_place_and_every_other_byte() {
        let text = "# accounts\r\n\r\n  hans   falcon  \r\nyoda wise\r\n# end";
        assert_eq!(
            set(text, "hans"),
            format!("# accounts\r\n\r\n  hans   {HASH}  \r\nyoda wise\r\n# end")
        );
        // A commented-out account is not the account.
        let text = "#yoda old\nyoda wise\n";
        assert_eq!(set(text, "yoda"), format!("#yoda old\nyoda {HASH}\n"));
    }

    #[test]
    fn a_new_user_is_appended_in_the_files_line_end_style() {
        assert_eq!(
            set("yoda wise\nhans falcon", "leia"),
            format!("yoda wise\nhans falcon\nleia {HASH}\n")
        );
        assert_eq!(
            set("yoda wise\r\nhans falcon", "leia"),
            format!("yoda wise\r\nhans falcon\r\nleia {HASH}\r\n")
        );
        assert_eq!(
            set("yoda wise\r\n", "leia"),
            format!("yoda wise\r\nleia {HASH}\r\n")
        );
        assert_eq!(set("", "leia"), format!("leia {HASH}\n"));
        assert_eq!(
            set("# only a comment\n\n", "leia"),
            format!("# only a comment\n\nleia {HASH}\n")
        );
    }

    #[test]
    fn clear_passwords_are_hashed_in_place_and_hashes_kept() {
        let text = format!("# team\r\nyoda wise\r\n\r\nr2d2 {HASH}\r\n  hans  falcon");
        let (edited, count) = hash_clear(text.as_bytes(), crate::passwords::hash).expect("hashed");
        assert_eq!(count, 2);
        let accounts = parse(Path::new("c"), &edited).expect("the result parses");
        let stored = |name: &str| {
            accounts
                .iter()
                .find(|a| a.username == name)
                .map(|a| a.password.clone())
                .expect("account")
        };
        assert!(crate::passwords::verify_hash(&stored("yoda"), "wise"));
        assert!(crate::passwords::verify_hash(&stored("hans"), "falcon"));
        assert_eq!(stored("r2d2"), HASH);
        let expected = format!(
            "# team\r\nyoda {}\r\n\r\nr2d2 {HASH}\r\n  hans  {}",
            stored("yoda"),
            stored("hans")
        );
        assert_eq!(String::from_utf8(edited).expect("UTF-8"), expected);
        // Nothing clear, nothing changed.
        let text = format!("r2d2 {HASH}\n");
        let (again, count) =
            hash_clear(text.as_bytes(), |_| Err("not called".into())).expect("nothing to hash");
        assert_eq!((again, count), (text.into_bytes(), 0));
        let failed = hash_clear(b"yoda wise\n", |_| Err("no randomness".into()));
        assert_eq!(failed, Err("no randomness".into()));
    }

    #[test]
    fn usernames_and_files_that_cannot_be_edited_are_refused() {
        check_username("yoda").expect("valid");
        check_username("r2-d2.\u{e9}").expect("valid");
        for bad in ["", "a b", "a\tb", "a\u{b}b", "a\u{a0}b", "a\u{7f}", "#yoda"] {
            assert!(check_username(bad).is_err(), "{bad:?}");
        }
        check_editable(Path::new("c"), b"").expect("no accounts yet");
        let err = check_editable(Path::new("c"), b"yoda\n").expect_err("broken");
        assert_eq!(err.to_string(), "c:1: expected `username password`");
    }
}
