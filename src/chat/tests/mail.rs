//! Offline messages: after the welcome, in order, once, for their own
//! recipient.

use super::*;

#[test]
fn offline_messages_follow_the_welcome_in_order_and_only_once() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(H, "hans", "falcon", t0);
    assert_eq!(
        h.ask(H, "message yoda first", t0),
        "yoda is offline. Your message will be delivered when they log in\n"
    );
    assert_eq!(
        h.ask(H, "message yoda second   with  spaces", t0),
        offline("yoda")
    );
    h.login(V, "vader", "sithlord", t0);
    assert_eq!(h.take(H), "vader logged in\n");
    assert_eq!(h.ask(V, "message yoda from vader", t0), offline("yoda"));
    assert_eq!(h.ask(H, "message yoda third", t0), offline("yoda"));
    // Connected but not logged in is still offline.
    h.connect(Y, t0);
    h.take(Y);
    assert_eq!(h.ask(Y, "yoda", t0), PASSWORD);
    assert_eq!(h.ask(H, "message yoda fourth", t0), offline("yoda"));
    assert_eq!(
        h.ask(Y, "wise", t0),
        "Welcome to the greatest messaging application ever!\n\
         hans: first\n\
         hans: second   with  spaces\n\
         vader: from vader\n\
         hans: third\n\
         hans: fourth\n"
    );
    assert_eq!(h.take(H), "yoda logged in\n");
    assert_eq!(h.take(V), "yoda logged in\n");
    assert_eq!(h.ask(Y, "logout", t0), GOODBYE);
    h.login(Y, "yoda", "wise", t0); // asserts nothing follows the welcome
}

#[test]
fn mailboxes_are_per_user() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(H, "hans", "falcon", t0);
    assert_eq!(h.ask(H, "message luke to luke", t0), offline("luke"));
    assert_eq!(h.ask(H, "message yoda to yoda", t0), offline("yoda"));
    assert_eq!(h.login_with_mail(Y, "yoda", "wise", t0), "hans: to yoda\n");
    assert_eq!(
        h.login_with_mail(L, "luke", "lightsaber", t0),
        "hans: to luke\n"
    );
}
