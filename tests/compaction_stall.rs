//! Compaction must not stop the poll loop: a bystander's round trips stay
//! short while about 115 MiB of stored mail is compacted. Alone in its own
//! test binary, so that no other test competes for the two cores while it
//! measures.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use common::{ProcessOptions, ServerProcess};

/// The slowest a bystander's round trip may be while the state is
/// compacted. Encoding the whole state at once stopped the loop for about
/// 0.25 s for this state in a debug build (and 3 s per GiB in release);
/// encoded a slice per iteration, it stops it for a few milliseconds, and
/// the rest of the margin is for the noise of a shared machine.
const COMPACTION_STALL: Duration = Duration::from_millis(100);

#[test]
fn compacting_a_large_state_never_stops_the_loop_for_long() {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("compaction-stall-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // Large messages, compacted once the journal holds 100 MiB of them.
    let server = ServerProcess::start(ProcessOptions {
        args: [
            "--data-dir",
            &dir.display().to_string(),
            "--max-line",
            "65536",
            "--compact-at",
            "104857600",
            "--fsync",
            "never",
        ]
        .map(String::from)
        .to_vec(),
        ..ProcessOptions::default()
    });
    let mut yoda = server.login("yoda", "wise");
    let mut hans = server.login("hans", "falcon");
    yoda.expect_line("hans logged in");
    let done = Arc::new(AtomicBool::new(false));
    let stop = Arc::clone(&done);
    let bystander = thread::spawn(move || {
        let mut worst = Duration::ZERO;
        let mut trips = 0;
        while !stop.load(Ordering::SeqCst) {
            let sent = Instant::now();
            hans.send("whoelse\n");
            hans.expect_line("yoda");
            worst = worst.max(sent.elapsed());
            trips += 1;
        }
        (worst, trips)
    });
    let text = "c".repeat(60_000);
    let recipients = ["luke", "leia", "vader"];
    for round in 0..2000 / 100 {
        let mut writer = yoda.writer();
        let burst: String = (0..100)
            .map(|i| format!("message {} {text}\n", recipients[(round + i) % 3]))
            .collect();
        let sending = thread::spawn(move || {
            std::io::Write::write_all(&mut writer, burst.as_bytes()).expect("send");
        });
        for _ in 0..100 {
            let reply = yoda.read_line();
            assert!(reply.ends_with("when they log in"), "{reply:?}");
        }
        sending.join().expect("the sending thread");
    }
    common::wait_until("the snapshot of the state", || {
        std::fs::metadata(dir.join("snapshot")).is_ok_and(|m| m.len() > 100 << 20)
    });
    done.store(true, Ordering::SeqCst);
    let (worst, trips) = bystander.join().expect("the bystander");
    eprintln!("bystander: {trips} round trips, the slowest {worst:?}");
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        worst < COMPACTION_STALL,
        "a round trip took {worst:?} while the state was compacted"
    );
}
