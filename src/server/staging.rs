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
//! Over TLS the same range goes to the connection's session in one write,
//! which encrypts it into records of at most 16 KiB (the TLS maximum), so
//! that an iteration costs a connection one pass of the cipher over its
//! lines and one system call however many lines it got; a session keeps
//! what the socket did not take, and the connection is then flushed like
//! one with output queued. Copied output goes to the session the same way,
//! all of it at once, when the connection is flushed.
//!
//! Presence lines ([`Effect::Notice`]) may instead be held for
//! `--presence-delay` ([`super::notices`]), so that a storm of logins
//! reaches each user in one write per delay; anything else sent to a user
//! lets that user's held notices go first.
//!
//! Effects also hold connections for the commit (a reply that promises a
//! durable change), close them, and start their offline mail.

use std::ops::Range;
use std::time::{Duration, Instant};

use log::debug;

use super::notices::Notices;
use super::Server;
use crate::chat::{Effect, Outbox};
use crate::net::link::Transport;

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
#[derive(Debug)]
pub struct Staging {
    /// Per key, the range staged for it (empty if none).
    ranges: Vec<Range<usize>>,
    /// Keys with a staged range.
    keys: Vec<usize>,
    /// Presence lines held for `--presence-delay`.
    pub notices: Notices,
}

impl Staging {
    /// Nothing staged; presence lines are held for `presence_delay`.
    pub fn new(presence_delay: Duration) -> Staging {
        Staging {
            ranges: Vec::new(),
            keys: Vec::new(),
            notices: Notices::new(presence_delay),
        }
    }

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

    /// Whether something is staged for `key`.
    #[inline]
    fn has_staged(&self, key: usize) -> bool {
        self.ranges.get(key).is_some_and(|r| r.start != r.end)
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
        let mut now = None;
        for effect in outbox.effects() {
            match effect {
                Effect::Notice { to, text } if self.may_hold_notice(to.0) => {
                    let now = *now.get_or_insert_with(Instant::now);
                    let bytes = outbox.text(text.clone());
                    let notices = &mut self.staging.notices;
                    if let Some(earlier) = notices.hold(to.0, text.clone(), bytes, now) {
                        self.deliver_notices(to.0, earlier);
                    }
                }
                // A notice that is not held is sent like any other text.
                Effect::Send { to, text } | Effect::Notice { to, text } => {
                    self.let_notices_go(to.0);
                    if let Some(earlier) = self.staging.stage(to.0, text.clone()) {
                        self.deliver(to.0, outbox.text(earlier));
                    }
                }
                Effect::Close(sid) => {
                    self.let_notices_go(sid.0);
                    self.close_after_flush(sid.0);
                }
                Effect::Backlog(sid) => {
                    self.let_notices_go(sid.0);
                    self.start_backlog(sid.0, &outbox);
                }
            }
        }
        outbox.clear_effects();
        let over = outbox.text_len() > STAGE_LIMIT;
        *self.chat.outbox() = outbox;
        if over {
            self.materialize(Materialize::Copy);
        }
    }

    /// Whether a notice to `key` may be held: holding is on, and the
    /// connection writes nothing else this iteration (nothing staged) and
    /// is not behind its offline mail.
    #[inline]
    fn may_hold_notice(&mut self, key: usize) -> bool {
        if self.config.presence_delay.is_zero() || self.staging.has_staged(key) {
            return false;
        }
        self.conns
            .live(key)
            .is_some_and(|conn| conn.backlog.is_none())
    }

    /// Queues the notices held for `key`, if any, ahead of what follows.
    #[inline]
    fn let_notices_go(&mut self, key: usize) {
        if self.staging.notices.holds(key) {
            let held = self.staging.notices.take(key);
            self.deliver_notices(key, held);
        }
    }

    /// Queues the held notice text `range` on `key`.
    fn deliver_notices(&mut self, key: usize, range: Range<usize>) {
        let notices = std::mem::take(&mut self.staging.notices);
        self.deliver(key, notices.text(range));
        self.staging.notices = notices;
    }

    /// Lets every held notice go if they should at `now` (see
    /// [`Notices::should_go`]; `idle`: the loop's last wait brought no
    /// events): written straight to connections with nothing pending,
    /// copied to the others.
    pub(super) fn release_notices(&mut self, now: Instant, idle: bool) {
        if !self.staging.notices.should_go(now, idle) {
            return;
        }
        let started = Instant::now();
        let mut notices = std::mem::take(&mut self.staging.notices);
        let keys = notices.take_keys();
        for &key in &keys {
            let range = notices.take(key);
            let rest = self.write_through(key, notices.text(range));
            if !rest.is_empty() {
                self.deliver(key, rest);
            }
        }
        notices.clear(keys);
        notices.released_in(started.elapsed());
        self.staging.notices = notices;
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
        self.staging.notices.outbox_cleared();
        outbox.clear();
        *self.chat.outbox() = outbox;
    }

    /// Writes `bytes` from the shared outbox straight to a connection that
    /// has nothing pending, is not held for a commit and is not behind its
    /// offline mail, saving the copy into its buffer; returns what the
    /// socket did not take (all of it for a connection that cannot be
    /// written now, none for one that is gone). A TLS connection's range is
    /// handed to its session in one write: encrypted into as few records
    /// as the record size allows, written with one system call.
    fn write_through<'b>(&mut self, key: usize, bytes: &'b [u8]) -> &'b [u8] {
        let held = self.conns.is_held(key);
        let Some(conn) = self.conns.live(key) else {
            return &[];
        };
        if held || conn.has_output() || conn.backlog.is_some() || bytes.is_empty() {
            return bytes;
        }
        match conn.write_direct(bytes) {
            Ok(n) => {
                // A TLS session takes everything and keeps the records the
                // socket did not: the connection must want WRITABLE, which
                // its flush sees to (the rest of a plain write is queued,
                // which marks it). Nothing was queued before the write, so
                // the session's records are all there is to look at.
                if n == bytes.len() && conn.link.transport().layer_pending() {
                    self.conns.mark_dirty(key);
                }
                &bytes[n..]
            }
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
        self.staging.notices.take(key);
    }
}
