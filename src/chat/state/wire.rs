//! The primitives the state is written with — LEB128 varints (zigzag for
//! signed numbers), length-prefixed byte strings, [`Instant`]s as wall
//! time — and a reader that checks every read against what is left, so
//! that no input makes it panic, and none makes it reserve more than the
//! input could describe.

use std::time::Instant;

use super::instants;
use super::StateError;
use crate::chat::WallClock;

/// The nanoseconds in a millisecond: an instant is written as whole
/// milliseconds since the epoch and the nanoseconds into the last one.
const NANOS_PER_MS: i128 = 1_000_000;

/// Appends the encoding to a buffer.
pub(super) struct Writer<'a> {
    out: &'a mut Vec<u8>,
    /// Converts the domain's instants to wall time.
    clock: WallClock,
}

impl<'a> Writer<'a> {
    /// Appends to `out`, writing instants through `clock`.
    pub(super) fn new(out: &'a mut Vec<u8>, clock: WallClock) -> Writer<'a> {
        Writer { out, clock }
    }

    /// How many bytes the buffer holds.
    pub(super) fn len(&self) -> usize {
        self.out.len()
    }

    /// The buffer, to patch what was written.
    pub(super) fn buffer(&mut self) -> &mut Vec<u8> {
        self.out
    }

    pub(super) fn u8(&mut self, byte: u8) {
        self.out.push(byte);
    }

    pub(super) fn raw(&mut self, bytes: &[u8]) {
        self.out.extend_from_slice(bytes);
    }

    pub(super) fn varint(&mut self, value: u64) {
        self.varint128(u128::from(value));
    }

    pub(super) fn varint128(&mut self, mut value: u128) {
        while value >= 0x80 {
            self.out.push(value as u8 | 0x80);
            value >>= 7;
        }
        self.out.push(value as u8);
    }

    pub(super) fn usize(&mut self, value: usize) {
        self.varint(value as u64);
    }

    /// A signed number, zigzag-encoded so that small magnitudes are short.
    pub(super) fn zigzag(&mut self, value: i64) {
        self.varint(((value << 1) ^ (value >> 63)) as u64);
    }

    /// A byte string, its length first.
    pub(super) fn bytes(&mut self, bytes: &[u8]) {
        self.usize(bytes.len());
        self.raw(bytes);
    }

    /// An instant as milliseconds since the Unix epoch by the clock (signed:
    /// a time before the epoch is negative) and the nanoseconds into that
    /// millisecond, so that any instant reads back exactly.
    pub(super) fn instant(&mut self, t: Instant) {
        let nanos = instants::unix_nanos(self.clock, t);
        let (ms, within) = match i64::try_from(nanos.div_euclid(NANOS_PER_MS)) {
            Ok(ms) => (ms, nanos.rem_euclid(NANOS_PER_MS) as u64),
            Err(_) if nanos < 0 => (i64::MIN, 0),
            Err(_) => (i64::MAX, 0),
        };
        self.zigzag(ms);
        self.varint(within);
    }

    /// Appends a section: `tag`, the length of what `body` writes, then
    /// that.
    pub(super) fn section(&mut self, tag: u8, body: impl FnOnce(&mut Writer<'_>)) {
        let mut payload = Vec::new();
        body(&mut Writer::new(&mut payload, self.clock));
        self.u8(tag);
        self.bytes(&payload);
    }
}

/// Reads the encoding, every read checked.
pub(super) struct Reader<'a> {
    bytes: &'a [u8],
    /// Converts wall time back to instants of the loading domain.
    clock: WallClock,
}

/// What a read gives: the value, or what is wrong with the input.
pub(super) type Read<T> = Result<T, StateError>;

/// The error of an input that does not follow the format.
pub(super) fn malformed<T>(what: &'static str) -> Read<T> {
    Err(StateError::Malformed(what))
}

impl<'a> Reader<'a> {
    /// Reads `bytes`, converting instants with `clock`.
    pub(super) fn new(bytes: &'a [u8], clock: WallClock) -> Reader<'a> {
        Reader { bytes, clock }
    }

    /// The next `n` bytes.
    pub(super) fn take(&mut self, n: usize) -> Read<&'a [u8]> {
        if n > self.bytes.len() {
            return malformed("a field runs past the end of its section");
        }
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    pub(super) fn u8(&mut self) -> Read<u8> {
        Ok(self.take(1)?[0])
    }

    /// A varint of at most 128 bits, in its shortest form.
    pub(super) fn varint128(&mut self) -> Read<u128> {
        let mut value: u128 = 0;
        for index in 0..19 {
            let byte = self.u8()?;
            let shift = 7 * index;
            let bits = u128::from(byte & 0x7f);
            if shift == 126 && bits > 0b11 {
                return malformed("a number is too large");
            }
            value |= bits << shift;
            if byte & 0x80 == 0 {
                if byte == 0 && index > 0 {
                    return malformed("a number is not in its shortest form");
                }
                return Ok(value);
            }
        }
        malformed("a number is too large")
    }

    pub(super) fn varint(&mut self) -> Read<u64> {
        let value = self.varint128()?;
        u64::try_from(value).or_else(|_| malformed("a number is too large"))
    }

    pub(super) fn u32(&mut self) -> Read<u32> {
        let value = self.varint()?;
        u32::try_from(value).or_else(|_| malformed("a number is too large"))
    }

    pub(super) fn usize(&mut self) -> Read<usize> {
        let value = self.varint()?;
        usize::try_from(value).or_else(|_| malformed("a number is too large"))
    }

    pub(super) fn zigzag(&mut self) -> Read<i64> {
        let value = self.varint()?;
        Ok((value >> 1) as i64 ^ -((value & 1) as i64))
    }

    /// A count of items that each take at least `min_bytes` bytes: checked
    /// against what is left, so that it cannot ask for a huge allocation.
    pub(super) fn count(&mut self, min_bytes: usize) -> Read<usize> {
        let n = self.usize()?;
        if n.saturating_mul(min_bytes.max(1)) > self.bytes.len() {
            return malformed("a count is larger than what follows");
        }
        Ok(n)
    }

    /// A byte string, its length first.
    pub(super) fn bytes(&mut self) -> Read<&'a [u8]> {
        let n = self.usize()?;
        self.take(n)
    }

    /// A byte string that must be UTF-8.
    pub(super) fn str(&mut self) -> Read<&'a str> {
        let bytes = self.bytes()?;
        std::str::from_utf8(bytes).or_else(|_| malformed("a text is not UTF-8"))
    }

    /// An instant written by [`Writer::instant`], as the loading domain's
    /// clock has it.
    pub(super) fn instant(&mut self) -> Read<Instant> {
        let ms = self.zigzag()?;
        let within = self.varint()?;
        if i128::from(within) >= NANOS_PER_MS {
            return malformed("an instant's nanoseconds exceed a millisecond");
        }
        let nanos = i128::from(ms) * NANOS_PER_MS + i128::from(within);
        Ok(instants::instant_of(self.clock, nanos))
    }

    /// The payload of the next section, which must be `tag`.
    pub(super) fn section(&mut self, tag: u8) -> Read<Reader<'a>> {
        if self.u8()? != tag {
            return malformed("a section is missing or out of order");
        }
        let payload = self.bytes()?;
        Ok(Reader::new(payload, self.clock))
    }

    /// Checks that everything was read.
    pub(super) fn finish(&self) -> Read<()> {
        if self.bytes.is_empty() {
            Ok(())
        } else {
            malformed("a section has bytes after its last field")
        }
    }
}
