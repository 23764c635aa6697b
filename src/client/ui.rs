//! The client's terminal UI, used when standard input and output are both
//! a terminal: the conversation above, the line being typed pinned on the
//! bottom row ([`Screen`], [`Editor`]), each line stamped and styled
//! ([`transcript`](super::transcript)), offline mail shown under a "while
//! you were away" line with the time it was sent, and the names seen so
//! far for Tab to complete.
//!
//! [`Ui`] holds what the UI knows and composes what it shows; the client's
//! loop feeds it keys and the server's text and writes what it composed.

use std::collections::BTreeSet;
use std::mem;
use std::time::{SystemTime, UNIX_EPOCH};

use super::editor::Editor;
use super::keys::Keys;
use super::screen::{width_of, Screen};
use super::transcript::{Entry, Style};
use crate::protocol::{
    Reply, INVALID_USERNAME, PASSWORD_PROMPT, PROMPTS, QUEUED_END, STAMPS_ON, USERNAME_PROMPT,
    WELCOME,
};

/// The input line's prompt once logged in.
const CHAT_PROMPT: &str = "> ";
/// The input line's prompt once the server has closed the connection.
pub(super) const RECONNECT_PROMPT: &str = "Press Enter to reconnect, Ctrl-D to quit";

/// Longest unfinished server line held before it is shown anyway.
const MAX_PARTIAL: usize = 16 * 1024;
/// Names remembered for completion at most.
const MAX_NAMES: usize = 10_000;

/// What the client tells the user about each command when asked `help`.
const HELP: [&str; 13] = [
    "message <user> <text>    send <text> to <user>, kept for them if they are away",
    "broadcast <text>         send <text> to everyone online",
    "whoelse                  who else is online",
    "whoelsesince <seconds>   who else was online in the last <seconds>",
    "block <user>             stop getting <user>'s messages; they stop seeing you",
    "unblock <user>           undo block",
    "startprivate <user>      open a private session straight to <user>'s client",
    "private <user> <text>    send <text> over that session, not through the server",
    "stopprivate <user>       end the private session with <user>",
    "logout                   leave (Ctrl-D on an empty line does too)",
    "help                     this list",
    "Tab completes commands and names; Up/Down go through what you typed",
    "Ctrl-A/E start/end, Ctrl-W/U/K delete word/before/after, Alt-B/F word moves",
];

/// Where the request for stamped offline mail stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stamps {
    /// Asked; the answer is the server's next line.
    Asked,
    /// The server answered; nothing more to hide.
    Answered,
}

/// What the prompt of the input line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Prompt {
    /// Asking for the username.
    Username,
    /// Asking for the password: what is typed is not shown.
    Password,
    /// Logged in.
    Chat,
    /// The server has gone.
    Reconnect,
}

impl Prompt {
    fn text(self) -> &'static str {
        match self {
            Prompt::Username => USERNAME_PROMPT,
            Prompt::Password => PASSWORD_PROMPT,
            Prompt::Chat => CHAT_PROMPT,
            Prompt::Reconnect => RECONNECT_PROMPT,
        }
    }
}

/// The terminal UI's state; see the module documentation.
pub(super) struct Ui {
    screen: Screen,
    /// The line being typed.
    pub(super) editor: Editor,
    /// Decodes what standard input brings.
    pub(super) keys: Keys,
    style: Style,
    /// Names seen, for completion.
    names: BTreeSet<String>,
    /// Who is logged in here, once known.
    pub(super) me: Option<String>,
    /// The username last typed at the prompt, until the login's outcome.
    typed_name: Option<String>,
    /// How many prompts the server had sent when that username was typed.
    answered_prompt: Option<u64>,
    /// The server's unfinished line.
    partial: String,
    stamps: Stamps,
    /// Offline messages shown so far under the current away line.
    away: usize,
    /// What was composed for the terminal and not written yet.
    out: String,
}

impl Ui {
    /// Takes over the terminal; `colour` false shows no colours.
    pub(super) fn open(colour: bool) -> std::io::Result<Self> {
        let (screen, out) = Screen::open()?;
        Ok(Self {
            screen,
            editor: Editor::default(),
            keys: Keys::default(),
            style: Style { colour },
            names: BTreeSet::new(),
            me: None,
            typed_name: None,
            answered_prompt: None,
            partial: String::new(),
            stamps: Stamps::Answered,
            away: 0,
            out,
        })
    }

    /// A new connection: its first line asks for stamped offline mail
    /// ([`crate::protocol::STAMPS_REQUEST`], which the caller sends), and nothing of the
    /// last one's unfinished output carries over.
    pub(super) fn connected(&mut self) {
        self.stamps = Stamps::Asked;
        self.partial.clear();
        self.typed_name = None;
        self.answered_prompt = None;
        self.away = 0;
    }

    /// The user answered the username prompt with `name` when the server
    /// had sent `prompts` prompts.
    pub(super) fn typed_username(&mut self, name: &str, prompts: u64) {
        self.typed_name = Some(name.to_owned());
        self.answered_prompt = Some(prompts);
    }

    /// How many prompts the server had sent when the last username was
    /// typed: until it sends another, the next line is the password.
    pub(super) fn answered_prompt(&self) -> Option<u64> {
        self.answered_prompt
    }

    /// Shows server text (already made safe): each complete line as what
    /// it is; the prompts are the input line's, not shown above it.
    pub(super) fn server_text(&mut self, text: &str) {
        for c in text.chars() {
            if PROMPTS.contains(&self.partial.as_str()) {
                self.partial.clear();
            }
            if c == '\n' {
                let line = mem::take(&mut self.partial);
                self.server_line(&line);
            } else {
                self.partial.push(c);
                if self.partial.len() > MAX_PARTIAL {
                    let line = mem::take(&mut self.partial);
                    self.server_line(&line);
                }
            }
        }
    }

    /// The server's output ended: an unfinished line is shown as it is.
    pub(super) fn server_ended(&mut self) {
        let line = mem::take(&mut self.partial);
        if !line.is_empty() && !PROMPTS.contains(&line.as_str()) {
            self.server_line(&line);
        }
    }

    /// Shows one complete server line.
    fn server_line(&mut self, line: &str) {
        if mem::replace(&mut self.stamps, Stamps::Answered) == Stamps::Asked
            && (line == STAMPS_ON || line == INVALID_USERNAME)
        {
            // The answer to the request (an older server's is the
            // username refusal): not for the user.
            return;
        }
        if line == QUEUED_END {
            if mem::take(&mut self.away) > 0 {
                self.print(&now_stamp(), &Entry::Notice("end of offline messages"));
            }
            return;
        }
        if let Some((at, message)) = Reply::read_queued(line) {
            if self.away == 0 {
                self.print(&now_stamp(), &Entry::Notice("while you were away"));
            }
            self.away += 1;
            let stamp = at.map_or_else(|| "--:--".to_owned(), sent_stamp);
            return self.print(&stamp, &Entry::of_server(message));
        }
        if line == WELCOME {
            self.me = self.typed_name.take();
        }
        self.print(&now_stamp(), &Entry::of_server(line));
    }

    /// Shows one of the client's own lines.
    pub(super) fn note(&mut self, line: &str) {
        self.print(&now_stamp(), &Entry::of_client(line));
    }

    /// Shows a notice of the client's.
    pub(super) fn notice(&mut self, line: &str) {
        self.print(&now_stamp(), &Entry::Notice(line));
    }

    /// Shows an error of the client's.
    pub(super) fn error(&mut self, line: &str) {
        self.print(&now_stamp(), &Entry::Error(line));
    }

    /// Shows what the user sent, as sent: to `to`, or to everyone.
    pub(super) fn sent(&mut self, to: Option<&str>, text: &str, private: bool) {
        let me = self.me.clone().unwrap_or_else(|| "you".to_owned());
        let entry = Entry::Sent {
            me: &me,
            to,
            text,
            private,
        };
        self.print(&now_stamp(), &entry);
    }

    /// Shows the client's help.
    pub(super) fn help(&mut self) {
        for line in HELP {
            self.notice(line);
        }
    }

    /// The names seen so far that Tab completes after a line's first word.
    pub(super) fn names(&self) -> impl Iterator<Item = &str> {
        self.names.iter().map(String::as_str)
    }

    /// Prints `entry` above the input line, learning the names in it.
    fn print(&mut self, stamp: &str, entry: &Entry<'_>) {
        if let Some(name) = entry.names() {
            if self.names.len() < MAX_NAMES && Some(name) != self.me.as_deref() {
                self.names.insert(name.to_owned());
            }
        }
        let line = self.style.line(stamp, entry);
        self.screen.print(&mut self.out, &line);
    }

    /// Draws the input line with `prompt`.
    /// The prompts are ASCII; on a terminal too narrow for one, it is cut
    /// so that the input line never takes a second row.
    pub(super) fn draw(&mut self, prompt: Prompt) {
        let width = self.screen.width();
        let full = prompt.text();
        let text = &full[..full.len().min(width.saturating_sub(2))];
        let prompt_width = width_of(text);
        let (shown, column) = match prompt {
            Prompt::Password | Prompt::Reconnect => ("", prompt_width),
            Prompt::Username | Prompt::Chat => self.editor.view(width, prompt_width),
        };
        let shown = shown.to_owned();
        self.screen.draw_input(&mut self.out, text, &shown, column);
    }

    /// The terminal was resized, or the user asked for the screen to be
    /// drawn again.
    pub(super) fn redraw(&mut self) {
        self.screen.redraw(&mut self.out);
    }

    /// Leaves the terminal for the shell: the input row emptied.
    pub(super) fn close(&mut self) {
        self.screen.close(&mut self.out);
    }

    /// What was composed for the terminal since the last call.
    pub(super) fn take_output(&mut self) -> String {
        mem::take(&mut self.out)
    }
}

/// The local time now as `HH:MM`.
fn now_stamp() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let local = LocalTime::of(i64::try_from(now).unwrap_or(i64::MAX));
    format!("{:02}:{:02}", local.hour, local.minute)
}

/// When a message was sent (seconds since the epoch): `HH:MM` today,
/// `YYYY-MM-DD HH:MM` before.
fn sent_stamp(unix: u64) -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let today = LocalTime::of(i64::try_from(now).unwrap_or(i64::MAX));
    let sent = LocalTime::of(i64::try_from(unix).unwrap_or(i64::MAX));
    if (sent.year, sent.month, sent.day) == (today.year, today.month, today.day) {
        format!("{:02}:{:02}", sent.hour, sent.minute)
    } else {
        format!(
            "{:04}-{:02}-{:02} {:02}:{:02}",
            sent.year, sent.month, sent.day, sent.hour, sent.minute
        )
    }
}

/// A moment in the local time zone (`TZ` honoured).
struct LocalTime {
    year: i32,
    month: i32,
    day: i32,
    hour: i32,
    minute: i32,
}

impl LocalTime {
    /// The local time of `unix` seconds since the epoch (UTC when the
    /// system cannot say).
    fn of(unix: i64) -> Self {
        // SAFETY: tm is plain data, for which all zeroes is valid.
        let mut tm: libc::tm = unsafe { mem::zeroed() };
        let time: libc::time_t = unix;
        // SAFETY: both pointers are to live values; localtime_r is the
        // thread-safe form.
        if unsafe { libc::localtime_r(&time, &mut tm) }.is_null() {
            // SAFETY: as above.
            unsafe { libc::gmtime_r(&time, &mut tm) };
        }
        Self {
            year: tm.tm_year + 1900,
            month: tm.tm_mon + 1,
            day: tm.tm_mday,
            hour: tm.tm_hour,
            minute: tm.tm_min,
        }
    }
}
