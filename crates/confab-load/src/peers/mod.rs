//! The comparison driver: confab's workloads against other pub/sub servers
//! (nats-server, Redis), behind the `confab-peer` binary, so that
//! `scripts/compare.sh` can put each `cargo bench` row beside the same
//! work done by them on the same machine.
//!
//! It is the load engine's design again, for other protocols: every client
//! on one `mio` loop, each connection a [`crate::wire::Wire`], every
//! message stamped with its send time ([`crate::STAMP_LEN`] hex digits at
//! the start of its payload) and timed at its receiver into the same kind
//! of histogram, senders held to a window of bytes in flight per receiver
//! so that neither server ever has a reason to cut a slow consumer (NATS's
//! `max_pending` is 64 MiB, Redis's pub/sub output limit 32 MiB; the window
//! is 64 KiB), and whatever is not delivered by the end of the drain is
//! reported as lost. It is a driver of its own rather than a mode of the
//! engine because everything the engine does between the socket and the
//! counters — prompts, logins, presence lines, confab's replies — is
//! confab's protocol; what the two share is below that (the wire, the
//! stamps, the report's pieces).
//!
//! How each workload maps onto pub/sub (subjects for NATS, channels for
//! Redis):
//!
//! - `fanout`: one publisher, CLIENTS subscribers of one subject.
//! - `direct`: CLIENTS pairs; each receiver subscribes to a subject of its
//!   own, its sender publishes to it.
//! - `pingpong`: CLIENTS clients in pairs, each subscribed to its own
//!   subject and publishing to its partner's: each starts with one message
//!   and answers every message it receives, as confab's `pingpong` does.
//! - `storm`: CLIENTS clients connect, at most IN_FLIGHT at a time; each
//!   subscribes to one presence subject and, once the subscription is
//!   confirmed, publishes its presence once; it is done when the server
//!   acknowledged that (NATS: the `PONG` of a `PING` after the `PUB`;
//!   Redis: the `PUBLISH` reply). Every client must receive the presence of
//!   every client that published after its own subscription was
//!   confirmed; the figure is the time from the first connect until the
//!   last of those arrived.
//! - `idle`: CLIENTS connections, each subscribed to a subject of its own,
//!   held for DURATION; the figure is the server's resident memory growth
//!   per connection.

mod driver;
mod nats;
mod protocol;
mod redis;
mod report;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

pub use report::PeerReport;

/// The server on the other end.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Peer {
    /// nats-server, over the NATS client protocol.
    Nats,
    /// Redis, over RESP3 (`HELLO 3`).
    Redis,
}

impl Peer {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Peer::Nats => "nats",
            Peer::Redis => "redis",
        }
    }
}

/// The workloads that have a pub/sub equivalent (see the module
/// documentation for how each maps onto subjects).
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum PeerWorkload {
    /// One publisher, CLIENTS subscribers (default 1,000). Figure:
    /// deliveries/s.
    Fanout,
    /// CLIENTS pairs (default 100), each sender pipelining to its
    /// receiver's subject. Figure: messages/s delivered.
    Direct,
    /// CLIENTS clients (default 50, rounded down to even) in pairs, one
    /// message in flight per client. Figure: messages/s and latency.
    Pingpong,
    /// CLIENTS clients (default 5,000) each subscribe to presence and
    /// publish their own once, IN_FLIGHT at a time. Figure: seconds until
    /// the last presence arrived.
    Storm,
    /// CLIENTS subscribed connections (default 10,000) held for DURATION.
    /// Figure: server memory growth per connection; needs --server-pid.
    Idle,
}

impl PeerWorkload {
    /// The name on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            PeerWorkload::Fanout => "fanout",
            PeerWorkload::Direct => "direct",
            PeerWorkload::Pingpong => "pingpong",
            PeerWorkload::Storm => "storm",
            PeerWorkload::Idle => "idle",
        }
    }

    /// The default of [`PeerConfig::clients`], as for confab's workload of
    /// the same name.
    pub fn default_clients(self) -> usize {
        match self {
            PeerWorkload::Fanout => 1000,
            PeerWorkload::Direct => 100,
            PeerWorkload::Pingpong => 50,
            PeerWorkload::Storm => 5000,
            PeerWorkload::Idle => 10_000,
        }
    }
}

/// Everything a comparison run needs.
#[derive(Debug, Clone)]
pub struct PeerConfig {
    /// The protocol to speak.
    pub peer: Peer,
    /// What to do.
    pub workload: PeerWorkload,
    /// The server; must be a loopback address.
    pub target: SocketAddr,
    /// The workload's main count (see [`PeerWorkload::default_clients`]).
    pub clients: usize,
    /// Most storm clients between their connect and the acknowledgement
    /// of their presence.
    pub in_flight: usize,
    /// How long to send (idle: how long to hold the connections).
    pub duration: Duration,
    /// Bytes of each message's payload, its stamp included; at least
    /// [`STAMP_LEN`], at most [`MAX_MESSAGE_SIZE`]. The storm's presence
    /// payloads are two stamps (send time and sequence number).
    pub message_size: usize,
    /// Most bytes of delivery frames a sender keeps in flight towards one
    /// receiver (the slowest, for fanout).
    pub window: usize,
    /// After sending stops (storm: after the last client is done), how
    /// long to wait for what is still in flight.
    pub drain: Duration,
    /// How long connecting every client may take (storm: the whole storm).
    pub setup_timeout: Duration,
    /// The server's process id, to report its memory.
    pub server_pid: Option<u32>,
}

impl PeerConfig {
    /// The defaults for `workload` against `peer` at `target`, as
    /// [`crate::LoadConfig::new`]'s: 5 s, 64-byte messages, a 64 KiB
    /// window, 2 s of drain, 60 s to set up; 100 storm clients in flight.
    pub fn new(peer: Peer, workload: PeerWorkload, target: SocketAddr) -> PeerConfig {
        PeerConfig {
            peer,
            workload,
            target,
            clients: workload.default_clients(),
            in_flight: 100,
            duration: Duration::from_secs(5),
            message_size: 64,
            window: 64 * 1024,
            drain: Duration::from_secs(2),
            setup_timeout: Duration::from_secs(60),
            server_pid: None,
        }
    }

    fn validate(&self) -> io::Result<()> {
        let invalid = |what: String| Err(io::Error::new(io::ErrorKind::InvalidInput, what));
        super::check_target_and_size(Some(self.target), self.message_size, "comparison runs")?;
        let least = match self.workload {
            PeerWorkload::Pingpong => 2,
            PeerWorkload::Idle => 0,
            _ => 1,
        };
        if self.clients < least {
            return invalid(format!(
                "{} needs at least {least} clients",
                self.workload.name()
            ));
        }
        if self.in_flight == 0 {
            return invalid("storm needs at least 1 client in flight".into());
        }
        Ok(())
    }
}

/// Runs one comparison run to the end and reports it. Fails if a client
/// cannot connect and subscribe within [`PeerConfig::setup_timeout`] (or
/// the server's memory cannot be read); what happens after the setup —
/// disconnects, errors, lost messages — is reported, not an error.
pub fn run(config: &PeerConfig) -> io::Result<PeerReport> {
    config.validate()?;
    match config.peer {
        Peer::Nats => driver::run::<nats::Nats>(config),
        Peer::Redis => driver::run::<redis::Redis>(config),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_match_the_command_line() {
        use clap::ValueEnum;
        for workload in PeerWorkload::value_variants() {
            let value = workload.to_possible_value().expect("a value");
            assert_eq!(value.get_name(), workload.name());
        }
        for peer in Peer::value_variants() {
            let value = peer.to_possible_value().expect("a value");
            assert_eq!(value.get_name(), peer.name());
        }
    }

    #[test]
    fn remote_targets_are_refused() {
        let target = "10.0.0.1:4222".parse().expect("address");
        let config = PeerConfig::new(Peer::Nats, PeerWorkload::Direct, target);
        let err = run(&config).expect_err("not loopback");
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }
}
