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
//! Compaction ([`Journal::compact`]) writes the live state to
//! `snapshot.tmp`, syncs it, renames it over `snapshot`, syncs the
//! directory, starts the next journal and deletes the old ones. A crash
//! between any two steps leaves either the old snapshot with all the
//! journals it needs, or the new snapshot (whose generation makes the old
//! journals ignored): never a gap, never a record applied twice.

pub mod lock;
pub mod record;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use log::warn;

use lock::DirLock;
pub use record::Record;
use record::{encode, Frames};

/// Name of the snapshot file.
pub const SNAPSHOT_FILE: &str = "snapshot";
/// Name of the snapshot being written by a compaction.
const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// Prefix of the journal files; the generation follows, as 20 digits.
const JOURNAL_PREFIX: &str = "journal-";
/// First bytes of a snapshot: format name and version.
const SNAPSHOT_MAGIC: &[u8; 8] = b"CONFABS1";
/// Magic, then the covered generation (`u64`, little-endian), then its
/// CRC-32.
const SNAPSHOT_HEADER: usize = 8 + 8 + 4;

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
    /// Journal size in bytes past which the server compacts.
    pub compact_at: u64,
}

/// The steps of a compaction, in order; [`Journal::compact_until`] stops
/// after any of them, which is how tests crash it in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CompactStep {
    /// `snapshot.tmp` holds the live state (maybe only in the page cache).
    WriteTemp,
    /// `snapshot.tmp` is on disk.
    SyncTemp,
    /// `snapshot.tmp` was renamed over `snapshot`.
    Rename,
    /// The rename is on disk.
    SyncDir,
    /// The next journal exists, empty, and is the one appended to.
    NewJournal,
    /// The journals the snapshot covers are deleted.
    RemoveOld,
}

impl CompactStep {
    /// Every step, in order.
    pub const ALL: [CompactStep; 6] = [
        CompactStep::WriteTemp,
        CompactStep::SyncTemp,
        CompactStep::Rename,
        CompactStep::SyncDir,
        CompactStep::NewJournal,
        CompactStep::RemoveOld,
    ];
}

/// What loading found besides the records.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Loaded {
    /// Records read from the snapshot and the journals.
    pub records: u64,
    /// Damaged tails that were cut off, as warnings already logged.
    pub damaged: Vec<String>,
}

/// An open data directory: the lock, and the journal being appended to.
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
}

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
        fs::create_dir_all(dir)
            .map_err(|e| io::Error::new(e.kind(), format!("cannot create it: {e}")))?;
        let lock = DirLock::acquire(dir)?;
        remove_if_exists(&dir.join(SNAPSHOT_TMP))?;
        let mut loaded = Loaded::default();
        let covered = load_snapshot(dir, &mut apply, &mut loaded)?;
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
            let path = journal_path(dir, newest);
            let file = OpenOptions::new().append(true).open(&path)?;
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
            compact_at: options.compact_at,
            options,
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

    /// Whether the journal has grown past the compaction size (or past
    /// the point of retrying a compaction that failed).
    pub fn wants_compaction(&self) -> bool {
        self.size >= self.compact_at
    }

    /// Bytes in the journal file being appended to.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Replaces the snapshot with `live` (the whole live state, as records)
    /// and starts a fresh journal; staged records are committed first.
    ///
    /// A failure before the new snapshot replaces the old one (a full disk,
    /// say) changes nothing: it is logged, and the next try waits until the
    /// journal has grown by the compaction size again. A failure after that
    /// point, or of the commit, is returned: the server must stop, because
    /// the journal it would append to may be one the snapshot covers.
    pub fn compact<'a>(&mut self, live: impl IntoIterator<Item = Record<'a>>) -> io::Result<()> {
        self.commit()?;
        match self.compact_until(live, CompactStep::RemoveOld) {
            Err(e) if self.renamed_generation() != Some(self.generation) => {
                warn!(
                    "compaction of {} failed, will retry later: {e}",
                    self.dir.display()
                );
                remove_if_exists(&self.dir.join(SNAPSHOT_TMP))?;
                self.compact_at = self.size.saturating_add(self.options.compact_at);
                Ok(())
            }
            Err(e) => Err(e),
            Ok(()) => {
                self.compact_at = self.options.compact_at;
                Ok(())
            }
        }
    }

    /// The generation the snapshot on disk covers, if it can be read.
    fn renamed_generation(&self) -> Option<u64> {
        let mut header = [0; SNAPSHOT_HEADER];
        let mut file = File::open(self.dir.join(SNAPSHOT_FILE)).ok()?;
        io::Read::read_exact(&mut file, &mut header).ok()?;
        parse_snapshot_header(&header)
    }

    /// [`Journal::compact`], stopping after `last`: a crash at that point,
    /// for tests. Dropping the journal afterwards and opening the directory
    /// again must load the same state.
    pub fn compact_until<'a>(
        &mut self,
        live: impl IntoIterator<Item = Record<'a>>,
        last: CompactStep,
    ) -> io::Result<()> {
        self.commit()?;
        let covered = self.generation;
        let mut bytes = snapshot_header(covered);
        for record in live {
            encode(&record, &mut bytes);
        }
        let tmp = self.dir.join(SNAPSHOT_TMP);
        let mut file = File::create(&tmp)?;
        file.write_all(&bytes)?;
        if last == CompactStep::WriteTemp {
            return Ok(());
        }
        file.sync_all()?;
        drop(file);
        if last == CompactStep::SyncTemp {
            return Ok(());
        }
        fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE))?;
        if last == CompactStep::Rename {
            return Ok(());
        }
        sync_dir(&self.dir)?;
        if last == CompactStep::SyncDir {
            return Ok(());
        }
        self.file = create_journal(&self.dir, covered + 1)?;
        self.generation = covered + 1;
        self.size = 0;
        if last == CompactStep::NewJournal {
            return Ok(());
        }
        for (generation, path) in journals(&self.dir)? {
            if generation <= covered {
                remove_if_exists(&path)?;
            }
        }
        Ok(())
    }
}

fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{JOURNAL_PREFIX}{generation:020}"))
}

/// The journal files of `dir` by generation, oldest first.
fn journals(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut found = Vec::new();
    for entry in fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let generation = name
            .to_str()
            .and_then(|n| n.strip_prefix(JOURNAL_PREFIX))
            .and_then(|g| g.parse::<u64>().ok());
        if let Some(generation) = generation {
            found.push((generation, entry.path()));
        }
    }
    found.sort();
    Ok(found)
}

/// Creates an empty journal file (replacing one left by a crash) and makes
/// its name durable.
fn create_journal(dir: &Path, generation: u64) -> io::Result<File> {
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(journal_path(dir, generation))?;
    file.sync_all()?;
    sync_dir(dir)?;
    // Reopened for appending: every write goes to the end.
    OpenOptions::new()
        .append(true)
        .open(journal_path(dir, generation))
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

fn snapshot_header(generation: u64) -> Vec<u8> {
    let mut header = Vec::with_capacity(SNAPSHOT_HEADER);
    header.extend_from_slice(SNAPSHOT_MAGIC);
    header.extend_from_slice(&generation.to_le_bytes());
    let crc = crc32fast::hash(&header);
    header.extend_from_slice(&crc.to_le_bytes());
    header
}

/// The generation in a snapshot header, if the header is intact.
fn parse_snapshot_header(header: &[u8]) -> Option<u64> {
    let crc = u32::from_le_bytes(header.get(16..20)?.try_into().ok()?);
    let generation = u64::from_le_bytes(header.get(8..16)?.try_into().ok()?);
    (header.starts_with(SNAPSHOT_MAGIC) && crc32fast::hash(&header[..16]) == crc)
        .then_some(generation)
}

/// Applies the snapshot's records and returns the generation it covers (0
/// without a snapshot). A damaged header is an error: its records cannot
/// be placed, and guessing would lose or repeat changes.
fn load_snapshot(
    dir: &Path,
    apply: &mut impl FnMut(&Record<'_>),
    loaded: &mut Loaded,
) -> io::Result<u64> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let generation = bytes.get(..SNAPSHOT_HEADER).and_then(parse_snapshot_header);
    let Some(generation) = generation else {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} has a damaged header; move it away to start from the journals alone",
                path.display()
            ),
        ));
    };
    let mut frames = Frames::new(&bytes[SNAPSHOT_HEADER..]);
    for record in frames.by_ref() {
        apply(&record);
        loaded.records += 1;
    }
    if let Some(damage) = frames.damage() {
        let message = format!(
            "{}: {} at offset {}; the records after it are ignored",
            path.display(),
            damage.reason,
            SNAPSHOT_HEADER + damage.offset
        );
        warn!("{message}");
        loaded.damaged.push(message);
    }
    Ok(generation)
}

/// Applies one journal's records; cuts a damaged tail off the file.
fn replay_journal(
    path: &Path,
    apply: &mut impl FnMut(&Record<'_>),
    loaded: &mut Loaded,
) -> io::Result<()> {
    let bytes = fs::read(path)?;
    let mut frames = Frames::new(&bytes);
    for record in frames.by_ref() {
        apply(&record);
        loaded.records += 1;
    }
    if let Some(damage) = frames.damage() {
        let message = format!(
            "{}: {} at offset {}; cutting off the {} bytes from there",
            path.display(),
            damage.reason,
            damage.offset,
            bytes.len() - damage.offset
        );
        warn!("{message}");
        loaded.damaged.push(message);
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(damage.offset as u64)?;
        file.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
