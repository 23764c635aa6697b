//! confab: a chat server for one core, and its terminal client.
//!
//! The server is one thread and one `mio` poll loop ([`server`]) around a
//! pure domain ([`chat`]) that speaks the text protocol of [`protocol`].
//! See `README.md` for how to run it and `protocol.md` for the contract.

pub mod atomic;
pub mod chat;
pub mod client;
pub mod cluster;
pub mod credentials;
pub mod deadlines;
pub mod fdlimit;
pub mod fingerprint;
pub mod identity;
pub mod journal;
pub mod net;
pub mod passwords;
pub mod protocol;
pub mod rate;
pub mod server;
pub mod token;
pub mod trust;
