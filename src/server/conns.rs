//! Every connection, and where each stands in the loop's schedule.
//!
//! A connection is in the slab under its key (its `mio` token). In it are
//! the flags of the schedule ([`Schedule`], whose fields only this module
//! sees), and here a list per flag so that the loop visits only the
//! connections concerned:
//!
//! - *dirty*: it has output to write or a close to finish this iteration;
//! - *doomed*: it is to be removed at the end of the iteration, and nothing
//!   more is read from or written to it;
//! - *held*: its output waits for the journal commit, because it promises
//!   something not yet durable;
//! - *unread*: it used its read budget and may have more input, which no
//!   readiness event will announce again;
//! - *backlogged*: its socket took all the offline mail queued for it, so
//!   more is queued next iteration.
//!
//! This module is the only code that changes the flags, and it changes a
//! flag and its list together, so they never disagree.

use slab::Slab;

use super::conn::Conn;

/// Where a connection stands in the loop's schedule. It is kept in the
/// [`Conn`], where its flags share a word with the connection's own, but
/// only this module reads or changes them.
#[derive(Debug, Default)]
pub struct Schedule {
    dirty: bool,
    doomed: bool,
    held: bool,
    unread: bool,
}

/// The connections of a server.
#[derive(Debug, Default)]
pub struct Conns {
    slab: Slab<Conn>,
    dirty: Vec<usize>,
    /// The list `dirty` was, kept for its capacity.
    spare: Vec<usize>,
    doomed: Vec<usize>,
    held: Vec<usize>,
    unread: Vec<usize>,
    backlogged: Vec<usize>,
    next_serial: u64,
}

impl Conns {
    /// How many connections there are, doomed ones included.
    pub fn len(&self) -> usize {
        self.slab.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.slab.is_empty()
    }

    /// The key the next connection will get.
    pub fn vacant_key(&self) -> usize {
        self.slab.vacant_key()
    }

    /// Adds the connection `make` builds from its serial number; returns
    /// its key (the one [`Conns::vacant_key`] said).
    pub fn insert(&mut self, make: impl FnOnce(u64) -> Conn) -> usize {
        let conn = make(self.next_serial);
        self.next_serial += 1;
        self.slab.insert(conn)
    }

    /// The connection `key`, doomed or not.
    #[inline]
    pub fn get(&self, key: usize) -> Option<&Conn> {
        self.slab.get(key)
    }

    /// The connection `key` unless it is gone or doomed.
    #[inline]
    pub fn live(&mut self, key: usize) -> Option<&mut Conn> {
        self.slab.get_mut(key).filter(|e| !e.schedule.doomed)
    }

    /// Whether `key` is there and not doomed.
    #[inline]
    pub fn is_live(&self, key: usize) -> bool {
        self.slab.get(key).is_some_and(|e| !e.schedule.doomed)
    }

    /// Every connection, for a sweep.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = &mut Conn> {
        self.slab.iter_mut().map(|(_, e)| e)
    }

    /// The keys of the connections `pick` chooses.
    pub fn keys_where(&self, pick: impl Fn(&Conn) -> bool) -> Vec<usize> {
        self.slab
            .iter()
            .filter(|(_, conn)| pick(conn))
            .map(|(key, _)| key)
            .collect()
    }

    /// Takes `key` out for good.
    pub fn remove(&mut self, key: usize) -> Option<Conn> {
        self.slab.try_remove(key)
    }

    /// Drops every connection.
    pub fn clear(&mut self) {
        self.slab.clear();
    }

    /// Schedules `key` to be written (or closed) this iteration.
    #[inline]
    pub fn mark_dirty(&mut self, key: usize) {
        if let Some(e) = self.slab.get_mut(key) {
            list_once(&mut e.schedule.dirty, &mut self.dirty, key);
        }
    }

    /// The connections scheduled to be written, no longer marked: one
    /// marked again meanwhile is listed again. Give the list back with
    /// [`Conns::recycle`].
    pub fn take_dirty(&mut self) -> Vec<usize> {
        let dirty = std::mem::replace(&mut self.dirty, std::mem::take(&mut self.spare));
        self.unmark(&dirty, |e| &mut e.schedule.dirty);
        dirty
    }

    /// Keeps a list from [`Conns::take_dirty`] for its capacity.
    pub fn recycle(&mut self, mut list: Vec<usize>) {
        list.clear();
        if list.capacity() > self.spare.capacity() {
            self.spare = list;
        }
    }

    /// Whether a connection is scheduled to be written.
    pub fn has_dirty(&self) -> bool {
        !self.dirty.is_empty()
    }

    /// Dooms `key`: it is removed at the end of the iteration, and nothing
    /// more is read from or written to it.
    #[inline]
    pub fn doom(&mut self, key: usize) {
        if let Some(e) = self.slab.get_mut(key) {
            list_once(&mut e.schedule.doomed, &mut self.doomed, key);
        }
    }

    /// A doomed connection to remove, if any.
    pub fn next_doomed(&mut self) -> Option<usize> {
        self.doomed.pop()
    }

    /// Whether a connection waits to be removed.
    pub fn has_doomed(&self) -> bool {
        !self.doomed.is_empty()
    }

    /// Holds `key`'s output until the next commit.
    #[inline]
    pub fn hold(&mut self, key: usize) {
        if let Some(e) = self.slab.get_mut(key) {
            list_once(&mut e.schedule.held, &mut self.held, key);
        }
    }

    /// Whether `key`'s output waits for the next commit.
    #[inline]
    pub fn is_held(&self, key: usize) -> bool {
        self.slab.get(key).is_some_and(|e| e.schedule.held)
    }

    /// Whether any connection's output waits for the next commit.
    pub fn has_held(&self) -> bool {
        !self.held.is_empty()
    }

    /// The commit is done: every held connection may be written.
    pub fn release_held(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.unmark(&held, |e| &mut e.schedule.held);
        for key in held {
            self.mark_dirty(key);
        }
    }

    /// Remembers that `key` may have more input than its budget let it
    /// read.
    #[inline]
    pub fn mark_unread(&mut self, key: usize) {
        if let Some(e) = self.slab.get_mut(key) {
            list_once(&mut e.schedule.unread, &mut self.unread, key);
        }
    }

    /// Whether `key` waits to be read in the next iteration.
    #[inline]
    pub fn is_unread(&self, key: usize) -> bool {
        self.slab.get(key).is_some_and(|e| e.schedule.unread)
    }

    /// The connections to read again, no longer marked.
    pub fn take_unread(&mut self) -> Vec<usize> {
        let unread = std::mem::take(&mut self.unread);
        self.unmark(&unread, |e| &mut e.schedule.unread);
        unread
    }

    /// Remembers that `key`'s socket took all its queued offline mail.
    pub fn mark_backlogged(&mut self, key: usize) {
        self.backlogged.push(key);
    }

    /// The connections to queue more offline mail for.
    pub fn take_backlogged(&mut self) -> Vec<usize> {
        std::mem::take(&mut self.backlogged)
    }

    /// Clears one flag of each of `keys`.
    fn unmark(&mut self, keys: &[usize], flag: impl Fn(&mut Conn) -> &mut bool) {
        for &key in keys {
            if let Some(e) = self.slab.get_mut(key) {
                *flag(e) = false;
            }
        }
    }

    /// Whether the loop must go round again at once: input left unread or
    /// offline mail to queue, which no readiness event will announce.
    pub fn wants_another_turn(&self) -> bool {
        !self.unread.is_empty() || !self.backlogged.is_empty()
    }
}

/// Sets `flag` and lists `key` in `list`, unless it is set already.
#[inline]
fn list_once(flag: &mut bool, list: &mut Vec<usize>, key: usize) {
    if !*flag {
        *flag = true;
        list.push(key);
    }
}
