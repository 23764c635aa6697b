//! Bytes on connections, below the protocol: cutting input into bounded
//! lines ([`lines`]), the output waiting for a socket ([`outbuf`]), and the
//! one write path every non-blocking connection shares ([`link`]).

pub mod lines;
pub mod link;
pub mod outbuf;
