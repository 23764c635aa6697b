//! The side thread that talks to NATS for the poll loop: `async-nats` on a
//! tokio current-thread runtime of its own, bridged to the loop by
//! channels and the loop's wake callback. The loop never waits on NATS:
//! every method it calls while serving returns at once, and only the
//! start-up helpers block, each for at most the time it is given.
//!
//! The thread (`runner`) sets up (`setup`), then runs one task for the
//! connection's changes ([`Event::Up`], [`Event::Down`]), one publishing
//! batches in order (`publisher`), one following the log (`follower`) and
//! one saving snapshots (`snapshots`); their events reach the loop through
//! `outbox`.

mod follower;
mod outbox;
mod publisher;
mod runner;
mod setup;
mod snapshots;
#[cfg(test)]
mod tests;

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use outbox::Inbox;
use publisher::Batch;
use snapshots::Snapshot;

/// How many events wait for the loop at most; past that the bridge stops
/// reading the log until the loop catches up.
const EVENT_CAPACITY: usize = 4096;

/// How much longer than a start-up helper's own timeout its caller waits
/// for the bridge thread's answer, which is bounded by that timeout too.
const ANSWER_GRACE: Duration = Duration::from_secs(1);

/// How long dropping the bridge waits for its thread to end.
const JOIN_WAIT: Duration = Duration::from_secs(2);

/// Where the cluster's log is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// The NATS server, `nats://host:port`.
    pub url: String,
    /// The JetStream stream holding the log (letters, digits, `-`, `_`);
    /// entries go to the subject `<stream>.log` and snapshots to the object
    /// store `<stream>-snapshots`.
    pub stream: String,
    /// How many servers keep each entry and snapshot.
    pub replicas: usize,
}

/// What the bridge tells the loop, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Connected to NATS again after being cut off (not sent for the first
    /// connection).
    Up,
    /// The connection to NATS was lost; the client reconnects by itself,
    /// forever.
    Down,
    /// The batch published with this `number` is stored in the stream at
    /// `seq` (also when JetStream answered that it was a duplicate of an
    /// earlier publish of the same message id: `seq` is then the
    /// original's).
    Stored {
        /// The number given to [`Bridge::publish`].
        number: u64,
        /// Its sequence in the stream.
        seq: u64,
    },
    /// The next entry of the stream, strictly in stream order with no gaps
    /// and no repeats from the sequence given to [`Bridge::follow_from`]
    /// on, with the time the stream stored it (JetStream's timestamp), so
    /// that every node judges alike whether a batch was stored in time.
    Entry {
        /// Its sequence in the stream.
        seq: u64,
        /// When the stream stored it, in milliseconds since the Unix epoch.
        stored_unix_ms: u64,
        /// The bytes published.
        payload: Vec<u8>,
    },
    /// The snapshot handed to [`Bridge::save_snapshot`] for `seq` is
    /// stored.
    SnapshotSaved {
        /// The stream sequence the snapshot covers.
        seq: u64,
    },
    /// Something the node should log at warn level (a failed put, a purge
    /// that failed, a part of the log that is gone, ...); never fatal.
    Problem(String),
}

/// A snapshot as [`Bridge::latest_snapshot`] answers it.
type LatestSnapshot = io::Result<Option<(u64, Vec<u8>)>>;

/// What the loop asks of the bridge thread.
enum Command {
    Publish(Batch),
    Snapshot(Snapshot),
    Follow(u64),
    Bounds(Duration, std_mpsc::Sender<io::Result<(u64, u64)>>),
    Info(Duration, std_mpsc::Sender<io::Result<(u64, u64)>>),
    LatestSnapshot(Duration, std_mpsc::Sender<LatestSnapshot>),
}

/// The NATS side thread, as the loop holds it.
pub struct Bridge {
    commands: Option<mpsc::UnboundedSender<Command>>,
    inbox: Inbox,
    up: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Bridge {
    /// Blocking, at start, at most `timeout`: connects, creates the stream
    /// if missing (subject `<stream>.log`, file storage, `replicas`, no
    /// limits, duplicate window 2 minutes) and the snapshot store if
    /// missing (`<stream>-snapshots`), and starts the thread. Fails with an
    /// error naming the URL if NATS is not reachable in time or has no
    /// JetStream. `wake` is called from the bridge thread after events are
    /// queued.
    pub fn connect(
        config: &LogConfig,
        timeout: Duration,
        wake: Arc<dyn Fn() + Send + Sync>,
    ) -> io::Result<Bridge> {
        setup::check_stream_name(&config.stream)?;
        let (outbox, inbox) = outbox::channel(EVENT_CAPACITY, wake);
        let (commands, received) = mpsc::unbounded_channel();
        let (ready, started) = std_mpsc::channel();
        let up = Arc::new(AtomicBool::new(false));
        let thread = {
            let config = config.clone();
            let up = up.clone();
            thread::Builder::new()
                .name("confab-nats".into())
                .spawn(move || runner::run(config, timeout, received, outbox, up, ready))?
        };
        match started.recv_timeout(timeout + ANSWER_GRACE) {
            Ok(Ok(())) => Ok(Bridge {
                commands: Some(commands),
                inbox,
                up,
                thread: Some(thread),
            }),
            Ok(Err(error)) => {
                let _ = thread.join();
                Err(error)
            }
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!(
                    "cannot reach NATS at {}: no answer within {timeout:?}",
                    config.url
                ),
            )),
        }
    }

    /// Blocking, at start, at most `timeout`: the stream's first and last
    /// sequences, `(first, last)`: `(0, 0)` for a stream that never held an
    /// entry, and `first` is `last + 1` once every entry is purged.
    pub fn stream_bounds(&self, timeout: Duration) -> io::Result<(u64, u64)> {
        let (reply, answer) = std_mpsc::channel();
        self.send(Command::Bounds(timeout, reply));
        wait_answer(answer, timeout, "the stream's bounds")
    }

    /// Blocking, at most `timeout`, read-only: how many entries the stream
    /// holds and how many bytes it takes to store them, `(messages,
    /// bytes)`, as JetStream's stream info tells them (stored bytes: each
    /// entry's payload, headers and subject, and the store's framing), for
    /// measuring what the log costs; entries purged behind a snapshot are
    /// no longer counted.
    pub fn stream_info(&self, timeout: Duration) -> io::Result<(u64, u64)> {
        let (reply, answer) = std_mpsc::channel();
        self.send(Command::Info(timeout, reply));
        wait_answer(answer, timeout, "the stream's info")
    }

    /// Blocking, at start, at most `timeout`: the newest snapshot that can
    /// be read, `(seq, bytes)`, if any (a newer one that cannot be read is
    /// told as [`Event::Problem`]); an error if there are snapshots but
    /// none can be read.
    pub fn latest_snapshot(&self, timeout: Duration) -> io::Result<Option<(u64, Vec<u8>)>> {
        let (reply, answer) = std_mpsc::channel();
        self.send(Command::LatestSnapshot(timeout, reply));
        wait_answer(answer, timeout, "the latest snapshot")
    }

    /// Starts delivering [`Event::Entry`] from stream sequence `seq` on
    /// (called once; a second call is told as a problem). If the stream no
    /// longer holds `seq` (trimmed), it says so as [`Event::Problem`] and
    /// delivers from the first entry it holds.
    pub fn follow_from(&self, seq: u64) {
        self.send(Command::Follow(seq));
    }

    /// Non-blocking: publishes `payload` to `<stream>.log` with the header
    /// `Nats-Msg-Id: msg_id`, in the order of calls, and reports
    /// [`Event::Stored`]. Until JetStream acknowledges it (each attempt
    /// waits 2 s), it republishes the same bytes with the same id whenever
    /// NATS is reachable; later batches wait their turn.
    pub fn publish(&self, number: u64, msg_id: String, payload: Vec<u8>) {
        self.send(Command::Publish(Batch {
            number,
            msg_id,
            payload: payload.into(),
        }));
    }

    /// Non-blocking: stores a snapshot of the state through stream sequence
    /// `seq`, keeps the newest 2 snapshots (deleting older ones), then
    /// purges the log's entries through the older kept snapshot's sequence
    /// (none while only one is kept), and reports [`Event::SnapshotSaved`].
    /// A snapshot that cannot be stored is told as [`Event::Problem`]
    /// instead, and not retried.
    pub fn save_snapshot(&self, seq: u64, bytes: Vec<u8>) {
        self.send(Command::Snapshot(Snapshot { seq, bytes }));
    }

    /// Non-blocking: the next event, if any.
    pub fn try_event(&self) -> Option<Event> {
        self.inbox.try_next()
    }

    /// Blocking for at most `timeout`: the next event (used at start, while
    /// catching up).
    pub fn wait_event(&self, timeout: Duration) -> Option<Event> {
        self.inbox.wait(timeout)
    }

    /// Whether the NATS connection is up right now (cheap, non-blocking).
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }

    /// Hands `command` to the bridge thread; nothing happens if the thread
    /// has ended (then [`Bridge::is_up`] is false).
    fn send(&self, command: Command) {
        if let Some(commands) = &self.commands {
            let _ = commands.send(command);
        }
    }
}

impl Drop for Bridge {
    /// Closes the commands, which ends the thread, and waits for it at most
    /// [`JOIN_WAIT`]; a thread still running then is left to end alone.
    fn drop(&mut self) {
        self.commands = None;
        let Some(thread) = self.thread.take() else {
            return;
        };
        let deadline = Instant::now() + JOIN_WAIT;
        while !thread.is_finished() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(2));
        }
        if thread.is_finished() {
            let _ = thread.join();
        }
    }
}

/// Waits for the bridge thread's answer to a start-up helper.
fn wait_answer<T>(
    answer: std_mpsc::Receiver<io::Result<T>>,
    timeout: Duration,
    what: &str,
) -> io::Result<T> {
    match answer.recv_timeout(timeout + ANSWER_GRACE) {
        Ok(result) => result,
        Err(std_mpsc::RecvTimeoutError::Timeout) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!("{what}: NATS did not answer within {timeout:?}"),
        )),
        Err(std_mpsc::RecvTimeoutError::Disconnected) => Err(io::Error::other(format!(
            "{what}: the NATS bridge thread has stopped"
        ))),
    }
}
