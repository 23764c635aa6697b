//! Durable state on disk: a journal of [`Record`]s plus a snapshot, in one
//! data directory that one server at a time may use.
//!
//! The directory holds `lock` (see [`lock`]), `snapshot` and one or more
//! `journal-N` files, N being a generation number. The snapshot starts with
//! the generation it covers: it holds the live state as of some moment
//! after the end of `journal-G` and every journal before it. Loading is
//! therefore: the snapshot's records, then those of every journal newer
//! than G, in order (records are idempotent, see [`record`], so those of
//! journal G+1 that the snapshot already reflects change nothing).
//! Journals of generation G or older are leftovers of an interrupted
//! compaction and are deleted.
//!
//! Opening reads everything before it writes anything. A torn tail (see
//! [`scan`]) is cut off with a warning; any other damage stops the start
//! with an error naming the file and offset, and nothing is changed —
//! unless [`OnDamage::Recover`] is asked for: then every intact record is
//! kept, the damaged files are set aside under a new name (never deleted),
//! and the caller writes a fresh snapshot.
//!
//! Appending is a group commit: the server [stages](Journal::stage) the
//! records of one loop iteration and [commits](Journal::commit) them with
//! one `write` and one `fdatasync` before it lets out the replies that
//! promise they are durable. A commit that fails keeps its records staged
//! and is simply tried again: the next attempt first cuts off whatever the
//! failed one left in the file.
//!
//! Compaction switches appends to a fresh journal G+1 and writes a snapshot
//! covering G on a thread. The poll loop encodes the live state into it a
//! slice at a time ([`Journal::feed_compaction`]), between iterations, so
//! it never stops for long and never holds a second copy of the state:
//! at most [`IN_FLIGHT`] slices wait for the thread. The thread writes
//! `snapshot.tmp`, syncs it, renames it over `snapshot`, syncs the
//! directory and deletes the journals up to G. A crash between any two
//! steps leaves either the old snapshot with every journal after it, or
//! the new snapshot (whose generation makes the old journals ignored):
//! never a gap. A compaction that fails removes its temporary file,
//! changes nothing that loading depends on, is logged and tried again
//! later.

mod compaction;
mod files;
pub mod lock;
pub mod record;
mod scan;
mod snapshot;

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use log::warn;

use compaction::Compaction;
pub use compaction::IN_FLIGHT;
use files::{create_journal, cut_at, journal_path, journals, remove_if_exists, set_aside};
use lock::DirLock;
pub use record::Record;
pub use scan::Damage;
use scan::{damage_error, scan, ScanMode};
use snapshot::{parse_header, SNAPSHOT_HEADER, SNAPSHOT_TMP};
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

/// What opening does with damage other than a torn tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDamage {
    /// Refuse to open, naming the file and offset; change nothing.
    Stop,
    /// Keep every intact record, set the damaged files aside, and report
    /// what was dropped ([`Loaded::recovered`]).
    Recover,
}

/// A damaged file that a recovering open set aside.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetAside {
    /// The file as it was named.
    pub path: PathBuf,
    /// Where its damaged bytes are kept now.
    pub aside: PathBuf,
    /// The stretches that did not read, now missing from the state.
    pub dropped: Vec<Damage>,
}

/// What loading found besides the records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Records read from the snapshot and the journals.
    pub records: u64,
    /// Torn tails that were cut off, as warnings already logged.
    pub torn: Vec<String>,
    /// Damaged files a recovering open set aside.
    pub recovered: Vec<SetAside>,
}

/// Something to call when the compaction thread has made room for another
/// slice or has ended, such as a `mio::Waker`.
pub type Wake = Arc<dyn Fn() + Send + Sync>;

/// An open data directory: the lock, and the journal being appended to.
/// Dropping it abandons a compaction in progress (its temporary file is
/// removed) before the lock goes.
pub struct Journal {
    dir: PathBuf,
    _lock: DirLock,
    file: File,
    generation: u64,
    /// Bytes of committed records in the current journal file.
    size: u64,
    /// Records staged for the next commit, framed.
    pending: Vec<u8>,
    /// A failed commit may have left part of `pending` in the file: the
    /// next attempt first cuts the file back to `size`.
    torn: bool,
    options: JournalOptions,
    /// Journal size at which to compact next.
    compact_at: u64,
    compaction: Option<Compaction>,
    wake: Option<Wake>,
}

impl std::fmt::Debug for Journal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("generation", &self.generation)
            .field("size", &self.size)
            .field("pending", &self.pending.len())
            .field("compaction", &self.compaction)
            .finish_non_exhaustive()
    }
}

/// A file read at open, and what the read found.
struct Read {
    path: PathBuf,
    torn: Option<Damage>,
    dropped: Vec<Damage>,
}

impl Journal {
    /// Opens (creating if needed) the data directory `dir`, takes its lock,
    /// and feeds every record of the snapshot and the journals to `apply`,
    /// oldest first. Nothing is written until everything was read: then a
    /// torn tail is cut off with a warning naming the file and offset, and
    /// (recovering) damaged files are set aside. Damage met with
    /// [`OnDamage::Stop`] is an [`io::ErrorKind::InvalidData`] error whose
    /// message names the file and offset.
    pub fn open(
        dir: &Path,
        options: JournalOptions,
        on_damage: OnDamage,
        mut apply: impl FnMut(&Record<'_>),
    ) -> io::Result<(Journal, Loaded)> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create it: {e}")))?;
        let lock = DirLock::acquire(dir)?;
        let recover = on_damage == OnDamage::Recover;
        let mut loaded = Loaded::default();
        let mut read = Vec::new();
        let covered = read_snapshot(dir, recover, &mut apply, &mut loaded, &mut read)?;
        let mut newest = covered;
        let mut stale = Vec::new();
        for (generation, path) in journals(dir)? {
            if generation <= covered {
                stale.push(path);
                continue;
            }
            let mode = ScanMode {
                may_tear: true,
                recover,
            };
            let found = scan(&path, 0, mode, &mut apply)?;
            loaded.records += found.records;
            read.push(Read {
                path,
                torn: found.torn,
                dropped: found.dropped,
            });
            newest = generation;
        }

        // Everything is read and acceptable: now the directory may change.
        remove_if_exists(&dir.join(SNAPSHOT_TMP))?;
        for path in stale {
            remove_if_exists(&path)?;
        }
        for file in read {
            // Set aside first, so that the copy kept is the file as it was.
            let aside = if file.dropped.is_empty() {
                None
            } else {
                Some(set_aside(&file.path)?)
            };
            if let Some(torn) = &file.torn {
                let message = format!(
                    "{}: {} at offset {}; cutting off the {} bytes from there",
                    file.path.display(),
                    torn.reason,
                    torn.offset,
                    torn.len
                );
                warn!("{message}");
                loaded.torn.push(message);
                cut_at(&file.path, torn.offset)?;
            }
            if let Some(aside) = aside {
                loaded.recovered.push(SetAside {
                    path: file.path,
                    aside,
                    dropped: file.dropped,
                });
            }
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
        let snapshot_size = std::fs::metadata(dir.join(SNAPSHOT_FILE)).map_or(0, |m| m.len());
        let journal = Journal {
            dir: dir.to_path_buf(),
            _lock: lock,
            file,
            generation: newest,
            size,
            pending: Vec::new(),
            torn: false,
            compact_at: options.compact_at.max(snapshot_size),
            options,
            compaction: None,
            wake: None,
        };
        Ok((journal, loaded))
    }

    /// Calls `wake` whenever the compaction thread has room for another
    /// slice or has ended, so that a poll loop waiting for it wakes up.
    pub fn set_wake(&mut self, wake: Wake) {
        self.wake = Some(wake);
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

    /// Bytes of records waiting for a commit.
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Writes the staged records and, with [`Fsync::Always`], waits until
    /// they are on disk. On an error (a full disk, an I/O error) the
    /// records stay staged, nothing they promise may be released, and a
    /// later call tries again from the last committed byte.
    pub fn commit(&mut self) -> io::Result<()> {
        if self.pending.is_empty() {
            return Ok(());
        }
        if self.torn {
            self.file.set_len(self.size)?;
            self.torn = false;
        }
        self.torn = true;
        self.file.write_all(&self.pending)?;
        if self.options.fsync == Fsync::Always {
            self.file.sync_data()?;
        }
        self.torn = false;
        self.size += self.pending.len() as u64;
        self.pending.clear();
        Ok(())
    }

    /// Bytes in the journal file being appended to.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Drop for Journal {
    fn drop(&mut self) {
        self.finish_compaction();
    }
}

/// Applies the snapshot's records and returns the generation it covers (0
/// without a snapshot). Any damage is an error unless recovering; a
/// damaged header then covers nothing, so that every journal is applied
/// (the records are idempotent).
fn read_snapshot(
    dir: &Path,
    recover: bool,
    apply: &mut impl FnMut(&Record<'_>),
    loaded: &mut Loaded,
    read: &mut Vec<Read>,
) -> io::Result<u64> {
    let path = dir.join(SNAPSHOT_FILE);
    let mut header = [0u8; SNAPSHOT_HEADER];
    let got = match File::open(&path) {
        Ok(mut file) => read_up_to(&mut file, &mut header)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let mut dropped = Vec::new();
    let generation = match parse_header(&header[..got]) {
        Some(generation) => generation,
        None => {
            let damage = Damage {
                offset: 0,
                len: SNAPSHOT_HEADER as u64,
                reason: "damaged header",
            };
            if !recover {
                return Err(damage_error(&path, &damage));
            }
            dropped.push(damage);
            0
        }
    };
    let mode = ScanMode {
        may_tear: false,
        recover,
    };
    let found = scan(&path, SNAPSHOT_HEADER as u64, mode, apply)?;
    loaded.records += found.records;
    dropped.extend(found.dropped);
    read.push(Read {
        path,
        torn: None,
        dropped,
    });
    Ok(generation)
}

/// Reads until `buf` is full or the file ends; returns how much was read.
fn read_up_to(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match io::Read::read(file, &mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

#[cfg(test)]
mod tests;
