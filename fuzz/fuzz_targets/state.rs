//! Loading a saved chat state from arbitrary bytes (`Chat::load_state`)
//! never panics, and neither does the domain it loads. The first byte
//! chooses what the rest is:
//!
//! - 0: the whole state, as it is;
//! - 1: the sections, which the target frames with the header and a CRC
//!   that match, so that the fuzzer reaches the sections' decoder;
//! - 2: edits of a real state (offset and byte to XOR, in turn), then
//!   framed again, so that the damage lands among real sections.
//!
//! A domain that loads is then called with lines of every kind, passwords,
//! timers, groups ended, accounts reloaded and a shutdown; before that, it
//! is saved, and what it saves must load and save the same bytes again.

#![no_main]

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use confab::chat::{Chat, ChatConfig, SessionId, WallClock};
use confab::credentials::Account;
use libfuzzer_sys::fuzz_target;

/// The magic and version (10 bytes), then the total length (8 bytes).
const HEADER: usize = 18;
/// The CRC at the end.
const TRAILER: usize = 4;
const UNIX_MS: u64 = 1_700_000_000_000;
/// An Argon2id hash (never verified here).
const HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$LN2YTVnRQTYfR9Ij6Ris8A$0bVHE4Ql7y5WXr+ZVeQTkY6Q0eohOMfHYu5NPNOGJNg";

fuzz_target!(|data: &[u8]| {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    let t0 = Instant::now();
    let bytes = match mode % 3 {
        0 => rest.to_vec(),
        1 => framed(rest),
        _ => edited(rest),
    };
    if let Ok(chat) = Chat::load_state(accounts(), config(), &bytes, clock(t0)) {
        exercise(chat, t0);
    }
});

fn accounts() -> Vec<Account> {
    [
        ("yoda", "wise"),
        ("hans", "falcon"),
        ("r2d2", HASH),
        ("luke", "jedi"),
    ]
    .iter()
    .map(|&(username, password)| Account {
        username: username.into(),
        password: password.into(),
    })
    .collect()
}

fn config() -> ChatConfig {
    let mut config = ChatConfig::new(Duration::from_secs(10), Duration::from_secs(60));
    config.login_timeout = Duration::from_secs(30);
    config.max_failures_per_ip = 2;
    config.mailbox_max = 4;
    config.store_max = 1000;
    config
}

fn clock(at: Instant) -> WallClock {
    WallClock {
        at,
        unix_ms: UNIX_MS,
    }
}

/// `sections` with a header and a CRC that match them.
fn framed(sections: &[u8]) -> Vec<u8> {
    let mut bytes = real()[..HEADER].to_vec();
    bytes.extend_from_slice(sections);
    bytes.extend_from_slice(&[0; TRAILER]);
    seal(&mut bytes);
    bytes
}

/// The real state with `edits` applied (pairs of a two-byte offset and a
/// byte to XOR there), its length and CRC made to match again.
fn edited(edits: &[u8]) -> Vec<u8> {
    let mut bytes = real().clone();
    let body = bytes.len() - HEADER - TRAILER;
    for edit in edits.chunks_exact(3) {
        let at = HEADER + usize::from(u16::from_le_bytes([edit[0], edit[1]])) % body;
        bytes[at] ^= edit[2];
    }
    seal(&mut bytes);
    bytes
}

/// Sets the length and CRC of a state to match its bytes.
fn seal(bytes: &mut [u8]) {
    let n = bytes.len();
    bytes[HEADER - 8..HEADER].copy_from_slice(&(n as u64).to_le_bytes());
    let crc = crc32fast::hash(&bytes[..n - TRAILER]);
    bytes[n - TRAILER..].copy_from_slice(&crc.to_le_bytes());
}

/// A state with something in every section: users online and away, mail,
/// blocks, a ban, failures of an address, sessions at every stage, in
/// three groups, one with a private port.
fn real() -> &'static Vec<u8> {
    static REAL: OnceLock<Vec<u8>> = OnceLock::new();
    REAL.get_or_init(|| {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut c = Chat::new(accounts(), config());
        c.set_wall_clock(clock(t0));
        let local: IpAddr = Ipv4Addr::LOCALHOST.into();
        let lines = |c: &mut Chat, sid: usize, lines: &[&str], now: Instant| {
            for line in lines {
                c.line(SessionId(sid), line, now);
            }
        };
        c.connect(SessionId(0), local, false, at(0));
        lines(
            &mut c,
            0,
            &["yoda", "wise", "privateport 5000", "block hans"],
            at(0),
        );
        c.connect_in(SessionId(1), Ipv6Addr::LOCALHOST.into(), true, 1, at(10));
        lines(&mut c, 1, &["luke", "jedi", "logout"], at(10));
        c.disconnect(SessionId(1), at(10));
        lines(
            &mut c,
            0,
            &["message luke hi", "message hans there"],
            at(20),
        );
        c.connect(
            SessionId(2),
            Ipv4Addr::new(10, 0, 0, 1).into(),
            false,
            at(30),
        );
        lines(&mut c, 2, &["hans", "x", "y", "z"], at(30));
        c.disconnect(SessionId(2), at(30));
        c.connect_in(SessionId(3), local, false, 2, at(40));
        lines(&mut c, 3, &["!stamps", "r2d2", "socute"], at(40));
        c.connect(SessionId(4), local, false, at(50));
        lines(&mut c, 4, &["luke"], at(50));
        c.connect(SessionId(5), local, false, at(60));
        c.outbox().clear();
        let _ = c.outbox().take_verifications();
        let mut bytes = Vec::new();
        c.save_state(clock(t0), &mut bytes);
        bytes
    })
}

/// Calls of every kind on a loaded domain, after checking that what it
/// saves loads and saves the same.
fn exercise(mut chat: Chat, t0: Instant) {
    let mut saved = Vec::new();
    chat.save_state(clock(t0), &mut saved);
    let again = match Chat::load_state(accounts(), config(), &saved, clock(t0)) {
        Ok(again) => again,
        Err(error) => panic!("a saved state does not load: {error}"),
    };
    let mut twice = Vec::new();
    again.save_state(clock(t0), &mut twice);
    assert_eq!(twice, saved, "loaded again, it saves other bytes");

    let now = t0 + Duration::from_secs(5);
    let _ = chat.next_deadline();
    for sid in (0..8).map(SessionId) {
        for line in [
            "whoelsesince 3600",
            "broadcast hi",
            "message luke hi",
            "block yoda",
            "unblock hans",
            "privateport 6000",
            "startprivate yoda",
            "yoda",
            "wise",
        ] {
            chat.line(sid, line, now);
        }
        chat.line_drawn(sid, "startprivate hans", Some([1; 16]), now);
        chat.password_judged(sid, false, now);
        for epoch in 0..8 {
            chat.verified(sid, epoch, true, now);
        }
        let _ = chat.backlog(sid, 0).count();
        chat.backlog_written(sid, 3);
    }
    let _ = chat.snapshot(clock(t0)).count();
    for group in 0..4 {
        let _ = chat.next_deadline_of(group);
        chat.expire_group(group, now + Duration::from_secs(20));
    }
    chat.expire(now + Duration::from_secs(3600));
    chat.end_group(1, now + Duration::from_secs(3601));
    chat.reload_accounts(accounts()[1..].to_vec(), now + Duration::from_secs(3602));
    for sid in (0..8).map(SessionId) {
        chat.disconnect(sid, now + Duration::from_secs(3603));
    }
    chat.shutdown(now + Duration::from_secs(3604));
    chat.outbox().clear();
}
