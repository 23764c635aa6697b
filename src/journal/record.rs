//! The records of the journal and the snapshot, and how they are framed on
//! disk. Pure bytes in, bytes out: no I/O, so every corner of the format is
//! unit-tested here.
//!
//! A frame is the payload's length (`u32`, little-endian), the CRC-32 of the
//! payload (`u32`, little-endian), then the payload: a tag byte and the
//! record's fields. Usernames are a `u16` length and UTF-8 bytes, message
//! texts a `u32` length and UTF-8 bytes, times `u64` milliseconds since the
//! Unix epoch, sequence numbers `u64`. [`check_frame`] says whether one
//! frame is intact; what a reader does where one is not (a torn tail, or
//! damage to report) is [`super::scan`]'s business.
//!
//! Every record is idempotent when replayed over a state that already
//! reflects it or a later state of the same account (mail carries a
//! per-recipient sequence number, block and ban records set a value).
//! That is what lets a snapshot be encoded a slice at a time while the
//! server goes on changing the state: replaying the newer journal over
//! such a snapshot gives the same state as replaying it over an exact one.
//! Two tags of the first format (a message without a sequence number, a
//! mailbox delivered whole) and one of the second (a message without the
//! time it was stored) are still read.

/// Bytes of a frame before its payload: length and checksum.
pub const FRAME_HEADER: usize = 8;

/// One change to the durable state. Records borrow their text, from the
/// domain when they are written and from the file's bytes when they are
/// read, so neither direction allocates per record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record<'a> {
    /// A message was queued for an offline user.
    MailboxAppend {
        /// Whose mailbox.
        recipient: &'a str,
        /// Its place in the recipient's mailbox: sequence numbers only grow.
        /// `None` in records of the first format, which take the next one.
        seq: Option<u64>,
        /// When it was stored, in milliseconds since the Unix epoch. `None`
        /// in records of the earlier formats, and when the server had no
        /// wall clock; written only with a `seq` (a record without one is
        /// of the first format, which has no time either).
        stored_unix_ms: Option<u64>,
        /// Who sent it.
        sender: &'a str,
        /// What they sent.
        text: &'a str,
    },
    /// Every message of the mailbox up to and including sequence number
    /// `through` was written to the recipient's socket and left it.
    MailboxTaken {
        /// Whose mailbox.
        recipient: &'a str,
        /// The last sequence number taken.
        through: u64,
    },
    /// Earlier format: the user logged in and was given (and cleared) the
    /// whole mailbox. Read, never written.
    MailboxDelivered {
        /// Whose mailbox.
        recipient: &'a str,
    },
    /// `user` blocked `target`.
    Block {
        /// Who blocks.
        user: &'a str,
        /// Who is blocked.
        target: &'a str,
    },
    /// `user` unblocked `target`.
    Unblock {
        /// Who unblocks.
        user: &'a str,
        /// Who is unblocked.
        target: &'a str,
    },
    /// The username is banned until a wall-clock time, so that a ban keeps
    /// its real end across a restart however long the server was down.
    Ban {
        /// The banned username.
        user: &'a str,
        /// When the ban ends, in milliseconds since the Unix epoch.
        until_unix_ms: u64,
    },
    /// The ban of this username ended.
    BanCleared {
        /// The username.
        user: &'a str,
    },
}

const APPEND: u8 = 1;
const DELIVERED: u8 = 2;
const BLOCK: u8 = 3;
const UNBLOCK: u8 = 4;
const BAN: u8 = 5;
const BAN_CLEARED: u8 = 6;
const APPEND_SEQ: u8 = 7;
const TAKEN: u8 = 8;
const APPEND_AT: u8 = 9;

/// Appends `record`, framed, to `out`.
///
/// Usernames longer than 65,535 bytes and texts longer than 4 GiB cannot
/// be framed; no credentials file or line limit the server accepts comes
/// near that, and such a field is cut to the limit rather than corrupting
/// the stream.
pub fn encode(record: &Record<'_>, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    match *record {
        Record::MailboxAppend {
            recipient,
            seq,
            stored_unix_ms,
            sender,
            text,
        } => {
            let stored_unix_ms = stored_unix_ms.filter(|_| seq.is_some());
            out.push(match (seq, stored_unix_ms) {
                (None, _) => APPEND,
                (Some(_), None) => APPEND_SEQ,
                (Some(_), Some(_)) => APPEND_AT,
            });
            put_name(out, recipient);
            for number in [seq, stored_unix_ms].into_iter().flatten() {
                out.extend_from_slice(&number.to_le_bytes());
            }
            put_name(out, sender);
            put_text(out, text);
        }
        Record::MailboxTaken { recipient, through } => {
            out.push(TAKEN);
            put_name(out, recipient);
            out.extend_from_slice(&through.to_le_bytes());
        }
        Record::MailboxDelivered { recipient } => {
            out.push(DELIVERED);
            put_name(out, recipient);
        }
        Record::Block { user, target } => {
            out.push(BLOCK);
            put_name(out, user);
            put_name(out, target);
        }
        Record::Unblock { user, target } => {
            out.push(UNBLOCK);
            put_name(out, user);
            put_name(out, target);
        }
        Record::Ban {
            user,
            until_unix_ms,
        } => {
            out.push(BAN);
            put_name(out, user);
            out.extend_from_slice(&until_unix_ms.to_le_bytes());
        }
        Record::BanCleared { user } => {
            out.push(BAN_CLEARED);
            put_name(out, user);
        }
    }
    let payload = &out[start + FRAME_HEADER..];
    // A payload is a tag and at most three fields of bounded length.
    let len = u32::try_from(payload.len()).unwrap_or(u32::MAX);
    let crc = crc32fast::hash(payload);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
}

fn put_name(out: &mut Vec<u8>, name: &str) {
    let bytes = cut(name.as_bytes(), usize::from(u16::MAX));
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

fn put_text(out: &mut Vec<u8>, text: &str) {
    let bytes = cut(text.as_bytes(), u32::MAX as usize);
    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The first `max` bytes of `bytes`, backed off to a UTF-8 boundary.
fn cut(bytes: &[u8], max: usize) -> &[u8] {
    if bytes.len() <= max {
        return bytes;
    }
    let mut end = max;
    while end > 0 && (bytes[end] & 0xC0) == 0x80 {
        end -= 1;
    }
    &bytes[..end]
}

/// Checks one whole frame (`bytes` is exactly its header and payload) and
/// parses its record; the error says what is wrong with it.
pub fn check_frame(bytes: &[u8]) -> Result<Record<'_>, &'static str> {
    let (head, payload) = bytes
        .split_at_checked(FRAME_HEADER)
        .ok_or("frame header cut short")?;
    let len = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let crc = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
    if payload.len() != len {
        return Err("record cut short");
    }
    if crc32fast::hash(payload) != crc {
        return Err("checksum mismatch");
    }
    parse(payload).ok_or("unreadable record")
}

/// Parses one payload; `None` if it is not exactly one well-formed record.
fn parse(payload: &[u8]) -> Option<Record<'_>> {
    let (&tag, rest) = payload.split_first()?;
    let mut r = Reader(rest);
    let record = match tag {
        APPEND => Record::MailboxAppend {
            recipient: r.name()?,
            seq: None,
            stored_unix_ms: None,
            sender: r.name()?,
            text: r.text()?,
        },
        APPEND_SEQ => Record::MailboxAppend {
            recipient: r.name()?,
            seq: Some(r.u64()?),
            stored_unix_ms: None,
            sender: r.name()?,
            text: r.text()?,
        },
        APPEND_AT => Record::MailboxAppend {
            recipient: r.name()?,
            seq: Some(r.u64()?),
            stored_unix_ms: Some(r.u64()?),
            sender: r.name()?,
            text: r.text()?,
        },
        TAKEN => Record::MailboxTaken {
            recipient: r.name()?,
            through: r.u64()?,
        },
        DELIVERED => Record::MailboxDelivered {
            recipient: r.name()?,
        },
        BLOCK => Record::Block {
            user: r.name()?,
            target: r.name()?,
        },
        UNBLOCK => Record::Unblock {
            user: r.name()?,
            target: r.name()?,
        },
        BAN => Record::Ban {
            user: r.name()?,
            until_unix_ms: r.u64()?,
        },
        BAN_CLEARED => Record::BanCleared { user: r.name()? },
        _ => return None,
    };
    r.0.is_empty().then_some(record)
}

/// A cursor over a payload's fields.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }

    fn name(&mut self) -> Option<&'a str> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?);
        std::str::from_utf8(self.take(usize::from(len))?).ok()
    }

    fn text(&mut self) -> Option<&'a str> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        std::str::from_utf8(self.take(len as usize)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn samples() -> Vec<Record<'static>> {
        vec![
            Record::MailboxAppend {
                recipient: "luke",
                seq: Some(7),
                stored_unix_ms: Some(1_800_000_000_456),
                sender: "yoda",
                text: "use  the force ✨",
            },
            Record::MailboxAppend {
                recipient: "luke",
                seq: Some(8),
                stored_unix_ms: None,
                sender: "yoda",
                text: "a record without its time",
            },
            Record::MailboxAppend {
                recipient: "luke",
                seq: None,
                stored_unix_ms: None,
                sender: "yoda",
                text: "an older record",
            },
            Record::MailboxTaken {
                recipient: "luke",
                through: 7,
            },
            Record::MailboxDelivered { recipient: "luke" },
            Record::Block {
                user: "yoda",
                target: "vader",
            },
            Record::Unblock {
                user: "yoda",
                target: "vader",
            },
            Record::Ban {
                user: "hans",
                until_unix_ms: 1_800_000_000_123,
            },
            Record::BanCleared { user: "hans" },
        ]
    }

    /// The records of a run of frames up to the first bad one, and the
    /// offset of that one.
    fn read_all(bytes: &[u8]) -> (Vec<Record<'_>>, Option<usize>) {
        let mut records = Vec::new();
        let mut pos = 0;
        while pos < bytes.len() {
            let rest = &bytes[pos..];
            let len = rest
                .get(..4)
                .map(|l| FRAME_HEADER + u32::from_le_bytes([l[0], l[1], l[2], l[3]]) as usize);
            match len.and_then(|len| rest.get(..len)).map(check_frame) {
                Some(Ok(record)) => {
                    records.push(record);
                    pos += len.unwrap_or(0);
                }
                _ => return (records, Some(pos)),
            }
        }
        (records, None)
    }

    fn encoded(records: &[Record<'_>]) -> Vec<u8> {
        let mut out = Vec::new();
        for record in records {
            encode(record, &mut out);
        }
        out
    }

    #[test]
    fn every_record_round_trips() {
        let records = samples();
        let bytes = encoded(&records);
        let (read, damage) = read_all(&bytes);
        assert_eq!(read, records);
        assert_eq!(damage, None);
    }

    #[test]
    fn a_cut_anywhere_keeps_every_whole_record_before_it() {
        let records = samples();
        let bytes = encoded(&records);
        let mut ends = Vec::new();
        for record in &records {
            let mut one = Vec::new();
            encode(record, &mut one);
            ends.push(ends.last().copied().unwrap_or(0) + one.len());
        }
        for cut in 0..bytes.len() {
            let (read, damage) = read_all(&bytes[..cut]);
            let whole = ends.iter().filter(|&&end| end <= cut).count();
            assert_eq!(read, records[..whole], "cut at {cut}");
            let start = if whole == 0 { 0 } else { ends[whole - 1] };
            match damage {
                None => assert_eq!(cut, start, "cut at {cut}"),
                Some(offset) => assert_eq!(offset, start, "cut at {cut}"),
            }
        }
    }

    #[test]
    fn a_flipped_byte_stops_reading_at_its_record() {
        let records = samples();
        let bytes = encoded(&records);
        let first_len = {
            let mut one = Vec::new();
            encode(&records[0], &mut one);
            one.len()
        };
        for at in first_len..bytes.len() {
            let mut damaged = bytes.clone();
            damaged[at] ^= 0x20;
            let (read, damage) = read_all(&damaged);
            assert!(read.len() < records.len(), "flip at {at} went unnoticed");
            assert_eq!(read, records[..read.len()], "flip at {at}");
            assert!(damage.is_some_and(|offset| offset >= first_len));
        }
    }

    #[test]
    fn a_well_framed_payload_that_does_not_parse_is_damage() {
        let bytes = frame(&[99u8, 1, 2]);
        assert_eq!(check_frame(&bytes), Err("unreadable record"));
    }

    /// A frame of `payload`, as a server of any version wrote it.
    fn frame(payload: &[u8]) -> Vec<u8> {
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&(payload.len() as u32).to_le_bytes());
        bytes.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn appends_of_the_earlier_formats_are_read_without_a_time() {
        // Tag 7 (with a sequence number, no time), as the previous version
        // wrote it: recipient "luke", seq 3, sender "yoda", text "hi".
        let mut payload = vec![APPEND_SEQ, 4, 0];
        payload.extend_from_slice(b"luke");
        payload.extend_from_slice(&3u64.to_le_bytes());
        payload.extend_from_slice(&[4, 0]);
        payload.extend_from_slice(b"yoda");
        payload.extend_from_slice(&[2, 0, 0, 0]);
        payload.extend_from_slice(b"hi");
        let bytes = frame(&payload);
        assert_eq!(
            check_frame(&bytes),
            Ok(Record::MailboxAppend {
                recipient: "luke",
                seq: Some(3),
                stored_unix_ms: None,
                sender: "yoda",
                text: "hi",
            })
        );
        // A record without a time is written exactly as that version did.
        let mut again = Vec::new();
        encode(&check_frame(&bytes).expect("intact"), &mut again);
        assert_eq!(again, bytes);
        // Tag 1 (the first format): neither number.
        let mut payload = vec![APPEND, 4, 0];
        payload.extend_from_slice(b"luke");
        payload.extend_from_slice(&[4, 0]);
        payload.extend_from_slice(b"yoda");
        payload.extend_from_slice(&[2, 0, 0, 0]);
        payload.extend_from_slice(b"hi");
        let old = check_frame(&frame(&payload)).map(|r| match r {
            Record::MailboxAppend {
                seq,
                stored_unix_ms,
                ..
            } => (seq, stored_unix_ms),
            _ => (Some(0), Some(0)),
        });
        assert_eq!(old, Ok((None, None)));
    }

    #[test]
    fn an_append_with_its_time_is_eight_bytes_longer() {
        let record = |stored_unix_ms| Record::MailboxAppend {
            recipient: "luke",
            seq: Some(3),
            stored_unix_ms,
            sender: "yoda",
            text: "hi",
        };
        let (mut with, mut without) = (Vec::new(), Vec::new());
        encode(&record(Some(1_800_000_000_456)), &mut with);
        encode(&record(None), &mut without);
        assert_eq!(with.len(), without.len() + 8);
        assert_eq!(with[FRAME_HEADER], APPEND_AT);
        assert_eq!(without[FRAME_HEADER], APPEND_SEQ);
        // A time is written only with a sequence number.
        let first = Record::MailboxAppend {
            recipient: "luke",
            seq: None,
            stored_unix_ms: Some(1),
            sender: "yoda",
            text: "hi",
        };
        let mut bytes = Vec::new();
        encode(&first, &mut bytes);
        assert_eq!(bytes[FRAME_HEADER], APPEND);
    }

    #[test]
    fn overlong_fields_are_cut_at_a_character_boundary() {
        assert_eq!(cut("aé".as_bytes(), 2), b"a");
        assert_eq!(cut(b"abc", 3), b"abc");
    }
}
