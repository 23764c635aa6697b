//! Standard input and output, which the client shares with the shell: every
//! change it makes to them is held by a guard that undoes it on drop,
//! whatever the exit path.
//!
//! - [`NonBlocking`] sets `O_NONBLOCK` on standard input for the poll loop.
//! - [`Terminal`] turns echo off while a password is typed.
//! - [`Output`] writes to standard output, waiting for room when the shared
//!   `O_NONBLOCK` makes it non-blocking too.

use std::fs::File;
use std::io::{self, ErrorKind, IsTerminal, Write};
use std::mem;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use libc::c_int;

/// Duplicates a descriptor into a `File`, which closes only the duplicate.
pub(super) fn duplicate(fd: BorrowedFd<'_>) -> io::Result<File> {
    fd.try_clone_to_owned().map(File::from)
}

/// `O_NONBLOCK` set on fd 0, undone on drop. The flag belongs to the open
/// file description, which is shared with the shell (and with stdout when
/// both are the terminal), so it must not outlive the client.
pub(super) struct NonBlocking {
    original: c_int,
}

impl NonBlocking {
    /// Sets `O_NONBLOCK` on fd 0, remembering the flags it had.
    pub(super) fn set() -> io::Result<Self> {
        // SAFETY: F_GETFL only reads the descriptor's flags.
        let original = check(unsafe { libc::fcntl(libc::STDIN_FILENO, libc::F_GETFL) })?;
        // SAFETY: F_SETFL with an int argument, as fcntl(2) requires.
        check(unsafe {
            libc::fcntl(
                libc::STDIN_FILENO,
                libc::F_SETFL,
                original | libc::O_NONBLOCK,
            )
        })?;
        Ok(Self { original })
    }
}

impl Drop for NonBlocking {
    fn drop(&mut self) {
        // SAFETY: F_SETFL with an int argument, as fcntl(2) requires.
        if unsafe { libc::fcntl(libc::STDIN_FILENO, libc::F_SETFL, self.original) } == -1 {
            log::warn!(
                "cannot restore standard input's flags: {}",
                io::Error::last_os_error()
            );
        }
    }
}

/// The terminal settings of standard input, saved so that hiding a
/// password while it is typed is always undone, whatever the exit path.
pub(super) struct Terminal {
    original: libc::termios,
    hiding: bool,
}

impl Terminal {
    /// Reads the settings, or `None` when standard input is not a terminal
    /// (then nothing is echoed and there is nothing to hide).
    pub(super) fn of_stdin() -> Option<Self> {
        if !io::stdin().is_terminal() {
            return None;
        }
        // SAFETY: termios is plain data, for which all zeroes is valid.
        let mut original: libc::termios = unsafe { mem::zeroed() };
        // SAFETY: the pointer is to a live termios.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut original) } != 0 {
            return None;
        }
        Some(Self {
            original,
            hiding: false,
        })
    }

    /// Turns echo off (keeping line editing, and echoing the newline so the
    /// next output starts on a fresh line) or back to how it was.
    pub(super) fn hide_input(&mut self, hide: bool) -> io::Result<()> {
        if hide == self.hiding {
            return Ok(());
        }
        let mut settings = self.original;
        if hide {
            settings.c_lflag &= !libc::ECHO;
            settings.c_lflag |= libc::ECHONL;
        }
        set_terminal(&settings)?;
        self.hiding = hide;
        Ok(())
    }
}

impl Drop for Terminal {
    fn drop(&mut self) {
        if self.hiding {
            if let Err(error) = set_terminal(&self.original) {
                log::warn!("cannot restore terminal settings: {error}");
            }
        }
    }
}

/// Applies terminal settings to standard input now.
fn set_terminal(settings: &libc::termios) -> io::Result<()> {
    // SAFETY: the pointer is to a live termios.
    check(unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, settings) }).map(drop)
}

/// Standard output, written through a duplicate of fd 1 so that nothing is
/// buffered behind the client's back and dropping it never closes fd 1.
pub(super) struct Output {
    file: File,
}

impl Output {
    /// Duplicates standard output.
    pub(super) fn open() -> io::Result<Self> {
        duplicate(io::stdout().as_fd()).map(|file| Self { file })
    }

    /// Writes all of `bytes`, waiting for room when the descriptor is
    /// non-blocking: stdout shares stdin's `O_NONBLOCK` when both are the
    /// terminal.
    pub(super) fn write_all(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            match self.file.write(bytes) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => bytes = &bytes[n..],
                Err(error) if error.kind() == ErrorKind::WouldBlock => {
                    wait_writable(self.file.as_fd())?;
                }
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }
}

/// Blocks until `fd` can take more output.
fn wait_writable(fd: BorrowedFd<'_>) -> io::Result<()> {
    let mut pollfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLOUT,
        revents: 0,
    };
    loop {
        // SAFETY: one live pollfd, as the count says.
        match check(unsafe { libc::poll(&mut pollfd, 1, -1) }) {
            Err(error) if error.kind() == ErrorKind::Interrupted => {}
            result => return result.map(drop),
        }
    }
}

/// Turns a libc `-1` return into the OS error.
fn check(result: c_int) -> io::Result<c_int> {
    if result == -1 {
        Err(io::Error::last_os_error())
    } else {
        Ok(result)
    }
}
