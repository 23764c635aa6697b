//! A connection's output waiting to be written.
//!
//! Written bytes are dropped from the front lazily, once they make up half
//! the buffer, so a reader that keeps up only partly costs at most twice
//! its pending bytes in memory, and each byte is moved at most once on
//! average.

/// Bytes queued for a socket: `buf[pos..]` is still to be written.
///
/// It also counts every byte it was given and every byte written, as
/// positions in the stream of the socket's output, so that a caller can
/// tell when a given byte has left ([`OutBuf::written_position`]).
#[derive(Debug, Default)]
pub struct OutBuf {
    buf: Vec<u8>,
    pos: usize,
    /// Stream position of `buf[0]`.
    base: u64,
}

impl OutBuf {
    /// Bytes queued and not yet written.
    pub fn pending(&self) -> usize {
        self.buf.len() - self.pos
    }

    /// The bytes still to be written, for the next `write`.
    pub fn unwritten(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// Records that the first `n` unwritten bytes were written. When all
    /// are, the buffer is emptied but keeps its memory for the next burst.
    pub fn consume(&mut self, n: usize) {
        self.pos = (self.pos + n).min(self.buf.len());
        if self.pos == self.buf.len() {
            self.base += self.buf.len() as u64;
            self.buf.clear();
            self.pos = 0;
        }
    }

    /// Queues bytes, first dropping written ones if they are half the
    /// buffer.
    #[inline]
    pub fn push(&mut self, bytes: &[u8]) {
        self.push_with(|buf| buf.extend_from_slice(bytes));
    }

    /// Queues what `write` appends to the buffer (it must only append),
    /// first dropping written bytes if they are half the buffer: a line
    /// rendered straight into it, without a copy in between.
    #[inline]
    pub fn push_with(&mut self, write: impl FnOnce(&mut Vec<u8>)) {
        if self.pos > 0 && self.pos >= self.buf.len() / 2 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        write(&mut self.buf);
    }

    /// The stream position just after the last byte queued.
    pub fn end_position(&self) -> u64 {
        self.base + self.buf.len() as u64
    }

    /// The stream position just after the last byte written.
    pub fn written_position(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Drops the queued bytes from stream position `at` on; for a position
    /// already written, that is everything not yet written.
    pub fn truncate_at(&mut self, at: u64) {
        let keep = at.saturating_sub(self.base).max(self.pos as u64);
        if keep < self.buf.len() as u64 {
            self.buf.truncate(keep as usize);
        }
    }

    /// Appends everything `other` has not written, leaving it empty.
    pub fn append(&mut self, other: &mut OutBuf) {
        self.push(other.unwritten());
        *other = OutBuf::default();
    }

    /// Whether the buffer holds memory but nothing to write.
    pub fn holds_idle_memory(&self) -> bool {
        self.pending() == 0 && self.buf.capacity() > 0
    }

    /// Frees the memory if nothing is pending.
    pub fn release_if_empty(&mut self) {
        if self.pending() == 0 {
            let base = self.written_position();
            *self = OutBuf::default();
            self.base = base;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_in_order_across_partial_writes() {
        let mut out = OutBuf::default();
        out.push(b"hello ");
        out.push(b"world");
        assert_eq!(out.unwritten(), b"hello world");
        out.consume(3);
        assert_eq!(out.unwritten(), b"lo world");
        out.push(b"!");
        assert_eq!(out.unwritten(), b"lo world!");
        out.consume(9);
        assert_eq!(out.pending(), 0);
        assert!(out.holds_idle_memory());
        out.release_if_empty();
        assert!(!out.holds_idle_memory());
    }

    #[test]
    fn memory_stays_within_twice_the_pending_bytes() {
        let mut out = OutBuf::default();
        let chunk = vec![b'x'; 64 * 1024];
        for _ in 0..1000 {
            out.push(&chunk);
            // A reader that takes almost everything, falling behind slowly.
            out.consume(60 * 1024);
            assert!(out.pending() > 0);
            assert!(out.buf.len() <= 2 * out.pending() + chunk.len());
        }
    }

    #[test]
    fn positions_count_the_whole_stream() {
        let mut out = OutBuf::default();
        out.push(b"0123456789");
        out.consume(4);
        assert_eq!((out.written_position(), out.end_position()), (4, 10));
        out.push(b"abcdef");
        out.consume(8);
        out.push(b"xyz");
        assert_eq!((out.written_position(), out.end_position()), (12, 19));
        out.consume(7);
        out.release_if_empty();
        out.push(b"!");
        assert_eq!((out.written_position(), out.end_position()), (19, 20));
    }

    #[test]
    fn truncation_keeps_what_is_written_and_before() {
        let mut out = OutBuf::default();
        out.push(b"first\nsecond\nthird\n");
        out.consume(8);
        out.truncate_at(13);
        assert_eq!(out.unwritten(), b"cond\n");
        let mut other = OutBuf::default();
        other.push(b"later\n");
        out.append(&mut other);
        assert_eq!(out.unwritten(), b"cond\nlater\n");
        assert_eq!(other.pending(), 0);
        out.truncate_at(2);
        assert_eq!(out.unwritten(), b"", "only what is not written yet goes");
        assert_eq!(out.end_position(), 8);
    }

    #[test]
    fn pending_output_is_not_released() {
        let mut out = OutBuf::default();
        out.push(b"abc");
        out.release_if_empty();
        assert_eq!(out.unwritten(), b"abc");
    }
}
