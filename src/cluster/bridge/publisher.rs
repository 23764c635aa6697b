//! Publishing the loop's batches to the log, one at a time in call order,
//! each republished (the same bytes, the same message id) until JetStream
//! acknowledges it: its duplicate window makes a batch stored twice stored
//! once, with the original's sequence in the answer.

use std::time::Duration;

use async_nats::jetstream::message::PublishMessage;
use async_nats::jetstream::publish::PublishAck;
use bytes::Bytes;
use tokio::sync::{mpsc, watch};
use tokio::time::{sleep, Instant};

use super::outbox::Outbox;
use super::setup::Nats;
use super::Event;

/// The shortest time between two attempts at one batch, so that an error
/// that comes at once (no stream, a refused message) is not retried in a
/// tight loop.
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// One batch from [`Bridge::publish`](super::Bridge::publish).
pub(super) struct Batch {
    /// The loop's number for it, given back in [`Event::Stored`].
    pub number: u64,
    /// Its `Nats-Msg-Id`.
    pub msg_id: String,
    /// Its bytes, shared by every attempt.
    pub payload: Bytes,
}

/// Stores the batches of `batches` in order, reporting each as
/// [`Event::Stored`]; while NATS is down (`up` false) it waits for it to
/// come back. Ends when the bridge is dropped.
pub(super) async fn run(
    nats: Nats,
    mut batches: mpsc::UnboundedReceiver<Batch>,
    mut up: watch::Receiver<bool>,
    outbox: Outbox,
) {
    while let Some(batch) = batches.recv().await {
        let Some(seq) = store(&nats, &batch, &mut up, &outbox).await else {
            return;
        };
        let stored = Event::Stored {
            number: batch.number,
            seq,
        };
        if !outbox.send(stored).await {
            return;
        }
    }
}

/// Publishes `batch` until it is acknowledged; its sequence in the stream,
/// or `None` once the bridge is going away. Each new reason for a failed
/// attempt is told once as a problem.
async fn store(
    nats: &Nats,
    batch: &Batch,
    up: &mut watch::Receiver<bool>,
    outbox: &Outbox,
) -> Option<u64> {
    let mut told = None;
    loop {
        if up.wait_for(|up| *up).await.is_err() {
            return None;
        }
        let started = Instant::now();
        match publish_once(nats, batch).await {
            Ok(ack) => return Some(ack.sequence),
            Err(error) => {
                let text = format!(
                    "batch {} (message id {}) not stored yet, retrying: {error}",
                    batch.number, batch.msg_id
                );
                if told.as_ref() != Some(&text) {
                    if !outbox.problem(text.clone()).await {
                        return None;
                    }
                    told = Some(text);
                }
                let next = started + RETRY_DELAY;
                if Instant::now() < next {
                    sleep(next - Instant::now()).await;
                }
            }
        }
    }
}

/// One publish and the wait for its acknowledgement, each bounded by the
/// context's timeout.
async fn publish_once(
    nats: &Nats,
    batch: &Batch,
) -> Result<PublishAck, async_nats::jetstream::context::PublishError> {
    let message = PublishMessage::build()
        .payload(batch.payload.clone())
        .message_id(&batch.msg_id);
    nats.js
        .send_publish(nats.subject.clone(), message)
        .await?
        .await
}
