//! Connecting to NATS at start and making sure the log's stream and the
//! snapshot store exist, every step retried until one deadline (a node may
//! start a moment before its NATS server, or while JetStream elects a
//! leader).

use std::cell::Cell;
use std::fmt::Display;
use std::future::Future;
use std::io;
use std::time::Duration;

use async_nats::jetstream::context::{ContextBuilder, CreateStreamError, CreateStreamErrorKind};
use async_nats::jetstream::object_store::{self, ObjectStore};
use async_nats::jetstream::stream::{self, DiscardPolicy, RetentionPolicy, StorageType, Stream};
use async_nats::jetstream::Context;
use async_nats::{ConnectErrorKind, ConnectOptions};
use tokio::sync::mpsc;
use tokio::time::{sleep, timeout_at, Instant};

use super::LogConfig;

/// How long JetStream gets to acknowledge a publish (and to answer any
/// other request) before the bridge tries again.
pub(super) const ACK_TIMEOUT: Duration = Duration::from_secs(2);

/// JetStream's duplicate window on the log: a batch republished with the
/// same message id within it is not stored again.
pub(super) const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

/// The longest pause between two attempts to reconnect, so that a short
/// outage is over soon after NATS is back.
const MAX_RECONNECT_DELAY: Duration = Duration::from_millis(250);

/// How long one attempt to open a TCP connection and read NATS's greeting
/// may take, at start and on every reconnect.
const CONNECT_ATTEMPT: Duration = Duration::from_secs(2);

/// How often the client pings the server, so that a connection that died
/// without closing is noticed within a few of these.
const PING_INTERVAL: Duration = Duration::from_secs(5);

/// The pause between two attempts of a start-up step.
const RETRY_DELAY: Duration = Duration::from_millis(250);

/// The name the connection shows in NATS's monitoring.
const CONNECTION_NAME: &str = "confab";

/// What the bridge thread holds of NATS once it is set up.
#[derive(Clone)]
pub(super) struct Nats {
    /// JetStream, every request bounded by [`ACK_TIMEOUT`].
    pub js: Context,
    /// The log's stream.
    pub log: Stream,
    /// The subject the log's entries are published to.
    pub subject: String,
    /// The snapshot store.
    pub snapshots: ObjectStore,
    /// The stream under the snapshot store, whose markers of deleted
    /// snapshots are purged.
    pub snapshot_stream: Stream,
    /// The snapshot store's name.
    pub bucket: String,
}

/// Why a start-up step failed: worth another attempt, or not.
enum Failure {
    Retry(String),
    Fatal(String),
}

/// Refuses a stream name that would not also make a valid subject token and
/// object store name: letters, digits, `-` and `_` only.
pub(super) fn check_stream_name(name: &str) -> io::Result<()> {
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if valid {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("stream name {name:?}: only letters, digits, '-' and '_' are allowed"),
        ))
    }
}

/// The pause before reconnect attempt `attempt` (counted from 1): none
/// before the first, then growing to [`MAX_RECONNECT_DELAY`].
pub(super) fn reconnect_delay(attempt: usize) -> Duration {
    let millis = 50u64.saturating_mul(attempt.saturating_sub(1) as u64);
    Duration::from_millis(millis).min(MAX_RECONNECT_DELAY)
}

/// Connects (the client then reconnects by itself, forever, telling
/// `connection` of every change), then finds or creates the stream (where
/// a server without JetStream shows, as nothing answers) and the snapshot
/// store, all within `timeout`.
pub(super) async fn open(
    config: &LogConfig,
    timeout: Duration,
    connection: mpsc::UnboundedSender<async_nats::Event>,
) -> io::Result<Nats> {
    let deadline = Instant::now() + timeout;
    let url = config.url.as_str();
    let client = retry_until(deadline, || {
        let connection = connection.clone();
        let options = ConnectOptions::new()
            .name(CONNECTION_NAME)
            .max_reconnects(None)
            .reconnect_delay_callback(reconnect_delay)
            .connection_timeout(CONNECT_ATTEMPT)
            .ping_interval(PING_INTERVAL)
            .event_callback(move |event| {
                let _ = connection.send(event);
                std::future::ready(())
            });
        async move {
            options.connect(url).await.map_err(|e| match e.kind() {
                ConnectErrorKind::ServerParse
                | ConnectErrorKind::Authentication
                | ConnectErrorKind::AuthorizationViolation
                | ConnectErrorKind::Tls => Failure::Fatal(e.to_string()),
                _ => Failure::Retry(e.to_string()),
            })
        }
    })
    .await
    .map_err(|e| failed(io::ErrorKind::NotConnected, &e, "cannot reach NATS at", url))?;

    let js = ContextBuilder::new().timeout(ACK_TIMEOUT).build(client);
    let subject = format!("{}.log", config.stream);
    let log_config = stream::Config {
        name: config.stream.clone(),
        subjects: vec![subject.clone()],
        storage: StorageType::File,
        num_replicas: config.replicas,
        retention: RetentionPolicy::Limits,
        discard: DiscardPolicy::Old,
        max_messages: -1,
        max_bytes: -1,
        max_messages_per_subject: -1,
        max_consumers: -1,
        duplicate_window: DUPLICATE_WINDOW,
        ..Default::default()
    };
    // Whether the last attempt found no JetStream to answer it.
    let unavailable = Cell::new(false);
    let log = retry_until(deadline, || async {
        let error = match js.get_or_create_stream(log_config.clone()).await {
            Ok(stream) => return Ok(stream),
            Err(error) => error,
        };
        unavailable.set(matches!(
            error.kind(),
            CreateStreamErrorKind::JetStreamUnavailable
        ));
        // Another node may have created it meanwhile.
        js.get_stream(&config.stream)
            .await
            .map_err(|_| judge(error))
    })
    .await
    .map_err(|e| {
        if unavailable.get() {
            failed(
                io::ErrorKind::Unsupported,
                &e,
                "no JetStream (nats-server -js) at",
                url,
            )
        } else {
            let what = format!("cannot open the stream {} at", config.stream);
            failed(io::ErrorKind::Other, &e, &what, url)
        }
    })?;
    if !log.cached_info().config.subjects.contains(&subject) {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "the stream {} at {url} exists but does not take {subject}",
                config.stream
            ),
        ));
    }

    let bucket = format!("{}-snapshots", config.stream);
    let store_config = object_store::Config {
        bucket: bucket.clone(),
        storage: StorageType::File,
        num_replicas: config.replicas,
        ..Default::default()
    };
    let what = format!("cannot open the snapshot store {bucket} at");
    let snapshots = retry_until(deadline, || async {
        if let Ok(store) = js.get_object_store(&bucket).await {
            return Ok(store);
        }
        match js.create_object_store(store_config.clone()).await {
            Ok(store) => Ok(store),
            Err(error) => js.get_object_store(&bucket).await.map_err(|_| retry(error)),
        }
    })
    .await
    .map_err(|e| failed(io::ErrorKind::Other, &e, &what, url))?;
    let snapshot_stream = retry_until(deadline, || async {
        js.get_stream(format!("OBJ_{bucket}")).await.map_err(retry)
    })
    .await
    .map_err(|e| failed(io::ErrorKind::Other, &e, &what, url))?;

    Ok(Nats {
        js,
        log,
        subject,
        snapshots,
        snapshot_stream,
        bucket,
    })
}

/// Retries `attempt` until it succeeds, fails for good, or `deadline`
/// passes (each attempt cut off there too); the last error if it never
/// succeeded.
async fn retry_until<T, F, A>(deadline: Instant, mut attempt: A) -> Result<T, String>
where
    A: FnMut() -> F,
    F: Future<Output = Result<T, Failure>>,
{
    let mut last = None;
    loop {
        match timeout_at(deadline, attempt()).await {
            Ok(Ok(value)) => return Ok(value),
            Ok(Err(Failure::Fatal(error))) => return Err(error),
            Ok(Err(Failure::Retry(error))) => last = Some(error),
            Err(_) => {
                return Err(match last {
                    Some(error) => format!("{error}, then no answer in time"),
                    None => String::from("no answer in time"),
                })
            }
        }
        if Instant::now() + RETRY_DELAY >= deadline {
            return Err(last.unwrap_or_default());
        }
        sleep(RETRY_DELAY).await;
    }
}

/// Any error, as one worth retrying.
fn retry(error: impl Display) -> Failure {
    Failure::Retry(error.to_string())
}

/// A JetStream error answered to a creation: a refusal of the request
/// (a 4xx code, such as more replicas than servers) does not change by
/// asking again, anything else may.
fn judge(error: CreateStreamError) -> Failure {
    match error.kind() {
        CreateStreamErrorKind::JetStream(e) if (400..500).contains(&e.code()) => {
            Failure::Fatal(error.to_string())
        }
        _ => Failure::Retry(error.to_string()),
    }
}

/// The start-up error: `what` and `url`, then why.
fn failed(kind: io::ErrorKind, why: &str, what: &str, url: &str) -> io::Error {
    io::Error::new(kind, format!("{what} {url}: {why}"))
}
