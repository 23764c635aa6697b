//! Snapshots of the state in JetStream's object store, which chunks them,
//! so that one may be far bigger than a NATS message: one object per
//! snapshot, named by the stream sequence it covers. The newest two are
//! kept and the log is trimmed through the older of them, so that either
//! can start a node (the older one with more entries to replay) if the
//! other cannot be read.

use std::io;

use async_nats::jetstream::object_store::ObjectStore;
use base64::engine::general_purpose::URL_SAFE;
use base64::Engine;
use futures_util::StreamExt;
use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};

use super::outbox::Outbox;
use super::setup::Nats;
use super::Event;

/// How many snapshots are kept.
const KEEP: usize = 2;

/// What every snapshot's object name starts with; the sequence follows,
/// in 20 digits, so that names sort as sequences do.
const PREFIX: &str = "snapshot-";

/// One snapshot from [`Bridge::save_snapshot`](super::Bridge::save_snapshot).
pub(super) struct Snapshot {
    /// The stream sequence it covers.
    pub seq: u64,
    /// The state through `seq`.
    pub bytes: Vec<u8>,
}

/// The object name of the snapshot through `seq`.
pub(super) fn object_name(seq: u64) -> String {
    format!("{PREFIX}{seq:020}")
}

/// The sequence an object name of [`object_name`] stands for; `None` for
/// any other name.
pub(super) fn parse_object_name(name: &str) -> Option<u64> {
    let digits = name.strip_prefix(PREFIX)?;
    if digits.len() != 20 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Saves the snapshots of `snapshots` one after another, each once NATS is
/// up (`up`), for as long as the bridge lives.
pub(super) async fn run(
    nats: Nats,
    mut snapshots: mpsc::UnboundedReceiver<Snapshot>,
    mut up: watch::Receiver<bool>,
    outbox: Outbox,
) {
    while let Some(snapshot) = snapshots.recv().await {
        if up.wait_for(|up| *up).await.is_err() || !save(&nats, snapshot, &outbox).await {
            return;
        }
    }
}

/// Stores `snapshot`, drops all but the newest [`KEEP`] snapshots, trims
/// the log through the older kept one and reports
/// [`Event::SnapshotSaved`]. A snapshot that could not be stored is told as
/// a problem and not reported saved; the next one tries again. False once
/// the bridge is going away.
async fn save(nats: &Nats, snapshot: Snapshot, outbox: &Outbox) -> bool {
    let Snapshot { seq, bytes } = snapshot;
    if let Err(error) = nats
        .snapshots
        .put(object_name(seq).as_str(), &mut bytes.as_slice())
        .await
    {
        return outbox
            .problem(format!(
                "the snapshot through {seq} was not stored: {error}"
            ))
            .await;
    }
    drop(bytes);
    let stored = match stored(&nats.snapshots).await {
        Ok(stored) => stored,
        Err(error) => {
            let text = format!("cannot list the snapshots to drop the old ones: {error}");
            if !outbox.problem(text).await {
                return false;
            }
            Vec::new()
        }
    };
    let old = stored.len().saturating_sub(KEEP);
    for &old_seq in &stored[..old] {
        if let Err(error) = remove(nats, old_seq).await {
            let text = format!("cannot delete the snapshot through {old_seq}: {error}");
            if !outbox.problem(text).await {
                return false;
            }
        }
    }
    if let [older, _] = stored[old..] {
        if let Err(error) = nats.log.purge().sequence(older + 1).await {
            let text = format!("cannot trim the log through {older}: {error}");
            if !outbox.problem(text).await {
                return false;
            }
        }
    }
    outbox.send(Event::SnapshotSaved { seq }).await
}

/// The newest snapshot that can be read, with its sequence; newer ones
/// that cannot are told as a problem. An error if there are snapshots but
/// none can be read.
pub(super) async fn latest(nats: &Nats, outbox: &Outbox) -> io::Result<Option<(u64, Vec<u8>)>> {
    let stored = stored(&nats.snapshots).await.map_err(|e| {
        io::Error::other(format!("cannot list the snapshots in {}: {e}", nats.bucket))
    })?;
    let mut unreadable = Vec::new();
    for &seq in stored.iter().rev() {
        match read(&nats.snapshots, seq).await {
            Ok(bytes) => {
                if !unreadable.is_empty() {
                    let text = format!(
                        "starting from the snapshot through {seq}: {}",
                        unreadable.join("; ")
                    );
                    outbox.problem(text).await;
                }
                return Ok(Some((seq, bytes)));
            }
            Err(error) => unreadable.push(format!("the snapshot through {seq}: {error}")),
        }
    }
    if unreadable.is_empty() {
        Ok(None)
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("no snapshot could be read: {}", unreadable.join("; ")),
        ))
    }
}

/// The sequences of the stored snapshots, oldest first.
async fn stored(store: &ObjectStore) -> Result<Vec<u64>, String> {
    let mut list = store.list().await.map_err(|e| e.to_string())?;
    let mut seqs = Vec::new();
    while let Some(object) = list.next().await {
        let object = object.map_err(|e| e.to_string())?;
        seqs.extend(parse_object_name(&object.name));
    }
    seqs.sort_unstable();
    seqs.dedup();
    Ok(seqs)
}

/// The bytes of the snapshot through `seq`, checked against the digest the
/// store keeps.
async fn read(store: &ObjectStore, seq: u64) -> Result<Vec<u8>, String> {
    let mut object = store
        .get(object_name(seq))
        .await
        .map_err(|e| e.to_string())?;
    let mut bytes = Vec::with_capacity(object.info.size);
    object
        .read_to_end(&mut bytes)
        .await
        .map_err(|e| e.to_string())?;
    Ok(bytes)
}

/// Deletes the snapshot through `seq`, and the marker the store leaves for
/// a deleted object, which would otherwise pile up, one per snapshot.
async fn remove(nats: &Nats, seq: u64) -> Result<(), String> {
    let name = object_name(seq);
    nats.snapshots
        .delete(&name)
        .await
        .map_err(|e| e.to_string())?;
    let marker = format!("$O.{}.M.{}", nats.bucket, URL_SAFE.encode(&name));
    nats.snapshot_stream
        .purge()
        .filter(marker)
        .await
        .map_err(|e| e.to_string())?;
    Ok(())
}
