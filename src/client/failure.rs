//! How the client fails: one line for the user saying what could not be
//! done, and which socket errors mean the server has gone away.

use std::fmt;
use std::io::{self, ErrorKind};

/// Why the client gave up; shown to the user as one line.
pub(super) enum Failure {
    /// The host name could not be turned into addresses.
    Resolve { host: String, error: io::Error },
    /// No address of the host accepted the connection.
    Connect { target: String, error: io::Error },
    /// A local or socket operation failed; `what` says which.
    Io {
        what: &'static str,
        error: io::Error,
    },
    /// The server could not be trusted, or TLS could not be set up: the
    /// whole line to show.
    Refused(String),
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Resolve { host, error } => write!(f, "cannot resolve {host}: {error}"),
            Self::Connect { target, error } => write!(f, "cannot connect to {target}: {error}"),
            Self::Io { what, error } => write!(f, "{what}: {error}"),
            Self::Refused(line) => write!(f, "{line}"),
        }
    }
}

/// Attaches what was being done to an I/O error.
pub(super) trait Context<T> {
    /// Turns an I/O error into a [`Failure`] that says `what` failed.
    fn context(self, what: &'static str) -> Result<T, Failure>;
}

impl<T> Context<T> for io::Result<T> {
    fn context(self, what: &'static str) -> Result<T, Failure> {
        self.map_err(|error| Failure::Io { what, error })
    }
}

/// Whether a socket error means the server has gone away.
pub(super) fn is_disconnect(error: &io::Error) -> bool {
    matches!(
        error.kind(),
        ErrorKind::BrokenPipe | ErrorKind::ConnectionReset | ErrorKind::ConnectionAborted
    )
}
