//! Reading a state back: the frame checked first (magic, version, length,
//! CRC), then each section, then everything the domain relies on checked
//! before it is trusted — ids in range, one session per user online, the
//! online list and the sessions agreeing — so that no input, however
//! damaged, makes the loaded domain panic later; and what is derived
//! rebuilt (see the module documentation of `state`).

use std::collections::hash_map::{Entry, HashMap};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::Instant;

use super::wire::{malformed, Read, Reader};
use super::{session_bits, stage_tag, storage_bits, tag, timer_tag, user_bits};
use super::{StateError, HEADER, MAGIC, MAX_COUNTER, MAX_GROUP, MAX_SESSION_ID, TRAILER, VERSION};
use crate::chat::addresses::FailureWindows;
use crate::chat::mail::Storage;
use crate::chat::mailbox::{self, Mailbox};
use crate::chat::outbox::Outbox;
use crate::chat::presence::{Online, Presence};
use crate::chat::sessions::{Session, Sessions, Stage};
use crate::chat::users::{User, UserId, Users};
use crate::chat::{Chat, ChatConfig, SessionId, Timer, WallClock};
use crate::credentials::Account;
use crate::deadlines::Deadlines;
use crate::fingerprint::Fingerprint;
use crate::token;
use crate::trust::IpKey;

impl Chat {
    /// The domain saved in `bytes` by [`Chat::save_state`], with these
    /// accounts and this configuration, every instant read back as the
    /// instant `clock` pairs its wall time with; it draws tokens from the
    /// operating system, records no changes until
    /// [`Chat::record_changes`], and its outbox is empty.
    ///
    /// Sessions keep their ids and epochs, users their ids (their order).
    /// A user of the state gets its password from the account of the same
    /// name; one without an account is kept only for its records, as at a
    /// start without it (it cannot log in), and must not be logged in
    /// ([`StateError::OnlineWithoutAccount`]).
    /// Accounts the state does not know are added after its users, as
    /// fresh users. Usernames among `accounts` must be unique, as
    /// `credentials::parse` guarantees (a repeated one is ignored). Loaded
    /// with the accounts and configuration it was saved with, the domain
    /// answers every call as the saved one would at the same wall time.
    pub fn load_state(
        accounts: Vec<Account>,
        config: ChatConfig,
        bytes: &[u8],
        clock: WallClock,
    ) -> Result<Chat, StateError> {
        let mut r = Reader::new(unframe(bytes)?, clock);
        let (list, stored) = load_users(&mut r.section(tag::USERS)?)?;
        let known = list.len();
        let (sessions, logged_in) = load_sessions(&mut r.section(tag::SESSIONS)?, known, config)?;
        let online = load_presence(&mut r.section(tag::PRESENCE)?, &sessions, logged_in)?;
        let failures = load_failures(&mut r.section(tag::FAILURES)?)?;
        let (deadlines, idle) = load_timers(&mut r.section(tag::TIMERS)?, known)?;
        let storage = load_storage(&mut r.section(tag::STORAGE)?, stored)?;
        r.finish()?;

        let mut users = with_accounts(list, accounts)?;
        let mut presence = Presence::default();
        for (slot, &(sid, user)) in online.iter().enumerate() {
            if !users.is_account(user) {
                return Err(StateError::OnlineWithoutAccount(
                    users[user].name.to_string(),
                ));
            }
            let account = &mut users[user];
            account.session = Some(sid);
            account.online_slot = slot;
            presence.online.push(Online {
                user,
                session: sid,
                blocks_anyone: !account.blocked.is_empty(),
            });
        }
        for index in 0..known {
            let user = index as UserId;
            if let Some(left) = users[user].last_seen {
                presence.departed.insert((left, user));
            }
        }
        Ok(Chat {
            config,
            users,
            sessions,
            presence,
            failures,
            deadlines,
            idle,
            outbox: Outbox::default(),
            storage,
            tokens: token::os_random,
            given_token: None,
        })
    }
}

/// The sections of a saved state, once its header and CRC are checked.
fn unframe(bytes: &[u8]) -> Result<&[u8], StateError> {
    let actual = bytes.len();
    if !MAGIC.starts_with(&bytes[..actual.min(MAGIC.len())]) {
        return Err(StateError::BadMagic);
    }
    let short = StateError::Truncated {
        declared: 0,
        actual,
    };
    let Some(&[low, high]) = bytes.get(MAGIC.len()..MAGIC.len() + 2) else {
        return Err(short);
    };
    let version = u16::from_le_bytes([low, high]);
    if version != VERSION {
        return Err(StateError::Version(version));
    }
    let Some(length) = bytes.get(HEADER - 8..HEADER) else {
        return Err(short);
    };
    let mut declared = [0; 8];
    declared.copy_from_slice(length);
    let declared = u64::from_le_bytes(declared);
    if (actual as u64) < declared {
        return Err(StateError::Truncated { declared, actual });
    }
    if (actual as u64) > declared {
        return Err(StateError::TrailingBytes { declared, actual });
    }
    let Some(end) = actual.checked_sub(TRAILER).filter(|&end| end >= HEADER) else {
        return malformed("the declared length is shorter than a header");
    };
    let mut stored = [0; 4];
    stored.copy_from_slice(&bytes[end..]);
    let stored = u32::from_le_bytes(stored);
    let computed = crc32fast::hash(&bytes[..end]);
    if stored != computed {
        return Err(StateError::Crc { stored, computed });
    }
    Ok(&bytes[HEADER..end])
}

/// The users of the state, in id order, and the cost of their mail.
fn load_users(r: &mut Reader<'_>) -> Read<(Vec<User>, u64)> {
    // Name length, flags, failures, block count, next number, mail count.
    let count = r.count(6)?;
    let mut list = Vec::with_capacity(count);
    let mut stored: u64 = 0;
    for _ in 0..count {
        let name = r.str()?;
        let flags = r.u8()?;
        if flags & !user_bits::ALL != 0 {
            return malformed("a user has unknown flags");
        }
        let mut user = User::new(name.into(), None);
        user.failures = r.u8()?;
        if flags & user_bits::BANNED != 0 {
            user.banned_until = Some(r.instant()?);
        }
        if flags & user_bits::SEEN != 0 {
            user.last_seen = Some(r.instant()?);
        }
        let blocks = r.count(1)?;
        let mut blocked = Vec::with_capacity(blocks);
        for _ in 0..blocks {
            let target = r.u32()?;
            if target as usize >= count || blocked.last().is_some_and(|&last| last >= target) {
                return malformed("a block list is out of order or names no user");
            }
            blocked.push(target);
        }
        user.blocked = blocked;
        let next_seq = r.varint()?;
        if next_seq > MAX_COUNTER {
            return malformed("a mailbox's next number is too large");
        }
        // Number, time, line length.
        let messages = r.count(3)?;
        let mut mail = Vec::with_capacity(messages);
        for _ in 0..messages {
            let seq = r.varint()?;
            let stored_ms = r.varint()?.checked_sub(1);
            let line = r.str()?;
            stored = stored
                .checked_add(mailbox::cost(line.len()))
                .map_or_else(|| malformed("more mail than can be counted"), Ok)?;
            mail.push((seq, stored_ms, line.into()));
        }
        let Some(mailbox) = Mailbox::restored(next_seq, mail) else {
            return malformed("a mailbox's numbers do not rise below its next number");
        };
        user.mailbox = mailbox;
        list.push(user);
    }
    r.finish()?;
    Ok((list, stored))
}

/// The sessions, and for each user whether a session is logged in as it.
fn load_sessions(
    r: &mut Reader<'_>,
    known: usize,
    config: ChatConfig,
) -> Read<(Sessions, Vec<bool>)> {
    let next_epoch = r.varint()?;
    if next_epoch > MAX_COUNTER {
        return malformed("the next epoch is too large");
    }
    let mut sessions = Sessions::restored(next_epoch);
    let mut logged_in = vec![false; known];
    let mut epochs = Vec::new();
    let mut previous: Option<usize> = None;
    // Id, epoch, group, stage, activity (2), flags, address (4).
    let count = r.count(11)?;
    for _ in 0..count {
        let sid = r.usize()?;
        if sid > MAX_SESSION_ID || previous.is_some_and(|p| p >= sid) {
            return malformed("session ids are out of order or too large");
        }
        previous = Some(sid);
        let session = load_session(r, known)?;
        if session.epoch >= next_epoch {
            return malformed("a session's epoch is not below the next epoch");
        }
        if session.last_activity.checked_add(config.timeout).is_none() {
            return malformed("a session was last active too late to time out");
        }
        if let Stage::LoggedIn(user) = session.stage {
            if std::mem::replace(&mut logged_in[user as usize], true) {
                return malformed("a user is logged in twice");
            }
        }
        epochs.push(session.epoch);
        sessions.open(SessionId(sid), session);
    }
    epochs.sort_unstable();
    if epochs.windows(2).any(|pair| pair[0] == pair[1]) {
        return malformed("two sessions have the same epoch");
    }
    r.finish()?;
    Ok((sessions, logged_in))
}

fn load_session(r: &mut Reader<'_>, known: usize) -> Read<Session> {
    let epoch = r.varint()?;
    let group = r.u32()?;
    if group > MAX_GROUP {
        return malformed("a session's group is too large");
    }
    let stage = match r.u8()? {
        stage_tag::USERNAME => Stage::Username,
        tag => {
            let user = r.u32()?;
            if user as usize >= known {
                return malformed("a session names no user");
            }
            match tag {
                stage_tag::PASSWORD => Stage::Password(user),
                stage_tag::VERIFYING => Stage::Verifying(user),
                stage_tag::LOGGED_IN => Stage::LoggedIn(user),
                _ => return malformed("a session's stage is unknown"),
            }
        }
    };
    let last_activity = r.instant()?;
    let flags = r.u8()?;
    let has = |bit: u8| flags & bit != 0;
    let login_by = match has(session_bits::LOGIN_BY) {
        true => Some(r.instant()?),
        false => None,
    };
    let ip = match has(session_bits::IPV6) {
        true => IpAddr::V6(Ipv6Addr::from(array::<16>(r)?)),
        false => IpAddr::V4(Ipv4Addr::from(array::<4>(r)?)),
    };
    let private_port = match has(session_bits::PORT) {
        true => Some(u16::try_from(r.varint()?).or_else(|_| malformed("a port is too large"))?),
        false => None,
    };
    let private_print = match has(session_bits::FINGERPRINT) {
        true => Some(Box::new(Fingerprint(array::<32>(r)?))),
        false => None,
    };
    Ok(Session {
        stage,
        last_activity,
        ip,
        private_port,
        private_print,
        no_private: has(session_bits::NO_PRIVATE),
        trusted: has(session_bits::TRUSTED),
        login_by,
        group,
        epoch,
        stamps: has(session_bits::STAMPS),
        end_pending: has(session_bits::END_PENDING),
    })
}

fn array<const N: usize>(r: &mut Reader<'_>) -> Read<[u8; N]> {
    <[u8; N]>::try_from(r.take(N)?).or_else(|_| malformed("a field is cut short"))
}

/// The users online, in the online list's order, with their sessions:
/// exactly the sessions logged in.
fn load_presence(
    r: &mut Reader<'_>,
    sessions: &Sessions,
    mut logged_in: Vec<bool>,
) -> Read<Vec<(SessionId, UserId)>> {
    let count = r.count(1)?;
    let mut online = Vec::with_capacity(count);
    for _ in 0..count {
        let sid = SessionId(r.usize()?);
        let Some(Stage::LoggedIn(user)) = sessions.get(sid).map(|s| s.stage) else {
            return malformed("a user online has no session logged in");
        };
        if !std::mem::replace(&mut logged_in[user as usize], false) {
            return malformed("a user is online twice");
        }
        online.push((sid, user));
    }
    if logged_in.contains(&true) {
        return malformed("a session logged in is not online");
    }
    r.finish()?;
    Ok(online)
}

fn load_failures(r: &mut Reader<'_>) -> Read<FailureWindows> {
    // End (2), key.
    let count = r.count(3)?;
    let mut ending = Vec::with_capacity(count);
    for _ in 0..count {
        let ends = r.instant()?;
        ending.push((ends, ip_key(r)?));
    }
    // Key, failures, end (2).
    let count = r.count(4)?;
    let mut windows: Vec<(IpKey, u32, Instant)> = Vec::with_capacity(count);
    for _ in 0..count {
        let key = ip_key(r)?;
        if windows.last().is_some_and(|&(last, _, _)| last >= key) {
            return malformed("failure windows are out of order");
        }
        let failures = r.u32()?;
        windows.push((key, failures, r.instant()?));
    }
    r.finish()?;
    Ok(FailureWindows::restored(windows, ending))
}

fn ip_key(r: &mut Reader<'_>) -> Read<IpKey> {
    IpKey::from_bits(r.varint128()?).map_or_else(|| malformed("an address key is no address's"), Ok)
}

/// The ban ends, and the idle timers of each group.
fn load_timers(
    r: &mut Reader<'_>,
    known: usize,
) -> Read<(Deadlines<Timer>, Vec<Deadlines<Timer>>)> {
    let deadlines = load_heap(r, known)?;
    let groups = r.count(1)?;
    if groups > MAX_GROUP as usize + 1 {
        return malformed("too many groups");
    }
    let mut idle = Vec::with_capacity(groups);
    for _ in 0..groups {
        idle.push(load_heap(r, known)?);
    }
    r.finish()?;
    Ok((deadlines, idle))
}

fn load_heap(r: &mut Reader<'_>, known: usize) -> Read<Deadlines<Timer>> {
    let mut heap = Deadlines::default();
    let mut previous: Option<(Instant, Timer)> = None;
    // Due (2), kind, one number.
    let count = r.count(4)?;
    for _ in 0..count {
        let at = r.instant()?;
        let timer = match r.u8()? {
            timer_tag::IDLE => Timer::Idle {
                session: SessionId(r.usize()?),
                epoch: r.varint()?,
            },
            timer_tag::BAN_END => {
                let user = r.u32()?;
                if user as usize >= known {
                    return malformed("a ban end names no user");
                }
                Timer::BanEnd(user)
            }
            _ => return malformed("a timer's kind is unknown"),
        };
        if previous.is_some_and(|last| last > (at, timer)) {
            return malformed("timers are out of order");
        }
        previous = Some((at, timer));
        heap.arm(at, timer);
    }
    Ok(heap)
}

fn load_storage(r: &mut Reader<'_>, stored: u64) -> Read<Storage> {
    let flags = r.u8()?;
    if flags & !storage_bits::ALL != 0 {
        return malformed("the storage has unknown flags");
    }
    let clock = match flags & storage_bits::WALL_CLOCK != 0 {
        true => {
            let at = r.instant()?;
            let unix_ms = r.varint()?;
            Some(WallClock { at, unix_ms })
        }
        false => None,
    };
    r.finish()?;
    Ok(Storage {
        stored,
        available: flags & storage_bits::AVAILABLE != 0,
        clock,
    })
}

/// The users of the state with the passwords of their accounts (none for
/// a user without one), then the accounts the state does not know.
fn with_accounts(mut list: Vec<User>, accounts: Vec<Account>) -> Read<Users> {
    let mut passwords: HashMap<String, String> = HashMap::with_capacity(accounts.len());
    let mut order = Vec::with_capacity(accounts.len());
    for account in accounts {
        if let Entry::Vacant(vacant) = passwords.entry(account.username) {
            order.push(vacant.key().clone());
            vacant.insert(account.password);
        }
    }
    for user in &mut list {
        user.password = passwords.remove(&*user.name).map(String::into_boxed_str);
    }
    for name in order {
        if let Some(password) = passwords.remove(&name) {
            list.push(User::new(name.into(), Some(password.into())));
        }
    }
    Users::restored(list).map_or_else(|| malformed("two users have the same name"), Ok)
}
