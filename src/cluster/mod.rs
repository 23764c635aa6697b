//! Cluster mode: confab nodes as replicas of one chat over a NATS
//! JetStream stream (`--cluster`; see `docs/cluster.md`).
//!
//! Every node runs the same [`Chat`](crate::chat::Chat) over one totally
//! ordered log of inputs: each node publishes what happened on its own
//! connections as [`entry::Batch`]es, and applies the whole log in order
//! through its [`replica::Replica`], performing only the effects for its
//! own connections.

pub mod entry;
pub mod replica;
