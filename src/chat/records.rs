//! The durable state as journal records: turning on the records of
//! changes, replaying records read from disk at start, and the state as
//! records for a snapshot.
//!
//! Durable state — mailboxes, block lists and bans — changes only in the
//! domain, so it is also where those changes are described as [`Record`]s
//! (each change appends its own, where it is made). Records about
//! accounts no longer in the credentials file are kept for them, unless
//! [`ChatConfig::prune_removed`](super::ChatConfig::prune_removed) drops
//! them.

use super::users::UserId;
use super::{Chat, SnapshotCursor, Timer, WallClock};
use crate::journal::record::Record;
use crate::protocol::Reply;

/// What [`Chat::apply_record`] did with a record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Replayed {
    /// Applied to accounts of the credentials file.
    Applied,
    /// Applied, and it names an account that is no longer in the
    /// credentials file: kept for it, in case it comes back.
    Removed,
    /// It names an account that is no longer in the credentials file, and
    /// removed accounts are pruned: ignored.
    Dropped,
}

impl Chat {
    /// From now on, every change to durable state appends its record to
    /// the outbox and holds the replies that promise it (see the module
    /// documentation). `clock` converts ban expiries to wall-clock time.
    pub fn record_changes(&mut self, clock: WallClock) {
        self.outbox.start_recording(clock);
    }

    /// Replays one record read from disk, at start, before anyone
    /// connects. A ban whose wall-clock end is not after `clock` is over
    /// and ignored. A record naming an account that is not in the
    /// credentials file is kept for it ([`Replayed::Removed`]), or dropped
    /// if the configuration prunes them.
    pub fn apply_record(&mut self, change: &Record<'_>, clock: WallClock) -> Replayed {
        let names: &[&str] = match change {
            Record::MailboxAppend { recipient, .. }
            | Record::MailboxTaken { recipient, .. }
            | Record::MailboxDelivered { recipient } => &[recipient],
            Record::Block { user, target } | Record::Unblock { user, target } => &[user, target],
            Record::Ban { user, .. } | Record::BanCleared { user } => &[user],
        };
        let mut replayed = Replayed::Applied;
        // The ids of the names, in order.
        let mut ids: [UserId; 2] = [0; 2];
        for (id, name) in ids.iter_mut().zip(names) {
            if let Some(account) = self.users.account(name) {
                *id = account;
                continue;
            }
            if self.config.prune_removed {
                return Replayed::Dropped;
            }
            replayed = Replayed::Removed;
            *id = self.users.id_or_removed(name);
        }
        let [first, second] = ids;
        match *change {
            Record::MailboxAppend {
                seq,
                stored_unix_ms,
                sender,
                text,
                ..
            } => {
                let them = first;
                let line = Reply::Message { from: sender, text }.to_string();
                if let Some(added) = self.users[them].mailbox.replay_append(
                    seq,
                    stored_unix_ms,
                    line.into_boxed_str(),
                ) {
                    self.storage.stored += added;
                }
            }
            Record::MailboxTaken { through, .. } => {
                let them = first;
                self.storage.stored -= self.users[them].mailbox.take_through(through);
            }
            Record::MailboxDelivered { .. } => {
                let them = first;
                self.storage.stored -= self.users[them].mailbox.take_all();
            }
            Record::Block { .. } | Record::Unblock { .. } => {
                let (me, them) = (first, second);
                let blocked = &mut self.users[me].blocked;
                match (blocked.binary_search(&them), change) {
                    (Err(at), Record::Block { .. }) => blocked.insert(at, them),
                    (Ok(at), Record::Unblock { .. }) => {
                        blocked.remove(at);
                    }
                    _ => {}
                }
                self.note_block_list(me);
            }
            Record::Ban { until_unix_ms, .. } => {
                let me = first;
                if let Some(until) = clock.instant(until_unix_ms) {
                    let account = &mut self.users[me];
                    account.banned_until = Some(until);
                    account.failures = 0;
                    self.deadlines.arm(until, Timer::BanEnd(me));
                }
            }
            Record::BanCleared { .. } => {
                self.users[first].banned_until = None;
            }
        }
        replayed
    }

    /// The live durable state as records, for a snapshot: every queued
    /// message, every block, every ban still running at `clock`.
    /// Replaying them into a domain with the same accounts rebuilds it.
    pub fn snapshot(&self, clock: WallClock) -> impl Iterator<Item = Record<'_>> + '_ {
        let mut cursor = SnapshotCursor::default();
        std::iter::from_fn(move || cursor.next(self, clock))
    }
}
