//! Private messaging: privateport, the startprivate introductions and
//! their checks, and private and stopprivate reaching the server.

use super::*;

const NEEDS_CLIENT: &str = "Error. Private messaging needs the confab client\n";
/// The tokens [`counted_token`] draws, in order.
const TOKEN_1: &str = "01010101010101010101010101010101";
const TOKEN_2: &str = "02020202020202020202020202020202";
const TOKEN_3: &str = "03030303030303030303030303030303";

thread_local! {
    /// Tokens drawn by [`counted_token`] on this test's thread.
    static TOKENS_DRAWN: Cell<u8> = const { Cell::new(0) };
}

/// A predictable token source: the n-th token is 16 bytes of value n.
fn counted_token() -> Option<[u8; 16]> {
    let n = TOKENS_DRAWN.with(|drawn| {
        drawn.set(drawn.get() + 1);
        drawn.get()
    });
    Some([n; 16])
}

/// A harness whose tokens are [`TOKEN_1`], [`TOKEN_2`], ... in order.
fn counted_tokens() -> Harness {
    TOKENS_DRAWN.with(|drawn| drawn.set(0));
    let mut h = Harness::new();
    h.chat.set_token_source(counted_token);
    h
}

impl Harness {
    /// Logs in a user that has no offline messages and registers its
    /// private port, which gets no reply.
    #[track_caller]
    fn login_private(&mut self, sid: SessionId, user: &str, pass: &str, port: u16, now: Instant) {
        self.login(sid, user, pass, now);
        assert_eq!(self.ask(sid, &format!("privateport {port}"), now), "");
    }
}

#[test]
fn privateport_is_silent_and_the_last_one_counts() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(h.ask(H, "privateport 5000", t0), "");
    assert_eq!(h.ask(H, "privateport 6000", t0), "");
    // A malformed one changes nothing.
    assert_eq!(
        h.ask(H, "privateport 0", t0),
        "Error. Usage: privateport <port>\n"
    );
    assert_eq!(h.take(Y), "");
    assert_eq!(h.ask(Y, "privateport 65535", t0), "");
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        "!private connect hans 127.0.0.1:6000 01010101010101010101010101010101\n"
    );
    assert_eq!(
        h.take(H),
        "!private accept yoda 01010101010101010101010101010101\n"
    );
}

#[test]
fn a_session_without_private_is_refused_privateport_and_never_introduced() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.connect(Y, t0);
    h.chat.without_private(Y);
    h.discard();
    h.send(Y, "yoda", t0);
    h.send(Y, "wise", t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    assert_eq!(h.ask(Y, "privateport 5000", t0), NEEDS_CLIENT);
    assert_eq!(h.ask(Y, "startprivate hans", t0), NEEDS_CLIENT);
    // Nobody can start a private session with it either.
    assert_eq!(
        h.ask(H, "startprivate yoda", t0),
        "Error. yoda cannot accept private messaging\n"
    );
    assert_eq!(h.take(Y), "");
    // Malformed, it is a usage error like for anyone.
    assert_eq!(
        h.ask(Y, "privateport 0", t0),
        "Error. Usage: privateport <port>\n"
    );
}

#[test]
fn startprivate_introduces_the_target_first_then_the_starter() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login_private(Y, "yoda", "wise", 5000, t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.login(V, "vader", "sithlord", t0);
    h.discard();
    h.chat.line(Y, "startprivate hans", t0);
    assert_eq!(
        h.take_effects(),
        [
            (
                H,
                Some("!private accept yoda 01010101010101010101010101010101\n".to_owned())
            ),
            (
                Y,
                Some(
                    "!private connect hans 127.0.0.1:6000 01010101010101010101010101010101\n"
                        .to_owned()
                )
            ),
        ]
    );
    h.discard();
    // Every introduction draws a new token, whoever starts it.
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        format!("!private connect hans 127.0.0.1:6000 {TOKEN_2}\n")
    );
    assert_eq!(h.take(H), format!("!private accept yoda {TOKEN_2}\n"));
    assert_eq!(
        h.ask(H, "startprivate yoda", t0),
        format!("!private connect yoda 127.0.0.1:5000 {TOKEN_3}\n")
    );
    assert_eq!(h.take(Y), format!("!private accept hans {TOKEN_3}\n"));
    assert_eq!(h.take(V), "");
    assert!(!h.closed(Y) && !h.closed(H));
}

#[test]
fn startprivate_checks_run_in_the_order_of_the_table() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login(Y, "yoda", "wise", t0);
    // Hans blocked yoda and is offline.
    h.login(H, "hans", "falcon", t0);
    assert_eq!(h.ask(H, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(h.ask(H, "logout", t0), GOODBYE);
    // Vader is online without privateport; luke is at the password prompt.
    h.login(V, "vader", "sithlord", t0);
    h.connect(L, t0);
    h.send(L, "luke", t0);
    h.discard();

    // Not registered: refused before anything else is looked at.
    for user in ["bob", "yoda", "hans", "luke", "vader"] {
        let line = format!("startprivate {user}");
        assert_eq!(h.ask(Y, &line, t0), NEEDS_CLIENT, "{user}");
    }
    assert_eq!(
        h.ask(Y, "startprivate", t0),
        "Error. Usage: startprivate <user>\n"
    );
    assert_eq!(h.ask(Y, "privateport 5000", t0), "");
    for (line, reply) in [
        ("startprivate bob", "Error. Invalid user"),
        ("startprivate Hans", "Error. Invalid user"),
        (
            "startprivate yoda",
            "Error. Cannot start private messaging with self",
        ),
        // Blocked and offline: the block is reported.
        (
            "startprivate hans",
            "Error. Cannot start private messaging as hans has blocked you",
        ),
        // Connected but not logged in is offline.
        ("startprivate luke", "Error. luke is offline"),
        (
            "startprivate vader",
            "Error. vader cannot accept private messaging",
        ),
    ] {
        assert_eq!(h.ask(Y, line, t0), format!("{reply}\n"), "{line}");
    }
    // Blocked, online and registered: still the block, and the blocker
    // hears nothing (the address is never sent to yoda).
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        "Error. Cannot start private messaging as hans has blocked you\n"
    );
    // Blocked and not registered: the block comes first too.
    assert_eq!(h.ask(V, "block yoda", t0), "yoda is blocked\n");
    assert_eq!(
        h.ask(Y, "startprivate vader", t0),
        "Error. Cannot start private messaging as vader has blocked you\n"
    );
    assert_eq!(h.take(H), "");
    assert_eq!(h.take(V), "");
    assert_eq!(h.take(L), "");
    // No token was drawn for any refusal.
    assert_eq!(h.ask(H, "unblock yoda", t0), "yoda is unblocked\n");
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        format!("!private connect hans 127.0.0.1:6000 {TOKEN_1}\n")
    );
}

#[test]
fn privateport_belongs_to_the_session() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login_private(Y, "yoda", "wise", 5000, t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    assert_eq!(h.ask(H, "logout", t0), GOODBYE);
    h.login(H, "hans", "falcon", t0);
    h.discard();
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        "Error. hans cannot accept private messaging\n"
    );
    h.disconnect(Y, t0);
    h.login(Y, "yoda", "wise", t0);
    assert_eq!(h.ask(Y, "startprivate hans", t0), NEEDS_CLIENT);
    assert_eq!(h.take(H), "yoda logged out\nyoda logged in\n");
}

#[test]
fn the_address_is_the_targets_connection_ip_with_ipv6_in_brackets() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login_private(Y, "yoda", "wise", 5000, t0);
    for (ip, address) in [
        (
            IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 7)),
            "[2001:db8::7]:6000",
        ),
        (Ipv6Addr::LOCALHOST.into(), "[::1]:6000"),
        (
            // An IPv4 client of a dual-stack listener.
            Ipv4Addr::new(192, 0, 2, 9).to_ipv6_mapped().into(),
            "192.0.2.9:6000",
        ),
        (Ipv4Addr::new(198, 51, 100, 20).into(), "198.51.100.20:6000"),
    ] {
        h.connect_from(H, ip, t0);
        h.send(H, "hans", t0);
        h.send(H, "falcon", t0);
        h.send(H, "privateport 6000", t0);
        assert_eq!(h.take(H), format!("{USERNAME}{PASSWORD}{WELCOME}"));
        h.discard();
        let got = h.ask(Y, "startprivate hans", t0);
        let expected = format!("!private connect hans {address} ");
        assert!(got.starts_with(&expected), "{got:?}");
        h.disconnect(H, t0);
        h.discard();
    }
    // The starter's own address is never sent.
    h.connect_from(SessionId(9), Ipv6Addr::LOCALHOST.into(), t0);
    h.send(SessionId(9), "vader", t0);
    h.send(SessionId(9), "sithlord", t0);
    h.send(SessionId(9), "privateport 7000", t0);
    h.discard();
    assert_eq!(
        h.ask(SessionId(9), "startprivate yoda", t0),
        "!private connect yoda 127.0.0.1:5000 05050505050505050505050505050505\n"
    );
    assert_eq!(
        h.take(Y),
        "!private accept vader 05050505050505050505050505050505\n"
    );
}

#[test]
fn startprivate_without_randomness_sends_nothing_to_the_target() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.chat.set_token_source(|| None);
    h.login_private(Y, "yoda", "wise", 5000, t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        "Error. Private messaging is unavailable\n"
    );
    assert_eq!(h.take(H), "");
    assert!(!h.closed(Y) && !h.closed(H));
}

#[test]
fn the_default_tokens_are_random_hex_and_differ_each_time() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login_private(Y, "yoda", "wise", 5000, t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    let mut tokens = Vec::new();
    for _ in 0..2 {
        let connect = h.ask(Y, "startprivate hans", t0);
        let accept = h.take(H);
        let token = connect
            .strip_prefix("!private connect hans 127.0.0.1:6000 ")
            .and_then(|rest| rest.strip_suffix('\n'));
        let Some(token) = token else {
            panic!("not a connect line: {connect:?}");
        };
        assert_eq!(token.len(), 32, "{token:?}");
        let hex = |b: u8| b.is_ascii_digit() || (b'a'..=b'f').contains(&b);
        assert!(token.bytes().all(hex), "{token:?}");
        assert_eq!(accept, format!("!private accept yoda {token}\n"));
        tokens.push(token.to_owned());
    }
    assert_ne!(tokens[0], tokens[1]);
}

#[test]
fn help_lists_the_private_commands_only_after_privateport() {
    let t0 = Instant::now();
    let mut h = Harness::new();
    h.login(Y, "yoda", "wise", t0);
    let eight = "message <user> <message>\n\
                 broadcast <message>\n\
                 whoelse\n\
                 whoelsesince <seconds>\n\
                 block <user>\n\
                 unblock <user>\n\
                 logout\n\
                 help\n";
    assert_eq!(h.ask(Y, "help", t0), eight);
    assert_eq!(h.ask(Y, "privateport 5000", t0), "");
    assert_eq!(
        h.ask(Y, "help", t0),
        "message <user> <message>\n\
         broadcast <message>\n\
         whoelse\n\
         whoelsesince <seconds>\n\
         block <user>\n\
         unblock <user>\n\
         logout\n\
         help\n\
         startprivate <user>\n\
         private <user> <message>\n\
         stopprivate <user>\n"
    );
    assert_eq!(h.ask(Y, "help me", t0), "Error. Usage: help\n");
}

#[test]
fn private_and_stopprivate_reaching_the_server_are_errors() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    h.login(Y, "yoda", "wise", t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    for line in [
        "private hans hi",
        "stopprivate hans",
        "private bob hi there",
    ] {
        assert_eq!(h.ask(Y, line, t0), NEEDS_CLIENT, "{line}");
    }
    assert_eq!(h.ask(Y, "privateport 5000", t0), "");
    for (line, reply) in [
        (
            "private hans hello  there",
            "Error. Private messaging to hans not enabled",
        ),
        (
            "stopprivate hans",
            "Error. Private messaging to hans not enabled",
        ),
        // The user is named as typed, whether or not it exists.
        (
            "private Bob hi",
            "Error. Private messaging to Bob not enabled",
        ),
        (
            "stopprivate yoda",
            "Error. Private messaging to yoda not enabled",
        ),
    ] {
        assert_eq!(h.ask(Y, line, t0), format!("{reply}\n"), "{line}");
    }
    // Even after an introduction: the session is the clients' business.
    h.ask(Y, "startprivate hans", t0);
    assert_eq!(
        h.ask(Y, "private hans hi", t0),
        "Error. Private messaging to hans not enabled\n"
    );
    for (line, reply) in [
        ("private", "Error. Usage: private <user> <message>\n"),
        ("private hans", "Error. Usage: private <user> <message>\n"),
        ("stopprivate", "Error. Usage: stopprivate <user>\n"),
        (
            "stopprivate hans luke",
            "Error. Usage: stopprivate <user>\n",
        ),
    ] {
        assert_eq!(h.ask(Y, line, t0), reply, "{line}");
    }
    assert_eq!(h.take(H), format!("!private accept yoda {TOKEN_1}\n"));
}

#[test]
fn private_messaging_is_not_durable() {
    let t0 = Instant::now();
    let mut h = recording(t0);
    h.chat.set_token_source(counted_token);
    h.login_private(Y, "yoda", "wise", 5000, t0);
    h.login_private(H, "hans", "falcon", 6000, t0);
    h.discard();
    h.send(Y, "startprivate hans", t0);
    h.send(Y, "startprivate vader", t0);
    h.send(Y, "private hans hi", t0);
    h.send(Y, "stopprivate hans", t0);
    assert_eq!(h.take_records(), (vec![], vec![]));
    let snapshot: Vec<Record<'_>> = h.chat.snapshot(wall(t0)).collect();
    assert_eq!(snapshot, []);
}

#[test]
fn registered_certificates_ride_along_and_tls_talks_only_to_tls() {
    let t0 = Instant::now();
    let mut h = counted_tokens();
    let yoda_print = crate::fingerprint::Fingerprint([1; 32]);
    let hans_print = crate::fingerprint::Fingerprint([2; 32]);
    h.login(Y, "yoda", "wise", t0);
    h.login(H, "hans", "falcon", t0);
    h.login_private(V, "vader", "sithlord", 7000, t0);
    h.discard();
    assert_eq!(h.ask(Y, &format!("privateport 5000 {yoda_print}"), t0), "");
    assert_eq!(h.ask(H, &format!("privateport 6000 {hans_print}"), t0), "");
    assert_eq!(
        h.ask(Y, "startprivate hans", t0),
        format!("!private connect hans 127.0.0.1:6000 {TOKEN_1} {hans_print}\n")
    );
    assert_eq!(
        h.take(H),
        format!("!private accept yoda {TOKEN_1} {yoda_print}\n")
    );
    // A client on a TLS link and one on a plaintext link: neither way.
    assert_eq!(
        h.ask(Y, "startprivate vader", t0),
        "Error. vader cannot accept private messaging\n"
    );
    assert_eq!(
        h.ask(V, "startprivate yoda", t0),
        "Error. yoda cannot accept private messaging\n"
    );
    assert_eq!(h.take(H), "");
}
