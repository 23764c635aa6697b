//! Arbitrary bytes as one received line (without its `\n`): `decode_line`,
//! then `parse` of what it returns, checking properties that hold for every
//! input, not just that nothing panics.

#![no_main]

use confab::protocol::{decode_line, parse, Command, Keyword, LineError, ParseError};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(data));

fn check(data: &[u8]) {
    // One trailing `\r` (of a CRLF) is not part of the line.
    let body = data.strip_suffix(b"\r").unwrap_or(data);
    let text = match decode_line(data) {
        Err(LineError::InvalidEncoding) => {
            assert!(std::str::from_utf8(body).is_err(), "valid UTF-8 rejected");
            return;
        }
        Err(LineError::TooLong) => panic!("decode_line does not know the limit"),
        Ok(None) => {
            assert!(body.iter().all(|&b| b == b' '), "non-blank line ignored");
            return;
        }
        Ok(Some(text)) => text,
    };
    assert!(std::str::from_utf8(body).is_ok());
    assert!(!text.is_empty());
    assert!(!text.starts_with(' ') && !text.ends_with(' '), "{text:?}");
    // The text is a piece of the body, so it never holds the stripped `\r`.
    let start = text.as_ptr() as usize - data.as_ptr() as usize;
    assert!(start + text.len() <= body.len(), "text runs past the body");
    assert_eq!(&body[start..start + text.len()], text.as_bytes());
    // Only spaces were cut off either side.
    assert!(body[..start].iter().all(|&b| b == b' '));
    assert!(body[start + text.len()..].iter().all(|&b| b == b' '));
    // Decoding is idempotent, unless the text now ends in a `\r` of its own
    // (from `...\r\r`), which a second pass would take for a CRLF.
    if !text.ends_with('\r') {
        assert_eq!(decode_line(text.as_bytes()), Ok(Some(text)));
    }

    let keyword = text.split(' ').next().unwrap_or_default();
    match parse(text) {
        Ok(command) => check_command(text, keyword, &command),
        Err(error) => {
            assert!(error.to_string().starts_with("Error. "), "{error}");
            match error {
                ParseError::InvalidCommand => assert!(keyword_of(keyword).is_none(), "{text:?}"),
                ParseError::Usage(k) => assert_eq!(keyword_of(keyword), Some(k), "{text:?}"),
            }
        }
    }
}

fn keyword_of(word: &str) -> Option<Keyword> {
    Some(match word {
        "message" => Keyword::Message,
        "broadcast" => Keyword::Broadcast,
        "whoelse" => Keyword::WhoElse,
        "whoelsesince" => Keyword::WhoElseSince,
        "block" => Keyword::Block,
        "unblock" => Keyword::Unblock,
        "logout" => Keyword::Logout,
        "help" => Keyword::Help,
        "privateport" => Keyword::PrivatePort,
        "startprivate" => Keyword::StartPrivate,
        "private" => Keyword::Private,
        "stopprivate" => Keyword::StopPrivate,
        _ => return None,
    })
}

/// A command's arguments are non-empty pieces of the line with no
/// surrounding spaces, and writing the command back out in canonical form
/// parses to the same command.
fn check_command(text: &str, keyword: &str, command: &Command<'_>) {
    let is_piece = |arg: &str| {
        let start = arg.as_ptr() as usize;
        let base = text.as_ptr() as usize;
        start >= base && start + arg.len() <= base + text.len()
    };
    let is_word = |arg: &str| !arg.is_empty() && !arg.contains(' ') && is_piece(arg);
    let is_text = |arg: &str| {
        !arg.is_empty() && !arg.starts_with(' ') && !arg.ends_with(' ') && is_piece(arg)
    };
    let (expected_keyword, canonical) = match *command {
        Command::Message { to, text } => {
            assert!(is_word(to) && is_text(text), "{command:?}");
            (Keyword::Message, format!("message {to} {text}"))
        }
        Command::Broadcast { text } => {
            assert!(is_text(text), "{command:?}");
            (Keyword::Broadcast, format!("broadcast {text}"))
        }
        Command::WhoElse => (Keyword::WhoElse, "whoelse".to_owned()),
        Command::WhoElseSince { seconds } => {
            let digits = text["whoelsesince".len()..].trim_start_matches(' ');
            assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
            (Keyword::WhoElseSince, format!("whoelsesince {seconds}"))
        }
        Command::Block { user } => {
            assert!(is_word(user), "{command:?}");
            (Keyword::Block, format!("block {user}"))
        }
        Command::Unblock { user } => {
            assert!(is_word(user), "{command:?}");
            (Keyword::Unblock, format!("unblock {user}"))
        }
        Command::Logout => (Keyword::Logout, "logout".to_owned()),
        Command::Help => (Keyword::Help, "help".to_owned()),
        Command::PrivatePort { port, fingerprint } => {
            let rest = text["privateport".len()..].trim_start_matches(' ');
            let digits = rest.split(' ').next().unwrap_or_default();
            assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{text:?}");
            assert_ne!(port, 0, "{text:?}");
            let canonical = match fingerprint {
                Some(print) => format!("privateport {port} {print}"),
                None => format!("privateport {port}"),
            };
            (Keyword::PrivatePort, canonical)
        }
        Command::StartPrivate { user } => {
            assert!(is_word(user), "{command:?}");
            (Keyword::StartPrivate, format!("startprivate {user}"))
        }
        Command::Private { to, text } => {
            assert!(is_word(to) && is_text(text), "{command:?}");
            (Keyword::Private, format!("private {to} {text}"))
        }
        Command::StopPrivate { user } => {
            assert!(is_word(user), "{command:?}");
            (Keyword::StopPrivate, format!("stopprivate {user}"))
        }
    };
    assert_eq!(keyword_of(keyword), Some(expected_keyword), "{text:?}");
    assert_eq!(parse(&canonical).as_ref(), Ok(command), "{text:?}");
}
