//! The checker: the invariants of the module's documentation, judged
//! after every step on what `Chat` emitted and what the sessions got.

use super::*;

impl Harness {
    /// The invariants, judged on what `Chat` emitted; `pre` is the model
    /// before the step, when blocks and logins are as the step found them.
    pub(super) fn check_invariants(&mut self, pre: &Model, actual: &Actual, expected: &Expected) {
        // Who each session is logged in as, as the step goes on.
        let mut user_of: [Option<usize>; SESSIONS] = std::array::from_fn(|s| match pre.slots[s] {
            Slot::Open {
                stage: Stage::LoggedIn(u),
                ..
            } => Some(u),
            _ => None,
        });
        // (subject, observer session) -> how many `logged out` lines.
        let mut logged_out: HashMap<(usize, usize), usize> = HashMap::new();

        for (s, line) in &actual.pieces {
            let s = *s;
            if line == protocol::WELCOME {
                let Slot::Open {
                    stage: Stage::Password(u),
                    ..
                } = pre.slots[s]
                else {
                    self.fail(format!("welcome to session {s}, which gave no password"));
                };
                if let Some(other) = pre.users[u].session {
                    self.fail(format!(
                        "{} is online on session {other} and also logged in on session {s}",
                        pre.users[u].name
                    ));
                }
                user_of[s] = Some(u);
                continue;
            }
            let presence = line
                .strip_suffix(" logged in")
                .map(|name| (name, false))
                .or_else(|| line.strip_suffix(" logged out").map(|name| (name, true)));
            if let Some((subject, out)) = presence.and_then(|(n, out)| Some((user_index(n)?, out)))
            {
                let Some(observer) = user_of[s] else {
                    self.fail(format!(
                        "{line:?} reached session {s}, which is not logged in"
                    ));
                };
                if pre.users[subject].blocked.contains(&observer) {
                    self.fail(format!(
                        "{line:?} reached {}, whom {} has blocked",
                        pre.users[observer].name, pre.users[subject].name
                    ));
                }
                if out {
                    *logged_out.entry((subject, s)).or_default() += 1;
                }
                continue;
            }
            // A live message: a backlog line is no `Send` effect.
            if let Some((sender, text)) = message(line) {
                let Some(recipient) = user_of[s] else {
                    self.fail(format!(
                        "{line:?} reached session {s}, which is not logged in"
                    ));
                };
                if pre.users[recipient].blocked.contains(&sender) {
                    self.fail(format!(
                        "{line:?} reached {}, who has blocked {}",
                        pre.users[recipient].name, pre.users[sender].name
                    ));
                }
                if !self.delivered.insert((text.to_owned(), recipient)) {
                    self.fail(format!(
                        "{line:?} reached {} a second time",
                        pre.users[recipient].name
                    ));
                }
            }
        }

        // `logged out`: once per observer, to exactly the observers online
        // at that moment and not blocked by the leaver.
        if let Some(((subject, s), n)) = logged_out.iter().find(|(_, &n)| n > 1) {
            self.fail(format!(
                "`{} logged out` reached session {s} {n} times",
                pre.users[*subject].name
            ));
        }
        for (subject, observers) in &expected.leaves {
            for &s in observers {
                if logged_out.remove(&(*subject, s)).is_none() {
                    self.fail(format!(
                        "`{} logged out` did not reach session {s}, online then and not blocked",
                        pre.users[*subject].name
                    ));
                }
            }
        }
        if let Some(&(subject, s)) = logged_out.keys().next() {
            self.fail(format!(
                "`{} logged out` reached session {s}, which was not an observer of a leave",
                pre.users[subject].name
            ));
        }

        // A backlog starts right after the welcome of a login with mail,
        // and only then.
        for &(s, after_welcome) in &actual.backlog_starts {
            if !after_welcome {
                self.fail(format!(
                    "the backlog of session {s} does not follow its welcome"
                ));
            }
        }
        for &(s, user, has_mail) in &expected.logins {
            let started = actual.backlog_starts.iter().any(|&(b, _)| b == s);
            if started != has_mail {
                self.fail(format!(
                    "{} logged in on session {s} with {} offline messages, and a backlog \
                     started: {started}",
                    pre.users[user].name,
                    pre.users[user].mailbox.len()
                ));
            }
        }
        if let Some(&(s, _)) = actual
            .backlog_starts
            .iter()
            .find(|&&(s, _)| !expected.logins.iter().any(|&(l, _, _)| l == s))
        {
            self.fail(format!(
                "a backlog started for session {s}, which did not log in"
            ));
        }
    }

    /// An [`Op::Mail`] step, judged against `pre`: the lines handed out are
    /// the mailbox's from `from` on, and all the rest if fewer than asked
    /// for; the lines written are its front, each delivered once; the held
    /// output was released only with the mailbox written whole.
    pub(super) fn check_backlog(&mut self, pre: &Model, actual: &Actual) {
        let Some(mail) = &actual.mail else {
            return;
        };
        let s = mail.s;
        let Slot::Open {
            stage: Stage::LoggedIn(user),
            ..
        } = pre.slots[s]
        else {
            self.fail(format!("a backlog for session {s}, which is not logged in"));
        };
        let (name, mailbox) = (pre.users[user].name, &pre.users[user].mailbox);
        let rest = mailbox.get(mail.from..).unwrap_or_default();
        let expected = &rest[..rest.len().min(mail.hand)];
        if mail.handed != expected {
            self.fail(format!(
                "backlog(session {s}, {}) gave {:?}; {name}'s mailbox from there is {rest:?}",
                mail.from, mail.handed
            ));
        }
        if !mailbox.starts_with(&mail.written) {
            self.fail(format!(
                "the server wrote {:?} of {name}'s backlog, which is not the front of the \
                 mailbox {mailbox:?}",
                mail.written
            ));
        }
        for line in &mail.written {
            if let Some((_, text)) = message(line) {
                if !self.delivered.insert((text.to_owned(), user)) {
                    self.fail(format!("{line:?} reached {name} a second time"));
                }
            }
        }
        if mail.finished && mail.written.len() != mailbox.len() {
            self.fail(format!(
                "{name}'s backlog ended after {:?}, with {mailbox:?} in the mailbox",
                mail.written
            ));
        }
    }

    /// The `!private` lines of a step, judged against `pre` (no step both
    /// registers a session and introduces it): only to sessions that sent
    /// `privateport`; the address never to a user the target blocked, and
    /// it is the target session's; each token in exactly one `accept` and
    /// one `connect` line, `accept` first, pairing the same two users, and
    /// never again in a later step.
    pub(super) fn check_introductions(&mut self, pre: &Model, actual: &Actual) {
        // Per token: the `accept` line's (recipient, starter named) and the
        // `connect` line's (recipient, target named), as users.
        type Pair = (Option<(usize, usize)>, Option<(usize, usize)>);
        let mut pairs: BTreeMap<&str, Pair> = BTreeMap::new();
        for (s, line) in &actual.pieces {
            let s = *s;
            let Some(rest) = line.strip_prefix(protocol::PRIVATE_PREFIX) else {
                continue;
            };
            let Slot::Open {
                stage: Stage::LoggedIn(me),
                private_port: Some(_),
                ..
            } = pre.slots[s]
            else {
                self.fail(format!(
                    "{line:?} reached session {s}, which did not send privateport"
                ));
            };
            let words: Vec<&str> = rest.split(' ').collect();
            // `address` is `None` on an `accept` line.
            let (named, address, token) = match words.as_slice() {
                ["", kind, named, token] if *kind == protocol::PRIVATE_ACCEPT => {
                    (*named, None, *token)
                }
                ["", kind, named, address, token] if *kind == protocol::PRIVATE_CONNECT => {
                    (*named, Some(*address), *token)
                }
                _ => self.fail(format!("{line:?} to session {s} is not an introduction")),
            };
            let Some(other) = user_index(named) else {
                self.fail(format!("{line:?} names no user"));
            };
            let hex = |b: u8| matches!(b, b'0'..=b'9' | b'a'..=b'f');
            if token.len() != 2 * TOKEN_BYTES || !token.bytes().all(hex) {
                self.fail(format!(
                    "{line:?}: the token is not 32 lowercase hex digits"
                ));
            }
            let pair = pairs.entry(token).or_default();
            let Some(address) = address else {
                // (A `connect` line before it already failed below.)
                if self.tokens.contains(token) || pair.0.is_some() {
                    self.fail(format!("{line:?}: the token was given before"));
                }
                pair.0 = Some((me, other));
                continue;
            };
            if pair.0.is_none() || pair.1.is_some() {
                self.fail(format!(
                    "{line:?}: the token is not that of one accept line before it"
                ));
            }
            pair.1 = Some((me, other));
            let (me_name, target) = (pre.users[me].name, &pre.users[other]);
            if target.blocked.contains(&me) {
                self.fail(format!(
                    "{line:?} reached {me_name}, whom {} has blocked",
                    target.name
                ));
            }
            let listening = target
                .session
                .and_then(|t| Some(dial_address(t, pre.private_port(t)?)));
            if Some(address) != listening.as_deref() {
                self.fail(format!(
                    "{line:?}: {} listens at {listening:?}",
                    target.name
                ));
            }
        }
        for (token, pair) in pairs {
            match pair {
                (Some((target, starter)), Some((me, named)))
                    if me == starter && named == target => {}
                (accept, connect) => self.fail(format!(
                    "token {token}: accept line (to, naming) {accept:?} and connect line \
                     {connect:?} do not pair the same two users"
                )),
            }
            self.tokens.insert(token.to_owned());
        }
    }

    /// What was sent to every session, what reached it, and the set of
    /// closes equal the model's.
    pub(super) fn check_transcripts(&self, actual: &Actual, expected: &Expected) {
        for s in 0..SESSIONS {
            if actual.sent[s] != expected.sent[s] {
                self.fail(format!(
                    "session {s} was sent {:?}, the model says {:?}",
                    String::from_utf8_lossy(&actual.sent[s]),
                    String::from_utf8_lossy(&expected.sent[s]),
                ));
            }
            if actual.out[s] != expected.out[s] {
                self.fail(format!(
                    "session {s} got {:?}, the model says {:?}",
                    String::from_utf8_lossy(&actual.out[s]),
                    String::from_utf8_lossy(&expected.out[s]),
                ));
            }
        }
        if actual.closes != expected.closes {
            self.fail(format!(
                "closed sessions {:?}, the model says {:?}",
                actual.closes, expected.closes
            ));
        }
    }

    /// Online state, timers and token draws after the step.
    pub(super) fn check_state(&self) {
        let drawn = TOKENS_DRAWN.get();
        if drawn != self.model.tokens_drawn {
            self.fail(format!(
                "the domain drew {drawn} tokens, the model says {}",
                self.model.tokens_drawn
            ));
        }
        let mut online = 0;
        for (u, user) in self.model.users.iter().enumerate() {
            let sessions = self
                .model
                .slots
                .iter()
                .filter(
                    |slot| matches!(slot, Slot::Open { stage: Stage::LoggedIn(v), .. } if *v == u),
                )
                .count();
            assert!(sessions <= 1, "model: {} online twice", user.name);
            let is_online = self.chat.is_online(user.name);
            if is_online != user.session.is_some() {
                self.fail(format!(
                    "is_online({}) is {is_online}, the model says {}",
                    user.name, !is_online
                ));
            }
            online += usize::from(user.session.is_some());
        }
        if self.chat.online_count() != online {
            self.fail(format!(
                "online_count() is {}, the model says {online}",
                self.chat.online_count()
            ));
        }
        self.check_mailboxes();
        // The poll loop sleeps until `next_deadline`: it must not be later
        // than any idle timeout or ban end.
        let next = self.chat.next_deadline();
        for (s, slot) in self.model.slots.iter().enumerate() {
            if let Slot::Open { last_activity, .. } = slot {
                let due = self.at(*last_activity + TIMEOUT);
                if next.is_none_or(|d| d > due) {
                    self.fail(format!(
                        "next_deadline {next:?} misses session {s}'s idle timeout"
                    ));
                }
            }
        }
        for user in &self.model.users {
            if let Some(until) = user.banned_until.filter(|&u| u > self.model.now) {
                if next.is_none_or(|d| d > self.at(until)) {
                    self.fail(format!(
                        "next_deadline {next:?} misses {}'s ban end",
                        user.name
                    ));
                }
            }
        }
    }

    /// The mailboxes, and the state of every backlog, equal the model's.
    fn check_mailboxes(&self) {
        for user in &self.model.users {
            let len = self.chat.mailbox_len(user.name);
            if len != user.mailbox.len() {
                self.fail(format!(
                    "{} has {len} offline messages, the model says {:?}",
                    user.name, user.mailbox
                ));
            }
        }
        let no_mail = Vec::new();
        for s in 0..SESSIONS {
            let backlog: Vec<String> = self
                .chat
                .backlog(self.sids[s], 0)
                .map(|line| line.to_string())
                .collect();
            let mailbox = match self.model.slots[s] {
                Slot::Open {
                    stage: Stage::LoggedIn(user),
                    ..
                } => &self.model.users[user].mailbox,
                _ => &no_mail,
            };
            if backlog != *mailbox {
                self.fail(format!(
                    "backlog(session {s}, 0) gives {backlog:?}, the model says {mailbox:?}"
                ));
            }
            let queued = self.writers[s].as_ref().map(|w| w.queued.len());
            let model = self.model.backlogs[s].as_ref().map(|b| b.queued);
            if queued != model {
                self.fail(format!(
                    "session {s}'s backlog has {queued:?} lines queued, the model says {model:?}"
                ));
            }
        }
    }

    /// Panics with `problem` and the operations that led to it.
    pub(super) fn fail(&self, problem: String) -> ! {
        let mut report = format!("chat invariant violated: {problem}\nlast operations:\n");
        for (at, op) in &self.trace {
            let _ = writeln!(report, "  t={at:?} {}", describe(op));
        }
        if let Some(cluster) = &self.cluster {
            report.push_str(&cluster.report());
        }
        panic!("{report}");
    }
}
