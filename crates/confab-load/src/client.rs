//! One simulated client of a load run — its role, the state of its
//! connection, its buffers and counters — and the text of the messages it
//! sends: every message starts with its send time as a fixed-width hex
//! stamp, which the receiver parses back to time the delivery.

use std::time::Instant;

use confab::protocol::Reply;

use super::wire::Wire;
use super::STAMP_LEN;

/// What a client does in its workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Role {
    /// Pipelines `broadcast` (fanout).
    Broadcaster,
    /// Receives stamped lines (fanout listener, direct receiver, ceiling
    /// reader).
    Listener,
    /// Pipelines `message` to the client `to` (direct).
    Sender { to: usize },
    /// Answers every message from its partner with one (pingpong).
    Echo,
    /// Stays online and counts presence lines (logins).
    Watcher,
    /// Logs in and out over and over (logins).
    Churner,
    /// Logs in once, stays, and records every login announced to it
    /// (storm).
    Arrival,
    /// Stays online doing nothing (idle).
    Idle,
    /// Pipelines `message` to a user who never logs in, and counts the
    /// server's acknowledgements (offline).
    OfflineSender,
    /// Connects, waits for the username prompt and closes, over and over
    /// (handshakes).
    Handshaker,
}

/// Where a client's connection is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// Not connected: not yet, or between a churner's cycles.
    Offline,
    /// Connecting, with no protocol to speak (ceiling readers).
    Connecting,
    /// Waiting for `Username: `.
    UserPrompt,
    /// Waiting for `Password: `.
    PassPrompt,
    /// Waiting for the welcome line.
    Welcome,
    /// Logged in (or connected, for ceiling readers).
    Online,
    /// Sent `logout`; waiting for the server to close.
    LoggingOut,
    /// Closed for good.
    Closed,
}

/// One client connection and its counters.
pub(super) struct Client {
    pub(super) role: Role,
    /// Index into the run's accounts (unused by ceiling readers).
    pub(super) account: usize,
    pub(super) phase: Phase,
    pub(super) wire: Wire,
    /// `<sender>: `, the start of the lines this client counts as
    /// deliveries; empty if it expects none.
    pub(super) prefix: Vec<u8>,
    /// The command this client sends, with the stamp of the last one
    /// queued at `stamp_at`; empty if it sends none.
    pub(super) template: Vec<u8>,
    pub(super) stamp_at: usize,
    /// Messages (or logins, or connections) this client started.
    pub(super) sent: u64,
    /// Deliveries (or prompts) this client received.
    pub(super) received: u64,
    /// When the current connection attempt started (churners,
    /// handshakers).
    pub(super) since: Instant,
    /// The local port of the connection (ceiling readers report their
    /// progress under it).
    pub(super) port: u16,
}

impl Client {
    pub(super) fn new(role: Role, account: usize, now: Instant) -> Client {
        Client {
            role,
            account,
            phase: Phase::Offline,
            wire: Wire::default(),
            prefix: Vec::new(),
            template: Vec::new(),
            stamp_at: 0,
            sent: 0,
            received: 0,
            since: now,
            port: 0,
        }
    }

    /// Sets the command this client sends: `<verb><text>\n` where the text
    /// is a zero stamp and padding up to `message_size` bytes.
    pub(super) fn set_template(&mut self, verb: &str, message_size: usize) {
        let mut template = verb.as_bytes().to_vec();
        self.stamp_at = template.len();
        template.resize(self.stamp_at + STAMP_LEN, b'0');
        template.resize(self.stamp_at + message_size, b'x');
        template.push(b'\n');
        self.template = template;
    }

    /// Whether the client waits for the server's answer: a churner, or a
    /// login in progress. The engine reads these before the bulk of
    /// receivers, so that a batch of presence lines does not delay them.
    pub(super) fn awaits_answer(&self) -> bool {
        self.role == Role::Churner
            || matches!(
                self.phase,
                Phase::UserPrompt | Phase::PassPrompt | Phase::Welcome
            )
    }

    /// Queues one command stamped with `now_ns`.
    pub(super) fn queue_stamped(&mut self, now_ns: u64) {
        let at = self.stamp_at;
        write_stamp(&mut self.template[at..at + STAMP_LEN], now_ns);
        self.wire.queue(&self.template);
        self.sent += 1;
    }
}

/// Writes `value` as [`STAMP_LEN`] lowercase hex digits.
pub(super) fn write_stamp(out: &mut [u8], value: u64) {
    for (i, byte) in out.iter_mut().enumerate() {
        let nibble = (value >> (4 * (STAMP_LEN - 1 - i))) & 0xf;
        *byte = b"0123456789abcdef"[nibble as usize];
    }
}

/// Reads a stamp written by [`write_stamp`] from the start of `text`.
pub(super) fn parse_stamp(text: &[u8]) -> Option<u64> {
    let digits = text.get(..STAMP_LEN)?;
    digits.iter().try_fold(0u64, |value, &digit| {
        let nibble = match digit {
            b'0'..=b'9' => digit - b'0',
            b'a'..=b'f' => digit - b'a' + 10,
            _ => return None,
        };
        Some(value << 4 | u64::from(nibble))
    })
}

/// Whether `line` is a presence line: `<user> logged in` or `logged out`.
pub(super) fn is_presence(line: &[u8]) -> bool {
    std::str::from_utf8(line).is_ok_and(|line| {
        Reply::read_user(line, |user| Reply::LoggedIn { user }).is_some()
            || Reply::read_user(line, |user| Reply::LoggedOut { user }).is_some()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_round_trip() {
        for value in [0, 1, 0xdead_beef, u64::MAX] {
            let mut text = [0u8; STAMP_LEN];
            write_stamp(&mut text, value);
            assert_eq!(parse_stamp(&text), Some(value));
        }
        assert_eq!(parse_stamp(b"00000000000000xz"), None);
        assert_eq!(parse_stamp(b"0001"), None);
    }

    #[test]
    fn presence_lines_are_recognised() {
        assert!(is_presence(b"user0001 logged in"));
        assert!(is_presence(b"user0001 logged out"));
        assert!(!is_presence(b"user0001: hello"));
    }
}
