//! The chat state machine driven by seeded random command sequences from
//! several sessions, checked after every step against the reference model
//! in `confab_testkit::chat_model` (the same checker the `chat` fuzz target
//! uses; see that module for the invariants), also with the domain
//! replaced now and then by a copy loaded from its saved state, and in the
//! replicated mode (the `replicated` fuzz target's), where the same runs
//! also go through a cluster of two nodes. Fixed seeds, so a failure
//! reproduces; the failure message lists the operations (and entries) that
//! led to it.

use confab_testkit::chat_model::{Harness, Stats};
use confab_testkit::Rng;

/// Steps per seed.
const STEPS: usize = 10_000;
/// How many of the seeds run a second time with reloads.
const RELOADED_SEEDS: usize = 4;
/// Steps per seed in replicated mode, each run three times (the single
/// server and two replicas).
const REPLICATED_STEPS: usize = 5_000;
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
        total.add(&stats);
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

/// The replicated mode: the same runs also go through a cluster of two
/// nodes, whose effects on their own sessions must be the single server's
/// and whose replicas must agree (see `chat_model`'s `cluster`).
#[test]
fn replicated_runs_match_the_single_server() {
    let mut total = Stats::default();
    for seed in SEEDS {
        let mut harness = Harness::replicated();
        harness.run(&mut Rng::new(seed), REPLICATED_STEPS);
        let stats = harness.stats();
        assert!(
            stats.steps > REPLICATED_STEPS,
            "seed {seed}: the run stopped early"
        );
        total.add(&stats);
    }
    eprintln!("{total:?}");
    assert!(total.logins >= 500, "{total:?}");
    assert!(total.timeouts >= 100, "{total:?}");
    assert!(total.bans >= 20, "{total:?}");
    assert!(total.presence >= 500, "{total:?}");
    assert!(total.delivered >= 100, "{total:?}");
    assert!(total.backlog_written >= 100, "{total:?}");
    assert!(total.introductions >= 30, "{total:?}");
    assert!(total.private_unavailable >= 2, "{total:?}");
    assert!(total.gathered_batches >= 2_000, "{total:?}");
    assert!(total.largest_batch >= 5, "{total:?}");
    assert!(total.ticks >= 5_000, "{total:?}");
    assert!(total.clocks_behind >= 2_000, "{total:?}");
    assert!(total.verdicts >= 1_000, "{total:?}");
    assert!(total.tokens_given >= 30, "{total:?}");
    assert!(total.reconnect_batches >= 200, "{total:?}");
    assert!(total.ignored_entries >= 2_000, "{total:?}");
    assert!(total.cross_effects >= 800, "{total:?}");
}

/// The same replicated run twice gives the same result.
#[test]
fn replicated_runs_are_deterministic() {
    let run = || {
        let mut harness = Harness::replicated();
        harness.run(&mut Rng::new(42), 500);
        format!("{:?}", harness.stats())
    };
    assert_eq!(run(), run());
}
