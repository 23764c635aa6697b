//! The cluster's replica (`confab::cluster::replica`) fed hand-made logs:
//! several nodes' replicas apply the same entries, and each keeps what its
//! domain sends its own connections. What the log alone decides is
//! checked here: lateness, repeats, names, liveness, leaving, log time,
//! and the connections that the session ids of a batch's effects name.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use confab::chat::{Chat, ChatConfig, Effect};
use confab::cluster::entry::{Batch, Incarnation, Input, Settings};
use confab::cluster::replica::{Ended, Fate, Outcome, Replica, STORE_WITHIN_MS};
use confab::credentials::Account;
use confab::protocol::{PASSWORD_PROMPT, USERNAME_PROMPT, WELCOME};

/// The log time of every test's first entry.
const T0: u64 = 1_764_000_000_000;
/// How long a node may be silent.
const NODE_TIMEOUT_MS: u64 = 5_000;
/// The idle timeout: far longer than any test.
const TIMEOUT: Duration = Duration::from_secs(600);
const ACCOUNTS: [(&str, &str); 3] = [("yoda", "wise"), ("hans", "falcon"), ("vader", "sith")];

fn accounts() -> Vec<Account> {
    ACCOUNTS
        .iter()
        .map(|&(username, password)| Account {
            username: username.into(),
            password: password.into(),
        })
        .collect()
}

fn config() -> ChatConfig {
    ChatConfig::new(Duration::from_secs(60), TIMEOUT)
}

fn found() -> Input {
    Input::Found {
        settings: Settings {
            block_ms: 60_000,
            timeout_ms: TIMEOUT.as_millis() as u64,
            login_timeout_ms: config().login_timeout.as_millis() as u64,
            max_failures_per_ip: 20,
            mailbox_max: 1000,
            store_max: 1 << 30,
            node_timeout_ms: NODE_TIMEOUT_MS,
        },
        accounts: accounts(),
    }
}

/// One node: its replica and domain, the batches it published, and what
/// its domain sent and closed on its own connections.
struct Node {
    replica: Replica,
    chat: Chat,
    published: u64,
    out: HashMap<u64, String>,
    closed: HashSet<u64>,
}

/// Nodes that all apply one log.
struct Log {
    nodes: Vec<Node>,
    seq: u64,
}

impl Log {
    /// A replica for each incarnation (name and id), nothing applied.
    fn new(incarnations: &[(&str, u64)]) -> Log {
        let nodes = incarnations
            .iter()
            .map(|&(name, id)| Node {
                replica: Replica::new(Incarnation {
                    node: name.into(),
                    id,
                }),
                chat: Chat::new(accounts(), config()),
                published: 0,
                out: HashMap::new(),
                closed: HashSet::new(),
            })
            .collect();
        Log { nodes, seq: 0 }
    }

    /// Node 0 founds the cluster and every node says hello, all at `T0`.
    fn founded(incarnations: &[(&str, u64)]) -> Log {
        let mut log = Log::new(incarnations);
        log.publish(0, T0, vec![Input::Hello, found()]);
        for n in 1..incarnations.len() {
            log.publish(n, T0, vec![Input::Hello]);
        }
        log
    }

    /// Node `n`'s next batch of `inputs` at its clock `clock_ms`, stored
    /// then; each node's outcome.
    fn publish(&mut self, n: usize, clock_ms: u64, inputs: Vec<Input>) -> Vec<Outcome> {
        self.publish_stored(n, clock_ms, clock_ms, inputs)
    }

    /// Node `n`'s next batch, stored at `stored_ms`.
    fn publish_stored(
        &mut self,
        n: usize,
        clock_ms: u64,
        stored_ms: u64,
        inputs: Vec<Input>,
    ) -> Vec<Outcome> {
        self.nodes[n].published += 1;
        let number = self.nodes[n].published;
        self.publish_numbered(n, number, clock_ms, stored_ms, inputs)
    }

    /// Node `n`'s batch numbered `number`, stored at `stored_ms`.
    fn publish_numbered(
        &mut self,
        n: usize,
        number: u64,
        clock_ms: u64,
        stored_ms: u64,
        inputs: Vec<Input>,
    ) -> Vec<Outcome> {
        let batch = Batch {
            from: self.nodes[n].replica.me().clone(),
            number,
            clock_ms,
            inputs,
        };
        self.apply(stored_ms, &batch.encode())
    }

    /// The next entry, `payload`, stored at `stored_ms`, on every node;
    /// each keeps what its domain did to its own connections.
    fn apply(&mut self, stored_ms: u64, payload: &[u8]) -> Vec<Outcome> {
        self.seq += 1;
        let mut outcomes = Vec::new();
        for node in &mut self.nodes {
            outcomes.push(
                node.replica
                    .apply(&mut node.chat, self.seq, stored_ms, payload),
            );
            let me = node.replica.me().id;
            let outbox = node.chat.outbox();
            for effect in outbox.effects() {
                let (sid, text) = match effect {
                    Effect::Send { to, text } | Effect::Notice { to, text } => (*to, Some(text)),
                    Effect::Close(sid) | Effect::Backlog(sid) => (*sid, None),
                };
                let Some((_, conn)) = node.replica.owner(sid).filter(|&(id, _)| id == me) else {
                    continue;
                };
                match text {
                    Some(text) => {
                        let text = String::from_utf8_lossy(outbox.text(text.clone()));
                        node.out.entry(conn).or_default().push_str(&text);
                    }
                    None if matches!(effect, Effect::Close(_)) => {
                        node.closed.insert(conn);
                    }
                    None => {}
                }
            }
            outbox.clear();
        }
        outcomes
    }

    /// What node `n` sent its connection `conn` since last asked.
    fn take(&mut self, n: usize, conn: u64) -> String {
        self.nodes[n].out.remove(&conn).unwrap_or_default()
    }

    /// Logs `user` in on node `n`'s new connection `conn` at `ms`, the
    /// password judged right, in one batch.
    fn log_in(&mut self, n: usize, conn: u64, user: &str, ms: u64) {
        let inputs = vec![
            connect(conn),
            line(conn, user),
            Input::Password {
                conn,
                matches: true,
            },
        ];
        for outcome in self.publish(n, ms, inputs) {
            assert_eq!(outcome.fate, Fate::Applied);
        }
        let expected = format!("{USERNAME_PROMPT}{PASSWORD_PROMPT}{WELCOME}\n");
        assert_eq!(self.take(n, conn), expected);
    }

    /// Clears what every node sent.
    fn discard(&mut self) {
        for node in &mut self.nodes {
            node.out.clear();
        }
    }
}

fn connect(conn: u64) -> Input {
    Input::Connect {
        conn,
        ip: IpAddr::V4(Ipv4Addr::LOCALHOST),
        trusted: true,
        web: false,
    }
}

fn line(conn: u64, text: &str) -> Input {
    Input::Line {
        conn,
        text: text.into(),
        token: None,
    }
}

fn outcome(mine: Option<u64>, fate: Fate, ended: Option<Ended>) -> Outcome {
    Outcome { mine, fate, ended }
}

#[test]
fn a_batch_stored_too_late_is_applied_by_nobody() {
    let mut log = Log::founded(&[("alpha", 1), ("beta", 2)]);
    let clock = T0 + 100;
    let late = log.publish_stored(0, clock, clock + STORE_WITHIN_MS + 1, vec![connect(1)]);
    assert_eq!(
        late,
        [
            outcome(Some(2), Fate::Late, None),
            outcome(None, Fate::Late, None)
        ]
    );
    for node in &log.nodes {
        assert_eq!(node.replica.log_ms(), T0, "a late batch does not move time");
    }
    assert_eq!(log.nodes[0].replica.session(1), None);
    assert_eq!(log.take(0, 1), "");
    // Stored exactly at the bound, it counts.
    let in_time = log.publish_stored(0, clock, clock + STORE_WITHIN_MS, vec![connect(2)]);
    assert!(in_time.iter().all(|o| o.fate == Fate::Applied));
    assert_eq!(log.take(0, 2), USERNAME_PROMPT);
}

#[test]
fn a_repeated_or_older_batch_number_is_ignored() {
    let mut log = Log::founded(&[("alpha", 1), ("beta", 2)]);
    log.publish(0, T0 + 1, vec![connect(1)]);
    assert_eq!(log.take(0, 1), USERNAME_PROMPT);
    let again = log.publish_numbered(0, 2, T0 + 2, T0 + 2, vec![line(1, "yoda")]);
    assert_eq!(
        again,
        [
            outcome(Some(2), Fate::Ignored, None),
            outcome(None, Fate::Ignored, None)
        ]
    );
    let older = log.publish_numbered(0, 1, T0 + 2, T0 + 2, vec![line(1, "yoda")]);
    assert!(older.iter().all(|o| o.fate == Fate::Ignored));
    assert_eq!(log.take(0, 1), "");
    let sid = log.nodes[0].replica.session(1).unwrap();
    for node in &log.nodes {
        assert_eq!(
            node.chat.password_wanted(sid),
            None,
            "still at the username"
        );
    }
    // The next number is applied.
    log.publish_numbered(0, 3, T0 + 3, T0 + 3, vec![line(1, "yoda")]);
    assert_eq!(log.take(0, 1), PASSWORD_PROMPT);
}

#[test]
fn a_second_live_incarnation_of_a_name_is_refused_at_its_hello() {
    let mut log = Log::new(&[("alpha", 1), ("beta", 2), ("alpha", 3)]);
    log.publish(0, T0, vec![Input::Hello, found()]);
    log.publish(1, T0, vec![Input::Hello]);
    let refused = log.publish(2, T0 + 10, vec![Input::Hello]);
    assert_eq!(
        refused,
        [
            outcome(None, Fate::Applied, None),
            outcome(None, Fate::Applied, None),
            outcome(Some(1), Fate::Applied, Some(Ended::NameTaken)),
        ]
    );
    let free_at = log.nodes[2].replica.name_free_at("alpha");
    assert_eq!(free_at, Some(T0 + NODE_TIMEOUT_MS));
    assert_eq!(log.nodes[0].replica.live_nodes(), 2);
    // Its later batches are nobody's.
    let later = log.publish(2, T0 + 20, vec![connect(1)]);
    assert!(later.iter().all(|o| o.fate == Fate::Ignored));
    assert_eq!(log.take(2, 1), "");
    // Once the first alpha has left, a new incarnation of the name joins.
    log.publish(0, T0 + 30, vec![Input::Leave]);
    log.nodes[2].replica.rejoin(4);
    let joined = log.publish(2, T0 + 40, vec![Input::Hello, connect(1)]);
    assert!(joined
        .iter()
        .all(|o| o.fate == Fate::Applied && o.ended.is_none()));
    assert_eq!(log.take(2, 1), USERNAME_PROMPT);
}

#[test]
fn a_silent_node_is_declared_dead_once_and_its_later_batches_ignored() {
    let mut log = Log::founded(&[("alpha", 1), ("beta", 2)]);
    log.log_in(0, 1, "yoda", T0);
    log.log_in(1, 1, "hans", T0);
    log.log_in(1, 2, "vader", T0);
    log.discard();
    // Alpha beats every second; beta says nothing.
    let mut died_at = None;
    for beat in 1..=8 {
        let ms = T0 + beat * 1_000;
        let outcomes = log.publish(0, ms, Vec::new());
        assert_eq!(outcomes[0].ended, None);
        if outcomes[1].ended.is_some() {
            assert_eq!(outcomes[1].ended, Some(Ended::Dead));
            assert_eq!(died_at, None, "declared dead twice");
            died_at = Some(ms);
        }
    }
    assert_eq!(died_at, Some(T0 + NODE_TIMEOUT_MS));
    assert_eq!(log.take(0, 1), "hans logged out\nvader logged out\n");
    for node in &log.nodes {
        assert_eq!(node.replica.live_nodes(), 1);
        assert!(!node.chat.is_online("hans") && !node.chat.is_online("vader"));
        assert!(node.chat.is_online("yoda"));
    }
    // Beta comes back from its pause: nobody applies what it says.
    let late = log.publish(1, T0 + 8_500, vec![line(1, "broadcast still here")]);
    assert_eq!(
        late,
        [
            outcome(None, Fate::Ignored, None),
            outcome(Some(4), Fate::Ignored, None)
        ]
    );
    assert_eq!(log.take(0, 1), "");
    assert_eq!(log.nodes[1].replica.session(1), None);
}

#[test]
fn a_gap_every_node_shares_declares_nobody_dead() {
    let mut log = Log::founded(&[("alpha", 1), ("beta", 2)]);
    log.log_in(1, 1, "hans", T0);
    log.publish(0, T0 + 500, Vec::new());
    // The log is unreachable for twice the node timeout; alpha is first
    // back.
    let after = T0 + 500 + 2 * NODE_TIMEOUT_MS;
    let outcomes = log.publish(0, after, Vec::new());
    assert!(outcomes.iter().all(|o| o.ended.is_none()));
    assert_eq!(log.nodes[0].replica.live_nodes(), 2);
    assert!(log.nodes[0].chat.is_online("hans"));
    log.publish(1, after + 100, Vec::new());
    // From there on, silence counts again: alpha beats every second, and
    // beta is dead once it has been silent for the node timeout.
    for beat in 1..=6 {
        let ms = after + beat * 1_000;
        let outcomes = log.publish(0, ms, Vec::new());
        let dead = ms - (after + 100) >= NODE_TIMEOUT_MS;
        assert_eq!(outcomes[1].ended, dead.then_some(Ended::Dead), "at {ms}");
    }
    assert_eq!(log.nodes[0].replica.live_nodes(), 1);
}

#[test]
fn leaving_ends_the_nodes_sessions_with_their_announcements() {
    let mut log = Log::founded(&[("alpha", 1), ("beta", 2)]);
    log.log_in(0, 1, "yoda", T0);
    log.log_in(1, 1, "hans", T0);
    log.publish(1, T0, vec![connect(2)]);
    log.discard();
    let outcomes = log.publish(1, T0 + 10, vec![Input::Leave]);
    assert_eq!(
        outcomes,
        [
            outcome(None, Fate::Applied, None),
            outcome(Some(4), Fate::Applied, Some(Ended::Left))
        ]
    );
    assert_eq!(log.take(0, 1), "hans logged out\n");
    for node in &log.nodes {
        assert!(!node.chat.is_online("hans"));
        assert_eq!(node.chat.online_count(), 1);
        assert_eq!(node.replica.live_nodes(), 1);
    }
    assert_eq!(log.nodes[1].replica.session(1), None);
    assert_eq!(log.nodes[1].replica.session(2), None);
    let later = log.publish(1, T0 + 20, vec![connect(3)]);
    assert!(later.iter().all(|o| o.fate == Fate::Ignored));
}

#[test]
fn log_time_never_goes_back_for_a_clock_that_is_behind() {
    let mut log = Log::founded(&[("alpha", 1), ("beta", 2)]);
    log.publish(0, T0 + 1_000, Vec::new());
    // Beta's clock is 600 ms behind alpha's.
    log.publish(1, T0 + 400, vec![connect(1)]);
    let due = config().login_timeout.min(TIMEOUT).as_millis() as u64;
    for node in &mut log.nodes {
        assert_eq!(node.replica.log_ms(), T0 + 1_000);
        let deadline = node.chat.next_deadline().unwrap();
        assert_eq!(node.replica.log_time(deadline), T0 + 1_000 + due);
    }
    log.publish(0, T0 + 1_200, Vec::new());
    assert_eq!(log.nodes[1].replica.log_ms(), T0 + 1_200);
}

#[test]
fn an_id_freed_in_a_batch_is_not_given_again_within_it() {
    let mut log = Log::founded(&[("alpha", 1), ("beta", 2)]);
    log.log_in(0, 1, "yoda", T0);
    // Yoda logs out and the connection goes, and a new one comes, in one
    // batch: what was meant for yoda's connection must not reach the new
    // one, which the domain's effects would name by the same id if it
    // were given again at once.
    let inputs = vec![line(1, "logout"), Input::Disconnect { conn: 1 }, connect(2)];
    log.publish(0, T0 + 10, inputs);
    assert_eq!(log.take(0, 2), USERNAME_PROMPT);
    assert!(!log.nodes[0].closed.contains(&2));
    // Yoda's goodbye and close name an id that no connection has now.
    assert_eq!(log.take(0, 1), "");
    let sid = log.nodes[0].replica.session(2).unwrap();
    assert_eq!(log.nodes[1].replica.owner(sid), Some((1, 2)));
    log.publish(0, T0 + 20, vec![line(2, "yoda")]);
    assert_eq!(log.take(0, 2), PASSWORD_PROMPT);
}

#[test]
fn a_hello_that_replaces_a_silent_twin_does_not_hand_its_ids_to_the_same_batch() {
    let mut log = Log::new(&[("alpha", 1), ("beta", 2), ("alpha", 3)]);
    log.publish(0, T0, vec![Input::Hello, found()]);
    log.publish(1, T0, vec![Input::Hello]);
    log.publish(2, T0, vec![]);
    log.log_in(0, 1, "yoda", T0);
    log.discard();
    // The first alpha was killed; a new run of it joins once the first
    // has been silent for the node timeout, with a connection at once.
    let at = T0 + NODE_TIMEOUT_MS + 10;
    log.publish(2, at, vec![Input::Hello, connect(1)]);
    assert_eq!(log.take(2, 1), USERNAME_PROMPT);
    assert!(!log.nodes[2].closed.contains(&1));
    assert_eq!(log.nodes[1].replica.live_nodes(), 2);
    let sid = log.nodes[2].replica.session(1).unwrap();
    assert_eq!(log.nodes[1].replica.owner(sid), Some((3, 1)));
}
