//! Following the log: an ordered consumer from a stream sequence on, its
//! entries handed to the loop strictly in stream order, each once. The
//! consumer is made again from the next sequence expected whenever it
//! fails and whenever the connection comes back (a restarted server has
//! forgotten it), and what it delivers is checked against that sequence.

use std::time::Duration;

use async_nats::jetstream::consumer::pull::{Ordered, OrderedConfig};
use async_nats::jetstream::consumer::DeliverPolicy;
use futures_util::StreamExt;
use tokio::sync::watch;
use tokio::time::sleep;

use super::outbox::Outbox;
use super::setup::Nats;
use super::Event;

/// The pause before making the consumer again after a failure.
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// The longest a pull for new entries waits on the server; the consumer's
/// heartbeats come at half of it, and two missed ones make it start over.
const PULL_EXPIRES: Duration = Duration::from_secs(10);

/// Delivers [`Event::Entry`] from sequence `next` on, for as long as the
/// bridge lives.
pub(super) async fn run(nats: Nats, mut next: u64, mut up: watch::Receiver<bool>, outbox: Outbox) {
    next = next.max(1);
    let mut told = None;
    loop {
        if up.wait_for(|up| *up).await.is_err() {
            return;
        }
        up.borrow_and_update();
        let mut entries = match open(&nats, &mut next, &outbox).await {
            Ok(Some(entries)) => entries,
            Ok(None) => return,
            Err(error) => {
                let text = format!("cannot follow the log from {next}, retrying: {error}");
                if told.as_ref() != Some(&text) {
                    if !outbox.problem(text.clone()).await {
                        return;
                    }
                    told = Some(text);
                }
                sleep(RETRY_DELAY).await;
                continue;
            }
        };
        told = None;
        loop {
            tokio::select! {
                entry = entries.next() => match entry {
                    Some(Ok(message)) => {
                        if !deliver(message, &mut next, &outbox).await {
                            return;
                        }
                    }
                    Some(Err(error)) => {
                        let text = format!("following the log stopped at {next}, resuming: {error}");
                        if !outbox.problem(text).await {
                            return;
                        }
                        break;
                    }
                    None => break,
                },
                changed = up.changed() => {
                    if changed.is_err() {
                        return;
                    }
                    if *up.borrow_and_update() {
                        break;
                    }
                }
            }
        }
    }
}

/// A new ordered consumer from `next` on, or from the stream's first entry
/// if the stream no longer holds `next` (told as a problem, and `next`
/// moved there); `None` once the bridge is going away.
async fn open(nats: &Nats, next: &mut u64, outbox: &Outbox) -> Result<Option<Ordered>, String> {
    let info = nats.log.get_info().await.map_err(|e| e.to_string())?;
    let first = info.state.first_sequence;
    if first > *next {
        let text = format!(
            "the log no longer holds entries {} to {}: following it from {first}",
            *next,
            first - 1
        );
        if !outbox.problem(text).await {
            return Ok(None);
        }
        *next = first;
    }
    let consumer = nats
        .log
        .create_consumer(OrderedConfig {
            deliver_policy: DeliverPolicy::ByStartSequence {
                start_sequence: *next,
            },
            max_expires: PULL_EXPIRES,
            ..Default::default()
        })
        .await
        .map_err(|e| e.to_string())?;
    consumer
        .messages()
        .await
        .map(Some)
        .map_err(|e| e.to_string())
}

/// Hands `message` to the loop if it is the entry expected (`next`): one
/// already delivered is dropped, one past it is delivered after a problem
/// naming what is missing. False once the bridge is going away.
async fn deliver(message: async_nats::jetstream::Message, next: &mut u64, outbox: &Outbox) -> bool {
    let (seq, stored_unix_ms) = match message.info() {
        Ok(info) => (info.stream_sequence, unix_ms(info.published)),
        Err(error) => {
            return outbox
                .problem(format!("an entry of the log without its metadata: {error}"))
                .await
        }
    };
    if seq < *next {
        return true;
    }
    if seq > *next {
        let text = format!("entries {} to {} of the log were skipped", *next, seq - 1);
        if !outbox.problem(text).await {
            return false;
        }
    }
    *next = seq + 1;
    let payload = Vec::from(message.message.payload);
    outbox
        .send(Event::Entry {
            seq,
            stored_unix_ms,
            payload,
        })
        .await
}

/// Milliseconds since the Unix epoch (0 for a time before it).
fn unix_ms(time: async_nats::datetime::DateTime) -> u64 {
    u64::try_from(time.unix_timestamp_nanos() / 1_000_000).unwrap_or(0)
}
