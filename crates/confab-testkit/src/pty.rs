//! A program on a pseudo-terminal whose screen the test reads: [`Terminal`]
//! spawns it as the session leader with the terminal as its controlling
//! terminal and standard input, output and error, feeds everything it
//! writes into a `vt100` terminal emulator on a thread, and lets the test
//! type keys ([`keys`]), resize the window and wait, bounded, for the
//! screen ([`Screen`]) to show something. A wait that times out panics
//! with the whole screen, the cursor and the last bytes written, so that a
//! failing test says what the user would have seen.
//!
//! Like a real terminal, the emulator answers a cursor position query
//! (`ESC [ 6 n`) with the cursor's position, so that a line editor that
//! asks where it is does not wait forever.

use std::collections::VecDeque;
use std::ffi::CStr;
use std::fmt;
use std::fs::File;
use std::io::{self, Read, Write};
use std::num::NonZeroU16;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::thread;
use std::time::{Duration, Instant};

/// How long [`Terminal::wait_for_text`] and [`Terminal::wait_bottom_row`]
/// wait.
pub const SCREEN_TIMEOUT: Duration = Duration::from_secs(5);

/// How many of the last bytes written to the terminal are kept for
/// failure messages ([`Terminal::raw_output`]).
const RAW_KEPT: usize = 64 * 1024;

/// Rows the emulator keeps above the window, as a terminal does: a window
/// made taller shows them again (on top) before it adds blank rows at the
/// bottom.
const SCROLLBACK: usize = 1000;

/// How many of the kept bytes a failure message shows.
const RAW_SHOWN: usize = 2048;

/// How often a wait looks at the screen again.
const POLL: Duration = Duration::from_millis(5);

/// How long dropping a [`Terminal`] waits for the killed program to be
/// reaped.
const KILL_TIMEOUT: Duration = Duration::from_secs(2);

/// The cursor position query a program may write (device status report
/// 6); the answer is `ESC [ row ; column R`, both from 1.
const CURSOR_QUERY: &[u8] = b"\x1b[6n";

/// The bytes a terminal sends for keys, as a program in raw mode reads
/// them (xterm's defaults, cursor keys in normal mode).
pub mod keys {
    /// Enter.
    pub const ENTER: &[u8] = b"\r";
    /// Tab.
    pub const TAB: &[u8] = b"\t";
    /// Backspace.
    pub const BACKSPACE: &[u8] = b"\x7f";
    /// Delete.
    pub const DELETE: &[u8] = b"\x1b[3~";
    /// Cursor up.
    pub const UP: &[u8] = b"\x1b[A";
    /// Cursor down.
    pub const DOWN: &[u8] = b"\x1b[B";
    /// Cursor right.
    pub const RIGHT: &[u8] = b"\x1b[C";
    /// Cursor left.
    pub const LEFT: &[u8] = b"\x1b[D";
    /// Home.
    pub const HOME: &[u8] = b"\x1b[H";
    /// End.
    pub const END: &[u8] = b"\x1b[F";
    /// Alt-b: a word back.
    pub const ALT_B: &[u8] = b"\x1bb";
    /// Alt-f: a word forward.
    pub const ALT_F: &[u8] = b"\x1bf";
    /// Ctrl-A: start of line.
    pub const CTRL_A: &[u8] = b"\x01";
    /// Ctrl-C: interrupt.
    pub const CTRL_C: &[u8] = b"\x03";
    /// Ctrl-D: end of input.
    pub const CTRL_D: &[u8] = b"\x04";
    /// Ctrl-E: end of line.
    pub const CTRL_E: &[u8] = b"\x05";
    /// Ctrl-K: delete to the end of the line.
    pub const CTRL_K: &[u8] = b"\x0b";
    /// Ctrl-U: delete to the start of the line.
    pub const CTRL_U: &[u8] = b"\x15";
    /// Ctrl-W: delete the word before the cursor.
    pub const CTRL_W: &[u8] = b"\x17";
}

/// Terminal modes a program may switch on and must switch off again
/// before it leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Modes {
    /// The cursor is hidden (`ESC [ ? 25 l`).
    pub cursor_hidden: bool,
    /// The alternate screen is shown (`ESC [ ? 1049 h` and the like).
    pub alternate_screen: bool,
    /// Cursor keys send application sequences (`ESC [ ? 1 h`).
    pub application_cursor: bool,
    /// Bracketed paste is on (`ESC [ ? 2004 h`).
    pub bracketed_paste: bool,
}

/// What the terminal shows at one moment: every cell, the cursor and the
/// modes.
#[derive(Debug, Clone)]
pub struct Screen {
    /// The cells of each row; a wide character's second cell is empty.
    cells: Vec<Vec<String>>,
    /// Whether each row's text goes on in the next row (the terminal
    /// wrapped it there at the right margin).
    wrapped: Vec<bool>,
    cursor: (u16, u16),
    modes: Modes,
}

impl Screen {
    fn of(screen: &vt100::Screen) -> Screen {
        let (rows, cols) = screen.size();
        let cells = (0..rows.get())
            .map(|row| {
                (0..cols.get())
                    .map(|col| match screen.cell(row, col) {
                        Some(cell) if cell.is_wide_continuation() => String::new(),
                        Some(cell) if cell.has_contents() => cell.contents().to_string(),
                        _ => " ".to_string(),
                    })
                    .collect()
            })
            .collect();
        Screen {
            cells,
            wrapped: (0..rows.get()).map(|row| screen.row_wrapped(row)).collect(),
            cursor: screen.cursor_position(),
            modes: Modes {
                cursor_hidden: screen.hide_cursor(),
                alternate_screen: screen.alternate_screen(),
                application_cursor: screen.application_cursor(),
                bracketed_paste: screen.bracketed_paste(),
            },
        }
    }

    /// Number of rows.
    pub fn height(&self) -> usize {
        self.cells.len()
    }

    /// Row `i` (0 is the top) without its trailing blanks; empty past the
    /// bottom.
    pub fn row(&self, i: usize) -> String {
        self.cells
            .get(i)
            .map_or_else(String::new, |cells| cells.concat().trim_end().to_string())
    }

    /// Every row, top first, without trailing blanks.
    pub fn rows(&self) -> Vec<String> {
        (0..self.height()).map(|i| self.row(i)).collect()
    }

    /// The last row.
    pub fn bottom_row(&self) -> String {
        self.row(self.height().saturating_sub(1))
    }

    /// The whole screen, one row a line, without trailing blanks or
    /// trailing empty rows.
    pub fn text(&self) -> String {
        let mut text = self.rows().join("\n");
        text.truncate(text.trim_end().len());
        text
    }

    /// The lines shown, top first, without trailing blanks: each row, but
    /// rows the terminal wrapped one line onto joined into one.
    pub fn lines(&self) -> Vec<String> {
        let mut lines = Vec::new();
        let mut line = String::new();
        for (cells, &wrapped) in self.cells.iter().zip(&self.wrapped) {
            line.push_str(&cells.concat());
            if !wrapped {
                lines.push(line.trim_end().to_string());
                line.clear();
            }
        }
        if !line.is_empty() {
            lines.push(line.trim_end().to_string());
        }
        lines
    }

    /// Whether some line shows `needle` (see [`Screen::lines`]).
    pub fn contains(&self, needle: &str) -> bool {
        self.lines().iter().any(|line| line.contains(needle))
    }

    /// The cursor: row and column of its cell, both from 0.
    pub fn cursor(&self) -> (u16, u16) {
        self.cursor
    }

    /// What the cursor's row shows left of the cursor.
    pub fn left_of_cursor(&self) -> String {
        let (row, col) = self.cursor;
        self.cells
            .get(usize::from(row))
            .map_or_else(String::new, |cells| {
                cells[..usize::from(col).min(cells.len())].concat()
            })
    }

    /// What the cursor's row shows from the cursor on, without trailing
    /// blanks.
    pub fn right_of_cursor(&self) -> String {
        let (row, col) = self.cursor;
        self.cells
            .get(usize::from(row))
            .map_or_else(String::new, |cells| {
                cells[usize::from(col).min(cells.len())..]
                    .concat()
                    .trim_end()
                    .to_string()
            })
    }

    /// The modes switched on.
    pub fn modes(&self) -> Modes {
        self.modes
    }
}

impl fmt::Display for Screen {
    /// The rows numbered and framed, then the cursor, so that a failure
    /// message shows blanks and wide characters where they are.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let width = self.cells.first().map_or(0, Vec::len);
        writeln!(f, "    +{}+", "-".repeat(width))?;
        for (i, cells) in self.cells.iter().enumerate() {
            writeln!(f, "{i:>3} |{}|", cells.concat())?;
        }
        writeln!(f, "    +{}+", "-".repeat(width))?;
        write!(
            f,
            "cursor at row {}, column {}; {:?}",
            self.cursor.0, self.cursor.1, self.modes
        )
    }
}

/// What the reader thread shares with the test.
struct State {
    parser: vt100::Parser,
    /// The last [`RAW_KEPT`] bytes written to the terminal.
    raw: VecDeque<u8>,
    /// The end of what was written, held back because it may be the start
    /// of a cursor position query.
    partial_query: Vec<u8>,
    /// The terminal has no writer any more (every descriptor of its other
    /// side is closed), or reading it failed.
    closed: bool,
}

impl State {
    /// Takes bytes the program wrote: into the emulator and the raw log,
    /// answering each cursor position query through `answer` once what
    /// came before it is on the screen.
    fn take(&mut self, bytes: &[u8], answer: &mut impl Write) {
        self.raw.extend(bytes);
        let excess = self.raw.len().saturating_sub(RAW_KEPT);
        self.raw.drain(..excess);
        let mut input = std::mem::take(&mut self.partial_query);
        input.extend_from_slice(bytes);
        let mut rest = &input[..];
        while let Some(at) = find(rest, CURSOR_QUERY) {
            self.parser.process(&rest[..at]);
            let (row, col) = self.parser.screen().cursor_position();
            // A program that has gone since asking needs no answer.
            let _ = write!(answer, "\x1b[{};{}R", row + 1, col + 1);
            rest = &rest[at + CURSOR_QUERY.len()..];
        }
        let held = (1..CURSOR_QUERY.len())
            .rev()
            .find(|&n| rest.ends_with(&CURSOR_QUERY[..n]))
            .unwrap_or(0);
        self.parser.process(&rest[..rest.len() - held]);
        self.partial_query = rest[rest.len() - held..].to_vec();
    }
}

/// Where `needle` first occurs in `haystack`.
fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack
        .windows(needle.len())
        .position(|window| window == needle)
}

/// Bytes shown readably: printable ASCII as is, the rest escaped.
fn escaped(bytes: &[u8]) -> String {
    bytes.escape_ascii().to_string()
}

/// Fails with `why` if `rc` is -1.
fn check(rc: libc::c_int, why: &str) -> io::Result<libc::c_int> {
    if rc == -1 {
        let error = io::Error::last_os_error();
        Err(io::Error::new(error.kind(), format!("{why}: {error}")))
    } else {
        Ok(rc)
    }
}

/// A new pseudo-terminal: its master side and its slave side, both
/// close-on-exec (the child gets the slave as its standard streams only).
fn open_pty() -> io::Result<(File, OwnedFd)> {
    // SAFETY: posix_openpt takes flags and returns a new descriptor or -1.
    let master = check(
        unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) },
        "posix_openpt",
    )?;
    // SAFETY: a descriptor posix_openpt just returned, owned by nothing
    // else.
    let master = unsafe { File::from_raw_fd(master) };
    let fd = master.as_raw_fd();
    // SAFETY: grantpt and unlockpt take the master's descriptor.
    check(unsafe { libc::grantpt(fd) }, "grantpt")?;
    // SAFETY: as above.
    check(unsafe { libc::unlockpt(fd) }, "unlockpt")?;
    let mut name = [0 as libc::c_char; 128];
    // SAFETY: ptsname_r writes at most `name.len()` bytes, NUL included,
    // into the buffer.
    let rc = unsafe { libc::ptsname_r(fd, name.as_mut_ptr(), name.len()) };
    if rc != 0 {
        let error = io::Error::from_raw_os_error(rc);
        return Err(io::Error::new(error.kind(), format!("ptsname_r: {error}")));
    }
    // SAFETY: ptsname_r succeeded, so the buffer holds a NUL-terminated
    // name, and the pointer outlives this call.
    let slave = check(
        unsafe {
            libc::open(
                CStr::from_ptr(name.as_ptr()).as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        },
        "open the terminal's slave side",
    )?;
    // SAFETY: a descriptor open just returned, owned by nothing else.
    Ok((master, unsafe { OwnedFd::from_raw_fd(slave) }))
}

/// Sets the window size of the terminal `fd` refers to.
fn set_window_size(fd: RawFd, rows: u16, cols: u16) -> io::Result<()> {
    let size = libc::winsize {
        ws_row: rows,
        ws_col: cols,
        ws_xpixel: 0,
        ws_ypixel: 0,
    };
    // SAFETY: TIOCSWINSZ reads one winsize from the pointer.
    check(
        unsafe { libc::ioctl(fd, libc::TIOCSWINSZ, &size as *const libc::winsize) },
        "TIOCSWINSZ",
    )?;
    Ok(())
}

/// Both sizes as the emulator takes them, or an error naming a zero.
fn nonzero(rows: u16, cols: u16) -> io::Result<(NonZeroU16, NonZeroU16)> {
    match (NonZeroU16::new(rows), NonZeroU16::new(cols)) {
        (Some(rows), Some(cols)) => Ok((rows, cols)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("a terminal of {rows} rows and {cols} columns"),
        )),
    }
}

/// A program running on a pseudo-terminal of its own, with an emulator
/// reading its screen; the program's process group is killed when this is
/// dropped.
pub struct Terminal {
    child: Child,
    /// The program has been waited for: its process group may be gone
    /// and its id reused, so it is not signalled any more.
    reaped: Option<ExitStatus>,
    /// The master side: what is written here is typed.
    master: File,
    state: Arc<Mutex<State>>,
}

impl Terminal {
    /// Runs `command` on a new pseudo-terminal of `rows` × `cols`: in a
    /// session of its own with the terminal as its controlling terminal
    /// and as its standard input, output and error. The terminal starts in
    /// the kernel's default mode (canonical, echoing), as a shell leaves
    /// it. Whatever `command` had as standard streams is replaced.
    pub fn spawn(mut command: Command, rows: u16, cols: u16) -> io::Result<Terminal> {
        let (parser_rows, parser_cols) = nonzero(rows, cols)?;
        let (master, slave) = open_pty()?;
        set_window_size(master.as_raw_fd(), rows, cols)?;
        command
            .stdin(Stdio::from(slave.try_clone()?))
            .stdout(Stdio::from(slave.try_clone()?))
            .stderr(Stdio::from(slave));
        // SAFETY: only setsid and ioctl, which are async-signal-safe, run
        // between fork and exec.
        unsafe {
            command.pre_exec(|| {
                // Nothing that allocates: another thread may have held
                // the allocator's lock at the fork.
                if libc::setsid() == -1
                    // Standard input is the slave by now: make it the
                    // session's controlling terminal.
                    || libc::ioctl(libc::STDIN_FILENO, libc::TIOCSCTTY, 0) == -1
                {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let child = command.spawn()?;
        // The slave's descriptors in this process go with `command`.
        drop(command);
        let state = Arc::new(Mutex::new(State {
            parser: vt100::Parser::new(parser_rows, parser_cols, SCROLLBACK),
            raw: VecDeque::new(),
            partial_query: Vec::new(),
            closed: false,
        }));
        let mut terminal = Terminal {
            child,
            reaped: None,
            master,
            state,
        };
        let reader = terminal.master.try_clone()?;
        let answer = terminal.master.try_clone()?;
        let state = Arc::clone(&terminal.state);
        if let Err(error) = thread::Builder::new()
            .name("pty-reader".into())
            .spawn(move || read_into(reader, answer, &state))
        {
            terminal.kill();
            return Err(error);
        }
        Ok(terminal)
    }

    /// The program's process id (also its process group's and session's).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// What the terminal shows now.
    pub fn screen(&self) -> Screen {
        Screen::of(self.lock().parser.screen())
    }

    /// The whole screen as text (see [`Screen::text`]).
    pub fn screen_text(&self) -> String {
        self.screen().text()
    }

    /// Row `i` (0 is the top) without trailing blanks.
    pub fn row(&self, i: usize) -> String {
        self.screen().row(i)
    }

    /// The last row without trailing blanks.
    pub fn bottom_row(&self) -> String {
        self.screen().bottom_row()
    }

    /// The cursor: row and column, both from 0.
    pub fn cursor(&self) -> (u16, u16) {
        self.screen().cursor()
    }

    /// The last bytes the program wrote (at most 64 KiB), escape sequences
    /// and all.
    pub fn raw_output(&self) -> Vec<u8> {
        self.lock().raw.iter().copied().collect()
    }

    /// The screen and the end of the raw output, for failure messages.
    pub fn dump(&self) -> String {
        let state = self.lock();
        let screen = Screen::of(state.parser.screen());
        let skip = state.raw.len().saturating_sub(RAW_SHOWN);
        let tail: Vec<u8> = state.raw.iter().skip(skip).copied().collect();
        format!(
            "{screen}\nlast {} bytes written: \"{}\"",
            tail.len(),
            escaped(&tail)
        )
    }

    /// Types `bytes` as they are: keys (see [`keys`]) or text.
    #[track_caller]
    pub fn send(&mut self, bytes: &[u8]) {
        if let Err(error) = self
            .master
            .write_all(bytes)
            .and_then(|()| self.master.flush())
        {
            panic!(
                "typing \"{}\" on the terminal: {error}\n{}",
                escaped(bytes),
                self.dump()
            );
        }
    }

    /// Types `text`.
    #[track_caller]
    pub fn type_text(&mut self, text: &str) {
        self.send(text.as_bytes());
    }

    /// Resizes the window to `rows` × `cols`: the emulator first, then the
    /// terminal, whose kernel side then sends `SIGWINCH` to the foreground
    /// process group.
    #[track_caller]
    pub fn resize(&mut self, rows: u16, cols: u16) {
        let sizes = nonzero(rows, cols);
        let result = sizes.and_then(|(parser_rows, parser_cols)| {
            self.lock().parser.set_size(parser_rows, parser_cols);
            set_window_size(self.master.as_raw_fd(), rows, cols)
        });
        if let Err(error) = result {
            panic!("resizing the terminal: {error}\n{}", self.dump());
        }
    }

    /// Waits until `condition` holds for the screen, at most `timeout`,
    /// and returns that screen; panics naming `what`, with the whole
    /// screen, if it does not (at once if the program's side of the
    /// terminal closed first, as nothing more can change).
    #[track_caller]
    pub fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        mut condition: impl FnMut(&Screen) -> bool,
    ) -> Screen {
        let deadline = Instant::now() + timeout;
        loop {
            let (screen, closed) = {
                let state = self.lock();
                (Screen::of(state.parser.screen()), state.closed)
            };
            if condition(&screen) {
                return screen;
            }
            if closed {
                panic!(
                    "waiting for {what}: the terminal closed first\n{}",
                    self.dump()
                );
            }
            if Instant::now() >= deadline {
                panic!("waited {timeout:?} for {what}\n{}", self.dump());
            }
            thread::sleep(POLL);
        }
    }

    /// Waits, at most [`SCREEN_TIMEOUT`], until some line shows `text`
    /// (see [`Screen::lines`]).
    #[track_caller]
    pub fn wait_for_text(&self, text: &str) -> Screen {
        self.wait_until(
            &format!("a line showing {text:?}"),
            SCREEN_TIMEOUT,
            |screen| screen.contains(text),
        )
    }

    /// Waits, at most [`SCREEN_TIMEOUT`], until the bottom row is
    /// `expected` (trailing blanks aside).
    #[track_caller]
    pub fn wait_bottom_row(&self, expected: &str) -> Screen {
        let expected = expected.trim_end();
        self.wait_until(
            &format!("the bottom row to be {expected:?}"),
            SCREEN_TIMEOUT,
            |screen| screen.bottom_row() == expected,
        )
    }

    /// The program's exit status if it has exited, without waiting.
    #[track_caller]
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.reaped.is_none() {
            match self.child.try_wait() {
                Ok(status) => self.reaped = status,
                Err(error) => panic!("cannot wait for the program: {error}\n{}", self.dump()),
            }
        }
        self.reaped
    }

    /// Waits, at most `timeout`, for the program to exit, then (within
    /// what is left of `timeout`) for the reader to take everything
    /// written, so that the screen is final; panics with the screen if it
    /// does not exit in time.
    #[track_caller]
    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        let status = loop {
            if let Some(status) = self.try_status() {
                break status;
            }
            if Instant::now() >= deadline {
                panic!(
                    "the program did not exit within {timeout:?}\n{}",
                    self.dump()
                );
            }
            thread::sleep(POLL);
        };
        // A process the program left behind may hold the terminal open:
        // then the screen is what it is at the deadline.
        while !self.lock().closed && Instant::now() < deadline {
            thread::sleep(POLL);
        }
        status
    }

    /// Kills the program's process group, unless the program has been
    /// reaped, and reaps it, bounded.
    fn kill(&mut self) {
        if self.reaped.is_some() {
            return;
        }
        let Ok(group) = libc::pid_t::try_from(self.child.id()) else {
            return;
        };
        // SAFETY: kill takes a process group id and a signal. The group is
        // the program's own (it is its session's leader and has not been
        // reaped, so the id is not reused).
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let deadline = Instant::now() + KILL_TIMEOUT;
        while Instant::now() < deadline {
            match self.child.try_wait() {
                Ok(None) => thread::sleep(POLL),
                Ok(Some(status)) => {
                    self.reaped = Some(status);
                    return;
                }
                Err(_) => return,
            }
        }
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The reader thread: everything written to the terminal into `state`
/// until no process has its other side open any more (`EIO` on Linux).
fn read_into(mut reader: File, mut answer: File, state: &Mutex<State>) {
    let mut buf = [0; 4096];
    loop {
        match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => state
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .take(&buf[..n], &mut answer),
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    state.lock().unwrap_or_else(PoisonError::into_inner).closed = true;
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sh -c SCRIPT` on a terminal of `rows` × `cols`.
    fn sh(script: &str, rows: u16, cols: u16) -> Terminal {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        Terminal::spawn(command, rows, cols).expect("start sh on a terminal")
    }

    #[test]
    fn shows_what_is_written_and_types_what_is_sent() {
        let mut terminal = sh(r#"printf "a\nb"; read x; echo "got:$x""#, 24, 80);
        let screen = terminal.wait_until("a and b", SCREEN_TIMEOUT, |s| {
            s.row(0) == "a" && s.row(1) == "b"
        });
        assert_eq!(screen.cursor(), (1, 1), "{screen}");

        terminal.type_text("hello");
        terminal.send(keys::ENTER);

        let screen = terminal.wait_for_text("got:hello");
        assert_eq!(screen.row(1), "bhello", "the echo, after b\n{screen}");
        assert_eq!(screen.row(2), "got:hello", "{screen}");
        assert_eq!(screen.text(), "a\nbhello\ngot:hello");
        assert!(terminal.wait_exit(SCREEN_TIMEOUT).success());
        assert_eq!(terminal.screen_text(), "a\nbhello\ngot:hello");
        assert!(terminal.raw_output().ends_with(b"got:hello\r\n"));
    }

    #[test]
    fn the_program_has_the_terminal_as_its_controlling_terminal() {
        // /dev/tty opens only on a controlling terminal; the session and
        // group are the program's own.
        let mut terminal = sh(
            "echo ctty > /dev/tty && cut -d' ' -f5,6 /proc/$$/stat",
            24,
            80,
        );
        let pid = terminal.pid();
        assert!(terminal.wait_exit(SCREEN_TIMEOUT).success());
        let screen = terminal.screen();
        assert_eq!(screen.row(0), "ctty", "{screen}");
        assert_eq!(screen.row(1), format!("{pid} {pid}"), "{screen}");
    }

    #[test]
    fn wide_characters_take_two_cells() {
        let terminal = sh(r#"printf "漢字🙂x\033[1;3H"; read x"#, 5, 20);
        let screen = terminal.wait_for_text("漢字🙂x");
        assert_eq!(screen.row(0), "漢字🙂x");
        assert_eq!(screen.cursor(), (0, 2));
        assert_eq!(screen.left_of_cursor(), "漢");
        assert_eq!(screen.right_of_cursor(), "字🙂x");
    }

    #[test]
    fn a_line_wrapped_onto_two_rows_is_one_line() {
        let terminal = sh(r#"printf "0123456789abc\nshort"; read x"#, 4, 10);
        let screen = terminal.wait_for_text("short");
        assert_eq!(screen.rows(), ["0123456789", "abc", "short", ""]);
        assert_eq!(screen.lines(), ["0123456789abc", "short", ""]);
        assert!(screen.contains("89ab"));
        assert!(!screen.contains("cshort"));
    }

    #[test]
    fn the_bottom_row_is_the_last_of_the_window() {
        let terminal = sh(r#"printf "1\n2\n3\n4\n5"; read x"#, 3, 10);
        let screen = terminal.wait_bottom_row("5");
        assert_eq!(screen.rows(), ["3", "4", "5"]);
        assert_eq!(terminal.row(0), "3");
        assert_eq!(terminal.bottom_row(), "5");
        assert_eq!(terminal.cursor(), (2, 1));
    }

    #[test]
    fn a_taller_window_shows_the_rows_scrolled_off_first() {
        let mut terminal = sh(r#"printf "1\n2\n3\n4\n5"; read x"#, 3, 10);
        terminal.wait_bottom_row("5");
        terminal.resize(4, 10);
        assert_eq!(terminal.screen().rows(), ["2", "3", "4", "5"]);
        terminal.resize(7, 10);
        assert_eq!(terminal.screen().rows(), ["1", "2", "3", "4", "5", "", ""]);
        assert_eq!(terminal.cursor(), (4, 1));
    }

    #[test]
    fn the_window_size_is_set_before_the_start_and_on_resize() {
        let mut terminal = sh(
            r#"trap 'echo winch' WINCH; stty size; read x; stty size; read x"#,
            10,
            30,
        );
        terminal.wait_for_text("10 30");

        terminal.resize(12, 40);
        terminal.send(keys::ENTER);

        terminal.wait_for_text("12 40");
        let screen = terminal.wait_for_text("winch");
        assert_eq!(screen.height(), 12);
    }

    #[test]
    fn the_cursor_position_query_is_answered() {
        let terminal = sh(
            r#"stty -echo -icanon min 6 time 0; printf '\033[3;5H\033[6n'; head -c 6 | tr '\033' E; read x"#,
            10,
            30,
        );
        let screen = terminal.wait_for_text("E[3;5R");
        assert_eq!(screen.row(2), "    E[3;5R", "{screen}");
    }

    #[test]
    fn a_query_split_across_writes_is_answered_once() {
        let mut state = State {
            parser: vt100::Parser::new(
                NonZeroU16::new(4).expect("rows"),
                NonZeroU16::new(10).expect("cols"),
                0,
            ),
            raw: VecDeque::new(),
            partial_query: Vec::new(),
            closed: false,
        };
        let mut answers = Vec::new();
        state.take(b"ab\x1b[", &mut answers);
        assert!(answers.is_empty());
        state.take(b"6ncd\x1b", &mut answers);
        state.take(b"[6n\x1b[2;1H\x1b[6", &mut answers);
        state.take(b"Ae", &mut answers);
        assert_eq!(answers, b"\x1b[1;3R\x1b[1;5R");
        // The held `ESC [ 6` was the start of a cursor up: the cursor went
        // back to the first row, where `e` replaced `a`.
        let screen = Screen::of(state.parser.screen());
        assert_eq!(screen.rows(), ["ebcd", "", "", ""]);
    }

    #[test]
    fn a_timed_out_wait_shows_the_screen() {
        let terminal = sh(r#"printf 'shown\n\033[?25l'; read x"#, 4, 10);
        terminal.wait_for_text("shown");
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            terminal.wait_until("nothing", Duration::from_millis(50), |_| false)
        }))
        .expect_err("the wait fails");
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(
            message.starts_with("waited 50ms for nothing\n"),
            "{message}"
        );
        assert!(message.contains("  0 |shown     |\n"), "{message}");
        assert!(message.contains("cursor_hidden: true"), "{message}");
        assert!(message.contains(r"shown\r\n\x1b[?25l"), "{message}");
    }

    #[test]
    fn a_wait_on_a_closed_terminal_fails_at_once() {
        let mut terminal = sh("echo bye", 4, 10);
        assert!(terminal.wait_exit(SCREEN_TIMEOUT).success());
        let started = Instant::now();
        let panic = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            terminal.wait_until("more", Duration::from_secs(30), |_| false)
        }))
        .expect_err("the wait fails");
        assert!(started.elapsed() < Duration::from_secs(5));
        let message = panic.downcast_ref::<String>().expect("a formatted message");
        assert!(message.contains("the terminal closed first"), "{message}");
    }

    #[test]
    fn dropping_kills_the_whole_process_group() {
        let terminal = sh("sleep 30 & echo $!; wait", 4, 10);
        let screen = terminal.wait_until("the pid of sleep", SCREEN_TIMEOUT, |s| {
            s.row(0).parse::<u32>().is_ok()
        });
        let sleep: u32 = screen.row(0).parse().expect("a pid");
        drop(terminal);
        // sleep was the shell's child, not ours: once killed it may stay
        // a zombie until whoever adopted it reaps it.
        let deadline = Instant::now() + SCREEN_TIMEOUT;
        let running = || {
            std::fs::read_to_string(format!("/proc/{sleep}/stat"))
                .is_ok_and(|stat| !stat.contains(") Z "))
        };
        while running() {
            assert!(Instant::now() < deadline, "sleep {sleep} still runs");
            thread::sleep(POLL);
        }
    }

    #[test]
    fn a_zero_size_is_refused() {
        let error = Terminal::spawn(Command::new("true"), 0, 80)
            .err()
            .expect("refused");
        assert_eq!(error.kind(), io::ErrorKind::InvalidInput);
    }
}
