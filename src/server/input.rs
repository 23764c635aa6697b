//! Input: reading connections within their budget and their rate, and
//! feeding every complete line to the domain.
//!
//! Reads go into one scratch buffer shared by every connection; a
//! connection keeps only an unfinished line (see [`crate::net::lines`]). A
//! connection is read at most [`READ_BUDGET`] bytes per iteration; one that
//! may have more is remembered, because edge-triggered readiness will not
//! announce it again. A connection from an untrusted address is also held
//! to the command rate: once it is ahead, the rest of what it sent waits in
//! its stash and the socket is not read until its next line is due, so TCP
//! back-pressure slows the client; nothing is dropped.

use std::io;
use std::time::Instant;

use log::debug;

use super::cluster::Flow;
use super::staging::STAGE_LIMIT;
use super::{LoopTimer, Server};
use crate::chat::SessionId;
use crate::protocol;

/// Size of the shared read buffer.
pub const SCRATCH_SIZE: usize = 64 * 1024;
/// Bytes read from one connection per loop iteration, so that a client
/// pipelining megabytes cannot starve the others.
pub const READ_BUDGET: usize = SCRATCH_SIZE;
/// Bytes read at a time from a connection held to the command rate: far
/// more than its rate lets it send in a second, and all it may hold
/// unhandled in its stash while it waits.
const RATED_READ: usize = 8 * 1024;

/// Effects the domain may hold before the server takes them, so that the
/// lines of one read are staged together without the outbox growing far
/// (a broadcast to every user online is one effect per user).
const EFFECTS_BATCH: usize = 1024;

/// The buffers reading shares between connections.
#[derive(Debug)]
pub struct Input {
    /// What one read brought (a web connection's request too).
    pub(super) scratch: Vec<u8>,
    /// A line that spanned reads, joined.
    join: Vec<u8>,
}

impl Default for Input {
    fn default() -> Input {
        Input {
            scratch: vec![0; SCRATCH_SIZE],
            join: Vec::new(),
        }
    }
}

impl Server {
    /// A readiness event for connection `key`.
    pub(super) fn on_event(&mut self, key: usize, readable: bool, writable: bool) {
        if !self.conns.is_live(key) {
            return;
        }
        if writable {
            self.conns.mark_dirty(key);
        }
        // A connection waiting to be read again is read then, within its
        // budget.
        if readable && !self.conns.is_unread(key) {
            self.read(key, Instant::now());
        }
    }

    /// Serves connections that used their read budget last iteration, and
    /// queues more offline mail for those whose socket took all of it.
    pub(super) fn read_unread(&mut self, now: Instant) {
        for key in self.conns.take_unread() {
            self.read(key, now);
        }
        for key in self.conns.take_backlogged() {
            self.conns.mark_dirty(key);
        }
    }

    /// Handles what `key` had stashed, then reads up to [`READ_BUDGET`]
    /// bytes from it and handles every complete line, as far as its rate
    /// allows.
    pub(super) fn read(&mut self, key: usize, now: Instant) {
        // Nothing is read while its password is being verified, or while
        // its last input waits for the cluster's log.
        if self.verifier.is_waiting(key) || self.awaits_log(key) {
            return;
        }
        // A web connection's request is not lines.
        if self.conns.get(key).is_some_and(|conn| conn.http.is_some()) {
            return self.read_http(key, now);
        }
        self.handle_stash(key, now);
        let mut budget = READ_BUDGET;
        loop {
            let Some(conn) = self.conns.live(key) else {
                return;
            };
            if conn.closing || conn.paused() {
                return;
            }
            if budget == 0 {
                self.conns.mark_unread(key);
                return;
            }
            let chunk = if conn.limited.is_some() {
                RATED_READ
            } else {
                SCRATCH_SIZE
            };
            let want = budget.min(chunk);
            match conn.link.read(&mut self.input.scratch[..want]) {
                Ok(0) => {
                    // A half-close: the peer may still read, so what is
                    // pending goes out before the connection is removed.
                    debug!("#{key}: peer finished sending");
                    self.close_after_flush(key);
                    return;
                }
                Ok(n) => {
                    budget -= n;
                    let scratch = std::mem::take(&mut self.input.scratch);
                    self.consume(key, &scratch[..n], now);
                    self.input.scratch = scratch;
                    // What it sent next stays in the socket until the
                    // answer it waits for comes (its resumption reads it).
                    if self.verifier.is_waiting(key) || self.awaits_log(key) {
                        return;
                    }
                }
                Err(e) => return self.read_stopped(key, e),
            }
        }
    }

    /// A read of `key` that brought nothing: `WouldBlock` leaves it for
    /// its next readiness, anything else breaks it. A layer over the socket
    /// may have something to write after a read — a TLS session its
    /// handshake messages or tickets, or output it could not take until
    /// the handshake was done; a WebSocket a pong or a close — which is
    /// written now.
    pub(super) fn read_stopped(&mut self, key: usize, e: io::Error) {
        if e.kind() != io::ErrorKind::WouldBlock {
            debug!("#{key}: read: {e}");
            return self.conns.doom(key);
        }
        let layered = self
            .conns
            .get(key)
            .is_some_and(|conn| conn.link.transport().is_layered() && conn.link.has_output());
        if layered {
            self.conns.mark_dirty(key);
        }
    }

    /// Handles the input `key` read earlier but had to leave for later.
    fn handle_stash(&mut self, key: usize, now: Instant) {
        let Some(limited) = self
            .conns
            .live(key)
            .and_then(|conn| conn.limited.as_deref_mut())
        else {
            return;
        };
        if limited.paused || limited.stash.is_empty() {
            return;
        }
        let stash = std::mem::take(&mut limited.stash);
        self.consume(key, &stash, now);
    }

    /// Feeds the lines of `data` (just read, or stashed) to the domain,
    /// one line per unit of the connection's rate; once it is ahead of its
    /// rate, the rest goes to its stash and it is paused until its next
    /// line is due. The effects of those lines are taken together, once
    /// the outbox holds [`EFFECTS_BATCH`] of them or [`STAGE_LIMIT`] bytes
    /// of text, and at the end: the domain ignores lines of a session it
    /// has ended, so a `logout` in the middle of `data` still ends it there.
    fn consume(&mut self, key: usize, data: &[u8], now: Instant) {
        self.feed(key, data, now);
        self.apply_effects();
    }

    /// The loop of [`Server::consume`], without taking the effects.
    fn feed(&mut self, key: usize, data: &[u8], now: Instant) {
        let sid = SessionId(key);
        let rate = self.config.rate;
        let mut pos = 0;
        loop {
            let Some(conn) = self.conns.live(key) else {
                return;
            };
            if conn.closing {
                return;
            }
            let serial = conn.serial;
            if let Some(limited) = conn.limited.as_deref_mut() {
                if let Err(due) = limited.pace.ready(rate, now) {
                    if pos < data.len() {
                        limited.stash.extend_from_slice(&data[pos..]);
                        limited.paused = true;
                        self.timers
                            .deadlines
                            .arm(due, LoopTimer::Resume { key, serial });
                    }
                    return;
                }
            }
            let Some(item) =
                conn.lines
                    .next_line(data, &mut pos, &mut self.input.join, self.config.max_line)
            else {
                return;
            };
            if let Some(limited) = conn.limited.as_deref_mut() {
                limited.pace.count(rate, now);
            }
            let line = match item.and_then(protocol::decode_line) {
                Ok(None) => continue,
                Ok(Some(line)) => Ok(line),
                Err(error) => Err(error),
            };
            if self.cluster.is_some() {
                let line = line.map(str::to_owned);
                match self.cluster_line(key, line) {
                    Flow::Go => continue,
                    Flow::Wait(index) => return self.await_log(key, index, &data[pos..]),
                    Flow::Verify(verification) => {
                        return self.submit_verification(key, verification, &data[pos..])
                    }
                }
            }
            match line {
                Ok(line) => self.chat.line(sid, line, now),
                Err(error) => self.chat.line_error(sid, error, now),
            }
            if self.chat.outbox().has_verifications() {
                return self.start_verifying(key, &data[pos..]);
            }
            let outbox = self.chat.outbox();
            if outbox.effects().len() >= EFFECTS_BATCH || outbox.text_len() > STAGE_LIMIT {
                self.apply_effects();
            }
        }
    }

    /// Handles what connection `key` sent after a password whose
    /// verification is answered, then reads it again (its readiness edges
    /// passed while it waited), unless another verification began.
    pub(super) fn resume_after_verifying(&mut self, key: usize, rest: &[u8], now: Instant) {
        self.consume(key, rest, now);
        self.read(key, now);
    }

    /// Lets a connection that was ahead of its rate go on.
    pub(super) fn resume(&mut self, key: usize, serial: u64, now: Instant) {
        let Some(conn) = self.conns.live(key).filter(|c| c.serial == serial) else {
            return;
        };
        if let Some(limited) = conn.limited.as_deref_mut() {
            limited.paused = false;
        }
        self.read(key, now);
    }
}
