//! Cluster mode's NATS bridge (`confab::cluster::bridge`) against a real
//! `nats-server` with JetStream (`confab_testkit::NatsServer`): batches
//! stored and followed in order, message ids deduplicated, following from
//! a given sequence, an outage (kill and restart) with publishing that never
//! blocks and every batch stored once, a stored batch whose answer was lost
//! (behind a proxy) stored once more as the same entry, snapshots bigger than a NATS message
//! kept two at a time with the log trimmed below them, the stream's size
//! as its info tells it, and start-up errors that come within their
//! timeout.

use std::net::TcpListener;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use confab::cluster::bridge::{Bridge, Event, LogConfig};
use confab_testkit::nats::free_port;
use confab_testkit::{NatsServer, Rng, TcpProxy};
use futures_util::StreamExt;

/// The timeout of every start-up helper.
const START: Duration = Duration::from_secs(5);

/// The longest a test waits for the events it expects.
const WAIT: Duration = Duration::from_secs(10);

/// The log's settings for `server`.
fn config(server: &NatsServer) -> LogConfig {
    LogConfig {
        url: server.url(),
        stream: "confab".into(),
        replicas: 1,
    }
}

/// A bridge to `server`, with the count of its wake calls.
fn connect(server: &NatsServer) -> (Bridge, Arc<AtomicUsize>) {
    connect_to(&server.url(), server)
}

/// A bridge to `url`, which leads to `server`, with the count of its wake
/// calls.
fn connect_to(url: &str, server: &NatsServer) -> (Bridge, Arc<AtomicUsize>) {
    let wakes = Arc::new(AtomicUsize::new(0));
    let counted = wakes.clone();
    let wake = Arc::new(move || {
        counted.fetch_add(1, Ordering::SeqCst);
    });
    let config = LogConfig {
        url: url.to_string(),
        ..config(server)
    };
    match Bridge::connect(&config, START, wake) {
        Ok(bridge) => (bridge, wakes),
        Err(error) => panic!("connect: {error}; nats-server's log:\n{}", server.log()),
    }
}

/// The events (problems apart) until `done` holds for them; panics with
/// what came if it does not within [`WAIT`].
fn events_until(bridge: &Bridge, mut done: impl FnMut(&[Event]) -> bool) -> Vec<Event> {
    let deadline = Instant::now() + WAIT;
    let mut events = Vec::new();
    while !done(&events) {
        let left = deadline.saturating_duration_since(Instant::now());
        match bridge.wait_event(left) {
            Some(Event::Problem(text)) => eprintln!("problem: {text}"),
            Some(event) => events.push(event),
            None => panic!("waited {WAIT:?}; the events so far: {events:?}"),
        }
    }
    events
}

/// The events (problems apart) that come within `quiet`.
fn events_within(bridge: &Bridge, quiet: Duration) -> Vec<Event> {
    let deadline = Instant::now() + quiet;
    let mut events = Vec::new();
    while let Some(event) = bridge.wait_event(deadline.saturating_duration_since(Instant::now())) {
        match event {
            Event::Problem(text) => eprintln!("problem: {text}"),
            event => events.push(event),
        }
    }
    events
}

/// The `(number, seq)` of every [`Event::Stored`] in `events`.
fn stored(events: &[Event]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|event| match *event {
            Event::Stored { number, seq } => Some((number, seq)),
            _ => None,
        })
        .collect()
}

/// The `(seq, stored_unix_ms, payload)` of every [`Event::Entry`].
fn entries(events: &[Event]) -> Vec<(u64, u64, Vec<u8>)> {
    events
        .iter()
        .filter_map(|event| match event {
            Event::Entry {
                seq,
                stored_unix_ms,
                payload,
            } => Some((*seq, *stored_unix_ms, payload.clone())),
            _ => None,
        })
        .collect()
}

/// The bytes of batch `n`.
fn batch(n: u64) -> Vec<u8> {
    format!("batch {n}: {}", "x".repeat(n as usize % 50)).into_bytes()
}

/// Now, in milliseconds since the Unix epoch.
fn now_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("a clock after 1970");
    u64::try_from(since.as_millis()).expect("milliseconds in a u64")
}

/// Publishes batches `numbers` (message id `batch-N`) and waits for them
/// to be stored.
fn publish_all(bridge: &Bridge, numbers: std::ops::RangeInclusive<u64>) -> Vec<(u64, u64)> {
    let count = numbers.clone().count();
    for n in numbers {
        bridge.publish(n, format!("batch-{n}"), batch(n));
    }
    stored(&events_until(bridge, |events| {
        stored(events).len() == count
    }))
}

#[test]
fn batches_are_stored_in_order_and_followed_once_each() {
    let server = NatsServer::start();
    let (bridge, wakes) = connect(&server);
    assert!(bridge.is_up());
    assert_eq!(bridge.stream_bounds(START).expect("bounds"), (0, 0));
    assert_eq!(bridge.stream_info(START).expect("info"), (0, 0));
    bridge.follow_from(1);

    let before = now_ms();
    for n in 1..=50 {
        bridge.publish(n, format!("batch-{n}"), batch(n));
    }
    let events = events_until(&bridge, |events| {
        stored(events).len() == 50 && entries(events).len() == 50
    });
    let after = now_ms();

    let expected: Vec<(u64, u64)> = (1..=50).map(|n| (n, n)).collect();
    assert_eq!(stored(&events), expected);
    let entries = entries(&events);
    let seqs: Vec<u64> = entries.iter().map(|(seq, _, _)| *seq).collect();
    assert_eq!(seqs, (1..=50).collect::<Vec<_>>());
    let mut previous = 0;
    for (seq, stored_unix_ms, payload) in &entries {
        assert_eq!(payload, &batch(*seq), "entry {seq}");
        assert!(
            *stored_unix_ms + 1000 >= before && *stored_unix_ms <= after + 1000,
            "entry {seq} stored at {stored_unix_ms}, the test ran from {before} to {after}"
        );
        assert!(
            *stored_unix_ms >= previous,
            "entry {seq} stored before the one ahead of it"
        );
        previous = *stored_unix_ms;
    }
    assert_eq!(events_within(&bridge, Duration::from_millis(300)), []);
    assert_eq!(bridge.stream_bounds(START).expect("bounds"), (1, 50));
    let (messages, bytes) = bridge.stream_info(START).expect("info");
    assert_eq!(messages, 50);
    // Each entry is stored with its subject and headers besides its payload.
    let payloads: u64 = (1..=50).map(|n| batch(n).len() as u64).sum();
    assert!(
        bytes > payloads + 50 * "confab.log".len() as u64,
        "{bytes} bytes"
    );
    assert!(wakes.load(Ordering::SeqCst) >= 100);
}

#[test]
fn a_republished_message_id_is_stored_once_with_the_original_sequence() {
    let server = NatsServer::start();
    let (bridge, _) = connect(&server);
    bridge.publish(1, "same".into(), b"first".to_vec());
    bridge.publish(2, "same".into(), b"first".to_vec());
    bridge.publish(3, "other".into(), b"second".to_vec());
    let events = events_until(&bridge, |events| stored(events).len() == 3);
    assert_eq!(stored(&events), [(1, 1), (2, 1), (3, 2)]);
    assert_eq!(bridge.stream_bounds(START).expect("bounds"), (1, 2));

    bridge.follow_from(1);
    let events = events_until(&bridge, |events| entries(events).len() == 2);
    let payloads: Vec<Vec<u8>> = entries(&events).into_iter().map(|e| e.2).collect();
    assert_eq!(payloads, [b"first".to_vec(), b"second".to_vec()]);
}

#[test]
fn following_starts_at_the_sequence_given_and_goes_on_with_new_entries() {
    let server = NatsServer::start();
    let (bridge, _) = connect(&server);
    publish_all(&bridge, 1..=10);
    bridge.follow_from(4);
    let events = events_until(&bridge, |events| entries(events).len() == 7);
    let seqs: Vec<u64> = entries(&events).iter().map(|e| e.0).collect();
    assert_eq!(seqs, (4..=10).collect::<Vec<_>>());

    bridge.follow_from(1);
    bridge.publish(11, "batch-11".into(), batch(11));
    let events = events_until(&bridge, |events| {
        stored(events).len() == 1 && entries(events).len() == 1
    });
    assert_eq!(stored(&events), [(11, 11)]);
    assert_eq!(entries(&events)[0].0, 11);
    assert_eq!(entries(&events)[0].2, batch(11));
    assert_eq!(events_within(&bridge, Duration::from_millis(300)), []);
}

#[test]
fn an_outage_is_told_and_every_batch_published_across_it_is_stored_once() {
    let mut server = NatsServer::start();
    let (bridge, _) = connect(&server);
    bridge.follow_from(1);
    bridge.publish(1, "batch-1".into(), batch(1));
    let mut events = events_until(&bridge, |events| entries(events).len() == 1);
    assert_eq!(stored(&events), [(1, 1)]);
    thread::sleep(Duration::from_millis(100));

    // Batch 2 goes out as the server dies: it may be stored and answered
    // first, or stored with its answer lost, or not reach the server.
    bridge.publish(2, "batch-2".into(), batch(2));
    server.kill();
    events.extend(events_until(&bridge, |events| {
        events.contains(&Event::Down)
    }));
    assert!(!bridge.is_up());

    let started = Instant::now();
    bridge.publish(3, "batch-3".into(), batch(3));
    bridge.save_snapshot(1, b"state".to_vec());
    let _ = bridge.try_event();
    assert!(
        started.elapsed() < Duration::from_millis(50),
        "the loop's calls took {:?} while NATS was down",
        started.elapsed()
    );
    thread::sleep(Duration::from_millis(500));

    server.restart();
    let seen = events.len();
    events.extend(events_until(&bridge, |later| {
        let all: Vec<Event> = events.iter().chain(later).cloned().collect();
        stored(&all).len() == 3
            && entries(&all).len() == 3
            && later.contains(&Event::SnapshotSaved { seq: 1 })
    }));
    let down = events.iter().position(|e| *e == Event::Down);
    let up = events.iter().position(|e| *e == Event::Up);
    assert!(down < up && down.is_some(), "{events:?}");
    assert!(!events[seen..].contains(&Event::Down), "{events:?}");
    assert!(bridge.is_up());
    assert_eq!(stored(&events), [(1, 1), (2, 2), (3, 3)]);
    let delivered: Vec<(u64, Vec<u8>)> = entries(&events)
        .into_iter()
        .map(|(seq, _, payload)| (seq, payload))
        .collect();
    assert_eq!(delivered, [(1, batch(1)), (2, batch(2)), (3, batch(3))]);
    assert_eq!(events_within(&bridge, Duration::from_millis(500)), []);
    assert_eq!(bridge.stream_bounds(START).expect("bounds"), (1, 3));
}

/// Runs `work` on a JetStream client of the test's own, connected to
/// `server` directly.
fn with_jetstream<T, F>(
    server: &NatsServer,
    work: impl FnOnce(async_nats::jetstream::Context) -> F,
) -> T
where
    F: std::future::Future<Output = T>,
{
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime");
    runtime.block_on(async {
        let client = async_nats::connect(server.url()).await.expect("connect");
        work(async_nats::jetstream::new(client)).await
    })
}

/// The log's last sequence, asked of `server` directly.
fn last_seq(server: &NatsServer) -> u64 {
    with_jetstream(server, |js| async move {
        let stream = js.get_stream("confab").await.expect("the log's stream");
        stream.cached_info().state.last_sequence
    })
}

#[test]
fn a_batch_stored_whose_answer_was_lost_is_republished_and_stored_once() {
    let server = NatsServer::start();
    let proxy = TcpProxy::start(([127, 0, 0, 1], server.port()).into());
    let through_proxy = NatsServer::url_of(proxy.addr());
    let (bridge, _) = connect_to(&through_proxy, &server);
    bridge.follow_from(1);
    publish_all(&bridge, 1..=1);
    events_until(&bridge, |events| entries(events).len() == 1);

    proxy.hold_replies(true);
    bridge.publish(2, "batch-2".into(), batch(2));
    let deadline = Instant::now() + WAIT;
    while last_seq(&server) < 2 {
        assert!(
            Instant::now() < deadline,
            "batch 2 never reached the server"
        );
        thread::sleep(Duration::from_millis(10));
    }
    proxy.cut();
    proxy.hold_replies(false);

    let events = events_until(&bridge, |events| {
        stored(events).len() == 1 && entries(events).len() == 1
    });
    let down = events.iter().position(|e| *e == Event::Down);
    let up = events.iter().position(|e| *e == Event::Up);
    assert!(down.is_some() && down < up, "{events:?}");
    assert_eq!(stored(&events), [(2, 2)]);
    assert_eq!(entries(&events)[0].0, 2);
    assert_eq!(entries(&events)[0].2, batch(2));
    assert_eq!(events_within(&bridge, Duration::from_millis(300)), []);
    assert_eq!(last_seq(&server), 2);
}

/// A snapshot of 1.5 MiB, more than NATS's largest message (1 MiB).
fn snapshot(seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..3 << 19).map(|_| rng.next_u64() as u8).collect()
}

/// The names of the objects in the snapshot store, read with a client of
/// the test's own.
fn snapshot_objects(server: &NatsServer) -> Vec<String> {
    with_jetstream(server, |js| async move {
        let store = js
            .get_object_store("confab-snapshots")
            .await
            .expect("the snapshot store");
        let mut list = store.list().await.expect("list");
        let mut names = Vec::new();
        while let Some(object) = list.next().await {
            names.push(object.expect("an object").name);
        }
        names.sort();
        names
    })
}

#[test]
fn snapshots_round_trip_the_newest_two_are_kept_and_the_log_is_trimmed_below_them() {
    let server = NatsServer::start();
    let (bridge, _) = connect(&server);
    assert_eq!(bridge.latest_snapshot(START).expect("latest"), None);
    publish_all(&bridge, 1..=10);

    bridge.save_snapshot(3, snapshot(3));
    events_until(&bridge, |events| {
        events == [Event::SnapshotSaved { seq: 3 }]
    });
    let latest = bridge.latest_snapshot(START).expect("latest");
    assert!(
        latest == Some((3, snapshot(3))),
        "snapshot 3 read back changed"
    );
    assert_eq!(bridge.stream_bounds(START).expect("bounds"), (1, 10));

    bridge.save_snapshot(6, snapshot(6));
    events_until(&bridge, |events| {
        events == [Event::SnapshotSaved { seq: 6 }]
    });
    assert_eq!(bridge.stream_bounds(START).expect("bounds"), (4, 10));

    bridge.save_snapshot(9, snapshot(9));
    events_until(&bridge, |events| {
        events == [Event::SnapshotSaved { seq: 9 }]
    });
    assert_eq!(bridge.stream_bounds(START).expect("bounds"), (7, 10));
    assert_eq!(bridge.stream_info(START).expect("info").0, 4);
    assert_eq!(
        snapshot_objects(&server),
        [
            "snapshot-00000000000000000006",
            "snapshot-00000000000000000009"
        ]
    );
    drop(bridge);

    let (bridge, _) = connect(&server);
    let latest = bridge.latest_snapshot(START).expect("latest");
    assert!(
        latest == Some((9, snapshot(9))),
        "snapshot 9 read back changed"
    );
    bridge.follow_from(1);
    let deadline = Instant::now() + WAIT;
    let mut problems = Vec::new();
    let mut seqs = Vec::new();
    while seqs.len() < 4 {
        let left = deadline.saturating_duration_since(Instant::now());
        match bridge.wait_event(left) {
            Some(Event::Problem(text)) => problems.push(text),
            Some(Event::Entry { seq, .. }) => seqs.push(seq),
            other => panic!("expected entries 7 to 10, got {other:?} after {seqs:?}"),
        }
    }
    assert_eq!(seqs, [7, 8, 9, 10]);
    assert!(
        problems.iter().any(|p| p.contains("entries 1 to 6")),
        "{problems:?}"
    );
}

/// Connects with a one-second timeout, which must fail within it (and a
/// little more); the error's text.
fn connect_fails(url: String) -> String {
    let config = LogConfig {
        url,
        stream: "confab".into(),
        replicas: 1,
    };
    let timeout = Duration::from_secs(1);
    let started = Instant::now();
    let result = Bridge::connect(&config, timeout, Arc::new(|| {}));
    let took = started.elapsed();
    let Err(error) = result else {
        panic!("connected to {}", config.url);
    };
    assert!(took < timeout + Duration::from_millis(500), "took {took:?}");
    error.to_string()
}

#[test]
fn dropping_the_bridge_while_nats_is_down_ends_its_thread_at_once() {
    let mut server = NatsServer::start();
    let (bridge, _) = connect(&server);
    bridge.follow_from(1);
    server.kill();
    events_until(&bridge, |events| events.contains(&Event::Down));
    bridge.publish(1, "batch-1".into(), batch(1));
    bridge.save_snapshot(1, b"state".to_vec());
    let started = Instant::now();
    drop(bridge);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "dropping took {:?}",
        started.elapsed()
    );
}

#[test]
fn connecting_to_a_port_nothing_listens_on_fails_within_the_timeout() {
    let url = format!("nats://127.0.0.1:{}", free_port());
    let error = connect_fails(url.clone());
    assert!(
        error.starts_with(&format!("cannot reach NATS at {url}: ")),
        "{error}"
    );
}

#[test]
fn connecting_to_a_peer_that_never_speaks_fails_within_the_timeout() {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("address").port();
    let url = format!("nats://127.0.0.1:{port}");
    let error = connect_fails(url.clone());
    assert!(
        error.starts_with(&format!("cannot reach NATS at {url}: ")),
        "{error}"
    );
    drop(listener);
}

#[test]
fn connecting_to_nats_without_jetstream_fails_within_the_timeout() {
    let server = NatsServer::start_without_jetstream();
    let error = connect_fails(server.url());
    assert!(
        error.starts_with(&format!(
            "no JetStream (nats-server -js) at {}: ",
            server.url()
        )),
        "{error}"
    );
}
