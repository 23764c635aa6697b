//! The data directory's single-writer lock.
//!
//! Two servers appending to one journal would interleave their records and
//! each would replay a state the other never had. The lock is `flock` on a
//! file in the directory: the kernel drops it when the process ends however
//! it ends (even `kill -9`), so a crash never leaves a stale lock behind.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
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
    /// the directory is in use.
    pub fn acquire(dir: &Path) -> io::Result<DirLock> {
        let path = dir.join(LOCK_FILE);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)?;
        loop {
            // SAFETY: flock on a descriptor this function owns.
            let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
            if rc == 0 {
                return Ok(DirLock { _file: file });
            }
            let error = io::Error::last_os_error();
            match error.kind() {
                io::ErrorKind::Interrupted => continue,
                io::ErrorKind::WouldBlock => {
                    return Err(io::Error::new(
                        io::ErrorKind::WouldBlock,
                        format!(
                            "in use by another confab-server (it holds the lock on {})",
                            path.display()
                        ),
                    ))
                }
                _ => return Err(error),
            }
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
        drop(first);
        DirLock::acquire(&dir).expect("lock after release");
        std::fs::remove_dir_all(&dir).expect("remove dir");
    }
}
