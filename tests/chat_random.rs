//! The chat state machine driven by seeded random command sequences from
//! several sessions, checked after every step against the reference model
//! in `confab_testkit::chat_model` (the same checker the `chat` fuzz target
//! uses; see that module for the invariants), also with the domain
//! replaced now and then by a copy loaded from its saved state. Fixed
//! seeds, so a failure reproduces; the failure message lists the
//! operations that led to it.

use confab_testkit::chat_model::{Harness, Stats};
use confab_testkit::Rng;

/// Steps per seed.
const STEPS: usize = 10_000;
/// How many of the seeds run a second time with reloads.
const RELOADED_SEEDS: usize = 4;
const SEEDS: [u64; 8] = [
    1,
    2,
    3,
    0x5eed,
    0xc0ff_ee00,
    0xdead_beef,
    0x0123_4567_89ab_cdef,
    u64::MAX,
];

fn run(seed: u64, steps: usize) -> Stats {
    let mut harness = Harness::new();
    harness.run(&mut Rng::new(seed), steps);
    harness.stats()
}

/// Every seed keeps every invariant; the first [`RELOADED_SEEDS`] also
/// with reloads, and do the same.
#[test]
fn random_sequences_keep_every_invariant() {
    let mut total = Stats::default();
    for (index, seed) in SEEDS.into_iter().enumerate() {
        let stats = run(seed, STEPS);
        assert!(stats.steps > STEPS, "seed {seed}: the run stopped early");
        if index < RELOADED_SEEDS {
            same_with_reloads(seed, stats);
        }
        total.steps += stats.steps;
        total.logins += stats.logins;
        total.leaves += stats.leaves;
        total.timeouts += stats.timeouts;
        total.bans += stats.bans;
        total.banned_refusals += stats.banned_refusals;
        total.already_online += stats.already_online;
        total.presence += stats.presence;
        total.notices_held += stats.notices_held;
        total.notices_led += stats.notices_led;
        total.notices_released += stats.notices_released;
        total.notices_dropped += stats.notices_dropped;
        total.delivered += stats.delivered;
        total.backlogs += stats.backlogs;
        total.backlog_written += stats.backlog_written;
        total.backlog_later_pulls += stats.backlog_later_pulls;
        total.backlog_rehanded += stats.backlog_rehanded;
        total.backlogs_interrupted += stats.backlogs_interrupted;
        total.backlog_closes += stats.backlog_closes;
        total.backlogs_resumed += stats.backlogs_resumed;
        total.held_lines += stats.held_lines;
        total.held_messages += stats.held_messages;
        total.backlog_from_blocked += stats.backlog_from_blocked;
        total.blocked_refusals += stats.blocked_refusals;
        total.partial_broadcasts += stats.partial_broadcasts;
        total.max_online = total.max_online.max(stats.max_online);
        total.registrations += stats.registrations;
        total.introductions += stats.introductions;
        total.private_blocked_refusals += stats.private_blocked_refusals;
        total.private_unreachable += stats.private_unreachable;
        total.private_unavailable += stats.private_unavailable;
    }
    // The runs must reach every behaviour the invariants are about, or the
    // test proves nothing.
    eprintln!("{total:?}");
    assert!(total.logins >= 500, "{total:?}");
    assert!(total.leaves >= 500, "{total:?}");
    assert!(total.timeouts >= 100, "{total:?}");
    assert!(total.bans >= 50, "{total:?}");
    assert!(total.banned_refusals >= 20, "{total:?}");
    assert!(total.already_online >= 50, "{total:?}");
    assert!(total.presence >= 500, "{total:?}");
    assert!(total.notices_held >= 4000, "{total:?}");
    assert!(total.notices_led >= 600, "{total:?}");
    assert!(total.notices_released >= 250, "{total:?}");
    assert!(total.notices_dropped >= 50, "{total:?}");
    assert!(total.delivered >= 100, "{total:?}");
    assert!(total.backlogs >= 300, "{total:?}");
    assert!(total.backlog_written >= 150, "{total:?}");
    assert!(total.backlog_later_pulls >= 20, "{total:?}");
    assert!(total.backlog_rehanded >= 80, "{total:?}");
    assert!(total.backlogs_interrupted >= 200, "{total:?}");
    assert!(total.backlog_closes >= 130, "{total:?}");
    assert!(total.backlogs_resumed >= 200, "{total:?}");
    assert!(total.held_lines >= 750, "{total:?}");
    assert!(total.held_messages >= 45, "{total:?}");
    assert!(total.backlog_from_blocked >= 20, "{total:?}");
    assert!(total.blocked_refusals >= 50, "{total:?}");
    assert!(total.partial_broadcasts >= 50, "{total:?}");
    assert!(total.max_online >= 4, "{total:?}");
    assert!(total.registrations >= 500, "{total:?}");
    assert!(total.introductions >= 50, "{total:?}");
    assert!(total.private_blocked_refusals >= 50, "{total:?}");
    assert!(total.private_unreachable >= 50, "{total:?}");
    assert!(total.private_unavailable >= 5, "{total:?}");
}

/// The same run twice gives the same result: a failing seed reproduces.
#[test]
fn runs_are_deterministic() {
    let a = run(42, 500);
    let b = run(42, 500);
    assert_eq!(format!("{a:?}"), format!("{b:?}"));
}

/// Seed `seed` run again, the domain replaced after a few steps in a
/// hundred by a copy that another process, its clock elsewhere, loaded
/// from its saved state: every invariant still holds, and the run does
/// exactly what it did without the reloads (`plain`).
fn same_with_reloads(seed: u64, plain: Stats) {
    let mut harness = Harness::reloading(seed ^ 0x5a7e);
    harness.run(&mut Rng::new(seed), STEPS);
    let reloaded = harness.stats();
    assert!(reloaded.reloads >= STEPS / 50, "seed {seed}: {reloaded:?}");
    let without = Stats {
        reloads: 0,
        ..reloaded
    };
    assert_eq!(format!("{without:?}"), format!("{plain:?}"), "seed {seed}");
}
