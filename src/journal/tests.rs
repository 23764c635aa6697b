//! The journal on a real directory: commits, damaged tails, and crashes at
//! every step of a compaction.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};

use std::fs;

use super::record::encode;
use super::*;

/// A fresh directory under the system's temporary directory, removed on
/// drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "confab-journal-{name}-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        let _ = fs::remove_dir_all(&path);
        TempDir(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// A small state the records describe: one mailbox and one block list.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct State {
    mailbox: Vec<String>,
    blocked: BTreeSet<String>,
}

impl State {
    fn apply(&mut self, record: &Record<'_>) {
        match *record {
            Record::MailboxAppend { text, .. } => self.mailbox.push(text.to_owned()),
            Record::MailboxDelivered { .. } | Record::MailboxTaken { .. } => self.mailbox.clear(),
            Record::Block { target, .. } => {
                self.blocked.insert(target.to_owned());
            }
            Record::Unblock { target, .. } => {
                self.blocked.remove(target);
            }
            Record::Ban { .. } | Record::BanCleared { .. } => {}
        }
    }

    fn records(&self) -> Vec<Record<'_>> {
        let appends = self.mailbox.iter().map(|text| Record::MailboxAppend {
            recipient: "luke",
            seq: None,
            stored_unix_ms: None,
            sender: "yoda",
            text,
        });
        let blocks = self.blocked.iter().map(|target| Record::Block {
            user: "luke",
            target,
        });
        appends.chain(blocks).collect()
    }
}

const OPTIONS: JournalOptions = JournalOptions {
    fsync: Fsync::Always,
    compact_at: 1 << 20,
};

fn open(dir: &TempDir) -> (Journal, State, Loaded) {
    let mut state = State::default();
    let (journal, loaded) = Journal::open(&dir.0, OPTIONS, OnDamage::Stop, |r| state.apply(r))
        .expect("open the journal");
    (journal, state, loaded)
}

/// Stages and commits `record`, applying it to `state` too.
fn write(journal: &mut Journal, state: &mut State, record: Record<'_>) {
    let mut framed = Vec::new();
    encode(&record, &mut framed);
    journal.stage(&framed);
    journal.commit().expect("commit");
    state.apply(&record);
}

fn append(journal: &mut Journal, state: &mut State, text: &str) {
    let record = Record::MailboxAppend {
        recipient: "luke",
        seq: None,
        stored_unix_ms: None,
        sender: "yoda",
        text,
    };
    write(journal, state, record);
}

fn current_journal(dir: &TempDir) -> PathBuf {
    journals(&dir.0)
        .expect("list journals")
        .pop()
        .expect("a journal")
        .1
}

#[test]
fn committed_records_are_loaded_in_order() {
    let dir = TempDir::new("order");
    let (mut journal, mut state, _) = open(&dir);
    for i in 0..10 {
        append(&mut journal, &mut state, &format!("m{i}"));
    }
    write(
        &mut journal,
        &mut state,
        Record::Block {
            user: "luke",
            target: "vader",
        },
    );
    assert!(!journal.has_pending());
    drop(journal);
    let (_, loaded_state, loaded) = open(&dir);
    assert_eq!(loaded_state, state);
    assert_eq!(loaded.records, 11);
    assert!(loaded.torn.is_empty());
}

#[test]
fn staged_records_are_not_written_before_the_commit() {
    let dir = TempDir::new("staged");
    let (mut journal, _, _) = open(&dir);
    let mut framed = Vec::new();
    encode(&Record::MailboxDelivered { recipient: "luke" }, &mut framed);
    journal.stage(&framed);
    assert!(journal.has_pending());
    assert_eq!(fs::metadata(current_journal(&dir)).expect("stat").len(), 0);
    journal.commit().expect("commit");
    assert_eq!(journal.size(), framed.len() as u64);
}

#[test]
fn a_second_open_of_the_directory_is_refused() {
    let dir = TempDir::new("lock");
    let (journal, _, _) = open(&dir);
    let error = Journal::open(&dir.0, OPTIONS, OnDamage::Stop, |_| {}).expect_err("second open");
    assert_eq!(error.kind(), io::ErrorKind::WouldBlock);
    drop(journal);
    open(&dir);
}

#[test]
fn a_cut_tail_is_cut_off_and_the_rest_kept() {
    let dir = TempDir::new("cut");
    let (mut journal, mut state, _) = open(&dir);
    for i in 0..5 {
        append(&mut journal, &mut state, &format!("m{i}"));
    }
    let whole = journal.size();
    append(&mut journal, &mut state, "the last one");
    drop(journal);
    let path = current_journal(&dir);
    let file = OpenOptions::new().write(true).open(&path).expect("open");
    file.set_len(journal_len(&path) - 3).expect("truncate");

    let (mut journal, loaded_state, loaded) = open(&dir);
    assert_eq!(loaded_state.mailbox, state.mailbox[..5]);
    assert_eq!(loaded.torn.len(), 1);
    assert!(
        loaded.torn[0].contains(&format!("at offset {whole}")),
        "{:?}",
        loaded.torn
    );
    assert_eq!(journal_len(&path), whole, "the damaged tail is cut off");
    // Appending goes on after the intact records.
    let mut state = loaded_state;
    append(&mut journal, &mut state, "after");
    drop(journal);
    let (_, reloaded, loaded) = open(&dir);
    assert_eq!(reloaded, state);
    assert!(loaded.torn.is_empty());
}

/// Five records, then a flipped byte in the sixth of seven: the state
/// before the damage, the whole state, and the damaged journal.
fn flip_one_record(dir: &TempDir) -> (State, State, PathBuf) {
    let (mut journal, mut state, _) = open(dir);
    for i in 0..5 {
        append(&mut journal, &mut state, &format!("m{i}"));
    }
    let before = state.clone();
    let intact = journal.size();
    append(&mut journal, &mut state, "flipped");
    append(&mut journal, &mut state, "after the flip");
    drop(journal);
    let path = current_journal(dir);
    let mut bytes = fs::read(&path).expect("read");
    bytes[intact as usize + 12] ^= 0x01;
    fs::write(&path, &bytes).expect("write");
    (before, state, path)
}

#[test]
fn a_flipped_byte_before_the_tail_stops_the_open_and_changes_nothing() {
    let dir = TempDir::new("flip");
    let (before, _, path) = flip_one_record(&dir);
    let bytes = fs::read(&path).expect("read");
    let offset = {
        let mut state = State::default();
        let error = Journal::open(&dir.0, OPTIONS, OnDamage::Stop, |r| state.apply(r))
            .expect_err("damage stops the open");
        assert_eq!(error.kind(), io::ErrorKind::InvalidData);
        let text = error.to_string();
        assert!(text.contains("checksum mismatch at offset"), "{text}");
        assert!(text.contains("--recover"), "{text}");
        assert!(text.contains(&path.display().to_string()), "{text}");
        text
    };
    assert!(offset.contains(&format!("offset {}", before_size(&before))));
    assert_eq!(
        fs::read(&path).expect("read"),
        bytes,
        "nothing is rewritten"
    );
}

/// The journal size of `state`'s messages written by `append`.
fn before_size(state: &State) -> u64 {
    let mut framed = Vec::new();
    for record in state.records() {
        encode(&record, &mut framed);
    }
    framed.len() as u64
}

#[test]
fn recovering_keeps_every_intact_record_and_sets_the_damaged_file_aside() {
    let dir = TempDir::new("recover");
    let (_, whole, path) = flip_one_record(&dir);
    let damaged = fs::read(&path).expect("read");
    let mut state = State::default();
    let (mut journal, loaded) =
        Journal::open(&dir.0, OPTIONS, OnDamage::Recover, |r| state.apply(r)).expect("recover");
    let mut expected = whole.clone();
    expected.mailbox.retain(|m| m != "flipped");
    assert_eq!(state, expected);
    assert_eq!(loaded.recovered.len(), 1, "{loaded:?}");
    let aside = &loaded.recovered[0];
    assert_eq!(aside.path, path);
    assert_eq!(aside.dropped.len(), 1);
    assert_eq!(fs::read(&aside.aside).expect("the file set aside"), damaged);
    // The fresh snapshot replaces the damaged journal; its copy stays.
    journal.compact(state.records()).expect("compact");
    drop(journal);
    assert!(aside.aside.exists());
    let (_, reloaded, loaded) = open(&dir);
    assert_eq!(reloaded, expected);
    assert!(loaded.recovered.is_empty());
}

#[test]
fn a_failed_commit_keeps_its_records_and_a_retry_writes_them_once() {
    let dir = TempDir::new("retry");
    let (mut journal, mut state, _) = open(&dir);
    append(&mut journal, &mut state, "before");
    let good = journal.size();
    let real = std::mem::replace(
        &mut journal.file,
        OpenOptions::new()
            .append(true)
            .open("/dev/full")
            .expect("open /dev/full"),
    );
    let mut framed = Vec::new();
    let record = Record::MailboxAppend {
        recipient: "luke",
        seq: None,
        stored_unix_ms: None,
        sender: "yoda",
        text: "while the disk is full",
    };
    encode(&record, &mut framed);
    journal.stage(&framed);
    let error = journal.commit().expect_err("a full disk");
    assert_eq!(error.raw_os_error(), Some(libc::ENOSPC));
    assert!(journal.has_pending());
    assert!(journal.commit().is_err(), "still full");
    // Space returns; the real file also got a torn piece meanwhile.
    journal.file = real;
    journal.file.write_all(&framed[..7]).expect("a torn piece");
    journal.commit().expect("the retry");
    state.apply(&record);
    assert!(!journal.has_pending());
    assert_eq!(journal.size(), good + framed.len() as u64);
    drop(journal);
    let (_, loaded, loaded_info) = open(&dir);
    assert_eq!(loaded, state);
    assert!(loaded_info.torn.is_empty());
}

fn journal_len(path: &Path) -> u64 {
    fs::metadata(path).expect("stat").len()
}

/// Builds some history, compacts it stopping after `step`, and checks
/// that opening the directory again gives the same state, and that the
/// server can go on and compact again from there.
fn crash_during_compaction(step: CompactStep) {
    let dir = TempDir::new("compact");
    let (mut journal, mut state, _) = open(&dir);
    // An earlier complete compaction, so that an old snapshot exists too.
    append(&mut journal, &mut state, "before the first snapshot");
    journal.compact(state.records()).expect("first compaction");
    journal.finish_compaction();
    for i in 0..4 {
        append(&mut journal, &mut state, &format!("m{i}"));
    }
    write(
        &mut journal,
        &mut state,
        Record::Block {
            user: "luke",
            target: "vader",
        },
    );
    journal
        .compact_until(state.records(), step)
        .expect("compaction up to the crash");
    drop(journal);

    let (mut journal, loaded, _) = open(&dir);
    assert_eq!(loaded, state, "after a crash after {step:?}");
    let mut state = loaded;
    append(&mut journal, &mut state, "after the crash");
    journal.compact(state.records()).expect("compaction");
    journal.finish_compaction();
    append(&mut journal, &mut state, "after the compaction");
    drop(journal);
    let (_, reloaded, _) = open(&dir);
    assert_eq!(reloaded, state, "after recovering from {step:?}");
    let names: Vec<String> = fs::read_dir(&dir.0)
        .expect("list")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.starts_with("journal-")).count(),
        1,
        "old journals are removed: {names:?}"
    );
    assert!(!names.iter().any(|n| n == SNAPSHOT_TMP), "{names:?}");
}

#[test]
fn a_crash_at_any_step_of_a_compaction_loses_and_repeats_nothing() {
    for step in CompactStep::ALL {
        crash_during_compaction(step);
    }
}

#[test]
fn a_damaged_snapshot_header_is_refused() {
    let dir = TempDir::new("header");
    let (mut journal, mut state, _) = open(&dir);
    append(&mut journal, &mut state, "m");
    journal.compact(state.records()).expect("compaction");
    journal.finish_compaction();
    drop(journal);
    let path = dir.0.join(SNAPSHOT_FILE);
    let mut bytes = fs::read(&path).expect("read");
    bytes[9] ^= 0xFF;
    fs::write(&path, &bytes).expect("write");
    let error = Journal::open(&dir.0, OPTIONS, OnDamage::Stop, |_| {}).expect_err("damaged header");
    assert_eq!(error.kind(), io::ErrorKind::InvalidData);
    assert!(error.to_string().contains("damaged header"), "{error}");
}

#[test]
fn growth_past_the_limit_asks_for_compaction() {
    let dir = TempDir::new("grow");
    let options = JournalOptions {
        compact_at: 100,
        ..OPTIONS
    };
    let (mut journal, _) = Journal::open(&dir.0, options, OnDamage::Stop, |_| {}).expect("open");
    let mut state = State::default();
    while !journal.wants_compaction() {
        append(&mut journal, &mut state, "0123456789");
    }
    assert!(journal.size() >= 100);
    journal.compact(state.records()).expect("compaction");
    journal.finish_compaction();
    assert!(!journal.wants_compaction());
}

#[test]
fn a_snapshot_larger_than_the_limit_raises_it() {
    let dir = TempDir::new("raise");
    let options = JournalOptions {
        compact_at: 100,
        ..OPTIONS
    };
    let (mut journal, _) = Journal::open(&dir.0, options, OnDamage::Stop, |_| {}).expect("open");
    let mut state = State::default();
    for _ in 0..20 {
        append(&mut journal, &mut state, "0123456789");
    }
    journal.compact(state.records()).expect("compaction");
    journal.finish_compaction();
    let snapshot = fs::metadata(dir.0.join(SNAPSHOT_FILE)).expect("stat").len();
    assert!(snapshot > 200, "{snapshot}");
    // The journal may now grow to the snapshot's size before compacting.
    while journal.size() < snapshot - 50 {
        append(&mut journal, &mut state, "0123456789");
        assert!(!journal.wants_compaction(), "at {} bytes", journal.size());
    }
    while journal.size() < snapshot {
        append(&mut journal, &mut state, "0123456789");
    }
    assert!(journal.wants_compaction());
    // The same holds after a restart.
    drop(journal);
    let (mut journal, _) = Journal::open(&dir.0, options, OnDamage::Stop, |_| {}).expect("reopen");
    assert!(journal.wants_compaction());
}

#[test]
fn a_failed_compaction_before_the_rename_changes_nothing_and_is_retried_later() {
    let dir = TempDir::new("fail");
    let options = JournalOptions {
        compact_at: 100,
        ..OPTIONS
    };
    let (mut journal, _) = Journal::open(&dir.0, options, OnDamage::Stop, |_| {}).expect("open");
    let mut state = State::default();
    while !journal.wants_compaction() {
        append(&mut journal, &mut state, "0123456789");
    }
    // A directory where the temporary snapshot goes: creating it fails.
    fs::create_dir(dir.0.join(SNAPSHOT_TMP)).expect("block the temporary file");
    journal
        .compact(state.records())
        .expect("a failure before the rename is not fatal");
    journal.finish_compaction();
    assert!(
        !journal.wants_compaction(),
        "retried only after more growth"
    );
    fs::remove_dir(dir.0.join(SNAPSHOT_TMP)).expect("unblock");
    append(&mut journal, &mut state, "after");
    drop(journal);
    let (_, loaded, _) = open(&dir);
    assert_eq!(loaded, state);
}

/// The appends read when `dir` is opened: sequence number, time, text.
fn appends_read(dir: &TempDir) -> Vec<(Option<u64>, Option<u64>, String)> {
    let mut read = Vec::new();
    let (journal, _) = Journal::open(&dir.0, OPTIONS, OnDamage::Stop, |record| {
        if let Record::MailboxAppend {
            seq,
            stored_unix_ms,
            text,
            ..
        } = *record
        {
            read.push((seq, stored_unix_ms, text.to_owned()));
        }
    })
    .expect("open the journal");
    drop(journal);
    read
}

#[test]
fn appends_keep_their_time_in_the_journal_and_the_snapshot_and_older_ones_load_without() {
    let dir = TempDir::new("times");
    let appends = [
        (Some(0), Some(1_800_000_000_456), "with its time"),
        (Some(1), None, "written by the previous version"),
        (None, None, "written by the first version"),
    ];
    let record = |&(seq, stored_unix_ms, text): &(Option<u64>, Option<u64>, &'static str)| {
        Record::MailboxAppend {
            recipient: "luke",
            seq,
            stored_unix_ms,
            sender: "yoda",
            text,
        }
    };
    let expected: Vec<(Option<u64>, Option<u64>, String)> = appends
        .iter()
        .map(|&(seq, at, text)| (seq, at, text.to_owned()))
        .collect();
    let (mut journal, mut state, _) = open(&dir);
    for append in &appends {
        write(&mut journal, &mut state, record(append));
    }
    drop(journal);
    assert_eq!(appends_read(&dir), expected, "from the journal");

    let (mut journal, _, _) = open(&dir);
    journal
        .compact(appends.iter().map(record))
        .expect("compaction");
    journal.finish_compaction();
    drop(journal);
    assert_eq!(appends_read(&dir), expected, "from the snapshot");
}
