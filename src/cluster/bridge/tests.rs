//! The bridge's parts that need no NATS server: snapshot names, the
//! reconnect delays, stream names, and the event channel's waiting. The
//! bridge against a real nats-server is `tests/bridge.rs`.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::outbox;
use super::setup::{check_stream_name, reconnect_delay};
use super::snapshots::{object_name, parse_object_name};
use super::Event;

#[test]
fn snapshot_names_sort_as_their_sequences_and_read_back() {
    let seqs = [0, 1, 9, 10, 99, 12_345, u64::MAX];
    let names: Vec<String> = seqs.iter().map(|&seq| object_name(seq)).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, names);
    for (&seq, name) in seqs.iter().zip(&names) {
        assert_eq!(parse_object_name(name), Some(seq), "{name}");
    }
    for other in [
        "snapshot-1",
        "snapshot-0000000000000000000x",
        "snapshot-+0000000000000000001",
        "other-00000000000000000001",
        "",
    ] {
        assert_eq!(parse_object_name(other), None, "{other:?}");
    }
}

#[test]
fn reconnects_start_at_once_and_pause_at_most_a_quarter_second() {
    assert_eq!(reconnect_delay(0), Duration::ZERO);
    assert_eq!(reconnect_delay(1), Duration::ZERO);
    assert_eq!(reconnect_delay(2), Duration::from_millis(50));
    let mut previous = Duration::ZERO;
    for attempt in 1..1000 {
        let delay = reconnect_delay(attempt);
        assert!(delay >= previous && delay <= Duration::from_millis(250));
        previous = delay;
    }
    assert_eq!(reconnect_delay(usize::MAX), Duration::from_millis(250));
}

#[test]
fn stream_names_are_one_subject_token_and_a_valid_bucket() {
    for good in ["confab", "CONFAB_1", "a-b"] {
        assert!(check_stream_name(good).is_ok(), "{good}");
    }
    for bad in ["", "a.b", "a b", "a*", "a>", "é"] {
        let error = check_stream_name(bad).expect_err(bad);
        assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput);
    }
}

/// A runtime like the bridge thread's, to send from.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

#[test]
fn events_come_in_order_each_with_a_wake() {
    let wakes = Arc::new(AtomicUsize::new(0));
    let counted = wakes.clone();
    let (outbox, inbox) = outbox::channel(
        8,
        Arc::new(move || {
            counted.fetch_add(1, Ordering::SeqCst);
        }),
    );
    assert_eq!(inbox.try_next(), None);
    runtime().block_on(async {
        assert!(outbox.send(Event::Down).await);
        assert!(outbox.problem("x").await);
    });
    assert_eq!(wakes.load(Ordering::SeqCst), 2);
    assert_eq!(inbox.try_next(), Some(Event::Down));
    assert_eq!(inbox.wait(Duration::ZERO), Some(Event::Problem("x".into())));
    assert_eq!(inbox.try_next(), None);
    drop(inbox);
    assert!(!runtime().block_on(outbox.send(Event::Up)));
}

#[test]
fn waiting_ends_with_the_timeout_or_the_next_event() {
    let (outbox, inbox) = outbox::channel(8, Arc::new(|| {}));
    let started = Instant::now();
    assert_eq!(inbox.wait(Duration::from_millis(50)), None);
    let waited = started.elapsed();
    assert!(waited >= Duration::from_millis(50) && waited < Duration::from_secs(2));

    let sender = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        runtime().block_on(outbox.send(Event::Up));
        outbox
    });
    let started = Instant::now();
    assert_eq!(inbox.wait(Duration::from_secs(5)), Some(Event::Up));
    assert!(started.elapsed() < Duration::from_secs(2));
    drop(sender.join().expect("the sender"));
}

#[test]
fn a_full_channel_holds_the_sender_back_until_the_loop_reads() {
    let (outbox, inbox) = outbox::channel(2, Arc::new(|| {}));
    let sender = thread::spawn(move || {
        runtime().block_on(async {
            for seq in 1..=5 {
                outbox.send(Event::SnapshotSaved { seq }).await;
            }
        })
    });
    let mut seen = Vec::new();
    while seen.len() < 5 {
        match inbox.wait(Duration::from_secs(5)) {
            Some(Event::SnapshotSaved { seq }) => seen.push(seq),
            other => panic!("expected an event, got {other:?}"),
        }
    }
    assert_eq!(seen, [1, 2, 3, 4, 5]);
    sender.join().expect("the sender");
}
