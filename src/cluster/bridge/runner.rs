//! The bridge thread: its runtime, the set-up, the tasks it starts, and
//! the commands of the loop handed to them.

use std::io;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc as std_mpsc, Arc};
use std::time::Duration;

use async_nats::jetstream::stream::{State, Stream};
use tokio::sync::{mpsc, watch};

use super::outbox::Outbox;
use super::setup::{self, Nats};
use super::{follower, publisher, snapshots, Command, Event, LogConfig};

/// How long the thread's runtime gets to end its blocking work when the
/// bridge is dropped.
const SHUTDOWN_WAIT: Duration = Duration::from_millis(500);

/// The bridge thread: sets up, says how that went on `ready`, then serves
/// `commands` until they close.
pub(super) fn run(
    config: LogConfig,
    timeout: Duration,
    commands: mpsc::UnboundedReceiver<Command>,
    outbox: Outbox,
    up: Arc<AtomicBool>,
    ready: std_mpsc::Sender<io::Result<()>>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = ready.send(Err(error));
            return;
        }
    };
    runtime.block_on(async {
        let (changes, connection) = mpsc::unbounded_channel();
        let nats = match setup::open(&config, timeout, changes).await {
            Ok(nats) => nats,
            Err(error) => {
                let _ = ready.send(Err(error));
                return;
            }
        };
        up.store(true, Ordering::SeqCst);
        let (connected, _) = watch::channel(true);
        tokio::spawn(watch_connection(
            connection,
            up.clone(),
            connected.clone(),
            outbox.clone(),
        ));
        if ready.send(Ok(())).is_ok() {
            serve(nats, commands, connected, outbox).await;
        }
    });
    up.store(false, Ordering::SeqCst);
    runtime.shutdown_timeout(SHUTDOWN_WAIT);
}

/// Hands the loop's commands to the tasks that carry them out.
async fn serve(
    nats: Nats,
    mut commands: mpsc::UnboundedReceiver<Command>,
    connected: watch::Sender<bool>,
    outbox: Outbox,
) {
    let (batches, received) = mpsc::unbounded_channel();
    tokio::spawn(publisher::run(
        nats.clone(),
        received,
        connected.subscribe(),
        outbox.clone(),
    ));
    let (snapshots, received) = mpsc::unbounded_channel();
    tokio::spawn(snapshots::run(
        nats.clone(),
        received,
        connected.subscribe(),
        outbox.clone(),
    ));
    let mut following = false;
    while let Some(command) = commands.recv().await {
        match command {
            Command::Publish(batch) => {
                let _ = batches.send(batch);
            }
            Command::Snapshot(snapshot) => {
                let _ = snapshots.send(snapshot);
            }
            Command::Follow(seq) if following => {
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    let text = format!("follow_from({seq}) ignored: the log is already followed");
                    outbox.problem(text).await
                });
            }
            Command::Follow(seq) => {
                following = true;
                let up = connected.subscribe();
                tokio::spawn(follower::run(nats.clone(), seq, up, outbox.clone()));
            }
            Command::Bounds(timeout, reply) => {
                let bounds = |state: &State| (state.first_sequence, state.last_sequence);
                let what = "the stream's bounds";
                tokio::spawn(answer_state(nats.log.clone(), timeout, what, reply, bounds));
            }
            Command::Info(timeout, reply) => {
                let size = |state: &State| (state.messages, state.bytes);
                let what = "the stream's info";
                tokio::spawn(answer_state(nats.log.clone(), timeout, what, reply, size));
            }
            Command::LatestSnapshot(timeout, reply) => {
                let nats = nats.clone();
                let outbox = outbox.clone();
                tokio::spawn(async move {
                    let latest = tokio::time::timeout(timeout, snapshots::latest(&nats, &outbox))
                        .await
                        .unwrap_or_else(|_| Err(timed_out("the latest snapshot", timeout)));
                    let _ = reply.send(latest);
                });
            }
        }
    }
}

/// Reads the state of the stream `log` within `timeout` and sends `reply`
/// what `pick` takes of it, or why it could not be read (`what` names it).
async fn answer_state<T>(
    log: Stream,
    timeout: Duration,
    what: &'static str,
    reply: std_mpsc::Sender<io::Result<T>>,
    pick: impl Fn(&State) -> T,
) {
    let info = tokio::time::timeout(timeout, log.get_info()).await;
    let _ = reply.send(match info {
        Ok(Ok(info)) => Ok(pick(&info.state)),
        Ok(Err(error)) => Err(io::Error::other(format!("cannot read {what}: {error}"))),
        Err(_) => Err(timed_out(what, timeout)),
    });
}

/// The error of a start-up helper that NATS did not answer in time.
fn timed_out(what: &str, timeout: Duration) -> io::Error {
    io::Error::new(
        io::ErrorKind::TimedOut,
        format!("{what}: NATS did not answer within {timeout:?}"),
    )
}

/// Turns the client's connection events into the loop's: [`Event::Down`]
/// and [`Event::Up`] (not for the first connection, which `connect`
/// reported), with `up` and `connected` kept in step, and problems for what
/// the server says is wrong.
async fn watch_connection(
    mut changes: mpsc::UnboundedReceiver<async_nats::Event>,
    up: Arc<AtomicBool>,
    connected: watch::Sender<bool>,
    outbox: Outbox,
) {
    let mut first = true;
    while let Some(change) = changes.recv().await {
        let told = match change {
            async_nats::Event::Connected => {
                up.store(true, Ordering::SeqCst);
                connected.send_replace(true);
                if std::mem::take(&mut first) {
                    true
                } else {
                    outbox.send(Event::Up).await
                }
            }
            async_nats::Event::Disconnected => {
                first = false;
                up.store(false, Ordering::SeqCst);
                connected.send_replace(false);
                outbox.send(Event::Down).await
            }
            async_nats::Event::LameDuckMode => {
                outbox
                    .problem("the NATS server is shutting down (lame duck mode)")
                    .await
            }
            async_nats::Event::SlowConsumer(subscription) => {
                outbox
                    .problem(format!(
                        "NATS dropped messages of subscription {subscription} (slow consumer)"
                    ))
                    .await
            }
            async_nats::Event::ServerError(error) => {
                outbox.problem(format!("NATS server error: {error}")).await
            }
            async_nats::Event::ClientError(_)
            | async_nats::Event::Draining
            | async_nats::Event::Closed => true,
        };
        if !told {
            return;
        }
    }
}
