//! The bridge's events on their way to the poll loop: a bounded channel
//! whose sending side (tasks on the bridge thread) waits while the loop is
//! behind, so that a slow loop holds back the consumer instead of growing
//! memory, and whose receiving side (the loop) never blocks unless it asks
//! to wait. The loop's wake callback runs after every event queued.

use std::sync::{Arc, Condvar, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::Event;

/// The loop's wake callback (it calls the loop's `mio::Waker::wake`).
pub(super) type Wake = Arc<dyn Fn() + Send + Sync>;

/// A bounded channel of `capacity` events, with `wake` called after each
/// one is queued.
pub(super) fn channel(capacity: usize, wake: Wake) -> (Outbox, Inbox) {
    let (sender, receiver) = mpsc::channel(capacity);
    let posted = Arc::new(Posted::default());
    let outbox = Outbox {
        sender,
        posted: posted.clone(),
        wake,
    };
    let inbox = Inbox {
        receiver: Mutex::new(receiver),
        posted,
    };
    (outbox, inbox)
}

/// How many events were queued, so that [`Inbox::wait`] can sleep until
/// the next one without polling.
#[derive(Default)]
struct Posted {
    count: Mutex<u64>,
    changed: Condvar,
}

/// The sending side, cloned into every task of the bridge thread.
#[derive(Clone)]
pub(super) struct Outbox {
    sender: mpsc::Sender<Event>,
    posted: Arc<Posted>,
    wake: Wake,
}

impl Outbox {
    /// Queues `event`, waiting while the channel is full, then wakes the
    /// loop; false once the loop's side is gone (the bridge is dropped), so
    /// that the task sending it can stop.
    pub(super) async fn send(&self, event: Event) -> bool {
        if self.sender.send(event).await.is_err() {
            return false;
        }
        let mut count = self
            .posted
            .count
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        *count += 1;
        drop(count);
        self.posted.changed.notify_all();
        (self.wake)();
        true
    }

    /// Queues [`Event::Problem`] with `text`; see [`Outbox::send`].
    pub(super) async fn problem(&self, text: impl Into<String>) -> bool {
        self.send(Event::Problem(text.into())).await
    }
}

/// The receiving side, held by the [`Bridge`](super::Bridge) on the loop's
/// thread.
pub(super) struct Inbox {
    receiver: Mutex<mpsc::Receiver<Event>>,
    posted: Arc<Posted>,
}

impl Inbox {
    /// The next event, if one is queued; never blocks (the lock is only
    /// ever held for a `try_recv`).
    pub(super) fn try_next(&self) -> Option<Event> {
        self.receiver
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .try_recv()
            .ok()
    }

    /// The next event, waiting for one at most `timeout`.
    pub(super) fn wait(&self, timeout: Duration) -> Option<Event> {
        let deadline = Instant::now() + timeout;
        loop {
            let seen = *self
                .posted
                .count
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let Some(event) = self.try_next() {
                return Some(event);
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let count = self
                .posted
                .count
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let (count, _) = self
                .posted
                .changed
                .wait_timeout_while(count, left, |count| *count == seen)
                .unwrap_or_else(PoisonError::into_inner);
            drop(count);
        }
    }
}
