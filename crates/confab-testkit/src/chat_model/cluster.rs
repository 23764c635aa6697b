//! The replicated mode: every operation of a run also goes through a
//! cluster of two nodes, as the nodes would publish it, and what the
//! cluster does is held to what the single server did.
//!
//! Session `s` is held by node `s % 2`, alpha or beta. Each node is a
//! [`Replica`] over a [`Chat`] of its own, and both apply every entry of
//! one log, in order. An operation becomes the inputs its owner would
//! publish: a connect; a line, or at the password prompt (as the owner's
//! replica says at publish time) only the owner's verdict on it, and a
//! `startprivate` with the token the single server drew for it; a line
//! that could not be decoded; the lines of offline mail written; a
//! disconnect. A clock step is an empty batch from each node, alpha's
//! first. The inputs of a node's operations gather in its batch while the
//! run's bytes say so. Beta's clock may be behind alpha's by up to 300 ms,
//! the stream storing its batches at the true time (never too late). One
//! entry in eight is applied again after its batch, and one in eight cut
//! short, both of which every replica must ignore.
//!
//! The comparison is exact because of what the harness keeps so:
//!
//! - The log's order is the single server's: a batch holds operations of
//!   one node that came one after the other, and is published before the
//!   other node's next operation, so the domain calls are the same, in the
//!   same order, with the same times.
//! - A line of a session that is not logged in waits until the session's
//!   earlier inputs are applied (the server reads one line at a time
//!   before login), so that its owner knows at publish time whether it
//!   is a password; offline mail is pulled from a replica that has
//!   applied the session's inputs.
//! - A connect is published at once, and the single server's session gets
//!   the id the cluster gave the connection; its sessions are in the
//!   groups of their nodes. So timers due at the same time fire in the
//!   same order, and `expire` fires alpha's before beta's, as the ticks do.
//! - Time moves only with an `expire` (see the generator): a node fires
//!   its timers in every batch it applies, which then finds nothing due.
//!
//! After every batch that leaves nothing unpublished (for a clock step,
//! after both ticks), and before an operation that needs one published:
//!
//! - each node's effects on its own sessions (those that
//!   [`Replica::owner`] says are connections of its incarnation), in
//!   order, of the same kinds and bytes, are the single server's effects
//!   on the same connections, of those still open then (a connection gone
//!   within a batch gets nothing after the batch);
//! - both replicas emit the same effects, on every session, and judge
//!   every entry alike, as published, repeated or cut;
//! - both replicas are in the state of the single server: their saved
//!   states ([`Chat::save_state`], every instant as a wall time) are the
//!   single server's, byte for byte, and so are, as the public calls show
//!   them, who is online, every mailbox and the bytes stored, every
//!   session's backlog and password prompt (by session id, which all
//!   three share), the next deadline and each group's;
//! - the replicas' snapshots ([`snapshot::encode`]: the replica's state and
//!   the domain's) are the same bytes, and they agree on log time,
//!   sequence, owners and live nodes;
//! - no replica's domain draws a token of its own.
//!
//! A cluster has no shutdown: at the single server's, each node leaves
//! instead, and the replicas must then still agree, with nobody online.

use confab::chat::WallClock;
use confab::cluster::entry::{Batch, Incarnation, Input, Settings};
use confab::cluster::replica::{Ended, Fate, Outcome, Replica};
use confab::cluster::snapshot;
use confab::passwords;
use confab::protocol::Command;

use super::*;

/// The nodes' names; session `s` is held by node `s % 2`.
const NAMES: [&str; 2] = ["alpha", "beta"];
/// The nodes' incarnation ids.
const IDS: [u64; 2] = [0xa1fa, 0xbe7a];
/// The log time of the run's start, in milliseconds since the epoch.
const EPOCH_MS: u64 = 1_764_000_000_000;
/// How long a node may be silent: longer than any clock step, and both
/// nodes tick at every step.
const NODE_TIMEOUT_MS: u64 = 5_000;
/// The token given with a `startprivate` that the single server refused
/// before drawing one: [`counted_token`] never gives it, so a replica that
/// introduced with it would show.
const UNDRAWN: [u8; TOKEN_BYTES] = [0; TOKEN_BYTES];
/// Session ids the state comparison reads: more than can be in use.
const SIDS: usize = 2 * SESSIONS;
/// How many recent entries a failure report lists.
const ENTRY_TRACE: usize = 16;

thread_local! {
    /// Tokens the replicas' domains drew themselves, which they must never
    /// do: every line that introduces comes with its token.
    static STRAY_DRAWS: Cell<u64> = const { Cell::new(0) };
}

/// The replicas' token source: counts a draw, and gives nothing.
fn stray_draw() -> Option<[u8; TOKEN_BYTES]> {
    STRAY_DRAWS.set(STRAY_DRAWS.get() + 1);
    None
}

/// The single server's wall clock, whose run starts at `t0`: at the log
/// time of the cluster's start, so that both store mail with the same
/// times and their saved states can be compared.
pub(super) fn wall_clock(t0: Instant) -> WallClock {
    WallClock {
        at: t0,
        unix_ms: EPOCH_MS,
    }
}

/// The id of session `s` while it has no connection: one that the cluster
/// never gives, so that the single server's calls on it do nothing.
pub(super) fn unused_sid(s: usize) -> SessionId {
    SessionId(usize::MAX - s)
}

/// `Ok` if `mine` and `theirs` are equal; else says so, naming them with
/// `what`.
fn agree<T: PartialEq + std::fmt::Debug>(
    mine: T,
    theirs: T,
    what: impl FnOnce() -> String,
) -> Result<(), String> {
    match mine == theirs {
        true => Ok(()),
        false => Err(format!("{} differ: {mine:?} and {theirs:?}", what())),
    }
}

/// `Ok` if `mine` and `theirs` are the same bytes; else says where `what`
/// first differ.
fn same_bytes(mine: &[u8], theirs: &[u8], what: &str) -> Result<(), String> {
    if mine == theirs {
        return Ok(());
    }
    let at = mine.iter().zip(theirs).take_while(|(a, b)| a == b).count();
    Err(format!(
        "{what} differ from byte {at} on ({} and {} bytes): {:02x?} and {:02x?}",
        mine.len(),
        theirs.len(),
        &mine[at..mine.len().min(at + 16)],
        &theirs[at..theirs.len().min(at + 16)]
    ))
}

/// The node that holds session `s`'s connections.
fn node_of(s: usize) -> usize {
    s % 2
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What the single server's harness hands the cluster: its domain, model
/// and session ids, at the same point of the run as the cluster.
pub(super) struct Reference<'a> {
    pub(super) chat: &'a Chat,
    pub(super) t0: Instant,
    pub(super) model: &'a Model,
    pub(super) sids: &'a [SessionId; SESSIONS],
}

/// One node: its replica and domain, and the server's side of it.
struct Node {
    replica: Replica,
    chat: Chat,
    /// The batch being gathered.
    pending: Vec<Input>,
    /// The log time of the operations in `pending`.
    pending_ms: u64,
    /// How many operations put inputs in `pending`.
    pending_ops: usize,
    /// Batches published.
    published: u64,
    /// The serial of the last connection.
    last_conn: u64,
    /// Each session's connection, while it has one.
    conns: [Option<u64>; SESSIONS],
    /// The session of every connection it ever had.
    sessions: HashMap<u64, usize>,
    /// Its effects on its own connections since the last check: the
    /// session, the connection, the effect.
    got: Vec<(usize, u64, Done)>,
}

impl Node {
    fn new(n: usize) -> Node {
        let mut chat = Chat::new(accounts(), config());
        chat.set_token_source(stray_draw);
        let me = Incarnation {
            node: NAMES[n].to_owned(),
            id: IDS[n],
        };
        Node {
            replica: Replica::new(me),
            chat,
            pending: Vec::new(),
            pending_ms: 0,
            pending_ops: 0,
            published: 0,
            last_conn: 0,
            conns: [None; SESSIONS],
            sessions: HashMap::new(),
            got: Vec::new(),
        }
    }

    /// The domain's id of session `s`'s connection, once its connect is
    /// applied.
    fn sid(&self, s: usize) -> Result<(u64, SessionId), String> {
        let conn = self.conns[s].ok_or(format!("session {s} has no connection"))?;
        let sid = self.replica.session(conn).ok_or(format!(
            "the replica has no session for session {s}'s connection {conn}"
        ))?;
        Ok((conn, sid))
    }
}

/// The cluster of the replicated mode, and what it checks against.
pub(super) struct Cluster {
    nodes: [Node; 2],
    /// The stream sequence of the last entry.
    seq: u64,
    /// The single server's effects since the last check: the session, the
    /// connection it had then, the effect.
    expected: Vec<(usize, Option<u64>, Done)>,
    /// Sessions with inputs in a batch not yet published.
    waiting: [bool; SESSIONS],
    /// Sessions that were logged in at the last check and are on the same
    /// connection since.
    settled: [bool; SESSIONS],
    /// The run's byte for this operation: whether its inputs wait for
    /// more, and whether its batch is applied again or cut.
    batching: u8,
    /// The last entries, for a failure report.
    trace: VecDeque<String>,
    stats: Stats,
}

impl Cluster {
    /// The two nodes, alpha founding the cluster and beta joining it.
    pub(super) fn new() -> Result<Cluster, String> {
        STRAY_DRAWS.set(0);
        let mut cluster = Cluster {
            nodes: [Node::new(0), Node::new(1)],
            seq: 0,
            expected: Vec::new(),
            waiting: [false; SESSIONS],
            settled: [false; SESSIONS],
            batching: 1,
            trace: VecDeque::new(),
            stats: Stats::default(),
        };
        let config = config();
        let settings = Settings {
            block_ms: millis(config.block_duration),
            timeout_ms: millis(config.timeout),
            login_timeout_ms: millis(config.login_timeout),
            max_failures_per_ip: config.max_failures_per_ip,
            mailbox_max: u64::try_from(config.mailbox_max).unwrap_or(u64::MAX),
            store_max: config.store_max,
            node_timeout_ms: NODE_TIMEOUT_MS,
        };
        let found = Input::Found {
            settings,
            accounts: accounts(),
        };
        cluster.nodes[0].pending = vec![Input::Hello, found];
        cluster.publish(0, 0, false)?;
        cluster.nodes[1].pending = vec![Input::Hello];
        cluster.publish(1, 0, false)?;
        for (n, node) in cluster.nodes.iter().enumerate() {
            let group = node.replica.my_group();
            if group != Some(n as u32 + 1) || node.replica.live_nodes() != 2 {
                return Err(format!("{} joined as group {group:?}", NAMES[n]));
            }
        }
        Ok(cluster)
    }

    /// The domain group of session `s`'s node.
    pub(super) fn group(&self, s: usize) -> u32 {
        self.nodes[node_of(s)].replica.my_group().unwrap_or(0)
    }

    /// Takes the run's byte for the next operation.
    pub(super) fn batching(&mut self, byte: u8) {
        self.batching = byte;
    }

    /// Whether the operation's inputs wait in the batch for more.
    fn gathers(&self) -> bool {
        self.batching & 3 != 0
    }

    /// Adds what the cluster exercised to `stats`.
    pub(super) fn add_stats(&self, stats: &mut Stats) {
        stats.add(&self.stats);
    }

    /// The last entries, for a failure report.
    pub(super) fn report(&self) -> String {
        let mut report = String::from("last entries:\n");
        for entry in &self.trace {
            let _ = writeln!(report, "  {entry}");
        }
        report
    }

    /// Before the single server runs `op`: publishes what must be applied
    /// first, checking when that leaves nothing unpublished; a connect is
    /// published at once, and the id its session got is returned.
    pub(super) fn before(
        &mut self,
        op: &Op,
        reference: &Reference<'_>,
    ) -> Result<Option<SessionId>, String> {
        let now = millis(reference.model.now);
        let mut flushed = false;
        match op {
            Op::Release => return Ok(None),
            Op::Advance { .. } | Op::Shutdown => {
                flushed |= self.flush(0, now)?;
                flushed |= self.flush(1, now)?;
            }
            Op::Connect(s)
            | Op::Disconnect(s)
            | Op::Line(s, ..)
            | Op::LineError(s, _)
            | Op::Mail { s, .. } => {
                let (s, n) = (*s, node_of(*s));
                flushed |= self.flush(1 - n, now)?;
                let logged_in = matches!(
                    reference.model.slots[s],
                    Slot::Open {
                        stage: Stage::LoggedIn(_),
                        ..
                    }
                );
                let serialised = matches!(op, Op::Line(..) | Op::LineError(..))
                    && !(self.settled[s] && logged_in);
                if self.waiting[s] && (serialised || matches!(op, Op::Mail { .. })) {
                    flushed |= self.flush(n, now)?;
                }
            }
        }
        if flushed && self.nodes.iter().all(|node| node.pending.is_empty()) {
            self.check(reference)?;
        }
        let Op::Connect(s) = *op else {
            return Ok(None);
        };
        let n = node_of(s);
        let node = &mut self.nodes[n];
        node.last_conn += 1;
        let conn = node.last_conn;
        node.conns[s] = Some(conn);
        node.sessions.insert(conn, s);
        let connect = Input::Connect {
            conn,
            ip: SESSION_IPS[s],
            trusted: true,
            web: false,
        };
        self.push(n, s, connect, now)?;
        self.nodes[n].pending_ops += 1;
        self.settled[s] = false;
        self.flush(n, now)?;
        self.nodes[n].sid(s).map(|(_, sid)| Some(sid))
    }

    /// After the single server ran `op` (the model was `pre` before it,
    /// and `drawn` tokens had been drawn): its effects are expected of the
    /// cluster, its inputs join the owner's batch, and the batch is
    /// published and checked unless it gathers more.
    pub(super) fn after(
        &mut self,
        op: &Op,
        pre: &Model,
        actual: &Actual,
        drawn: u64,
        reference: &Reference<'_>,
    ) -> Result<(), String> {
        for (s, done) in &actual.effects {
            let conn = self.nodes[node_of(*s)].conns[*s];
            self.expected.push((*s, conn, done.clone()));
        }
        let now = millis(reference.model.now);
        let open = |s: usize| matches!(pre.slots[s], Slot::Open { .. });
        let (s, input) = match op {
            Op::Connect(_) => return self.check(reference),
            Op::Release => return Ok(()),
            Op::Advance { .. } => {
                self.publish(0, now, false)?;
                self.publish(1, now, false)?;
                return self.check(reference);
            }
            Op::Shutdown => return self.leave(now, reference),
            Op::Disconnect(s) => {
                self.settled[*s] = false;
                let conn = self.nodes[node_of(*s)].conns[*s].take();
                (*s, conn.map(|conn| Input::Disconnect { conn }))
            }
            Op::Line(s, raw, _) if open(*s) => match decode_line(raw) {
                Ok(None) => (*s, None),
                Ok(Some(text)) => (*s, Some(self.line(*s, text, pre, drawn)?)),
                Err(error) => {
                    let (conn, _) = self.nodes[node_of(*s)].sid(*s)?;
                    (*s, Some(Input::LineError { conn, error }))
                }
            },
            Op::LineError(s, error) if open(*s) => {
                let (conn, _) = self.nodes[node_of(*s)].sid(*s)?;
                let error = *error;
                (*s, Some(Input::LineError { conn, error }))
            }
            Op::Mail { s, .. } => (*s, self.mail(*s, actual)?),
            Op::Line(s, ..) | Op::LineError(s, _) => (*s, None),
        };
        let n = node_of(s);
        if let Some(input) = input {
            self.push(n, s, input, now)?;
            self.nodes[n].pending_ops += 1;
        }
        if !self.gathers() {
            self.flush(n, now)?;
            self.check(reference)?;
        }
        Ok(())
    }

    /// The input of session `s`'s line `text`, as its owner publishes it:
    /// at the password prompt only whether it is the password, and a
    /// `startprivate` with the token the single server drew for it (from
    /// `drawn` on), if it drew one.
    fn line(&mut self, s: usize, text: &str, pre: &Model, drawn: u64) -> Result<Input, String> {
        let node = &self.nodes[node_of(s)];
        let (conn, sid) = node.sid(s)?;
        let wanted = node.chat.password_wanted(sid);
        let prompted = matches!(
            pre.slots[s],
            Slot::Open {
                stage: Stage::Password(_),
                ..
            }
        );
        if wanted.is_some() != prompted {
            return Err(format!(
                "{}'s replica has session {s} at the password prompt: {}; the model: {prompted}",
                NAMES[node_of(s)],
                wanted.is_some()
            ));
        }
        if let Some(stored) = wanted {
            self.stats.verdicts += 1;
            let matches = stored.is_some_and(|stored| match passwords::is_hashed(stored) {
                true => passwords::verify_hash(stored, text),
                false => passwords::clear_matches(stored, text),
            });
            return Ok(Input::Password { conn, matches });
        }
        let token = matches!(protocol::parse(text), Ok(Command::StartPrivate { .. })).then(|| {
            if TOKENS_DRAWN.get() > drawn {
                self.stats.tokens_given += 1;
                token_for_draw(drawn)
            } else {
                Some(UNDRAWN)
            }
        });
        Ok(Input::Line {
            conn,
            text: text.to_owned(),
            token,
        })
    }

    /// The input of an [`Op::Mail`] step on session `s`: the owner pulls
    /// the same lines from its replica as the single server's harness did
    /// from its domain, and publishes how many of them were written.
    fn mail(&mut self, s: usize, actual: &Actual) -> Result<Option<Input>, String> {
        let Some(mail) = &actual.mail else {
            return Ok(None);
        };
        let node = &self.nodes[node_of(s)];
        let (conn, sid) = node.sid(s)?;
        let handed: Vec<String> = node
            .chat
            .backlog(sid, mail.from)
            .take(mail.hand)
            .map(|line| line.to_string())
            .collect();
        if handed != mail.handed {
            return Err(format!(
                "{}'s replica hands session {s} {handed:?} of its backlog from {}; the single \
                 server {:?}",
                NAMES[node_of(s)],
                mail.from,
                mail.handed
            ));
        }
        let lines = mail.written.len() as u64;
        Ok((lines > 0).then_some(Input::Written { conn, lines }))
    }

    /// Adds `input`, of session `s` at log time `now`, to node `n`'s batch.
    fn push(&mut self, n: usize, s: usize, input: Input, now: u64) -> Result<(), String> {
        let node = &mut self.nodes[n];
        if node.pending.is_empty() {
            node.pending_ms = now;
        } else if node.pending_ms != now {
            return Err(format!(
                "{}'s batch gathers inputs of {} ms and {now} ms",
                NAMES[n], node.pending_ms
            ));
        }
        node.pending.push(input);
        self.waiting[s] = true;
        Ok(())
    }

    /// Publishes node `n`'s batch, if it has one; whether it did.
    fn flush(&mut self, n: usize, now: u64) -> Result<bool, String> {
        if self.nodes[n].pending.is_empty() {
            return Ok(false);
        }
        let at = self.nodes[n].pending_ms;
        if at != now {
            return Err(format!(
                "{}'s batch of {at} ms is published at {now} ms",
                NAMES[n]
            ));
        }
        self.publish(n, now, false)?;
        Ok(true)
    }

    /// Publishes node `n`'s batch (empty: a tick) at log time `now` and
    /// applies it on both replicas, which must judge it alike and emit the
    /// same effects; each node keeps its effects on its own sessions. With
    /// `leaving`, the batch ends the node's incarnation. Then, as the
    /// operation's byte says, the entry is applied again, or cut short.
    fn publish(&mut self, n: usize, now: u64, leaving: bool) -> Result<(), String> {
        let node = &mut self.nodes[n];
        node.published += 1;
        let ops = std::mem::take(&mut node.pending_ops);
        // Beta's clock is behind alpha's by up to 300 ms, as the byte says:
        // every batch at a new time follows alpha's tick, so the log's
        // time is still the single server's.
        let behind = match n {
            0 => 0,
            _ => now.min(u64::from(self.batching >> 6) * 100),
        };
        let batch = Batch {
            from: node.replica.me().clone(),
            number: node.published,
            clock_ms: EPOCH_MS + now - behind,
            inputs: std::mem::take(&mut node.pending),
        };
        let stored_ms = EPOCH_MS + now;
        self.stats.batches += 1;
        self.stats.largest_batch = self.stats.largest_batch.max(batch.inputs.len());
        self.stats.clocks_behind += usize::from(behind > 0);
        self.stats.gathered_batches += usize::from(ops >= 2);
        self.stats.ticks += usize::from(batch.inputs.is_empty());
        let disconnect = batch
            .inputs
            .iter()
            .position(|input| matches!(input, Input::Disconnect { .. }));
        let reconnect = disconnect.is_some_and(|at| {
            let later = &batch.inputs[at..];
            later
                .iter()
                .any(|input| matches!(input, Input::Connect { .. }))
        });
        self.stats.reconnect_batches += usize::from(reconnect);
        let payload = batch.encode();
        let number = batch.number;
        let applied = |i: usize| Outcome {
            mine: (i == n).then_some(number),
            fate: Fate::Applied,
            ended: (leaving && i == n).then_some(Ended::Left),
        };
        let effects = self.apply(&batch, stored_ms, &payload, applied)?;
        for (i, effects) in effects.into_iter().enumerate() {
            let node = &mut self.nodes[i];
            let me = node.replica.me().id;
            let mine_before = node.got.len();
            for (sid, done) in effects {
                let Some((_, conn)) = node.replica.owner(sid).filter(|&(id, _)| id == me) else {
                    continue;
                };
                let Some(&s) = node.sessions.get(&conn) else {
                    return Err(format!(
                        "{}'s replica says it owns {sid:?} as connection {conn}, which it never had",
                        NAMES[i]
                    ));
                };
                node.got.push((s, conn, done));
            }
            if i != n && !batch.inputs.is_empty() {
                self.stats.cross_effects += node.got.len() - mine_before;
            }
        }
        if self.batching & 0x1c == 0 {
            let repeated = |i: usize| Outcome {
                mine: (i == n).then_some(number),
                fate: Fate::Ignored,
                ended: None,
            };
            self.ignored(&batch, stored_ms, &payload, repeated)?;
        }
        if self.batching & 0xe0 == 0x20 {
            let cut = |_| Outcome {
                mine: None,
                fate: Fate::Ignored,
                ended: None,
            };
            self.ignored(&batch, stored_ms, &payload[..payload.len() - 1], cut)?;
        }
        Ok(())
    }

    /// Applies `payload` (of `batch`, or not even a batch), stored at
    /// `stored_ms`, on both replicas, which must ignore it without a
    /// single effect.
    fn ignored(
        &mut self,
        batch: &Batch,
        stored_ms: u64,
        payload: &[u8],
        want: impl Fn(usize) -> Outcome,
    ) -> Result<(), String> {
        self.stats.ignored_entries += 1;
        let effects = self.apply(batch, stored_ms, payload, want)?;
        if let Some(effects) = effects.iter().find(|effects| !effects.is_empty()) {
            return Err(format!("an ignored entry had effects: {effects:?}"));
        }
        Ok(())
    }

    /// Applies `payload` (of `batch`), stored at `stored_ms`, as the next
    /// entry on both replicas: each must judge it as `want` says, and both
    /// emit the same effects, which are returned.
    fn apply(
        &mut self,
        batch: &Batch,
        stored_ms: u64,
        payload: &[u8],
        want: impl Fn(usize) -> Outcome,
    ) -> Result<[Vec<(SessionId, Done)>; 2], String> {
        self.seq += 1;
        if self.trace.len() == ENTRY_TRACE {
            self.trace.pop_front();
        }
        let (name, number, inputs) = (&batch.from.node, batch.number, &batch.inputs);
        let size = payload.len();
        self.trace.push_back(format!(
            "#{} {name} {number} at {} ms, stored at {} ms, {size} bytes: {inputs:?}",
            self.seq,
            batch.clock_ms - EPOCH_MS,
            stored_ms - EPOCH_MS
        ));
        let mut effects: [Vec<(SessionId, Done)>; 2] = Default::default();
        for (i, node) in self.nodes.iter_mut().enumerate() {
            let outcome = node
                .replica
                .apply(&mut node.chat, self.seq, stored_ms, payload);
            if outcome != want(i) {
                return Err(format!(
                    "{} judged entry {} as {outcome:?}, not {:?}",
                    NAMES[i],
                    self.seq,
                    want(i)
                ));
            }
            effects[i] = drain(&mut node.chat);
        }
        if effects[0] != effects[1] {
            return Err(format!(
                "the replicas' effects differ: alpha {:?}, beta {:?}",
                effects[0], effects[1]
            ));
        }
        if STRAY_DRAWS.get() > 0 {
            return Err("a replica's domain drew a token instead of the one given".into());
        }
        Ok(effects)
    }

    /// Each node's effects on its own sessions since the last check equal
    /// the single server's on those sessions' connections still open, and
    /// the replicas are in its state; nothing may wait unpublished.
    fn check(&mut self, reference: &Reference<'_>) -> Result<(), String> {
        if let Some(n) = (0..2).find(|&n| !self.nodes[n].pending.is_empty()) {
            return Err(format!("checked with {}'s batch unpublished", NAMES[n]));
        }
        for (n, node) in self.nodes.iter_mut().enumerate() {
            let want: Vec<(usize, u64, Done)> = self
                .expected
                .iter()
                .filter(|(s, _, _)| node_of(*s) == n)
                .filter_map(|(s, conn, done)| {
                    let open = node.conns[*s].filter(|open| Some(*open) == *conn)?;
                    Some((*s, open, done.clone()))
                })
                .collect();
            let got = std::mem::take(&mut node.got);
            if got != want {
                return Err(format!(
                    "{} did to its sessions (session, connection, effect) {got:?}; the single \
                     server {want:?}",
                    NAMES[n]
                ));
            }
        }
        self.expected.clear();
        self.waiting = [false; SESSIONS];
        for s in 0..SESSIONS {
            self.settled[s] = matches!(
                reference.model.slots[s],
                Slot::Open {
                    stage: Stage::LoggedIn(_),
                    ..
                }
            );
        }
        self.compare_replicas()?;
        self.compare_with(reference)
    }

    /// The two replicas agree on everything the log decides.
    fn compare_replicas(&self) -> Result<(), String> {
        let [a, b] = &self.nodes;
        let (a, b) = (&a.replica, &b.replica);
        let what = |what: &'static str| move || format!("the replicas' {what} (alpha, beta)");
        agree(a.log_ms(), b.log_ms(), what("log times"))?;
        agree(a.seq(), b.seq(), what("sequences"))?;
        agree(a.live_nodes(), b.live_nodes(), what("live nodes"))?;
        let unix_ms = |r: &Replica| r.anchor().map(|clock| clock.unix_ms);
        agree(unix_ms(a), unix_ms(b), what("anchors"))?;
        agree(a.founded(), b.founded(), what("foundings"))?;
        for sid in (0..SIDS).map(SessionId) {
            agree(a.owner(sid), b.owner(sid), || {
                format!("the replicas' owners of {sid:?} (alpha, beta)")
            })?;
        }
        let [a, b] = &self.nodes;
        same_bytes(
            &snapshot::encode(&a.replica, &a.chat),
            &snapshot::encode(&b.replica, &b.chat),
            "the replicas' snapshots (alpha, beta)",
        )
    }

    /// Both replicas' domains are in the single server's state, as far as
    /// it shows.
    fn compare_with(&self, reference: &Reference<'_>) -> Result<(), String> {
        let single = reference.chat;
        let since_t0 = |at: Option<Instant>| at.map(|at| millis(at - reference.t0));
        let mut single_state = Vec::new();
        single.save_state(wall_clock(reference.t0), &mut single_state);
        for (n, node) in self.nodes.iter().enumerate() {
            let (name, chat) = (NAMES[n], &node.chat);
            let mut state = Vec::new();
            if let Some(anchor) = node.replica.anchor() {
                chat.save_state(anchor, &mut state);
            }
            same_bytes(
                &state,
                &single_state,
                &format!("the saved states ({name}, the single server)"),
            )?;
            let since_epoch = |at: Option<Instant>| {
                at.map(|at| node.replica.log_time(at).saturating_sub(EPOCH_MS))
            };
            agree(chat.online_count(), single.online_count(), || {
                format!("online counts ({name}, the single server)")
            })?;
            agree(chat.stored_bytes(), single.stored_bytes(), || {
                format!("bytes stored ({name}, the single server)")
            })?;
            for (user, _) in ACCOUNTS {
                agree(chat.is_online(user), single.is_online(user), || {
                    format!("{user} online ({name}, the single server)")
                })?;
                agree(chat.mailbox_len(user), single.mailbox_len(user), || {
                    format!("{user}'s mailbox lengths ({name}, the single server)")
                })?;
            }
            let (mine, theirs) = (chat.next_deadline(), single.next_deadline());
            agree(since_epoch(mine), since_t0(theirs), || {
                format!("the next deadlines ({name}, the single server)")
            })?;
            for group in 1..=2 {
                let (mine, theirs) = (chat.next_deadline_of(group), single.next_deadline_of(group));
                agree(since_epoch(mine), since_t0(theirs), || {
                    format!("group {group}'s next deadlines ({name}, the single server)")
                })?;
            }
            for sid in (0..SIDS).map(SessionId) {
                if !chat.backlog(sid, 0).eq(single.backlog(sid, 0)) {
                    let lines = |chat: &Chat| -> Vec<String> {
                        chat.backlog(sid, 0).map(|line| line.to_string()).collect()
                    };
                    agree(lines(chat), lines(single), || {
                        format!("{sid:?}'s backlogs ({name}, the single server)")
                    })?;
                }
                agree(
                    chat.password_wanted(sid),
                    single.password_wanted(sid),
                    || format!("{sid:?}'s password prompts ({name}, the single server)"),
                )?;
            }
            for s in 0..SESSIONS {
                let Some(conn) = self.nodes[node_of(s)].conns[s] else {
                    continue;
                };
                let sid = reference.sids[s];
                agree(
                    node.replica.owner(sid),
                    Some((IDS[node_of(s)], conn)),
                    || format!("the owners of session {s}'s id {sid:?} ({name}, the harness)"),
                )?;
            }
        }
        Ok(())
    }

    /// The single server shut down, which a cluster cannot: each node
    /// leaves instead. The replicas must still agree, and nobody be online
    /// or waiting for a password.
    fn leave(&mut self, now: u64, reference: &Reference<'_>) -> Result<(), String> {
        for n in 0..2 {
            self.nodes[n].pending.push(Input::Leave);
            self.publish(n, now, true)?;
        }
        self.expected.clear();
        for node in &mut self.nodes {
            node.got.clear();
        }
        self.compare_replicas()?;
        for (n, node) in self.nodes.iter().enumerate() {
            let (name, chat) = (NAMES[n], &node.chat);
            if chat.online_count() != 0 || node.replica.live_nodes() != 0 {
                return Err(format!(
                    "{name}'s replica has {} online and {} nodes live after every node left",
                    chat.online_count(),
                    node.replica.live_nodes()
                ));
            }
            if let Some(sid) = (0..SIDS).find(|&sid| chat.password_wanted(SessionId(sid)).is_some())
            {
                return Err(format!(
                    "{name}'s replica has session id {sid} at a password prompt after every \
                     node left"
                ));
            }
            for (user, _) in ACCOUNTS {
                if chat.mailbox_len(user) != reference.chat.mailbox_len(user) {
                    return Err(format!("{user}'s mailbox changed when the nodes left"));
                }
            }
        }
        Ok(())
    }
}

impl Harness {
    /// Replicated mode: publishes what the cluster must apply before the
    /// single server runs `op`; a connect's session takes the id the
    /// cluster gave it.
    pub(super) fn replicate_before(&mut self, op: &Op) {
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        let reference = Reference {
            chat: &self.chat,
            t0: self.t0,
            model: &self.model,
            sids: &self.sids,
        };
        match (cluster.before(op, &reference), op) {
            (Ok(Some(sid)), Op::Connect(s)) => self.sids[*s] = sid,
            (Ok(_), _) => {}
            (Err(problem), _) => self.fail(problem),
        }
    }

    /// Replicated mode: hands the cluster the step the single server took
    /// (`pre` was the model before it, with `drawn` tokens drawn).
    pub(super) fn replicate_after(&mut self, op: &Op, pre: &Model, actual: &Actual, drawn: u64) {
        let Some(cluster) = self.cluster.as_deref_mut() else {
            return;
        };
        let reference = Reference {
            chat: &self.chat,
            t0: self.t0,
            model: &self.model,
            sids: &self.sids,
        };
        if let Err(problem) = cluster.after(op, pre, actual, drawn, &reference) {
            self.fail(problem);
        }
        // The cluster may give the id to another connection now.
        if let Op::Disconnect(s) = op {
            self.sids[*s] = unused_sid(*s);
        }
    }
}
