//! What the peer driver needs of a pub/sub protocol, whatever its framing:
//! the bytes a connection starts with, a publication (built once per
//! client as a template whose payload is overwritten in place), a request
//! whose reply confirms everything before it, and the frames the server
//! sends, cut one at a time from the start of what a connection received.

/// A publication prepared once and sent many times: its bytes with the
/// payload at `payload_at`, which the driver overwrites with each message's
/// stamp before queueing the bytes.
#[derive(Debug, Clone, Default)]
pub(super) struct Publication {
    /// The whole command, payload included.
    pub(super) bytes: Vec<u8>,
    /// Where the payload starts in `bytes`.
    pub(super) payload_at: usize,
}

/// One frame from the server, as far as the driver cares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Frame<'a> {
    /// A message delivered on one of the connection's subscriptions: its
    /// payload.
    Message(&'a [u8]),
    /// The reply to one request, in the order they were sent: NATS's
    /// `PONG`; for Redis any reply, the integer of a `PUBLISH` (how many
    /// subscribers received it) given.
    Reply(Option<i64>),
    /// The server asks whether the client is alive (NATS `PING`).
    Ping,
    /// An error reply, its text.
    Error(&'a [u8]),
    /// Something that answers no request (NATS `INFO` and `+OK`, a RESP3
    /// attribute).
    Other,
}

/// The stream cannot be the protocol: the driver gives the connection up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct BadFrame(pub(super) String);

/// A pub/sub protocol the driver speaks. Subjects (NATS) and channels
/// (Redis) are both called subjects here.
pub(super) trait Protocol {
    /// The name of the server, for reports.
    const NAME: &'static str;

    /// Queues what a new connection sends first, subscribing it to
    /// `subscribe` if given, and returns how many replies confirm that it
    /// is ready (its subscription in place).
    fn hello(out: &mut Vec<u8>, subscribe: Option<&[u8]>) -> u32;

    /// A publication of `payload_len` bytes to `subject`.
    fn publication(subject: &[u8], payload_len: usize) -> Publication;

    /// How many replies one publication draws.
    const PUBLISH_REPLIES: u32;

    /// Queues a request whose reply comes after everything sent before it
    /// has been handled, if publications draw no reply of their own;
    /// returns how many replies it draws.
    fn sync(out: &mut Vec<u8>) -> u32;

    /// Queues the answer to [`Frame::Ping`].
    fn pong(out: &mut Vec<u8>);

    /// Bytes of the frame delivering a `payload_len`-byte message
    /// published to `subject`, for the flow-control window.
    fn delivery_len(subject: &[u8], payload_len: usize) -> usize;

    /// Cuts the first frame off `buf`: the frame and its length, `None`
    /// while it is incomplete.
    fn frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, BadFrame>;
}

/// The decimal digits of `n`.
pub(super) fn digits(n: usize) -> usize {
    n.checked_ilog10().map_or(1, |log| log as usize + 1)
}

/// Parses an unsigned decimal number of ASCII digits (nothing else).
pub(super) fn parse_decimal(text: &[u8]) -> Option<usize> {
    if text.is_empty() || text.len() > 18 {
        return None;
    }
    text.iter().try_fold(0usize, |value, &digit| {
        digit
            .is_ascii_digit()
            .then(|| value * 10 + usize::from(digit - b'0'))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_digits() {
        assert_eq!(digits(0), 1);
        assert_eq!(digits(9), 1);
        assert_eq!(digits(10), 2);
        assert_eq!(digits(1_000), 4);
    }

    #[test]
    fn parses_decimals() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"1234"), Some(1234));
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b"12a"), None);
        assert_eq!(parse_decimal(b"-1"), None);
        assert_eq!(parse_decimal(&[b'9'; 19]), None);
    }
}
