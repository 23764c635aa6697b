//! The random tokens with which the server introduces two `confab` clients
//! for private messaging: 128 bits, sent as 32 lowercase hex digits.
//!
//! Where the bytes come from is a [`TokenSource`], a plain function, so
//! that the chat domain stays deterministic under test: the server uses
//! [`os_random`], tests install a counter.

use std::fmt;

/// How many random bytes a token has.
pub const TOKEN_BYTES: usize = 16;

/// Draws one fresh token, or `None` if no randomness is available (the
/// domain then refuses to introduce anyone rather than use a guessable
/// token).
pub type TokenSource = fn() -> Option<[u8; TOKEN_BYTES]>;

/// The operating system's random number generator: what the server uses,
/// because a token is all that keeps a stranger from joining a private
/// session.
pub fn os_random() -> Option<[u8; TOKEN_BYTES]> {
    let mut bytes = [0u8; TOKEN_BYTES];
    getrandom::fill(&mut bytes).ok()?;
    Some(bytes)
}

/// A token as it is written on the wire: 32 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hex(pub [u8; TOKEN_BYTES]);

impl fmt::Display for Hex {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.iter().try_for_each(|byte| write!(f, "{byte:02x}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_is_32_lowercase_digits_in_byte_order() {
        let mut bytes = [0u8; TOKEN_BYTES];
        bytes[0] = 0xab;
        bytes[1] = 0x05;
        bytes[15] = 0xff;
        assert_eq!(Hex(bytes).to_string(), "ab0500000000000000000000000000ff");
    }

    #[test]
    fn os_tokens_are_fresh() {
        let first = os_random().expect("the OS has randomness");
        let second = os_random().expect("the OS has randomness");
        assert_ne!(first, second);
    }
}
