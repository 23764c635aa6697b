//! The model: what the domain should do, step by step, and what each
//! session should receive.

use super::*;

impl Harness {
    fn send(expected: &mut Expected, s: usize, line: &str) {
        expected.sent[s].extend_from_slice(line.as_bytes());
        expected.sent[s].push(b'\n');
    }

    fn prompt(expected: &mut Expected, s: usize, prompt: &str) {
        expected.sent[s].extend_from_slice(prompt.as_bytes());
    }

    /// Passes what was sent to session `s` and not routed yet on: held if
    /// its backlog is being written, else to its output.
    /// Presence lines held for the session go out first.
    pub(super) fn route(&mut self, s: usize, expected: &mut Expected) {
        let fresh = &expected.sent[s][expected.routed[s]..];
        match &mut self.model.backlogs[s] {
            Some(backlog) => backlog.held.extend_from_slice(fresh),
            None => {
                if !fresh.is_empty() {
                    expected.out[s].append(&mut self.model.notices[s]);
                }
                expected.out[s].extend_from_slice(fresh);
            }
        }
        expected.routed[s] = expected.sent[s].len();
    }

    /// A presence line for session `s`: after what was sent before, it is
    /// held by the server (see `Model::notices`), or behind a backlog.
    fn notice(&mut self, s: usize, line: &str, expected: &mut Expected) {
        self.route(s, expected);
        Self::send(expected, s, line);
        let text = &expected.sent[s][expected.routed[s]..];
        match &mut self.model.backlogs[s] {
            Some(backlog) => backlog.held.extend_from_slice(text),
            None => self.model.notices[s].extend_from_slice(text),
        }
        expected.routed[s] = expected.sent[s].len();
    }

    /// [`Op::Release`]: every held presence line goes out.
    pub(super) fn model_release(&mut self, expected: &mut Expected) {
        for s in 0..SESSIONS {
            expected.out[s].append(&mut self.model.notices[s]);
        }
    }

    /// Session `s`'s backlog ends unfinished: the rest stays in the mailbox
    /// for the next login. Returns what the model held for the session.
    fn interrupt_backlog(&mut self, s: usize) -> Option<Vec<u8>> {
        let backlog = self.model.backlogs[s].take()?;
        self.stats.backlogs_interrupted += 1;
        if let Slot::Open {
            stage: Stage::LoggedIn(user),
            ..
        } = self.model.slots[s]
        {
            self.interrupted[user] = true;
        }
        Some(backlog.held)
    }

    /// The domain closes session `s`: a backlog is given up, and what it
    /// held goes out first.
    fn close(&mut self, s: usize, expected: &mut Expected) {
        self.route(s, expected);
        expected.out[s].append(&mut self.model.notices[s]);
        if let Some(held) = self.interrupt_backlog(s) {
            self.stats.backlog_closes += 1;
            expected.out[s].extend_from_slice(&held);
        }
        self.model.slots[s] = Slot::Closed;
        expected.closes.insert(s);
    }

    /// Every other online user that `subject` has not blocked hears `what`.
    fn announce(&mut self, subject: usize, what: &str, expected: &mut Expected) -> BTreeSet<usize> {
        let line = format!("{} {what}", self.model.users[subject].name);
        let mut observers = BTreeSet::new();
        for (u, user) in self.model.users.iter().enumerate() {
            if u == subject || self.model.users[subject].blocked.contains(&u) {
                continue;
            }
            if let Some(s) = user.session {
                observers.insert(s);
            }
        }
        for &s in &observers {
            self.notice(s, &line, expected);
        }
        self.stats.presence += observers.len();
        observers
    }

    /// The logged-in session `s` ends (the caller handles the slot).
    fn leave(&mut self, user: usize, expected: &mut Expected) {
        let account = &mut self.model.users[user];
        account.session = None;
        account.last_seen = Some(self.model.now);
        let observers = self.announce(user, "logged out", expected);
        expected.leaves.push((user, observers));
        self.stats.leaves += 1;
    }

    pub(super) fn model_connect(&mut self, s: usize, expected: &mut Expected) {
        self.model.slots[s] = Slot::Open {
            stage: Stage::Username,
            last_activity: self.model.now,
            private_port: None,
        };
        Self::prompt(expected, s, protocol::USERNAME_PROMPT);
    }

    pub(super) fn model_disconnect(&mut self, s: usize, expected: &mut Expected) {
        // What the backlog held is lost with the connection, and so are
        // the presence lines the server held for it.
        self.interrupt_backlog(s);
        self.model.notices[s].clear();
        if let Slot::Open {
            stage: Stage::LoggedIn(user),
            ..
        } = self.model.slots[s]
        {
            self.leave(user, expected);
        }
        self.model.slots[s] = Slot::Free;
    }

    /// Marks activity and returns the stage of an open session.
    fn touch(&mut self, s: usize) -> Option<Stage> {
        let now = self.model.now;
        match &mut self.model.slots[s] {
            Slot::Open {
                stage,
                last_activity,
                ..
            } => {
                *last_activity = now;
                Some(*stage)
            }
            _ => None,
        }
    }

    fn set_stage(&mut self, s: usize, new: Stage) {
        if let Slot::Open { stage, .. } = &mut self.model.slots[s] {
            *stage = new;
        }
    }

    pub(super) fn model_line_error(&mut self, s: usize, error: LineError, expected: &mut Expected) {
        let Some(stage) = self.touch(s) else { return };
        Self::send(expected, s, &error.to_string());
        match stage {
            Stage::Username => Self::prompt(expected, s, protocol::USERNAME_PROMPT),
            Stage::Password(_) => Self::prompt(expected, s, protocol::PASSWORD_PROMPT),
            Stage::LoggedIn(_) => {}
        }
    }

    pub(super) fn model_line(
        &mut self,
        s: usize,
        text: &str,
        cmd: Option<&Cmd>,
        expected: &mut Expected,
    ) {
        let Some(stage) = self.touch(s) else { return };
        match stage {
            Stage::Username => match ACCOUNTS.iter().position(|&(name, _)| name == text) {
                Some(user) => {
                    self.set_stage(s, Stage::Password(user));
                    Self::prompt(expected, s, protocol::PASSWORD_PROMPT);
                }
                None => {
                    Self::send(expected, s, protocol::INVALID_USERNAME);
                    Self::prompt(expected, s, protocol::USERNAME_PROMPT);
                }
            },
            Stage::Password(user) => self.model_password(s, user, text, expected),
            Stage::LoggedIn(me) => match cmd {
                Some(cmd) => self.model_command(s, me, cmd, expected),
                None => self.fail(format!("no command for logged-in line {text:?}")),
            },
        }
    }

    fn model_password(&mut self, s: usize, user: usize, text: &str, expected: &mut Expected) {
        let now = self.model.now;
        let account = &mut self.model.users[user];
        // A ban ends at its deadline, whether or not `expire` ran since.
        if account.banned_until.is_some_and(|until| until <= now) {
            account.banned_until = None;
            account.failures = 0;
        }
        if account.banned_until.is_some() {
            self.stats.banned_refusals += 1;
            Self::send(expected, s, protocol::ACCOUNT_BANNED);
            self.close(s, expected);
        } else if account.password != text {
            account.failures += 1;
            if account.failures >= 3 {
                account.banned_until = Some(now + BLOCK_DURATION);
                self.stats.bans += 1;
                Self::send(expected, s, protocol::PASSWORD_BANNED);
                self.close(s, expected);
            } else {
                Self::send(expected, s, protocol::INVALID_PASSWORD);
                Self::prompt(expected, s, protocol::PASSWORD_PROMPT);
            }
        } else if account.session.is_some() {
            self.stats.already_online += 1;
            self.set_stage(s, Stage::Username);
            Self::send(expected, s, protocol::ALREADY_LOGGED_IN);
            Self::prompt(expected, s, protocol::USERNAME_PROMPT);
        } else {
            account.session = Some(s);
            account.failures = 0;
            let has_mail = !account.mailbox.is_empty();
            self.set_stage(s, Stage::LoggedIn(user));
            Self::send(expected, s, protocol::WELCOME);
            if has_mail {
                // The welcome goes first; the rest waits for the mailbox.
                self.route(s, expected);
                self.model.backlogs[s] = Some(Backlog::default());
                self.stats.backlogs += 1;
                if std::mem::take(&mut self.interrupted[user]) {
                    self.stats.backlogs_resumed += 1;
                }
            }
            self.stats.logins += 1;
            expected.logins.push((s, user, has_mail));
            self.announce(user, "logged in", expected);
            let online = self.model.users.iter().filter(|u| u.session.is_some());
            self.stats.max_online = self.stats.max_online.max(online.count());
        }
    }

    /// [`Op::Mail`]: the server queues up to `hand` more of the mailbox's
    /// front; the `confirm` oldest queued lines (at most all) are written
    /// and leave the mailbox; once it is empty, with nothing queued, the
    /// held output follows.
    pub(super) fn model_mail(
        &mut self,
        s: usize,
        hand: usize,
        confirm: usize,
        expected: &mut Expected,
    ) {
        let Slot::Open {
            stage: Stage::LoggedIn(me),
            ..
        } = self.model.slots[s]
        else {
            return;
        };
        let Some(backlog) = &mut self.model.backlogs[s] else {
            return;
        };
        let user = &mut self.model.users[me];
        let queued = (backlog.queued + hand).min(user.mailbox.len());
        let n = confirm.min(queued);
        backlog.queued = queued - n;
        for line in user.mailbox.drain(..n) {
            expected.out[s].extend_from_slice(line.as_bytes());
            expected.out[s].push(b'\n');
            if message(&line).is_some_and(|(sender, _)| user.blocked.contains(&sender)) {
                self.stats.backlog_from_blocked += 1;
            }
        }
        self.stats.backlog_written += n;
        if backlog.queued == 0 && user.mailbox.is_empty() {
            expected.out[s].extend_from_slice(&backlog.held);
            self.model.backlogs[s] = None;
        }
    }

    fn model_command(&mut self, s: usize, me: usize, cmd: &Cmd, expected: &mut Expected) {
        let my_name = self.model.users[me].name;
        match cmd {
            Cmd::Message { to, text } => {
                let Some(them) = user_index(to) else {
                    return Self::send(expected, s, protocol::INVALID_USER);
                };
                if them == me {
                    return Self::send(expected, s, protocol::CANNOT_MESSAGE_SELF);
                }
                let recipient = &mut self.model.users[them];
                if recipient.blocked.contains(&me) {
                    self.stats.blocked_refusals += 1;
                    return Self::send(expected, s, protocol::MESSAGE_BLOCKED);
                }
                let line = format!("{my_name}: {text}");
                match recipient.session {
                    Some(theirs) => {
                        self.stats.delivered += 1;
                        Self::send(expected, theirs, &line);
                    }
                    None => {
                        recipient.mailbox.push(line);
                        let offline = format!(
                            "{to} is offline. Your message will be delivered when they log in"
                        );
                        Self::send(expected, s, &offline);
                    }
                }
            }
            Cmd::Broadcast { text } => {
                let line = format!("{my_name}: {text}");
                let mut skipped = false;
                for (u, user) in self.model.users.iter().enumerate() {
                    let Some(theirs) = user.session else { continue };
                    if u == me {
                        continue;
                    }
                    if user.blocked.contains(&me) {
                        skipped = true;
                    } else {
                        self.stats.delivered += 1;
                        Self::send(expected, theirs, &line);
                    }
                }
                if skipped {
                    self.stats.partial_broadcasts += 1;
                    Self::send(expected, s, protocol::BROADCAST_PARTIAL);
                }
            }
            Cmd::WhoElse => self.model_who_else(s, me, None, expected),
            Cmd::WhoElseSince(seconds) => {
                self.model_who_else(s, me, Some(Duration::from_secs(*seconds)), expected)
            }
            Cmd::Block(name) => {
                let Some(them) = user_index(name) else {
                    return Self::send(expected, s, protocol::INVALID_USER);
                };
                if them == me {
                    return Self::send(expected, s, protocol::CANNOT_BLOCK_SELF);
                }
                let reply = if self.model.users[me].blocked.insert(them) {
                    format!("{name} is blocked")
                } else {
                    format!("Error. {name} is already blocked")
                };
                Self::send(expected, s, &reply);
            }
            Cmd::Unblock(name) => {
                let Some(them) = user_index(name) else {
                    return Self::send(expected, s, protocol::INVALID_USER);
                };
                if them == me {
                    return Self::send(expected, s, protocol::CANNOT_UNBLOCK_SELF);
                }
                let reply = if self.model.users[me].blocked.remove(&them) {
                    format!("{name} is unblocked")
                } else {
                    format!("Error. {name} was not blocked")
                };
                Self::send(expected, s, &reply);
            }
            Cmd::Logout => {
                self.leave(me, expected);
                Self::send(expected, s, protocol::GOODBYE);
                self.close(s, expected);
            }
            Cmd::Help => {
                let private: &[&str] = match self.model.private_port(s) {
                    Some(_) => protocol::PRIVATE_HELP,
                    None => &[],
                };
                for line in protocol::HELP.iter().chain(private) {
                    Self::send(expected, s, line);
                }
            }
            Cmd::PrivatePort(port) => {
                if let Slot::Open { private_port, .. } = &mut self.model.slots[s] {
                    *private_port = Some(*port);
                }
                self.stats.registrations += 1;
            }
            Cmd::StartPrivate(name) => self.model_start_private(s, me, name, expected),
            Cmd::ClientOnly(name) => {
                let reply = match self.model.private_port(s) {
                    Some(_) => protocol::private_not_enabled(name),
                    None => protocol::PRIVATE_NEEDS_CLIENT.to_owned(),
                };
                Self::send(expected, s, &reply);
            }
            Cmd::Error(reply) => Self::send(expected, s, reply),
        }
    }

    /// `startprivate`: the checks in the order of the README's table, then
    /// a token and the two introduction lines, to the target first.
    fn model_start_private(&mut self, s: usize, me: usize, name: &str, expected: &mut Expected) {
        if self.model.private_port(s).is_none() {
            return Self::send(expected, s, protocol::PRIVATE_NEEDS_CLIENT);
        }
        let Some(them) = user_index(name) else {
            return Self::send(expected, s, protocol::INVALID_USER);
        };
        if them == me {
            return Self::send(expected, s, protocol::CANNOT_PRIVATE_SELF);
        }
        let target = &self.model.users[them];
        if target.blocked.contains(&me) {
            self.stats.private_blocked_refusals += 1;
            let refusal =
                format!("Error. Cannot start private messaging as {name} has blocked you");
            return Self::send(expected, s, &refusal);
        }
        let Some(theirs) = target.session else {
            self.stats.private_unreachable += 1;
            return Self::send(expected, s, &format!("Error. {name} is offline"));
        };
        let Some(port) = self.model.private_port(theirs) else {
            self.stats.private_unreachable += 1;
            let refusal = format!("Error. {name} cannot accept private messaging");
            return Self::send(expected, s, &refusal);
        };
        let draw = self.model.tokens_drawn;
        self.model.tokens_drawn += 1;
        let Some(token) = token_for_draw(draw) else {
            self.stats.private_unavailable += 1;
            return Self::send(expected, s, protocol::PRIVATE_UNAVAILABLE);
        };
        let token = format!("{:032x}", u128::from_be_bytes(token));
        let (prefix, starter) = (protocol::PRIVATE_PREFIX, self.model.users[me].name);
        let accept = format!("{prefix} {} {starter} {token}", protocol::PRIVATE_ACCEPT);
        Self::send(expected, theirs, &accept);
        let address = dial_address(theirs, port);
        let connect = format!(
            "{prefix} {} {name} {address} {token}",
            protocol::PRIVATE_CONNECT
        );
        Self::send(expected, s, &connect);
        self.stats.introductions += 1;
    }

    fn model_who_else(
        &mut self,
        s: usize,
        me: usize,
        window: Option<Duration>,
        expected: &mut Expected,
    ) {
        let now = self.model.now;
        let mut names: Vec<&str> = self
            .model
            .users
            .iter()
            .enumerate()
            .filter(|&(u, user)| {
                u != me
                    && !user.blocked.contains(&me)
                    && (user.session.is_some()
                        || window.is_some_and(|w| {
                            user.last_seen.is_some_and(|t| now.saturating_sub(t) < w)
                        }))
            })
            .map(|(_, user)| user.name)
            .collect();
        names.sort_unstable();
        if names.is_empty() {
            let none = match window {
                None => protocol::NO_OTHER_USERS,
                Some(_) => protocol::NO_OTHER_USERS_SINCE,
            };
            return Self::send(expected, s, none);
        }
        for name in names {
            Self::send(expected, s, name);
        }
    }

    pub(super) fn model_expire(&mut self, order: &[usize], expected: &mut Expected) {
        for &s in order {
            let Slot::Open { stage, .. } = self.model.slots[s] else {
                continue;
            };
            self.stats.timeouts += 1;
            match stage {
                Stage::LoggedIn(user) => {
                    Self::send(expected, s, protocol::INACTIVITY_LOGOUT);
                    self.leave(user, expected);
                }
                Stage::Username | Stage::Password(_) => {
                    Self::send(expected, s, protocol::LOGIN_TIMED_OUT);
                }
            }
            self.close(s, expected);
        }
    }

    pub(super) fn model_shutdown(&mut self, expected: &mut Expected) {
        for s in 0..SESSIONS {
            let Slot::Open { stage, .. } = self.model.slots[s] else {
                continue;
            };
            if let Stage::LoggedIn(user) = stage {
                let account = &mut self.model.users[user];
                account.session = None;
                account.last_seen = Some(self.model.now);
            }
            Self::send(expected, s, protocol::SHUTTING_DOWN);
            self.close(s, expected);
        }
    }
}
