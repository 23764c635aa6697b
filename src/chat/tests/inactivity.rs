//! Inactivity: the idle timeout before and after login, what counts as
//! activity, and timers firing exactly when due.

use super::*;

#[test]
fn idle_before_login_times_out_exactly_at_timeout() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    h.connect(H, t0);
    h.take(H);
    assert_eq!(h.ask(H, "yoda", t0 + secs(10)), PASSWORD);
    h.expire(t0 + TIMEOUT - ms(1));
    assert_eq!(h.take(Y), "");
    assert!(!h.closed(Y));
    h.expire(t0 + TIMEOUT);
    assert_eq!(h.take(Y), "Login timed out\n");
    assert!(h.closed(Y));
    // At the password prompt it is the same message, from the last line.
    assert_eq!(h.take(H), "");
    h.expire(t0 + secs(10) + TIMEOUT - ms(1));
    assert_eq!(h.take(H), "");
    h.expire(t0 + secs(10) + TIMEOUT);
    assert_eq!(h.take(H), LOGIN_TIMED_OUT);
    assert!(h.closed(H));
}

#[test]
fn idle_after_login_logs_out_and_announces_it() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0 + secs(30));
    h.discard();
    h.expire(t0 + TIMEOUT - ms(1));
    assert_eq!(h.take(Y), "");
    assert!(h.chat.is_online("yoda"));
    let t1 = t0 + TIMEOUT;
    h.expire(t1);
    assert_eq!(h.take(Y), "You have been logged out due to inactivity\n");
    assert!(h.closed(Y));
    assert!(!h.chat.is_online("yoda"));
    assert_eq!(h.chat.online_count(), 1);
    assert_eq!(h.take(H), "yoda logged out\n");
    // The timeout ended the session at t1.
    assert_eq!(h.ask(H, "whoelsesince 6", t1 + secs(5)), "yoda\n");
    assert_eq!(h.ask(H, "whoelsesince 5", t1 + secs(5)), NOBODY_SINCE);
}

#[test]
fn any_line_or_line_error_postpones_the_idle_timeout() {
    let kinds = [
        "command",
        "private port",
        "command error",
        "usage error",
        "line error",
        "username",
        "wrong password",
        "login line error",
    ];
    for kind in kinds {
        let t0 = Instant::now();
        let mut h = Harness::new();
        let before_login = matches!(kind, "username" | "wrong password" | "login line error");
        if before_login {
            h.connect(Y, t0);
            if kind == "wrong password" {
                h.send(Y, "yoda", t0);
            }
        } else {
            h.login(Y, "yoda", "wise", t0);
        }
        h.discard();
        let last = t0 + secs(50);
        match kind {
            "command" => h.send(Y, "whoelse", last),
            "private port" => h.send(Y, "privateport 5000", last),
            "command error" => h.send(Y, "dance", last),
            "usage error" => h.send(Y, "block", last),
            "line error" | "login line error" => {
                h.line_error(Y, LineError::InvalidEncoding, last);
            }
            "username" => h.send(Y, "yoda", last),
            "wrong password" => h.send(Y, "bad", last),
            _ => unreachable!(),
        }
        h.discard();
        h.expire(t0 + TIMEOUT);
        assert_eq!(h.take(Y), "", "{kind}");
        h.expire(last + TIMEOUT - ms(1));
        assert_eq!(h.take(Y), "", "{kind}");
        assert!(!h.closed(Y), "{kind}");
        h.expire(last + TIMEOUT);
        let expected = if before_login {
            LOGIN_TIMED_OUT
        } else {
            INACTIVE
        };
        assert_eq!(h.take(Y), expected, "{kind}");
        assert!(h.closed(Y), "{kind}");
    }
}

#[test]
fn receiving_is_not_activity() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    h.send(H, "message yoda one", t0 + secs(30));
    h.send(H, "broadcast two", t0 + secs(59));
    h.login(V, "vader", "sithlord", t0 + secs(59));
    assert_eq!(h.take(H), "vader logged in\n");
    assert_eq!(h.take(Y), "hans: one\nhans: two\nvader logged in\n");
    h.expire(t0 + TIMEOUT);
    assert_eq!(h.take(Y), INACTIVE);
    assert!(h.closed(Y));
    assert!(!h.closed(H));
    assert_eq!(h.take(H), "yoda logged out\n");
    assert_eq!(h.take(V), "yoda logged out\n");
}

#[test]
fn timers_fire_exactly_when_due_when_sleeping_until_next_deadline() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    let s = SessionId(10);
    let mut closes = Vec::new();
    // Every step first runs the timers due before it, as the poll loop does.
    let step = |h: &mut Harness, closes: &mut Vec<(SessionId, Instant)>, at: Instant| {
        closes.extend(h.run_timers(at - ms(1)));
    };
    h.connect(s, t0);
    h.login(Y, "yoda", "wise", t0);
    step(&mut h, &mut closes, t0 + secs(1));
    h.ban(SessionId(11), "vader", t0 + secs(1));
    step(&mut h, &mut closes, t0 + secs(5));
    h.login(H, "hans", "falcon", t0 + secs(5));
    step(&mut h, &mut closes, t0 + secs(10));
    h.send(Y, "whoelse", t0 + secs(10));
    step(&mut h, &mut closes, t0 + secs(45));
    h.chat.line_error(Y, LineError::TooLong, t0 + secs(45));
    h.drain();
    step(&mut h, &mut closes, t0 + secs(60));
    h.send(H, "bogus", t0 + secs(60));
    closes.extend(h.run_timers(t0 + secs(1000)));
    assert_eq!(
        closes,
        [
            (s, t0 + TIMEOUT),
            (Y, t0 + secs(45) + TIMEOUT),
            (H, t0 + secs(60) + TIMEOUT),
        ]
    );
    assert_eq!(h.take(s), "Username: Login timed out\n");
    assert_eq!(h.chat.online_count(), 0);
    // The ban ended on its own timer.
    h.login(V, "vader", "sithlord", t0 + secs(1000));
}

#[test]
fn a_reused_session_id_is_a_new_session() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(h.ask(Y, "yoda", t0), PASSWORD);
    h.disconnect(Y, t0 + secs(1));
    h.connect(Y, t0 + secs(30));
    assert_eq!(h.take(Y), USERNAME);
    h.expire(t0 + TIMEOUT);
    assert_eq!(h.take(Y), "");
    h.expire(t0 + secs(30) + TIMEOUT - ms(1));
    assert_eq!(h.take(Y), "");
    h.expire(t0 + secs(30) + TIMEOUT);
    assert_eq!(h.take(Y), LOGIN_TIMED_OUT);
}
