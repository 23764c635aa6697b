//! The snapshot: the live state as records, behind a header naming the
//! journal generation it covers, replaced atomically by a rename.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use super::files::{remove_if_exists, remove_journals_up_to, sync_dir};

/// Name of the snapshot file.
pub const SNAPSHOT_FILE: &str = "snapshot";
/// Name of the snapshot being written by a compaction.
pub(super) const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// First bytes of a snapshot: format name and version.
const SNAPSHOT_MAGIC: &[u8; 8] = b"CONFABS1";
/// Magic, then the covered generation (`u64`, little-endian), then its
/// CRC-32.
pub(super) const SNAPSHOT_HEADER: usize = 8 + 8 + 4;

/// The steps of a compaction, in order; [`super::Journal::compact_until`]
/// stops after any of them, which is how tests crash it in between.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum CompactStep {
    /// The next journal exists, empty, and is the one appended to; the
    /// snapshot (in memory) covers the previous one.
    NewJournal,
    /// `snapshot.tmp` holds the live state (maybe only in the page cache).
    WriteTemp,
    /// `snapshot.tmp` is on disk.
    SyncTemp,
    /// `snapshot.tmp` was renamed over `snapshot`.
    Rename,
    /// The rename is on disk.
    SyncDir,
    /// The journals the snapshot covers are deleted.
    RemoveOld,
}

impl CompactStep {
    /// Every step, in order.
    pub const ALL: [CompactStep; 6] = [
        CompactStep::NewJournal,
        CompactStep::WriteTemp,
        CompactStep::SyncTemp,
        CompactStep::Rename,
        CompactStep::SyncDir,
        CompactStep::RemoveOld,
    ];
}

/// Writes a snapshot covering one journal generation: the header at
/// creation, the framed records as they come, then
/// [`SnapshotWriter::finish`]. Dropped unfinished (a failure on the way),
/// it removes its temporary file, so that a full disk gets its space back.
#[derive(Debug)]
pub(super) struct SnapshotWriter {
    dir: PathBuf,
    file: Option<File>,
    covered: u64,
    size: u64,
}

impl SnapshotWriter {
    /// Creates `snapshot.tmp` in `dir` with the header for `covered`.
    pub(super) fn create(dir: &Path, covered: u64) -> io::Result<SnapshotWriter> {
        let mut header = Vec::with_capacity(SNAPSHOT_HEADER);
        header.extend_from_slice(SNAPSHOT_MAGIC);
        header.extend_from_slice(&covered.to_le_bytes());
        let crc = crc32fast::hash(&header);
        header.extend_from_slice(&crc.to_le_bytes());
        let mut writer = SnapshotWriter {
            dir: dir.to_path_buf(),
            file: Some(File::create(dir.join(SNAPSHOT_TMP))?),
            covered,
            size: 0,
        };
        writer.write(&header)?;
        Ok(writer)
    }

    /// Appends framed records.
    pub(super) fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let file = self
            .file
            .as_mut()
            .ok_or_else(|| io::Error::other("finished"))?;
        file.write_all(bytes)?;
        self.size += bytes.len() as u64;
        Ok(())
    }

    /// Makes the snapshot the directory's, step by step, stopping after
    /// `last`: `fsync`, rename, directory `fsync`, deletion of the covered
    /// journals. Every prefix of it leaves a loadable directory. Returns
    /// the snapshot's size.
    pub(super) fn finish(mut self, last: CompactStep) -> io::Result<u64> {
        let file = self
            .file
            .take()
            .ok_or_else(|| io::Error::other("finished"))?;
        if last == CompactStep::WriteTemp {
            return Ok(self.size);
        }
        let synced = file.sync_all();
        drop(file);
        let tmp = self.dir.join(SNAPSHOT_TMP);
        if let Err(e) = synced {
            let _ = remove_if_exists(&tmp);
            return Err(e);
        }
        if last == CompactStep::SyncTemp {
            return Ok(self.size);
        }
        if let Err(e) = fs::rename(&tmp, self.dir.join(SNAPSHOT_FILE)) {
            let _ = remove_if_exists(&tmp);
            return Err(e);
        }
        if last == CompactStep::Rename {
            return Ok(self.size);
        }
        sync_dir(&self.dir)?;
        if last == CompactStep::SyncDir {
            return Ok(self.size);
        }
        remove_journals_up_to(&self.dir, self.covered)?;
        Ok(self.size)
    }
}

impl Drop for SnapshotWriter {
    fn drop(&mut self) {
        if self.file.take().is_some() {
            let _ = remove_if_exists(&self.dir.join(SNAPSHOT_TMP));
        }
    }
}

/// The generation in a snapshot header, if the header is intact.
pub(super) fn parse_header(header: &[u8]) -> Option<u64> {
    let crc = u32::from_le_bytes(header.get(16..20)?.try_into().ok()?);
    let generation = u64::from_le_bytes(header.get(8..16)?.try_into().ok()?);
    (header.starts_with(SNAPSHOT_MAGIC) && crc32fast::hash(&header[..16]) == crc)
        .then_some(generation)
}
