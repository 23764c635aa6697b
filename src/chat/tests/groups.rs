//! The inputs a cluster feeds the domain: sessions in groups (one per
//! node) whose idle timers fire only when their group's node says so,
//! a group ended at once, tokens given with the line, and passwords
//! judged by the node that holds the connection.

use super::*;

const A: u32 = 1;
const B: u32 = 2;

impl Harness {
    /// Connects `sid` in `group` from 127.0.0.1.
    #[track_caller]
    fn connect_in(&mut self, sid: SessionId, group: u32, now: Instant) {
        self.closed.remove(&sid);
        let ip = Ipv4Addr::LOCALHOST.into();
        self.chat.connect_in(sid, ip, false, group, now);
        self.drain();
    }

    /// Logs `user` in on `sid` of `group`, the password judged right.
    #[track_caller]
    fn login_in(&mut self, sid: SessionId, group: u32, user: &str, now: Instant) {
        self.connect_in(sid, group, now);
        assert_eq!(self.take(sid), USERNAME);
        assert_eq!(self.ask(sid, user, now), PASSWORD);
        assert!(self.chat.password_wanted(sid).is_some());
        self.chat.password_judged(sid, true, now);
        self.drain();
        assert_eq!(self.take(sid), WELCOME);
    }
}

#[test]
fn a_groups_idle_timers_fire_only_when_that_group_expires() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login_in(Y, A, "yoda", t0);
    h.login_in(H, B, "hans", t0);
    h.discard();
    let late = t0 + TIMEOUT + secs(1);
    assert_eq!(h.chat.next_deadline_of(A), Some(t0 + TIMEOUT));
    assert_eq!(h.chat.next_deadline_of(3), None);
    h.chat.expire_group(A, late);
    h.drain();
    assert_eq!(h.take(Y), INACTIVE);
    assert!(h.closed(Y));
    assert!(!h.closed(H));
    assert_eq!(h.take(H), "yoda logged out\n");
    assert_eq!(h.chat.next_deadline_of(A), None);
    h.chat.expire_group(B, late);
    h.drain();
    assert_eq!(h.take(H), INACTIVE);
}

#[test]
fn a_ban_ends_whichever_group_expires() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect_in(Y, A, t0);
    h.discard();
    h.send(Y, "vader", t0);
    for _ in 0..3 {
        h.chat.password_judged(Y, false, t0);
    }
    h.drain();
    assert_eq!(
        h.take(Y),
        format!("{PASSWORD}{INVALID_PASSWORD}{INVALID_PASSWORD}{NOW_BANNED}")
    );
    assert_eq!(h.chat.next_deadline_of(B), Some(t0 + BLOCK));
    h.chat.expire_group(B, t0 + BLOCK);
    h.drain();
    // The ban is over: the right password logs in.
    h.login_in(H, B, "vader", t0 + BLOCK);
}

#[test]
fn ending_a_group_announces_each_of_its_users_once() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login_in(Y, A, "yoda", t0);
    h.login_in(H, A, "hans", t0);
    h.login_in(V, B, "vader", t0);
    h.connect_in(L, A, t0);
    h.discard();
    h.chat.end_group(A, t0);
    h.drain();
    assert!(h.closed(Y) && h.closed(H) && h.closed(L));
    assert!(!h.closed(V));
    assert_eq!(h.take(V), "yoda logged out\nhans logged out\n");
    assert!(!h.chat.is_online("yoda"));
    assert_eq!(h.chat.online_count(), 1);
    // Nothing of theirs fires later.
    h.expire(t0 + TIMEOUT);
    assert_eq!(h.take(V), INACTIVE);
}

#[test]
fn a_token_given_with_the_line_is_the_one_sent() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login_in(Y, A, "yoda", t0);
    h.login_in(H, B, "hans", t0);
    h.send(Y, "privateport 5000", t0);
    h.send(H, "privateport 6000", t0);
    h.discard();
    h.chat
        .line_drawn(Y, "startprivate hans", Some([0xab; 16]), t0);
    h.drain();
    let token = "ab".repeat(16);
    assert_eq!(
        h.take(Y),
        format!("!private connect hans 127.0.0.1:6000 {token}\n")
    );
    assert_eq!(h.take(H), format!("!private accept yoda {token}\n"));
    // No token drawn: refused, as when the system has no randomness.
    h.chat.line_drawn(Y, "startprivate hans", None, t0);
    h.drain();
    assert_eq!(h.take(Y), "Error. Private messaging is unavailable\n");
    assert_eq!(h.take(H), "");
}

#[test]
fn a_judged_password_counts_only_at_the_password_prompt() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.connect_in(Y, A, t0);
    h.discard();
    assert_eq!(h.chat.password_wanted(Y), None);
    h.chat.password_judged(Y, true, t0);
    h.drain();
    assert_eq!(h.take(Y), "");
    h.send(Y, "yoda", t0);
    assert_eq!(h.chat.password_wanted(Y), Some(Some("wise")));
    h.chat.password_judged(Y, false, t0);
    h.drain();
    assert_eq!(h.take(Y), format!("{PASSWORD}{INVALID_PASSWORD}"));
    h.chat.password_judged(Y, true, t0);
    h.drain();
    assert_eq!(h.take(Y), WELCOME);
    assert!(h.chat.is_online("yoda"));
    assert_eq!(h.chat.password_wanted(Y), None);
    // A second session with the right password is refused.
    h.connect_in(H, B, t0);
    h.send(H, "yoda", t0);
    h.chat.password_judged(H, true, t0);
    h.drain();
    assert_eq!(h.take(H), format!("{USERNAME}{PASSWORD}{ALREADY_ONLINE}"));
}
