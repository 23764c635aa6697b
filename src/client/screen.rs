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

use std::io;

use crossterm::cursor::{MoveRight, MoveUp};
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

/// The terminal in raw mode, with the input line on its bottom row.
pub(super) struct Screen {
    /// Columns.
    width: usize,
    /// The column the cursor was left in on the input row.
    cursor: usize,
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
        Ok((Self { width, cursor: 0 }, out))
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
        self.cursor = 0;
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
        self.cursor = column;
    }

    /// The terminal was resized: appends to `out` what clears the input
    /// row as the terminal may have rewrapped it (a terminal that reflows
    /// splits the old row over several; the cursor is on the one holding
    /// its column), so that the caller can draw it again.
    pub(super) fn resized(&mut self, out: &mut String) {
        let (width, _) = size();
        let up = self.cursor / width.max(1);
        if width < self.width && up > 0 {
            push(out, MoveUp(u16::try_from(up).unwrap_or(u16::MAX)));
        }
        out.push('\r');
        push(out, Clear(ClearType::FromCursorDown));
        self.width = width;
        self.cursor = 0;
    }

    /// Appends to `out` what leaves the screen for the shell: the input
    /// row emptied with the cursor at its start, bracketed paste off.
    pub(super) fn close(&mut self, out: &mut String) {
        out.push('\r');
        push(out, Clear(ClearType::CurrentLine));
        out.push_str(PASTE_OFF);
        self.cursor = 0;
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
