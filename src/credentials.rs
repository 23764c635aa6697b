//! The credentials file: one `username password` per line, the password in
//! clear or as an Argon2 hash in PHC string format (see
//! [`crate::passwords`]); blank lines and comments (lines whose first
//! non-blank character is `#`) are skipped.
//!
//! It is read once at start; any problem stops the server with a one-line
//! error naming the file and the line, because a server that silently
//! skipped a bad account would lock that user out with no explanation.

use std::collections::HashSet;
use std::fmt;
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let good = "$argon2id$v=19$m=19456,t=2,p=1$LN2YTVnRQTYfR9Ij6Ris8A$0bVHE4Ql7y5WXr+ZVeQTkY6Q0eohOMfHYu5NPNOGJNg";
        let accounts = parse_str(&format!("r2d2 {good}\nyoda wise\n")).expect("valid");
        assert_eq!(accounts[0].password, good);
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
}
