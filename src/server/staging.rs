//! Effects to output: how what the domain emitted reaches the connections.
//!
//! The domain renders every line once into its shared outbox; a `Send`
//! effect is a range of it. Those ranges are *staged* per recipient rather
//! than copied: a recipient's next range usually follows its last one in
//! the outbox (a burst of broadcasts does that), and then the two merge
//! into one, so a fan-out costs a few instructions per delivery in a small
//! array. At the end of an iteration each staged range is written straight
//! from the outbox to its connection if that has nothing pending
//! (*write-through*: no copy for a reader that keeps up), and only what
//! the socket did not take is copied into the connection's buffer. If the
//! outbox grows past [`STAGE_LIMIT`] in the middle of an iteration, the
//! ranges are copied instead, so that the outbox stays small.
//!
//! Effects also hold connections for the commit (a reply that promises a
//! durable change), close them, and start their offline mail.

use std::ops::Range;

use log::debug;

use super::Server;
use crate::chat::{Effect, Outbox};

/// Outbox text held for coalescing before it is copied to the connections.
pub const STAGE_LIMIT: usize = 256 * 1024;

/// How [`Server::materialize`] hands staged output to a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Materialize {
    /// Copy it into the connection's output buffer (in the middle of an
    /// iteration, when the outbox has grown past [`STAGE_LIMIT`]).
    Copy,
    /// At the end of an iteration: write it straight from the outbox to a
    /// connection with nothing pending, copying only what the socket did
    /// not take. This is the connection's one write of the iteration.
    WriteThrough,
}

/// The outbox range staged for each connection.
#[derive(Debug, Default)]
pub struct Staging {
    /// Per key, the range staged for it (empty if none).
    ranges: Vec<Range<usize>>,
    /// Keys with a staged range.
    keys: Vec<usize>,
}

impl Staging {
    /// Stages `text` for `key`; returns a range staged earlier that `text`
    /// does not continue, which the caller must deliver first.
    #[inline]
    fn stage(&mut self, key: usize, text: Range<usize>) -> Option<Range<usize>> {
        if key >= self.ranges.len() {
            self.ranges.resize(key + 1, 0..0);
        }
        let staged = &mut self.ranges[key];
        if staged.start == staged.end {
            *staged = text;
            self.keys.push(key);
            None
        } else if staged.end == text.start {
            staged.end = text.end;
            None
        } else {
            Some(std::mem::replace(staged, text))
        }
    }

    /// Takes what is staged for `key` (empty if nothing).
    #[inline]
    pub fn take(&mut self, key: usize) -> Range<usize> {
        self.ranges
            .get_mut(key)
            .map_or(0..0, |staged| std::mem::replace(staged, 0..0))
    }
}

impl Server {
    /// Takes the domain's effects: records go to the journal's next
    /// commit, held sessions are marked first (so that nothing of theirs is
    /// written early), closes are marked at once, sends are staged, a
    /// backlog starts.
    pub(super) fn apply_effects(&mut self) {
        let mut outbox = std::mem::take(self.chat.outbox());
        if let Some(durability) = &mut self.durability {
            if !outbox.records().is_empty() {
                durability.journal().stage(outbox.records());
            }
        }
        for sid in outbox.held() {
            self.conns.hold(sid.0);
        }
        for effect in outbox.effects() {
            match effect {
                Effect::Send { to, text } => {
                    if let Some(earlier) = self.staging.stage(to.0, text.clone()) {
                        self.deliver(to.0, outbox.text(earlier));
                    }
                }
                Effect::Close(sid) => self.close_after_flush(sid.0),
                Effect::Backlog(sid) => self.start_backlog(sid.0, &outbox),
            }
        }
        outbox.clear_effects();
        let over = outbox.text_len() > STAGE_LIMIT;
        *self.chat.outbox() = outbox;
        if over {
            self.materialize(Materialize::Copy);
        }
    }

    /// From now on `key`'s output waits behind its offline mail: what was
    /// staged for it before (the welcome) goes first.
    fn start_backlog(&mut self, key: usize, outbox: &Outbox) {
        let before = self.staging.take(key);
        self.deliver(key, outbox.text(before));
        if let Some(conn) = self.conns.live(key) {
            conn.backlog = Some(Box::default());
        }
        self.conns.mark_dirty(key);
    }

    /// Hands every staged range to its connection (see [`Materialize`]),
    /// and forgets the outbox text.
    pub(super) fn materialize(&mut self, how: Materialize) {
        let mut outbox = std::mem::take(self.chat.outbox());
        let keys = std::mem::take(&mut self.staging.keys);
        for &key in &keys {
            let range = self.staging.take(key);
            let bytes = outbox.text(range);
            let rest = match how {
                Materialize::Copy => bytes,
                Materialize::WriteThrough => self.write_through(key, bytes),
            };
            if !rest.is_empty() {
                self.deliver(key, rest);
            }
        }
        self.staging.keys = keys;
        self.staging.keys.clear();
        outbox.clear();
        *self.chat.outbox() = outbox;
    }

    /// Writes `bytes` from the shared outbox straight to a connection that
    /// has nothing pending, is not held for a commit and is not behind its
    /// offline mail, saving the copy into its buffer; returns what the
    /// socket did not take (all of it for a connection that cannot be
    /// written now, none for one that is gone).
    fn write_through<'b>(&mut self, key: usize, bytes: &'b [u8]) -> &'b [u8] {
        let held = self.conns.is_held(key);
        let Some(conn) = self.conns.live(key) else {
            return &[];
        };
        if held || conn.has_output() || conn.backlog.is_some() || bytes.is_empty() {
            return bytes;
        }
        match conn.write_direct(bytes) {
            Ok(n) => &bytes[n..],
            Err(e) => {
                debug!("#{key}: write: {e}");
                self.conns.doom(key);
                &[]
            }
        }
    }

    /// Queues bytes on a connection, cutting it off if that would put it
    /// more than `max_pending` bytes behind.
    pub(super) fn deliver(&mut self, key: usize, bytes: &[u8]) {
        let max_pending = self.config.max_pending;
        let held = self.conns.is_held(key);
        let Some(conn) = self.conns.live(key) else {
            return;
        };
        if bytes.is_empty() {
            return;
        }
        if conn.pending() + bytes.len() > max_pending {
            // Make room by writing now (unless the output waits for the
            // commit); a reader this far behind that still cannot take it
            // is cut off.
            let failed = !held && conn.flush().is_err();
            if failed || conn.pending() + bytes.len() > max_pending {
                debug!("#{key}: more than {max_pending} bytes pending, cutting off");
                conn.discard_output();
                self.conns.doom(key);
                return;
            }
        }
        conn.queue(bytes);
        self.conns.mark_dirty(key);
    }

    /// Forgets what is staged for a connection that is gone, so that none
    /// of it reaches the next one given its key.
    pub(super) fn forget_staged(&mut self, key: usize) {
        self.staging.take(key);
    }
}
