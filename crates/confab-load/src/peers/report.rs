//! What a comparison run found, printed in the layout of confab-load's
//! report (`figure`, `latency`, ... lines), so that `scripts/compare.sh`
//! reads both the same way.

use std::fmt;
use std::time::Duration;

use super::{Peer, PeerWorkload};
use crate::report::{mib, short, write_notices, Latency, ServerMemory};

/// The outcome of one comparison run.
#[derive(Debug, Clone)]
pub struct PeerReport {
    /// The server driven.
    pub peer: Peer,
    /// What ran.
    pub workload: PeerWorkload,
    /// Connections of the run.
    pub clients: usize,
    /// Storm clients set up at once (storm only).
    pub in_flight: Option<usize>,
    /// From the start of sending (storm: of the first connect) to the last
    /// delivery, or the configured duration if nothing arrived.
    pub elapsed: Duration,
    /// Messages published (storm: presences).
    pub sent: u64,
    /// Deliveries the clients had to receive: a fanout message once per
    /// subscriber, a presence once per client subscribed before it was
    /// published.
    pub expected: u64,
    /// Of those, how many arrived.
    pub delivered: u64,
    /// Expected deliveries not received by the end of the drain.
    pub lost: u64,
    /// Storm: presences received that were published while the receiver's
    /// subscription was on its way, which the server may or may not
    /// deliver.
    pub extra: u64,
    /// Every byte the clients received.
    pub bytes_received: u64,
    /// Connections the server closed or reset after the setup.
    pub disconnects: u64,
    /// Error replies, unexpected messages and disconnect reasons: the first
    /// few.
    pub notices: Vec<String>,
    /// How many notices there were in all.
    pub notice_count: u64,
    /// Message latency, send to receipt.
    pub latency: Option<Latency>,
    /// The server's memory, when its process id was given.
    pub server_memory: Option<ServerMemory>,
}

impl PeerReport {
    /// The headline figure in [`PeerReport::unit`]: deliveries or
    /// messages per second, the storm's seconds, or the server's memory
    /// growth per connection (`None` without its memory).
    pub fn figure(&self) -> Option<f64> {
        match self.workload {
            PeerWorkload::Idle => Some(self.server_memory?.growth_per(self.clients)),
            PeerWorkload::Storm => Some(self.elapsed.as_secs_f64()),
            _ => {
                let seconds = self.elapsed.as_secs_f64();
                Some(if seconds > 0.0 {
                    self.delivered as f64 / seconds
                } else {
                    0.0
                })
            }
        }
    }

    /// The unit of [`PeerReport::figure`].
    pub fn unit(&self) -> &'static str {
        match self.workload {
            PeerWorkload::Fanout => "deliveries/s",
            PeerWorkload::Direct | PeerWorkload::Pingpong => "messages/s",
            PeerWorkload::Storm => "s",
            PeerWorkload::Idle => "bytes/conn",
        }
    }
}

impl fmt::Display for PeerReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let in_flight = self
            .in_flight
            .map_or(String::new(), |n| format!(", {n} in flight"));
        writeln!(
            f,
            "workload     {} against {} ({} clients{in_flight}, {:.2} s)",
            self.workload.name(),
            self.peer.name(),
            self.clients,
            self.elapsed.as_secs_f64()
        )?;
        match (self.figure(), self.workload) {
            (Some(figure), PeerWorkload::Storm) => writeln!(f, "figure       {figure:.3} s")?,
            (Some(figure), _) => writeln!(f, "figure       {figure:.0} {}", self.unit())?,
            (None, _) => writeln!(f, "figure       n/a (give --server-pid)")?,
        }
        writeln!(f, "sent         {}", self.sent)?;
        write!(
            f,
            "delivered    {} of {} expected, lost {}",
            self.delivered, self.expected, self.lost
        )?;
        if self.workload == PeerWorkload::Storm {
            write!(f, " (and {} published during a subscription)", self.extra)?;
        }
        writeln!(f)?;
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
        writeln!(f, "received     {} bytes", self.bytes_received)?;
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
