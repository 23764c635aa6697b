//! The driver: each operation run on [`Chat`], the harness playing the
//! server (offline mail pulled a few lines at a time, output held behind
//! a backlog), then the model and the checks consulted.

use super::*;

impl Harness {
    /// The instant `offset` after the run's start.
    pub(super) fn at(&self, offset: Duration) -> Instant {
        self.t0 + offset
    }

    /// Runs one operation on the domain and checks what it did.
    pub(super) fn apply(&mut self, op: Op) {
        // A connect on a slot in use is a new connection after the server
        // noticed the old one went away.
        if let Op::Connect(s) = op {
            if self.model.slots[s] != Slot::Free {
                self.apply(Op::Disconnect(s));
            }
        }
        if self.trace.len() == TRACE {
            self.trace.pop_front();
        }
        self.trace.push_back((self.model.now, op.clone()));
        self.stats.steps += 1;

        let pre = self.model.clone();
        let drawn = TOKENS_DRAWN.get();
        self.replicate_before(&op);
        let now = self.at(self.model.now);
        // Sessions that may get output during this step.
        let mut open: [bool; SESSIONS] =
            std::array::from_fn(|s| matches!(pre.slots[s], Slot::Open { .. }));
        let mut expected = Expected::default();
        let actual = match &op {
            Op::Connect(s) => {
                let group = self.cluster.as_ref().map_or(0, |c| c.group(*s));
                self.chat
                    .connect_in(self.sids[*s], SESSION_IPS[*s], true, group, now);
                open[*s] = true;
                self.take(open)
            }
            Op::Line(s, raw, _) => {
                match decode_line(raw) {
                    Ok(Some(text)) => self.chat.line(self.sids[*s], text, now),
                    Ok(None) => {}
                    Err(error) => self.chat.line_error(self.sids[*s], error, now),
                }
                self.take(open)
            }
            Op::LineError(s, error) => {
                if open[*s] {
                    self.chat.line_error(self.sids[*s], *error, now);
                }
                self.take(open)
            }
            Op::Disconnect(s) => {
                // The connection is gone, and what waited for it with it.
                self.give_up_backlog(*s);
                if !self.notices[*s].is_empty() {
                    self.notices[*s].clear();
                    self.stats.notices_dropped += 1;
                }
                self.chat.disconnect(self.sids[*s], now);
                open[*s] = false;
                self.take(open)
            }
            Op::Advance { step, expire } => {
                self.model.now += *step;
                let now = self.at(self.model.now);
                if *expire {
                    self.chat.expire(now);
                    if self.chat.next_deadline().is_some_and(|d| d <= now) {
                        self.fail("expire left a timer due".into());
                    }
                }
                self.take(open)
            }
            Op::Mail { s, hand, confirm } => self.write_backlog(*s, *hand, *confirm),
            Op::Release => self.release_notices(),
            Op::Shutdown => {
                self.chat.shutdown(now);
                self.done = true;
                self.take(open)
            }
        };

        // The model's version of the same step.
        match &op {
            Op::Connect(s) => self.model_connect(*s, &mut expected),
            Op::Line(s, raw, cmd) => match decode_line(raw) {
                Ok(Some(text)) => self.model_line(*s, text, cmd.as_ref(), &mut expected),
                Ok(None) => {}
                Err(error) => self.model_line_error(*s, error, &mut expected),
            },
            Op::LineError(s, error) => self.model_line_error(*s, *error, &mut expected),
            Op::Disconnect(s) => self.model_disconnect(*s, &mut expected),
            Op::Advance { expire: true, .. } => {
                let order = self.timeout_order(&actual);
                self.model_expire(&order, &mut expected);
            }
            Op::Advance { expire: false, .. } => {}
            Op::Mail { s, hand, confirm } => self.model_mail(*s, *hand, *confirm, &mut expected),
            Op::Release => self.model_release(&mut expected),
            Op::Shutdown => self.model_shutdown(&mut expected),
        }
        for s in 0..SESSIONS {
            self.route(s, &mut expected);
        }

        self.check_invariants(&pre, &actual, &expected);
        self.check_backlog(&pre, &actual);
        self.check_introductions(&pre, &actual);
        self.check_transcripts(&actual, &expected);
        self.check_state();
        self.replicate_after(&op, &pre, &actual, drawn);
    }

    /// The session that `sid` names among those `open`.
    fn slot_of(&self, sid: SessionId, open: &[bool; SESSIONS]) -> Option<usize> {
        (0..SESSIONS).find(|&s| open[s] && self.sids[s] == sid)
    }

    /// Drains the outbox into an [`Actual`], failing on output to a session
    /// that is not open and on a second close.
    pub(super) fn take(&mut self, mut open: [bool; SESSIONS]) -> Actual {
        let mut actual = Actual::default();
        let mut partial: [Vec<u8>; SESSIONS] = Default::default();
        let mut problem = None;
        for (sid, done) in drain(&mut self.chat) {
            let Some(s) = self.slot_of(sid, &open) else {
                let what = match done {
                    Done::Send(_) | Done::Notice(_) => "output",
                    Done::Close => "a close",
                    Done::Backlog => "a backlog",
                };
                problem.get_or_insert(format!("{what} to {sid:?}, which is not open"));
                continue;
            };
            actual.effects.push((s, done.clone()));
            let notice = matches!(done, Done::Notice(_));
            match done {
                Done::Backlog => {
                    if self.writers[s].is_some() {
                        problem.get_or_insert(format!("a second backlog of {sid:?}"));
                        continue;
                    }
                    let after_welcome = partial[s].is_empty()
                        && actual
                            .pieces
                            .iter()
                            .rev()
                            .find(|(to, _)| *to == s)
                            .is_some_and(|(_, line)| line == protocol::WELCOME);
                    actual.backlog_starts.push((s, after_welcome));
                    self.writers[s] = Some(Writer::default());
                }
                Done::Send(bytes) | Done::Notice(bytes) => {
                    actual.sent[s].extend_from_slice(&bytes);
                    let writer = self.writers[s].as_mut();
                    let held = writer.is_some();
                    match writer {
                        Some(writer) => writer.held.extend_from_slice(&bytes),
                        // The server holds a notice; anything else lets
                        // the held notices go first.
                        None if notice => self.notices[s].extend_from_slice(&bytes),
                        None => {
                            if !self.notices[s].is_empty() {
                                self.stats.notices_led += 1;
                                actual.out[s].append(&mut self.notices[s]);
                            }
                            actual.out[s].extend_from_slice(&bytes);
                        }
                    }
                    for b in bytes {
                        if b == b'\n' {
                            let line = utf8(std::mem::take(&mut partial[s]));
                            if held {
                                self.stats.held_lines += 1;
                                if message(&line).is_some() {
                                    self.stats.held_messages += 1;
                                }
                            }
                            actual.pieces.push((s, line));
                        } else {
                            partial[s].push(b);
                        }
                    }
                }
                Done::Close => {
                    // Held notices go out, the backlog is given up, and
                    // what waited for it goes out before the close.
                    actual.out[s].append(&mut self.notices[s]);
                    if let Some(writer) = self.give_up_backlog(s) {
                        actual.out[s].extend_from_slice(&writer.held);
                    }
                    open[s] = false;
                    actual.closes.insert(s);
                }
            }
        }
        for (s, rest) in partial.into_iter().enumerate() {
            if !rest.is_empty() {
                actual.pieces.push((s, utf8(rest)));
            }
        }
        self.stats.notices_held += self.notices.iter().filter(|n| !n.is_empty()).count();
        if let Some(problem) = problem {
            self.fail(problem);
        }
        actual
    }

    /// Plays the server for [`Op::Mail`]: queues up to `hand` more lines
    /// of session `s`'s backlog, from after those already queued; the socket
    /// takes `confirm` queued lines (at most all), which go to the
    /// session's output and are reported with `backlog_written`; once
    /// nothing is queued and the backlog is empty, the held output follows
    /// and the backlog is over.
    fn write_backlog(&mut self, s: usize, hand: usize, confirm: usize) -> Actual {
        let mut actual = Actual::default();
        let sid = self.sids[s];
        let Some(writer) = self.writers[s].as_mut() else {
            return actual;
        };
        let from = writer.queued.len();
        let handed: Vec<String> = self
            .chat
            .backlog(sid, from)
            .take(hand)
            .map(|line| line.to_string())
            .collect();
        if from > 0 && !handed.is_empty() {
            self.stats.backlog_later_pulls += 1;
        }
        for line in &handed {
            if self.unwritten.remove(line) {
                self.stats.backlog_rehanded += 1;
            }
        }
        writer.queued.extend(handed.iter().cloned());
        let n = confirm.min(writer.queued.len());
        let written: Vec<String> = writer.queued.drain(..n).collect();
        for line in &written {
            actual.out[s].extend_from_slice(line.as_bytes());
            actual.out[s].push(b'\n');
        }
        self.chat.backlog_written(sid, n);
        if let Some(effect) = self.chat.outbox().effects().first().cloned() {
            self.fail(format!("backlog_written({sid:?}, {n}) emitted {effect:?}"));
        }
        let finished = self.writers[s]
            .as_ref()
            .is_some_and(|writer| writer.queued.is_empty())
            && self.chat.backlog(sid, 0).next().is_none();
        if finished {
            if let Some(writer) = self.writers[s].take() {
                actual.out[s].extend_from_slice(&writer.held);
            }
        }
        actual.mail = Some(MailStep {
            s,
            hand,
            from,
            handed,
            written,
            finished,
        });
        actual
    }

    /// Plays the server for [`Op::Release`]: every held notice goes out.
    fn release_notices(&mut self) -> Actual {
        let mut actual = Actual::default();
        let mut any = false;
        for s in 0..SESSIONS {
            any |= !self.notices[s].is_empty();
            actual.out[s].append(&mut self.notices[s]);
        }
        if any {
            self.stats.notices_released += 1;
        }
        actual
    }

    /// Ends session `s`'s backlog, if it has one, before it is written
    /// whole: the lines queued and not confirmed are not written (they stay
    /// in the mailbox). Returns what the server kept for the session.
    fn give_up_backlog(&mut self, s: usize) -> Option<Writer> {
        let writer = self.writers[s].take()?;
        self.unwritten.extend(writer.queued.iter().cloned());
        Some(writer)
    }

    /// The sessions that got a timeout notice, in the order they got it,
    /// checked against the sessions that are idle.
    fn timeout_order(&self, actual: &Actual) -> Vec<usize> {
        let order: Vec<usize> = actual
            .pieces
            .iter()
            .filter(|(_, line)| {
                line == protocol::INACTIVITY_LOGOUT || line == protocol::LOGIN_TIMED_OUT
            })
            .map(|&(s, _)| s)
            .collect();
        let idle: BTreeSet<usize> = (0..SESSIONS)
            .filter(|&s| match self.model.slots[s] {
                Slot::Open { last_activity, .. } => last_activity + TIMEOUT <= self.model.now,
                _ => false,
            })
            .collect();
        let got: BTreeSet<usize> = order.iter().copied().collect();
        if got.len() != order.len() || got != idle {
            self.fail(format!(
                "expire timed out sessions {order:?}; the idle ones were {idle:?}"
            ));
        }
        order
    }
}
