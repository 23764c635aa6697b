//! Hardening in the domain: the backlog leaving the mailbox as it is
//! written, the bound on stored mail, storage unavailable, failures per
//! address, the login deadline, removed accounts, fuzzy snapshots.

use super::*;

const STORAGE_FULL: &str = "Error. Server storage is full\n";
const UNAVAILABLE: &str = "Error. Server storage is unavailable\n";
const TOO_MANY_FAILURES: &str =
    "Error. Too many failed logins from your address. Please try again later\n";

fn ip(s: &str) -> IpAddr {
    s.parse().expect("address")
}

#[test]
fn a_backlog_leaves_the_mailbox_only_as_it_is_written() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.auto_backlog = false;
    h.login(Y, "yoda", "wise", t0);
    for i in 0..5 {
        assert_eq!(h.ask(Y, &format!("message luke m{i}"), t0), offline("luke"));
    }
    h.take_records();
    assert_eq!(h.login_with_mail(L, "luke", "lightsaber", t0), "");
    assert_eq!(h.backlogs, vec![L]);
    let lines = |h: &Harness, from| {
        h.chat
            .backlog(L, from)
            .map(|line| line.to_string())
            .collect::<Vec<_>>()
            .join(",")
    };
    assert_eq!(lines(&h, 0), "yoda: m0,yoda: m1,yoda: m2,yoda: m3,yoda: m4");
    assert_eq!(lines(&h, 3), "yoda: m3,yoda: m4");
    // Two written: they go, and the change is recorded (not held).
    h.chat.backlog_written(L, 2);
    h.drain();
    assert_eq!(
        h.take_records(),
        (
            vec![Record::MailboxTaken {
                recipient: "luke",
                through: 1
            }],
            vec![]
        )
    );
    assert_eq!(h.chat.mailbox_len("luke"), 3);
    // Luke leaves halfway: the rest waits for the next login, in order.
    h.disconnect(L, t0);
    assert_eq!(h.chat.backlog(L, 0).count(), 0, "no session, no backlog");
    h.auto_backlog = true;
    assert_eq!(
        h.login_with_mail(SessionId(7), "luke", "lightsaber", t0),
        "yoda: m2\nyoda: m3\nyoda: m4\n"
    );
    assert_eq!(h.chat.mailbox_len("luke"), 0);
}

#[test]
fn stored_mail_is_bounded_in_total_and_freed_as_it_is_delivered() {
    let t0 = Instant::now();
    // Room for exactly two 10-byte messages from yoda ("yoda: " + 4).
    let cost = message_cost("yoda: 0123".len());
    let mut h = Harness::tuned(|c| c.store_max = 2 * cost);
    h.chat.record_changes(wall(t0));
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "message luke 0123", t0), offline("luke"));
    assert_eq!(h.ask(Y, "message vader 4567", t0), offline("vader"));
    h.take_records();
    assert_eq!(h.ask(Y, "message luke 8901", t0), STORAGE_FULL);
    assert_eq!(h.take_records(), (vec![], vec![]), "nothing is stored");
    assert_eq!(h.chat.stored_bytes(), 2 * cost);
    // Online delivery is not storage.
    h.login(H, "hans", "falcon", t0);
    h.discard();
    h.send(Y, "message hans still fine", t0);
    assert_eq!(h.take(H), "yoda: still fine\n");
    // Delivered mail frees its room.
    h.login_with_mail(L, "luke", "lightsaber", t0);
    assert_eq!(h.chat.stored_bytes(), cost);
    h.send(L, "logout", t0);
    h.discard();
    assert_eq!(h.ask(Y, "message luke 2345", t0), offline("luke"));
}

#[test]
fn while_storage_is_unavailable_durable_commands_change_nothing() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.ask(Y, "block vader", t0);
    h.discard();
    h.take_records();
    h.chat.set_storage_available(false);
    assert_eq!(h.ask(Y, "message luke hi", t0), UNAVAILABLE);
    assert_eq!(h.ask(Y, "block luke", t0), UNAVAILABLE);
    assert_eq!(h.ask(Y, "unblock vader", t0), UNAVAILABLE);
    // What changes nothing durable still works, errors included.
    assert_eq!(
        h.ask(Y, "block vader", t0),
        "Error. vader is already blocked\n"
    );
    assert_eq!(
        h.ask(Y, "unblock luke", t0),
        "Error. luke was not blocked\n"
    );
    h.send(Y, "message hans online", t0);
    assert_eq!(h.take(H), "yoda: online\n");
    assert_eq!(h.take_records(), (vec![], vec![]));
    assert_eq!(h.chat.mailbox_len("luke"), 0);
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(
        h.ask(V, "message yoda hi", t0),
        MESSAGE_BLOCKED,
        "the block stands"
    );
    h.chat.set_storage_available(true);
    h.discard();
    assert_eq!(h.ask(Y, "message luke hi", t0), offline("luke"));
}

#[test]
fn failed_passwords_are_limited_per_address_not_per_username() {
    let t0 = Instant::now();
    let mut h = Harness::tuned(|c| c.max_failures_per_ip = 4);
    let attacker = ip("192.0.2.7");
    // Four failures spread over two usernames, from two connections.
    for (sid, user) in [(SessionId(10), "yoda"), (SessionId(11), "hans")] {
        h.connect_from(sid, attacker, t0);
        h.take(sid);
        assert_eq!(h.ask(sid, user, t0), PASSWORD);
        assert_eq!(h.ask(sid, "guess1", t0), INVALID_PASSWORD);
        assert_eq!(h.ask(sid, "guess2", t0), INVALID_PASSWORD);
    }
    // The fifth password, even a right one, is refused and closes; it
    // counts for no username.
    assert_eq!(h.ask(SessionId(10), "wise", t0), TOO_MANY_FAILURES);
    assert!(h.closed(SessionId(10)));
    h.connect_from(SessionId(12), attacker, t0 + secs(1));
    h.take(SessionId(12));
    h.ask(SessionId(12), "vader", t0 + secs(1));
    assert_eq!(
        h.ask(SessionId(12), "sithlord", t0 + secs(1)),
        TOO_MANY_FAILURES
    );
    // Others are not affected, and the usernames are not banned.
    h.connect_from(SessionId(13), ip("192.0.2.8"), t0 + secs(1));
    h.take(SessionId(13));
    h.ask(SessionId(13), "yoda", t0 + secs(1));
    assert_eq!(h.ask(SessionId(13), "wise", t0 + secs(1)), WELCOME);
    h.send(SessionId(13), "logout", t0 + secs(1));
    // A trusted address is never counted.
    for n in 0..2 {
        let sid = SessionId(20 + n);
        h.connect_trusted(sid, attacker, t0 + secs(1));
        h.take(sid);
        h.ask(sid, "luke", t0 + secs(1));
        assert_eq!(h.ask(sid, "nope", t0 + secs(1)), INVALID_PASSWORD);
    }
    // Once the window (BLOCK_DURATION) has passed, the address may try again.
    h.run_timers(t0 + BLOCK);
    h.connect_from(SessionId(14), attacker, t0 + BLOCK);
    h.take(SessionId(14));
    h.ask(SessionId(14), "yoda", t0 + BLOCK);
    assert_eq!(h.ask(SessionId(14), "wise", t0 + BLOCK), WELCOME);
}

#[test]
fn a_login_must_be_complete_within_the_login_timeout_however_much_is_typed() {
    let t0 = Instant::now();
    let mut h = Harness::tuned(|c| c.login_timeout = secs(5));
    h.connect(Y, t0);
    h.take(Y);
    for i in 0..5 {
        assert_eq!(h.ask(Y, "nobody", t0 + secs(i)), INVALID_USERNAME);
    }
    h.login(H, "hans", "falcon", t0 + secs(1));
    h.run_timers(t0 + secs(5));
    assert_eq!(h.take(Y), LOGIN_TIMED_OUT);
    assert!(h.closed(Y));
    assert!(!h.closed(H), "a logged-in session has no login deadline");
}

#[test]
fn removed_accounts_keep_their_records_and_are_invisible_meanwhile() {
    let t0 = Instant::now();
    let clock = wall(t0);
    let mut h = Harness::new();
    let kept = [
        Record::MailboxAppend {
            recipient: "chewbacca",
            seq: Some(4),
            stored_unix_ms: None,
            sender: "yoda",
            text: "hi",
        },
        Record::Block {
            user: "yoda",
            target: "chewbacca",
        },
    ];
    for record in &kept {
        assert_eq!(h.chat.apply_record(record, clock), Replayed::Removed);
    }
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(
        h.ask(Y, "message chewbacca hi", t0),
        "Error. Invalid user\n"
    );
    assert_eq!(h.ask(Y, "whoelsesince 100000", t0), NOBODY_SINCE);
    h.connect(H, t0);
    h.take(H);
    assert_eq!(h.ask(H, "chewbacca", t0), INVALID_USERNAME);
    // The snapshot keeps them for when the account returns.
    let snapshot: Vec<Record<'_>> = h.chat.snapshot(clock).collect();
    for record in &kept {
        assert!(snapshot.contains(record), "{snapshot:?}");
    }
    // Pruning drops them.
    let mut pruned = Harness::tuned(|c| c.prune_removed = true);
    for record in &kept {
        assert_eq!(pruned.chat.apply_record(record, clock), Replayed::Dropped);
    }
    assert_eq!(pruned.chat.snapshot(clock).count(), 0);
}

#[test]
fn whoelse_reads_the_online_users_and_whoelsesince_the_recent_departures() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login(V, "vader", "sithlord", t0);
    h.send(V, "logout", t0 + secs(10));
    h.send(H, "logout", t0 + secs(20));
    h.login(SessionId(8), "hans", "falcon", t0 + secs(25));
    h.discard();
    assert_eq!(h.ask(Y, "whoelse", t0 + secs(30)), "hans\n");
    // Hans is online again: listed once; vader left 20 s ago.
    assert_eq!(h.ask(Y, "whoelsesince 15", t0 + secs(30)), "hans\n");
    assert_eq!(h.ask(Y, "whoelsesince 21", t0 + secs(30)), "hans\nvader\n");
    assert_eq!(
        h.chat.presence.departed.len(),
        2,
        "one entry per user who has left"
    );
}

#[test]
fn replaying_a_fuzzy_snapshot_then_the_newer_journal_gives_the_exact_state() {
    let t0 = Instant::now();
    let clock = wall(t0);
    let mut h = recording(t0);
    h.login(Y, "yoda", "wise", t0);
    for i in 0..6 {
        h.ask(Y, &format!("message luke m{i}"), t0);
    }
    h.ask(Y, "block vader", t0);
    h.take_records();
    // A snapshot is started: luke's first three messages are encoded,
    // then the state changes before the rest is.
    let mut cursor = SnapshotCursor::default();
    let mut fuzzy = Vec::new();
    for _ in 0..3 {
        let record = cursor.next(&h.chat, clock).expect("a record");
        record::encode(&record, &mut fuzzy);
    }
    h.auto_backlog = false;
    h.login(L, "luke", "lightsaber", t0);
    h.chat.backlog_written(L, 4);
    h.drain();
    h.send(L, "logout", t0);
    h.ask(Y, "message luke m6", t0);
    h.ask(Y, "unblock vader", t0);
    h.ask(Y, "block hans", t0);
    let (newer, _) = h.take_records();
    cursor.encode(&h.chat, clock, &mut fuzzy, usize::MAX);
    let exact: Vec<Record<'static>> = h.chat.snapshot(clock).map(leak).collect();

    let mut r = Harness::new();
    let mut rest = &fuzzy[..];
    while !rest.is_empty() {
        let len = record::FRAME_HEADER
            + u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
        let record = record::check_frame(&rest[..len]).expect("intact");
        r.chat.apply_record(&record, clock);
        rest = &rest[len..];
    }
    for record in &newer {
        r.chat.apply_record(record, clock);
    }
    let rebuilt: Vec<Record<'static>> = r.chat.snapshot(clock).map(leak).collect();
    assert_eq!(rebuilt, exact);
    assert_eq!(r.chat.stored_bytes(), h.chat.stored_bytes());
}
