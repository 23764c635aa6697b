//! Logging in: the prompts, wrong passwords and bans, the failure count per
//! username across sessions, and line errors at the prompts.

use super::*;

#[test]
fn login_prompts_then_welcome() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    assert_eq!(h.take(Y), "Username: ");
    assert_eq!(h.ask(Y, "yoda", t0), "Password: ");
    assert!(!h.chat.is_online("yoda"));
    assert_eq!(h.chat.online_count(), 0);
    assert_eq!(
        h.ask(Y, "wise", t0),
        "Welcome to the greatest messaging application ever!\n"
    );
    assert!(h.chat.is_online("yoda"));
    assert!(!h.chat.is_online("hans"));
    assert!(!h.chat.is_online("nobody"));
    assert_eq!(h.chat.online_count(), 1);
    assert!(!h.closed(Y));
}

#[test]
fn unknown_username_asks_for_the_username_again() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(
        h.ask(Y, "bob", t0),
        "Invalid Username. Please try again\nUsername: "
    );
    assert_eq!(h.ask(Y, "Yoda", t0), INVALID_USERNAME);
    assert_eq!(h.ask(Y, "wise", t0), INVALID_USERNAME);
    assert!(!h.closed(Y));
    assert_eq!(h.ask(Y, "yoda", t0), PASSWORD);
    assert_eq!(h.ask(Y, "wise", t0), WELCOME);
}

#[test]
fn wrong_password_twice_asks_again_and_the_third_bans_and_closes() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    assert_eq!(
        h.try_login(Y, "yoda", "falcon", t0),
        "Invalid Password. Please try again\nPassword: "
    );
    assert!(!h.closed(Y));
    assert_eq!(h.ask(Y, "WISE", t0), INVALID_PASSWORD);
    assert!(!h.closed(Y));
    assert_eq!(
        h.ask(Y, "wis", t0),
        "Invalid Password. Your account has been blocked. Please try again later\n"
    );
    assert!(h.closed(Y));
    assert!(!h.chat.is_online("yoda"));
    // The session is over: later lines get nothing (the harness would also
    // fail on output after Close).
    assert_eq!(h.ask(Y, "wise", t0), "");
}

#[test]
fn a_banned_username_is_refused_after_the_password_prompt_whatever_the_password() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.ban(SessionId(10), "yoda", t0);
    assert_eq!(
        h.try_login(SessionId(11), "yoda", "wise", t0 + secs(1)),
        "Your account is blocked due to multiple login failures. Please try again later\n"
    );
    assert!(h.closed(SessionId(11)));
    assert_eq!(
        h.try_login(SessionId(12), "yoda", "nope", t0 + secs(2)),
        BANNED
    );
    assert!(h.closed(SessionId(12)));
    assert!(!h.chat.is_online("yoda"));
    // Other usernames are not affected.
    h.login(H, "hans", "falcon", t0 + secs(2));
}

#[test]
fn a_session_already_at_the_password_prompt_is_refused_once_the_ban_starts() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(h.ask(Y, "yoda", t0), PASSWORD);
    h.ban(SessionId(10), "yoda", t0 + secs(1));
    assert_eq!(h.ask(Y, "wise", t0 + secs(2)), BANNED);
    assert!(h.closed(Y));
}

#[test]
fn right_password_while_online_elsewhere_asks_for_the_username_and_keeps_the_count() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    let s = SessionId(10);
    assert_eq!(h.try_login(s, "yoda", "bad", t0), INVALID_PASSWORD); // 1st
    assert_eq!(
        h.ask(s, "wise", t0),
        "This user is already logged in\nUsername: "
    );
    assert!(!h.closed(s));
    assert_eq!(h.chat.online_count(), 1);
    // Back at the username prompt.
    assert_eq!(h.ask(s, "wise", t0), INVALID_USERNAME);
    assert_eq!(h.ask(s, "yoda", t0), PASSWORD);
    assert_eq!(h.ask(s, "wise", t0), ALREADY_ONLINE);
    assert_eq!(h.ask(s, "yoda", t0), PASSWORD);
    // Not counted as a failure: this is the 2nd one...
    assert_eq!(h.ask(s, "bad", t0), INVALID_PASSWORD);
    // ...and the count was not reset either: the 3rd bans.
    assert_eq!(h.ask(s, "bad", t0), NOW_BANNED);
    assert!(h.closed(s));
    // The online session is untouched.
    assert!(h.chat.is_online("yoda"));
    assert!(!h.closed(Y));
    assert_eq!(h.take(Y), "");
}

#[test]
fn two_sessions_racing_for_the_same_user() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    for s in [Y, H] {
        h.connect(s, t0);
        h.take(s);
        assert_eq!(h.ask(s, "yoda", t0), PASSWORD);
    }
    assert_eq!(h.ask(Y, "wise", t0), WELCOME);
    assert_eq!(h.ask(H, "wise", t0), ALREADY_ONLINE);
    assert_eq!(h.chat.online_count(), 1);
    assert_eq!(h.take(Y), "");
}

#[test]
fn failure_counts_are_per_username_across_sessions() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    let [s1, s2, s3, s4] = [10, 11, 12, 13].map(SessionId);
    assert_eq!(h.try_login(s1, "yoda", "bad", t0), INVALID_PASSWORD); // yoda 1
    h.disconnect(s1, t0);
    assert_eq!(h.try_login(s2, "hans", "bad", t0), INVALID_PASSWORD); // hans 1
    assert_eq!(h.try_login(s3, "yoda", "bad", t0), INVALID_PASSWORD); // yoda 2
    assert_eq!(h.try_login(s4, "yoda", "bad", t0), NOW_BANNED); // yoda 3
    assert!(h.closed(s4));
    // s3 was still at the password prompt: now banned.
    assert_eq!(h.ask(s3, "wise", t0), BANNED);
    assert!(h.closed(s3));
    // hans has one failure only.
    assert_eq!(h.ask(s2, "bad", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(s2, "falcon", t0), WELCOME);
}

#[test]
fn a_successful_login_resets_the_count() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    assert_eq!(h.try_login(Y, "yoda", "bad", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(Y, "bad", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(Y, "wise", t0), WELCOME);
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    assert_eq!(h.try_login(Y, "yoda", "bad", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(Y, "bad", t0), INVALID_PASSWORD);
    assert!(!h.closed(Y));
    assert_eq!(h.ask(Y, "bad", t0), NOW_BANNED);
}

#[test]
fn a_ban_lasts_exactly_block_duration_without_expire() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.ban(SessionId(10), "yoda", t0);
    let end = t0 + BLOCK;
    assert_eq!(
        h.try_login(SessionId(11), "yoda", "wise", end - ms(1)),
        BANNED
    );
    assert_eq!(h.try_login(Y, "yoda", "wise", end), WELCOME);
}

#[test]
fn a_ban_lasts_exactly_block_duration_with_expire() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.ban(SessionId(10), "yoda", t0);
    let end = t0 + BLOCK;
    assert!(h.chat.next_deadline().is_some_and(|d| d <= end));
    h.expire(end - ms(1));
    assert_eq!(
        h.try_login(SessionId(11), "yoda", "wise", end - ms(1)),
        BANNED
    );
    h.expire(end);
    assert_eq!(h.try_login(Y, "yoda", "wise", end), WELCOME);
}

#[test]
fn a_ban_that_ends_while_at_the_password_prompt_lets_the_user_in() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.ban(SessionId(10), "yoda", t0);
    h.connect(Y, t0 + secs(1));
    h.take(Y);
    assert_eq!(h.ask(Y, "yoda", t0 + secs(1)), PASSWORD);
    assert_eq!(h.ask(Y, "wise", t0 + BLOCK), WELCOME);
}

#[test]
fn nothing_extends_a_ban() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.ban(SessionId(10), "yoda", t0);
    for (i, (pass, at)) in [
        ("bad", secs(1)),
        ("wise", secs(2)),
        ("bad", secs(5)),
        ("bad", secs(9)),
        ("bad", BLOCK - ms(1)),
    ]
    .into_iter()
    .enumerate()
    {
        let s = SessionId(20 + i);
        assert_eq!(h.try_login(s, "yoda", pass, t0 + at), BANNED);
        assert!(h.closed(s));
    }
    assert_eq!(h.try_login(Y, "yoda", "wise", t0 + BLOCK), WELCOME);
}

#[test]
fn the_count_is_reset_when_a_ban_ends() {
    for use_expire in [false, true] {
        let t0 = Instant::now();
        let mut h = Harness::new();
        h.ban(SessionId(10), "yoda", t0);
        let t1 = t0 + BLOCK;
        if use_expire {
            h.expire(t1);
        }
        // Three new failures are needed to ban again.
        assert_eq!(h.try_login(Y, "yoda", "bad", t1), INVALID_PASSWORD);
        assert_eq!(h.ask(Y, "bad", t1), INVALID_PASSWORD);
        assert!(!h.closed(Y));
        assert_eq!(h.ask(Y, "bad", t1), NOW_BANNED);
        // And that is a new ban of its own full length.
        let t2 = t1 + BLOCK;
        if use_expire {
            h.expire(t2 - ms(1));
        }
        assert_eq!(h.try_login(H, "yoda", "wise", t2 - ms(1)), BANNED);
        if use_expire {
            h.expire(t2);
        }
        assert_eq!(h.try_login(V, "yoda", "wise", t2), WELCOME);
    }
}

#[test]
fn line_errors_during_login_repeat_the_prompt_and_are_not_password_failures() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(
        h.line_error(Y, LineError::TooLong, t0),
        "Error. Line too long\nUsername: "
    );
    assert_eq!(
        h.line_error(Y, LineError::InvalidEncoding, t0),
        "Error. Invalid encoding\nUsername: "
    );
    assert_eq!(h.ask(Y, "yoda", t0), PASSWORD);
    assert_eq!(h.ask(Y, "bad", t0), INVALID_PASSWORD); // 1st failure
    assert_eq!(
        h.line_error(Y, LineError::TooLong, t0),
        "Error. Line too long\nPassword: "
    );
    for _ in 0..3 {
        assert_eq!(
            h.line_error(Y, LineError::InvalidEncoding, t0),
            "Error. Invalid encoding\nPassword: "
        );
    }
    assert!(!h.closed(Y));
    assert_eq!(h.ask(Y, "bad", t0), INVALID_PASSWORD); // only the 2nd
    assert_eq!(h.ask(Y, "wise", t0), WELCOME);
    // After login there is no prompt to repeat.
    assert_eq!(
        h.line_error(Y, LineError::TooLong, t0),
        "Error. Line too long\n"
    );
    assert_eq!(
        h.line_error(Y, LineError::InvalidEncoding, t0),
        "Error. Invalid encoding\n"
    );
    assert!(!h.closed(Y));
}

#[test]
fn commands_are_not_understood_before_login() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(h.ask(Y, "help", t0), INVALID_USERNAME);
    assert_eq!(h.ask(Y, "logout", t0), INVALID_USERNAME);
    assert_eq!(h.ask(Y, "privateport 5000", t0), INVALID_USERNAME);
    assert!(!h.closed(Y));
}
