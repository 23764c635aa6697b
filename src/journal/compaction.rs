//! Compaction: replacing the snapshot with the live state and starting a
//! fresh journal, on a thread fed a slice at a time by the poll loop
//! ([`Journal::start_compaction`], [`Journal::feed_compaction`]), or all at
//! once on the caller's thread at start ([`Journal::compact`]). See the
//! parent module for why every step is safe to crash after.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, SyncSender};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{info, warn};

use super::files::create_journal;
use super::record::{self, Record};
use super::snapshot::{CompactStep, SnapshotWriter};
use super::Journal;

/// Slices of a snapshot handed to the compaction thread and not yet
/// written; the encoder waits (the loop goes on serving) beyond this.
pub const IN_FLIGHT: usize = 2;

/// One message to the compaction thread.
enum Slice {
    /// Framed records to append.
    Bytes(Vec<u8>),
    /// Everything is encoded: finish the snapshot.
    Done,
}

/// A snapshot being written by the compaction thread.
#[derive(Debug)]
pub(super) struct Compaction {
    /// Where slices go; `None` once `Done` was sent.
    feed: Option<SyncSender<Slice>>,
    in_flight: Arc<AtomicUsize>,
    /// The snapshot's size and when the thread installed it.
    thread: JoinHandle<io::Result<(u64, Instant)>>,
    started: Instant,
    /// Time spent encoding on the poll loop.
    encoding: Duration,
    /// Size of the journal it replaces.
    journal_size: u64,
}

/// Bytes of records a synchronous compaction buffers between writes.
const SYNC_SLICE: usize = 1 << 20;

impl Journal {
    /// Whether the journal has grown past the compaction size (see
    /// [`JournalOptions::compact_at`]), or past the point of retrying a
    /// compaction that failed, and no compaction is in progress.
    pub fn wants_compaction(&mut self) -> bool {
        self.poll_compaction();
        self.compaction.is_none() && self.size >= self.compact_at
    }

    /// Starts a compaction whose snapshot the caller then encodes slice by
    /// slice with [`Journal::feed_compaction`]: commits what is staged,
    /// switches to a fresh journal, and starts the thread that writes the
    /// slices. Only a failed commit is an error (nothing was started); a
    /// compaction that cannot start is logged and tried again later, and
    /// `false` is returned.
    pub fn start_compaction(&mut self) -> io::Result<bool> {
        self.commit()?;
        self.finish_compaction();
        let started = Instant::now();
        let journal_size = self.size;
        let covered = match self.next_journal() {
            Ok(covered) => covered,
            Err(e) => {
                self.compaction_failed(&e);
                return Ok(false);
            }
        };
        // Room for every slice in flight and the end, so that a send never
        // waits for the thread.
        let (feed, slices) = mpsc::sync_channel::<Slice>(IN_FLIGHT + 1);
        let in_flight = Arc::new(AtomicUsize::new(0));
        let dir = self.dir.clone();
        let counter = Arc::clone(&in_flight);
        let wake = self.wake.clone();
        let spawned = std::thread::Builder::new()
            .name("confab-compaction".into())
            .spawn(move || {
                let wake = || {
                    if let Some(wake) = &wake {
                        wake();
                    }
                };
                let result = write_slices(&dir, covered, &slices, &counter, &wake);
                wake();
                result
            });
        match spawned {
            Ok(thread) => {
                self.compaction = Some(Compaction {
                    feed: Some(feed),
                    in_flight,
                    thread,
                    started,
                    encoding: Duration::ZERO,
                    journal_size,
                });
                Ok(true)
            }
            Err(e) => {
                self.compaction_failed(&e);
                Ok(false)
            }
        }
    }

    /// Whether a compaction in progress takes another slice now.
    pub fn compaction_wants_slice(&self) -> bool {
        self.compaction
            .as_ref()
            .is_some_and(|c| c.feed.is_some() && c.in_flight.load(Ordering::Acquire) < IN_FLIGHT)
    }

    /// Hands the compaction thread the next slice of framed records, and
    /// the time it took to encode; `last` ends the snapshot. A thread that
    /// has failed takes nothing more and is reaped by
    /// [`Journal::wants_compaction`].
    pub fn feed_compaction(&mut self, slice: Vec<u8>, encoding: Duration, last: bool) {
        let Some(compaction) = &mut self.compaction else {
            return;
        };
        compaction.encoding += encoding;
        let Some(feed) = &compaction.feed else {
            return;
        };
        compaction.in_flight.fetch_add(1, Ordering::AcqRel);
        let sent =
            feed.send(Slice::Bytes(slice)).is_ok() && (!last || feed.send(Slice::Done).is_ok());
        if !sent || last {
            compaction.feed = None;
        }
    }

    /// Replaces the snapshot with `live` (the whole live state, as
    /// records) on this thread, writing it as it is encoded: commits what
    /// is staged, switches to a fresh journal, writes and installs the
    /// snapshot. For the start of the server, before it serves anyone.
    /// Only a failed commit is an error; a compaction that fails is logged
    /// and tried again once the journal has grown by the compaction size.
    pub fn compact<'a>(&mut self, live: impl IntoIterator<Item = Record<'a>>) -> io::Result<()> {
        self.commit()?;
        if let Err(e) = self.compact_until(live, CompactStep::RemoveOld) {
            self.compaction_failed(&e);
        }
        Ok(())
    }

    /// [`Journal::compact`], stopping after `last` (a crash at that point,
    /// for tests) and returning any failure. Dropping the journal
    /// afterwards and opening the directory again must load the same
    /// state.
    pub fn compact_until<'a>(
        &mut self,
        live: impl IntoIterator<Item = Record<'a>>,
        last: CompactStep,
    ) -> io::Result<()> {
        self.commit()?;
        self.finish_compaction();
        let started = Instant::now();
        let journal_size = self.size;
        let covered = self.next_journal()?;
        if last == CompactStep::NewJournal {
            return Ok(());
        }
        let mut writer = SnapshotWriter::create(&self.dir, covered)?;
        let mut buffer = Vec::with_capacity(SYNC_SLICE);
        for record in live {
            record::encode(&record, &mut buffer);
            if buffer.len() >= SYNC_SLICE {
                writer.write(&buffer)?;
                buffer.clear();
            }
        }
        writer.write(&buffer)?;
        let size = writer.finish(last)?;
        if last == CompactStep::RemoveOld {
            self.compacted(journal_size, size, started.elapsed());
        }
        Ok(())
    }

    /// Waits for a compaction in progress, if any, and takes its outcome;
    /// one whose slices are not all encoded yet is abandoned.
    pub fn finish_compaction(&mut self) {
        let Some(mut compaction) = self.compaction.take() else {
            return;
        };
        compaction.feed = None;
        let result = compaction
            .thread
            .join()
            .unwrap_or_else(|_| Err(io::Error::other("the compaction thread panicked")));
        match result {
            Ok((size, installed)) => {
                let took = installed.saturating_duration_since(compaction.started);
                info!(
                    target: "confab::journal",
                    "compaction took {:?} of the poll loop for encoding, {took:?} in all",
                    compaction.encoding
                );
                self.compacted(compaction.journal_size, size, took);
            }
            Err(e) => self.compaction_failed(&e),
        }
    }

    /// Takes the outcome of a compaction that has ended, without waiting.
    fn poll_compaction(&mut self) {
        if self
            .compaction
            .as_ref()
            .is_some_and(|c| c.thread.is_finished())
        {
            self.finish_compaction();
        }
    }

    /// Starts appending to the next journal; returns the generation of the
    /// one it replaces, which the new snapshot covers.
    fn next_journal(&mut self) -> io::Result<u64> {
        let covered = self.generation;
        self.file = create_journal(&self.dir, covered + 1)?;
        self.generation = covered + 1;
        self.size = 0;
        Ok(covered)
    }

    fn compacted(&mut self, journal_size: u64, snapshot_size: u64, took: Duration) {
        info!(
            target: "confab::journal",
            "compacted {}: a {journal_size}-byte journal into a {snapshot_size}-byte snapshot \
             in {took:?}",
            self.dir.display(),
        );
        self.compact_at = self.options.compact_at.max(snapshot_size);
    }

    fn compaction_failed(&mut self, e: &io::Error) {
        warn!(
            target: "confab::journal",
            "compaction of {} failed, will retry later: {e}",
            self.dir.display()
        );
        self.compact_at = self.size.saturating_add(self.options.compact_at);
    }
}

/// The compaction thread: writes the slices as they come, then installs
/// the snapshot; returns its size and when it was installed. Ends
/// (removing the temporary file) at the first failure, or if the loop
/// stops feeding it before `Done`.
fn write_slices(
    dir: &Path,
    covered: u64,
    slices: &mpsc::Receiver<Slice>,
    in_flight: &AtomicUsize,
    wake: &impl Fn(),
) -> io::Result<(u64, Instant)> {
    let mut writer = SnapshotWriter::create(dir, covered)?;
    loop {
        match slices.recv() {
            Ok(Slice::Bytes(bytes)) => {
                let written = writer.write(&bytes);
                drop(bytes);
                in_flight.fetch_sub(1, Ordering::AcqRel);
                wake();
                written?;
            }
            Ok(Slice::Done) => {
                let size = writer.finish(CompactStep::RemoveOld)?;
                return Ok((size, Instant::now()));
            }
            Err(_) => return Err(io::Error::other("abandoned before it was complete")),
        }
    }
}
