//! One client connection: its socket, the leftover of a partial line, and
//! the output waiting to be written.
//!
//! Reads go into the server's shared scratch buffer; a connection keeps only
//! the bytes of a line that has not ended yet, so an idle connection holds
//! no large buffer. Both buffers are bounded: a partial line by the line
//! limit (past it the line is discarded up to its `\n`), the output by the
//! server's backlog limit (past it the connection is cut off).

use std::io::{self, Write};

use mio::net::TcpStream;

use crate::outbuf::OutBuf;
use crate::protocol::LineError;

/// One item cut from the input stream by [`Conn::next_line`].
pub type LineItem<'a> = Result<&'a [u8], LineError>;

/// The state of one accepted connection.
#[derive(Debug)]
pub struct Conn {
    /// The socket.
    pub stream: TcpStream,
    /// Distinguishes this connection from earlier ones in the same slab
    /// slot, for timers that refer to it.
    pub serial: u64,
    /// Bytes of a line whose `\n` has not arrived yet (never more than the
    /// line limit plus one `\r`).
    partial: Vec<u8>,
    /// Inside a line already reported as too long: drop bytes up to `\n`.
    discarding: bool,
    /// Output not yet written.
    out: OutBuf,
    /// Whether the socket is registered for `WRITABLE` too.
    pub writable_interest: bool,
    /// The domain closed the session (or the peer finished sending): flush
    /// the output, then close. No more input is read.
    pub closing: bool,
    /// To be removed at the end of this loop iteration; nothing more is
    /// read or written.
    pub doomed: bool,
    /// Listed in the server's dirty list for this iteration.
    pub dirty: bool,
    /// Its output waits for the journal commit at the end of this
    /// iteration: it promises something not yet durable.
    pub held: bool,
    /// Used its read budget and may have more input: listed in the
    /// server's list of connections to read again next iteration.
    pub unread: bool,
}

impl Conn {
    /// Wraps a freshly accepted socket.
    pub fn new(stream: TcpStream, serial: u64) -> Conn {
        Conn {
            stream,
            serial,
            partial: Vec::new(),
            discarding: false,
            out: OutBuf::default(),
            writable_interest: false,
            closing: false,
            doomed: false,
            dirty: false,
            held: false,
            unread: false,
        }
    }

    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.out.pending()
    }

    /// Queues bytes for writing.
    pub fn queue(&mut self, bytes: &[u8]) {
        self.out.push(bytes);
    }

    /// Drops all queued output and frees its buffer.
    pub fn discard_output(&mut self) {
        self.out = OutBuf::default();
    }

    /// Whether the output buffer holds memory but no pending bytes.
    pub fn holds_idle_buffer(&self) -> bool {
        self.out.holds_idle_memory()
    }

    /// Frees the output buffer if nothing is pending. The server calls this
    /// periodically rather than after every write: a busy connection reuses
    /// its buffer from one iteration to the next (no allocation and no page
    /// faults per write), an idle one ends up holding none.
    pub fn release_idle_buffer(&mut self) {
        self.out.release_if_empty();
    }

    /// Writes queued output until it is all written or the socket would
    /// block. An error means the connection is broken.
    pub fn flush(&mut self) -> io::Result<()> {
        while self.out.pending() > 0 {
            match self.stream.write(self.out.unwritten()) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => self.out.consume(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Cuts the next line out of `data[*pos..]` (bytes just read), joining
    /// it with this connection's leftover partial line, and advances `pos`.
    /// A line longer than `max_line` bytes (not counting one `\r`) yields
    /// one [`LineError::TooLong`] as soon as it is known to be too long, and
    /// the rest of it up to `\n` is dropped. Returns `None` when `data` is
    /// used up; an unfinished line is kept for the next read. A line that
    /// spans reads is assembled in `join`, the server's reusable buffer.
    pub fn next_line<'a>(
        &mut self,
        data: &'a [u8],
        pos: &mut usize,
        join: &'a mut Vec<u8>,
        max_line: usize,
    ) -> Option<LineItem<'a>> {
        // A line may be one byte longer than the limit if that byte is `\r`.
        let hard_limit = max_line + 1;
        while *pos < data.len() {
            let rest = &data[*pos..];
            let Some(end) = rest.iter().position(|&b| b == b'\n') else {
                *pos = data.len();
                if self.discarding {
                    return None;
                }
                if self.partial.len() + rest.len() > hard_limit {
                    self.partial = Vec::new();
                    self.discarding = true;
                    return Some(Err(LineError::TooLong));
                }
                self.partial.extend_from_slice(rest);
                return None;
            };
            *pos += end + 1;
            let piece = &rest[..end];
            if self.discarding {
                self.discarding = false;
                continue;
            }
            let line: &'a [u8] = if self.partial.is_empty() {
                piece
            } else {
                join.clear();
                join.extend_from_slice(&self.partial);
                join.extend_from_slice(piece);
                self.partial = Vec::new();
                join
            };
            let body = line.strip_suffix(b"\r").unwrap_or(line);
            if body.len() > max_line {
                return Some(Err(LineError::TooLong));
            }
            return Some(Ok(line));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `chunks` as successive reads and collects every item.
    fn lines(chunks: &[&[u8]], max_line: usize) -> Vec<Result<Vec<u8>, LineError>> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stream = TcpStream::connect(addr).expect("connect");
        let mut conn = Conn::new(stream, 0);
        let mut join = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            let mut pos = 0;
            while let Some(item) = conn.next_line(chunk, &mut pos, &mut join, max_line) {
                out.push(item.map(<[u8]>::to_vec));
            }
        }
        assert!(conn.partial.len() <= max_line + 1);
        out
    }

    fn ok(s: &str) -> Result<Vec<u8>, LineError> {
        Ok(s.as_bytes().to_vec())
    }

    #[test]
    fn several_lines_in_one_read() {
        assert_eq!(
            lines(&[b"a\nbb\r\n\nccc\n"], 10),
            vec![ok("a"), ok("bb\r"), ok(""), ok("ccc")]
        );
    }

    #[test]
    fn a_line_split_across_reads_is_joined() {
        assert_eq!(
            lines(&[b"mes", b"sage yo", b"da hi\nwho", b"else\n"], 100),
            vec![ok("message yoda hi"), ok("whoelse")]
        );
    }

    #[test]
    fn limit_counts_bytes_before_newline_without_one_cr() {
        assert_eq!(lines(&[b"abcd\n"], 4), vec![ok("abcd")]);
        assert_eq!(lines(&[b"abcd\r\n"], 4), vec![ok("abcd\r")]);
        assert_eq!(lines(&[b"abcde\n"], 4), vec![Err(LineError::TooLong)]);
        assert_eq!(lines(&[b"abcd\r\r\n"], 4), vec![Err(LineError::TooLong)]);
        assert_eq!(lines(&[b"ab", b"cd\r", b"\n"], 4), vec![ok("abcd\r")]);
    }

    #[test]
    fn too_long_line_is_reported_once_and_discarded_to_its_newline() {
        assert_eq!(
            lines(&[b"0123456789", b"0123456789", b"01234\nok\n"], 4),
            vec![Err(LineError::TooLong), ok("ok")]
        );
        assert_eq!(
            lines(&[b"0123456789\nok\n"], 4),
            vec![Err(LineError::TooLong), ok("ok")]
        );
    }

    #[test]
    fn partial_line_memory_is_bounded() {
        let big = vec![b'x'; 100_000];
        assert_eq!(
            lines(&[&big, &big, b"\n", b"after\n"], 1024),
            vec![Err(LineError::TooLong), ok("after")]
        );
    }
}
