//! Durable state: the record of every change and the replies it holds,
//! full mailboxes, replaying records and snapshots, the wall clock.

use super::*;

#[test]
fn without_recording_nothing_is_recorded_or_held() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "message luke hi", t0), offline("luke"));
    assert_eq!(h.ask(Y, "block vader", t0), "vader is blocked\n");
    assert_eq!(h.take_records(), (vec![], vec![]));
}

#[test]
fn every_durable_change_is_recorded_and_its_reply_held() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.take_records(), (vec![], vec![]));

    assert_eq!(h.ask(Y, "message luke use the force", t0), offline("luke"));
    assert_eq!(
        h.take_records(),
        (
            vec![Record::MailboxAppend {
                recipient: "luke",
                seq: Some(0),
                stored_unix_ms: None,
                sender: "yoda",
                text: "use the force"
            }],
            vec![Y]
        )
    );
    // Online delivery changes nothing durable.
    h.send(Y, "message hans hi", t0);
    assert_eq!(h.take(H), "yoda: hi\n");
    assert_eq!(h.take_records(), (vec![], vec![]));

    assert_eq!(h.ask(Y, "block vader", t0), "vader is blocked\n");
    assert_eq!(h.ask(Y, "unblock vader", t0), "vader is unblocked\n");
    assert_eq!(
        h.take_records(),
        (
            vec![
                Record::Block {
                    user: "yoda",
                    target: "vader"
                },
                Record::Unblock {
                    user: "yoda",
                    target: "vader"
                }
            ],
            vec![Y, Y]
        )
    );
    // Errors change nothing.
    h.ask(Y, "unblock vader", t0);
    h.ask(Y, "block yoda", t0);
    assert_eq!(h.take_records(), (vec![], vec![]));

    assert_eq!(
        h.login_with_mail(L, "luke", "lightsaber", t0),
        "yoda: use the force\n"
    );
    assert_eq!(
        h.take_records(),
        (
            vec![Record::MailboxTaken {
                recipient: "luke",
                through: 0
            }],
            vec![]
        )
    );

    h.ban(V, "vader", t0 + secs(1));
    let until = WALL_MS + 1000 + BLOCK.as_millis() as u64;
    assert_eq!(
        h.take_records(),
        (
            vec![Record::Ban {
                user: "vader",
                until_unix_ms: until
            }],
            vec![V]
        )
    );
    h.run_timers(t0 + secs(1) + BLOCK);
    assert_eq!(
        h.take_records(),
        (vec![Record::BanCleared { user: "vader" }], vec![])
    );
}

#[test]
fn a_full_mailbox_refuses_the_message_and_stores_nothing() {
    let t0 = Instant::now();
    let mut h = Harness::tuned(|config| config.mailbox_max = 2);
    h.chat.record_changes(wall(t0));
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "message luke one", t0), offline("luke"));
    assert_eq!(h.ask(Y, "message luke two", t0), offline("luke"));
    h.take_records();
    assert_eq!(
        h.ask(Y, "message luke three", t0),
        "Error. luke's mailbox is full\n"
    );
    assert_eq!(h.take_records(), (vec![], vec![]));
    assert_eq!(
        h.login_with_mail(L, "luke", "lightsaber", t0),
        "yoda: one\nyoda: two\n"
    );
    // Delivered: room again.
    h.disconnect(L, t0);
    h.discard();
    assert_eq!(h.ask(Y, "message luke four", t0), offline("luke"));
}

#[test]
fn replaying_records_or_a_snapshot_rebuilds_the_state() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.login(Y, "yoda", "wise", t0);
    h.ask(Y, "message luke first: with a colon", t0);
    h.ask(Y, "message luke second", t0);
    h.ask(Y, "block vader", t0);
    h.ask(Y, "block hans", t0);
    h.ask(Y, "unblock hans", t0);
    h.ban(H, "hans", t0);
    let (records, _) = h.take_records();
    let snapshot: Vec<Record<'_>> = h.chat.snapshot(wall(t0)).collect();
    assert_eq!(snapshot.len(), 4, "{snapshot:?}");

    // A restart 3 s later (wall clock too): the ban has 7 s left.
    for replay in [records, snapshot.iter().cloned().map(leak).collect()] {
        let t1 = Instant::now() + secs(100);
        let clock = WallClock {
            at: t1,
            unix_ms: WALL_MS + 3000,
        };
        let mut r = Harness::new();
        r.chat.record_changes(clock);
        for record in &replay {
            assert_eq!(r.chat.apply_record(record, clock), Replayed::Applied);
        }
        assert_eq!(
            r.login_with_mail(L, "luke", "lightsaber", t1),
            "yoda: first: with a colon\nyoda: second\n"
        );
        r.login(V, "vader", "sithlord", t1);
        assert_eq!(r.ask(V, "message yoda hi", t1), MESSAGE_BLOCKED);
        r.connect(H, t1 + secs(6));
        r.ask(H, "hans", t1 + secs(6));
        assert_eq!(r.ask(H, "falcon", t1 + secs(6)), BANNED);
        r.run_timers(t1 + secs(7));
        r.login(SessionId(9), "hans", "falcon", t1 + secs(7));
    }
}

#[test]
fn replayed_bans_that_already_ended_are_ignored() {
    let t0 = Instant::now();
    let clock = wall(t0);
    let mut h = Harness::new();
    let ended = Record::Ban {
        user: "hans",
        until_unix_ms: WALL_MS,
    };
    assert_eq!(h.chat.apply_record(&ended, clock), Replayed::Applied);
    assert_eq!(h.chat.next_deadline(), None);
    h.login(H, "hans", "falcon", t0);
}

#[test]
fn the_wall_clock_converts_both_ways() {
    let t0 = Instant::now();
    let clock = wall(t0);
    assert_eq!(clock.unix_ms(t0 + ms(1500)), WALL_MS + 1500);
    assert_eq!(clock.instant(WALL_MS + 1500), Some(t0 + ms(1500)));
    assert_eq!(clock.instant(WALL_MS), None);
    assert_eq!(clock.instant(WALL_MS - 1), None);
    let epoch = WallClock::new(t0, SystemTime::UNIX_EPOCH + ms(42));
    assert_eq!(epoch.unix_ms, 42);
}
