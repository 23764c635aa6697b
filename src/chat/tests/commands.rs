//! The commands of a logged-in user: message, broadcast, whoelse,
//! whoelsesince, block, unblock, logout, help, and their errors.

use super::*;

#[test]
fn message_to_an_online_user() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(Y, "message hans hello   there  friend", t0), "");
    assert_eq!(h.take(H), "yoda: hello   there  friend\n");
    assert_eq!(h.ask(H, "message yoda hi", t0), "");
    assert_eq!(h.take(Y), "hans: hi\n");
}

#[test]
fn message_errors() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "message bob hi", t0), "Error. Invalid user\n");
    assert_eq!(h.ask(Y, "message Hans hi", t0), "Error. Invalid user\n");
    assert_eq!(
        h.ask(Y, "message yoda hi", t0),
        "Error. Cannot message self\n"
    );
    assert_eq!(
        h.ask(Y, "message hans", t0),
        "Error. Usage: message <user> <message>\n"
    );
    // Nothing was stored for hans.
    h.login(H, "hans", "falcon", t0);
}

#[test]
fn message_to_a_user_who_blocked_me_is_refused_online_and_offline() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(H, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(
        h.ask(Y, "message hans hi", t0),
        "Your message could not be delivered as the recipient has blocked you\n"
    );
    assert_eq!(h.take(H), "");
    assert_eq!(h.ask(H, "logout", t0), GOODBYE);
    assert_eq!(h.take(Y), ""); // hans blocked yoda: no presence
    assert_eq!(h.ask(Y, "message hans later", t0), MESSAGE_BLOCKED);
    h.login(H, "hans", "falcon", t0); // nothing was stored
    assert_eq!(h.take(Y), "");
    // Error order: invalid user and self come first regardless.
    assert_eq!(h.ask(Y, "message bob hi", t0), "Error. Invalid user\n");
    assert_eq!(
        h.ask(Y, "message yoda hi", t0),
        "Error. Cannot message self\n"
    );
    // Hans's own messages still reach yoda, online and offline.
    assert_eq!(h.ask(H, "message yoda hey", t0), "");
    assert_eq!(h.take(Y), "hans: hey\n");
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    assert_eq!(h.take(H), "yoda logged out\n");
    assert_eq!(h.ask(H, "message yoda later", t0), offline("yoda"));
    assert_eq!(h.login_with_mail(Y, "yoda", "wise", t0), "hans: later\n");
}

#[test]
fn broadcast_reaches_everyone_online_except_the_sender_and_blockers() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login(V, "vader", "sithlord", t0);
    let s = SessionId(10); // luke, not logged in yet
    h.connect(s, t0);
    h.send(s, "luke", t0);
    h.discard();

    assert_eq!(h.ask(Y, "broadcast hello  all", t0), "");
    assert_eq!(h.take(H), "yoda: hello  all\n");
    assert_eq!(h.take(V), "yoda: hello  all\n");
    assert_eq!(h.take(s), "");

    assert_eq!(h.ask(V, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(
        h.ask(Y, "broadcast again", t0),
        "Your message could not be delivered to some recipients\n"
    );
    assert_eq!(h.take(H), "yoda: again\n");
    assert_eq!(h.take(V), "");

    // The blocker's own broadcasts still reach yoda.
    assert_eq!(h.ask(V, "broadcast from vader", t0), "");
    assert_eq!(h.take(Y), "vader: from vader\n");
    assert_eq!(h.take(H), "vader: from vader\n");

    // Blocking someone does not stop one's own broadcasts reaching them.
    assert_eq!(h.ask(Y, "block hans", t0), "hans is blocked\n");
    assert_eq!(h.ask(Y, "broadcast still", t0), PARTIAL);
    assert_eq!(h.take(H), "yoda: still\n");

    // A blocker who is offline was not skipped: no partial-delivery line.
    assert_eq!(h.ask(V, "logout", t0), GOODBYE);
    assert_eq!(h.take(H), "vader logged out\n");
    assert_eq!(h.ask(Y, "broadcast third", t0), "");
    assert_eq!(h.take(H), "yoda: third\n");

    // Broadcasts are not stored for offline users.
    assert_eq!(h.ask(s, "lightsaber", t0), WELCOME);
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(h.take(Y), "luke logged in\n"); // vader blocked yoda
    assert_eq!(
        h.ask(Y, "broadcast", t0),
        "Error. Usage: broadcast <message>\n"
    );
}

#[test]
fn broadcast_with_nobody_else_online_says_nothing() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "broadcast anyone?", t0), "");
}

#[test]
fn whoelse_lists_the_others_sorted_without_those_who_blocked_me() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "whoelse", t0), "No other users are online\n");
    let s = SessionId(10);
    h.connect(s, t0);
    assert_eq!(h.ask(s, "luke", t0), "Username: Password: ");
    assert_eq!(h.ask(Y, "whoelse", t0), NOBODY_ONLINE);
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(h.ask(s, "lightsaber", t0), WELCOME);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(Y, "whoelse", t0), "hans\nluke\nvader\n");
    assert_eq!(h.ask(s, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(h.ask(Y, "whoelse", t0), "hans\nvader\n");
    // Luke still sees yoda.
    assert_eq!(h.ask(s, "whoelse", t0), "hans\nvader\nyoda\n");
    // Users I blocked are still listed.
    assert_eq!(h.ask(Y, "block hans", t0), "hans is blocked\n");
    assert_eq!(h.ask(Y, "whoelse", t0), "hans\nvader\n");
    assert_eq!(h.ask(Y, "whoelse now", t0), "Error. Usage: whoelse\n");
    h.disconnect(V, t0);
    h.disconnect(H, t0);
    assert_eq!(h.take(Y), "vader logged out\nhans logged out\n");
    assert_eq!(h.ask(Y, "whoelse", t0), NOBODY_ONLINE);
}

#[test]
fn whoelsesince_covers_sessions_that_ended_less_than_the_window_ago() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login(V, "vader", "sithlord", t0);
    h.discard();
    assert_eq!(h.ask(V, "block yoda", t0), "yoda is blocked\n");
    let ended = t0 + secs(10);
    assert_eq!(h.ask(H, "logout", ended), GOODBYE);
    h.disconnect(V, ended);
    h.discard();

    let t1 = ended + secs(5);
    // Just under 5 s ago is less than 5 s ago.
    assert_eq!(h.ask(Y, "whoelsesince 5", t1 - ms(1)), "hans\n");
    assert_eq!(h.ask(Y, "whoelsesince 6", t1), "hans\n");
    assert_eq!(
        h.ask(Y, "whoelsesince 5", t1),
        "No other users since then\n"
    );
    assert_eq!(h.ask(Y, "whoelsesince 0", t1), NOBODY_SINCE);
    assert_eq!(h.ask(Y, "whoelse", t1), NOBODY_ONLINE);
    // Luke was never seen; vader blocked yoda.
    assert_eq!(h.ask(Y, "whoelsesince 1000000", t1), "hans\n");
    assert_eq!(
        h.ask(Y, "whoelsesince 99999999999999999999999", t1),
        "hans\n"
    );
    // Online users are listed whatever the window, sorted with the others.
    h.login(L, "luke", "lightsaber", t1);
    assert_eq!(h.take(Y), "luke logged in\n");
    assert_eq!(h.ask(Y, "whoelsesince 0", t1), "luke\n");
    assert_eq!(h.ask(Y, "whoelsesince 6", t1), "hans\nluke\n");
    // Vader sees yoda (online).
    h.login(V, "vader", "sithlord", t1);
    assert_eq!(h.ask(V, "whoelsesince 6", t1), "hans\nluke\nyoda\n");
    assert_eq!(h.ask(Y, "whoelsesince 6", t1), "hans\nluke\n");

    for bad in [
        "whoelsesince",
        "whoelsesince -1",
        "whoelsesince 1.5",
        "whoelsesince 1 2",
    ] {
        assert_eq!(
            h.ask(Y, bad, t1),
            "Error. Usage: whoelsesince <seconds>\n",
            "{bad}"
        );
    }
}

#[test]
fn whoelsesince_uses_the_end_of_the_last_session() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    assert_eq!(h.ask(H, "logout", t0 + secs(1)), GOODBYE);
    h.login(H, "hans", "falcon", t0 + secs(20));
    h.disconnect(H, t0 + secs(21));
    h.discard();
    let t1 = t0 + secs(30);
    assert_eq!(h.ask(Y, "whoelsesince 10", t1), "hans\n");
    assert_eq!(h.ask(Y, "whoelsesince 9", t1), NOBODY_SINCE);
}

#[test]
fn block_and_unblock_replies_and_errors() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(Y, "block hans", t0), "hans is blocked\n");
    assert_eq!(h.take(H), "");
    assert_eq!(
        h.ask(Y, "block hans", t0),
        "Error. hans is already blocked\n"
    );
    assert_eq!(h.ask(Y, "block bob", t0), "Error. Invalid user\n");
    assert_eq!(h.ask(Y, "block yoda", t0), "Error. Cannot block self\n");
    assert_eq!(h.ask(Y, "block luke", t0), "luke is blocked\n"); // offline, never seen
    assert_eq!(h.ask(H, "message yoda blocked", t0), MESSAGE_BLOCKED);
    assert_eq!(h.ask(Y, "unblock hans", t0), "hans is unblocked\n");
    assert_eq!(h.take(H), "");
    assert_eq!(
        h.ask(Y, "unblock hans", t0),
        "Error. hans was not blocked\n"
    );
    assert_eq!(
        h.ask(Y, "unblock vader", t0),
        "Error. vader was not blocked\n"
    );
    assert_eq!(h.ask(Y, "unblock bob", t0), "Error. Invalid user\n");
    assert_eq!(h.ask(Y, "unblock yoda", t0), "Error. Cannot unblock self\n");
    assert_eq!(h.ask(Y, "unblock luke", t0), "luke is unblocked\n");
    assert_eq!(h.ask(H, "message yoda free", t0), "");
    assert_eq!(h.take(Y), "hans: free\n");
    assert_eq!(h.ask(Y, "block", t0), "Error. Usage: block <user>\n");
    assert_eq!(
        h.ask(Y, "block hans vader", t0),
        "Error. Usage: block <user>\n"
    );
    assert_eq!(h.ask(Y, "unblock", t0), "Error. Usage: unblock <user>\n");
    assert_eq!(
        h.ask(Y, "unblock a b", t0),
        "Error. Usage: unblock <user>\n"
    );
    // None of the usage errors blocked anyone.
    assert_eq!(h.ask(H, "message yoda ok", t0), "");
    assert_eq!(h.take(Y), "hans: ok\n");
}

#[test]
fn blocks_are_kept_across_logouts_and_disconnects() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(Y, "block hans", t0), "hans is blocked\n");
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    h.login(Y, "yoda", "wise", t0);
    h.discard();
    assert_eq!(h.ask(H, "message yoda hi", t0), MESSAGE_BLOCKED);
    h.disconnect(Y, t0);
    assert_eq!(h.ask(H, "message yoda hi", t0), MESSAGE_BLOCKED);
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(
        h.ask(Y, "block hans", t0),
        "Error. hans is already blocked\n"
    );
}

#[test]
fn a_user_who_blocked_b_is_invisible_to_b_but_still_reaches_b() {
    // Yoda (A) blocks hans (B); vader is a bystander.
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login(V, "vader", "sithlord", t0);
    h.discard();
    assert_eq!(h.ask(Y, "block hans", t0), "hans is blocked\n");
    // B's messages and broadcasts do not reach A.
    assert_eq!(h.ask(H, "message yoda psst", t0), MESSAGE_BLOCKED);
    assert_eq!(h.ask(H, "broadcast hi", t0), PARTIAL);
    assert_eq!(h.take(V), "hans: hi\n");
    assert_eq!(h.take(Y), "");
    // A is hidden from B's whoelse and whoelsesince.
    assert_eq!(h.ask(H, "whoelse", t0), "vader\n");
    assert_eq!(h.ask(H, "whoelsesince 100", t0), "vader\n");
    // A sees B.
    assert_eq!(h.ask(Y, "whoelse", t0), "hans\nvader\n");
    // A's own messages and broadcasts reach B.
    assert_eq!(h.ask(Y, "message hans hello", t0), "");
    assert_eq!(h.take(H), "yoda: hello\n");
    assert_eq!(h.ask(Y, "broadcast all", t0), "");
    assert_eq!(h.take(H), "yoda: all\n");
    assert_eq!(h.take(V), "yoda: all\n");
    // B gets no presence about A; A gets presence about B.
    assert_eq!(h.ask(Y, "logout", t0 + secs(1)), GOODBYE);
    assert_eq!(h.take(H), "");
    assert_eq!(h.take(V), "yoda logged out\n");
    assert_eq!(h.ask(H, "whoelsesince 100", t0 + secs(2)), "vader\n");
    h.login(Y, "yoda", "wise", t0 + secs(2));
    assert_eq!(h.take(H), "");
    assert_eq!(h.take(V), "yoda logged in\n");
    h.disconnect(H, t0 + secs(3));
    assert_eq!(h.take(Y), "hans logged out\n");
    assert_eq!(h.take(V), "hans logged out\n");
}

#[test]
fn logout_says_goodbye_after_going_offline_and_closes() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(Y, "logout now", t0), "Error. Usage: logout\n");
    assert!(!h.closed(Y));

    h.chat.line(Y, "logout", t0);
    assert!(!h.chat.is_online("yoda"));
    assert_eq!(h.chat.online_count(), 1);
    // In effect order: others are told, then Goodbye, then Close.
    assert_eq!(
        h.take_effects(),
        [
            (H, Some("yoda logged out\n".to_owned())),
            (Y, Some("Goodbye\n".to_owned())),
            (Y, None),
        ]
    );
    assert!(h.closed(Y));
    h.discard();
    // The session is over; the id can log in again after reconnecting.
    assert_eq!(h.ask(Y, "whoelse", t0), "");
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.take(H), "yoda logged in\n");
}

#[test]
fn help_lists_the_eight_commands() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(
        h.ask(Y, "help", t0),
        "message <user> <message>\n\
         broadcast <message>\n\
         whoelse\n\
         whoelsesince <seconds>\n\
         block <user>\n\
         unblock <user>\n\
         logout\n\
         help\n"
    );
    assert_eq!(h.ask(Y, "help me", t0), "Error. Usage: help\n");
}

#[test]
fn unknown_commands_and_usage_lines() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    for (line, reply) in [
        ("hello", "Error. Invalid command"),
        ("Whoelse", "Error. Invalid command"),
        ("LOGOUT", "Error. Invalid command"),
        ("messages hans hi", "Error. Invalid command"),
        ("message", "Error. Usage: message <user> <message>"),
        ("message hans", "Error. Usage: message <user> <message>"),
        ("broadcast", "Error. Usage: broadcast <message>"),
        ("whoelse x", "Error. Usage: whoelse"),
        ("whoelsesince", "Error. Usage: whoelsesince <seconds>"),
        ("whoelsesince x", "Error. Usage: whoelsesince <seconds>"),
        ("block", "Error. Usage: block <user>"),
        ("unblock", "Error. Usage: unblock <user>"),
        ("logout x", "Error. Usage: logout"),
        ("help x", "Error. Usage: help"),
        ("privateport", "Error. Usage: privateport <port>"),
        ("privateport 0", "Error. Usage: privateport <port>"),
        ("privateport 65536", "Error. Usage: privateport <port>"),
        ("privateport +1", "Error. Usage: privateport <port>"),
        ("privateport 80 81", "Error. Usage: privateport <port>"),
        ("startprivate", "Error. Usage: startprivate <user>"),
        (
            "startprivate hans vader",
            "Error. Usage: startprivate <user>",
        ),
        ("private", "Error. Usage: private <user> <message>"),
        ("private hans", "Error. Usage: private <user> <message>"),
        ("stopprivate", "Error. Usage: stopprivate <user>"),
        ("stopprivate hans vader", "Error. Usage: stopprivate <user>"),
        ("Startprivate hans", "Error. Invalid command"),
    ] {
        assert_eq!(h.ask(Y, line, t0), format!("{reply}\n"), "{line}");
    }
    assert!(!h.closed(Y));
    assert!(h.chat.is_online("yoda"));
}
