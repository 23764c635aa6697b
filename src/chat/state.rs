//! The whole state of the domain as bytes, and back: what a node of a
//! cluster loads to join the others at a position of their shared log of
//! inputs, and then replays the rest of the log from.
//!
//! [`Chat::save_state`] writes everything a future call can depend on —
//! every user (accounts and those kept only for their records) with its
//! failure count, ban, block list, last-seen time and mailbox; every
//! session with its login stage, activity, address, private-messaging
//! registration, group and epoch; who is online in which order; the
//! per-address failure windows; every armed timer, stale ones included
//! (they decide [`Chat::next_deadline`]); the epoch counter; whether
//! storage is available; and the wall clock that dates mail.
//! [`Chat::load_state`] rebuilds a domain that, given the same calls at
//! the same wall times, answers every one of them exactly as the saved
//! one would: the same effects in the same order, the same records, the
//! same deadlines. What is derived (the name index, each online user's
//! place in the online list, the departures by time, the bytes of stored
//! mail) is rebuilt from what it derives from, not written.
//!
//! Not saved: the accounts' passwords (the loader is given the accounts),
//! the configuration (given too), the [`TokenSource`](crate::token::TokenSource)
//! (a loaded domain draws from the operating system, as a new one does),
//! whether changes are recorded ([`Chat::record_changes`] is the loader's
//! to call), and the outbox: a state is saved between calls, once the
//! outbox has been drained, and a loaded domain starts with an empty one.
//!
//! Instants cannot be written down, so every one is written as wall time
//! through the saver's [`WallClock`] and read back through the loader's:
//! the saver's instant `t` becomes the loader's instant of the same wall
//! time. A node whose clock pairs a different instant with the same wall
//! time (another process) therefore loads the same moments as its own.
//! Wall time is kept to the nanosecond, so an instant reads back exactly,
//! and the order of any two instants is kept.
//!
//! The encoding, every number a LEB128 varint unless said otherwise:
//!
//! ```text
//! magic "CONFABST" | version (u16 LE) | total length (u64 LE)
//! | users | sessions | presence | failures | timers | storage
//! | CRC-32 (u32 LE) of everything before it
//! ```
//!
//! Each section is its tag (one byte, 1 to 6 in that order), its length
//! and its payload; the payloads are described in `save`. An instant is
//! the zigzag-encoded milliseconds since the Unix epoch and the
//! nanoseconds into that millisecond. Lists are written in a fixed order
//! (users and online users in the domain's order, sessions by id, windows
//! by address, timers by when they are due), so equal states give equal
//! bytes.

mod instants;
mod load;
mod save;
mod wire;

use std::fmt;

/// The first bytes of every saved state.
const MAGIC: [u8; 8] = *b"CONFABST";

/// The version of the encoding this build writes and reads.
const VERSION: u16 = 1;

/// Bytes before the first section: magic, version, total length.
pub(super) const HEADER: usize = MAGIC.len() + 2 + 8;

/// Bytes of the CRC at the end.
pub(super) const TRAILER: usize = 4;

/// The section tags, in the order they are written.
mod tag {
    pub(super) const USERS: u8 = 1;
    pub(super) const SESSIONS: u8 = 2;
    pub(super) const PRESENCE: u8 = 3;
    pub(super) const FAILURES: u8 = 4;
    pub(super) const TIMERS: u8 = 5;
    pub(super) const STORAGE: u8 = 6;
}

/// The bits of a user's flags byte.
mod user_bits {
    pub(super) const BANNED: u8 = 1;
    pub(super) const SEEN: u8 = 2;
    pub(super) const ALL: u8 = BANNED | SEEN;
}

/// The bits of a session's flags byte.
mod session_bits {
    pub(super) const NO_PRIVATE: u8 = 1;
    pub(super) const TRUSTED: u8 = 2;
    pub(super) const STAMPS: u8 = 4;
    pub(super) const END_PENDING: u8 = 8;
    pub(super) const LOGIN_BY: u8 = 16;
    pub(super) const PORT: u8 = 32;
    pub(super) const FINGERPRINT: u8 = 64;
    pub(super) const IPV6: u8 = 128;
}

/// The bits of the storage section's flags byte.
mod storage_bits {
    pub(super) const AVAILABLE: u8 = 1;
    pub(super) const WALL_CLOCK: u8 = 2;
    pub(super) const ALL: u8 = AVAILABLE | WALL_CLOCK;
}

/// How a session's login stage is written.
mod stage_tag {
    pub(super) const USERNAME: u8 = 0;
    pub(super) const PASSWORD: u8 = 1;
    pub(super) const VERIFYING: u8 = 2;
    pub(super) const LOGGED_IN: u8 = 3;
}

/// How a timer is written.
mod timer_tag {
    pub(super) const IDLE: u8 = 0;
    pub(super) const BAN_END: u8 = 1;
}

/// The highest session id a state may hold: sessions are kept in a vector
/// indexed by id, so a larger id in damaged input would ask for a huge
/// allocation (at this one, about 90 MB of empty slots). A server's ids
/// are slab keys of its connections, below its descriptor limit, which
/// Linux caps at 2^20 by default.
const MAX_SESSION_ID: usize = (1 << 20) - 1;

/// The highest group a state may hold, for the same reason (idle timers
/// are kept in a vector indexed by group): a cluster's groups are its
/// nodes.
const MAX_GROUP: u32 = (1 << 16) - 1;

/// The highest epoch and mail sequence number a state may hold, so that
/// counting on from them cannot overflow: no server gets near it.
const MAX_COUNTER: u64 = 1 << 62;

/// Why [`Chat::load_state`](super::Chat::load_state) refused its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StateError {
    /// The bytes do not start with the magic of a saved state.
    BadMagic,
    /// Saved by a version of the encoding this build does not read.
    Version(u16),
    /// Shorter than the length the state declares (or than a header).
    Truncated {
        /// The length declared (0 if there is no whole header).
        declared: u64,
        /// The length given.
        actual: usize,
    },
    /// Longer than the length the state declares.
    TrailingBytes {
        /// The length declared.
        declared: u64,
        /// The length given.
        actual: usize,
    },
    /// The CRC does not match the bytes: they were damaged.
    Crc {
        /// The CRC written at the end.
        stored: u32,
        /// The CRC of the bytes.
        computed: u32,
    },
    /// Intact, but not a state this build writes; says what is wrong.
    Malformed(&'static str),
    /// A user logged in in the state has no account among those given:
    /// load with the accounts it was saved with, then
    /// [`Chat::reload_accounts`](super::Chat::reload_accounts), which
    /// closes the session and tells the others.
    OnlineWithoutAccount(String),
}

impl fmt::Display for StateError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateError::BadMagic => f.write_str("not a saved chat state (bad magic)"),
            StateError::Version(version) => write!(
                f,
                "chat state of version {version}; this build reads version {VERSION}"
            ),
            StateError::Truncated {
                declared: 0,
                actual,
            } => write!(
                f,
                "chat state truncated: {actual} bytes, less than a header"
            ),
            StateError::Truncated { declared, actual } => write!(
                f,
                "chat state truncated: {actual} bytes of the {declared} it declares"
            ),
            StateError::TrailingBytes { declared, actual } => write!(
                f,
                "chat state of {declared} bytes followed by {} more",
                (*actual as u64).saturating_sub(*declared)
            ),
            StateError::Crc { stored, computed } => write!(
                f,
                "chat state damaged: CRC {computed:08x} where {stored:08x} was written"
            ),
            StateError::Malformed(what) => write!(f, "chat state malformed: {what}"),
            StateError::OnlineWithoutAccount(user) => write!(
                f,
                "chat state has {user} logged in, but no account {user} was given"
            ),
        }
    }
}

impl std::error::Error for StateError {}
