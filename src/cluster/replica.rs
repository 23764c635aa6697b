//! One node's copy of the cluster's state: the log applied, in order, to
//! a [`Chat`].
//!
//! Every node holds a `Replica` and feeds it every entry of the log with
//! [`Replica::apply`]; given the same entries, every replica makes the same
//! calls on its domain with the same times, so every node holds the same
//! state. The domain's effects name sessions; [`Replica::owner`] says
//! which node's connection each session is, and each node performs only
//! the effects of its own.
//!
//! What a replica decides from the log alone, identically everywhere:
//!
//! - **Time.** An entry's `now` is the larger of its publisher's clock and
//!   the previous entry's `now`, so the domain's time never goes back.
//!   Times are milliseconds since the Unix epoch, mapped to `Instant`s
//!   from an anchor taken at the first entry applied.
//! - **Lateness.** A batch that the stream stored more than
//!   [`STORE_WITHIN_MS`] after its publisher's clock is not applied: its
//!   publisher has already refused its lines (`Error. Server storage is
//!   unavailable`), and must never carry them out later. The stream's own
//!   timestamp decides, the same for every replica.
//! - **Ownership.** A connection is its publisher's incarnation and serial;
//!   a session id is given to it when its `Connect` is applied (the lowest
//!   free), and freed once the batch of its `Disconnect` is applied, so
//!   that no id names two connections among the effects of one batch.
//! - **Liveness.** Every batch counts as a heartbeat of its publisher, and
//!   ticks its publisher's timers (the idle timeouts of its sessions, and
//!   ban ends). A node silent for the node timeout while the log was live
//!   is dead: its sessions end at that entry, announced like any leaver's,
//!   and its later entries are ignored. A gap in the log that every node
//!   shares (NATS unreachable) is not silence: after it, every node has a
//!   full node timeout again.
//! - **Names.** A second live incarnation of the same node name is refused
//!   at its `Hello`.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::time::{Duration, Instant};

use super::codec::{put_accounts, put_bytes, put_u64, DecodeError, Reader, MAX_COUNT};
use super::entry::{Batch, Incarnation, Input, Settings};
use crate::chat::{Chat, SessionId, WallClock};
use crate::credentials::Account;

/// How long after its publisher's clock the stream may store a batch for
/// it to be applied. A publisher answers the lines of a batch it
/// published only when the batch comes back through the log (applied, or
/// late and refused), so the answer is the log's either way; the bound
/// keeps a batch held up in a partition from acting long after its time.
pub const STORE_WITHIN_MS: u64 = 5_000;

/// What became of one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// The batch's number, if this node published it.
    pub mine: Option<u64>,
    /// Whether it was applied.
    pub fate: Fate,
    /// This node's incarnation is over: declared dead, refused, or left.
    pub ended: Option<Ended>,
}

/// Whether an entry was applied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Applied: its effects are in the domain's outbox.
    Applied,
    /// Stored too late ([`STORE_WITHIN_MS`]): not applied anywhere.
    Late,
    /// Not applied: malformed, a repeat, or from an incarnation that is
    /// over or never said hello.
    Ignored,
}

/// Why this node's incarnation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ended {
    /// Silent in the log for the node timeout while others were not.
    Dead,
    /// Another live node has the same name.
    NameTaken,
    /// It left (its `Leave` was applied).
    Left,
}

/// A live incarnation, as the log knows it.
#[derive(Debug, Clone)]
struct Node {
    name: String,
    /// Its sessions' group in the domain.
    group: u32,
    /// The log time of its last entry.
    last_ms: u64,
    /// The number of its last batch applied.
    last_number: u64,
}

/// The state of the cluster beside the domain's (see the module
/// documentation).
#[derive(Debug)]
pub struct Replica {
    /// This node's current incarnation.
    me: Incarnation,
    /// The cluster's settings, once the log has founded it.
    settings: Option<Settings>,
    /// The cluster's accounts, once founded.
    accounts: Option<Vec<Account>>,
    /// Live incarnations by id.
    nodes: HashMap<u64, Node>,
    /// Which incarnation each group is (index 0 is never used).
    groups: Vec<Option<u64>>,
    /// Incarnations that are over; their entries are ignored.
    over: HashSet<u64>,
    /// The connection of each session id.
    owners: Vec<Option<(u64, u64)>>,
    /// The session ids free below `owners.len()`: a new connection gets
    /// the lowest, so every replica gives the same.
    free: BTreeSet<usize>,
    /// The session of each connection.
    sessions: HashMap<(u64, u64), SessionId>,
    /// Sessions whose connections went away in the batch being applied:
    /// their ids are freed when it is.
    gone: Vec<SessionId>,
    /// The log time of the last entry applied.
    log_ms: u64,
    /// Where log time 0 is as an `Instant`, set at the first entry.
    anchor: Option<WallClock>,
    /// When the log came back after a gap every node shared.
    resumed_ms: u64,
    /// The stream sequence of the last entry handled.
    seq: u64,
}

impl Replica {
    /// A replica of an empty log, for the node running as `me`.
    pub fn new(me: Incarnation) -> Replica {
        Replica {
            me,
            settings: None,
            accounts: None,
            nodes: HashMap::new(),
            groups: vec![None],
            over: HashSet::new(),
            owners: Vec::new(),
            free: BTreeSet::new(),
            sessions: HashMap::new(),
            gone: Vec::new(),
            log_ms: 0,
            anchor: None,
            resumed_ms: 0,
            seq: 0,
        }
    }

    /// This node's current incarnation.
    pub fn me(&self) -> &Incarnation {
        &self.me
    }

    /// Starts a new incarnation of this node (the last one ended): what
    /// it publishes from now on is a new node to the cluster.
    pub fn rejoin(&mut self, id: u64) {
        self.me.id = id;
    }

    /// The cluster's settings and accounts, once the log founded it.
    pub fn founded(&self) -> Option<(&Settings, &[Account])> {
        Some((self.settings.as_ref()?, self.accounts.as_deref()?))
    }

    /// The stream sequence of the last entry handled.
    pub fn seq(&self) -> u64 {
        self.seq
    }

    /// The log's time, in milliseconds since the epoch (0 before the
    /// first entry).
    pub fn log_ms(&self) -> u64 {
        self.log_ms
    }

    /// The connection of session `sid`: its incarnation id and serial.
    pub fn owner(&self, sid: SessionId) -> Option<(u64, u64)> {
        self.owners.get(sid.0).copied().flatten()
    }

    /// The session of this node's connection `conn`, once its `Connect`
    /// is applied.
    pub fn session(&self, conn: u64) -> Option<SessionId> {
        self.sessions.get(&(self.me.id, conn)).copied()
    }

    /// The domain group of this node's sessions, once its `Hello` is
    /// applied.
    pub fn my_group(&self) -> Option<u32> {
        self.nodes.get(&self.me.id).map(|node| node.group)
    }

    /// When a new run of the node `name` may join, in log time: a live
    /// incarnation of that name is replaced only once it has been silent
    /// for the node timeout. `None`: no live incarnation has the name.
    pub fn name_free_at(&self, name: &str) -> Option<u64> {
        let timeout = self.settings.as_ref().map_or(0, |s| s.node_timeout_ms);
        self.nodes
            .iter()
            .find(|(&id, node)| id != self.me.id && node.name == name)
            .map(|(_, node)| node.last_ms.saturating_add(timeout))
    }

    /// Whether this node is the one that takes snapshots: the live node
    /// with the lowest group.
    pub fn takes_snapshots(&self) -> bool {
        let lowest = self.groups.iter().flatten().next();
        lowest == Some(&self.me.id)
    }

    /// How many nodes are live.
    pub fn live_nodes(&self) -> usize {
        self.nodes.len()
    }

    /// How often a node must publish at least one batch: a fifth of the
    /// node timeout, between 100 ms and 1 s.
    pub fn heartbeat(&self) -> Duration {
        let timeout = self.settings.as_ref().map_or(5_000, |s| s.node_timeout_ms);
        Duration::from_millis((timeout / 5).clamp(100, 1_000))
    }

    /// The `Instant` the domain uses for log time `ms`.
    pub fn instant(&mut self, ms: u64) -> Instant {
        let anchor = *self.anchor.get_or_insert_with(|| anchor_at(ms));
        let ahead = Duration::from_millis(ms.saturating_sub(anchor.unix_ms));
        anchor.at.checked_add(ahead).unwrap_or(anchor.at)
    }

    /// The log time, in milliseconds since the epoch, of a domain
    /// `Instant` (for the deadlines the domain reports).
    pub fn log_time(&self, at: Instant) -> u64 {
        self.anchor.map_or(0, |anchor| anchor.unix_ms(at))
    }

    /// The pairing of domain `Instant`s with log time, once set.
    pub fn anchor(&self) -> Option<WallClock> {
        self.anchor
    }

    /// Applies the entry at stream sequence `seq`, which the stream stored
    /// at `stored_ms`, to `chat`.
    pub fn apply(&mut self, chat: &mut Chat, seq: u64, stored_ms: u64, payload: &[u8]) -> Outcome {
        self.seq = seq;
        let Ok(batch) = Batch::decode(payload) else {
            return self.outcome(None, Fate::Ignored);
        };
        let mine = (batch.from == self.me).then_some(batch.number);
        if stored_ms > batch.clock_ms.saturating_add(STORE_WITHIN_MS) {
            return self.outcome(mine, Fate::Late);
        }
        let id = batch.from.id;
        if self.over.contains(&id) {
            return self.outcome(mine, Fate::Ignored);
        }
        if let Some(node) = self.nodes.get(&id) {
            if batch.number <= node.last_number {
                return self.outcome(mine, Fate::Ignored);
            }
        } else if batch.inputs.first() != Some(&Input::Hello) {
            return self.outcome(mine, Fate::Ignored);
        }
        let ms = batch.clock_ms.max(self.log_ms);
        let first = self.anchor.is_none();
        let now = self.instant(ms);
        if let Some(anchor) = self.anchor.filter(|_| first) {
            chat.set_wall_clock(anchor);
        }
        let heartbeat = self.heartbeat().as_millis() as u64;
        if self.log_ms > 0 && ms.saturating_sub(self.log_ms) >= 2 * heartbeat {
            self.resumed_ms = ms;
        }
        self.log_ms = ms;
        let mut ended = None;
        for input in &batch.inputs {
            if self.over.contains(&id) {
                break;
            }
            self.input(chat, &batch.from, input, now, &mut ended);
        }
        if let Some(node) = self.nodes.get_mut(&id) {
            node.last_ms = ms;
            node.last_number = batch.number;
            let group = node.group;
            chat.expire_group(group, now);
        }
        self.find_the_dead(chat, id, now, &mut ended);
        for sid in std::mem::take(&mut self.gone) {
            self.release(sid);
        }
        Outcome {
            mine,
            fate: Fate::Applied,
            ended,
        }
    }

    fn outcome(&self, mine: Option<u64>, fate: Fate) -> Outcome {
        Outcome {
            mine,
            fate,
            ended: None,
        }
    }

    /// One input of a batch from `from`, at `now`.
    fn input(
        &mut self,
        chat: &mut Chat,
        from: &Incarnation,
        input: &Input,
        now: Instant,
        ended: &mut Option<Ended>,
    ) {
        let id = from.id;
        let session = |conn: &u64| self.sessions.get(&(id, *conn)).copied();
        match input {
            Input::Hello => {
                if self.nodes.contains_key(&id) {
                    return;
                }
                let twin = self.nodes.iter().find(|(_, node)| node.name == from.node);
                if let Some((&twin, node)) = twin {
                    // A run of this node that was killed may be replaced
                    // once it has been silent for the node timeout.
                    let timeout = self.settings.as_ref().map_or(0, |s| s.node_timeout_ms);
                    if self.log_ms.saturating_sub(node.last_ms) < timeout {
                        self.over.insert(id);
                        if id == self.me.id {
                            *ended = Some(Ended::NameTaken);
                        }
                        return;
                    }
                    self.end(chat, twin, now);
                }
                let group = self.free_group(id);
                let node = Node {
                    name: from.node.clone(),
                    group,
                    last_ms: self.log_ms,
                    last_number: 0,
                };
                self.nodes.insert(id, node);
            }
            Input::Found { settings, accounts } => {
                if self.settings.is_none() {
                    self.settings = Some(settings.clone());
                    self.accounts = Some(accounts.clone());
                }
            }
            Input::Accounts(accounts) => {
                self.accounts = Some(accounts.clone());
                chat.reload_accounts(accounts.clone(), now);
            }
            Input::Connect {
                conn,
                ip,
                trusted,
                web,
            } => {
                let Some(group) = self.nodes.get(&id).map(|node| node.group) else {
                    return;
                };
                if session(conn).is_some() {
                    return;
                }
                let sid = self.allocate((id, *conn));
                chat.connect_in(sid, *ip, *trusted, group, now);
                if *web {
                    chat.without_private(sid);
                }
            }
            Input::Line { conn, text, token } => {
                if let Some(sid) = session(conn) {
                    match token {
                        Some(token) => chat.line_drawn(sid, text, *token, now),
                        None => chat.line(sid, text, now),
                    }
                }
            }
            Input::LineError { conn, error } => {
                if let Some(sid) = session(conn) {
                    chat.line_error(sid, *error, now);
                }
            }
            Input::Password { conn, matches } => {
                if let Some(sid) = session(conn) {
                    chat.password_judged(sid, *matches, now);
                }
            }
            Input::Written { conn, lines } => {
                if let Some(sid) = session(conn) {
                    chat.backlog_written(sid, usize::try_from(*lines).unwrap_or(usize::MAX));
                }
            }
            Input::Disconnect { conn } => {
                if let Some(sid) = self.sessions.remove(&(id, *conn)) {
                    chat.disconnect(sid, now);
                    self.gone.push(sid);
                }
            }
            Input::Leave => {
                self.end(chat, id, now);
                if id == self.me.id {
                    *ended = Some(Ended::Left);
                }
            }
        }
    }

    /// Declares dead every node other than `publisher` that has been
    /// silent for the node timeout since its last entry or since the log
    /// resumed after a shared gap, whichever is later.
    fn find_the_dead(
        &mut self,
        chat: &mut Chat,
        publisher: u64,
        now: Instant,
        ended: &mut Option<Ended>,
    ) {
        let Some(timeout) = self.settings.as_ref().map(|s| s.node_timeout_ms) else {
            return;
        };
        let silent: Vec<u64> = self
            .groups
            .iter()
            .flatten()
            .copied()
            .filter(|&id| id != publisher)
            .filter(|id| {
                self.nodes.get(id).is_some_and(|node| {
                    self.log_ms
                        .saturating_sub(node.last_ms.max(self.resumed_ms))
                        >= timeout
                })
            })
            .collect();
        for id in silent {
            self.end(chat, id, now);
            if id == self.me.id {
                *ended = Some(Ended::Dead);
            }
        }
    }

    /// Ends incarnation `id`: its sessions end (announced), its
    /// connections are forgotten, and its later entries are ignored.
    fn end(&mut self, chat: &mut Chat, id: u64, now: Instant) {
        let Some(node) = self.nodes.remove(&id) else {
            return;
        };
        self.over.insert(id);
        chat.end_group(node.group, now);
        if let Some(slot) = self.groups.get_mut(node.group as usize) {
            *slot = None;
        }
        let gone: Vec<usize> = self
            .owners
            .iter()
            .enumerate()
            .filter(|(_, owner)| owner.is_some_and(|owner| owner.0 == id))
            .map(|(sid, _)| sid)
            .collect();
        for sid in gone {
            if let Some(owner) = self.owners[sid] {
                self.sessions.remove(&owner);
            }
            self.gone.push(SessionId(sid));
        }
    }

    /// The lowest free session id, given to connection `owner`.
    fn allocate(&mut self, owner: (u64, u64)) -> SessionId {
        let index = match self.free.pop_first() {
            Some(index) => index,
            None => {
                self.owners.push(None);
                self.owners.len() - 1
            }
        };
        self.owners[index] = Some(owner);
        self.sessions.insert(owner, SessionId(index));
        SessionId(index)
    }

    /// Frees session id `sid`.
    fn release(&mut self, sid: SessionId) {
        if let Some(slot) = self.owners.get_mut(sid.0) {
            *slot = None;
            self.free.insert(sid.0);
        }
    }

    /// The lowest group no live incarnation has, given to `id`.
    fn free_group(&mut self, id: u64) -> u32 {
        let index = match self.groups.iter().skip(1).position(Option::is_none) {
            Some(free) => free + 1,
            None => {
                self.groups.push(None);
                self.groups.len() - 1
            }
        };
        self.groups[index] = Some(id);
        u32::try_from(index).unwrap_or(u32::MAX)
    }
}

/// How far past the present the anchor's `Instant` is put, so that any
/// log time before the anchor (a snapshot's sessions, presence history)
/// is an `Instant` too: 2^30 seconds, about 34 years.
const ANCHOR_HEADROOM: Duration = Duration::from_secs(1 << 30);

/// The pairing of log time `ms` with an `Instant` (see
/// [`ANCHOR_HEADROOM`]).
pub fn anchor_at(ms: u64) -> WallClock {
    let now = Instant::now();
    WallClock {
        at: now.checked_add(ANCHOR_HEADROOM).unwrap_or(now),
        unix_ms: ms,
    }
}

impl Replica {
    /// Appends the replica's state (everything but the domain's and this
    /// node's incarnation) for a snapshot.
    pub fn save(&self, out: &mut Vec<u8>) {
        put_u64(out, self.seq);
        put_u64(out, self.log_ms);
        put_u64(out, self.resumed_ms);
        match (&self.settings, &self.accounts) {
            (Some(settings), Some(accounts)) => {
                out.push(1);
                settings.save(out);
                put_accounts(out, accounts);
            }
            _ => out.push(0),
        }
        let mut nodes: Vec<(&u64, &Node)> = self.nodes.iter().collect();
        nodes.sort_unstable_by_key(|(id, _)| **id);
        put_u64(out, nodes.len() as u64);
        for (id, node) in nodes {
            put_u64(out, *id);
            put_bytes(out, node.name.as_bytes());
            put_u64(out, u64::from(node.group));
            put_u64(out, node.last_ms);
            put_u64(out, node.last_number);
        }
        let mut over: Vec<u64> = self.over.iter().copied().collect();
        over.sort_unstable();
        put_u64(out, over.len() as u64);
        for id in over {
            put_u64(out, id);
        }
        put_u64(out, self.owners.len() as u64);
        for owner in &self.owners {
            match owner {
                Some((id, conn)) => {
                    out.push(1);
                    put_u64(out, *id);
                    put_u64(out, *conn);
                }
                None => out.push(0),
            }
        }
    }

    /// A replica as [`Replica::save`] wrote it, for the node running as
    /// `me`; its domain time is anchored at the snapshot's log time.
    pub fn load(r: &mut Reader<'_>, me: Incarnation) -> Result<Replica, DecodeError> {
        let mut replica = Replica::new(me);
        replica.seq = r.u64()?;
        replica.log_ms = r.u64()?;
        replica.resumed_ms = r.u64()?;
        if r.byte()? == 1 {
            replica.settings = Some(Settings::load(r)?);
            replica.accounts = Some(r.accounts()?);
        }
        for _ in 0..r.count()? {
            let id = r.u64()?;
            let node = Node {
                name: r.string()?,
                group: u32::try_from(r.u64()?).map_err(|_| DecodeError("group out of range"))?,
                last_ms: r.u64()?,
                last_number: r.u64()?,
            };
            let index = node.group as usize;
            if index == 0 || index > MAX_COUNT as usize {
                return Err(DecodeError("group out of range"));
            }
            if replica.groups.len() <= index {
                replica.groups.resize(index + 1, None);
            }
            replica.groups[index] = Some(id);
            replica.nodes.insert(id, node);
        }
        for _ in 0..r.count()? {
            replica.over.insert(r.u64()?);
        }
        for index in 0..r.count()? {
            let owner = match r.byte()? {
                1 => Some((r.u64()?, r.u64()?)),
                _ => None,
            };
            let index = index as usize;
            replica.owners.push(owner);
            match owner {
                Some(owner) => {
                    replica.sessions.insert(owner, SessionId(index));
                }
                None => {
                    replica.free.insert(index);
                }
            }
        }
        replica.anchor = Some(anchor_at(replica.log_ms));
        Ok(replica)
    }
}
