//! Bytes on connections, below the protocol: the one write path every
//! non-blocking connection shares ([`link`]).

pub mod link;
