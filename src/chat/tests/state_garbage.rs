//! Damaged states never make loading panic, nor a domain loaded from one.
//! Every cut and every flipped bit of a real state is refused (by its
//! length or its CRC). The same damage with the length and CRC made to
//! match again — what the sections' decoder alone must stand, as from a
//! writer gone wrong — is refused, or loads a domain that then takes
//! calls of every kind and saves a state that loads again to the same
//! bytes.

use super::state::{clock_at, reseal, rich, state_accounts, state_config};
use super::*;

fn load(bytes: &[u8], t0: Instant) -> Result<Chat, StateError> {
    Chat::load_state(state_accounts(), state_config(), bytes, clock_at(t0))
}

/// A real state, saved at `t0`.
fn real(t0: Instant) -> Vec<u8> {
    let (chat, _) = rich(t0);
    let mut bytes = Vec::new();
    chat.save_state(clock_at(t0), &mut bytes);
    bytes
}

/// Calls of every kind on a loaded domain, then a save that must load
/// again and save the same.
fn exercise(mut chat: Chat, t0: Instant) {
    let now = t0 + secs(8);
    for sid in (0..16).map(SessionId) {
        for line in [
            "whoelsesince 3600",
            "broadcast hi",
            "message luke hi",
            "block hans",
        ] {
            chat.line(sid, line, now);
        }
        chat.line_drawn(sid, "startprivate yoda", Some([1; 16]), now);
        chat.password_judged(sid, false, now);
        if let Some(epoch) = chat.sessions.get(sid).map(|s| s.epoch) {
            chat.verified(sid, epoch, true, now);
        }
        let _ = chat.backlog(sid, 0).count();
        chat.backlog_written(sid, 2);
    }
    let _ = chat.snapshot(clock_at(t0)).count();
    for group in 0..3 {
        let _ = chat.next_deadline_of(group);
        chat.expire_group(group, now + secs(20));
    }
    chat.expire(now + secs(100));
    let mut resaved = Vec::new();
    chat.save_state(clock_at(t0), &mut resaved);
    let again = load(&resaved, t0).unwrap_or_else(|e| panic!("a state saved does not load: {e}"));
    let mut twice = Vec::new();
    again.save_state(clock_at(t0), &mut twice);
    assert_eq!(twice, resaved, "loaded again, it saves other bytes");
    chat.end_group(2, now + secs(101));
    chat.reload_accounts(state_accounts()[1..].to_vec(), now + secs(102));
    for sid in (0..16).map(SessionId) {
        chat.disconnect(sid, now + secs(103));
    }
    chat.shutdown(now + secs(104));
}

#[test]
fn every_cut_and_every_flipped_bit_is_refused() {
    let t0 = Instant::now();
    let bytes = real(t0);
    for n in 0..bytes.len() {
        assert!(load(&bytes[..n], t0).is_err(), "cut at {n}");
    }
    let mut damaged = bytes.clone();
    for bit in 0..bytes.len() * 8 {
        damaged[bit / 8] ^= 1 << (bit % 8);
        assert!(load(&damaged, t0).is_err(), "bit {bit} flipped");
        damaged[bit / 8] ^= 1 << (bit % 8);
    }
    assert!(load(&bytes, t0).is_ok());
}

#[test]
fn damage_behind_a_matching_crc_is_refused_or_loads_a_working_domain() {
    let t0 = Instant::now();
    let bytes = real(t0);
    let body = crate::chat::state::HEADER..bytes.len() - crate::chat::state::TRAILER;
    let (mut loaded, mut refused) = (0, 0);
    let mut try_load = |damaged: &[u8]| match load(damaged, t0) {
        Ok(chat) => {
            loaded += 1;
            exercise(chat, t0);
        }
        Err(_) => refused += 1,
    };
    for at in body.clone() {
        for mask in [0x01, 0x02, 0x10, 0x40, 0x80, 0xff] {
            let mut damaged = bytes.clone();
            damaged[at] ^= mask;
            reseal(&mut damaged);
            try_load(&damaged);
        }
        for byte in [0x00, 0x7f, 0x80] {
            let mut damaged = bytes.clone();
            damaged.insert(at, byte);
            reseal(&mut damaged);
            try_load(&damaged);
        }
        let mut shorter = bytes.clone();
        shorter.remove(at);
        reseal(&mut shorter);
        try_load(&shorter);
    }
    for end in body.clone() {
        let mut cut = bytes[..end].to_vec();
        cut.extend_from_slice(&[0; 4]);
        reseal(&mut cut);
        assert!(load(&cut, t0).is_err(), "body cut at {end}");
    }
    // Sessions, users and timers of no state: random bodies.
    let mut seed = 0x5eed_u64;
    for len in 0..2000 {
        let mut damaged = bytes[..body.start].to_vec();
        for _ in 0..len % 300 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            damaged.push((seed >> 56) as u8);
        }
        damaged.extend_from_slice(&[0; 4]);
        reseal(&mut damaged);
        try_load(&damaged);
    }
    assert!(loaded > 1000, "{loaded} loaded, {refused} refused");
    assert!(refused > 1000, "{loaded} loaded, {refused} refused");
}

#[test]
fn ids_and_groups_too_large_to_hold_are_refused_before_anything_is_allocated() {
    let t0 = Instant::now();
    let ip: IpAddr = Ipv4Addr::LOCALHOST.into();
    let save = |chat: &Chat| {
        let mut bytes = Vec::new();
        chat.save_state(clock_at(t0), &mut bytes);
        bytes
    };
    let mut chat = Chat::new(state_accounts(), state_config());
    chat.connect_in(SessionId(0x7f), ip, false, 1 << 16, t0);
    chat.outbox().clear();
    assert_eq!(
        load(&save(&chat), t0).map(|_| ()),
        Err(StateError::Malformed("a session's group is too large"))
    );
    let mut chat = Chat::new(state_accounts(), state_config());
    chat.connect(SessionId(0x7f), ip, false, t0);
    chat.outbox().clear();
    let mut bytes = save(&chat);
    assert!(load(&bytes, t0).is_ok());
    // The sessions section: its tag and length, the next epoch (1), the
    // count (1), then the id, which becomes 2^20 (three bytes, not one).
    let at = bytes
        .windows(5)
        .position(|w| w[0] == 2 && w[1] < 0x7e && w[2..] == [1, 1, 0x7f])
        .expect("the sessions section");
    bytes[at + 1] += 2;
    bytes.splice(at + 4..at + 5, [0x80, 0x80, 0x40]);
    reseal(&mut bytes);
    assert_eq!(
        load(&bytes, t0).map(|_| ()),
        Err(StateError::Malformed(
            "session ids are out of order or too large"
        ))
    );
}
