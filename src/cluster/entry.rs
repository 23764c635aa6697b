//! The log's entries: one [`Batch`] per message of the stream, the inputs
//! one node gathered in one iteration of its loop, with its clock.
//!
//! The encoding is binary and small: a version byte, then unsigned
//! integers as LEB128 varints and byte strings as a varint length and the
//! bytes. [`Batch::decode`] reads bytes from the network and never panics:
//! anything malformed is an [`DecodeError`], and every replica skips that
//! entry alike.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::codec::{put_accounts, put_bytes, put_u64, DecodeError, Reader};
use crate::credentials::Account;
use crate::protocol::LineError;
use crate::token::TOKEN_BYTES;

/// The format's version, the first byte of every batch.
const VERSION: u8 = 1;

/// One node's inputs of one loop iteration, as published to the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    /// Which run of which node published it.
    pub from: Incarnation,
    /// Its place among that incarnation's batches: 1, 2, 3, ...
    pub number: u64,
    /// The publisher's wall clock when it published, in milliseconds since
    /// the Unix epoch.
    pub clock_ms: u64,
    /// The inputs, in the order they happened on the publisher.
    pub inputs: Vec<Input>,
}

/// One run of a node: its name and a random number drawn at each start
/// (and each rejoin), so that entries of an earlier run are told apart.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Incarnation {
    /// The node's name (`--node`).
    pub node: String,
    /// Drawn at random when the run began.
    pub id: u64,
}

/// What every node of a cluster must agree on, because every replica's
/// domain runs with it: a node started with other values refuses to join.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    /// The ban's length, in milliseconds.
    pub block_ms: u64,
    /// The idle timeout, in milliseconds.
    pub timeout_ms: u64,
    /// The login deadline, in milliseconds.
    pub login_timeout_ms: u64,
    /// Failed passwords per address and ban length.
    pub max_failures_per_ip: u32,
    /// Messages per mailbox.
    pub mailbox_max: u64,
    /// Bytes of stored mail in all.
    pub store_max: u64,
    /// How long a node may be silent in the log before it is declared
    /// dead, in milliseconds.
    pub node_timeout_ms: u64,
}

impl Settings {
    /// Appends the settings.
    pub fn save(&self, out: &mut Vec<u8>) {
        for value in [
            self.block_ms,
            self.timeout_ms,
            self.login_timeout_ms,
            u64::from(self.max_failures_per_ip),
            self.mailbox_max,
            self.store_max,
            self.node_timeout_ms,
        ] {
            put_u64(out, value);
        }
    }

    /// Settings as [`Settings::save`] wrote them.
    pub fn load(r: &mut Reader<'_>) -> Result<Settings, DecodeError> {
        Ok(Settings {
            block_ms: r.u64()?,
            timeout_ms: r.u64()?,
            login_timeout_ms: r.u64()?,
            max_failures_per_ip: u32::try_from(r.u64()?)
                .map_err(|_| DecodeError("failure limit out of range"))?,
            mailbox_max: r.u64()?,
            store_max: r.u64()?,
            node_timeout_ms: r.u64()?,
        })
    }
}

/// One input of a batch. A connection is named by its serial on the
/// publishing node (unique within the incarnation).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Input {
    /// The first input of every incarnation: it joins the cluster.
    Hello,
    /// The cluster's settings and accounts, put in the log by the first
    /// node to join an empty one.
    Found {
        /// The settings every node must have.
        settings: Settings,
        /// The accounts every node must have.
        accounts: Vec<Account>,
    },
    /// The accounts, reloaded on the publisher (SIGHUP): every replica
    /// switches to them here.
    Accounts(Vec<Account>),
    /// A connection was accepted (or, on the web port, upgraded).
    Connect {
        /// Its serial.
        conn: u64,
        /// Where it comes from.
        ip: IpAddr,
        /// Whether its address is trusted.
        trusted: bool,
        /// A browser's WebSocket: never introduced for private messaging.
        web: bool,
    },
    /// A line it sent; a `startprivate` carries the token the publisher
    /// drew for it (`Some(None)`: none could be drawn).
    Line {
        /// The connection.
        conn: u64,
        /// The line, decoded.
        text: String,
        /// The token, for a `startprivate`.
        token: Option<Option<[u8; TOKEN_BYTES]>>,
    },
    /// A line that could not be read as text.
    LineError {
        /// The connection.
        conn: u64,
        /// What was wrong with it.
        error: LineError,
    },
    /// A password typed at the password prompt, checked by the publisher:
    /// only the verdict enters the log, never the password.
    Password {
        /// The connection.
        conn: u64,
        /// Whether it was right.
        matches: bool,
    },
    /// This many more lines of its offline mail reached its socket.
    Written {
        /// The connection.
        conn: u64,
        /// How many lines.
        lines: u64,
    },
    /// The connection is gone.
    Disconnect {
        /// The connection.
        conn: u64,
    },
    /// The node stops: its sessions end, announced like any leaver's.
    Leave,
}

impl Batch {
    /// The message id the batch is published with: JetStream drops a
    /// second copy with the same id, so a batch published again after a
    /// lost acknowledgement is stored once.
    pub fn message_id(&self) -> String {
        message_id(&self.from, self.number)
    }

    /// The batch's bytes.
    pub fn encode(&self) -> Vec<u8> {
        encode(&self.from, self.number, self.clock_ms, self.inputs.iter())
    }

    /// Reads a batch from the log.
    pub fn decode(bytes: &[u8]) -> Result<Batch, DecodeError> {
        let mut r = Reader::new(bytes);
        if r.byte()? != VERSION {
            return Err(DecodeError("unknown version"));
        }
        let node = r.string()?;
        let id = r.u64()?;
        let number = r.u64()?;
        let clock_ms = r.u64()?;
        let count = r.count()?;
        let mut inputs = Vec::new();
        for _ in 0..count {
            inputs.push(Input::decode(&mut r)?);
        }
        if !r.at_end() {
            return Err(DecodeError("bytes after the last input"));
        }
        Ok(Batch {
            from: Incarnation { node, id },
            number,
            clock_ms,
            inputs,
        })
    }
}

/// The message id of batch `number` of `from` (see [`Batch::message_id`]).
pub fn message_id(from: &Incarnation, number: u64) -> String {
    format!("{}-{:016x}-{}", from.node, from.id, number)
}

/// The bytes of the batch these parts make, without building it.
pub fn encode<'a>(
    from: &Incarnation,
    number: u64,
    clock_ms: u64,
    inputs: impl ExactSizeIterator<Item = &'a Input>,
) -> Vec<u8> {
    let mut out = Vec::with_capacity(64);
    out.push(VERSION);
    put_bytes(&mut out, from.node.as_bytes());
    put_u64(&mut out, from.id);
    put_u64(&mut out, number);
    put_u64(&mut out, clock_ms);
    put_u64(&mut out, inputs.len() as u64);
    for input in inputs {
        input.encode(&mut out);
    }
    out
}

/// Input tags.
mod tag {
    pub const HELLO: u8 = 1;
    pub const FOUND: u8 = 2;
    pub const ACCOUNTS: u8 = 3;
    pub const CONNECT: u8 = 4;
    pub const LINE: u8 = 5;
    pub const LINE_ERROR: u8 = 6;
    pub const PASSWORD: u8 = 7;
    pub const WRITTEN: u8 = 8;
    pub const DISCONNECT: u8 = 9;
    pub const LEAVE: u8 = 10;
}

impl Input {
    /// The connection the input is about, if it is about one.
    pub fn conn(&self) -> Option<u64> {
        match self {
            Input::Connect { conn, .. }
            | Input::Line { conn, .. }
            | Input::LineError { conn, .. }
            | Input::Password { conn, .. }
            | Input::Written { conn, .. }
            | Input::Disconnect { conn } => Some(*conn),
            Input::Hello | Input::Found { .. } | Input::Accounts(_) | Input::Leave => None,
        }
    }

    /// Bytes it takes in a batch, about.
    pub fn size(&self) -> usize {
        match self {
            Input::Line { text, .. } => text.len() + 32,
            Input::Found { accounts, .. } | Input::Accounts(accounts) => accounts
                .iter()
                .map(|a| a.username.len() + a.password.len() + 4)
                .sum::<usize>()
                .saturating_add(64),
            _ => 24,
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Input::Hello => out.push(tag::HELLO),
            Input::Found { settings, accounts } => {
                out.push(tag::FOUND);
                settings.save(out);
                put_accounts(out, accounts);
            }
            Input::Accounts(accounts) => {
                out.push(tag::ACCOUNTS);
                put_accounts(out, accounts);
            }
            Input::Connect {
                conn,
                ip,
                trusted,
                web,
            } => {
                out.push(tag::CONNECT);
                put_u64(out, *conn);
                match ip {
                    IpAddr::V4(v4) => {
                        out.push(4);
                        out.extend_from_slice(&v4.octets());
                    }
                    IpAddr::V6(v6) => {
                        out.push(6);
                        out.extend_from_slice(&v6.octets());
                    }
                }
                out.push(u8::from(*trusted) | (u8::from(*web) << 1));
            }
            Input::Line { conn, text, token } => {
                out.push(tag::LINE);
                put_u64(out, *conn);
                put_bytes(out, text.as_bytes());
                match token {
                    None => out.push(0),
                    Some(None) => out.push(1),
                    Some(Some(bytes)) => {
                        out.push(2);
                        out.extend_from_slice(bytes);
                    }
                }
            }
            Input::LineError { conn, error } => {
                out.push(tag::LINE_ERROR);
                put_u64(out, *conn);
                out.push(match error {
                    LineError::TooLong => 0,
                    LineError::InvalidEncoding => 1,
                });
            }
            Input::Password { conn, matches } => {
                out.push(tag::PASSWORD);
                put_u64(out, *conn);
                out.push(u8::from(*matches));
            }
            Input::Written { conn, lines } => {
                out.push(tag::WRITTEN);
                put_u64(out, *conn);
                put_u64(out, *lines);
            }
            Input::Disconnect { conn } => {
                out.push(tag::DISCONNECT);
                put_u64(out, *conn);
            }
            Input::Leave => out.push(tag::LEAVE),
        }
    }

    fn decode(r: &mut Reader<'_>) -> Result<Input, DecodeError> {
        Ok(match r.byte()? {
            tag::HELLO => Input::Hello,
            tag::FOUND => Input::Found {
                settings: Settings::load(r)?,
                accounts: r.accounts()?,
            },
            tag::ACCOUNTS => Input::Accounts(r.accounts()?),
            tag::CONNECT => {
                let conn = r.u64()?;
                let ip = match r.byte()? {
                    4 => IpAddr::V4(Ipv4Addr::from(r.array::<4>()?)),
                    6 => IpAddr::V6(Ipv6Addr::from(r.array::<16>()?)),
                    _ => return Err(DecodeError("unknown address family")),
                };
                let flags = r.byte()?;
                Input::Connect {
                    conn,
                    ip,
                    trusted: flags & 1 != 0,
                    web: flags & 2 != 0,
                }
            }
            tag::LINE => {
                let conn = r.u64()?;
                let text = r.string()?;
                let token = match r.byte()? {
                    0 => None,
                    1 => Some(None),
                    2 => Some(Some(r.array::<TOKEN_BYTES>()?)),
                    _ => return Err(DecodeError("unknown token mark")),
                };
                Input::Line { conn, text, token }
            }
            tag::LINE_ERROR => {
                let conn = r.u64()?;
                let error = match r.byte()? {
                    0 => LineError::TooLong,
                    1 => LineError::InvalidEncoding,
                    _ => return Err(DecodeError("unknown line error")),
                };
                Input::LineError { conn, error }
            }
            tag::PASSWORD => Input::Password {
                conn: r.u64()?,
                matches: r.byte()? != 0,
            },
            tag::WRITTEN => Input::Written {
                conn: r.u64()?,
                lines: r.u64()?,
            },
            tag::DISCONNECT => Input::Disconnect { conn: r.u64()? },
            tag::LEAVE => Input::Leave,
            _ => return Err(DecodeError("unknown input")),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Batch {
        Batch {
            from: Incarnation {
                node: "alpha".into(),
                id: 0xdead_beef,
            },
            number: 300,
            clock_ms: 1_764_000_000_000,
            inputs: vec![
                Input::Hello,
                Input::Found {
                    settings: Settings {
                        block_ms: 60_000,
                        timeout_ms: 300_000,
                        login_timeout_ms: 30_000,
                        max_failures_per_ip: 20,
                        mailbox_max: 1000,
                        store_max: 1 << 30,
                        node_timeout_ms: 5000,
                    },
                    accounts: vec![Account {
                        username: "yoda".into(),
                        password: "wise".into(),
                    }],
                },
                Input::Accounts(Vec::new()),
                Input::Connect {
                    conn: 7,
                    ip: IpAddr::V6(Ipv6Addr::LOCALHOST),
                    trusted: true,
                    web: false,
                },
                Input::Connect {
                    conn: 8,
                    ip: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                    trusted: false,
                    web: true,
                },
                Input::Line {
                    conn: 7,
                    text: "message hans héllo".into(),
                    token: None,
                },
                Input::Line {
                    conn: 7,
                    text: "startprivate hans".into(),
                    token: Some(Some([9; TOKEN_BYTES])),
                },
                Input::Line {
                    conn: 7,
                    text: "startprivate hans".into(),
                    token: Some(None),
                },
                Input::LineError {
                    conn: 8,
                    error: LineError::InvalidEncoding,
                },
                Input::Password {
                    conn: 8,
                    matches: true,
                },
                Input::Written {
                    conn: 7,
                    lines: 1 << 40,
                },
                Input::Disconnect { conn: u64::MAX },
                Input::Leave,
            ],
        }
    }

    #[test]
    fn every_input_round_trips() {
        let batch = sample();
        assert_eq!(Batch::decode(&batch.encode()), Ok(batch));
    }

    #[test]
    fn every_truncation_and_every_extra_byte_is_an_error() {
        let bytes = sample().encode();
        for end in 0..bytes.len() {
            assert!(Batch::decode(&bytes[..end]).is_err(), "cut at {end}");
        }
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Batch::decode(&longer).is_err());
    }

    #[test]
    fn flipped_bytes_never_panic() {
        let bytes = sample().encode();
        for at in 0..bytes.len() {
            for bit in 0..8 {
                let mut bad = bytes.clone();
                bad[at] ^= 1 << bit;
                let _ = Batch::decode(&bad);
            }
        }
        let huge = [VERSION, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f];
        assert!(Batch::decode(&huge).is_err());
    }

    #[test]
    fn the_message_id_names_the_incarnation_and_the_number() {
        assert_eq!(sample().message_id(), "alpha-00000000deadbeef-300");
    }
}
