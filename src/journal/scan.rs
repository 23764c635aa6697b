//! Reading a journal or snapshot file frame by frame, without holding the
//! file in memory, and judging what is wrong where a frame does not read.
//!
//! Only one kind of damage is what a crash leaves: a *torn tail*, the last
//! append cut short (its frame runs past the end of the file, or the file
//! ends in zeros where the append should be), with no intact frame after
//! it. A torn tail of a journal is cut off with a warning: the append was
//! never acknowledged, because acknowledgements wait for the commit.
//! Anything else — a checksum mismatch, an unreadable record, a frame cut
//! short with intact frames after it (a damaged length) — is damage to
//! acknowledged data. It stops the start, unless recovery was asked for:
//! then the scan skips to the next intact frame and reports what it
//! dropped.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::record::{check_frame, Record, FRAME_HEADER};

/// Frames longer than this are not records: no name or line limit of the
/// server comes near it, so such a length is damage.
pub const MAX_FRAME: usize = 4 << 20;
/// Bytes read from the file at a time.
const CHUNK: usize = 1 << 20;

/// A stretch of a file that did not read as records.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Damage {
    /// Offset of its first byte in the file.
    pub offset: u64,
    /// How many bytes it spans.
    pub len: u64,
    /// What was wrong with the frame at `offset`.
    pub reason: &'static str,
}

/// What a scan of one file found besides its records.
#[derive(Debug, Default)]
pub struct Scan {
    /// Records applied.
    pub records: u64,
    /// A torn tail to cut off (never set for a file that cannot tear).
    pub torn: Option<Damage>,
    /// Damaged stretches skipped (only when recovering).
    pub dropped: Vec<Damage>,
}

/// How to treat a file's damage.
#[derive(Debug, Clone, Copy)]
pub struct ScanMode {
    /// The file is appended to, so its last append may be torn by a crash
    /// (journals); a snapshot is complete before it is renamed into place.
    pub may_tear: bool,
    /// Skip damage and keep every intact record after it, instead of
    /// failing.
    pub recover: bool,
}

/// A read window over a file: positioned reads into one reusable buffer.
struct Window {
    file: File,
    len: u64,
    base: u64,
    buf: Vec<u8>,
}

impl Window {
    /// Up to `n` bytes from `at`, fewer only at the end of the file.
    fn get(&mut self, at: u64, n: usize) -> io::Result<&[u8]> {
        let want = (n as u64).min(self.len.saturating_sub(at)) as usize;
        let buffered = at >= self.base && at + want as u64 <= self.base + self.buf.len() as u64;
        if !buffered {
            let size = (want.max(CHUNK) as u64).min(self.len - at) as usize;
            self.buf.resize(size, 0);
            self.file.read_exact_at(&mut self.buf, at)?;
            self.base = at;
        }
        let start = (at - self.base) as usize;
        Ok(&self.buf[start..start + want])
    }
}

/// Outcome of reading the frame at one offset.
enum At<'a> {
    Record(Record<'a>, u64),
    /// Runs past the end of the file.
    CutShort(&'static str),
    Bad(&'static str),
}

fn frame_at(window: &mut Window, pos: u64) -> io::Result<At<'_>> {
    let head = window.get(pos, FRAME_HEADER)?;
    if head.len() < FRAME_HEADER {
        return Ok(At::CutShort("frame header cut short"));
    }
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    if pos + (FRAME_HEADER + len) as u64 > window.len {
        return Ok(At::CutShort("record cut short"));
    }
    if len > MAX_FRAME {
        return Ok(At::Bad("record too long"));
    }
    let bytes = window.get(pos, FRAME_HEADER + len)?;
    Ok(match check_frame(bytes) {
        Ok(record) => At::Record(record, (FRAME_HEADER + len) as u64),
        Err(reason) => At::Bad(reason),
    })
}

/// The offset of the first intact frame after `from`, if any.
fn next_intact(window: &mut Window, from: u64) -> io::Result<Option<u64>> {
    let mut at = from;
    while at + FRAME_HEADER as u64 <= window.len {
        if let At::Record(..) = frame_at(window, at)? {
            return Ok(Some(at));
        }
        at += 1;
    }
    Ok(None)
}

/// Whether every byte from `from` to the end of the file is zero.
fn zeros_to_end(window: &mut Window, from: u64) -> io::Result<bool> {
    let mut at = from;
    while at < window.len {
        let bytes = window.get(at, CHUNK)?;
        if bytes.iter().any(|&b| b != 0) {
            return Ok(false);
        }
        at += bytes.len() as u64;
    }
    Ok(true)
}

/// The error that stops a start at damage: one line naming the file, the
/// offset and what to do.
pub fn damage_error(path: &Path, damage: &Damage) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "{}: {} at offset {}; nothing was changed. Start with --recover to keep every \
             intact record and set the damaged files aside",
            path.display(),
            damage.reason,
            damage.offset
        ),
    )
}

/// Applies every record of `path` from offset `start` on, oldest first,
/// and judges any damage by `mode` (see the module documentation). Reads
/// only; cutting a torn tail is the caller's decision.
pub fn scan(
    path: &Path,
    start: u64,
    mode: ScanMode,
    apply: &mut impl FnMut(&Record<'_>),
) -> io::Result<Scan> {
    let file = File::open(path)?;
    let len = file.metadata()?.len();
    let mut window = Window {
        file,
        len,
        base: 0,
        buf: Vec::new(),
    };
    let mut found = Scan::default();
    let mut pos = start;
    while pos < len {
        let (cut_short, reason) = match frame_at(&mut window, pos)? {
            At::Record(record, size) => {
                apply(&record);
                found.records += 1;
                pos += size;
                continue;
            }
            At::CutShort(reason) => (true, reason),
            At::Bad(reason) => (false, reason),
        };
        let next = next_intact(&mut window, pos + 1)?;
        let end = next.unwrap_or(len);
        let damage = Damage {
            offset: pos,
            len: end - pos,
            reason,
        };
        let torn =
            mode.may_tear && next.is_none() && (cut_short || zeros_to_end(&mut window, pos)?);
        if torn {
            found.torn = Some(damage);
            break;
        }
        if !mode.recover {
            return Err(damage_error(path, &damage));
        }
        found.dropped.push(damage);
        pos = end;
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::record::encode;
    use std::sync::atomic::{AtomicUsize, Ordering};

    fn file_with(bytes: &[u8]) -> std::path::PathBuf {
        static COUNT: AtomicUsize = AtomicUsize::new(0);
        let path = std::env::temp_dir().join(format!(
            "confab-scan-{}-{}",
            std::process::id(),
            COUNT.fetch_add(1, Ordering::SeqCst)
        ));
        std::fs::write(&path, bytes).expect("write");
        path
    }

    fn records(n: usize) -> (Vec<u8>, Vec<u64>) {
        let mut bytes = Vec::new();
        let mut ends = Vec::new();
        for i in 0..n {
            let text = format!("message number {i}");
            encode(
                &Record::MailboxAppend {
                    recipient: "luke",
                    seq: Some(i as u64),
                    stored_unix_ms: None,
                    sender: "yoda",
                    text: &text,
                },
                &mut bytes,
            );
            ends.push(bytes.len() as u64);
        }
        (bytes, ends)
    }

    fn run(bytes: &[u8], mode: ScanMode) -> (io::Result<Scan>, Vec<u64>) {
        let path = file_with(bytes);
        let mut seqs = Vec::new();
        let result = scan(&path, 0, mode, &mut |r| {
            if let Record::MailboxAppend { seq: Some(s), .. } = r {
                seqs.push(*s);
            }
        });
        let _ = std::fs::remove_file(&path);
        (result, seqs)
    }

    const JOURNAL: ScanMode = ScanMode {
        may_tear: true,
        recover: false,
    };
    const RECOVER: ScanMode = ScanMode {
        may_tear: true,
        recover: true,
    };
    const SNAPSHOT: ScanMode = ScanMode {
        may_tear: false,
        recover: false,
    };

    #[test]
    fn a_clean_file_reads_whole() {
        let (bytes, _) = records(100);
        let (scan, seqs) = run(&bytes, JOURNAL);
        let scan = scan.expect("scan");
        assert_eq!(scan.records, 100);
        assert!(scan.torn.is_none() && scan.dropped.is_empty());
        assert_eq!(seqs, (0..100).collect::<Vec<_>>());
    }

    #[test]
    fn a_cut_anywhere_in_the_last_record_is_a_torn_tail() {
        let (bytes, ends) = records(5);
        for cut in ends[3] + 1..ends[4] {
            let (scan, seqs) = run(&bytes[..cut as usize], JOURNAL);
            let torn = scan.expect("scan").torn.expect("a torn tail");
            assert_eq!(torn.offset, ends[3], "cut at {cut}");
            assert_eq!(seqs, vec![0, 1, 2, 3]);
        }
    }

    #[test]
    fn zeros_after_the_last_record_are_a_torn_tail() {
        let (mut bytes, ends) = records(3);
        bytes.extend_from_slice(&[0; 4096]);
        let (scan, _) = run(&bytes, JOURNAL);
        assert_eq!(scan.expect("scan").torn.map(|t| t.offset), Some(ends[2]));
    }

    #[test]
    fn a_snapshot_never_tears() {
        let (bytes, ends) = records(3);
        let (scan, _) = run(&bytes[..ends[2] as usize - 1], SNAPSHOT);
        let error = scan.expect_err("damage");
        assert!(
            error
                .to_string()
                .contains(&format!("record cut short at offset {}", ends[1])),
            "{error}"
        );
    }

    #[test]
    fn a_flipped_byte_anywhere_but_the_tail_is_damage() {
        let (bytes, ends) = records(50);
        for at in 0..ends[48] as usize {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x40;
            let (scan, _) = run(&damaged, JOURNAL);
            assert!(scan.is_err(), "a flip at {at} was taken for a torn tail");
        }
    }

    #[test]
    fn a_damaged_length_is_not_taken_for_a_torn_tail() {
        let (mut bytes, ends) = records(10);
        // The fifth record's length now runs past the end of the file.
        let at = ends[3] as usize + 3;
        bytes[at] = 0x7f;
        let (scan, _) = run(&bytes, JOURNAL);
        let error = scan.expect_err("damage");
        assert!(
            error
                .to_string()
                .contains(&format!("at offset {}", ends[3])),
            "{error}"
        );
    }

    #[test]
    fn recovery_keeps_every_intact_record_around_the_damage() {
        let (mut bytes, ends) = records(20);
        bytes[ends[9] as usize + 12] ^= 0x01;
        let (scan, seqs) = run(&bytes, RECOVER);
        let scan = scan.expect("scan");
        let expected: Vec<u64> = (0..20).filter(|&i| i != 10).collect();
        assert_eq!(seqs, expected);
        assert_eq!(
            scan.dropped,
            vec![Damage {
                offset: ends[9],
                len: ends[10] - ends[9],
                reason: "checksum mismatch"
            }]
        );
    }

    #[test]
    fn records_larger_than_one_read_are_read() {
        let mut bytes = Vec::new();
        let text = "x".repeat(3 * CHUNK / 2);
        for seq in 0..3 {
            encode(
                &Record::MailboxAppend {
                    recipient: "luke",
                    seq: Some(seq),
                    stored_unix_ms: None,
                    sender: "yoda",
                    text: &text,
                },
                &mut bytes,
            );
        }
        let (scan, seqs) = run(&bytes, JOURNAL);
        assert_eq!(scan.expect("scan").records, 3);
        assert_eq!(seqs, vec![0, 1, 2]);
    }
}
