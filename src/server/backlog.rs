//! A connection's offline mail on its way out, at the pace its client reads.
//!
//! At login the domain does not render the mailbox; the server queues a
//! few of its lines at a time into the connection's output buffer (never
//! more than [`BACKLOG_CHUNK`] ahead of the socket) and remembers where
//! each line ends in the output stream. Once the socket has taken a line
//! whole, the domain is told, and only then does the message leave the
//! mailbox. Everything else sent to the session meanwhile waits in
//! [`Backlog::deferred`] and follows the backlog, so each sender's order
//! holds. Backlog lines are not pending output: they never count against
//! `--max-pending`, only what waits in `deferred` does.

use std::collections::VecDeque;

use crate::chat::BacklogLine;
use crate::net::outbuf::OutBuf;

/// Backlog bytes queued ahead of the socket at most (one line more).
pub const BACKLOG_CHUNK: usize = 64 * 1024;
/// Below this many unwritten bytes, more of the backlog is queued.
pub const BACKLOG_LOW: usize = 16 * 1024;

/// The backlog state of one connection.
#[derive(Debug, Default)]
pub struct Backlog {
    /// Output to the session while its backlog is written.
    pub deferred: OutBuf,
    /// The output stream position just after each queued backlog line not
    /// yet reported written, oldest first.
    ends: VecDeque<u64>,
    /// Where the oldest of them starts.
    front_start: u64,
}

impl Backlog {
    /// Backlog lines queued and not yet reported written: the domain's
    /// backlog from this index on is still to be queued.
    pub fn queued(&self) -> usize {
        self.ends.len()
    }

    /// Whether `out` wants more backlog lines.
    pub fn wants_more(out: &OutBuf) -> bool {
        out.pending() < BACKLOG_LOW
    }

    /// Queues one backlog line (a newline is added); returns whether `out`
    /// is full enough for now.
    pub fn queue(&mut self, out: &mut OutBuf, line: BacklogLine<'_>) -> bool {
        if self.ends.is_empty() {
            self.front_start = out.end_position();
        }
        out.push_with(|buf| {
            line.append_to(buf);
            buf.push(b'\n');
        });
        self.ends.push_back(out.end_position());
        out.pending() >= BACKLOG_CHUNK
    }

    /// How many more queued lines the socket has taken whole; they are
    /// forgotten here, and the caller tells the domain.
    pub fn written(&mut self, out: &OutBuf) -> usize {
        let written = out.written_position();
        let mut n = 0;
        while let Some(&end) = self.ends.front().filter(|&&end| end <= written) {
            self.ends.pop_front();
            self.front_start = end;
            n += 1;
        }
        n
    }

    /// Gives up the rest of the backlog (the session ended): the queued
    /// lines not started yet are dropped from `out` (they stay in the
    /// mailbox), a line halfway out is finished so that the client sees
    /// whole lines, and the deferred output follows.
    pub fn abandon(mut self, out: &mut OutBuf) {
        let written = out.written_position();
        let mut start = self.front_start;
        for &end in &self.ends {
            if end > written {
                out.truncate_at(if start < written { end } else { start });
                break;
            }
            start = end;
        }
        out.append(&mut self.deferred);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_count_as_written_once_the_socket_took_them_whole() {
        let mut out = OutBuf::default();
        out.push(b"Welcome\n");
        let mut backlog = Backlog::default();
        backlog.queue(&mut out, BacklogLine::Plain("a: one"));
        backlog.queue(&mut out, BacklogLine::Plain("a: two"));
        assert_eq!(backlog.queued(), 2);
        out.consume(8 + 3);
        assert_eq!(backlog.written(&out), 0);
        out.consume(4);
        assert_eq!(backlog.written(&out), 1);
        assert_eq!(backlog.queued(), 1);
        out.consume(7);
        assert_eq!(backlog.written(&out), 1);
        assert_eq!(out.pending(), 0);
    }

    #[test]
    fn abandoning_finishes_the_line_in_progress_and_drops_the_rest() {
        let mut out = OutBuf::default();
        let mut backlog = Backlog::default();
        for line in ["a: one", "a: two", "a: three"] {
            backlog.queue(&mut out, BacklogLine::Plain(line));
        }
        backlog.deferred.push(b"Goodbye\n");
        out.consume(7 + 2);
        assert_eq!(backlog.written(&out), 1);
        backlog.abandon(&mut out);
        assert_eq!(out.unwritten(), b" two\nGoodbye\n");
    }

    #[test]
    fn abandoning_before_the_backlog_started_keeps_what_came_before() {
        let mut out = OutBuf::default();
        out.push(b"Welcome\n");
        let mut backlog = Backlog::default();
        backlog.queue(&mut out, BacklogLine::Plain("a: one"));
        out.consume(3);
        backlog.deferred.push(b"Goodbye\n");
        backlog.abandon(&mut out);
        assert_eq!(out.unwritten(), b"come\nGoodbye\n");
    }
}
