//! Shutdown: every session told and closed, without presence.

use super::*;

#[test]
fn shutdown_tells_and_closes_every_session() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    let [at_username, at_password] = [SessionId(10), SessionId(11)];
    h.connect(at_username, t0);
    h.connect(at_password, t0);
    h.send(at_password, "luke", t0);
    h.discard();
    h.shutdown(t0 + secs(1));
    for s in [Y, H, at_username, at_password] {
        assert_eq!(h.take(s), "Server is shutting down\n", "{s:?}");
        assert!(h.closed(s), "{s:?}");
    }
    assert_eq!(h.chat.online_count(), 0);
    assert!(!h.chat.is_online("yoda"));
    // Nothing more happens to those sessions afterwards.
    for s in [Y, H, at_username, at_password] {
        h.disconnect(s, t0 + secs(1));
    }
    h.expire(t0 + secs(1000));
    for s in [Y, H, at_username, at_password] {
        assert_eq!(h.take(s), "", "{s:?}");
    }
}
