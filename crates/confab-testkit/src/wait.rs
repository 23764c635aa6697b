//! Bounded waiting: how long a test waits for anything, and the helpers
//! that keep every wait within it.

use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// Longest any single expectation waits for the server.
pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// Polls `condition` every millisecond until it holds; panics naming `what`
/// if it does not within [`IO_TIMEOUT`].
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + IO_TIMEOUT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "waited {IO_TIMEOUT:?} for {what}"
        );
        thread::sleep(Duration::from_millis(1));
    }
}

/// Sets the flag if dropped during a panic, so that the other threads of a
/// test stop waiting for the one that failed.
pub struct FailOnPanic<'a>(pub &'a AtomicBool);

impl Drop for FailOnPanic<'_> {
    fn drop(&mut self) {
        if thread::panicking() {
            self.0.store(true, Ordering::SeqCst);
        }
    }
}
