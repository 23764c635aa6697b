//! Sorting typed input into what goes to the server as typed and the lines
//! the client answers itself: the private-messaging commands.
//!
//! Typed bytes stream through to the server unchanged, whatever their line
//! length (the server has its own limit, which the client does not know).
//! Only the first word of each line is held back until it is known: a line
//! whose first word is `private`, `stopprivate` or `startprivate` is kept
//! whole (up to [`MAX_LOCAL_LINE`] bytes) and handed to the client instead.
//! Lines are sorted only while the user is logged in, so a password that
//! happens to start with `private` still reaches the server.

use crate::protocol::{decode_line, LineError};

/// Longest local command line, not counting one `\r`: the server's default
/// line limit, so a private message is never longer than a message could be.
pub(super) const MAX_LOCAL_LINE: usize = 1024;

/// First words of the lines the client handles.
const LOCAL_KEYWORDS: [&[u8]; 3] = [b"private", b"stopprivate", b"startprivate"];

/// Longest first word worth holding back: longer words are not local.
const LONGEST_KEYWORD: usize = 12;

/// A complete local command line, decoded, or why it could not be.
pub(super) type LocalLine = Result<String, LineError>;

/// Where the current typed line is going.
#[derive(Debug)]
enum State {
    /// At the start of a line: leading spaces counted, the first word held.
    Start { spaces: usize, word: Vec<u8> },
    /// Going to the server, up to and including its `\n`.
    Server,
    /// A local command being collected.
    Local(Vec<u8>),
    /// A local command that was too long: dropped up to its `\n`.
    Discard,
}

impl Default for State {
    fn default() -> Self {
        State::Start {
            spaces: 0,
            word: Vec::new(),
        }
    }
}

/// Sorts typed bytes, one line at a time; see the module documentation.
#[derive(Debug, Default)]
pub(super) struct Router {
    state: State,
}

impl Router {
    /// Whether the next typed byte starts a new line (nothing of the
    /// current one is held or half sent), so the client may insert a line
    /// of its own into the stream to the server.
    pub(super) fn at_line_start(&self) -> bool {
        matches!(&self.state, State::Start { spaces: 0, word } if word.is_empty())
    }

    /// Sorts `bytes`: what goes to the server is appended to `to_server`,
    /// and each complete local line to `local`. `intercept` says whether
    /// lines starting now may be local (the user is logged in).
    pub(super) fn feed(
        &mut self,
        bytes: &[u8],
        intercept: bool,
        to_server: &mut Vec<u8>,
        local: &mut Vec<LocalLine>,
    ) {
        for &byte in bytes {
            self.byte(byte, intercept, to_server, local);
        }
    }

    fn byte(
        &mut self,
        byte: u8,
        intercept: bool,
        to_server: &mut Vec<u8>,
        local: &mut Vec<LocalLine>,
    ) {
        match &mut self.state {
            State::Start { spaces, word } if !intercept => {
                release(*spaces, word, to_server);
                self.state = State::Server;
                self.byte(byte, intercept, to_server, local);
            }
            State::Start { spaces, word } => {
                let ends_word = matches!(byte, b' ' | b'\r' | b'\n');
                if byte == b' ' && word.is_empty() {
                    *spaces += 1;
                } else if !ends_word && word.len() < LONGEST_KEYWORD {
                    word.push(byte);
                } else if ends_word && LOCAL_KEYWORDS.contains(&word.as_slice()) {
                    if *spaces + word.len() > MAX_LOCAL_LINE {
                        local.push(Err(LineError::TooLong));
                        self.state = State::Discard;
                    } else {
                        let mut line = vec![b' '; *spaces];
                        line.append(word);
                        self.state = State::Local(line);
                    }
                    self.byte(byte, intercept, to_server, local);
                } else {
                    release(*spaces, word, to_server);
                    self.state = State::Server;
                    self.byte(byte, intercept, to_server, local);
                }
            }
            State::Server => {
                to_server.push(byte);
                if byte == b'\n' {
                    self.state = State::default();
                }
            }
            State::Local(line) if byte == b'\n' => {
                local.push(finish(line));
                self.state = State::default();
            }
            State::Local(line) => {
                // One byte over the limit is allowed if it is the `\r`
                // that ends the line, as on the server.
                if line.len() > MAX_LOCAL_LINE {
                    local.push(Err(LineError::TooLong));
                    self.state = State::Discard;
                } else {
                    line.push(byte);
                }
            }
            State::Discard => {
                if byte == b'\n' {
                    self.state = State::default();
                }
            }
        }
    }
}

/// Sends a held line start to the server after all.
fn release(spaces: usize, word: &mut Vec<u8>, to_server: &mut Vec<u8>) {
    to_server.resize(to_server.len() + spaces, b' ');
    to_server.append(word);
}

/// Decodes a complete local line (without its `\n`) as the server would.
fn finish(line: &[u8]) -> LocalLine {
    let body = line.strip_suffix(b"\r").unwrap_or(line);
    if body.len() > MAX_LOCAL_LINE {
        return Err(LineError::TooLong);
    }
    decode_line(line).map(|text| text.unwrap_or_default().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds the chunks in order and returns what reached the server and
    /// the local lines.
    fn route(chunks: &[&[u8]], intercept: bool) -> (String, Vec<LocalLine>) {
        let mut router = Router::default();
        let mut to_server = Vec::new();
        let mut local = Vec::new();
        for chunk in chunks {
            router.feed(chunk, intercept, &mut to_server, &mut local);
        }
        (String::from_utf8_lossy(&to_server).into_owned(), local)
    }

    fn ok(s: &str) -> LocalLine {
        Ok(s.to_owned())
    }

    #[test]
    fn ordinary_lines_pass_through_unchanged() {
        let input = b"message hans hi\n  whoelse \r\nprivates\nprivate_x y\n\n";
        let (server, local) = route(&[input], true);
        assert_eq!(server.as_bytes(), input);
        assert!(local.is_empty());
    }

    #[test]
    fn private_commands_stay_local() {
        let (server, local) = route(
            &[b"whoelse\n  private hans  hi there \r\nstopprivate hans\nstartprivate hans\n"],
            true,
        );
        assert_eq!(server, "whoelse\n");
        assert_eq!(
            local,
            vec![
                ok("private hans  hi there"),
                ok("stopprivate hans"),
                ok("startprivate hans")
            ]
        );
    }

    #[test]
    fn the_decision_does_not_depend_on_how_input_is_split() {
        let input: &[u8] = b"  private hans hi\nprivately yes\nwhoelse\nprivate\n";
        let whole = route(&[input], true);
        for cut in 0..input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(route(&[a, b], true), whole, "cut at {cut}");
        }
        assert_eq!(whole.0, "privately yes\nwhoelse\n");
        assert_eq!(whole.1, vec![ok("private hans hi"), ok("private")]);
    }

    #[test]
    fn nothing_is_intercepted_before_login() {
        let (server, local) = route(&[b"private secret\n"], false);
        assert_eq!(server, "private secret\n");
        assert!(local.is_empty());
    }

    #[test]
    fn long_ordinary_lines_stream_through_and_long_local_lines_are_refused() {
        let long = vec![b'x'; 5000];
        let mut line = b"message hans ".to_vec();
        line.extend_from_slice(&long);
        line.push(b'\n');
        let (server, local) = route(&[&line], true);
        assert_eq!(server.as_bytes(), line.as_slice());
        assert!(local.is_empty());

        let mut private = b"private hans ".to_vec();
        private.extend_from_slice(&long);
        private.extend_from_slice(b"\nprivate hans ok\n");
        let (server, local) = route(&[&private], true);
        assert_eq!(server, "");
        assert_eq!(local, vec![Err(LineError::TooLong), ok("private hans ok")]);
    }

    #[test]
    fn the_local_limit_allows_a_closing_carriage_return() {
        let mut line = b"private hans ".to_vec();
        line.resize(MAX_LOCAL_LINE, b'y');
        let mut input = line.clone();
        input.extend_from_slice(b"\r\n");
        let (_, local) = route(&[&input], true);
        assert_eq!(local, vec![ok(std::str::from_utf8(&line).unwrap_or(""))]);
        let mut over = line.clone();
        over.extend_from_slice(b"z\n");
        let (_, local) = route(&[&over], true);
        assert_eq!(local, vec![Err(LineError::TooLong)]);
    }

    #[test]
    fn invalid_encoding_in_a_local_line_is_reported() {
        let (_, local) = route(&[b"private hans \xff\n"], true);
        assert_eq!(local, vec![Err(LineError::InvalidEncoding)]);
    }

    #[test]
    fn line_start_is_known() {
        let mut router = Router::default();
        let (mut to_server, mut local) = (Vec::new(), Vec::new());
        assert!(router.at_line_start());
        router.feed(b"who", true, &mut to_server, &mut local);
        assert!(!router.at_line_start());
        router.feed(b"else\n", true, &mut to_server, &mut local);
        assert!(router.at_line_start());
        router.feed(b" ", true, &mut to_server, &mut local);
        assert!(!router.at_line_start());
    }
}
