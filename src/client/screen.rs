//! The terminal as the UI uses it: raw mode while the client runs, the
//! conversation scrolling up as ordinary terminal output (so the
//! terminal's own scrollback, copy and search keep working), and the
//! input line alone on the bottom row, drawn again after every line
//! printed above it.
//!
//! [`Screen`] only composes bytes; the caller writes them (standard output
//! may be non-blocking, which [`super::terminal::Output`] handles). Raw
//! mode is undone when the screen is dropped, whatever the exit path, so
//! the shell gets its terminal back as it was.
//!
//! A resize (or Ctrl-L) clears the screen and prints again the last lines
//! that fit: terminals rewrap what is on screen each in their own way
//! (some reflow, some cut, tmux moves the cursor), so drawing the screen
//! afresh is the one way to know what it shows. Lines scrolled off before
//! stay in the terminal's scrollback.

use std::collections::VecDeque;
use std::io;

use crossterm::cursor::{MoveRight, MoveTo};
use crossterm::terminal::{self, Clear, ClearType};
use crossterm::Command;
use unicode_width::UnicodeWidthStr;

/// Columns and rows assumed when the terminal does not say.
const FALLBACK_SIZE: (u16, u16) = (80, 24);
/// Turns bracketed paste on: the terminal marks pasted text, so that a
/// pasted Tab is text and pasted lines are sent one by one (crossterm has
/// the command only with its event reader, which the client does not use:
/// keys are read in the client's own poll).
const PASTE_ON: &str = "\x1b[?2004h";
/// Turns bracketed paste off.
const PASTE_OFF: &str = "\x1b[?2004l";

/// Lines kept to draw the screen again after a resize: more than any
/// terminal has rows.
const KEPT_LINES: usize = 256;

/// The terminal in raw mode, with the input line on its bottom row.
pub(super) struct Screen {
    /// Columns.
    width: usize,
    rows: usize,
    /// The last lines printed.
    recent: VecDeque<String>,
}

impl Screen {
    /// Puts the terminal in raw mode with bracketed paste, and moves to the
    /// bottom row (scrolling what was on screen up) so that the input line
    /// starts where it stays. Returns the screen and the bytes to write.
    pub(super) fn open() -> io::Result<(Self, String)> {
        terminal::enable_raw_mode()?;
        let (width, rows) = size();
        let mut out = String::new();
        out.push_str(PASTE_ON);
        out.push('\r');
        for _ in 1..rows {
            out.push_str("\r\n");
        }
        let screen = Self {
            width,
            rows,
            recent: VecDeque::new(),
        };
        Ok((screen, out))
    }

    /// Columns of the terminal.
    pub(super) fn width(&self) -> usize {
        self.width
    }

    /// Appends to `out` what prints `line` above the input line: the input
    /// row is cleared, the line printed (the terminal wraps it if it is
    /// long), and the caller draws the input row again after it.
    pub(super) fn print(&mut self, out: &mut String, line: &str) {
        out.push('\r');
        push(out, Clear(ClearType::CurrentLine));
        out.push_str(line);
        out.push_str("\r\n");
        if self.recent.len() == KEPT_LINES {
            self.recent.pop_front();
        }
        self.recent.push_back(line.to_owned());
    }

    /// Appends to `out` what draws the input row: `prompt` then `shown`
    /// (which fit in the row), with the cursor at `column`.
    pub(super) fn draw_input(
        &mut self,
        out: &mut String,
        prompt: &str,
        shown: &str,
        column: usize,
    ) {
        out.push('\r');
        push(out, Clear(ClearType::CurrentLine));
        out.push_str(prompt);
        out.push_str(shown);
        out.push('\r');
        if column > 0 {
            push(out, MoveRight(u16::try_from(column).unwrap_or(u16::MAX)));
        }
    }

    /// Appends to `out` what clears the screen and prints again the last
    /// lines that fit above the input row, at the terminal's size now; the
    /// caller draws the input row after it.
    pub(super) fn redraw(&mut self, out: &mut String) {
        (self.width, self.rows) = size();
        let room = self.rows.saturating_sub(1);
        let mut used = 0;
        let mut first = self.recent.len();
        for line in self.recent.iter().rev() {
            let height = visible_width(line).div_ceil(self.width).max(1);
            if used + height > room {
                break;
            }
            used += height;
            first -= 1;
        }
        push(out, MoveTo(0, 0));
        push(out, Clear(ClearType::All));
        for _ in used..room {
            out.push_str("\r\n");
        }
        for line in self.recent.range(first..) {
            out.push_str(line);
            out.push_str("\r\n");
        }
    }

    /// Appends to `out` what leaves the screen for the shell: the input
    /// row emptied with the cursor at its start, bracketed paste off.
    pub(super) fn close(&mut self, out: &mut String) {
        out.push('\r');
        push(out, Clear(ClearType::CurrentLine));
        out.push_str(PASTE_OFF);
    }
}

impl Drop for Screen {
    fn drop(&mut self) {
        if let Err(error) = terminal::disable_raw_mode() {
            log::warn!("cannot restore terminal settings: {error}");
        }
    }
}

/// The width of `text` in columns.
pub(super) fn width_of(text: &str) -> usize {
    UnicodeWidthStr::width(text)
}

/// The columns a printed line takes: its colour sequences take none.
/// They are the only escapes in it: what others send is escaped before it
/// is shown.
fn visible_width(line: &str) -> usize {
    let mut columns = 0;
    let mut rest = line;
    while let Some(escape) = rest.find('\x1b') {
        columns += width_of(&rest[..escape]);
        let after = &rest[escape..];
        rest = after.find('m').map_or("", |end| &after[end + 1..]);
    }
    columns + width_of(rest)
}

/// The terminal's columns and rows.
fn size() -> (usize, usize) {
    let (columns, rows) = match terminal::size() {
        Ok((columns, rows)) if columns > 0 && rows > 0 => (columns, rows),
        _ => FALLBACK_SIZE,
    };
    (usize::from(columns), usize::from(rows))
}

/// Appends the escape sequence of `command`.
fn push(out: &mut String, command: impl Command) {
    let _ = command.write_ansi(out);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::transcript::{Entry, Style};

    #[test]
    fn colour_sequences_take_no_columns() {
        let entry = Entry::of_server("hans: 漢字 hi");
        let plain = Style { colour: false }.line("14:02", &entry);
        let coloured = Style { colour: true }.line("14:02", &entry);
        assert_ne!(plain, coloured);
        assert_eq!(visible_width(&coloured), width_of(&plain));
        assert_eq!(visible_width(&plain), "14:02 hans: ".len() + 4 + 3);
    }
}
