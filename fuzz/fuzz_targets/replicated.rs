//! The chat state machine fed arbitrary command sequences, as the `chat`
//! target, in the checker's replicated mode: every step also goes through
//! a cluster of two nodes, batched as the input bytes choose, and each
//! node's effects on its own sessions must be the single server's, the two
//! replicas in the same state (see `confab_testkit::chat_model`, and its
//! `cluster` module).

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
    let mut harness = Harness::replicated();
    harness.run(&mut Bytes(data), usize::MAX);
    // Every run ends in a shutdown, so at least one step was checked.
    assert!(harness.stats().steps >= 1);
});
