//! Output: writing what each connection has pending, its offline mail at
//! the pace it reads, closing it once it has taken its last output, and
//! keeping its `WRITABLE` interest in step with what is pending (set only
//! while output waits for the socket).

use std::io;
use std::time::Instant;

use log::{debug, warn};
use mio::Token;

use super::backlog::Backlog;
use super::staging::Materialize;
use super::{LoopTimer, Server, LINGER, RELEASE_INTERVAL};
use crate::chat::SessionId;

impl Server {
    /// Removes doomed connections and flushes dirty ones that are not held
    /// until neither is left: a removal announces the leaver to others
    /// (more output), and a failed write dooms a connection.
    pub(super) fn flush_unheld(&mut self, now: Instant) {
        loop {
            while let Some(key) = self.conns.next_doomed() {
                self.remove(key, now);
            }
            self.materialize(Materialize::WriteThrough);
            let dirty = self.conns.take_dirty();
            for &key in &dirty {
                self.flush(key);
            }
            self.conns.recycle(dirty);
            if !self.conns.has_doomed() && !self.conns.has_dirty() {
                return;
            }
        }
    }

    /// Writes a connection's output, closes it if it was closing and is
    /// done, and keeps its `WRITABLE` interest in step with its output.
    fn flush(&mut self, key: usize) {
        // A held connection is marked dirty again when it is released.
        if self.conns.is_held(key) {
            return;
        }
        let Some(conn) = self.conns.live(key) else {
            return;
        };
        let written = if conn.backlog.is_some() {
            self.flush_backlog(key)
        } else {
            conn.flush()
        };
        if let Err(e) = written {
            debug!("#{key}: write: {e}");
            self.conns.doom(key);
            return;
        }
        let Some(conn) = self.conns.live(key) else {
            return;
        };
        if conn.link.holds_idle_buffer() && !self.timers.release_armed {
            self.timers.release_armed = true;
            self.timers
                .deadlines
                .arm(Instant::now() + RELEASE_INTERVAL, LoopTimer::ReleaseBuffers);
        }
        if conn.closing && !conn.has_output() {
            let _ = conn.link.shutdown_write();
            self.conns.doom(key);
            return;
        }
        if let Err(e) = conn.link.update_interest(self.poll.registry(), Token(key)) {
            warn!("#{key}: reregister: {e}");
            self.conns.doom(key);
        }
    }

    /// Writes a connection's offline mail: queues more of it if little is
    /// left ahead of the socket, writes, tells the domain which lines the
    /// socket took whole (they leave the mailbox), and once all are out
    /// lets what waited behind them follow. A closing connection gives the
    /// rest up: it stays in the mailbox for the next login.
    fn flush_backlog(&mut self, key: usize) -> io::Result<()> {
        let (sid, reported) = self.backlog_session(key).unwrap_or((SessionId(key), 0));
        let Some(conn) = self.conns.live(key) else {
            return Ok(());
        };
        if conn.closing {
            conn.end_backlog();
            return conn.flush();
        }
        if let Some((out, backlog)) = conn.backlog_mut() {
            if Backlog::wants_more(out) {
                for line in self.chat.backlog(sid, reported + backlog.queued()) {
                    if backlog.queue(out, line) {
                        break;
                    }
                }
            }
        }
        conn.flush()?;
        let Some((out, backlog)) = conn.backlog_mut() else {
            return Ok(());
        };
        let written = backlog.written(out);
        let all_queued = self
            .chat
            .backlog(sid, reported + backlog.queued())
            .next()
            .is_none();
        if backlog.queued() == 0 && all_queued {
            conn.end_backlog();
            conn.flush()?;
        } else if !conn.has_output() {
            self.conns.mark_backlogged(key);
        }
        if written > 0 && self.cluster_mode() {
            self.cluster_written(key, written);
        } else if written > 0 {
            self.chat.backlog_written(sid, written);
            self.apply_effects();
        }
        Ok(())
    }

    /// Flushes `key`'s output, then closes it; a connection that does not
    /// take its last output within [`LINGER`] is dropped.
    pub(super) fn close_after_flush(&mut self, key: usize) {
        let Some(conn) = self.conns.live(key) else {
            return;
        };
        if !conn.closing {
            conn.closing = true;
            let serial = conn.serial;
            self.timers
                .deadlines
                .arm(Instant::now() + LINGER, LoopTimer::Linger { key, serial });
        }
        self.conns.mark_dirty(key);
    }
}
