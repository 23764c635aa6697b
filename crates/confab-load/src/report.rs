//! What a load run found.

use std::fmt;
use std::time::Duration;

use confab_testkit::procfs::Memory;

use super::Workload;

/// The server's memory at the start and at the end of a run (the end is
/// read before the clients disconnect).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerMemory {
    /// Before the first client connected.
    pub before: Memory,
    /// With every client still connected, after sending and draining.
    pub after: Memory,
}

impl ServerMemory {
    /// The growth of the resident size per connection, for `clients`
    /// connections: the `idle` figure.
    pub fn growth_per(&self, clients: usize) -> f64 {
        (self.after.rss as f64 - self.before.rss as f64) / clients.max(1) as f64
    }
}

/// Percentiles of the recorded latencies.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Latency {
    /// How many latencies were recorded.
    pub samples: u64,
    /// Median.
    pub p50: Duration,
    /// 99th percentile.
    pub p99: Duration,
    /// 99.9th percentile.
    pub p999: Duration,
    /// Largest.
    pub max: Duration,
}

/// The outcome of one load run.
#[derive(Debug, Clone)]
pub struct Report {
    /// What ran.
    pub workload: Workload,
    /// Connections held through the run (churners not included).
    pub clients: usize,
    /// From the start of sending to the last delivery (or login), or to the
    /// end of sending if nothing arrived; for `storm`, from the first
    /// connect to the last expected presence line.
    pub elapsed: Duration,
    /// Messages sent: broadcasts, direct messages, logins or connections
    /// started, or (for `ceiling`) whole lines written.
    pub sent: u64,
    /// Deliveries the clients should have received: a broadcast counts once
    /// per listener, a login or logout once per online user.
    pub expected: u64,
    /// Deliveries received (`storm`: expected ones, each counted once;
    /// `handshakes`: prompts).
    pub delivered: u64,
    /// Expected deliveries not received by the end of the drain.
    pub lost: u64,
    /// Presence lines heard more than once (`storm` only).
    pub duplicated: u64,
    /// Presence lines heard after that of a later login, or of a login
    /// that was not after the hearer's own (`storm` only).
    pub misordered: u64,
    /// Completed logins of churners (`logins`), or of every client
    /// (`storm`).
    pub logins: u64,
    /// From the first connect to the last welcome (`storm` only).
    pub logging_in: Option<Duration>,
    /// Every byte the clients received in the run, logins included.
    pub bytes_received: u64,
    /// Every line the clients received in the run, logins included.
    pub lines_received: u64,
    /// Connections the server closed or reset unexpectedly after setup.
    pub disconnects: u64,
    /// Lines that were neither deliveries nor expected chatter, and
    /// disconnect reasons: the first few, and how many in all.
    pub notices: Vec<String>,
    /// How many notices there were in all.
    pub notice_count: u64,
    /// Message latency (send to receipt) or, for `logins`, connect to
    /// welcome, for `handshakes` connect to prompt; `None` when nothing was
    /// timed.
    pub latency: Option<Latency>,
    /// The server's memory, when its process id was given.
    pub server_memory: Option<ServerMemory>,
}

impl Report {
    /// The workload's headline figure in [`Report::unit`]: deliveries,
    /// messages, logins or connections per second, or for `idle` the server's memory
    /// growth per connection (`None` without the server's memory).
    pub fn figure(&self) -> Option<f64> {
        match self.workload {
            Workload::Idle => Some(self.server_memory?.growth_per(self.clients)),
            Workload::Logins => Some(per_second(self.logins, self.elapsed)),
            Workload::Storm => Some(self.elapsed.as_secs_f64()),
            _ => Some(per_second(self.delivered, self.elapsed)),
        }
    }

    /// The unit of [`Report::figure`].
    pub fn unit(&self) -> &'static str {
        match self.workload {
            Workload::Fanout | Workload::Ceiling => "deliveries/s",
            Workload::Direct | Workload::Pingpong | Workload::Offline => "messages/s",
            Workload::Logins => "logins/s",
            Workload::Handshakes => "connections/s",
            Workload::Storm => "s",
            Workload::Idle => "bytes/conn",
        }
    }

    /// [`Report::figure`] for people: seconds to the millisecond, anything
    /// else as a whole number.
    pub fn figure_text(&self) -> String {
        match (self.figure(), self.workload) {
            (None, _) => "n/a".into(),
            (Some(seconds), Workload::Storm) => format!("{seconds:.3}"),
            (Some(figure), _) => format!("{figure:.0}"),
        }
    }

    /// Logins per second from the first connect to the last welcome
    /// (`storm` only).
    pub fn logins_per_second(&self) -> Option<f64> {
        self.logging_in.map(|d| per_second(self.logins, d))
    }

    /// Presence lines lost, duplicated or misordered: what fails a storm.
    pub fn faults(&self) -> u64 {
        self.lost + self.duplicated + self.misordered
    }
}

fn per_second(count: u64, elapsed: Duration) -> f64 {
    let seconds = elapsed.as_secs_f64();
    if seconds > 0.0 {
        count as f64 / seconds
    } else {
        0.0
    }
}

/// A byte count for people: `12.3 MiB`.
pub(super) fn mib(bytes: u64) -> String {
    format!("{:.1} MiB", bytes as f64 / (1024.0 * 1024.0))
}

/// A duration for people, in µs below a millisecond, else in ms.
pub(super) fn short(d: Duration) -> String {
    if d < Duration::from_millis(1) {
        format!("{} µs", d.as_micros())
    } else {
        format!("{:.2} ms", d.as_secs_f64() * 1000.0)
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "workload     {} ({} clients, {:.2} s)",
            self.workload.name(),
            self.clients,
            self.elapsed.as_secs_f64()
        )?;
        match self.figure() {
            Some(_) => writeln!(f, "figure       {} {}", self.figure_text(), self.unit())?,
            None => writeln!(f, "figure       n/a (give --server-pid)")?,
        }
        writeln!(f, "sent         {}", self.sent)?;
        writeln!(
            f,
            "delivered    {} of {} expected, lost {}",
            self.delivered, self.expected, self.lost
        )?;
        if self.workload == Workload::Storm {
            writeln!(
                f,
                "order        duplicated {}, misordered {}",
                self.duplicated, self.misordered
            )?;
        }
        if self.workload == Workload::Logins {
            writeln!(f, "logins       {}", self.logins)?;
        }
        if let (Some(took), Some(rate)) = (self.logging_in, self.logins_per_second()) {
            writeln!(
                f,
                "logins       {} in {:.3} s ({rate:.0} logins/s)",
                self.logins,
                took.as_secs_f64()
            )?;
        }
        if let Some(l) = &self.latency {
            writeln!(
                f,
                "latency      p50 {}  p99 {}  p99.9 {}  max {}  ({} samples)",
                short(l.p50),
                short(l.p99),
                short(l.p999),
                short(l.max),
                l.samples
            )?;
        }
        writeln!(
            f,
            "received     {} bytes in {} lines",
            self.bytes_received, self.lines_received
        )?;
        writeln!(f, "disconnects  {}", self.disconnects)?;
        if let Some(m) = &self.server_memory {
            writeln!(
                f,
                "server RSS   {} before, {} after, peak {}",
                mib(m.before.rss),
                mib(m.after.rss),
                mib(m.after.peak)
            )?;
        }
        write_notices(f, "notices      ", self.notice_count, &self.notices)
    }
}

/// Writes the notices block of a report, if there were any: `label` (the
/// word padded to the report's first column), how many there were and how
/// many were kept, then each kept one on its own indented line.
pub(super) fn write_notices(
    f: &mut fmt::Formatter<'_>,
    label: &str,
    count: u64,
    kept: &[String],
) -> fmt::Result {
    if count > 0 {
        writeln!(f, "{label}{count} (first {}):", kept.len())?;
        for notice in kept {
            writeln!(f, "  {notice}")?;
        }
    }
    Ok(())
}
