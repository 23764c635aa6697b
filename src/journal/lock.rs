//! The data directory's single-writer lock.
//!
//! Two servers appending to one journal would interleave their records and
//! each would replay a state the other never had. The lock is
//! [`File::try_lock`] on a file in the directory, which the standard library
//! implements on Linux as `flock(LOCK_EX | LOCK_NB)`: the kernel drops it
//! when the process ends however it ends (even `kill -9`), so a crash never
//! leaves a stale lock behind.

use std::fs::{File, OpenOptions, TryLockError};
use std::io;
use std::path::Path;

/// Name of the lock file inside the data directory.
pub const LOCK_FILE: &str = "lock";

/// An exclusive lock on a data directory, held until dropped.
#[derive(Debug)]
pub struct DirLock {
    /// Closing the file releases the lock.
    _file: File,
}

impl DirLock {
    /// Takes the lock of `dir` without waiting. If another process holds
    /// it, fails with [`io::ErrorKind::WouldBlock`] and a message saying
    /// the directory is in use and what to do instead.
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        match file.try_lock() {
            Ok(()) => Ok(DirLock { _file: file }),
            Err(TryLockError::WouldBlock) => Err(io::Error::new(
                io::ErrorKind::WouldBlock,
                format!(
                    "in use by another confab-server (it holds the lock on {}); \
                     start this one with another --data-dir, or with --ephemeral \
                     to keep nothing on disk",
                    path.display()
                ),
            )),
            Err(TryLockError::Error(error)) => Err(error),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_is_refused_until_the_first_is_dropped() {
        let dir = std::env::temp_dir().join(format!("confab-lock-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create dir");
        let first = DirLock::acquire(&dir).expect("first lock");
        let second = DirLock::acquire(&dir).expect_err("second lock");
        assert_eq!(second.kind(), io::ErrorKind::WouldBlock);
        assert!(second.to_string().contains("in use"), "{second}");
        assert!(
            second.to_string().contains("another --data-dir")
                && second.to_string().contains("--ephemeral"),
            "{second}"
        );
        drop(first);
        DirLock::acquire(&dir).expect("lock after release");
        std::fs::remove_dir_all(&dir).expect("remove dir");
    }
}
