//! A certificate's fingerprint as confab shows and sends it:
//! `SHA256:<base64>`, the SHA-256 of the certificate's DER encoding in
//! base64 without padding, as OpenSSH writes a host key's. The server
//! prints its own at start; the `confab` client registers its private
//! certificate's with `privateport`, and the server passes it on in the
//! introductions of private sessions.

use std::fmt;

use base64::engine::general_purpose::STANDARD_NO_PAD;
use base64::Engine as _;

/// The prefix of every fingerprint.
pub const PREFIX: &str = "SHA256:";

/// The 32 bytes of a certificate's SHA-256.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fingerprint(pub [u8; 32]);

impl Fingerprint {
    /// The fingerprint of the certificate whose DER encoding is `der`.
    pub fn of(der: &[u8]) -> Fingerprint {
        let digest = ring::digest::digest(&ring::digest::SHA256, der);
        let mut bytes = [0u8; 32];
        bytes.copy_from_slice(digest.as_ref());
        Fingerprint(bytes)
    }

    /// Reads `SHA256:<base64>` back; `None` for anything else.
    pub fn parse(text: &str) -> Option<Fingerprint> {
        let encoded = text.strip_prefix(PREFIX)?;
        if encoded.len() != 43 {
            return None;
        }
        let bytes = STANDARD_NO_PAD.decode(encoded).ok()?;
        Some(Fingerprint(bytes.try_into().ok()?))
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(PREFIX)?;
        f.write_str(&STANDARD_NO_PAD.encode(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_fingerprint_is_read_back_as_written_and_nothing_else_is() {
        let print = Fingerprint::of(b"a certificate");
        let text = print.to_string();
        assert!(text.starts_with("SHA256:") && text.len() == 50, "{text}");
        assert_eq!(Fingerprint::parse(&text), Some(print));
        for bad in [
            "",
            "SHA256:",
            &text[7..],
            &text[..49],
            &format!("{text}="),
            &format!("SHA1:{}", &text[7..]),
            "SHA256:!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!",
        ] {
            assert_eq!(Fingerprint::parse(bad), None, "{bad}");
        }
    }
}
