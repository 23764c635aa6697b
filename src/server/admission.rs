//! Who may connect: at most `--max-per-ip` connections at once from one
//! untrusted address (see [`crate::trust`] for what one address is).

use std::collections::HashMap;
use std::net::IpAddr;

use crate::trust::{IpKey, Trust};

/// Open connections per untrusted address.
#[derive(Debug)]
pub struct Admission {
    trust: Trust,
    max_per_ip: usize,
    open: HashMap<IpKey, usize>,
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TooMany;

impl Admission {
    /// Admission under these limits.
    pub fn new(trust: Trust, max_per_ip: usize) -> Admission {
        Admission {
            trust,
            max_per_ip,
            open: HashMap::new(),
        }
    }

    /// Counts a new connection from `ip`: `Ok(None)` for a trusted one,
    /// `Ok(Some(key))` for one counted against `key`, [`TooMany`] when its
    /// address already has `max_per_ip` open.
    pub fn admit(&mut self, ip: IpAddr) -> Result<Option<IpKey>, TooMany> {
        if self.trust.trusts(ip) {
            return Ok(None);
        }
        let key = IpKey::of(ip);
        let open = self.open.entry(key).or_insert(0);
        if *open >= self.max_per_ip {
            return Err(TooMany);
        }
        *open += 1;
        Ok(Some(key))
    }

    /// A connection admitted as `key` has closed.
    pub fn release(&mut self, key: Option<IpKey>) {
        let Some(key) = key else {
            return;
        };
        if let Some(open) = self.open.get_mut(&key) {
            *open -= 1;
            if *open == 0 {
                self.open.remove(&key);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_untrusted_address_gets_its_share() {
        let mut admission = Admission::new(Trust::loopback(), 2);
        let a: IpAddr = "127.0.0.2".parse().expect("ip");
        let b: IpAddr = "127.0.0.3".parse().expect("ip");
        let first = admission.admit(a).expect("first");
        admission.admit(a).expect("second");
        assert_eq!(admission.admit(a), Err(TooMany));
        admission.admit(b).expect("another address");
        for _ in 0..10 {
            assert_eq!(admission.admit("127.0.0.1".parse().expect("ip")), Ok(None));
        }
        admission.release(first);
        admission.admit(a).expect("after one closed");
    }
}
