//! The web port's request judge fed any bytes, as the head read so far:
//! the first byte picks the site (plaintext or TLS, with or without an
//! extra allowed origin), the rest is the request. It must never panic;
//! while the head is incomplete it may only wait, and never past
//! `MAX_HEAD` bytes; an upgrade it grants must carry the accept key of the
//! request's one `Sec-WebSocket-Key`.

#![no_main]

use confab::server::web::http::{judge, Site, Status, Verdict, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    let Some((&pick, request)) = data.split_first() else {
        return;
    };
    let site = Site {
        scheme: if pick & 1 == 0 { "http" } else { "https" },
        origins: if pick & 2 == 0 {
            Vec::new()
        } else {
            vec!["https://chat.example.org".to_owned()]
        },
    };
    let verdict = judge(request, &site);
    assert_eq!(
        verdict,
        judge(request, &site),
        "the same bytes, another verdict"
    );
    match &verdict {
        Verdict::Partial => {
            assert!(
                request.len() <= MAX_HEAD,
                "waited past MAX_HEAD: {}",
                request.len()
            );
            // A head that is still incomplete stays so for every prefix.
            for cut in [0, request.len() / 2] {
                assert!(
                    matches!(
                        judge(&request[..cut], &site),
                        Verdict::Partial | Verdict::Refuse(Status::BadRequest)
                    ),
                    "a prefix of a partial head was judged complete"
                );
            }
        }
        Verdict::Upgrade { accept } => {
            let text = String::from_utf8_lossy(request);
            let keys: Vec<&str> = text
                .lines()
                .filter_map(|line| line.split_once(':'))
                .filter(|(name, _)| name.trim().eq_ignore_ascii_case("sec-websocket-key"))
                .map(|(_, value)| value.trim())
                .collect();
            assert_eq!(keys.len(), 1, "an upgrade without exactly one key");
            assert_eq!(
                *accept,
                tungstenite::handshake::derive_accept_key(keys[0].as_bytes()),
                "the accept key is not the key's"
            );
        }
        Verdict::Page { .. } | Verdict::Refuse(_) => {}
    }
}
