//! Reading the bytes of one received line as text ([`decode_line`]), and
//! the error line for a line that cannot be read ([`LineError`]).

use std::fmt;

use super::{INVALID_ENCODING, LINE_TOO_LONG};

/// Why a received line could not even be read as text; its `Display` is
/// the exact error line the client gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LineError {
    /// Longer than the line limit; the rest of it up to `\n` is discarded.
    TooLong,
    /// Not valid UTF-8.
    InvalidEncoding,
}

impl LineError {
    /// The exact error line, as `Display` shows it.
    pub fn text(self) -> &'static str {
        match self {
            LineError::TooLong => LINE_TOO_LONG,
            LineError::InvalidEncoding => INVALID_ENCODING,
        }
    }
}

impl fmt::Display for LineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

/// Turns the bytes of one received line (without its `\n`) into text:
/// strips one trailing `\r` and the surrounding spaces. `Ok(None)` is a line
/// that is empty after that, which the protocol ignores (it is not
/// activity).
pub fn decode_line(raw: &[u8]) -> Result<Option<&str>, LineError> {
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    // The spaces are trimmed as bytes: they are ASCII, so what is left is
    // valid UTF-8 exactly when the whole line is.
    let start = raw.iter().position(|&b| b != b' ').unwrap_or(raw.len());
    let end = raw
        .iter()
        .rposition(|&b| b != b' ')
        .map_or(start, |last| last + 1);
    let text =
        simdutf8::basic::from_utf8(&raw[start..end]).map_err(|_| LineError::InvalidEncoding)?;
    Ok((!text.is_empty()).then_some(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_strips_one_cr_and_spaces() {
        assert_eq!(decode_line(b"  whoelse \r"), Ok(Some("whoelse")));
        assert_eq!(decode_line(b"a\r\r"), Ok(Some("a\r")));
        assert_eq!(decode_line(b""), Ok(None));
        assert_eq!(decode_line(b"   \r"), Ok(None));
        assert_eq!(decode_line(b"\r"), Ok(None));
    }

    #[test]
    fn decode_rejects_invalid_utf8() {
        assert_eq!(decode_line(b"\xff\xfe"), Err(LineError::InvalidEncoding));
        assert_eq!(decode_line(b"abc\xc3"), Err(LineError::InvalidEncoding));
        assert_eq!(decode_line("héllo".as_bytes()), Ok(Some("héllo")));
    }
}
