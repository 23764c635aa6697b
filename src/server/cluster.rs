//! Cluster mode in the poll loop: what happens on this node's connections
//! goes to the log, and the log comes back to the domain.
//!
//! In cluster mode the loop never calls the domain with what a connection
//! did. It queues an [`Input`] instead; at the end of each iteration the
//! queued inputs go out as one [`Batch`](entry::Batch) (one batch in flight at a time:
//! while it is out, the next one gathers everything meanwhile), through
//! the NATS side thread ([`Bridge`]). Every entry of the log, this node's
//! and every other's, comes back through the bridge and is applied by the
//! [`Replica`]; of the domain's effects, the node keeps those for its own
//! connections ([`Outbox::retarget`](crate::chat::Outbox::retarget)) and
//! the loop performs them as in a single server.
//!
//! What waits for the log:
//!
//! - **A connection that has not logged in** has one input in the log at a
//!   time: the next line is read only once the last is applied, so that
//!   when its password comes the node knows it is one, checks it itself
//!   (off the loop if hashed) and publishes only the verdict. No typed
//!   password ever enters the log.
//! - **Offline mail** read by a client is reported as [`Input::Written`];
//!   until that is applied, the lines stay in the replica's mailbox and
//!   the loop skips them.
//! - **While NATS is unreachable** inputs wait; a line that could not be
//!   published within [`STORAGE_WAIT`] is answered `Error. Server storage
//!   is unavailable` and dropped (never published, so never carried out
//!   later); a connection that could not be announced is closed with that
//!   line. A batch already handed to NATS is answered by the log alone:
//!   applied, or refused everywhere for coming too late
//!   ([`STORE_WITHIN_MS`](crate::cluster::replica::STORE_WITHIN_MS)).
//!   Departures and mail reports are kept until they go out.
//! - **Heartbeats and timers**: a node publishes at least one batch per
//!   heartbeat, and one as soon as a timer of its own sessions is due, so
//!   the log ticks its timers.

use std::collections::{HashMap, VecDeque};
use std::io;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use log::{debug, info, warn};
use mio::Waker;

use super::Server;
use crate::chat::{Chat, ChatConfig, SessionId, Verification};
use crate::cluster::bridge::{Bridge, Event, LogConfig};
use crate::cluster::entry::{self, Incarnation, Input, Settings};
use crate::cluster::replica::{Ended, Fate, Outcome, Replica};
use crate::cluster::{snapshot, ClusterConfig};
use crate::credentials::Account;
use crate::passwords;
use crate::protocol::{self, Command, LineError};
use crate::token;

/// How long an input may wait to be published before it is refused.
pub const STORAGE_WAIT: Duration = Duration::from_secs(3);
/// Most bytes of inputs in one batch.
const MAX_BATCH: usize = 256 * 1024;
/// Most bytes of inputs waiting to be published; past it, lines are
/// refused at once.
const MAX_QUEUED: usize = 16 << 20;
/// Log entries applied per loop iteration, so that a burst of the log
/// cannot keep the loop from its sockets.
const ENTRIES_PER_TURN: usize = 1024;
/// How long a start may take to reach NATS and catch up with the log.
const JOIN_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a stopping node waits for its departure to be in the log.
const LEAVE_WAIT: Duration = Duration::from_secs(2);

/// An input waiting to be published.
#[derive(Debug)]
struct Queued {
    input: Input,
    /// Its place among this node's inputs.
    index: u64,
    /// When it was queued.
    at: Instant,
}

/// A batch handed to NATS whose entry has not come back yet.
#[derive(Debug)]
struct Unapplied {
    number: u64,
    /// Whether NATS acknowledged it.
    stored: bool,
    inputs: Vec<(u64, Input)>,
}

/// A connection that reads nothing until its input `index` is handled.
#[derive(Debug)]
struct Awaiting {
    index: u64,
    /// What it sent after that input.
    rest: Vec<u8>,
}

/// This node's part in the cluster (see the module documentation).
pub struct Node {
    bridge: Bridge,
    replica: Replica,
    settings: Settings,
    pending: VecDeque<Queued>,
    pending_bytes: usize,
    unapplied: VecDeque<Unapplied>,
    next_number: u64,
    next_index: u64,
    /// This incarnation's connections by serial.
    conns: HashMap<u64, usize>,
    awaiting: HashMap<usize, Awaiting>,
    /// Backlog lines reported written and not yet applied, per connection.
    written: HashMap<usize, usize>,
    /// When the last batch went out.
    last_publish: Instant,
    /// The clock of the last batch published, in Unix milliseconds.
    last_clock_ms: u64,
    /// The incarnation ended for good (its name taken): the loop stops.
    failed: Option<String>,
    /// Entries were left for the next iteration.
    more: bool,
    /// How many entries apart snapshots are taken.
    snapshot_every: u64,
}

impl std::fmt::Debug for Node {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Node")
            .field("me", self.replica.me())
            .field("pending", &self.pending.len())
            .field("unapplied", &self.unapplied.len())
            .finish()
    }
}

/// The settings of a domain configuration and a node timeout.
fn settings(chat: &ChatConfig, node_timeout: Duration) -> Settings {
    let ms = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
    Settings {
        block_ms: ms(chat.block_duration),
        timeout_ms: ms(chat.timeout),
        login_timeout_ms: ms(chat.login_timeout),
        max_failures_per_ip: chat.max_failures_per_ip,
        mailbox_max: chat.mailbox_max as u64,
        store_max: chat.store_max,
        node_timeout_ms: ms(node_timeout),
    }
}

/// The wall clock now, in milliseconds since the epoch.
fn unix_ms() -> u64 {
    let since = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
}

/// A fresh incarnation id.
fn fresh_id() -> u64 {
    let mut bytes = [0u8; 8];
    if getrandom::fill(&mut bytes).is_err() {
        return unix_ms() ^ u64::from(std::process::id()) << 32;
    }
    u64::from_le_bytes(bytes)
}

/// The accounts in a canonical order, to compare two lists.
fn sorted(accounts: &[Account]) -> Vec<(&str, &str)> {
    let mut pairs: Vec<(&str, &str)> = accounts
        .iter()
        .map(|a| (a.username.as_str(), a.password.as_str()))
        .collect();
    pairs.sort_unstable();
    pairs
}

/// The line a node whose name is taken exits with.
fn name_taken(name: &str) -> String {
    format!("a node named {name} is already running in the cluster")
}

fn join_error(message: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, message)
}

impl Node {
    /// Joins the cluster, blocking (before the loop runs): reaches NATS,
    /// applies the log to `chat` until caught up, founds the cluster with
    /// these settings and accounts if the log is empty, or checks that
    /// they are the cluster's, and waits until its `Hello` is applied.
    /// Errors are one line each: NATS unreachable, settings or accounts
    /// that differ from the cluster's, a live node with the same name.
    pub fn join(
        config: &ClusterConfig,
        name: String,
        chat_config: ChatConfig,
        accounts: &[Account],
        chat: &mut Chat,
        waker: &Arc<Waker>,
    ) -> io::Result<Node> {
        let settings = settings(&chat_config, config.node_timeout);
        let waker = Arc::clone(waker);
        let log = LogConfig {
            url: config.url.clone(),
            stream: config.stream.clone(),
            replicas: config.replicas,
        };
        let bridge = Bridge::connect(
            &log,
            JOIN_TIMEOUT.min(Duration::from_secs(10)),
            Arc::new(move || {
                let _ = waker.wake();
            }),
        )?;
        let replica = Replica::new(Incarnation {
            node: name,
            id: fresh_id(),
        });
        let mut node = Node {
            bridge,
            replica,
            settings,
            pending: VecDeque::new(),
            pending_bytes: 0,
            unapplied: VecDeque::new(),
            next_number: 1,
            next_index: 0,
            conns: HashMap::new(),
            awaiting: HashMap::new(),
            written: HashMap::new(),
            last_publish: Instant::now(),
            last_clock_ms: 0,
            failed: None,
            more: false,
            snapshot_every: config.snapshot_every.max(1),
        };
        let deadline = Instant::now() + JOIN_TIMEOUT;
        if let Some((seq, bytes)) = node.bridge.latest_snapshot(JOIN_TIMEOUT)? {
            let me = node.replica.me().clone();
            let (replica, loaded) = snapshot::decode(&bytes, me, chat_config)
                .map_err(|e| join_error(format!("the cluster's snapshot at {seq}: {e}")))?;
            node.replica = replica;
            *chat = loaded;
            info!(target: "confab::cluster", "loaded the snapshot at {seq}");
        }
        let (first, last) = node.bridge.stream_bounds(JOIN_TIMEOUT)?;
        if first > node.replica.seq() + 1 && last > 0 {
            return Err(join_error(format!(
                "the cluster's log starts at {first}, after its newest snapshot ({})",
                node.replica.seq()
            )));
        }
        node.bridge.follow_from(node.replica.seq() + 1);
        node.catch_up(chat, deadline, |replica| replica.seq() >= last)?;
        let founding = node.replica.founded().is_none();
        if !founding {
            node.check_founding(accounts)?;
        }
        let name = node.replica.me().node.clone();
        if let Some(free_at) = node.replica.name_free_at(&name) {
            // An earlier run of this node: it is replaced once silent for
            // the node timeout (a running one keeps its name).
            let wait = Duration::from_millis(free_at.saturating_sub(unix_ms()) + 50);
            let until = Instant::now() + wait;
            let _ = node.catch_up(chat, until, |_| false);
        }
        node.queue(Input::Hello);
        if founding {
            node.queue(Input::Found {
                settings: node.settings.clone(),
                accounts: accounts.to_vec(),
            });
        }
        node.publish(Instant::now());
        node.catch_up(chat, deadline, |replica| replica.my_group().is_some())?;
        node.check_founding(accounts)?;
        info!(
            target: "confab::cluster",
            "joined as {} ({} nodes live, log at {})",
            name,
            node.replica.live_nodes(),
            node.replica.seq()
        );
        Ok(node)
    }

    /// Applies entries (dropping their effects: nobody is connected yet)
    /// until `done` holds; fails at `deadline`.
    fn catch_up(
        &mut self,
        chat: &mut Chat,
        deadline: Instant,
        done: impl Fn(&Replica) -> bool,
    ) -> io::Result<()> {
        while !done(&self.replica) {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "timed out catching up with the cluster's log",
                ));
            }
            let Some(event) = self.bridge.wait_event(left.min(Duration::from_millis(100))) else {
                if self.replica.my_group().is_none() && !self.unapplied.is_empty() {
                    continue;
                }
                self.heartbeat_if_due(Instant::now());
                continue;
            };
            let outcome = self.event(chat, event);
            chat.outbox().clear();
            let Some(outcome) = outcome else {
                continue;
            };
            if let Some(number) = outcome.mine {
                self.unapplied.retain(|batch| batch.number != number);
            }
            if outcome.ended == Some(Ended::NameTaken) {
                return Err(join_error(name_taken(&self.replica.me().node)));
            }
        }
        Ok(())
    }

    /// Fails unless the cluster's settings and accounts are this node's.
    fn check_founding(&self, accounts: &[Account]) -> io::Result<()> {
        let Some((settings, cluster_accounts)) = self.replica.founded() else {
            return Err(join_error("the cluster's log has no settings".into()));
        };
        if *settings != self.settings {
            return Err(join_error(format!(
                "the settings differ from the cluster's: here {:?}, in the cluster {:?}",
                self.settings, settings
            )));
        }
        if sorted(cluster_accounts) != sorted(accounts) {
            return Err(join_error(
                "the credentials file differs from the cluster's accounts: every node must \
                 load the same one"
                    .into(),
            ));
        }
        Ok(())
    }

    /// Publishes an empty batch if none went out for a heartbeat.
    fn heartbeat_if_due(&mut self, now: Instant) {
        if self.replica.my_group().is_some() && now >= self.last_publish + self.replica.heartbeat()
        {
            self.publish(now);
        }
    }

    /// Handles one event of the bridge; an entry is applied to `chat` and
    /// its outcome returned.
    fn event(&mut self, chat: &mut Chat, event: Event) -> Option<Outcome> {
        match event {
            Event::Up => {
                info!(target: "confab::cluster", "NATS reachable again");
                None
            }
            Event::Down => {
                warn!(target: "confab::cluster", "NATS unreachable; inputs wait");
                None
            }
            Event::Stored { number, .. } => {
                if let Some(batch) = self.unapplied.iter_mut().find(|b| b.number == number) {
                    batch.stored = true;
                }
                None
            }
            Event::Entry {
                seq,
                stored_unix_ms,
                payload,
            } => Some(self.replica.apply(chat, seq, stored_unix_ms, &payload)),
            Event::SnapshotSaved { seq } => {
                debug!(target: "confab::cluster", "snapshot through {seq} saved");
                None
            }
            Event::Problem(problem) => {
                warn!(target: "confab::cluster", "{problem}");
                None
            }
        }
    }

    /// Queues an input; returns its index.
    fn queue(&mut self, input: Input) -> u64 {
        let index = self.next_index;
        self.next_index += 1;
        self.pending_bytes += input.size();
        self.pending.push_back(Queued {
            input,
            index,
            at: Instant::now(),
        });
        index
    }

    /// Whether a batch is out and not yet acknowledged.
    fn in_flight(&self) -> bool {
        self.unapplied.iter().any(|batch| !batch.stored)
    }

    /// Publishes what is queued as one batch (an empty one is a
    /// heartbeat or a tick), unless a batch is in flight or NATS is
    /// unreachable.
    fn publish(&mut self, now: Instant) {
        if self.in_flight() || !self.bridge.is_up() {
            return;
        }
        let mut inputs = Vec::new();
        let mut size = 0;
        while let Some(queued) = self.pending.front() {
            let cost = queued.input.size();
            if !inputs.is_empty() && size + cost > MAX_BATCH {
                break;
            }
            size += cost;
            self.pending_bytes = self.pending_bytes.saturating_sub(cost);
            if let Some(queued) = self.pending.pop_front() {
                inputs.push((queued.index, queued.input));
            }
        }
        let number = self.next_number;
        self.next_number += 1;
        let clock_ms = unix_ms().max(self.last_clock_ms);
        let me = self.replica.me();
        let bytes = entry::encode(me, number, clock_ms, inputs.iter().map(|(_, input)| input));
        self.bridge
            .publish(number, entry::message_id(me, number), bytes);
        self.unapplied.push_back(Unapplied {
            number,
            stored: false,
            inputs,
        });
        self.last_publish = now;
        self.last_clock_ms = clock_ms;
    }

    /// The session of this node's connection `key` of `serial`.
    fn session(&self, serial: u64) -> Option<SessionId> {
        self.replica.session(serial)
    }
}

/// What the loop does with a connection after one of its lines.
pub enum Flow {
    /// Go on with its next line.
    Go,
    /// Read nothing more until the line is applied.
    Wait(u64),
    /// Its password is being verified off the loop.
    Verify(Verification),
}

impl Server {
    /// The cluster node, in cluster mode.
    fn node(&mut self) -> Option<&mut Node> {
        self.cluster.as_mut()
    }

    /// Whether this server is a node of a cluster.
    pub(super) fn cluster_mode(&self) -> bool {
        self.cluster.is_some()
    }

    /// A connection accepted (or upgraded to a WebSocket) in cluster mode.
    pub(super) fn cluster_connect(&mut self, key: usize, ip: IpAddr, trusted: bool, web: bool) {
        let Some(serial) = self.conns.live(key).map(|conn| conn.serial) else {
            return;
        };
        let Some(node) = self.node() else {
            return;
        };
        node.conns.insert(serial, key);
        node.queue(Input::Connect {
            conn: serial,
            ip: ip.to_canonical(),
            trusted,
            web,
        });
    }

    /// Whether connection `key` reads nothing until the log catches up.
    pub(super) fn awaits_log(&self, key: usize) -> bool {
        self.cluster
            .as_ref()
            .is_some_and(|node| node.awaiting.contains_key(&key))
    }

    /// One line (or line error) of connection `key` in cluster mode.
    pub(super) fn cluster_line(&mut self, key: usize, line: Result<String, LineError>) -> Flow {
        let Some(serial) = self.conns.live(key).map(|conn| conn.serial) else {
            return Flow::Go;
        };
        let Some(node) = self.cluster.as_mut() else {
            return Flow::Go;
        };
        if node.pending_bytes > MAX_QUEUED {
            self.deliver_line(key, protocol::STORAGE_UNAVAILABLE);
            return Flow::Go;
        }
        let sid = node.session(serial);
        let logged_in = sid.is_some_and(|sid| self.chat.logged_in(sid));
        let wanted = sid.and_then(|sid| self.chat.password_wanted(sid));
        let input = match (line, wanted) {
            (Ok(given), Some(stored)) => match stored {
                Some(stored) if passwords::is_hashed(stored) => {
                    let Some(sid) = sid else {
                        return Flow::Go;
                    };
                    // The answer goes to the log as a verdict, not to the
                    // domain: the epoch is not looked at.
                    return Flow::Verify(Verification {
                        session: sid,
                        epoch: serial,
                        given,
                        stored: stored.into(),
                    });
                }
                Some(stored) => Input::Password {
                    conn: serial,
                    matches: passwords::clear_matches(stored, &given),
                },
                None => Input::Password {
                    conn: serial,
                    matches: false,
                },
            },
            (Ok(text), None) => {
                let token = matches!(protocol::parse(&text), Ok(Command::StartPrivate { .. }))
                    .then(token::os_random);
                Input::Line {
                    conn: serial,
                    text,
                    token,
                }
            }
            (Err(error), _) => Input::LineError {
                conn: serial,
                error,
            },
        };
        let index = node.queue(input);
        match logged_in {
            true => Flow::Go,
            false => Flow::Wait(index),
        }
    }

    /// Makes connection `key` wait for its input `index`; `rest` is what
    /// it sent after it.
    pub(super) fn await_log(&mut self, key: usize, index: u64, rest: &[u8]) {
        if let Some(node) = self.node() {
            node.awaiting.insert(
                key,
                Awaiting {
                    index,
                    rest: rest.to_vec(),
                },
            );
        }
    }

    /// The verdict on a hashed password of connection `key`, verified off
    /// the loop: published, and the connection waits for it with `rest`.
    pub(super) fn cluster_verified(&mut self, key: usize, serial: u64, matches: bool, rest: &[u8]) {
        let Some(node) = self.node() else {
            return;
        };
        let index = node.queue(Input::Password {
            conn: serial,
            matches,
        });
        self.await_log(key, index, rest);
    }

    /// Connection `key` of `serial` is gone.
    pub(super) fn cluster_disconnect(&mut self, key: usize, serial: u64) {
        let Some(node) = self.node() else {
            return;
        };
        node.awaiting.remove(&key);
        node.written.remove(&key);
        if node.conns.remove(&serial).is_some() {
            node.queue(Input::Disconnect { conn: serial });
        }
    }

    /// `lines` more backlog lines of `key` reached its socket.
    pub(super) fn cluster_written(&mut self, key: usize, lines: usize) {
        let Some(serial) = self.conns.live(key).map(|conn| conn.serial) else {
            return;
        };
        let Some(node) = self.node() else {
            return;
        };
        *node.written.entry(key).or_default() += lines;
        node.queue(Input::Written {
            conn: serial,
            lines: lines as u64,
        });
    }

    /// The domain session of connection `key` and how many of its
    /// backlog lines were reported and are not applied yet.
    pub(super) fn backlog_session(&self, key: usize) -> Option<(SessionId, usize)> {
        let Some(node) = &self.cluster else {
            return Some((SessionId(key), 0));
        };
        let serial = self.conns.get(key)?.serial;
        let sid = node.session(serial)?;
        Some((sid, node.written.get(&key).copied().unwrap_or(0)))
    }

    /// Accounts reloaded (SIGHUP) in cluster mode: they go to the log, and
    /// every node switches when it is applied.
    pub(super) fn cluster_accounts(&mut self, accounts: Vec<Account>) {
        if let Some(node) = self.node() {
            node.queue(Input::Accounts(accounts));
        }
    }

    /// Sends a line of the protocol to connection `key` from the loop
    /// itself.
    fn deliver_line(&mut self, key: usize, line: &str) {
        let mut bytes = Vec::with_capacity(line.len() + 1);
        bytes.extend_from_slice(line.as_bytes());
        bytes.push(b'\n');
        self.deliver(key, &bytes);
    }

    /// Applies what the log brought (at most [`ENTRIES_PER_TURN`]),
    /// performs the effects for this node's connections, and handles the
    /// fate of this node's batches.
    pub(super) fn take_log(&mut self, now: Instant) {
        for _ in 0..ENTRIES_PER_TURN {
            let Some(node) = self.cluster.as_mut() else {
                return;
            };
            let Some(event) = node.bridge.try_event() else {
                node.more = false;
                return;
            };
            let Some(outcome) = node.event(&mut self.chat, event) else {
                continue;
            };
            let me = node.replica.me().id;
            let (replica, conns) = (&node.replica, &node.conns);
            let outbox = self.chat.outbox();
            outbox.retarget(|sid| {
                let (owner, serial) = replica.owner(sid)?;
                let key = conns.get(&serial).filter(|_| owner == me)?;
                Some(SessionId(*key))
            });
            let _ = outbox.take_verifications();
            self.apply_effects();
            self.snapshot_if_due();
            if let Some(number) = outcome.mine {
                self.batch_came_back(number, outcome.fate, now);
            }
            match outcome.ended {
                Some(Ended::Dead) => self.rejoin(),
                Some(Ended::NameTaken) => {
                    if let Some(node) = self.node() {
                        node.failed = Some(name_taken(&node.replica.me().node));
                    }
                }
                Some(Ended::Left) | None => {}
            }
        }
        if let Some(node) = self.node() {
            node.more = true;
        }
    }

    /// Whether entries were left for the next iteration.
    pub(super) fn log_left(&mut self) -> bool {
        self.node()
            .is_some_and(|node| std::mem::take(&mut node.more))
    }

    /// Takes a snapshot if this node takes them and the log is at one of
    /// their positions.
    fn snapshot_if_due(&mut self) {
        let Some(node) = self.cluster.as_ref() else {
            return;
        };
        let seq = node.replica.seq();
        if seq == 0 || seq % node.snapshot_every != 0 || !node.replica.takes_snapshots() {
            return;
        }
        let started = Instant::now();
        let bytes = snapshot::encode(&node.replica, &self.chat);
        debug!(
            target: "confab::cluster",
            "snapshot at {seq}: {} bytes in {:?}",
            bytes.len(),
            started.elapsed()
        );
        node.bridge.save_snapshot(seq, bytes);
    }

    /// This node's batch `number` came back through the log with `fate`.
    fn batch_came_back(&mut self, number: u64, fate: Fate, now: Instant) {
        let Some(node) = self.node() else {
            return;
        };
        let Some(at) = node.unapplied.iter().position(|b| b.number == number) else {
            return;
        };
        let Some(batch) = node.unapplied.remove(at) else {
            return;
        };
        let applied = fate == Fate::Applied;
        let mut requeue = Vec::new();
        let mut handled = Vec::new();
        for (index, input) in batch.inputs {
            match (&input, applied) {
                (Input::Written { conn, lines }, true) => {
                    if let Some(&key) = node.conns.get(conn) {
                        if let Some(count) = node.written.get_mut(&key) {
                            *count = count.saturating_sub(*lines as usize);
                        }
                    }
                }
                (
                    Input::Written { .. }
                    | Input::Disconnect { .. }
                    | Input::Hello
                    | Input::Found { .. }
                    | Input::Accounts(_)
                    | Input::Leave,
                    false,
                ) => requeue.push(input.clone()),
                _ => {}
            }
            if let Some(key) = input.conn().and_then(|c| node.conns.get(&c).copied()) {
                handled.push((key, index, input));
            }
        }
        if !applied {
            warn!(
                target: "confab::cluster",
                "batch {number} reached the log too late; its lines are refused"
            );
            // Queued no later than what they go before, so that the queue
            // stays in the order of `at`.
            let at = node
                .pending
                .front()
                .map_or(now, |queued| queued.at.min(now));
            for input in requeue.into_iter().rev() {
                node.pending_bytes += input.size();
                node.pending.push_front(Queued {
                    input,
                    index: u64::MAX,
                    at,
                });
            }
        }
        for (key, index, input) in handled {
            if !applied {
                self.refuse(key, &input);
            }
            self.input_handled(key, index, now);
        }
    }

    /// Tells connection `key` that `input` was not carried out.
    fn refuse(&mut self, key: usize, input: &Input) {
        match input {
            Input::Line { .. } | Input::LineError { .. } | Input::Password { .. } => {
                self.deliver_line(key, protocol::STORAGE_UNAVAILABLE);
            }
            Input::Connect { .. } => {
                self.deliver_line(key, protocol::STORAGE_UNAVAILABLE);
                if let Some(serial) = self.conns.get(key).map(|conn| conn.serial) {
                    if let Some(node) = self.node() {
                        node.conns.remove(&serial);
                    }
                }
                self.close_after_flush(key);
            }
            _ => {}
        }
    }

    /// Input `index` of connection `key` is handled: if the connection
    /// waited for it, it reads again.
    fn input_handled(&mut self, key: usize, index: u64, now: Instant) {
        let Some(node) = self.node() else {
            return;
        };
        if node.awaiting.get(&key).is_none_or(|a| a.index != index) {
            return;
        }
        let Some(awaiting) = node.awaiting.remove(&key) else {
            return;
        };
        self.resume_after_verifying(key, &awaiting.rest, now);
    }

    /// The end of an iteration in cluster mode: inputs that waited too
    /// long are refused, and what is queued (or a heartbeat, or a tick for
    /// a timer due) goes out.
    pub(super) fn cluster_turn(&mut self, now: Instant) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        let due = node.replica.my_group().and_then(|group| {
            let at = self.chat.next_deadline_of(group)?;
            Some(node.replica.log_time(at))
        });
        let tick = due.is_some_and(|due| due <= unix_ms() && due > node.last_clock_ms);
        let heartbeat = now >= node.last_publish + node.replica.heartbeat();
        if !node.pending.is_empty() || tick || heartbeat {
            node.publish(now);
        }
        self.refuse_stale(now);
    }

    /// Refuses the inputs that could not be published within
    /// [`STORAGE_WAIT`] (see the module documentation).
    fn refuse_stale(&mut self, now: Instant) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        // The queue is in the order of `at`: nothing is stale unless its
        // front is.
        if node
            .pending
            .front()
            .is_none_or(|queued| queued.at + STORAGE_WAIT > now)
        {
            return;
        }
        let mut refused = Vec::new();
        let mut kept = VecDeque::new();
        while let Some(queued) = node.pending.pop_front() {
            let stale = queued.at + STORAGE_WAIT <= now;
            let refusable = matches!(
                queued.input,
                Input::Line { .. }
                    | Input::LineError { .. }
                    | Input::Password { .. }
                    | Input::Connect { .. }
            );
            if stale && refusable {
                node.pending_bytes = node.pending_bytes.saturating_sub(queued.input.size());
                refused.push(queued);
            } else {
                kept.push_back(queued);
            }
        }
        node.pending = kept;
        for queued in refused {
            let Some(key) = queued
                .input
                .conn()
                .and_then(|conn| self.cluster.as_ref()?.conns.get(&conn).copied())
            else {
                continue;
            };
            self.refuse(key, &queued.input);
            self.input_handled(key, queued.index, now);
        }
    }

    /// When the loop must wake for the cluster: the next heartbeat, the
    /// next timer of this node's sessions, or the refusal of an input
    /// waiting for NATS.
    pub(super) fn cluster_deadline(&self) -> Option<Instant> {
        let node = self.cluster.as_ref()?;
        let now = Instant::now();
        let heartbeat = node.last_publish + node.replica.heartbeat();
        let timer = node.replica.my_group().and_then(|group| {
            let due_ms = node.replica.log_time(self.chat.next_deadline_of(group)?);
            let ahead = due_ms.saturating_sub(unix_ms());
            Some(now + Duration::from_millis(ahead))
        });
        let refusal = node.pending.front().map(|queued| queued.at + STORAGE_WAIT);
        [Some(heartbeat), timer, refusal]
            .into_iter()
            .flatten()
            .min()
    }

    /// This node was declared dead: every connection is dropped (their
    /// sessions already ended in every replica) and the node joins again
    /// as a new incarnation.
    fn rejoin(&mut self) {
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        warn!(
            target: "confab::cluster",
            "declared dead by the cluster (silent for the node timeout); dropping {} \
             connections and joining again",
            node.conns.len()
        );
        let keys: Vec<usize> = node.conns.values().copied().collect();
        node.conns.clear();
        node.awaiting.clear();
        node.written.clear();
        node.pending.clear();
        node.pending_bytes = 0;
        node.unapplied.clear();
        node.next_number = 1;
        node.replica.rejoin(fresh_id());
        node.queue(Input::Hello);
        for key in keys {
            self.conns.doom(key);
        }
    }

    /// The reason the node cannot go on, if it cannot.
    pub(super) fn cluster_failure(&mut self) -> Option<String> {
        self.cluster.as_mut()?.failed.take()
    }

    /// A stopping node's departure: every connection is told the server
    /// stops and closed; `Leave` goes to the log, and the node waits (at
    /// most [`LEAVE_WAIT`]) until it is applied, so that every other node
    /// announces its users' departure.
    pub(super) fn cluster_leave(&mut self) {
        for key in self.conns.keys_where(|conn| conn.http.is_none()) {
            self.deliver_line(key, protocol::SHUTTING_DOWN);
            self.close_after_flush(key);
        }
        let Some(node) = self.cluster.as_mut() else {
            return;
        };
        node.queue(Input::Leave);
        let deadline = Instant::now() + LEAVE_WAIT;
        while Instant::now() < deadline {
            let Some(node) = self.cluster.as_mut() else {
                return;
            };
            node.publish(Instant::now());
            let left = deadline.saturating_duration_since(Instant::now());
            let Some(event) = node.bridge.wait_event(left.min(Duration::from_millis(50))) else {
                continue;
            };
            let outcome = node.event(&mut self.chat, event);
            self.chat.outbox().clear();
            if outcome.is_some_and(|o| o.ended == Some(Ended::Left)) {
                return;
            }
        }
        warn!(target: "confab::cluster", "stopping before the log took this node's departure");
    }
}
