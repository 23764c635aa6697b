//! What the server's output looks like on screen and what it says about the
//! session: [`Sanitizer`] makes the bytes safe to print, [`ServerView`]
//! follows the protocol's fixed texts to know when the user is logged in
//! and when a password is being asked for, and [`Introductions`] takes the
//! server's private-messaging lines out of what is shown.

use super::private::Introduction;
use crate::protocol::{GOODBYE, INACTIVITY_LOGOUT, PASSWORD_PROMPT, USERNAME_PROMPT, WELCOME};

/// Server lines that end a logged-in session.
const LOGGED_OUT: [&[u8]; 2] = [GOODBYE.as_bytes(), INACTIVITY_LOGOUT.as_bytes()];
/// The protocol's output that does not end with a newline. What follows a
/// prompt starts a new line, as the typed answer ended it on screen.
const PROMPTS: [&[u8]; 2] = [USERNAME_PROMPT.as_bytes(), PASSWORD_PROMPT.as_bytes()];
/// Bytes of the current server line worth keeping: more than the longest
/// text above, so that a longer line can never match one of them.
const MAX_TRACKED_LINE: usize = 64;

// A kept line is cut after `MAX_TRACKED_LINE + 1` bytes and may then lose a
// trailing `\r`, so every text it is compared with must be shorter.
const _: () = assert!(
    WELCOME.len() < MAX_TRACKED_LINE
        && GOODBYE.len() < MAX_TRACKED_LINE
        && INACTIVITY_LOGOUT.len() < MAX_TRACKED_LINE
        && USERNAME_PROMPT.len() < MAX_TRACKED_LINE
        && PASSWORD_PROMPT.len() < MAX_TRACKED_LINE
);

/// What the server's output says about the session. Only the first
/// [`MAX_TRACKED_LINE`] bytes of the current line are kept: enough to
/// recognise the protocol's fixed texts, bounded whatever the server sends.
#[derive(Default)]
pub(super) struct ServerView {
    /// Start of the current, unfinished line.
    line: Vec<u8>,
    /// `Welcome…` was seen, and no `Goodbye` or inactivity logout since.
    pub(super) logged_in: bool,
    /// The output ends with a login prompt and no answer (a line that is
    /// not blank) has been typed since.
    pub(super) awaiting_answer: bool,
    /// The prompt awaiting an answer is `Password: `.
    pub(super) awaiting_password: bool,
    /// The last prompt the server sent is `Password: ` (answered or not).
    pub(super) asked_password: bool,
    /// Prompts seen so far.
    pub(super) prompts: u64,
    /// The first this many prompts await nothing: answers to a line the
    /// client sent before the user's first answer replace them.
    superseded: u64,
}

impl ServerView {
    /// A view in which the connection's first prompt awaits nothing, as
    /// the client's first line (the UI's request for stamped mail) is
    /// answered with the prompt again.
    pub(super) fn superseding_first_prompt() -> Self {
        Self {
            superseded: 1,
            ..Self::default()
        }
    }

    /// Follows a chunk of server output.
    pub(super) fn observe(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        for &byte in bytes {
            if PROMPTS.contains(&self.line.as_slice()) {
                self.line.clear();
            }
            if byte == b'\n' {
                self.end_line();
            } else if self.line.len() <= MAX_TRACKED_LINE {
                self.line.push(byte);
                if PROMPTS.contains(&self.line.as_slice()) {
                    self.prompts += 1;
                    self.asked_password = self.line == PASSWORD_PROMPT.as_bytes();
                }
            }
        }
        let live = self.prompts > self.superseded;
        self.awaiting_answer = live && PROMPTS.contains(&self.line.as_slice());
        self.awaiting_password = live && self.line == PASSWORD_PROMPT.as_bytes();
    }

    /// The user answered the prompt (a blank line is no answer: the server
    /// ignores it and keeps waiting).
    pub(super) fn answered(&mut self) {
        self.awaiting_answer = false;
        self.awaiting_password = false;
    }

    /// Acts on a complete line.
    fn end_line(&mut self) {
        let line = self.line.strip_suffix(b"\r").unwrap_or(&self.line);
        if line == WELCOME.as_bytes() {
            self.logged_in = true;
            self.asked_password = false;
        } else if LOGGED_OUT.contains(&line) {
            self.logged_in = false;
        }
        self.line.clear();
    }
}

/// Longest server line held back because it may be an introduction; a
/// longer one is shown.
const MAX_INTRODUCTION: usize = 4096;

/// Takes the server's `!private` introductions out of its output: a line
/// is held back while it may still become one, and shown after all if it
/// does not. Everything else passes through as it arrives, so prompts
/// without a newline still show at once.
#[derive(Default)]
pub(super) struct Introductions {
    /// The start of the current line, while it may be an introduction.
    held: Vec<u8>,
    /// The last byte passed on was not a newline.
    mid_line: bool,
}

impl Introductions {
    /// Sorts a chunk of server output: bytes to show are appended to
    /// `shown`, in order, and each complete line that may be an
    /// introduction is offered to `take`, which returns whether it was one;
    /// a line it does not take is shown with its newline. With `active`
    /// false (private messaging is off) nothing is held back.
    pub(super) fn split(
        &mut self,
        bytes: &[u8],
        active: bool,
        shown: &mut Vec<u8>,
        mut take: impl FnMut(&[u8]) -> bool,
    ) {
        for &byte in bytes {
            let candidate = !self.held.is_empty() || (active && !self.mid_line && byte == b'!');
            if !candidate {
                shown.push(byte);
                self.mid_line = byte != b'\n';
            } else if byte == b'\n' {
                if !take(&self.held) {
                    shown.append(&mut self.held);
                    shown.push(b'\n');
                }
                self.held.clear();
                self.mid_line = false;
            } else {
                self.held.push(byte);
                if !Introduction::may_start(&self.held) || self.held.len() > MAX_INTRODUCTION {
                    shown.append(&mut self.held);
                    self.mid_line = true;
                }
            }
        }
    }

    /// The output ended: a held line start is shown after all.
    pub(super) fn finish(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.held)
    }
}

/// Turns the server's bytes into text that cannot drive the terminal.
///
/// Control characters other than `\n` and `\t` (ESC, CR, backspace, the C1
/// controls that some terminals obey like ESC sequences) and the Unicode
/// bidirectional overrides are shown escaped: `\x1b` for ASCII ones,
/// `\u{9b}` for others. Escaping rather than replacing keeps what was sent
/// visible. Invalid UTF-8 becomes U+FFFD; a character split between two
/// reads is held until the rest arrives.
#[derive(Default)]
pub(super) struct Sanitizer {
    /// Bytes of an unfinished character.
    partial: Vec<u8>,
}

impl Sanitizer {
    /// Converts the next chunk of the stream.
    pub(super) fn decode(&mut self, bytes: &[u8]) -> String {
        self.partial.extend_from_slice(bytes);
        let mut text = String::with_capacity(self.partial.len());
        let mut rest = self.partial.as_slice();
        while !rest.is_empty() {
            match std::str::from_utf8(rest) {
                Ok(valid) => {
                    escape_into(valid, &mut text);
                    rest = &[];
                }
                Err(error) => {
                    let (valid, after) = rest.split_at(error.valid_up_to());
                    escape_into(&String::from_utf8_lossy(valid), &mut text);
                    let Some(invalid) = error.error_len() else {
                        rest = after;
                        break;
                    };
                    text.push(char::REPLACEMENT_CHARACTER);
                    rest = &after[invalid..];
                }
            }
        }
        let done = self.partial.len() - rest.len();
        self.partial.drain(..done);
        text
    }

    /// Ends the stream: an unfinished character can no longer complete.
    pub(super) fn finish(&mut self) -> String {
        if self.partial.is_empty() {
            return String::new();
        }
        self.partial.clear();
        char::REPLACEMENT_CHARACTER.to_string()
    }
}

/// `text` as [`Sanitizer`] would show it: for the client's own lines,
/// which may carry what a peer sent.
pub(super) fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    escape_into(text, &mut out);
    out
}

/// Appends `text` to `out`, escaping what [`Sanitizer`] must not pass.
fn escape_into(text: &str, out: &mut String) {
    for c in text.chars() {
        if !is_unsafe(c) {
            out.push(c);
        } else if c.is_ascii() {
            out.push_str(&format!("\\x{:02x}", u32::from(c)));
        } else {
            out.extend(c.escape_unicode());
        }
    }
}

/// Whether printing `c` as is could control the terminal or reorder text.
fn is_unsafe(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(
            c,
            '\u{061c}' | '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode_all(chunks: &[&[u8]]) -> String {
        let mut sanitizer = Sanitizer::default();
        let mut text: String = chunks.iter().map(|chunk| sanitizer.decode(chunk)).collect();
        text.push_str(&sanitizer.finish());
        text
    }

    #[test]
    fn plain_text_newlines_and_tabs_pass_through() {
        assert_eq!(decode_all(&[b"yoda: hi\tthere\n"]), "yoda: hi\tthere\n");
    }

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(
            decode_all(&[b"yoda: \x1b[31mred\r\x07\x7f\n"]),
            "yoda: \\x1b[31mred\\x0d\\x07\\x7f\n"
        );
    }

    #[test]
    fn c1_controls_and_bidi_overrides_are_escaped() {
        assert_eq!(
            decode_all(&["a\u{9b}b\u{202e}c".as_bytes()]),
            "a\\u{9b}b\\u{202e}c"
        );
    }

    #[test]
    fn character_split_between_reads_is_kept_whole() {
        let bytes = "é€".as_bytes();
        assert_eq!(decode_all(&[&bytes[..1], &bytes[1..3], &bytes[3..]]), "é€");
    }

    #[test]
    fn invalid_utf8_becomes_replacement_character() {
        assert_eq!(decode_all(&[b"a\xffb\xc3"]), "a\u{fffd}b\u{fffd}");
    }

    #[test]
    fn welcome_logs_in_and_goodbye_logs_out() {
        let mut view = ServerView::default();
        view.observe(b"Password: ");
        assert!(!view.logged_in);
        view.observe(b"Welcome to the greatest messaging application ever!\nhans: hi\n");
        assert!(view.logged_in);
        view.observe(b"Good");
        assert!(view.logged_in);
        view.observe(b"bye\n");
        assert!(!view.logged_in);
    }

    #[test]
    fn welcome_inside_a_longer_line_is_not_a_login() {
        let mut view = ServerView::default();
        view.observe(b"vader: Welcome to the greatest messaging application ever!\n");
        assert!(!view.logged_in);
        let long = [b'x'; MAX_TRACKED_LINE * 2];
        view.observe(&long);
        view.observe(b"Welcome to the greatest messaging application ever!\n");
        assert!(!view.logged_in);
    }

    #[test]
    fn prompts_in_one_read_do_not_hide_the_welcome() {
        let mut view = ServerView::default();
        view.observe(b"Username: Password: ");
        assert!(view.awaiting_password);
        view.observe(b"Welcome to the greatest messaging application ever!\n");
        assert!(view.logged_in);
    }

    #[test]
    fn prompts_are_awaited_until_answered() {
        let mut view = ServerView::default();
        assert!(!view.awaiting_answer);
        view.observe(b"Username: ");
        assert!(view.awaiting_answer && !view.awaiting_password);
        view.answered();
        assert!(!view.awaiting_answer);
        view.observe(b"Pass");
        assert!(!view.awaiting_answer && !view.awaiting_password);
        view.observe(b"word: ");
        assert!(view.awaiting_answer && view.awaiting_password);
        view.answered();
        assert!(!view.awaiting_answer && !view.awaiting_password);
        view.observe(b"Invalid Password. Please try again\nPassword: ");
        assert!(view.awaiting_password);
        view.observe(b"Login timed out\n");
        assert!(!view.awaiting_answer && !view.awaiting_password);
    }

    #[test]
    fn a_superseded_first_prompt_awaits_nothing() {
        let mut view = ServerView::superseding_first_prompt();
        view.observe(b"Username: ");
        assert!(!view.awaiting_answer);
        view.observe(b"!stamps on\nUsername: ");
        assert!(view.awaiting_answer && !view.asked_password);
        view.answered();
        view.observe(b"Password: ");
        assert!(view.awaiting_password && view.asked_password);
        view.answered();
        assert!(view.asked_password);
        view.observe(b"Welcome to the greatest messaging application ever!\n");
        assert!(view.logged_in && !view.asked_password);
    }

    const TOKEN: &str = "0123456789abcdef0123456789abcdef";

    /// Splits the chunks in order; returns what was shown and the lines
    /// taken as introductions (those starting `!private a`).
    fn split(chunks: &[&[u8]], active: bool) -> (String, Vec<String>) {
        let mut introductions = Introductions::default();
        let mut shown = Vec::new();
        let mut taken = Vec::new();
        for chunk in chunks {
            introductions.split(chunk, active, &mut shown, |line| {
                let is_one = Introduction::parse(line).is_some();
                if is_one {
                    taken.push(String::from_utf8_lossy(line).into_owned());
                }
                is_one
            });
        }
        shown.extend(introductions.finish());
        (String::from_utf8_lossy(&shown).into_owned(), taken)
    }

    #[test]
    fn introductions_are_taken_out_wherever_reads_split_them() {
        let intro = format!("!private accept hans {TOKEN}");
        let stream =
            format!("hans: hi\n{intro}\n!private logged in\nvader: !private x\nUsername: ");
        let bytes = stream.as_bytes();
        let expected_shown = "hans: hi\n!private logged in\nvader: !private x\nUsername: ";
        for cut in 0..bytes.len() {
            let (a, b) = bytes.split_at(cut);
            let (shown, taken) = split(&[a, b], true);
            assert_eq!(shown, expected_shown, "cut at {cut}");
            assert_eq!(taken, vec![intro.clone()], "cut at {cut}");
        }
    }

    #[test]
    fn nothing_is_taken_while_inactive_and_unfinished_lines_are_shown() {
        let intro = format!("!private accept hans {TOKEN}\n");
        let (shown, taken) = split(&[intro.as_bytes()], false);
        assert_eq!(shown, intro);
        assert!(taken.is_empty());
        let (shown, taken) = split(&[b"!priv"], true);
        assert_eq!(shown, "!priv");
        assert!(taken.is_empty());
    }

    #[test]
    fn escape_matches_the_sanitizer() {
        assert_eq!(escape("a\x1b[2Jb\u{202e}"), "a\\x1b[2Jb\\u{202e}");
    }
}
