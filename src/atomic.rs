//! Files written whole or not at all: the new contents go to a file beside
//! the old one (`NAME.new`, in the same directory so that a rename can
//! replace it), which is synced, renamed over the old name, and made
//! durable by syncing the directory. A crash at any point leaves the old
//! file or the new one, never a mix; a failure before the rename removes
//! `NAME.new` and leaves the old file as it was.
//!
//! The server's generated TLS identity is written this way, and
//! `confab-passwd` rewrites the credentials file this way.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path`, replacing whatever is there, as a file
/// created with `mode` (less the umask, as `open(2)` does).
pub fn write(path: &Path, bytes: &[u8], mode: u32) -> io::Result<()> {
    write_beside(path, bytes, mode, None)
}

/// Replaces the existing file at `path` (the file a symbolic link points
/// to, so the link stays) with `bytes`, keeping its permission bits and,
/// where they differ from what a new file gets, its owner and group: a
/// credentials file edited by root must stay readable by the server's
/// user. Changing the owner needs the privilege to; without it nothing is
/// changed and the error says so.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    let target = fs::canonicalize(path)?;
    let old = fs::metadata(&target)?;
    let like = Like {
        mode: old.mode() & 0o7777,
        uid: old.uid(),
        gid: old.gid(),
    };
    write_beside(&target, bytes, 0o600, Some(like))
}

/// The permission bits and owner a replacement copies from the file it
/// replaces.
#[derive(Clone, Copy)]
struct Like {
    mode: u32,
    uid: u32,
    gid: u32,
}

/// Writes `bytes` to `NAME.new` beside `path` (created with `mode`, then
/// given the attributes of `like`), renames it over `path` and syncs the
/// directory; `NAME.new` is removed if anything before the rename fails.
fn write_beside(path: &Path, bytes: &[u8], mode: u32, like: Option<Like>) -> io::Result<()> {
    let mut beside = path.as_os_str().to_owned();
    beside.push(".new");
    let beside = PathBuf::from(beside);
    // A leftover from an earlier crash; if it cannot go, creating it fails.
    let _ = fs::remove_file(&beside);
    let written = fill(&beside, bytes, mode, like).and_then(|()| fs::rename(&beside, path));
    if written.is_err() {
        let _ = fs::remove_file(&beside);
    }
    written?;
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    File::open(dir)?.sync_all()
}

/// Creates `path` (which must not exist) with `mode` and the attributes of
/// `like`, writes `bytes` to it and syncs it.
fn fill(path: &Path, bytes: &[u8], mode: u32, like: Option<Like>) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)?;
    if let Some(like) = like {
        let new = file.metadata()?;
        if (new.uid(), new.gid()) != (like.uid, like.gid) {
            // Before the mode: a change of owner clears set-user-ID bits.
            std::os::unix::fs::fchown(&file, Some(like.uid), Some(like.gid)).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!("cannot keep owner {}:{}: {e}", like.uid, like.gid),
                )
            })?;
        }
        file.set_permissions(Permissions::from_mode(like.mode))?;
    }
    file.write_all(bytes)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("confab-atomic-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).expect("metadata").mode() & 0o7777
    }

    #[test]
    fn a_replacement_keeps_the_mode_and_follows_links() {
        let dir = temp_dir("replace");
        let file = dir.join("creds.txt");
        fs::write(&file, "old\n").expect("write");
        fs::set_permissions(&file, Permissions::from_mode(0o640)).expect("chmod");
        let link = dir.join("link.txt");
        std::os::unix::fs::symlink(&file, &link).expect("symlink");
        replace(&link, b"new\n").expect("replace");
        assert_eq!(fs::read(&file).expect("read"), b"new\n");
        assert_eq!(mode(&file), 0o640);
        assert!(fs::symlink_metadata(&link).expect("link").is_symlink());
        assert!(!dir.join("creds.txt.new").exists());
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn a_failed_write_leaves_no_file_beside() {
        let dir = temp_dir("fail");
        let missing = dir.join("gone").join("creds.txt");
        assert!(write(&missing, b"x", 0o600).is_err());
        assert!(replace(&dir.join("absent"), b"x").is_err());
        assert!(!dir.join("absent.new").exists());
        // A leftover `.new` from a crash is replaced.
        let file = dir.join("f");
        fs::write(dir.join("f.new"), "stale").expect("write");
        write(&file, b"fresh", 0o600).expect("write");
        assert_eq!(fs::read(&file).expect("read"), b"fresh");
        assert_eq!(mode(&file), 0o600);
        assert!(!dir.join("f.new").exists());
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
