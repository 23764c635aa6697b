//! Passwords as the credentials file stores them: in clear, or as an
//! Argon2 hash in PHC string format (`$argon2id$v=19$m=…,t=…,p=…$salt$hash`,
//! as the `argon2` crate, the `argon2` command-line tool and Python's
//! argon2-cffi write it). A stored password starting with `$argon2` is a
//! hash.
//!
//! A clear password is compared in constant time. A hash is verified with
//! the parameters it carries, which costs tens of milliseconds of CPU by
//! design: the server does it on a worker thread, never in its loop.

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use subtle::ConstantTimeEq;

/// Whether a stored password is a hash rather than the password itself.
pub fn is_hashed(stored: &str) -> bool {
    stored.starts_with("$argon2")
}

/// Checks that `stored`, a hash, is a PHC string Argon2 can verify with.
pub fn check_hash(stored: &str) -> Result<(), String> {
    let hash = PasswordHash::new(stored).map_err(|e| format!("not an Argon2 PHC string: {e}"))?;
    argon2::Algorithm::try_from(hash.algorithm)
        .map_err(|_| format!("not an Argon2 algorithm: {}", hash.algorithm))?;
    argon2::Params::try_from(&hash).map_err(|e| format!("not usable Argon2 parameters: {e}"))?;
    if hash.hash.is_none() {
        return Err("not an Argon2 PHC string: it has no hash".into());
    }
    Ok(())
}

/// Whether `given` is the clear password `stored`, in time that depends on
/// the lengths only.
pub fn clear_matches(stored: &str, given: &str) -> bool {
    stored.as_bytes().ct_eq(given.as_bytes()).into()
}

/// Whether `given` is the password whose hash is `stored` (false for a
/// hash that does not parse).
pub fn verify_hash(stored: &str, given: &str) -> bool {
    PasswordHash::new(stored).is_ok_and(|hash| {
        Argon2::default()
            .verify_password(given.as_bytes(), &hash)
            .is_ok()
    })
}

/// Checks that a new password is one a user can log in with: not empty,
/// and without spaces at either end, which the server strips from every
/// line it reads (so such a password could never be typed).
pub fn check_new(password: &str) -> Result<(), String> {
    if password.is_empty() {
        Err("the password is empty".into())
    } else if password.starts_with(' ') || password.ends_with(' ') {
        Err("the password starts or ends with a space, which the server ignores".into())
    } else {
        Ok(())
    }
}

/// Hashes `password` with Argon2id and the `argon2` crate's default
/// parameters (m=19456 KiB, t=2, p=1, as OWASP recommends) and a random
/// 16-byte salt, as a PHC string.
pub fn hash(password: &str) -> Result<String, String> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| format!("no randomness for a salt: {e}"))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| e.to_string())?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_made_here_verifies_and_only_for_its_password() {
        let stored = hash("wise").expect("hash");
        assert!(is_hashed(&stored), "{stored}");
        assert!(stored.starts_with("$argon2id$v=19$m=19456,t=2,p=1$"));
        check_hash(&stored).expect("valid");
        assert!(verify_hash(&stored, "wise"));
        assert!(!verify_hash(&stored, "wise "));
        assert_ne!(hash("wise").expect("hash"), stored, "a new salt each time");
    }

    #[test]
    fn argon2_cffi_hashes_verify() {
        let vectors = include_str!("../../shared/vectors/argon2id-phc.txt");
        let mut checked = 0;
        for line in vectors
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        {
            let fields: Vec<&str> = line.split_whitespace().collect();
            let [_, password, stored] = fields[..] else {
                panic!("unexpected vector line {line:?}");
            };
            check_hash(stored).expect("valid");
            assert!(verify_hash(stored, password), "{line}");
            assert!(!verify_hash(stored, "not it"), "{line}");
            checked += 1;
        }
        assert_eq!(checked, 6);
    }

    #[test]
    fn broken_hashes_are_refused() {
        for bad in [
            "$argon2id$",
            "$argon2id$v=19$m=65536,t=3,p=4$c2FsdHNhbHQ",
            "$argon2id$v=19$m=1,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "$argon2x$v=19$m=65536,t=3,p=4$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
        ] {
            assert!(check_hash(bad).is_err(), "{bad}");
            assert!(!verify_hash(bad, "x"), "{bad}");
        }
    }

    #[test]
    fn new_passwords_must_be_typable() {
        check_new("a b\tc").expect("inner blanks are kept");
        assert!(check_new("").is_err());
        assert!(check_new(" wise").is_err());
        assert!(check_new("wise ").is_err());
    }

    #[test]
    fn clear_passwords_compare_exactly() {
        assert!(clear_matches("wise", "wise"));
        assert!(!clear_matches("wise", "wis"));
        assert!(!clear_matches("wise", "wisE"));
        assert!(!clear_matches("", "x"));
    }
}
