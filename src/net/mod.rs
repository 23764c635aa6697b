//! Bytes on connections, below the protocol: cutting input into bounded
//! lines ([`lines`]), the output waiting for a socket ([`outbuf`]), the
//! one write path every non-blocking connection shares ([`link`]), and
//! what it writes to: a plain socket, a TLS session over one, or a
//! WebSocket over either ([`stream`], [`tls`], [`web`]), and which
//! certificates a client trusts ([`trust`]).

pub mod lines;
pub mod link;
pub mod outbuf;
pub mod stream;
pub mod tls;
pub mod trust;
pub mod web;
