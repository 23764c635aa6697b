//! The Redis protocol (RESP), as much of it as pub/sub needs. Every
//! connection starts with `HELLO 3`: in RESP3 a subscribed connection may
//! still publish, so a pingpong or storm client is one connection, as it is
//! with confab and NATS. Commands are RESP arrays of bulk strings; the
//! server's messages are pushes (`>3`, or `*3` in RESP2) of `message`, the
//! channel and the payload; every command draws one reply in order (a
//! `SUBSCRIBE`'s is the `subscribe` push, a `PUBLISH`'s the number of
//! subscribers that received it).

use super::protocol::{digits, parse_decimal, BadFrame, Frame, Protocol, Publication};

/// Longest line accepted without its `\r\n`: the replies and headers the
/// comparison sees are far shorter.
const MAX_LINE: usize = 4096;

/// How deep aggregates may nest (a reply to `HELLO` nests two deep).
const MAX_DEPTH: usize = 8;

/// The Redis protocol (Redis 6 and later, for `HELLO 3`).
pub(super) struct Redis;

impl Protocol for Redis {
    const NAME: &'static str = "redis";

    /// `HELLO 3` (its reply is a map), then `SUBSCRIBE <channel>` if
    /// subscribing (its reply is the `subscribe` push).
    fn hello(out: &mut Vec<u8>, subscribe: Option<&[u8]>) -> u32 {
        command(out, &[b"HELLO", b"3"]);
        match subscribe {
            Some(channel) => {
                command(out, &[b"SUBSCRIBE", channel]);
                2
            }
            None => 1,
        }
    }

    /// `PUBLISH <channel> <payload>` as a RESP array.
    fn publication(channel: &[u8], payload_len: usize) -> Publication {
        let mut bytes = Vec::new();
        command(&mut bytes, &[b"PUBLISH", channel, b""]);
        // The empty payload's `$0\r\n\r\n` becomes `$<n>\r\n<payload>\r\n`.
        bytes.truncate(bytes.len() - b"$0\r\n\r\n".len());
        bytes.extend_from_slice(format!("${payload_len}\r\n").as_bytes());
        let payload_at = bytes.len();
        bytes.resize(payload_at + payload_len, b'x');
        bytes.extend_from_slice(b"\r\n");
        Publication { bytes, payload_at }
    }

    /// The integer reply: how many subscribers received it.
    const PUBLISH_REPLIES: u32 = 1;

    /// Nothing: every publication is acknowledged on its own.
    fn sync(_out: &mut Vec<u8>) -> u32 {
        0
    }

    /// Redis never pings its clients.
    fn pong(_out: &mut Vec<u8>) {}

    /// `>3\r\n$7\r\nmessage\r\n$<c>\r\n<channel>\r\n$<n>\r\n<payload>\r\n`.
    fn delivery_len(channel: &[u8], payload_len: usize) -> usize {
        let bulk = |len: usize| 1 + digits(len) + 2 + len + 2;
        b">3\r\n".len() + bulk(b"message".len()) + bulk(channel.len()) + bulk(payload_len)
    }

    fn frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, BadFrame> {
        let Some((value, mut at)) = head(buf, 0)? else {
            return Ok(None);
        };
        let frame = match value {
            Value::Line(b':', digits) => Frame::Reply(Some(parse_integer(digits)?)),
            Value::Line(b'-', text) | Value::Blob(b'!', Some(text)) => Frame::Error(text),
            Value::Aggregate(b'|', n) => {
                // An attribute describes the reply after it; it is none.
                match skip_elements(buf, at, 2 * n, 1)? {
                    Some(end) => return Ok(Some((Frame::Other, end))),
                    None => return Ok(None),
                }
            }
            Value::Aggregate(b'*' | b'>', 3) => {
                let mut heads = [Value::Null; 3];
                for slot in &mut heads {
                    let Some((value, end)) = element(buf, at, 1)? else {
                        return Ok(None);
                    };
                    *slot = value;
                    at = end;
                }
                match heads {
                    [Value::Blob(b'$', Some(b"message")), _, Value::Blob(b'$', Some(payload))] => {
                        Frame::Message(payload)
                    }
                    _ => Frame::Reply(None),
                }
            }
            Value::Aggregate(kind, n) => {
                let elements = if kind == b'%' { 2 * n } else { n };
                match skip_elements(buf, at, elements, 1)? {
                    Some(end) => {
                        at = end;
                        Frame::Reply(None)
                    }
                    None => return Ok(None),
                }
            }
            Value::Line(..) | Value::Blob(..) | Value::Null => Frame::Reply(None),
        };
        Ok(Some((frame, at)))
    }
}

/// Queues `args` as a RESP array of bulk strings.
fn command(out: &mut Vec<u8>, args: &[&[u8]]) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for arg in args {
        out.extend_from_slice(format!("${}\r\n", arg.len()).as_bytes());
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// The head of one RESP value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Value<'a> {
    /// A one-line value: simple string `+`, error `-`, integer `:`, null
    /// `_`, double `,`, boolean `#`, big number `(`; its type and text.
    Line(u8, &'a [u8]),
    /// A length-prefixed string: bulk `$`, verbatim `=`, blob error `!`;
    /// `None` for a null bulk string (`$-1`).
    Blob(u8, Option<&'a [u8]>),
    /// An aggregate: array `*`, push `>`, set `~`, map `%`, attribute `|`,
    /// and how many entries it has (a map's and an attribute's count
    /// pairs).
    Aggregate(u8, usize),
    /// A null array (`*-1`), or nothing read yet.
    Null,
}

/// The line starting at `at`, without its `\r\n`, and where the next one
/// starts; `None` while its `\r\n` has not arrived.
fn line(buf: &[u8], at: usize) -> Result<Option<(&[u8], usize)>, BadFrame> {
    let rest = &buf[at..];
    match memchr::memchr(b'\n', rest) {
        Some(newline) => match rest[..newline].strip_suffix(b"\r") {
            Some(line) => Ok(Some((line, at + newline + 1))),
            None => Err(BadFrame("a line without \\r".into())),
        },
        None if rest.len() > MAX_LINE => {
            Err(BadFrame(format!("a line longer than {MAX_LINE} bytes")))
        }
        None => Ok(None),
    }
}

/// The head of the value at `at` and where its contents start (for an
/// aggregate, its first element; otherwise the next value).
fn head(buf: &[u8], at: usize) -> Result<Option<(Value<'_>, usize)>, BadFrame> {
    let Some((line, after)) = line(buf, at)? else {
        return Ok(None);
    };
    let Some((&kind, text)) = line.split_first() else {
        return Err(BadFrame("an empty line".into()));
    };
    let value = match kind {
        b'+' | b'-' | b':' | b'_' | b',' | b'#' | b'(' => Value::Line(kind, text),
        b'$' | b'=' | b'!' => {
            if text == b"-1" {
                return Ok(Some((Value::Blob(kind, None), after)));
            }
            let len = length(text)?;
            let end = after + len + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[after + len..end] != b"\r\n" {
                return Err(BadFrame("a bulk string not followed by \\r\\n".into()));
            }
            return Ok(Some((
                Value::Blob(kind, Some(&buf[after..after + len])),
                end,
            )));
        }
        b'*' | b'>' | b'~' | b'%' | b'|' => {
            if text == b"-1" {
                Value::Null
            } else {
                Value::Aggregate(kind, length(text)?)
            }
        }
        _ => {
            let shown: String = String::from_utf8_lossy(line).chars().take(80).collect();
            return Err(BadFrame(format!("an unknown RESP type: {shown}")));
        }
    };
    Ok(Some((value, after)))
}

/// The head of the element at `at` (nested `depth` deep) and where the
/// element ends, its own elements skipped.
fn element(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Value<'_>, usize)>, BadFrame> {
    let Some((value, after)) = head(buf, at)? else {
        return Ok(None);
    };
    let nested = match value {
        Value::Aggregate(b'%' | b'|', n) => 2 * n,
        Value::Aggregate(_, n) => n,
        _ => 0,
    };
    Ok(skip_elements(buf, after, nested, depth + 1)?.map(|end| (value, end)))
}

/// Where `n` elements starting at `at`, nested `depth` deep, end.
fn skip_elements(
    buf: &[u8],
    mut at: usize,
    n: usize,
    depth: usize,
) -> Result<Option<usize>, BadFrame> {
    if n > 0 && depth > MAX_DEPTH {
        return Err(BadFrame(format!(
            "aggregates nested deeper than {MAX_DEPTH}"
        )));
    }
    for _ in 0..n {
        match element(buf, at, depth)? {
            Some((_, end)) => at = end,
            None => return Ok(None),
        }
    }
    Ok(Some(at))
}

/// A length or count.
fn length(text: &[u8]) -> Result<usize, BadFrame> {
    parse_decimal(text).ok_or_else(|| {
        BadFrame(format!(
            "a bad length: {}",
            String::from_utf8_lossy(text)
                .chars()
                .take(20)
                .collect::<String>()
        ))
    })
}

/// A RESP integer, maybe negative.
fn parse_integer(text: &[u8]) -> Result<i64, BadFrame> {
    let (negative, digits) = match text.strip_prefix(b"-") {
        Some(digits) => (true, digits),
        None => (false, text),
    };
    let value = i64::try_from(length(digits)?).map_err(|_| BadFrame("a huge integer".into()))?;
    Ok(if negative { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cuts every complete frame off `buf`; returns them and the rest.
    fn frames(mut buf: &[u8]) -> (Vec<Frame<'_>>, &[u8]) {
        let mut frames = Vec::new();
        while let Some((frame, len)) = Redis::frame(buf).expect("valid") {
            frames.push(frame);
            buf = &buf[len..];
        }
        (frames, buf)
    }

    const MESSAGE: &[u8] = b">3\r\n$7\r\nmessage\r\n$7\r\ninbox.1\r\n$5\r\nhello\r\n";

    #[test]
    fn a_message_push_is_its_payload() {
        let (got, rest) = frames(MESSAGE);
        assert_eq!(got, [Frame::Message(b"hello")]);
        assert!(rest.is_empty());
        let resp2 = b"*3\r\n$7\r\nmessage\r\n$1\r\nc\r\n$4\r\na\r\nb\r\n";
        assert_eq!(frames(resp2).0, [Frame::Message(b"a\r\nb")]);
    }

    #[test]
    fn an_array_split_anywhere_waits_for_the_rest() {
        for cut in 0..MESSAGE.len() {
            let (got, rest) = frames(&MESSAGE[..cut]);
            assert!(got.is_empty(), "cut at {cut}");
            assert_eq!(rest, &MESSAGE[..cut]);
        }
        let mut two = MESSAGE.to_vec();
        two.extend_from_slice(b":1\r\n");
        two.extend_from_slice(&MESSAGE[..10]);
        let (got, rest) = frames(&two);
        assert_eq!(got, [Frame::Message(b"hello"), Frame::Reply(Some(1))]);
        assert_eq!(rest, &MESSAGE[..10]);
    }

    #[test]
    fn replies_are_counted_and_errors_kept() {
        let hello = b"%2\r\n$6\r\nserver\r\n$5\r\nredis\r\n$7\r\nmodules\r\n*0\r\n";
        let subscribed = b">3\r\n$9\r\nsubscribe\r\n$7\r\ninbox.1\r\n:1\r\n";
        let mut input = hello.to_vec();
        input.extend_from_slice(subscribed);
        input.extend_from_slice(
            b":0\r\n:-2\r\n+OK\r\n$-1\r\n-ERR max number of clients reached\r\n",
        );
        input.extend_from_slice(b"|1\r\n+key\r\n+value\r\n");
        let (got, rest) = frames(&input);
        assert_eq!(
            got,
            [
                Frame::Reply(None),
                Frame::Reply(None),
                Frame::Reply(Some(0)),
                Frame::Reply(Some(-2)),
                Frame::Reply(None),
                Frame::Reply(None),
                Frame::Error(b"ERR max number of clients reached"),
                Frame::Other,
            ]
        );
        assert!(rest.is_empty());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Redis::frame(b"?what\r\n").is_err());
        assert!(Redis::frame(b":1\n").is_err());
        assert!(Redis::frame(b"$x\r\n").is_err());
        assert!(Redis::frame(b"$2\r\nabcd\r\n").is_err());
        assert!(Redis::frame(&[b'+'; MAX_LINE + 1]).is_err());
        let deep = "*1\r\n".repeat(MAX_DEPTH + 2) + ":1\r\n";
        assert!(Redis::frame(deep.as_bytes()).is_err());
    }

    #[test]
    fn the_delivery_length_is_the_frame_the_server_sends() {
        let payload = [b'x'; 64];
        let mut push = b">3\r\n$7\r\nmessage\r\n$10\r\ninbox.0001\r\n$64\r\n".to_vec();
        push.extend_from_slice(&payload);
        push.extend_from_slice(b"\r\n");
        assert_eq!(Redis::delivery_len(b"inbox.0001", 64), push.len());
    }

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let p = Redis::publication(b"inbox.7", 3);
        assert_eq!(
            p.bytes,
            b"*3\r\n$7\r\nPUBLISH\r\n$7\r\ninbox.7\r\n$3\r\nxxx\r\n"
        );
        assert_eq!(&p.bytes[p.payload_at..p.payload_at + 3], b"xxx");
        let mut hello = Vec::new();
        assert_eq!(Redis::hello(&mut hello, Some(b"c")), 2);
        assert_eq!(
            hello,
            b"*2\r\n$5\r\nHELLO\r\n$1\r\n3\r\n*2\r\n$9\r\nSUBSCRIBE\r\n$1\r\nc\r\n"
        );
    }
}
