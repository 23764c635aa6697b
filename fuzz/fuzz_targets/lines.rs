//! The line splitter fed one stream in arbitrary reads: the first byte picks
//! the line limit, the second seeds where the reads split, the rest is the
//! stream. The items must be the same as when the whole stream arrives in
//! one read, every line must be within the limit, and the bytes held
//! between reads must never exceed the limit plus one `\r`.

#![no_main]

use confab::net::lines::{LineItem, LineSplitter};
use confab::protocol::LineError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| check(data));

/// Every item of `stream` read in pieces of the given lengths (cycled).
fn split(stream: &[u8], pieces: &[usize], max_line: usize) -> Vec<Result<Vec<u8>, LineError>> {
    let mut splitter = LineSplitter::default();
    let mut join = Vec::new();
    let mut items = Vec::new();
    let mut start = 0;
    let mut piece = pieces.iter().cycle();
    while start < stream.len() {
        let len = piece.next().copied().unwrap_or(stream.len()).max(1);
        let chunk = &stream[start..(start + len).min(stream.len())];
        start += chunk.len();
        let mut pos = 0;
        while let Some(item) = splitter.next_line(chunk, &mut pos, &mut join, max_line) {
            items.push(owned(item));
        }
        assert!(splitter.held() <= max_line + 1, "held {}", splitter.held());
    }
    items
}

fn owned(item: LineItem<'_>) -> Result<Vec<u8>, LineError> {
    item.map(<[u8]>::to_vec)
}

fn check(data: &[u8]) {
    let [limit, seed, stream @ ..] = data else {
        return;
    };
    let max_line = usize::from(*limit % 64) + 1;
    let pieces: Vec<usize> = (0..8)
        .map(|i| usize::from(seed.rotate_left(i) % 7) + 1)
        .collect();
    let whole = split(stream, &[stream.len()], max_line);
    let chunked = split(stream, &pieces, max_line);
    assert_eq!(whole, chunked, "items depend on where reads split");
    for item in &whole {
        if let Ok(line) = item {
            let body = line.strip_suffix(b"\r").unwrap_or(line);
            assert!(body.len() <= max_line);
            assert!(!line.contains(&b'\n'));
        }
    }
    let lines = stream.iter().filter(|&&b| b == b'\n').count();
    assert!(whole.len() <= lines + 1, "more items than lines");
}
