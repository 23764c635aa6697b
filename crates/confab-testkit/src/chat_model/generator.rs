//! The generator: a [`Source`]'s bytes decoded into operations, the
//! meaning of a line depending on the session's stage so that logins
//! actually happen.

use super::*;

impl Harness {
    /// Decodes the next operation; the meaning of a line depends on the
    /// session's stage, so that logins actually happen.
    pub(super) fn next_op(&mut self, src: &mut impl Source) -> Option<Op> {
        let kind = src.byte()?;
        let s = usize::from(src.byte()?) % SESSIONS;
        let op = match kind % 32 {
            0 => Op::Connect(s),
            1 => Op::Disconnect(s),
            2 => match src.byte()? % 2 {
                0 => Op::LineError(s, LineError::TooLong),
                _ => Op::LineError(s, LineError::InvalidEncoding),
            },
            3..=23 => {
                let (pick, arg) = (src.byte()?, src.byte()?);
                match self.model.slots[s] {
                    Slot::Free => Op::Connect(s),
                    Slot::Closed => Op::Disconnect(s),
                    // Half the time during a backlog (the bits of `kind`
                    // above the operation), the server writes some of it,
                    // a line or two at a time and often less than it
                    // queued, so that lines wait queued across steps.
                    Slot::Open { .. } if self.model.backlogs[s].is_some() && kind & 0x20 == 0 => {
                        Op::Mail {
                            s,
                            hand: [0, 1, 1, 2][usize::from(pick % 4)],
                            confirm: [0, 0, 1, 2][usize::from(pick >> 2) % 4],
                        }
                    }
                    Slot::Open { stage, .. } => self.line(s, stage, pick, arg),
                }
            }
            24..=31 => {
                let b = src.byte()?;
                // A quarter of the time, the presence delay runs out.
                if b & 0xc0 == 0xc0 {
                    return Some(Op::Release);
                }
                // A cluster's nodes fire their timers in every batch they
                // apply, so a replicated run expires whenever time moves.
                Op::Advance {
                    step: Duration::from_millis(STEPS_MS[usize::from(b % 16)]),
                    expire: b & 0x30 != 0 || self.cluster.is_some(),
                }
            }
            _ => unreachable!(),
        };
        Some(op)
    }

    pub(super) fn line(&mut self, s: usize, stage: Stage, pick: u8, arg: u8) -> Op {
        let name = |i: u8| ACCOUNTS[usize::from(i) % ACCOUNTS.len()].0;
        // A user, the nobody, or (for block/unblock) a word that is not one.
        let target = |i: u8| match i % 5 {
            4 => NOBODY,
            i => name(i),
        };
        let (text, cmd): (String, Option<Cmd>) = match stage {
            Stage::Username => match pick % 16 {
                0..=9 => (name(arg).into(), None),
                10 => (NOBODY.into(), None),
                11 => ("yoda wise".into(), None),
                12 => ("whoelse".into(), None),
                13 => return Op::Line(s, b"   \r".to_vec(), None),
                14 => return Op::Line(s, b"\xffyoda".to_vec(), None),
                _ => ("wise".into(), None),
            },
            Stage::Password(u) => match pick % 16 {
                0..=7 => (ACCOUNTS[u].1.into(), None),
                8..=11 => ("wrong".into(), None),
                12 => (ACCOUNTS[(u + 1) % ACCOUNTS.len()].1.into(), None),
                13 => (ACCOUNTS[u].0.into(), None),
                14 => return Op::Line(s, b" \r".to_vec(), None),
                _ => return Op::Line(s, b"wise\xc3".to_vec(), None),
            },
            Stage::LoggedIn(me) => {
                let usage = |k: Keyword| Some(Cmd::Error(k.usage().to_owned()));
                let invalid = || Some(Cmd::Error(protocol::INVALID_COMMAND.to_owned()));
                let gap = if arg & 0x40 != 0 { "   " } else { " " };
                // One of `n` choices, not tied to the padding (`arg % 4`).
                let choose = |n: usize| usize::from(arg >> 2) % n;
                // 0..=31: the eight commands of `protocol.md`; 32..: private
                // messaging, a third of the lines. A session that has not
                // sent `privateport` mostly sends that first (unless
                // `pick` < 48, one time in five), as the `confab` client
                // does right after login: an introduction needs two
                // registered sessions online at once.
                let registered = self.model.private_port(s).is_some();
                let pick = match pick % 48 {
                    32.. if !registered && pick >= 48 => 32,
                    small => small,
                };
                match pick {
                    0..=5 => {
                        // Half the time someone offline now, so that
                        // mailboxes fill and backlogs are long.
                        let offline: Vec<&'static str> = self
                            .model
                            .users
                            .iter()
                            .filter(|user| user.session.is_none())
                            .map(|user| user.name)
                            .collect();
                        let to = match pick {
                            0..=2 if !offline.is_empty() => offline[choose(offline.len())],
                            _ => target(arg),
                        };
                        let text = self.text('m', arg);
                        (
                            format!("message{gap}{to}{gap}{text}"),
                            Some(Cmd::Message { to, text }),
                        )
                    }
                    6 => (format!("message {}", target(arg)), usage(Keyword::Message)),
                    7 => ("message".into(), usage(Keyword::Message)),
                    8..=10 => {
                        let text = self.text('b', arg);
                        (
                            format!("broadcast{gap}{text}"),
                            Some(Cmd::Broadcast { text }),
                        )
                    }
                    11 => ("broadcast".into(), usage(Keyword::Broadcast)),
                    12 => ("whoelse".into(), Some(Cmd::WhoElse)),
                    13 => (format!("whoelse {}", name(arg)), usage(Keyword::WhoElse)),
                    14 | 15 => {
                        let (word, seconds) = [
                            ("0", 0),
                            ("1", 1),
                            ("2", 2),
                            ("3600", 3600),
                            ("99999999999999999999999", u64::MAX),
                        ][usize::from(arg) % 5];
                        (
                            format!("whoelsesince{gap}{word}"),
                            Some(Cmd::WhoElseSince(seconds)),
                        )
                    }
                    16 => {
                        let word = ["", " -1", " 1.5", " x", " 1 2"][usize::from(arg) % 5];
                        (format!("whoelsesince{word}"), usage(Keyword::WhoElseSince))
                    }
                    17..=19 => {
                        // During a backlog, half the time the sender of a
                        // line still in it.
                        let mailbox = &self.model.users[me].mailbox;
                        let pending = match self.model.backlogs[s] {
                            Some(_) if arg & 0x80 == 0 && !mailbox.is_empty() => {
                                message(&mailbox[choose(mailbox.len())])
                                    .map(|(sender, _)| ACCOUNTS[sender].0)
                            }
                            _ => None,
                        };
                        let who = pending.unwrap_or_else(|| target(arg));
                        (format!("block{gap}{who}"), Some(Cmd::Block(who)))
                    }
                    20 => match arg % 2 {
                        0 => ("block".into(), usage(Keyword::Block)),
                        _ => ("block yoda hans".into(), usage(Keyword::Block)),
                    },
                    21 | 22 => {
                        let who = target(arg);
                        (format!("unblock{gap}{who}"), Some(Cmd::Unblock(who)))
                    }
                    23 => match arg % 2 {
                        0 => ("unblock".into(), usage(Keyword::Unblock)),
                        _ => ("unblock yoda  hans".into(), usage(Keyword::Unblock)),
                    },
                    24 | 25 => ("logout".into(), Some(Cmd::Logout)),
                    26 => ("logout now".into(), usage(Keyword::Logout)),
                    27 => ("help".into(), Some(Cmd::Help)),
                    28 => ("help me".into(), usage(Keyword::Help)),
                    29 => {
                        let junk = ["Message yoda hi", "hello", "WHOELSE", "logouts"];
                        (junk[usize::from(arg) % 4].into(), invalid())
                    }
                    30 => return Op::Line(s, b"    ".to_vec(), None),
                    31 => return Op::Line(s, b"\xfe\xff whoelse".to_vec(), None),
                    32..=34 => {
                        let (word, port) = PORTS[choose(PORTS.len())];
                        (
                            format!("privateport{gap}{word}"),
                            Some(Cmd::PrivatePort(port)),
                        )
                    }
                    35 => (
                        BAD_PORT_LINES[choose(BAD_PORT_LINES.len())].into(),
                        usage(Keyword::PrivatePort),
                    ),
                    36 => {
                        let (who, text) = (target(arg), self.text('p', arg));
                        (
                            format!("private{gap}{who}{gap}{text}"),
                            Some(Cmd::ClientOnly(who)),
                        )
                    }
                    37 => {
                        let who = target(arg);
                        (format!("stopprivate{gap}{who}"), Some(Cmd::ClientOnly(who)))
                    }
                    38 => {
                        let (line, keyword) = BAD_PRIVATE_LINES[choose(BAD_PRIVATE_LINES.len())];
                        (line.into(), usage(keyword))
                    }
                    39 => (
                        NOT_PRIVATE_COMMANDS[choose(NOT_PRIVATE_COMMANDS.len())].into(),
                        invalid(),
                    ),
                    40 => ("help".into(), Some(Cmd::Help)),
                    _ => {
                        // Half the time someone online now, or there would
                        // be few introductions.
                        let online: Vec<&'static str> = self
                            .model
                            .users
                            .iter()
                            .filter(|user| user.session.is_some_and(|theirs| theirs != s))
                            .map(|user| user.name)
                            .collect();
                        let who = match arg & 0x80 {
                            0 if !online.is_empty() => online[choose(online.len())],
                            _ => target(arg),
                        };
                        (
                            format!("startprivate{gap}{who}"),
                            Some(Cmd::StartPrivate(who)),
                        )
                    }
                }
            }
        };
        // Surrounding spaces and one `\r`, which decoding must remove.
        let raw = match arg % 4 {
            0 => text,
            1 => format!("  {text}"),
            2 => format!("{text}  \r"),
            _ => format!("{text}\r"),
        };
        Op::Line(s, raw.into_bytes(), cmd)
    }

    /// A fresh message text: unique, sometimes with inner spaces.
    pub(super) fn text(&mut self, kind: char, arg: u8) -> String {
        self.counter += 1;
        match arg & 0x80 {
            0 => format!("{kind}{}", self.counter),
            _ => format!("{kind}{}  two  words", self.counter),
        }
    }
}
