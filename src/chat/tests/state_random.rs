//! Random calls of every kind — logins clear, hashed and judged, groups,
//! untrusted addresses, private ports, mail and backlogs, the timers, a
//! group ended, accounts reloaded, storage failing — on a domain and on a
//! copy of it loaded again at random moments by a process whose clock
//! pairs other instants with the same wall times. Each call is made on
//! both, and everything they do and say, and their saved states, must
//! stay the same (see [`Twin`]).

use super::state::{state_accounts, Observed, Twin};
use super::*;
use crate::fingerprint::Fingerprint;

/// SplitMix64: the steps of a seed.
struct Dice(u64);

impl Dice {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.below(items.len())]
    }

    fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}

const SIDS: usize = 8;
const GROUPS: u32 = 3;
/// Addresses, some of them one address to the failure count (an IPv4
/// address and its mapped form, two IPv6 addresses of one /64).
const IPS: [&str; 5] = [
    "127.0.0.1",
    "10.0.0.9",
    "::ffff:10.0.0.9",
    "2001:db8::1",
    "2001:db8::2",
];
const USERNAMES: [&str; 10] = [
    "yoda", "hans", "vader", "luke", "r2d2", "leia", "chewie", "nobody", "obiwan", "!stamps",
];
/// Clock steps, mostly short; some on either side of the durations.
const STEPS_MS: [u64; 16] = [
    0, 0, 1, 5, 20, 50, 100, 200, 500, 999, 1000, 1001, 2000, 4999, 5000, 30_000,
];

fn random_config() -> ChatConfig {
    let mut config = ChatConfig::new(secs(5), secs(30));
    config.login_timeout = secs(20);
    config.max_failures_per_ip = 3;
    config.mailbox_max = 3;
    config.store_max = 300;
    config
}

/// How often the runs did what the test is about.
#[derive(Debug, Default)]
struct Counts {
    reloads: usize,
    welcomes: usize,
    timeouts: usize,
    bans: usize,
    address_limits: usize,
    stored: usize,
    introductions: usize,
    backlogs: usize,
    verified: usize,
}

impl Counts {
    fn note(&mut self, observed: &Observed) {
        let text = format!("{observed:?}");
        let count = |needle: &str| text.matches(needle).count();
        self.welcomes += count("Welcome to the greatest");
        self.timeouts += count("due to inactivity") + count("Login timed out");
        self.bans += count("Your account has been blocked");
        self.address_limits += count("Too many failed logins");
        self.stored += count("will be delivered");
        self.introductions += count("!private connect");
        self.backlogs += count("Backlog(");
    }
}

/// One random run of `steps` calls.
fn run(seed: u64, steps: usize, counts: &mut Counts) {
    let mut dice = Dice(seed);
    let t0 = Instant::now();
    let accounts = state_accounts();
    let mut a = Chat::new(accounts.clone(), random_config());
    a.set_token_source(super::state::fixed_token);
    a.set_wall_clock(super::state::clock_at(t0));
    a.record_changes(super::state::clock_at(t0));
    let mut twin = Twin::split(a, t0, t0 + secs(1), accounts.clone(), random_config());
    let mut now = Duration::ZERO;
    let mut open = [false; SIDS];
    let mut pending: Vec<Verification> = Vec::new();
    for step in 0..steps {
        let sid = SessionId(dice.below(SIDS));
        let observed = match dice.below(100) {
            0..=44 if open[sid.0] => {
                let Some(session) = twin.a.sessions.get(sid) else {
                    continue;
                };
                let line = random_line(&mut dice, &twin.a, session);
                match line.strip_prefix("startprivate") {
                    Some(_) if dice.chance(50) => {
                        let token = dice.pick(&[None, Some([step as u8; 16])]);
                        twin.both(move |c, t| c.line_drawn(sid, &line, token, t + now))
                    }
                    _ => twin.both(move |c, t| c.line(sid, &line, t + now)),
                }
            }
            0..=54 if !open[sid.0] => {
                open[sid.0] = true;
                let ip: IpAddr = dice.pick(&IPS).parse().expect("ip");
                let trusted = dice.chance(20);
                let group = dice.below(GROUPS as usize) as u32;
                twin.both(move |c, t| c.connect_in(sid, ip, trusted, group, t + now))
            }
            45..=49 => {
                open[sid.0] = false;
                twin.both(move |c, t| c.disconnect(sid, t + now))
            }
            50..=54 => {
                let matches = dice.chance(60);
                twin.both(move |c, t| c.password_judged(sid, matches, t + now))
            }
            55..=59 if !pending.is_empty() => {
                let v = pending.swap_remove(dice.below(pending.len()));
                let matches = dice.chance(70);
                counts.verified += 1;
                twin.both(move |c, t| c.verified(v.session, v.epoch, matches, t + now))
            }
            55..=61 => {
                let error = dice.pick(&[LineError::TooLong, LineError::InvalidEncoding]);
                twin.both(move |c, t| c.line_error(sid, error, t + now))
            }
            62..=69 => {
                now += match dice.chance(10) {
                    true => Duration::from_nanos(dice.next() % 1_000_000),
                    false => ms(dice.pick(&STEPS_MS)),
                };
                match dice.below(3) {
                    0 => twin.both(|c, t| c.expire(t + now)),
                    1 => {
                        let group = dice.below(GROUPS as usize) as u32;
                        twin.both(move |c, t| c.expire_group(group, t + now))
                    }
                    _ => twin.both(|_, _| {}),
                }
            }
            70..=83 => {
                let n = dice.below(4);
                twin.both(move |c, _| c.backlog_written(sid, n))
            }
            84 => {
                let group = dice.below(GROUPS as usize) as u32;
                twin.both(move |c, t| c.end_group(group, t + now))
            }
            85 => {
                let available = dice.chance(70);
                twin.both(move |c, _| c.set_storage_available(available))
            }
            86 => {
                let mut fewer = accounts.clone();
                if dice.chance(60) {
                    fewer.remove(dice.below(fewer.len()));
                }
                twin.accounts = fewer.clone();
                twin.both(move |c, t| c.reload_accounts(fewer.clone(), t + now))
            }
            87 => twin.both(move |c, _| c.without_private(sid)),
            88..=90 => {
                counts.reloads += 1;
                let shift = Duration::from_nanos(dice.next() % (1 << 42));
                let tb = match dice.chance(50) {
                    true => t0 + secs(10_000) + shift,
                    false => t0 + secs(10_000) - shift,
                };
                twin.reload(tb);
                continue;
            }
            _ => continue,
        };
        counts.note(&observed);
        pending.extend(observed.verifications.iter().cloned());
    }
    twin.both(|c, t| c.shutdown(t + now));
}

/// A line for `session`: usernames at the prompt, right and wrong
/// passwords, and every command (often `privateport` first, so that
/// there are introductions).
fn random_line(dice: &mut Dice, chat: &Chat, session: &sessions::Session) -> String {
    use sessions::Stage;
    let user = |dice: &mut Dice| dice.pick(&USERNAMES[..9]);
    let unregistered = session.private_port.is_none() && !session.no_private;
    match session.stage {
        Stage::LoggedIn(_) if unregistered && dice.chance(50) => {
            format!("privateport {}", dice.pick(&[5000, 6000]))
        }
        Stage::Username => dice.pick(&USERNAMES).into(),
        Stage::Password(u) => {
            let right = chat.users[u].password.as_deref().unwrap_or("none");
            let right = if crate::passwords::is_hashed(right) {
                "socute"
            } else {
                right
            };
            dice.pick(&[right, right, "wrong"]).into()
        }
        Stage::Verifying(_) => "anything".into(),
        Stage::LoggedIn(_) => match dice.below(17) {
            0 => "whoelse".into(),
            1 => format!("whoelsesince {}", dice.pick(&[0, 1, 2, 10, 3600])),
            2 => format!("broadcast hi {}", dice.below(100)),
            3 | 4 => format!("message {} text {}", user(dice), dice.below(100)),
            5 => format!("block {}", user(dice)),
            6 => format!("unblock {}", user(dice)),
            7 => "logout".into(),
            8 => "help".into(),
            9 | 10 => format!("privateport {}", dice.pick(&[5000, 6000])),
            11 => format!(
                "privateport 7000 {}",
                Fingerprint([dice.below(3) as u8; 32])
            ),
            12..=14 => {
                let online = chat.presence.online.iter();
                let online: Vec<&str> = online.map(|o| &*chat.users[o.user].name).collect();
                let who = match online.is_empty() || dice.chance(30) {
                    true => user(dice),
                    false => dice.pick(&online),
                };
                format!("startprivate {who}")
            }
            15 => format!("private {} hi", user(dice)),
            _ => "hello".into(),
        },
    }
}

#[test]
fn random_calls_on_a_domain_and_on_copies_loaded_at_random_moments_agree() {
    let mut counts = Counts::default();
    for seed in 0..16 {
        run(seed, 2000, &mut counts);
    }
    eprintln!("{counts:?}");
    assert!(counts.reloads >= 500, "{counts:?}");
    assert!(counts.welcomes >= 400, "{counts:?}");
    assert!(counts.timeouts >= 150, "{counts:?}");
    assert!(counts.bans >= 25, "{counts:?}");
    assert!(counts.address_limits >= 10, "{counts:?}");
    assert!(counts.stored >= 40, "{counts:?}");
    assert!(counts.introductions >= 10, "{counts:?}");
    assert!(counts.backlogs >= 80, "{counts:?}");
    assert!(counts.verified >= 80, "{counts:?}");
}
