//! Hashed passwords: the domain asks the server to verify them
//! ([`Verification`]) and goes on with the answer ([`Chat::verified`]),
//! as it does at once for a clear password.

use super::*;

/// An Argon2id hash of `socute` (the domain never parses it: the server
/// verifies).
const R2D2_HASH: &str =
    "$argon2id$v=19$m=19456,t=2,p=1$LN2YTVnRQTYfR9Ij6Ris8A$0bVHE4Ql7y5WXr+ZVeQTkY6Q0eohOMfHYu5NPNOGJNg";
const R: SessionId = SessionId(9);

fn with_r2d2() -> Harness {
    let accounts = accounts(&[("yoda", "wise"), ("r2d2", R2D2_HASH)]);
    let mut config = ChatConfig::new(BLOCK, TIMEOUT);
    config.login_timeout = secs(30);
    Harness::with(accounts, config)
}

/// Connects `sid` and answers the username prompt with r2d2.
fn at_prompt(h: &mut Harness, sid: SessionId, now: Instant) {
    h.connect(sid, now);
    assert_eq!(h.take(sid), USERNAME);
    assert_eq!(h.ask(sid, "r2d2", now), PASSWORD);
}

/// `sid`, at r2d2's password prompt, types `given`: the one verification
/// asked for.
fn typed(h: &mut Harness, sid: SessionId, given: &str, now: Instant) -> Verification {
    assert_eq!(
        h.ask(sid, given, now),
        "",
        "nothing is said before the answer"
    );
    let mut asked = h.chat.outbox().take_verifications();
    assert_eq!(asked.len(), 1);
    let verification = asked.remove(0);
    assert_eq!(verification.session, sid);
    assert_eq!(verification.given, given);
    assert_eq!(&*verification.stored, R2D2_HASH);
    verification
}

fn answer(h: &mut Harness, v: &Verification, matches: bool, now: Instant) -> String {
    h.chat.verified(v.session, v.epoch, matches, now);
    h.drain();
    h.take(v.session)
}

#[test]
fn a_hashed_password_is_verified_by_the_server_and_the_login_goes_on() {
    let t0 = Instant::now();
    let mut h = with_r2d2();
    h.login(Y, "yoda", "wise", t0);
    at_prompt(&mut h, R, t0);
    let v = typed(&mut h, R, "socute", t0);
    assert!(!h.chat.is_online("r2d2"));
    assert_eq!(answer(&mut h, &v, true, t0), WELCOME);
    assert!(h.chat.is_online("r2d2"));
    assert_eq!(h.take(Y), "r2d2 logged in\n");
    // A clear password is compared at once, with no verification.
    h.connect(H, t0);
    h.ask(H, "yoda", t0);
    h.ask(H, "wise", t0);
    assert!(!h.chat.outbox().has_verifications());
}

#[test]
fn wrong_answers_count_as_wrong_passwords_and_ban() {
    let t0 = Instant::now();
    let mut h = with_r2d2();
    at_prompt(&mut h, R, t0);
    let v = typed(&mut h, R, "a", t0);
    assert_eq!(answer(&mut h, &v, false, t0), INVALID_PASSWORD);
    let v = typed(&mut h, R, "b", t0);
    assert_eq!(answer(&mut h, &v, false, t0), INVALID_PASSWORD);
    let v = typed(&mut h, R, "c", t0);
    assert_eq!(answer(&mut h, &v, false, t0), NOW_BANNED);
    assert!(h.closed(R));
}

#[test]
fn lines_while_verifying_get_nothing_and_the_login_deadline_still_runs() {
    let t0 = Instant::now();
    let mut h = with_r2d2();
    at_prompt(&mut h, R, t0);
    let v = typed(&mut h, R, "socute", t0);
    assert_eq!(h.ask(R, "whoelse", t0), "");
    assert!(!h.chat.outbox().has_verifications());
    h.expire(t0 + secs(30));
    assert_eq!(h.take(R), LOGIN_TIMED_OUT);
    assert!(h.closed(R));
    // The late answer changes nothing.
    assert_eq!(answer(&mut h, &v, true, t0 + secs(31)), "");
    assert!(!h.chat.is_online("r2d2"));
}

#[test]
fn an_answer_for_an_earlier_connection_with_the_same_id_is_ignored() {
    let t0 = Instant::now();
    let mut h = with_r2d2();
    at_prompt(&mut h, R, t0);
    let old = typed(&mut h, R, "socute", t0);
    h.disconnect(R, t0);
    at_prompt(&mut h, R, t0);
    let new = typed(&mut h, R, "wrong", t0);
    assert_ne!(old.epoch, new.epoch);
    assert_eq!(answer(&mut h, &old, true, t0), "");
    assert!(!h.chat.is_online("r2d2"));
    assert_eq!(answer(&mut h, &new, false, t0), INVALID_PASSWORD);
}

#[test]
fn a_ban_that_came_while_verifying_wins_over_a_right_password() {
    let t0 = Instant::now();
    let mut h = with_r2d2();
    at_prompt(&mut h, R, t0);
    let pending = typed(&mut h, R, "socute", t0);
    at_prompt(&mut h, H, t0);
    for _ in 0..3 {
        let v = typed(&mut h, H, "nope", t0);
        answer(&mut h, &v, false, t0);
    }
    assert!(h.closed(H));
    assert_eq!(answer(&mut h, &pending, true, t0), BANNED);
    assert!(h.closed(R));
    assert!(!h.chat.is_online("r2d2"));
}
