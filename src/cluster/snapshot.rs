//! A node's whole state at a position of the log: the replica's part and
//! the domain's ([`Chat::save_state`]). The node that takes snapshots
//! stores one every so many entries; a node that starts loads the newest
//! and applies the log from the entry after it, and the stream is trimmed
//! behind the older of the two snapshots kept.

use super::codec::{put_bytes, DecodeError, Reader};
use super::entry::Incarnation;
use super::replica::Replica;
use crate::chat::{Chat, ChatConfig};

/// The first bytes of a snapshot.
const MAGIC: &[u8; 4] = b"CFS1";

/// The snapshot of `replica` and `chat` (taken between entries, with the
/// domain's outbox drained).
pub fn encode(replica: &Replica, chat: &Chat) -> Vec<u8> {
    let mut out = Vec::with_capacity(4096);
    out.extend_from_slice(MAGIC);
    let mut part = Vec::new();
    replica.save(&mut part);
    put_bytes(&mut out, &part);
    if let Some(anchor) = replica.anchor() {
        chat.save_state(anchor, &mut out);
    }
    out
}

/// The replica and domain a snapshot holds, for the node running as
/// `me` with the domain settings `config`.
pub fn decode(
    bytes: &[u8],
    me: Incarnation,
    config: ChatConfig,
) -> Result<(Replica, Chat), String> {
    let mut r = Reader::new(bytes);
    if r.take(MAGIC.len()).map_err(|e| e.to_string())? != MAGIC {
        return Err("not a confab snapshot".into());
    }
    let part = r.bytes().map_err(|e| e.to_string())?;
    let mut part = Reader::new(part);
    let replica = Replica::load(&mut part, me).map_err(|e: DecodeError| e.to_string())?;
    let accounts = replica
        .founded()
        .map(|(_, accounts)| accounts.to_vec())
        .unwrap_or_default();
    let Some(anchor) = replica.anchor() else {
        return Err("a snapshot without a log time".into());
    };
    let chat = Chat::load_state(accounts, config, r.rest(), anchor).map_err(|e| e.to_string())?;
    Ok((replica, chat))
}
