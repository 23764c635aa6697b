//! Cluster mode: every node runs the same domain over one totally ordered
//! log, the NATS log, held in a JetStream stream.
//!
//! [`bridge`] is the side thread that talks to NATS for the poll loop.

pub mod bridge;
