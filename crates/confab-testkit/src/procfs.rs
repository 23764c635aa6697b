//! The one reader of `/proc`: a process's memory (`/proc/PID/status`), its
//! CPU time (`/proc/PID/stat`) and its open descriptors (`/proc/PID/fd`).
//! Every function returns an error rather than panicking, for the load
//! tools; tests go through [`crate::probe`] or [`crate::ServerProcess`].

use std::fs;
use std::io;
use std::time::Duration;

/// Resident memory of a process, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Memory {
    /// Resident now (`VmRSS`).
    pub rss: u64,
    /// The most it was ever resident (`VmHWM`).
    pub peak: u64,
}

/// A `kB` field of `/proc/PID/status` (`VmHWM`, `VmRSS`, ...), in KiB.
pub fn status_kib(pid: u32, field: &str) -> io::Result<u64> {
    let path = format!("/proc/{pid}/status");
    let status = fs::read_to_string(&path)?;
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|value| value.trim().strip_suffix("kB")?.trim().parse().ok())
        .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: no {field}")))
}

/// `VmRSS` and `VmHWM` of process `pid`.
pub fn memory(pid: u32) -> io::Result<Memory> {
    Ok(Memory {
        rss: status_kib(pid, "VmRSS")? * 1024,
        peak: status_kib(pid, "VmHWM")? * 1024,
    })
}

/// The CPU time of process `pid` so far, user and system (fields 14 and 15
/// of `/proc/PID/stat`), in clock ticks ([`ticks_per_second`]).
pub fn cpu_ticks(pid: u32) -> io::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = fs::read_to_string(&path)?;
    // The command name (field 2) is in parentheses and may hold spaces:
    // count the fields after its closing parenthesis, which is field 3.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let field = |n: usize| fields.get(n - 3).and_then(|f| f.parse::<u64>().ok());
    match (field(14), field(15)) {
        (Some(utime), Some(stime)) => Ok(utime + stime),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{path}: no utime and stime"),
        )),
    }
}

/// Clock ticks per second, the unit of [`cpu_ticks`].
pub fn ticks_per_second() -> io::Result<u64> {
    // SAFETY: sysconf reads a configuration value; no memory is involved.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&t| t > 0)
        .ok_or_else(|| io::Error::other("sysconf(_SC_CLK_TCK) failed"))
}

/// User plus system CPU time process `pid` has used so far.
pub fn cpu_time(pid: u32) -> io::Result<Duration> {
    Ok(Duration::from_secs_f64(
        cpu_ticks(pid)? as f64 / ticks_per_second()? as f64,
    ))
}

/// The CPU time the threads of process `pid` have spent running so far,
/// summed over those whose name (`comm`) is `name`, or over every thread
/// for `None`: the first field of each one's `/proc/PID/task/TID/schedstat`,
/// in nanoseconds, finer than [`cpu_ticks`]' clock ticks and per thread, so
/// that the server threads of an in-process server can be told from the
/// rest. Threads that have ended are not counted; one that ends while
/// being read is skipped.
pub fn threads_cpu_time(pid: u32, name: Option<&str>) -> io::Result<Duration> {
    let mut total = 0u64;
    for entry in fs::read_dir(format!("/proc/{pid}/task"))? {
        let dir = entry?.path();
        if let Some(name) = name {
            match fs::read_to_string(dir.join("comm")) {
                Ok(comm) if comm.trim_end() == name => {}
                _ => continue,
            }
        }
        let Ok(schedstat) = fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        let running = schedstat
            .split_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok());
        total += running.ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: no run time", dir.join("schedstat").display()),
            )
        })?;
    }
    Ok(Duration::from_nanos(total))
}

/// The open descriptors of process `pid`, by number, with what each refers
/// to (empty if the link cannot be read).
pub fn descriptors(pid: u32) -> io::Result<Vec<(u32, String)>> {
    let path = format!("/proc/{pid}/fd");
    let mut list = Vec::new();
    for entry in fs::read_dir(&path)? {
        let entry = entry?;
        let target = fs::read_link(entry.path())
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let number = entry
            .file_name()
            .to_string_lossy()
            .parse()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("{path}: {e}")))?;
        list.push((number, target));
    }
    list.sort();
    Ok(list)
}

/// How many descriptors process `pid` has open: the entries of
/// `/proc/PID/fd`, not counting the one this process opens to list them
/// when `pid` is its own.
pub fn open_descriptors(pid: u32) -> io::Result<usize> {
    let entries = fs::read_dir(format!("/proc/{pid}/fd"))?.count();
    let listing = usize::from(pid == std::process::id());
    Ok(entries.saturating_sub(listing))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_own_memory() {
        let m = memory(std::process::id()).expect("own /proc status");
        assert!(m.rss > 0 && m.peak >= m.rss);
    }

    #[test]
    fn reads_own_threads_cpu_time() {
        let pid = std::process::id();
        let all = threads_cpu_time(pid, None).expect("own /proc tasks");
        assert!(all > Duration::ZERO);
        let none = threads_cpu_time(pid, Some("no-such-thread")).expect("own /proc tasks");
        assert_eq!(none, Duration::ZERO);
    }

    #[test]
    fn counts_own_descriptors() {
        let pid = std::process::id();
        let fds = open_descriptors(pid).expect("own /proc fd");
        assert!(fds > 0);
        // The listing's own descriptor is in the list but not in the count.
        let listed = descriptors(pid).expect("own /proc fd");
        assert!(listed.len() >= fds, "{listed:?} against {fds}");
    }

    #[test]
    fn reads_own_cpu_time() {
        let pid = std::process::id();
        assert!(ticks_per_second().expect("clock ticks") > 0);
        let before = cpu_ticks(pid).expect("own /proc stat");
        let spin = std::time::Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {}
        assert!(cpu_ticks(pid).expect("own /proc stat") >= before);
        assert!(cpu_time(pid).is_ok());
    }

    #[test]
    fn a_missing_field_is_an_error() {
        let err = status_kib(std::process::id(), "NoSuchField").expect_err("no such field");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
