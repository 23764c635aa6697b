//! Presence: `logged in` and `logged out` to every other user online except
//! those the subject blocked, exactly once per session.

use super::*;

#[test]
fn login_and_logout_are_announced_to_every_other_online_user() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    assert_eq!(h.take(Y), "hans logged in\n");
    // A session that has not logged in hears nothing.
    let s = SessionId(10);
    h.connect(s, t0);
    h.take(s);
    assert_eq!(h.ask(s, "luke", t0), PASSWORD);
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(h.take(Y), "vader logged in\n");
    assert_eq!(h.take(H), "vader logged in\n");
    assert_eq!(h.ask(V, "logout", t0), GOODBYE);
    assert_eq!(h.take(Y), "vader logged out\n");
    assert_eq!(h.take(H), "vader logged out\n");
    assert_eq!(h.take(s), "");
    // A login that fails announces nothing.
    assert_eq!(h.try_login(V, "vader", "bad", t0), INVALID_PASSWORD);
    assert_eq!(h.take(Y), "");
    assert_eq!(h.take(H), "");
}

#[test]
fn presence_skips_the_users_the_subject_blocked() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login(V, "vader", "sithlord", t0);
    h.discard();
    assert_eq!(h.ask(V, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(h.take(Y), "");
    assert_eq!(h.ask(V, "logout", t0), GOODBYE);
    assert_eq!(h.take(H), "vader logged out\n");
    assert_eq!(h.take(Y), "");
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(h.take(H), "vader logged in\n");
    assert_eq!(h.take(Y), "");
    // Yoda did not block vader: vader hears about yoda.
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    assert_eq!(h.take(V), "yoda logged out\n");
    assert_eq!(h.take(H), "yoda logged out\n");
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.take(V), "yoda logged in\n");
    assert_eq!(h.take(H), "yoda logged in\n");
    // Once unblocked, yoda hears about vader again.
    assert_eq!(h.ask(V, "unblock yoda", t0), "yoda is unblocked\n");
    h.disconnect(V, t0);
    assert_eq!(h.take(Y), "vader logged out\n");
    assert_eq!(h.take(H), "vader logged out\n");
}

#[test]
fn logged_out_is_announced_exactly_once_whatever_ends_the_session() {
    let ways = [
        "logout then disconnect",
        "disconnect twice",
        "timeout then disconnect",
        "timeout then lines",
        "logout then timeout",
    ];
    for way in ways {
        let t0 = Instant::now();
        let mut h = Harness::new();
        h.login(Y, "yoda", "wise", t0);
        // Hans stays active longer than yoda.
        h.login(H, "hans", "falcon", t0 + secs(30));
        h.discard();
        let t1 = t0 + TIMEOUT;
        match way {
            "logout then disconnect" => {
                assert_eq!(h.ask(Y, "logout", t0 + secs(40)), GOODBYE);
                assert_eq!(h.take(H), "yoda logged out\n", "{way}");
                h.disconnect(Y, t0 + secs(41));
            }
            "disconnect twice" => {
                h.disconnect(Y, t0 + secs(40));
                assert_eq!(h.take(H), "yoda logged out\n", "{way}");
                h.disconnect(Y, t0 + secs(41));
            }
            "timeout then disconnect" => {
                h.expire(t1);
                assert_eq!(h.take(Y), INACTIVE, "{way}");
                assert_eq!(h.take(H), "yoda logged out\n", "{way}");
                h.disconnect(Y, t1);
            }
            "timeout then lines" => {
                h.expire(t1);
                assert_eq!(h.take(Y), INACTIVE, "{way}");
                assert_eq!(h.take(H), "yoda logged out\n", "{way}");
                assert_eq!(h.ask(Y, "logout", t1), "", "{way}");
                h.chat.line_error(Y, LineError::TooLong, t1);
                h.drain();
                h.disconnect(Y, t1);
            }
            "logout then timeout" => {
                assert_eq!(h.ask(Y, "logout", t0 + secs(1)), GOODBYE);
                assert_eq!(h.take(H), "yoda logged out\n", "{way}");
                h.expire(t1 + secs(1));
            }
            _ => unreachable!(),
        }
        assert!(!h.chat.is_online("yoda"), "{way}");
        assert_eq!(h.take(H), "", "{way}");
        assert_eq!(h.take(Y), "", "{way}");
        assert!(h.closed(Y) || way == "disconnect twice", "{way}");
    }
}

#[test]
fn sessions_that_never_logged_in_announce_nothing() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    let [a, b] = [SessionId(10), SessionId(11)];
    h.connect(a, t0);
    h.connect(b, t0);
    assert_eq!(h.ask(b, "hans", t0), "Username: Password: ");
    h.login(Y, "yoda", "wise", t0 + secs(30));
    h.disconnect(a, t0 + secs(1));
    h.expire(t0 + TIMEOUT);
    assert_eq!(h.take(b), LOGIN_TIMED_OUT);
    assert!(h.closed(b));
    assert_eq!(h.take(Y), "");
    assert_eq!(h.chat.online_count(), 1);
}

/// Which kind of output each effect is, by recipient.
fn kinds(h: &mut Harness) -> Vec<(SessionId, &'static str)> {
    let kinds = h
        .chat
        .outbox()
        .effects()
        .iter()
        .map(|effect| match effect {
            Effect::Send { to, .. } => (*to, "send"),
            Effect::Notice { to, .. } => (*to, "notice"),
            Effect::Close(sid) => (*sid, "close"),
            Effect::Backlog(sid) => (*sid, "backlog"),
        })
        .collect();
    h.drain();
    kinds
}

#[test]
fn presence_lines_are_notices_and_everything_else_is_sent() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.connect(H, t0);
    h.take(H);
    assert_eq!(h.ask(H, "hans", t0), PASSWORD);
    h.chat.line(H, "falcon", t0);
    assert_eq!(kinds(&mut h), [(H, "send"), (Y, "notice")]);
    h.chat.line(Y, "message hans hi", t0);
    assert_eq!(kinds(&mut h), [(H, "send")]);
    h.chat.line(H, "logout", t0);
    assert_eq!(kinds(&mut h), [(Y, "notice"), (H, "send"), (H, "close")]);
}
