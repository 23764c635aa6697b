//! Writing the state: the header, one section per part of the domain, and
//! the CRC. The payloads, in the words of the module documentation:
//!
//! - users: their count, then each in id order: name, flags
//!   (`user_bits`), failures (one byte), the ban's end and the last-seen
//!   time if the flags say so, the block list (count, ids), and the
//!   mailbox: the next sequence number, the count, each message's number,
//!   time stored plus one (0: not known) and line.
//! - sessions: the next epoch, the count, then each by id: id, epoch,
//!   group, stage (`stage_tag`, and the user unless at the username
//!   prompt), last activity, flags (`session_bits`), the login deadline,
//!   the address (4 or 16 bytes), the port and the fingerprint (32
//!   bytes), each optional one if the flags say so.
//! - presence: the count, and the session of each user online in the
//!   online list's order.
//! - failures: the windows in the order they end (count; each: end,
//!   address key), then by address (count; each: key, failures, end).
//! - timers: the ban ends, then the count of groups and the idle timers
//!   of each; timers are a count and each by when it is due: the instant
//!   and the kind (`timer_tag`): idle with session and epoch, or ban end
//!   with user.
//! - storage: flags (`storage_bits`), then the wall clock if there is
//!   one: its instant and its milliseconds since the epoch.

use std::net::IpAddr;
use std::time::Instant;

use super::wire::Writer;
use super::{session_bits, stage_tag, storage_bits, tag, timer_tag, user_bits};
use super::{HEADER, MAGIC, TRAILER, VERSION};
use crate::chat::sessions::{Session, Stage};
use crate::chat::users::User;
use crate::chat::{Chat, Timer, WallClock};
use crate::deadlines::Deadlines;

impl Chat {
    /// Appends the whole state of the domain to `out`: every user (with
    /// its mail, blocks, ban and last-seen time), every session, who is
    /// online in which order, the failure windows of addresses, every
    /// armed timer (stale ones included), the epoch counter, whether
    /// storage is available and the wall clock: everything a later call
    /// can depend on but the accounts' passwords, the configuration and
    /// the token source. Every instant is written as the wall time `clock`
    /// pairs it with, to the nanosecond; the whole is framed with a magic,
    /// a version, its length and a CRC-32, and equal states give equal
    /// bytes. Call it between calls, once the outbox is drained: the
    /// outbox is no part of the state, and a domain loaded with
    /// [`Chat::load_state`] starts with an empty one.
    pub fn save_state(&self, clock: WallClock, out: &mut Vec<u8>) {
        let start = out.len();
        let mut w = Writer::new(out, clock);
        w.raw(&MAGIC);
        w.raw(&VERSION.to_le_bytes());
        w.raw(&[0; 8]);
        w.section(tag::USERS, |w| self.save_users(w));
        w.section(tag::SESSIONS, |w| self.save_sessions(w));
        w.section(tag::PRESENCE, |w| self.save_presence(w));
        w.section(tag::FAILURES, |w| self.save_failures(w));
        w.section(tag::TIMERS, |w| self.save_timers(w));
        w.section(tag::STORAGE, |w| self.save_storage(w));
        let total = (w.len() - start + TRAILER) as u64;
        let out = w.buffer();
        out[start + HEADER - 8..start + HEADER].copy_from_slice(&total.to_le_bytes());
        let crc = crc32fast::hash(&out[start..]);
        out.extend_from_slice(&crc.to_le_bytes());
    }

    fn save_users(&self, w: &mut Writer<'_>) {
        w.usize(self.users.len());
        for index in 0..self.users.len() {
            if let Some(user) = self.users.get(index) {
                save_user(user, w);
            }
        }
    }

    fn save_sessions(&self, w: &mut Writer<'_>) {
        w.varint(self.sessions.upcoming_epoch());
        let ids = self.sessions.ids();
        w.usize(ids.len());
        for sid in ids {
            if let Some(session) = self.sessions.get(sid) {
                w.usize(sid.0);
                save_session(session, w);
            }
        }
    }

    fn save_presence(&self, w: &mut Writer<'_>) {
        w.usize(self.presence.online.len());
        for online in &self.presence.online {
            w.usize(online.session.0);
        }
    }

    fn save_failures(&self, w: &mut Writer<'_>) {
        let ending: Vec<_> = self.failures.ending().collect();
        w.usize(ending.len());
        for (ends, key) in ending {
            w.instant(ends);
            w.varint128(key.bits());
        }
        let windows = self.failures.windows();
        w.usize(windows.len());
        for (key, failures, ends) in windows {
            w.varint128(key.bits());
            w.varint(u64::from(failures));
            w.instant(ends);
        }
    }

    fn save_timers(&self, w: &mut Writer<'_>) {
        save_heap(&self.deadlines, w);
        w.usize(self.idle.len());
        for heap in &self.idle {
            save_heap(heap, w);
        }
    }

    fn save_storage(&self, w: &mut Writer<'_>) {
        let mut flags = 0;
        if self.storage.available {
            flags |= storage_bits::AVAILABLE;
        }
        if self.storage.clock.is_some() {
            flags |= storage_bits::WALL_CLOCK;
        }
        w.u8(flags);
        if let Some(clock) = self.storage.clock {
            w.instant(clock.at);
            w.varint(clock.unix_ms);
        }
    }
}

fn save_user(user: &User, w: &mut Writer<'_>) {
    w.bytes(user.name.as_bytes());
    let mut flags = 0;
    if user.banned_until.is_some() {
        flags |= user_bits::BANNED;
    }
    if user.last_seen.is_some() {
        flags |= user_bits::SEEN;
    }
    w.u8(flags);
    w.u8(user.failures);
    for t in [user.banned_until, user.last_seen].into_iter().flatten() {
        w.instant(t);
    }
    w.usize(user.blocked.len());
    for &target in &user.blocked {
        w.varint(u64::from(target));
    }
    let mailbox = &user.mailbox;
    w.varint(mailbox.next_seq());
    w.usize(mailbox.len());
    for entry in mailbox.entries_from(0) {
        w.varint(entry.seq);
        w.varint(entry.stored_ms.map_or(0, |ms| ms.saturating_add(1)));
        w.bytes(entry.line.as_bytes());
    }
}

fn save_session(session: &Session, w: &mut Writer<'_>) {
    w.varint(session.epoch);
    w.varint(u64::from(session.group));
    let (stage, user) = match session.stage {
        Stage::Username => (stage_tag::USERNAME, None),
        Stage::Password(user) => (stage_tag::PASSWORD, Some(user)),
        Stage::Verifying(user) => (stage_tag::VERIFYING, Some(user)),
        Stage::LoggedIn(user) => (stage_tag::LOGGED_IN, Some(user)),
    };
    w.u8(stage);
    if let Some(user) = user {
        w.varint(u64::from(user));
    }
    w.instant(session.last_activity);
    let bits = [
        (session.no_private, session_bits::NO_PRIVATE),
        (session.trusted, session_bits::TRUSTED),
        (session.stamps, session_bits::STAMPS),
        (session.end_pending, session_bits::END_PENDING),
        (session.login_by.is_some(), session_bits::LOGIN_BY),
        (session.private_port.is_some(), session_bits::PORT),
        (session.private_print.is_some(), session_bits::FINGERPRINT),
        (session.ip.is_ipv6(), session_bits::IPV6),
    ];
    w.u8(bits
        .iter()
        .filter(|(set, _)| *set)
        .fold(0, |flags, (_, bit)| flags | bit));
    if let Some(login_by) = session.login_by {
        w.instant(login_by);
    }
    match session.ip {
        IpAddr::V4(v4) => w.raw(&v4.octets()),
        IpAddr::V6(v6) => w.raw(&v6.octets()),
    }
    if let Some(port) = session.private_port {
        w.varint(u64::from(port));
    }
    if let Some(print) = &session.private_print {
        w.raw(&print.0);
    }
}

/// A heap's timers by when they are due (equal ones interchangeable), so
/// that equal heaps are written alike.
fn save_heap(heap: &Deadlines<Timer>, w: &mut Writer<'_>) {
    let mut entries: Vec<(Instant, &Timer)> = heap.entries().collect();
    entries.sort_unstable();
    w.usize(entries.len());
    for (at, timer) in entries {
        w.instant(at);
        match *timer {
            Timer::Idle { session, epoch } => {
                w.u8(timer_tag::IDLE);
                w.usize(session.0);
                w.varint(epoch);
            }
            Timer::BanEnd(user) => {
                w.u8(timer_tag::BAN_END);
                w.varint(u64::from(user));
            }
        }
    }
}
