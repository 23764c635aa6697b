//! The NATS client protocol, as much of it as the comparison needs:
//! `CONNECT` (verbose and pedantic off, so the server sends no `+OK`),
//! `SUB`, `PUB`, `PING`/`PONG`, and the server's `INFO`, `MSG`, `+OK`,
//! `-ERR`. Every control line ends with `\r\n`; a `MSG` line is followed by
//! its payload and another `\r\n`.

use super::protocol::{digits, parse_decimal, BadFrame, Frame, Protocol, Publication};

/// The client's greeting: no `+OK` for each command, no checks of subjects.
const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"tls_required\":false,\
\"name\":\"confab-peer\",\"lang\":\"rust\",\"version\":\"0.1.0\",\"protocol\":1}\r\n";

/// The one subscription id each connection uses.
const SID: &[u8] = b"1";

/// Longest control line accepted (the server's own default
/// `max_control_line`); `INFO` is the longest the server sends.
const MAX_CONTROL_LINE: usize = 4096;

/// The NATS protocol (nats-server 2.x).
pub(super) struct Nats;

impl Protocol for Nats {
    const NAME: &'static str = "nats";

    /// `CONNECT`, `SUB <subject> 1` if subscribing, then `PING`: its `PONG`
    /// comes once the subscription is in place.
    fn hello(out: &mut Vec<u8>, subscribe: Option<&[u8]>) -> u32 {
        out.extend_from_slice(CONNECT);
        if let Some(subject) = subscribe {
            out.extend_from_slice(b"SUB ");
            out.extend_from_slice(subject);
            out.push(b' ');
            out.extend_from_slice(SID);
            out.extend_from_slice(b"\r\n");
        }
        Nats::sync(out)
    }

    /// `PUB <subject> <n>\r\n<payload>\r\n`.
    fn publication(subject: &[u8], payload_len: usize) -> Publication {
        let mut bytes = b"PUB ".to_vec();
        bytes.extend_from_slice(subject);
        bytes.extend_from_slice(format!(" {payload_len}\r\n").as_bytes());
        let payload_at = bytes.len();
        bytes.resize(payload_at + payload_len, b'x');
        bytes.extend_from_slice(b"\r\n");
        Publication { bytes, payload_at }
    }

    /// With verbose off, a `PUB` draws nothing.
    const PUBLISH_REPLIES: u32 = 0;

    /// `PING`: the server answers it after handling what came before.
    fn sync(out: &mut Vec<u8>) -> u32 {
        out.extend_from_slice(b"PING\r\n");
        1
    }

    fn pong(out: &mut Vec<u8>) {
        out.extend_from_slice(b"PONG\r\n");
    }

    /// `MSG <subject> 1 <n>\r\n<payload>\r\n`.
    fn delivery_len(subject: &[u8], payload_len: usize) -> usize {
        let header = "MSG ".len() + subject.len() + 1 + SID.len() + 1 + digits(payload_len);
        header + 2 + payload_len + 2
    }

    fn frame(buf: &[u8]) -> Result<Option<(Frame<'_>, usize)>, BadFrame> {
        let Some(newline) = memchr::memchr(b'\n', buf) else {
            if buf.len() > MAX_CONTROL_LINE {
                return Err(BadFrame(format!(
                    "a control line longer than {MAX_CONTROL_LINE} bytes"
                )));
            }
            return Ok(None);
        };
        let line = buf[..newline]
            .strip_suffix(b"\r")
            .ok_or_else(|| BadFrame(format!("a line without \\r: {}", show(&buf[..newline]))))?;
        let after = newline + 1;
        if let Some(args) = line.strip_prefix(b"MSG ") {
            // MSG <subject> <sid> [reply-to] <#bytes>
            let size = args
                .rsplit(|&b| b == b' ')
                .next()
                .and_then(parse_decimal)
                .ok_or_else(|| BadFrame(format!("a MSG without a size: {}", show(line))))?;
            let end = after + size + 2;
            if buf.len() < end {
                return Ok(None);
            }
            if &buf[after + size..end] != b"\r\n" {
                return Err(BadFrame(format!(
                    "a MSG payload not followed by \\r\\n: {}",
                    show(line)
                )));
            }
            return Ok(Some((Frame::Message(&buf[after..after + size]), end)));
        }
        let frame = match line {
            b"PONG" => Frame::Reply(None),
            b"PING" => Frame::Ping,
            b"+OK" => Frame::Other,
            _ if line.starts_with(b"INFO ") => Frame::Other,
            _ if line.starts_with(b"-ERR") => Frame::Error(line),
            _ => return Err(BadFrame(format!("an unknown line: {}", show(line)))),
        };
        Ok(Some((frame, after)))
    }
}

/// A line for an error message.
fn show(line: &[u8]) -> String {
    String::from_utf8_lossy(line).chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Cuts every complete frame off `buf`; returns them and the rest.
    fn frames(mut buf: &[u8]) -> (Vec<Frame<'_>>, &[u8]) {
        let mut frames = Vec::new();
        while let Some((frame, len)) = Nats::frame(buf).expect("valid") {
            frames.push(frame);
            buf = &buf[len..];
        }
        (frames, buf)
    }

    #[test]
    fn a_msg_is_its_payload() {
        let (got, rest) = frames(b"MSG inbox.1 1 5\r\nhello\r\nPONG\r\n");
        assert_eq!(got, [Frame::Message(b"hello"), Frame::Reply(None)]);
        assert!(rest.is_empty());
        let (got, _) = frames(b"MSG inbox.1 1 reply.to 3\r\na\r\n\r\n");
        assert_eq!(got, [Frame::Message(b"a\r\n")], "a payload may hold \\r\\n");
    }

    #[test]
    fn a_msg_split_anywhere_waits_for_the_rest() {
        let whole: &[u8] = b"MSG fanout 1 4\r\nabcd\r\n";
        for cut in 0..whole.len() {
            let (got, rest) = frames(&whole[..cut]);
            assert!(got.is_empty(), "cut at {cut}");
            assert_eq!(rest, &whole[..cut]);
        }
        assert_eq!(frames(whole).0, [Frame::Message(b"abcd")]);
    }

    #[test]
    fn control_lines_are_told_apart() {
        let input = b"INFO {\"server_id\":\"x\"}\r\n+OK\r\nPING\r\n-ERR 'Slow Consumer'\r\n";
        let (got, rest) = frames(input);
        assert_eq!(
            got,
            [
                Frame::Other,
                Frame::Other,
                Frame::Ping,
                Frame::Error(b"-ERR 'Slow Consumer'")
            ]
        );
        assert!(rest.is_empty());
    }

    #[test]
    fn garbage_is_refused() {
        assert!(Nats::frame(b"HELLO\r\n").is_err());
        assert!(Nats::frame(b"PONG\n").is_err());
        assert!(Nats::frame(b"MSG a 1 x\r\n").is_err());
        assert!(Nats::frame(b"MSG a 1 2\r\nabXY").is_err());
        assert!(Nats::frame(&[b'x'; MAX_CONTROL_LINE + 1]).is_err());
    }

    #[test]
    fn the_delivery_length_is_the_frame_the_server_sends() {
        let frame = b"MSG inbox.0001 1 64\r\n";
        assert_eq!(Nats::delivery_len(b"inbox.0001", 64), frame.len() + 64 + 2);
    }

    #[test]
    fn a_publication_puts_its_payload_last() {
        let p = Nats::publication(b"inbox.7", 3);
        assert_eq!(p.bytes, b"PUB inbox.7 3\r\nxxx\r\n");
        assert_eq!(&p.bytes[p.payload_at..p.payload_at + 3], b"xxx");
        let mut hello = Vec::new();
        assert_eq!(Nats::hello(&mut hello, Some(b"inbox.7")), 1);
        assert!(hello.starts_with(b"CONNECT {"));
        assert!(hello.ends_with(b"}\r\nSUB inbox.7 1\r\nPING\r\n"));
    }
}
