//! The chat state machine fed arbitrary command sequences from several
//! sessions, with arbitrary clock steps: the input bytes choose the
//! operations, and the checker shared with `tests/chat_random.rs` verifies
//! the invariants after every step (see `confab_testkit::chat_model`, in
//! `crates/confab-testkit/src/chat_model.rs`).

#![no_main]

use libfuzzer_sys::fuzz_target;

use confab_testkit::chat_model::{Harness, Source};

/// The fuzzer's input, read front to back; the run ends where it does.
struct Bytes<'a>(&'a [u8]);

impl Source for Bytes<'_> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.0.split_first()?;
        self.0 = rest;
        Some(first)
    }
}

fuzz_target!(|data: &[u8]| {
    let mut harness = Harness::new();
    harness.run(&mut Bytes(data), usize::MAX);
    // Every run ends in a shutdown, so at least one step was checked.
    assert!(harness.stats().steps >= 1);
});
