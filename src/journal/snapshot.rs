//! The snapshot: the live state as records, behind a header naming the
//! journal generation it covers, replaced atomically by a rename.

use std::fs::{self, File};
use std::io::{self, Write};
use std::path::Path;

use log::warn;

use super::files::{remove_journals_up_to, sync_dir};
use super::record::{encode, Frames, Record};
use super::Loaded;

/// Name of the snapshot file.
pub const SNAPSHOT_FILE: &str = "snapshot";
/// Name of the snapshot being written by a compaction.
pub(super) const SNAPSHOT_TMP: &str = "snapshot.tmp";
/// First bytes of a snapshot: format name and version.
const SNAPSHOT_MAGIC: &[u8; 8] = b"CONFABS1";
/// Magic, then the covered generation (`u64`, little-endian), then its
/// CRC-32.
const SNAPSHOT_HEADER: usize = 8 + 8 + 4;

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

/// A snapshot covering journal `covered`, with these records; `expected`
/// is a guess of its size, to allocate once.
pub(super) fn encode_snapshot<'a>(
    covered: u64,
    live: impl IntoIterator<Item = Record<'a>>,
    expected: usize,
) -> Vec<u8> {
    let mut bytes = Vec::with_capacity(SNAPSHOT_HEADER + expected);
    bytes.extend_from_slice(SNAPSHOT_MAGIC);
    bytes.extend_from_slice(&covered.to_le_bytes());
    let crc = crc32fast::hash(&bytes);
    bytes.extend_from_slice(&crc.to_le_bytes());
    for record in live {
        encode(&record, &mut bytes);
    }
    bytes
}

/// Writes an encoded snapshot covering journal `covered` into `dir` step by
/// step, stopping after `last`: temporary file, `fsync`, rename, directory
/// `fsync`, deletion of the covered journals. Runs on the compaction
/// thread; every prefix of it leaves a loadable directory.
pub(super) fn write_snapshot(
    dir: &Path,
    bytes: &[u8],
    covered: u64,
    last: CompactStep,
) -> io::Result<()> {
    let tmp = dir.join(SNAPSHOT_TMP);
    let mut file = File::create(&tmp)?;
    file.write_all(bytes)?;
    if last == CompactStep::WriteTemp {
        return Ok(());
    }
    file.sync_all()?;
    drop(file);
    if last == CompactStep::SyncTemp {
        return Ok(());
    }
    fs::rename(&tmp, dir.join(SNAPSHOT_FILE))?;
    if last == CompactStep::Rename {
        return Ok(());
    }
    sync_dir(dir)?;
    if last == CompactStep::SyncDir {
        return Ok(());
    }
    remove_journals_up_to(dir, covered)
}

/// The generation in a snapshot header, if the header is intact.
fn parse_header(header: &[u8]) -> Option<u64> {
    let crc = u32::from_le_bytes(header.get(16..20)?.try_into().ok()?);
    let generation = u64::from_le_bytes(header.get(8..16)?.try_into().ok()?);
    (header.starts_with(SNAPSHOT_MAGIC) && crc32fast::hash(&header[..16]) == crc)
        .then_some(generation)
}

/// Applies the snapshot's records and returns the generation it covers (0
/// without a snapshot) and its size. A damaged record stops the reading
/// with a warning; a damaged header is an error: its records cannot be
/// placed, and guessing would lose or repeat changes.
pub(super) fn load_snapshot(
    dir: &Path,
    apply: &mut impl FnMut(&Record<'_>),
    loaded: &mut Loaded,
) -> io::Result<(u64, u64)> {
    let path = dir.join(SNAPSHOT_FILE);
    let bytes = match fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, 0)),
        Err(e) => return Err(e),
    };
    let Some(generation) = bytes.get(..SNAPSHOT_HEADER).and_then(parse_header) else {
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
    Ok((generation, bytes.len() as u64))
}
