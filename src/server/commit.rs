//! The poll loop's side of durability: opening the data directory,
//! committing each iteration's records before releasing the connections
//! whose output promises them (the hold-then-commit barrier), surviving a
//! failing disk, and feeding a compaction a slice at a time.
//!
//! A commit that fails (`ENOSPC`, `EIO`, ...) never stops the server. Its
//! records stay staged and the replies they promise stay held; the commit
//! is tried again with back-off ([`FIRST_RETRY`] doubling up to
//! [`MAX_RETRY`]), and the domain is told storage is unavailable, so that
//! new durable commands are refused instead of piling up. The first
//! failure is logged at once, later ones at most every
//! [`WARNING_INTERVAL`], and the recovery once it happens.

use std::io;
use std::path::Path;
use std::time::{Duration, Instant, SystemTime};

use log::{info, warn};

use super::Server;
use crate::chat::{Chat, Replayed, SnapshotCursor, WallClock};
use crate::journal::{CompactStep, Journal, JournalOptions, OnDamage};

/// The first wait before a failed commit is tried again.
pub const FIRST_RETRY: Duration = Duration::from_millis(10);
/// The longest wait between two attempts.
pub const MAX_RETRY: Duration = Duration::from_secs(1);
/// Least time between two warnings about the same failure.
pub const WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Bytes of snapshot encoded per loop iteration (about a millisecond), at
/// least: a slice also covers twice what the journal grew by since the
/// last one, so that a compaction always outpaces the journal it replaces
/// and the data directory stays bounded however busy the server is.
pub const SLICE: usize = 512 * 1024;
/// The most a slice encodes, whatever the journal did: a bound on the
/// memory a compaction takes.
pub const MAX_SLICE: usize = 16 << 20;

/// A journal that cannot be written at the moment.
#[derive(Debug)]
struct Failing {
    since: Instant,
    attempts: u64,
    backoff: Duration,
    retry_at: Instant,
    warned_at: Instant,
}

/// The journal as the poll loop drives it.
#[derive(Debug)]
pub struct Durability {
    journal: Journal,
    failing: Option<Failing>,
    cursor: SnapshotCursor,
    /// The journal's size when the last slice was encoded.
    sliced_at: u64,
}

impl Durability {
    /// Drives `journal`.
    pub fn new(journal: Journal) -> Durability {
        Durability {
            journal,
            failing: None,
            cursor: SnapshotCursor::default(),
            sliced_at: 0,
        }
    }

    /// The journal, to stage records or set its wake-up.
    pub fn journal(&mut self) -> &mut Journal {
        &mut self.journal
    }

    /// Whether records wait for a commit.
    pub fn has_pending(&self) -> bool {
        self.journal.has_pending()
    }

    /// Whether a commit may be tried at `now`: always, unless the journal
    /// is failing and its next attempt is not due yet.
    pub fn may_commit(&self, now: Instant) -> bool {
        self.failing.as_ref().is_none_or(|f| f.retry_at <= now)
    }

    /// When the next attempt of a failing commit is due.
    pub fn retry_at(&self) -> Option<Instant> {
        self.failing.as_ref().map(|f| f.retry_at)
    }

    /// Whether a compaction takes another slice now: the loop must not
    /// sleep meanwhile.
    pub fn wants_slice(&self) -> bool {
        self.journal.compaction_wants_slice()
    }

    /// Commits the staged records; tells `chat` whether storage works.
    /// Returns whether they are on disk (so that what they promise may
    /// go out).
    pub fn commit(&mut self, chat: &mut Chat, now: Instant) -> bool {
        match self.journal.commit() {
            Ok(()) => {
                if let Some(failing) = self.failing.take() {
                    warn!(
                        target: "confab::journal",
                        "journal writable again after {} failed attempts in {:?}",
                        failing.attempts,
                        now.saturating_duration_since(failing.since)
                    );
                    chat.set_storage_available(true);
                }
                true
            }
            Err(e) => {
                self.failed(&e, now);
                chat.set_storage_available(false);
                false
            }
        }
    }

    fn failed(&mut self, e: &io::Error, now: Instant) {
        let pending = self.journal.pending_len();
        match &mut self.failing {
            None => {
                warn!(
                    target: "confab::journal",
                    "journal commit failed: {e}; {pending} bytes of changes wait, their replies \
                     are held and durable commands are refused until a retry succeeds"
                );
                self.failing = Some(Failing {
                    since: now,
                    attempts: 1,
                    backoff: FIRST_RETRY,
                    retry_at: now + FIRST_RETRY,
                    warned_at: now,
                });
            }
            Some(failing) => {
                failing.attempts += 1;
                failing.backoff = (failing.backoff * 2).min(MAX_RETRY);
                failing.retry_at = now + failing.backoff;
                if now.saturating_duration_since(failing.warned_at) >= WARNING_INTERVAL {
                    failing.warned_at = now;
                    warn!(
                        target: "confab::journal",
                        "journal still failing after {} attempts in {:?}: {e}; {pending} bytes \
                         of changes wait",
                        failing.attempts,
                        now.saturating_duration_since(failing.since)
                    );
                }
            }
        }
    }

    /// One step of compaction, after the iteration's commit: starts one if
    /// the journal has grown past its size (never while it is failing),
    /// and encodes the next slice of the one in progress.
    pub fn compaction_step(&mut self, chat: &mut Chat, now: Instant) {
        if self.failing.is_none() && self.journal.wants_compaction() {
            match self.journal.start_compaction() {
                Ok(started) => {
                    if started {
                        info!("compaction started");
                        self.cursor = SnapshotCursor::default();
                        self.sliced_at = 0;
                    }
                }
                Err(e) => {
                    self.failed(&e, now);
                    chat.set_storage_available(false);
                }
            }
        }
        if self.journal.compaction_wants_slice() {
            let started = Instant::now();
            let clock = WallClock::new(started, SystemTime::now());
            let grown = self.journal.size().saturating_sub(self.sliced_at);
            self.sliced_at = self.journal.size();
            let pace = usize::try_from(grown.saturating_mul(2)).unwrap_or(MAX_SLICE);
            let budget = pace.clamp(SLICE, MAX_SLICE);
            let mut slice = Vec::with_capacity(SLICE + SLICE / 8);
            let done = self.cursor.encode(chat, clock, &mut slice, budget);
            self.journal.feed_compaction(slice, started.elapsed(), done);
        }
    }
}

impl Server {
    /// Lets held notices go if they should (`idle`: the iteration's wait
    /// brought no events), flushes every connection that does not wait for
    /// the commit, commits the iteration's records, then flushes the held
    /// connections; then takes a step of compaction. A failed commit keeps
    /// what it promises held until a retry succeeds.
    pub(super) fn finish_iteration(&mut self, now: Instant, idle: bool) {
        self.release_notices(now, idle);
        loop {
            self.flush_unheld(now);
            let Some(durability) = &mut self.durability else {
                break;
            };
            if !durability.has_pending() && !self.conns.has_held() {
                break;
            }
            if !durability.may_commit(now) || !durability.commit(&mut self.chat, now) {
                break;
            }
            self.conns.release_held();
        }
        if let Some(durability) = &mut self.durability {
            durability.compaction_step(&mut self.chat, now);
        }
    }
}

/// Opens the data directory, replays it into `chat`, compacts it (so that
/// every start begins with a fresh journal), and makes `chat` record its
/// changes from now on. After a recovery, the new snapshot must be
/// written, or the start fails: it is what replaces the damaged files.
pub(super) fn open_journal(
    chat: &mut Chat,
    dir: &Path,
    options: JournalOptions,
    on_damage: OnDamage,
) -> io::Result<Journal> {
    let clock = WallClock::new(Instant::now(), SystemTime::now());
    let (mut removed, mut dropped) = (0u64, 0u64);
    let (mut journal, loaded) = Journal::open(dir, options, on_damage, |record| {
        match chat.apply_record(record, clock) {
            Replayed::Applied => {}
            Replayed::Removed => removed += 1,
            Replayed::Dropped => dropped += 1,
        }
    })?;
    info!("{}: loaded {} records", dir.display(), loaded.records);
    // Logged as the journal's, so that these show by default too.
    if removed > 0 {
        warn!(
            target: "confab::journal",
            "{}: kept {removed} records about accounts not in the credentials file (their \
             offline mail and blocks), for when they come back; --prune-removed drops them",
            dir.display()
        );
    }
    if dropped > 0 {
        warn!(
            target: "confab::journal",
            "{}: dropped {dropped} records about accounts not in the credentials file \
             (--prune-removed)",
            dir.display()
        );
    }
    for file in &loaded.recovered {
        let bytes: u64 = file.dropped.iter().map(|d| d.len).sum();
        let stretches = file.dropped.len();
        warn!(
            target: "confab::journal",
            "recovered {}: dropped {bytes} damaged bytes in {stretches} stretch{} (the first: \
             {} at offset {}); the file as it was is kept as {}",
            file.path.display(),
            if stretches == 1 { "" } else { "es" },
            file.dropped.first().map_or("", |d| d.reason),
            file.dropped.first().map_or(0, |d| d.offset),
            file.aside.display()
        );
    }
    if !loaded.recovered.is_empty() {
        journal
            .compact_until(chat.snapshot(clock), CompactStep::RemoveOld)
            .map_err(|e| io::Error::new(e.kind(), format!("writing the recovered state: {e}")))?;
        warn!(
            target: "confab::journal",
            "recovered {}: kept {} records in a new snapshot",
            dir.display(),
            loaded.records
        );
    } else {
        journal.compact(chat.snapshot(clock))?;
    }
    chat.record_changes(clock);
    Ok(journal)
}
