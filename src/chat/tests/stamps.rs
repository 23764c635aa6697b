//! `!stamps`: asked for at the username prompt, it makes the session's
//! offline mail `!queued <unix-seconds> <sender>: <text>` lines ended by
//! `!queued end`; the time each message was stored is kept in its record
//! and in snapshots; everywhere else `!stamps` is what v1 makes of it.

use super::*;

const STAMPS_ON: &str = "!stamps on\nUsername: ";
const QUEUED_END: &str = "!queued end\n";

/// A harness whose domain dates stored mail with `wall(t0)`, so that a
/// message stored at `t0 + n` seconds is stamped `1700000000 + n`.
fn dated(t0: Instant) -> Harness {
    let mut h = Harness::new();
    h.chat.set_wall_clock(wall(t0));
    h
}

/// Connects `sid` and asks for stamps, checking the answer.
#[track_caller]
fn connect_stamped(h: &mut Harness, sid: SessionId, now: Instant) {
    h.connect(sid, now);
    assert_eq!(h.take(sid), USERNAME);
    assert_eq!(h.ask(sid, "!stamps", now), STAMPS_ON);
}

/// Logs in on a connection already at the username prompt and returns
/// what followed the welcome.
#[track_caller]
fn log_in_after_prompt(
    h: &mut Harness,
    sid: SessionId,
    user: &str,
    pass: &str,
    now: Instant,
) -> String {
    assert_eq!(h.ask(sid, user, now), PASSWORD);
    let got = h.ask(sid, pass, now);
    let mail = got.strip_prefix(WELCOME);
    assert!(mail.is_some(), "login of {user} got {got:?}");
    mail.unwrap_or_default().to_owned()
}

#[test]
fn stamps_at_the_username_prompt_is_answered_each_time_and_is_no_username() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    connect_stamped(&mut h, L, t0);
    // Trimmed like any line, and the same answer again.
    let trimmed = protocol::decode_line(b"  !stamps  \r");
    assert_eq!(trimmed, Ok(Some("!stamps")));
    assert_eq!(h.ask(L, "!stamps", t0), STAMPS_ON);
    assert_eq!(h.ask(L, "!stamps", t0), STAMPS_ON);
    assert!(!h.closed(L));
    // Other lines starting with `!` are usernames as before.
    for other in ["!stamps on", "!stampsx", "!Stamps", "!queued end"] {
        assert_eq!(h.ask(L, other, t0), INVALID_USERNAME, "{other}");
    }
    assert_eq!(
        log_in_after_prompt(&mut h, L, "luke", "lightsaber", t0),
        QUEUED_END
    );
}

#[test]
fn stamps_counts_for_no_failure_of_the_address() {
    let t0 = Instant::now();
    let mut h = Harness::tuned(|config| config.max_failures_per_ip = 1);
    let ip: IpAddr = Ipv4Addr::new(203, 0, 113, 9).into();
    h.connect_from(L, ip, t0);
    h.discard();
    for _ in 0..5 {
        assert_eq!(h.ask(L, "!stamps", t0), STAMPS_ON);
    }
    assert_eq!(
        log_in_after_prompt(&mut h, L, "luke", "lightsaber", t0),
        QUEUED_END
    );
}

#[test]
fn stamps_is_activity_at_the_username_prompt() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    connect_stamped(&mut h, L, t0 + secs(50));
    h.connect(Y, t0);
    h.send(L, "!stamps", t0 + secs(50));
    h.discard();
    h.run_timers(t0 + secs(100));
    assert!(h.closed(Y), "the other connection timed out");
    assert!(!h.closed(L), "!stamps reset the idle timer");
    h.run_timers(t0 + secs(110));
    assert!(h.closed(L));
    assert_eq!(h.take(L), LOGIN_TIMED_OUT);
}

#[test]
fn stamps_at_the_password_prompt_is_a_wrong_password() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(L, t0);
    h.ask(L, "luke", t0);
    assert_eq!(h.ask(L, "!stamps", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(L, "!stamps", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(L, "!stamps", t0), NOW_BANNED);
    assert!(h.closed(L));
}

#[test]
fn stamps_after_login_is_an_invalid_command_and_changes_nothing() {
    let t0 = Instant::now();
    let mut h = dated(t0);
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "message luke hi", t0), offline("luke"));
    // A v1 session's mail is plain, without an end.
    assert_eq!(h.login_with_mail(L, "luke", "lightsaber", t0), "yoda: hi\n");
    assert_eq!(h.ask(L, "!stamps", t0), "Error. Invalid command\n");
    h.disconnect(L, t0);
    h.ask(Y, "message luke again", t0);
    assert_eq!(
        h.login_with_mail(L, "luke", "lightsaber", t0),
        "yoda: again\n"
    );
}

#[test]
fn a_stamps_session_gets_each_message_with_its_time_then_the_end() {
    let t0 = Instant::now();
    let mut h = dated(t0);
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.ask(Y, "message luke first: with a colon", t0 + ms(1500));
    h.ask(H, "message luke  second", t0 + secs(3));
    h.ask(Y, "message luke third", t0 + secs(3600));
    connect_stamped(&mut h, L, t0 + secs(3601));
    assert_eq!(
        log_in_after_prompt(&mut h, L, "luke", "lightsaber", t0 + secs(3601)),
        "!queued 1700000001 yoda: first: with a colon\n\
         !queued 1700000003 hans: second\n\
         !queued 1700003600 yoda: third\n\
         !queued end\n"
    );
    assert_eq!(h.chat.mailbox_len("luke"), 0);
}

#[test]
fn a_v1_session_gets_the_same_mail_as_before() {
    let t0 = Instant::now();
    let mut h = dated(t0);
    h.login(Y, "yoda", "wise", t0);
    h.ask(Y, "message luke first", t0 + secs(1));
    h.ask(Y, "message luke second", t0 + secs(2));
    assert_eq!(
        h.login_with_mail(L, "luke", "lightsaber", t0 + secs(3)),
        "yoda: first\nyoda: second\n"
    );
}

#[test]
fn without_mail_the_end_follows_the_welcome() {
    let t0 = Instant::now();
    let mut h = dated(t0);
    h.login(Y, "yoda", "wise", t0);
    h.discard();
    connect_stamped(&mut h, L, t0);
    assert_eq!(h.ask(L, "luke", t0), PASSWORD);
    h.send(L, "lightsaber", t0);
    assert_eq!(h.take(L), format!("{WELCOME}{QUEUED_END}"));
    assert_eq!(h.take(Y), "luke logged in\n");
    // The end is the backlog's last line, like the mail's.
    h.auto_backlog = false;
    connect_stamped(&mut h, H, t0);
    assert_eq!(log_in_after_prompt(&mut h, H, "hans", "falcon", t0), "");
    assert_eq!(h.backlogs, vec![H]);
    let lines: Vec<String> = h.chat.backlog(H, 0).map(|l| l.to_string()).collect();
    assert_eq!(lines, ["!queued end"]);
}

#[test]
fn mail_without_a_known_time_is_stamped_with_a_dash() {
    let t0 = Instant::now();
    // No wall clock: the time of what is stored is not known.
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.ask(Y, "message luke undated", t0);
    // A record of the previous format, replayed: no time either.
    let old = Record::MailboxAppend {
        recipient: "luke",
        seq: None,
        stored_unix_ms: None,
        sender: "hans",
        text: "from before",
    };
    assert_eq!(h.chat.apply_record(&old, wall(t0)), Replayed::Applied);
    connect_stamped(&mut h, L, t0);
    assert_eq!(
        log_in_after_prompt(&mut h, L, "luke", "lightsaber", t0),
        "!queued - yoda: undated\n!queued - hans: from before\n!queued end\n"
    );
}

#[test]
fn the_end_is_the_last_line_of_a_streamed_backlog_and_comes_once() {
    let t0 = Instant::now();
    let mut h = dated(t0);
    h.auto_backlog = false;
    h.login(Y, "yoda", "wise", t0);
    for i in 0..3 {
        h.ask(Y, &format!("message luke m{i}"), t0 + secs(i));
    }
    connect_stamped(&mut h, L, t0);
    assert_eq!(log_in_after_prompt(&mut h, L, "luke", "lightsaber", t0), "");
    assert_eq!(h.backlogs, vec![L]);
    let lines = |h: &Harness, from| {
        h.chat
            .backlog(L, from)
            .map(|line| line.to_string())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        lines(&h, 0),
        [
            "!queued 1700000000 yoda: m0",
            "!queued 1700000001 yoda: m1",
            "!queued 1700000002 yoda: m2",
            "!queued end"
        ]
    );
    assert_eq!(lines(&h, 3), ["!queued end"]);
    assert!(lines(&h, 4).is_empty());
    // Two written: they leave the mailbox; the rest and the end remain.
    h.chat.backlog_written(L, 2);
    h.drain();
    assert_eq!(h.chat.mailbox_len("luke"), 1);
    assert_eq!(lines(&h, 0), ["!queued 1700000002 yoda: m2", "!queued end"]);
    // The last message and the end: nothing is left, and nothing comes
    // again.
    h.chat.backlog_written(L, 2);
    h.drain();
    assert_eq!(h.chat.mailbox_len("luke"), 0);
    assert!(lines(&h, 0).is_empty());
    h.chat.backlog_written(L, 1);
    h.drain();
    assert!(lines(&h, 0).is_empty());
}

#[test]
fn a_backlog_given_up_before_its_end_is_resumed_with_the_end_at_the_next_login() {
    let t0 = Instant::now();
    let mut h = dated(t0);
    h.auto_backlog = false;
    h.login(Y, "yoda", "wise", t0);
    h.ask(Y, "message luke m0", t0);
    h.ask(Y, "message luke m1", t0 + secs(1));
    connect_stamped(&mut h, L, t0);
    log_in_after_prompt(&mut h, L, "luke", "lightsaber", t0);
    // Only the first message was written when the connection went.
    h.chat.backlog_written(L, 1);
    h.disconnect(L, t0 + secs(2));
    h.auto_backlog = true;
    connect_stamped(&mut h, L, t0 + secs(3));
    assert_eq!(
        log_in_after_prompt(&mut h, L, "luke", "lightsaber", t0 + secs(3)),
        "!queued 1700000001 yoda: m1\n!queued end\n"
    );
}

#[test]
fn the_time_is_in_the_record_and_the_snapshot_and_survives_a_replay() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.chat.set_wall_clock(wall(t0));
    h.login(Y, "yoda", "wise", t0);
    h.ask(Y, "message luke dated", t0 + ms(2500));
    let (records, _) = h.take_records();
    assert_eq!(
        records,
        [Record::MailboxAppend {
            recipient: "luke",
            seq: Some(0),
            stored_unix_ms: Some(WALL_MS + 2500),
            sender: "yoda",
            text: "dated",
        }]
    );
    let old = Record::MailboxAppend {
        recipient: "luke",
        seq: Some(1),
        stored_unix_ms: None,
        sender: "hans",
        text: "undated",
    };
    h.chat.apply_record(&old, wall(t0));
    let snapshot: Vec<Record<'static>> = h.chat.snapshot(wall(t0)).map(leak).collect();
    assert_eq!(snapshot, [records[0].clone(), old]);

    // A restart an hour later, on another wall clock pairing: the times
    // are the stored ones.
    let t1 = t0 + secs(3600);
    let clock = WallClock {
        at: t1,
        unix_ms: WALL_MS + 3_600_000,
    };
    for replay in [&records[..], &snapshot[..]] {
        let mut r = Harness::new();
        r.chat.set_wall_clock(clock);
        r.chat.record_changes(clock);
        for record in replay {
            r.chat.apply_record(record, clock);
        }
        connect_stamped(&mut r, L, t1);
        let mail = log_in_after_prompt(&mut r, L, "luke", "lightsaber", t1);
        let expected = if replay.len() == 1 {
            "!queued 1700000002 yoda: dated\n!queued end\n"
        } else {
            "!queued 1700000002 yoda: dated\n!queued - hans: undated\n!queued end\n"
        };
        assert_eq!(mail, expected);
    }
}

#[test]
fn stamped_mail_costs_what_plain_mail_costs() {
    let t0 = Instant::now();
    let mut dated = dated(t0);
    let mut plain = Harness::new();
    for h in [&mut dated, &mut plain] {
        h.login(Y, "yoda", "wise", t0);
        h.ask(Y, "message luke the same text", t0);
    }
    assert_eq!(dated.chat.stored_bytes(), plain.chat.stored_bytes());
    assert_eq!(
        dated.chat.stored_bytes(),
        message_cost("yoda: the same text".len())
    );
}
