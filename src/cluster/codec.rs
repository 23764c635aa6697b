//! The few primitives the log's entries and the replica's snapshots are
//! written with: unsigned integers as LEB128 varints, byte strings as a
//! varint length and the bytes, and a [`Reader`] of them that never
//! panics on bytes from the network.

use std::fmt;

use crate::credentials::Account;

/// Most items a count may claim, so that a forged count cannot make a
/// reader reserve much.
pub const MAX_COUNT: u64 = 1 << 20;

/// Why bytes could not be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodeError(pub &'static str);

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

impl std::error::Error for DecodeError {}

/// Appends `value` as a varint.
pub fn put_u64(out: &mut Vec<u8>, mut value: u64) {
    while value >= 0x80 {
        out.push((value as u8) | 0x80);
        value >>= 7;
    }
    out.push(value as u8);
}

/// Appends `bytes` with their length.
pub fn put_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_u64(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

/// Appends a list of accounts.
pub fn put_accounts(out: &mut Vec<u8>, accounts: &[Account]) {
    put_u64(out, accounts.len() as u64);
    for account in accounts {
        put_bytes(out, account.username.as_bytes());
        put_bytes(out, account.password.as_bytes());
    }
}

/// Reads bytes front to back.
pub struct Reader<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `bytes`.
    pub fn new(bytes: &'a [u8]) -> Reader<'a> {
        Reader { bytes, pos: 0 }
    }

    /// Whether every byte was read.
    pub fn at_end(&self) -> bool {
        self.pos == self.bytes.len()
    }

    /// The bytes not read yet.
    pub fn rest(&self) -> &'a [u8] {
        &self.bytes[self.pos..]
    }

    /// One byte.
    pub fn byte(&mut self) -> Result<u8, DecodeError> {
        let byte = *self.bytes.get(self.pos).ok_or(DecodeError("truncated"))?;
        self.pos += 1;
        Ok(byte)
    }

    /// A varint.
    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for shift in (0..64).step_by(7) {
            let byte = self.byte()?;
            value |= u64::from(byte & 0x7f)
                .checked_shl(shift)
                .ok_or(DecodeError("varint too long"))?;
            if byte & 0x80 == 0 {
                return Ok(value);
            }
        }
        Err(DecodeError("varint too long"))
    }

    /// A count of items, at most [`MAX_COUNT`].
    pub fn count(&mut self) -> Result<u64, DecodeError> {
        let count = self.u64()?;
        if count > MAX_COUNT {
            return Err(DecodeError("count too large"));
        }
        Ok(count)
    }

    /// The next `n` bytes.
    pub fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self
            .pos
            .checked_add(n)
            .filter(|&end| end <= self.bytes.len())
            .ok_or(DecodeError("truncated"))?;
        let slice = &self.bytes[self.pos..end];
        self.pos = end;
        Ok(slice)
    }

    /// The next `N` bytes as an array.
    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut array = [0; N];
        array.copy_from_slice(self.take(N)?);
        Ok(array)
    }

    /// A byte string.
    pub fn bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let len = usize::try_from(self.u64()?).map_err(|_| DecodeError("truncated"))?;
        self.take(len)
    }

    /// A UTF-8 string.
    pub fn string(&mut self) -> Result<String, DecodeError> {
        let bytes = self.bytes()?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError("text is not UTF-8"))
    }

    /// A list of accounts.
    pub fn accounts(&mut self) -> Result<Vec<Account>, DecodeError> {
        let count = self.count()?;
        let mut accounts = Vec::new();
        for _ in 0..count {
            accounts.push(Account {
                username: self.string()?,
                password: self.string()?,
            });
        }
        Ok(accounts)
    }
}
