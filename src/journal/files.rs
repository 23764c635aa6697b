//! The files of a data directory: journal names and generations, creating
//! journals, cutting torn tails, setting damaged files aside, and the
//! `fsync`s that make names durable.

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

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

/// Cuts a torn tail off a journal at `offset` and makes that durable.
pub(super) fn cut_at(path: &Path, offset: u64) -> io::Result<()> {
    let file = OpenOptions::new().write(true).open(path)?;
    file.set_len(offset)?;
    file.sync_all()
}

/// Keeps a damaged file under a new name beside it, `NAME.damaged-SECS`
/// (SECS: the Unix time), and returns that name. The file is hard-linked,
/// so its old name still holds it until the new snapshot replaces it: a
/// crash at any point leaves it in at least one place. Where the file
/// system has no hard links, it is copied.
pub(super) fn set_aside(path: &Path) -> io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut aside = dir.join(format!("{name}.damaged-{secs}"));
    let mut n = 1;
    while aside.exists() {
        aside = dir.join(format!("{name}.damaged-{secs}-{n}"));
        n += 1;
    }
    if fs::hard_link(path, &aside).is_err() {
        fs::copy(path, &aside)?;
        File::open(&aside)?.sync_all()?;
    }
    sync_dir(dir)?;
    Ok(aside)
}
