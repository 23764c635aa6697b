//! Reloading the accounts (SIGHUP): new accounts, changed passwords and
//! removed accounts, online or not.

use super::*;

const REMOVED: &str = "Your account has been removed\n";

#[test]
fn a_new_account_logs_in_and_a_changed_password_applies_from_the_next_login() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.chat.reload_accounts(
        accounts(&[
            ("yoda", "wiser"),
            ("hans", "falcon"),
            ("vader", "sithlord"),
            ("luke", "lightsaber"),
            ("leia", "blaster"),
        ]),
        t0,
    );
    h.drain();
    assert_eq!(h.take(Y), "", "an online user whose password changed stays");
    h.login(L, "leia", "blaster", t0);
    assert_eq!(h.take(Y), "leia logged in\n");
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    h.connect(Y, t0);
    h.take(Y);
    h.ask(Y, "yoda", t0);
    assert_eq!(h.ask(Y, "wise", t0), INVALID_PASSWORD);
    assert_eq!(h.ask(Y, "wiser", t0), WELCOME);
}

#[test]
fn a_removed_account_online_is_told_closed_and_announced_and_keeps_its_mail() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.send(H, "logout", t0);
    h.login(V, "vader", "sithlord", t0);
    h.discard();
    h.send(V, "message hans are you there", t0);
    assert_eq!(h.take(V), offline("hans"));
    let without = |gone: &str| {
        let all = [
            ("yoda", "wise"),
            ("hans", "falcon"),
            ("vader", "sithlord"),
            ("luke", "lightsaber"),
        ];
        accounts(
            &all.into_iter()
                .filter(|(u, _)| *u != gone)
                .collect::<Vec<_>>(),
        )
    };
    h.chat.reload_accounts(without("yoda"), t0);
    h.drain();
    assert_eq!(h.take(Y), REMOVED);
    assert!(h.closed(Y));
    assert_eq!(h.take(V), "yoda logged out\n");
    assert_eq!(h.ask(V, "message yoda hello", t0), "Error. Invalid user\n");
    // hans, offline, is removed too; his mail waits for him.
    h.chat.reload_accounts(without("hans"), t0);
    h.drain();
    h.connect(H, t0);
    h.take(H);
    assert_eq!(h.ask(H, "hans", t0), INVALID_USERNAME);
    h.chat.reload_accounts(without("nobody"), t0);
    h.drain();
    assert_eq!(h.ask(H, "hans", t0), PASSWORD);
    assert_eq!(
        h.ask(H, "falcon", t0),
        format!("{WELCOME}vader: are you there\n")
    );
}

#[test]
fn an_account_removed_while_its_password_is_typed_or_verified_does_not_log_in() {
    let t0 = Instant::now();
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$LN2YTVnRQTYfR9Ij6Ris8A$0bVHE4Ql7y5WXr+ZVeQTkY6Q0eohOMfHYu5NPNOGJNg";
    let mut h = Harness::with(
        accounts(&[("yoda", "wise"), ("r2d2", hash)]),
        ChatConfig::new(BLOCK, TIMEOUT),
    );
    h.connect(Y, t0);
    h.take(Y);
    h.ask(Y, "yoda", t0);
    h.connect(H, t0);
    h.take(H);
    h.ask(H, "r2d2", t0);
    assert_eq!(h.ask(H, "socute", t0), "");
    let verification = h.chat.outbox().take_verifications().remove(0);
    h.chat.reload_accounts(accounts(&[("hans", "falcon")]), t0);
    h.drain();
    assert_eq!(h.ask(Y, "wise", t0), INVALID_PASSWORD);
    h.chat.verified(H, verification.epoch, true, t0);
    h.drain();
    assert_eq!(h.take(H), INVALID_PASSWORD);
    assert!(!h.chat.is_online("yoda") && !h.chat.is_online("r2d2"));
}
