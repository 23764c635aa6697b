//! The whole state saved and loaded ([`Chat::save_state`],
//! [`Chat::load_state`]): a domain loaded by another process, whose clock
//! pairs other instants with the same wall times, answers every later
//! call exactly as the saved one does.
//!
//! A [`Twin`] is the saved domain and the loaded one, each with the
//! instant its process calls the start of the test; every call is made on
//! both at the same offset from their own start, and everything they do is
//! compared: the effects and their text in order, the records, the held
//! sessions, the passwords to verify, the deadlines, what the public
//! queries say, and the state itself saved again (the same bytes).

use super::*;
use crate::fingerprint::Fingerprint;
use crate::trust::IpKey;
use std::ops::Range;

/// An Argon2id hash (the domain never verifies it: the server does).
const R2D2_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$LN2YTVnRQTYfR9Ij6Ris8A$0bVHE4Ql7y5WXr+ZVeQTkY6Q0eohOMfHYu5NPNOGJNg";

/// The accounts of the saved domains.
pub(super) fn state_accounts() -> Vec<Account> {
    accounts(&[
        ("yoda", "wise"),
        ("hans", "falcon"),
        ("vader", "sithlord"),
        ("luke", "lightsaber"),
        ("r2d2", R2D2_HASH),
        ("leia", "princess"),
        ("chewie", "wookiee"),
    ])
}

/// Every user a test looks at, accounts and not.
const NAMES: [&str; 9] = [
    "yoda", "hans", "vader", "luke", "r2d2", "leia", "chewie", "obiwan", "lando",
];

pub(super) fn state_config() -> ChatConfig {
    let mut config = ChatConfig::new(BLOCK, TIMEOUT);
    config.login_timeout = secs(30);
    config.max_failures_per_ip = 4;
    config.mailbox_max = 3;
    config
}

/// The wall clock of a process whose instant `at` is the test's start.
pub(super) fn clock_at(at: Instant) -> WallClock {
    WallClock {
        at,
        unix_ms: WALL_MS,
    }
}

/// Tokens that are always the same, so that both domains of a twin give
/// the same one.
pub(super) fn fixed_token() -> Option<[u8; token::TOKEN_BYTES]> {
    Some([0xab; token::TOKEN_BYTES])
}

/// An effect with its text.
#[derive(Debug, PartialEq, Eq)]
enum Seen {
    Send(SessionId, String),
    Notice(SessionId, String),
    Close(SessionId),
    Backlog(SessionId),
}

/// Everything a domain did in a call, and what it says after it; times are
/// offsets from its process's start.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct Observed {
    effects: Vec<Seen>,
    records: Vec<u8>,
    held: Vec<SessionId>,
    pub(super) verifications: Vec<Verification>,
    next: Option<i128>,
    next_of: Vec<Option<i128>>,
    stored: u64,
    online: usize,
    users: Vec<(&'static str, bool, usize)>,
    backlogs: Vec<Vec<String>>,
}

/// Nanoseconds from `base` to `t`, negative if earlier.
fn offset(base: Instant, t: Instant) -> i128 {
    match t.checked_duration_since(base) {
        Some(ahead) => ahead.as_nanos() as i128,
        None => -((base - t).as_nanos() as i128),
    }
}

/// Drains `chat`'s outbox and asks it everything public.
pub(super) fn observe(chat: &mut Chat, base: Instant) -> Observed {
    let outbox = chat.outbox();
    let text = |range: &Range<usize>| String::from_utf8_lossy(outbox.text(range.clone())).into();
    let effects = outbox
        .effects()
        .iter()
        .map(|effect| match effect {
            Effect::Send { to, text: range } => Seen::Send(*to, text(range)),
            Effect::Notice { to, text: range } => Seen::Notice(*to, text(range)),
            Effect::Close(sid) => Seen::Close(*sid),
            Effect::Backlog(sid) => Seen::Backlog(*sid),
        })
        .collect();
    let records = outbox.records().to_vec();
    let held = outbox.held().to_vec();
    let verifications = outbox.take_verifications();
    outbox.clear();
    Observed {
        effects,
        records,
        held,
        verifications,
        next: chat.next_deadline().map(|t| offset(base, t)),
        next_of: (0..4)
            .map(|group| chat.next_deadline_of(group).map(|t| offset(base, t)))
            .collect(),
        stored: chat.stored_bytes(),
        online: chat.online_count(),
        users: NAMES
            .iter()
            .map(|&name| (name, chat.is_online(name), chat.mailbox_len(name)))
            .collect(),
        backlogs: (0..20)
            .map(|sid| {
                let lines = chat.backlog(SessionId(sid), 0);
                lines.map(|line| line.to_string()).collect()
            })
            .collect(),
    }
}

/// `chat`'s state as its process at `base` saves it.
pub(super) fn saved(chat: &Chat, base: Instant) -> Vec<u8> {
    let mut bytes = Vec::new();
    chat.save_state(clock_at(base), &mut bytes);
    bytes
}

/// A domain and its copy loaded by another process, driven alike.
pub(super) struct Twin {
    pub(super) a: Chat,
    pub(super) b: Chat,
    /// The saved domain's process's instant of the test's start.
    pub(super) ta: Instant,
    /// The loaded domain's.
    pub(super) tb: Instant,
    /// The accounts the saved domain has now: what a loader is given.
    pub(super) accounts: Vec<Account>,
    config: ChatConfig,
}

impl Twin {
    /// `a` (drained) and its state loaded by a process whose instant of
    /// the test's start is `tb`, which records changes and draws the same
    /// tokens as `a` (both loader's choices).
    #[track_caller]
    pub(super) fn split(
        a: Chat,
        ta: Instant,
        tb: Instant,
        accounts: Vec<Account>,
        config: ChatConfig,
    ) -> Twin {
        let mut twin = Twin {
            b: Chat::new(Vec::new(), config),
            a,
            ta,
            tb,
            accounts,
            config,
        };
        twin.reload(tb);
        twin
    }

    /// Replaces the loaded domain by `a`'s state loaded again, by a
    /// process whose instant of the test's start is `tb`.
    #[track_caller]
    pub(super) fn reload(&mut self, tb: Instant) {
        let bytes = saved(&self.a, self.ta);
        let loaded = Chat::load_state(self.accounts.clone(), self.config, &bytes, clock_at(tb));
        self.b = loaded.unwrap_or_else(|e| panic!("the saved state does not load: {e}"));
        self.tb = tb;
        self.b.set_token_source(fixed_token);
        if self.a.outbox.recording().is_some() {
            self.b.record_changes(clock_at(tb));
        }
        assert_eq!(saved(&self.b, tb), bytes, "loaded, it saves other bytes");
        let a = observe(&mut self.a, self.ta);
        assert_eq!(observe(&mut self.b, tb), a, "loaded, it says other things");
    }

    /// Makes `call` on both, each at its own start, and checks that they
    /// did and say the same, and that their states are still alike.
    #[track_caller]
    pub(super) fn both(&mut self, call: impl Fn(&mut Chat, Instant)) -> Observed {
        call(&mut self.a, self.ta);
        call(&mut self.b, self.tb);
        let a = observe(&mut self.a, self.ta);
        let b = observe(&mut self.b, self.tb);
        assert_eq!(b, a, "the loaded domain answered otherwise");
        assert_eq!(
            saved(&self.b, self.tb),
            saved(&self.a, self.ta),
            "the states parted"
        );
        a
    }

    /// Runs the timers of both as the poll loop does, up to `until` after
    /// the start: each time the next deadline comes, `expire` then.
    #[track_caller]
    pub(super) fn run_timers(&mut self, until: Duration) {
        for _ in 0..1000 {
            let Some(next) = self.a.next_deadline() else {
                return;
            };
            let due = next.saturating_duration_since(self.ta);
            if due > until {
                return;
            }
            self.both(|chat, start| chat.expire(start + due));
        }
        panic!("the timers do not advance");
    }
}

/// The text every session received in `observed`, in order.
fn sent(observed: &Observed) -> Vec<(SessionId, &str)> {
    observed
        .effects
        .iter()
        .filter_map(|effect| match effect {
            Seen::Send(to, text) | Seen::Notice(to, text) => Some((*to, text.as_str())),
            Seen::Close(_) | Seen::Backlog(_) => None,
        })
        .collect()
}

const YODA: SessionId = SessionId(1);
const HANS: SessionId = SessionId(2);
const VADER: SessionId = SessionId(3);
const LUKE: SessionId = SessionId(4);
const GUESSER: SessionId = SessionId(7);
const NEWCOMER: SessionId = SessionId(8);
const AT_PASSWORD: SessionId = SessionId(9);
const VERIFYING: SessionId = SessionId(10);
const STAMPED: SessionId = SessionId(11);
const CHEWIE: SessionId = SessionId(12);
const IN_GROUP_1: SessionId = SessionId(13);

/// The address the guesser's failures count against.
fn guesser_ip() -> IpAddr {
    Ipv4Addr::new(10, 0, 0, 9).into()
}

/// A domain in the middle of everything, built over 7 s from `t0`: users
/// online (two with private ports and certificates, one blocking),
/// sessions at every stage of a login (one at the username prompt from
/// IPv6, one at a password prompt, one whose hashed password is being
/// verified, one in another group after a wrong password), a session with
/// `!stamps` whose backlog is not written yet, departures for
/// `whoelsesince`, a ban and an address's failures, offline mail, a user
/// kept only for its records, a wall clock paired otherwise than the
/// saver's, and storage unavailable. Returns it drained, with the
/// verification the hashed password is waiting for.
pub(super) fn rich(t0: Instant) -> (Chat, Verification) {
    let at = |n: u64| t0 + ms(n);
    let mut c = Chat::new(state_accounts(), state_config());
    c.set_token_source(fixed_token);
    // A wall clock paired at another moment, a little off the saver's.
    c.set_wall_clock(WallClock {
        at: t0 + secs(5),
        unix_ms: WALL_MS + 5_007,
    });
    let obiwan = Record::MailboxAppend {
        recipient: "obiwan",
        seq: Some(4),
        stored_unix_ms: Some(WALL_MS - 1),
        sender: "ben",
        text: "these are not the droids",
    };
    c.apply_record(&obiwan, clock_at(t0));
    let block = Record::Block {
        user: "obiwan",
        target: "vader",
    };
    c.apply_record(&block, clock_at(t0));
    let ban = Record::Ban {
        user: "obiwan",
        until_unix_ms: WALL_MS + 90_000,
    };
    c.apply_record(&ban, clock_at(t0));
    c.record_changes(clock_at(t0));

    let local: IpAddr = Ipv4Addr::LOCALHOST.into();
    c.connect(YODA, local, false, at(0));
    lines(&mut c, YODA, &["yoda", "wise"], at(0));
    let yoda_port = format!("privateport 5000 {}", Fingerprint([1; 32]));
    lines(&mut c, YODA, &[&yoda_port], at(10));
    c.connect(HANS, Ipv4Addr::new(10, 0, 0, 2).into(), false, at(100));
    lines(&mut c, HANS, &["hans", "falcon"], at(100));
    let hans_port = format!("privateport 6000 {}", Fingerprint([2; 32]));
    lines(&mut c, HANS, &[&hans_port, "block vader"], at(150));
    c.connect(VADER, local, true, at(1000));
    lines(&mut c, VADER, &["vader", "sithlord"], at(1000));
    c.connect(LUKE, local, false, at(1500));
    lines(&mut c, LUKE, &["luke", "lightsaber"], at(1500));
    lines(
        &mut c,
        VADER,
        &["logout"],
        at(2000) + Duration::from_nanos(1),
    );
    c.disconnect(VADER, at(2000));
    c.disconnect(LUKE, at(3000));
    lines(&mut c, HANS, &["message luke come back"], at(3100));
    lines(
        &mut c,
        HANS,
        &["message leia  two  words", "message leia 2"],
        at(3200),
    );
    lines(&mut c, YODA, &["message vader i sense you"], at(3300));

    c.connect(GUESSER, guesser_ip(), false, at(4000));
    lines(&mut c, GUESSER, &["leia", "x", "y", "z"], at(4000));
    c.disconnect(GUESSER, at(4000));
    // Between milliseconds: an instant is kept to the nanosecond.
    let between = at(5000) + Duration::from_nanos(777_777);
    let v6: IpAddr = "2001:db8::1".parse().expect("ip");
    c.connect(NEWCOMER, v6, false, between);
    c.connect(AT_PASSWORD, local, false, at(5500));
    lines(&mut c, AT_PASSWORD, &["luke"], at(5500));
    c.connect(VERIFYING, local, false, at(6000));
    lines(&mut c, VERIFYING, &["r2d2", "socute"], at(6000));
    let mut asked = c.outbox().take_verifications();
    assert_eq!(asked.len(), 1);
    let verification = asked.remove(0);
    c.connect(STAMPED, local, false, at(6500));
    lines(
        &mut c,
        STAMPED,
        &["!stamps", "luke", "lightsaber"],
        at(6500),
    );
    let mapped: IpAddr = Ipv4Addr::new(10, 0, 0, 12).to_ipv6_mapped().into();
    c.connect_in(CHEWIE, mapped, false, 2, at(6600));
    c.without_private(CHEWIE);
    lines(&mut c, CHEWIE, &["chewie"], at(6600));
    c.password_judged(CHEWIE, true, at(6600));
    lines(&mut c, CHEWIE, &["block yoda"], at(6700));
    c.connect_in(IN_GROUP_1, local, true, 1, at(6800));
    lines(&mut c, IN_GROUP_1, &["vader", "wrong"], at(6800));
    c.set_storage_available(false);
    c.outbox().clear();
    assert!(c.is_online("luke") && c.is_online("chewie"));
    assert!(!c.outbox().has_verifications());
    (c, verification)
}

/// Sends `sid` these lines.
fn lines(c: &mut Chat, sid: SessionId, lines: &[&str], now: Instant) {
    for line in lines {
        c.line(sid, line, now);
    }
}

/// The calls after the state was saved, each on both domains.
fn go_on(twin: &mut Twin, verification: &Verification) {
    let at = |n: u64| ms(n);
    // The hashed password was right: r2d2 is announced, in online order.
    let v = verification.clone();
    let got = twin.both(move |c, t| c.verified(v.session, v.epoch, true, t + at(7000)));
    assert_eq!(got.effects[0], Seen::Send(VERIFYING, WELCOME.into()));
    // Storage is still unavailable, then back.
    let got = twin.both(|c, t| c.line(YODA, "message vader again", t + at(7100)));
    let unavailable = "Error. Server storage is unavailable\n";
    assert_eq!(sent(&got), [(YODA, unavailable)]);
    twin.both(|c, _| c.set_storage_available(true));
    for text in ["message vader 1", "message vader 2", "message vader 3"] {
        twin.both(|c, t| c.line(YODA, text, t + at(7200)));
    }
    // Luke's stamped backlog, with the wall clock of the saved domain.
    let now = twin.both(|_, _| {});
    let stamp = (WALL_MS + 3_100 + 7) / 1000;
    assert_eq!(
        now.backlogs[STAMPED.0],
        [
            format!("!queued {stamp} hans: come back"),
            "!queued end".into()
        ]
    );
    twin.both(|c, _| c.backlog_written(STAMPED, 2));
    for line in [
        "whoelse",
        "whoelsesince 3600",
        "whoelsesince 5",
        "whoelsesince 1",
        "broadcast hello all",
        "message luke are you there",
        "startprivate chewie",
        "help",
    ] {
        twin.both(|c, t| c.line(YODA, line, t + at(7300)));
    }
    let got =
        twin.both(|c, t| c.line_drawn(YODA, "startprivate hans", Some([7; 16]), t + at(7400)));
    assert_eq!(got.effects.len(), 2, "{got:?}");
    twin.both(|c, t| c.line(AT_PASSWORD, "lightsaber", t + at(7500)));
    twin.both(|c, t| c.line(AT_PASSWORD, "nobody", t + at(7500)));
    // The guesser's address has 3 failures of its 4: one more, then no
    // more.
    twin.both(|c, t| c.connect(GUESSER, guesser_ip(), false, t + at(8000)));
    twin.both(|c, t| c.line(GUESSER, "hans", t + at(8000)));
    twin.both(|c, t| c.line(GUESSER, "bad", t + at(8000)));
    let got = twin.both(|c, t| c.line(GUESSER, "bad", t + at(8100)));
    assert_eq!(
        sent(&got),
        [(
            GUESSER,
            "Error. Too many failed logins from your address. Please try again later\n"
        )]
    );
    twin.both(|c, t| c.disconnect(GUESSER, t + at(8100)));
    // Leia's ban and the address's window end at 14 s.
    twin.both(|c, t| c.connect(SessionId(14), guesser_ip(), false, t + at(9000)));
    twin.both(|c, t| c.line(SessionId(14), "leia", t + at(9000)));
    twin.both(|c, t| c.line(SessionId(14), "princess", t + at(9000)));
    twin.run_timers(secs(15));
    twin.both(|c, t| c.connect(SessionId(15), guesser_ip(), false, t + secs(15)));
    twin.both(|c, t| c.line(SessionId(15), "leia", t + secs(15)));
    let got = twin.both(|c, t| c.line(SessionId(15), "princess", t + secs(15)));
    assert!(sent(&got).contains(&(SessionId(15), WELCOME)), "{got:?}");
    twin.both(|c, t| c.line(SessionId(15), "whoelsesince 60", t + secs(16)));
    // Group 1's login deadline, then the rest of group 2, then the
    // timers of everyone.
    twin.both(|c, t| c.expire_group(1, t + secs(40)));
    twin.both(|c, t| c.end_group(2, t + secs(41)));
    twin.run_timers(secs(200));
    twin.both(|c, t| {
        c.connect(
            SessionId(16),
            Ipv4Addr::LOCALHOST.into(),
            false,
            t + secs(200),
        )
    });
    twin.both(|c, t| c.line(SessionId(16), "obiwan", t + secs(200)));
    let mut fewer = state_accounts();
    fewer.retain(|account| account.username != "vader");
    twin.both(move |c, t| c.reload_accounts(fewer.clone(), t + secs(201)));
    twin.both(|c, t| c.shutdown(t + secs(202)));
}

#[test]
fn a_loaded_state_answers_as_the_saved_one_for_a_process_started_later() {
    let t0 = Instant::now();
    let (a, verification) = rich(t0);
    let tb = t0 + secs(3 * 3600) + Duration::from_nanos(987_654_321);
    let mut twin = Twin::split(a, t0, tb, state_accounts(), state_config());
    go_on(&mut twin, &verification);
}

#[test]
fn a_loaded_state_answers_as_the_saved_one_for_a_process_started_earlier() {
    let t0 = Instant::now() + secs(7200);
    let (a, verification) = rich(t0);
    let tb = t0 - secs(5000) - Duration::from_nanos(123_457);
    let mut twin = Twin::split(a, t0, tb, state_accounts(), state_config());
    go_on(&mut twin, &verification);
}

#[test]
fn a_reloaded_copy_loaded_again_still_answers_alike() {
    let t0 = Instant::now();
    let (a, verification) = rich(t0);
    let mut twin = Twin::split(a, t0, t0 + secs(1), state_accounts(), state_config());
    twin.both(|c, t| c.line(YODA, "whoelsesince 10", t + ms(6900)));
    // A copy of the copy: load what the loaded domain saves.
    let bytes = saved(&twin.b, twin.tb);
    let tc = t0 + secs(99);
    twin.b = Chat::load_state(state_accounts(), state_config(), &bytes, clock_at(tc))
        .unwrap_or_else(|e| panic!("{e}"));
    twin.tb = tc;
    twin.b.set_token_source(fixed_token);
    twin.b.record_changes(clock_at(tc));
    go_on(&mut twin, &verification);
}

#[test]
fn every_instant_and_the_counters_survive_a_save() {
    let t0 = Instant::now();
    let (a, _) = rich(t0);
    let tb = t0 + secs(60);
    let b = Chat::load_state(
        state_accounts(),
        state_config(),
        &saved(&a, t0),
        clock_at(tb),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let shift = |t: Instant| tb + (t - t0);
    let ids = a.sessions.ids();
    assert_eq!(b.sessions.ids(), ids);
    assert_eq!(b.sessions.upcoming_epoch(), a.sessions.upcoming_epoch());
    for sid in ids {
        let (Some(x), Some(y)) = (a.sessions.get(sid), b.sessions.get(sid)) else {
            panic!("{sid:?} is gone");
        };
        assert_eq!(y.stage, x.stage);
        assert_eq!(y.last_activity, shift(x.last_activity));
        assert_eq!(y.login_by, x.login_by.map(shift));
        assert_eq!(
            (y.ip, y.private_port, y.private_print.as_deref()),
            (x.ip, x.private_port, x.private_print.as_deref())
        );
        assert_eq!(
            (
                y.no_private,
                y.trusted,
                y.group,
                y.epoch,
                y.stamps,
                y.end_pending
            ),
            (
                x.no_private,
                x.trusted,
                x.group,
                x.epoch,
                x.stamps,
                x.end_pending
            )
        );
    }
    assert_eq!(b.users.len(), a.users.len());
    for (x, y) in a.users.iter().zip(b.users.iter()) {
        assert_eq!(y.name, x.name);
        assert_eq!(y.password, x.password);
        assert_eq!((y.session, y.failures), (x.session, x.failures));
        assert_eq!(y.banned_until, x.banned_until.map(shift));
        assert_eq!(y.last_seen, x.last_seen.map(shift));
        assert_eq!(y.blocked, x.blocked);
        assert_eq!(y.mailbox.next_seq(), x.mailbox.next_seq());
        let mail = |u: &users::User| -> Vec<_> {
            let entries = u.mailbox.entries_from(0);
            entries
                .map(|e| (e.seq, e.stored_ms, e.line.to_owned()))
                .collect()
        };
        assert_eq!(mail(y), mail(x));
    }
    let online = |c: &Chat| -> Vec<_> {
        let online = c.presence.online.iter();
        online
            .map(|o| (o.user, o.session, o.blocks_anyone))
            .collect()
    };
    assert_eq!(online(&b), online(&a));
    let departed: Vec<_> = a
        .presence
        .departed
        .iter()
        .map(|&(t, u)| (shift(t), u))
        .collect();
    assert_eq!(
        b.presence.departed.iter().copied().collect::<Vec<_>>(),
        departed
    );
    let shifted = |windows: Vec<(IpKey, u32, Instant)>| -> Vec<_> {
        windows
            .into_iter()
            .map(|(k, n, t)| (k, n, shift(t)))
            .collect()
    };
    assert_eq!(b.failures.windows(), shifted(a.failures.windows()));
    let ending: Vec<_> = a.failures.ending().map(|(t, k)| (shift(t), k)).collect();
    assert_eq!(b.failures.ending().collect::<Vec<_>>(), ending);
    assert_eq!(a.failures.windows().len(), 1, "the guesser's");
    let heap = |d: &Deadlines<Timer>, shift: &dyn Fn(Instant) -> Instant| -> Vec<_> {
        let mut entries: Vec<_> = d.entries().map(|(t, k)| (shift(t), *k)).collect();
        entries.sort();
        entries
    };
    let same = |t: Instant| t;
    assert_eq!(heap(&b.deadlines, &same), heap(&a.deadlines, &shift));
    assert_eq!(b.idle.len(), a.idle.len());
    for (x, y) in a.idle.iter().zip(&b.idle) {
        assert_eq!(heap(y, &same), heap(x, &shift));
    }
    assert_eq!(a.idle.len(), 3, "groups 0, 1 and 2");
    assert_eq!(b.stored_bytes(), a.stored_bytes());
    assert!(!b.storage.available);
    let (Some(x), Some(y)) = (a.storage.clock, b.storage.clock) else {
        panic!("the wall clock is gone");
    };
    assert_eq!((y.at, y.unix_ms), (shift(x.at), x.unix_ms));
    assert!(b.outbox.recording().is_none(), "records only when told");
    assert!(b.outbox.effects().is_empty());
    let drawn = (b.tokens)();
    assert!(drawn.is_some() && drawn != fixed_token(), "from the system");
}

#[test]
fn accounts_decide_who_can_log_in_and_new_ones_are_added() {
    let t0 = Instant::now();
    let mut c = Chat::new(
        accounts(&[("yoda", "wise"), ("hans", "falcon")]),
        state_config(),
    );
    let mail = Record::MailboxAppend {
        recipient: "obiwan",
        seq: None,
        stored_unix_ms: None,
        sender: "ben",
        text: "hello there",
    };
    c.apply_record(&mail, clock_at(t0));
    c.connect(YODA, Ipv4Addr::LOCALHOST.into(), false, t0);
    c.line(YODA, "yoda", t0);
    c.line(YODA, "wise", t0);
    c.outbox().clear();
    let bytes = saved(&c, t0);
    let load = |pairs: &[(&str, &str)]| {
        Chat::load_state(accounts(pairs), state_config(), &bytes, clock_at(t0))
    };

    // Yoda is online: his account must be given.
    let missing = load(&[("hans", "falcon")]).map(|_| ());
    assert_eq!(
        missing,
        Err(StateError::OnlineWithoutAccount("yoda".into()))
    );
    assert_eq!(
        missing.map_err(|e| e.to_string()),
        Err("chat state has yoda logged in, but no account yoda was given".into())
    );

    // Obiwan is back, hans is gone, lando is new (and last).
    let mut h = Harness::new();
    h.chat = load(&[("lando", "calrissian"), ("obiwan", "ben"), ("yoda", "wise")])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(h.chat.users.id("lando"), Some(3));
    assert_eq!(h.chat.users.account("hans"), None);
    assert_eq!(h.chat.users.id("hans"), Some(1), "kept, with no account");
    h.connect(H, t0);
    assert_eq!(h.take(H), USERNAME);
    assert_eq!(h.ask(H, "hans", t0), INVALID_USERNAME);
    assert_eq!(
        h.login_with_mail(L, "obiwan", "ben", t0),
        "ben: hello there\n"
    );
    h.login(V, "lando", "calrissian", t0);
    assert_eq!(h.take(YODA), "obiwan logged in\nlando logged in\n");
}

#[test]
fn every_refusal_says_what_is_wrong() {
    let t0 = Instant::now();
    let (c, _) = rich(t0);
    let bytes = saved(&c, t0);
    let load = |bytes: &[u8]| {
        Chat::load_state(state_accounts(), state_config(), bytes, clock_at(t0))
            .map(|_| ())
            .map_err(|e| e.to_string())
    };
    assert_eq!(
        load(b"CONFAB"),
        Err("chat state truncated: 6 bytes, less than a header".into())
    );
    assert_eq!(
        load(b"CONFABSX"),
        Err("not a saved chat state (bad magic)".into())
    );
    let mut other = bytes.clone();
    other[8] = 2;
    assert_eq!(
        load(&other),
        Err("chat state of version 2; this build reads version 1".into())
    );
    let n = bytes.len();
    assert_eq!(
        load(&bytes[..n - 1]),
        Err(format!(
            "chat state truncated: {} bytes of the {n} it declares",
            n - 1
        ))
    );
    let mut longer = bytes.clone();
    longer.push(0);
    assert_eq!(
        load(&longer),
        Err(format!("chat state of {n} bytes followed by 1 more"))
    );
    let mut damaged = bytes.clone();
    damaged[n / 2] ^= 0x10;
    let error = load(&damaged).expect_err("damaged");
    assert!(error.starts_with("chat state damaged: CRC "), "{error}");
    let mut unknown = bytes.clone();
    // The users section's tag.
    unknown[crate::chat::state::HEADER] = 9;
    reseal(&mut unknown);
    assert_eq!(
        load(&unknown),
        Err("chat state malformed: a section is missing or out of order".into())
    );
}

/// Makes the length and CRC of a state match its bytes again.
pub(super) fn reseal(bytes: &mut [u8]) {
    let n = bytes.len();
    let length = (n as u64).to_le_bytes();
    bytes[crate::chat::state::HEADER - 8..crate::chat::state::HEADER].copy_from_slice(&length);
    let crc = crc32fast::hash(&bytes[..n - crate::chat::state::TRAILER]);
    bytes[n - crate::chat::state::TRAILER..].copy_from_slice(&crc.to_le_bytes());
}

#[test]
fn a_thousand_users_online_with_ten_messages_each() {
    let t0 = Instant::now();
    let names: Vec<String> = (0..1000).map(|i| format!("user{i:04}")).collect();
    let pairs: Vec<(&str, &str)> = names.iter().map(|n| (n.as_str(), "password")).collect();
    let mut config = state_config();
    config.mailbox_max = 10;
    let mut c = Chat::new(accounts(&pairs), config);
    c.set_wall_clock(clock_at(t0));
    for (i, name) in names.iter().enumerate() {
        for k in 0..10 {
            let text = format!("message {k} of the day, about nothing much");
            let append = Record::MailboxAppend {
                recipient: name,
                seq: Some(k),
                stored_unix_ms: Some(WALL_MS + k),
                sender: &names[(i + 1) % names.len()],
                text: &text,
            };
            c.apply_record(&append, clock_at(t0));
        }
    }
    for (i, name) in names.iter().enumerate() {
        let sid = SessionId(i);
        let ip = Ipv4Addr::from(0x0a00_0000 + i as u32).into();
        let now = t0 + ms(i as u64);
        c.connect(sid, ip, false, now);
        c.line(sid, name, now);
        c.line(sid, "password", now);
        c.outbox().clear();
    }
    assert_eq!(c.online_count(), 1000);
    let bytes = saved(&c, t0);
    let per_user = bytes.len() / 1000;
    eprintln!(
        "1000 users online with 10 messages each: {} bytes ({per_user} per user, {} of stored mail)",
        bytes.len(),
        c.stored_bytes()
    );
    assert!(bytes.len() < 1 << 20, "{} bytes", bytes.len());
    let loaded = Chat::load_state(accounts(&pairs), config, &bytes, clock_at(t0));
    assert_eq!(loaded.map(|b| saved(&b, t0)), Ok(bytes));
}
