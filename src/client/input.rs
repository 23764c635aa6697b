//! The typed side of the client: standard input read without blocking the
//! loop, typed lines sorted between the server and the client's own
//! commands, and the goodbye once input ends.

use std::fs::File;
use std::io::{self, ErrorKind, Read};
use std::mem;
use std::os::fd::{AsFd, AsRawFd};
use std::time::Instant;

use mio::unix::SourceFd;
use mio::{Interest, Registry};

use super::failure::{Context, Failure};
use super::terminal::{self, NonBlocking};
use super::typed::LocalLine;
use super::{Client, End, LEAVE_TIMEOUT, MAX_PENDING, MAX_WAITING_NOTES, READ_CHUNK, STDIN};
use crate::protocol::{self, Command};

impl Client {
    /// Reads what has been typed, as long as there is room to queue it
    /// and the client's own lines it caused have been shown.
    /// In the terminal UI, what is read is keys for the line editor; the
    /// lines entered go the same way as typed lines.
    ///
    /// Returns the end of the session if a key ended it.
    pub(super) fn read_input(&mut self) -> Result<Option<End>, Failure> {
        let mut buf = [0; READ_CHUNK];
        while self.input.ready
            && (self.disconnected
                || (self.server.pending() < MAX_PENDING
                    && self.typed_ahead.len() < MAX_PENDING
                    && self.notes.len() < MAX_WAITING_NOTES))
        {
            match self.input.file.read(&mut buf) {
                Ok(0) if self.disconnected => return Ok(Some(End::Finished)),
                Ok(0) => self.end_of_input()?,
                Ok(n) if self.ui.is_some() => {
                    if let Some(end) = self.keys(&buf[..n])? {
                        return Ok(Some(end));
                    }
                }
                Ok(n) => {
                    self.input.mid_line = buf[n - 1] != b'\n';
                    self.typed_ahead.extend_from_slice(&buf[..n]);
                    self.route_typed();
                }
                Err(error) if error.kind() == ErrorKind::WouldBlock => self.input.ready = false,
                Err(error) if error.kind() == ErrorKind::Interrupted => {}
                Err(error) => return Err(error).context("cannot read standard input"),
            }
        }
        Ok(None)
    }

    /// Passes typed bytes on. Logged in, all of them; before that, one
    /// line per prompt the server is waiting on, the way a person answers:
    /// lines typed ahead of the login's outcome are held until it is known,
    /// so that a script's first commands after the password are sorted as
    /// commands (and follow `privateport`) rather than sent blind.
    pub(super) fn route_typed(&mut self) {
        if self.view.logged_in {
            let bytes = mem::take(&mut self.typed_ahead);
            return self.typed(&bytes);
        }
        while self.view.awaiting_answer {
            let Some(end) = self.typed_ahead.iter().position(|&b| b == b'\n') else {
                return;
            };
            let line: Vec<u8> = self.typed_ahead.drain(..=end).collect();
            if !matches!(protocol::decode_line(&line[..end]), Ok(None)) {
                self.view.answered();
            }
            self.typed(&line);
        }
    }

    /// Queues typed bytes for the server, and carries out the lines the
    /// client handles itself.
    pub(super) fn typed(&mut self, bytes: &[u8]) {
        let mut local = Vec::new();
        let mut to_server = Vec::new();
        self.router
            .feed(bytes, self.view.logged_in, &mut to_server, &mut local);
        self.server.queue(&to_server);
        for line in local {
            self.local_command(line);
        }
    }

    /// Carries out `private` and `stopprivate`, and checks `startprivate`
    /// against the sessions there are before passing it to the server.
    fn local_command(&mut self, line: LocalLine) {
        let line = match line {
            Ok(line) => line,
            Err(error) => return self.notes.push(error.to_string()),
        };
        let registry = self.poll.registry();
        let private = &mut self.private;
        let notes = &mut self.notes;
        let reply = match protocol::parse(&line) {
            Ok(Command::Private { to, text }) => {
                let sent = private
                    .as_mut()
                    .is_some_and(|p| p.send(to, text, registry, notes));
                if sent {
                    if let Some(ui) = &mut self.ui {
                        ui.sent(Some(to), text, true);
                    }
                    None
                } else if self.starting.hold(to, &line) {
                    None
                } else {
                    Some(protocol::private_not_enabled(to))
                }
            }
            Ok(Command::StopPrivate { user }) => {
                let stopped = private
                    .as_mut()
                    .is_some_and(|p| p.stop(user, registry, notes));
                (!stopped).then(|| protocol::private_not_enabled(user))
            }
            Ok(Command::StartPrivate { user })
                if private.as_ref().is_some_and(|p| p.has_session(user)) =>
            {
                Some(format!(
                    "Error. Private messaging with {user} already enabled"
                ))
            }
            Ok(command) => {
                if let Command::StartPrivate { user } = command {
                    self.starting.asked(user, Instant::now());
                }
                self.server.queue(line.as_bytes());
                self.server.queue(b"\n");
                None
            }
            Err(error) => Some(error.to_string()),
        };
        self.notes.extend(reply);
    }

    /// Registers the private-messaging port once logged in, at a line
    /// boundary of what is typed.
    pub(super) fn register_private(&mut self) {
        if self.registered || !self.view.logged_in || !self.router.at_line_start() {
            return;
        }
        if let Some(private) = &self.private {
            let line = private.registration();
            self.server.queue(line.as_bytes());
            self.registered = true;
        }
    }

    /// Standard input ended: finish the last line; the goodbye follows
    /// once everything typed has gone on ([`Client::say_goodbye`]).
    fn end_of_input(&mut self) -> Result<(), Failure> {
        self.input.close(self.poll.registry())?;
        if mem::take(&mut self.input.mid_line) {
            self.typed_ahead.push(b'\n');
        }
        self.route_typed();
        Ok(())
    }

    /// Once standard input has ended and everything typed has gone on,
    /// says goodbye once (`logout` when logged in, a half-close otherwise)
    /// and gives the server [`LEAVE_TIMEOUT`] to close.
    pub(super) fn say_goodbye(&mut self) {
        if !self.is_leaving() || !self.typed_ahead.is_empty() || self.leave_by.is_some() {
            return;
        }
        if self.view.logged_in {
            self.server.queue(b"logout\n");
        } else {
            self.close_when_flushed = true;
        }
        self.leave_by = Some(Instant::now() + LEAVE_TIMEOUT);
    }
}

/// Standard input, read through a duplicate of fd 0: reading the raw
/// descriptor keeps `io::stdin()`'s buffer out of the way, and dropping the
/// duplicate never closes fd 0.
pub(super) struct Input {
    pub(super) file: File,
    /// Present while fd 0 is polled; dropping it restores the flags.
    nonblocking: Option<NonBlocking>,
    /// A read may return data (not known to be drained).
    pub(super) ready: bool,
    /// End of input was read.
    pub(super) ended: bool,
    /// The last byte read was not a newline.
    pub(super) mid_line: bool,
}

impl Input {
    /// Registers standard input with the poll and makes it non-blocking.
    /// Regular files and `/dev/null` cannot be polled (`EPERM`); they are
    /// read blocking instead, which never waits for long.
    pub(super) fn open(registry: &Registry) -> Result<Self, Failure> {
        let file = terminal::duplicate(io::stdin().as_fd()).context("cannot use standard input")?;
        let fd = file.as_raw_fd();
        let nonblocking = match registry.register(&mut SourceFd(&fd), STDIN, Interest::READABLE) {
            Ok(()) => Some(NonBlocking::set().context("cannot configure standard input")?),
            Err(error) if error.raw_os_error() == Some(libc::EPERM) => None,
            Err(error) => return Err(error).context("cannot watch standard input"),
        };
        Ok(Self {
            file,
            nonblocking,
            ready: true,
            ended: false,
            mid_line: false,
        })
    }

    /// Stops watching standard input after it ended, restoring its flags.
    pub(super) fn close(&mut self, registry: &Registry) -> Result<(), Failure> {
        if self.nonblocking.is_some() {
            registry
                .deregister(&mut SourceFd(&self.file.as_raw_fd()))
                .context("cannot stop watching standard input")?;
            self.nonblocking = None;
        }
        self.ready = false;
        self.ended = true;
        Ok(())
    }
}
