//! What a test reads about a process from `/proc` (through
//! [`crate::procfs`]), failing the test if it cannot.

use crate::procfs;

/// A `kB` field of a process's `/proc/PID/status` (`VmHWM`, `VmRSS`, ...).
pub fn status_kib(pid: u32, field: &str) -> u64 {
    procfs::status_kib(pid, field).unwrap_or_else(|e| panic!("{field} of process {pid}: {e}"))
}

/// How many descriptors this process has open (entries of `/proc/self/fd`,
/// not counting the one used to list them).
pub fn open_descriptors() -> usize {
    procfs::open_descriptors(std::process::id()).expect("list this process's descriptors")
}
