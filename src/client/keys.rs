//! Keys from a terminal in raw mode: the bytes read from standard input
//! turned into the keys the line editor knows.
//!
//! A terminal sends a key as one byte (a character or a control), a UTF-8
//! sequence, or an escape sequence (`ESC [ D` for Left). This decoder
//! knows the sequences of xterm, VTE, tmux and the Linux console for the
//! editing keys, Alt-b/Alt-f, and bracketed paste; an unknown sequence is
//! dropped whole, never typed as text. A read can end inside a sequence:
//! the start is kept until the rest arrives. Escape is only known as such
//! from the key after it (which is kept): the editor gives it no meaning,
//! so nothing waits on it.
//!
//! The decoding is pure so that it is tested byte by byte; the client
//! feeds it what it reads in its own poll loop.

/// One key (or paste marker) typed at the terminal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Key {
    /// A printable character.
    Char(char),
    /// Enter (`\r`, or `\n` in a paste).
    Enter,
    Tab,
    Backspace,
    /// The Delete key.
    Delete,
    Left,
    Right,
    Up,
    Down,
    Home,
    End,
    /// Ctrl-Left or Alt-b.
    WordLeft,
    /// Ctrl-Right or Alt-f.
    WordRight,
    /// A control key, Ctrl-A to Ctrl-Z, as its lowercase letter (those
    /// above with a meaning of their own — Tab, Enter, Backspace — are
    /// reported as such).
    Ctrl(char),
    /// Escape, followed by a key that does not make a sequence with it.
    Escape,
    /// The start of a bracketed paste: what follows up to
    /// [`Key::PasteEnd`] was pasted, not typed.
    PasteStart,
    /// The end of a bracketed paste.
    PasteEnd,
}

/// Longest escape sequence kept while its end is awaited; a longer one is
/// dropped.
const MAX_SEQUENCE: usize = 32;

const ESC: u8 = 0x1b;

/// Turns bytes from the terminal into keys; see the module documentation.
#[derive(Debug, Default)]
pub(super) struct Keys {
    /// The start of a key whose end has not been read yet.
    partial: Vec<u8>,
}

impl Keys {
    /// Decodes the next bytes read, appending the keys to `keys`.
    pub(super) fn feed(&mut self, bytes: &[u8], keys: &mut Vec<Key>) {
        self.partial.extend_from_slice(bytes);
        let mut at = 0;
        while at < self.partial.len() {
            match decode(&self.partial[at..]) {
                Decoded::Key(key, len) => {
                    keys.extend(key);
                    at += len;
                }
                Decoded::Incomplete if self.partial.len() - at > MAX_SEQUENCE => at += 1,
                Decoded::Incomplete => break,
            }
        }
        self.partial.drain(..at);
    }
}

/// What the bytes at the start of a buffer are.
enum Decoded {
    /// A key (or nothing, for bytes that mean nothing), and how many bytes
    /// it took.
    Key(Option<Key>, usize),
    /// The start of a key whose end is still to come.
    Incomplete,
}

/// Decodes the key at the start of `bytes`, which is not empty.
fn decode(bytes: &[u8]) -> Decoded {
    let key = match bytes[0] {
        ESC => return escape(bytes),
        b'\r' | b'\n' => Key::Enter,
        b'\t' => Key::Tab,
        0x7f | 0x08 => Key::Backspace,
        byte @ 0x01..=0x1a => Key::Ctrl(char::from(b'a' + byte - 1)),
        0x00 | 0x1c..=0x1f => return Decoded::Key(None, 1),
        _ => return character(bytes),
    };
    Decoded::Key(Some(key), 1)
}

/// Decodes a UTF-8 character; an invalid byte is dropped.
fn character(bytes: &[u8]) -> Decoded {
    let len = match bytes[0] {
        0x00..=0x7f => 1,
        0xc2..=0xdf => 2,
        0xe0..=0xef => 3,
        0xf0..=0xf4 => 4,
        _ => return Decoded::Key(None, 1),
    };
    if bytes.len() < len {
        let continues = bytes[1..].iter().all(|&b| b & 0xc0 == 0x80);
        return if continues {
            Decoded::Incomplete
        } else {
            Decoded::Key(None, 1)
        };
    }
    match std::str::from_utf8(&bytes[..len]) {
        Ok(text) => Decoded::Key(text.chars().next().map(Key::Char), len),
        Err(_) => Decoded::Key(None, 1),
    }
}

/// Decodes what starts with `ESC`: a CSI or SS3 sequence, or Alt with a
/// key.
fn escape(bytes: &[u8]) -> Decoded {
    match bytes.get(1) {
        None => Decoded::Incomplete,
        Some(b'[') => csi(bytes),
        Some(b'O') => match bytes.get(2) {
            None => Decoded::Incomplete,
            Some(&last) => Decoded::Key(ss3(last), 3),
        },
        Some(b'b') => Decoded::Key(Some(Key::WordLeft), 2),
        Some(b'f') => Decoded::Key(Some(Key::WordRight), 2),
        Some(0x7f) => Decoded::Key(Some(Key::Ctrl('w')), 2),
        Some(_) => Decoded::Key(Some(Key::Escape), 1),
    }
}

/// The key of `ESC O <last>`.
fn ss3(last: u8) -> Option<Key> {
    Some(match last {
        b'A' => Key::Up,
        b'B' => Key::Down,
        b'C' => Key::Right,
        b'D' => Key::Left,
        b'H' => Key::Home,
        b'F' => Key::End,
        _ => return None,
    })
}

/// Decodes `ESC [ <parameters> <final>`.
fn csi(bytes: &[u8]) -> Decoded {
    let Some(end) = bytes[2..].iter().position(|b| (0x40..=0x7e).contains(b)) else {
        return Decoded::Incomplete;
    };
    let params = &bytes[2..2 + end];
    let last = bytes[2 + end];
    let len = 3 + end;
    let mut numbers = params.split(|&b| b == b';');
    let first = numbers.next().unwrap_or_default();
    let modifier = numbers.next().unwrap_or_default();
    let ctrl = matches!(modifier, b"5" | b"3");
    let key = match (last, first) {
        (b'A', _) => Some(Key::Up),
        (b'B', _) => Some(Key::Down),
        (b'C', _) if ctrl => Some(Key::WordRight),
        (b'D', _) if ctrl => Some(Key::WordLeft),
        (b'C', _) => Some(Key::Right),
        (b'D', _) => Some(Key::Left),
        (b'H', _) => Some(Key::Home),
        (b'F', _) => Some(Key::End),
        (b'~', b"1" | b"7") => Some(Key::Home),
        (b'~', b"4" | b"8") => Some(Key::End),
        (b'~', b"3") => Some(Key::Delete),
        (b'~', b"200") => Some(Key::PasteStart),
        (b'~', b"201") => Some(Key::PasteEnd),
        _ => None,
    };
    Decoded::Key(key, len)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(chunks: &[&[u8]]) -> Vec<Key> {
        let mut decoder = Keys::default();
        let mut keys = Vec::new();
        for chunk in chunks {
            decoder.feed(chunk, &mut keys);
        }
        keys
    }

    #[test]
    fn characters_and_controls() {
        assert_eq!(
            keys(&["aé€😀\r\t\x7f\x01\x05\x0b\x15\x17\x04\x03".as_bytes()]),
            vec![
                Key::Char('a'),
                Key::Char('é'),
                Key::Char('€'),
                Key::Char('😀'),
                Key::Enter,
                Key::Tab,
                Key::Backspace,
                Key::Ctrl('a'),
                Key::Ctrl('e'),
                Key::Ctrl('k'),
                Key::Ctrl('u'),
                Key::Ctrl('w'),
                Key::Ctrl('d'),
                Key::Ctrl('c'),
            ]
        );
    }

    #[test]
    fn editing_sequences_of_common_terminals() {
        let input = b"\x1b[A\x1b[B\x1b[C\x1b[D\x1b[H\x1b[F\x1bOH\x1bOF\x1b[1~\x1b[4~\x1b[3~\
                      \x1b[1;5C\x1b[1;5D\x1bb\x1bf\x1b[200~x\x1b[201~";
        assert_eq!(
            keys(&[input]),
            vec![
                Key::Up,
                Key::Down,
                Key::Right,
                Key::Left,
                Key::Home,
                Key::End,
                Key::Home,
                Key::End,
                Key::Home,
                Key::End,
                Key::Delete,
                Key::WordRight,
                Key::WordLeft,
                Key::WordLeft,
                Key::WordRight,
                Key::PasteStart,
                Key::Char('x'),
                Key::PasteEnd,
            ]
        );
    }

    #[test]
    fn keys_do_not_depend_on_how_reads_split_them() {
        let input = "a\x1b[1;5Cé😀\x1b[3~\x1bOAz".as_bytes();
        let whole = keys(&[input]);
        for cut in 1..input.len() {
            let (a, b) = input.split_at(cut);
            assert_eq!(keys(&[a, b]), whole, "cut at {cut}");
        }
    }

    #[test]
    fn unknown_sequences_and_invalid_bytes_are_dropped_whole() {
        assert_eq!(
            keys(&[b"\x1b[99zq\xffr\x1b[?1;2cs"]),
            vec![Key::Char('q'), Key::Char('r'), Key::Char('s')]
        );
    }

    #[test]
    fn escape_is_known_by_the_key_after_it() {
        assert_eq!(keys(&[b"\x1b"]), vec![]);
        assert_eq!(keys(&[b"\x1b", b"x"]), vec![Key::Escape, Key::Char('x')]);
        assert_eq!(keys(&[b"\x1b\x1b[A"]), vec![Key::Escape, Key::Up]);
    }

    #[test]
    fn an_endless_sequence_is_bounded() {
        let mut input = b"\x1b[".to_vec();
        input.extend(std::iter::repeat_n(b'1', 100));
        let mut decoder = Keys::default();
        let mut out = Vec::new();
        decoder.feed(&input, &mut out);
        assert!(decoder.partial.len() <= MAX_SEQUENCE);
    }
}
