//! The files of a data directory: journal names and generations, creating
//! and replaying journals, and the `fsync`s that make names durable.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use log::warn;

use super::record::{Frames, Record};
use super::Loaded;

/// Prefix of the journal files; the generation follows, as 20 digits.
const JOURNAL_PREFIX: &str = "journal-";

/// The path of journal `generation` in `dir`.
pub(super) fn journal_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("{JOURNAL_PREFIX}{generation:020}"))
}

/// The journal files of `dir` by generation, oldest first.
pub(super) fn journals(dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
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

/// Deletes every journal of `dir` up to generation `covered`.
pub(super) fn remove_journals_up_to(dir: &Path, covered: u64) -> io::Result<()> {
    for (generation, path) in journals(dir)? {
        if generation <= covered {
            remove_if_exists(&path)?;
        }
    }
    Ok(())
}

/// Creates an empty journal file (replacing an empty one left by a crash),
/// makes its name durable, and opens it for appending.
pub(super) fn create_journal(dir: &Path, generation: u64) -> io::Result<File> {
    let path = journal_path(dir, generation);
    let file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)?;
    file.sync_all()?;
    sync_dir(dir)?;
    OpenOptions::new().append(true).open(&path)
}

/// Makes the directory's entries (creations, renames) durable.
pub(super) fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Deletes a file if it exists.
pub(super) fn remove_if_exists(path: &Path) -> io::Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Applies one journal's records; cuts a damaged tail off the file with a
/// warning naming the offset.
pub(super) fn replay_journal(
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
