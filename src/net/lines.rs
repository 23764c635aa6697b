//! Cutting a byte stream into lines, with a bounded leftover.
//!
//! Bytes arrive in reads of any size; a line may end in the middle of one
//! or span several. [`LineSplitter`] keeps only the bytes of a line whose
//! `\n` has not arrived yet, never more than the line limit plus one `\r`:
//! a longer line is reported once as [`LineError::TooLong`] as soon as that
//! is known, and the rest of it up to its `\n` is dropped. Which lines and
//! errors come out does not depend on where the reads split the stream.

use crate::protocol::LineError;

/// One item cut from the input stream by [`LineSplitter::next_line`].
pub type LineItem<'a> = Result<&'a [u8], LineError>;

/// The state of one connection's input between reads.
#[derive(Debug, Default)]
pub struct LineSplitter {
    /// Bytes of a line whose `\n` has not arrived yet.
    partial: Vec<u8>,
    /// Inside a line already reported as too long: drop bytes up to `\n`.
    discarding: bool,
}

impl LineSplitter {
    /// Bytes of an unfinished line held.
    pub fn held(&self) -> usize {
        self.partial.len()
    }

    /// Cuts the next line out of `data[*pos..]` (bytes just read), joining
    /// it with the leftover partial line, and advances `pos`.
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
            let Some(end) = memchr::memchr(b'\n', rest) else {
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
        let mut splitter = LineSplitter::default();
        let mut join = Vec::new();
        let mut out = Vec::new();
        for chunk in chunks {
            let mut pos = 0;
            while let Some(item) = splitter.next_line(chunk, &mut pos, &mut join, max_line) {
                out.push(item.map(<[u8]>::to_vec));
            }
        }
        assert!(splitter.held() <= max_line + 1);
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
