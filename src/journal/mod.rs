//! Durable state on disk: a journal of [`Record`]s plus a snapshot, in one
//! data directory that one server at a time may use.
//!
//! The directory holds `lock` (see [`lock`]), `snapshot` and one or more
//! `journal-N` files, N being a generation number. The snapshot starts with
//! the generation it covers: it holds the live state as of the end of
//! `journal-G` and every journal before it. Loading is therefore: the
//! snapshot's records, then those of every journal newer than G, in order.
//! Journals of generation G or older are leftovers of an interrupted
//! compaction and are deleted.
//!
//! Appending is a group commit: the server [stages](Journal::stage) the
//! records of one loop iteration and [commits](Journal::commit) them with
//! one `write` and one `fdatasync` before it lets out the replies that
//! promise they are durable.
//!
//! Compaction ([`Journal::compact`]) encodes the live state in memory as a
//! snapshot covering the current journal G and switches appends to a new,
//! empty journal G+1 — the only part that holds up the poll loop. A thread
//! then writes `snapshot.tmp`, syncs it, renames it over `snapshot`, syncs
//! the directory and deletes the journals up to G. A crash between any two
//! steps leaves either the old snapshot with every journal after it, or the
//! new snapshot (whose generation makes the old journals ignored): never a
//! gap, never a record applied twice. A compaction that fails changes
//! nothing that loading depends on; it is logged and tried again later.

mod files;
pub mod lock;
pub mod record;
mod snapshot;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::thread::JoinHandle;
use std::time::Instant;

use log::{info, warn};

use files::{create_journal, journal_path, journals, remove_if_exists, replay_journal};
use lock::DirLock;
pub use record::Record;
use snapshot::{encode_snapshot, load_snapshot, write_snapshot, SNAPSHOT_TMP};
pub use snapshot::{CompactStep, SNAPSHOT_FILE};

/// When a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Fsync {
    /// `fdatasync` every commit before its replies go out: an acknowledged
    /// change survives a crash of the machine.
    Always,
    /// Only `write`: an acknowledged change survives the server being
    /// killed, but not a power loss or kernel crash.
    Never,
}

/// How a [`Journal`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalOptions {
    /// Whether commits are synced.
    pub fsync: Fsync,
    /// Journal size in bytes past which the server compacts, unless the
    /// snapshot is larger: then the journal may grow to the snapshot's
    /// size first, so that rewriting the live state never costs more than
    /// the journal it replaces.
    pub compact_at: u64,
}

/// What loading found besides the records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Records read from the snapshot and the journals.
    pub records: u64,
    /// Damaged tails that were cut off, as warnings already logged.
    pub damaged: Vec<String>,
}

/// A snapshot being written by the compaction thread.
#[derive(Debug)]
struct Compaction {
    thread: JoinHandle<io::Result<()>>,
    started: Instant,
    /// Size of the journal it replaces, and of the snapshot.
    journal_size: u64,
    snapshot_size: u64,
}

/// An open data directory: the lock, and the journal being appended to.
/// Dropping it waits for a compaction in progress before the lock goes.
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    _lock: DirLock,
    file: File,
    generation: u64,
    /// Bytes in the current journal file.
    size: u64,
    /// Records staged for the next commit, framed.
    pending: Vec<u8>,
    options: JournalOptions,
    /// Journal size at which to compact next.
    compact_at: u64,
    /// Size of the last snapshot written (or loaded).
    last_snapshot: u64,
    compaction: Option<Compaction>,
}

/// Most bytes reserved up front for encoding a snapshot.
const MAX_PREALLOCATION: usize = 1 << 30;

impl Journal {
    /// Opens (creating if needed) the data directory `dir`, takes its lock,
    /// and feeds every record of the snapshot and the journals to `apply`,
    /// oldest first. A damaged tail is cut off the file (or, in the
    /// snapshot, ignored) with a warning naming the file and offset; every
    /// record before it is kept.
    pub fn open(
        dir: &Path,
        options: JournalOptions,
        mut apply: impl FnMut(&Record<'_>),
    ) -> io::Result<(Journal, Loaded)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create it: {e}")))?;
        let lock = DirLock::acquire(dir)?;
        remove_if_exists(&dir.join(SNAPSHOT_TMP))?;
        let mut loaded = Loaded::default();
        let (covered, snapshot_size) = load_snapshot(dir, &mut apply, &mut loaded)?;
        let mut newest = covered;
        for (generation, path) in journals(dir)? {
            if generation <= covered {
                remove_if_exists(&path)?;
                continue;
            }
            replay_journal(&path, &mut apply, &mut loaded)?;
            newest = generation;
        }
        let (file, size) = if newest > covered {
            let file = OpenOptions::new()
                .append(true)
                .open(journal_path(dir, newest))?;
            let size = file.metadata()?.len();
            (file, size)
        } else {
            newest = covered + 1;
            (create_journal(dir, newest)?, 0)
        };
        let journal = Journal {
            dir: dir.to_path_buf(),
            _lock: lock,
            file,
            generation: newest,
            size,
            pending: Vec::new(),
            compact_at: options.compact_at.max(snapshot_size),
            last_snapshot: snapshot_size,
            options,
            compaction: None,
        };
        Ok((journal, loaded))
    }

    /// Adds records (already framed, see [`record::encode`]) to the next
    /// commit.
    pub fn stage(&mut self, framed: &[u8]) {
        self.pending.extend_from_slice(framed);
    }

    /// Whether records are waiting for a commit.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Writes the staged records and, with [`Fsync::Always`], waits until
    /// they are on disk. An error leaves the journal in an unknown state:
    /// the server must stop rather than acknowledge anything more.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.pending)?;
        self.size += self.pending.len() as u64;
        self.pending.clear();
        if self.options.fsync == Fsync::Always {
            self.file.sync_data()?;
        }
        Ok(())
    }

    /// Whether the journal has grown past the compaction size (see
    /// [`JournalOptions::compact_at`]), or past the point of retrying a
    /// compaction that failed, and no compaction is in progress.
    pub fn wants_compaction(&mut self) -> bool {
        self.poll_compaction();
        self.compaction.is_none() && self.size >= self.compact_at
    }

    /// Bytes in the journal file being appended to.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Starts replacing the snapshot with `live` (the whole live state, as
    /// records): commits what is staged, encodes the snapshot, switches to
    /// a fresh journal, and leaves writing the snapshot to a thread. Only
    /// a failed commit is an error; a compaction that fails is logged and
    /// tried again once the journal has grown by the compaction size.
    pub fn compact<'a>(&mut self, live: impl IntoIterator<Item = Record<'a>>) -> io::Result<()> {
        self.commit()?;
        self.finish_compaction();
        let started = Instant::now();
        let journal_size = self.size;
        let bytes = encode_snapshot(self.generation, live, self.live_estimate());
        let covered = match self.next_journal() {
            Ok(covered) => covered,
            Err(e) => {
                self.compaction_failed(&e);
                return Ok(());
            }
        };
        let dir = self.dir.clone();
        let snapshot_size = bytes.len() as u64;
        let spawned = std::thread::Builder::new()
            .name("confab-compaction".into())
            .spawn(move || write_snapshot(&dir, &bytes, covered, CompactStep::RemoveOld));
        match spawned {
            Ok(thread) => {
                self.compaction = Some(Compaction {
                    thread,
                    started,
                    journal_size,
                    snapshot_size,
                })
            }
            Err(e) => self.compaction_failed(&e),
        }
        Ok(())
    }

    /// [`Journal::compact`] on this thread, stopping after `last`: a crash
    /// at that point, for tests. Dropping the journal afterwards and
    /// opening the directory again must load the same state.
    pub fn compact_until<'a>(
        &mut self,
        live: impl IntoIterator<Item = Record<'a>>,
        last: CompactStep,
    ) -> io::Result<()> {
        self.commit()?;
        self.finish_compaction();
        let bytes = encode_snapshot(self.generation, live, self.live_estimate());
        let covered = self.next_journal()?;
        if last == CompactStep::NewJournal {
            return Ok(());
        }
        write_snapshot(&self.dir, &bytes, covered, last)
    }

    /// Waits for a compaction in progress, if any, and takes its outcome.
    pub fn finish_compaction(&mut self) {
        if let Some(compaction) = self.compaction.take() {
            let result = compaction
                .thread
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the compaction thread panicked")));
            match result {
                Ok(()) => {
                    info!(
                        "compacted {}: a {}-byte journal into a {}-byte snapshot in {:?}",
                        self.dir.display(),
                        compaction.journal_size,
                        compaction.snapshot_size,
                        compaction.started.elapsed()
                    );
                    self.compact_at = self.options.compact_at.max(compaction.snapshot_size);
                    self.last_snapshot = compaction.snapshot_size;
                }
                Err(e) => self.compaction_failed(&e),
            }
        }
    }

    /// Takes the outcome of a compaction that has ended, without waiting.
    fn poll_compaction(&mut self) {
        if self
            .compaction
            .as_ref()
            .is_some_and(|c| c.thread.is_finished())
        {
            self.finish_compaction();
        }
    }

    /// An upper bound of the live state's size, in most cases: the last
    /// snapshot plus everything appended since (records mostly add state).
    fn live_estimate(&self) -> usize {
        let bytes = self.last_snapshot.saturating_add(self.size);
        usize::try_from(bytes)
            .unwrap_or(usize::MAX)
            .min(MAX_PREALLOCATION)
    }

    /// Starts appending to the next journal; returns the generation of the
    /// one it replaces, which the new snapshot covers.
    fn next_journal(&mut self) -> io::Result<u64> {
        let covered = self.generation;
        self.file = create_journal(&self.dir, covered + 1)?;
        self.generation = covered + 1;
        self.size = 0;
        Ok(covered)
    }

    fn compaction_failed(&mut self, e: &io::Error) {
        warn!(
            "compaction of {} failed, will retry later: {e}",
            self.dir.display()
        );
        self.compact_at = self.size.saturating_add(self.options.compact_at);
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.finish_compaction();
    }
}

#[cfg(test)]
mod tests;
