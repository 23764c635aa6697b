//! Cluster mode: confab nodes as replicas of one chat over a NATS
//! JetStream stream (`--cluster`; see `docs/cluster.md`).
//!
//! Every node runs the same [`Chat`](crate::chat::Chat) over one totally
//! ordered log of inputs: each node publishes what happened on its own
//! connections as [`entry::Batch`]es, and applies the whole log in order
//! through its [`replica::Replica`], performing only the effects for its
//! own connections.

pub mod bridge;
pub mod codec;
pub mod entry;
pub mod replica;
pub mod snapshot;

use std::time::Duration;

/// How a server joins a cluster (the `--cluster` options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// The NATS server, `nats://HOST:PORT`.
    pub url: String,
    /// This node's name; `None`: the host name and the listening port.
    pub node: Option<String>,
    /// How long a node may be silent in the log before it is dead.
    pub node_timeout: Duration,
    /// The JetStream stream holding the log.
    pub stream: String,
    /// How many copies of the stream JetStream keeps, when it creates it.
    pub replicas: usize,
    /// How many entries apart snapshots are taken.
    pub snapshot_every: u64,
}

impl ClusterConfig {
    /// A cluster at `url` with the defaults: the node named after the
    /// host, a 5 s node timeout, the stream `confab`, one replica, a
    /// snapshot every 10,000 entries.
    pub fn new(url: &str) -> ClusterConfig {
        ClusterConfig {
            url: url.to_owned(),
            node: None,
            node_timeout: Duration::from_secs(5),
            stream: "confab".to_owned(),
            replicas: 1,
            snapshot_every: 10_000,
        }
    }
}
