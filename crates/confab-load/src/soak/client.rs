//! One soak client: where its connection is, how it logs in and leaves,
//! and what it makes of the lines it reads.

use std::collections::VecDeque;
use std::io;
use std::net::Shutdown;
use std::time::Instant;

use mio::net::TcpStream;
use mio::Token;

use super::model::{Expect, Mail, Ref};
use super::{Soak, Stage, AWAY_MS, GAP_MS, SESSION_MS, WAIT_LIMIT};
use confab::protocol::{self, AboutUser, Reply};

use crate::wire::{find_newline, set_linger_zero, Broken, Wire};

/// How a churner leaves a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Leave {
    /// `logout`, then the goodbye and the server's close.
    Logout,
    /// Shuts its writing side and reads until the server closes.
    HalfClose,
    /// Closes the socket.
    Close,
    /// Closes with `SO_LINGER` 0: a reset.
    Reset,
    /// Sends the start of a command without its newline, then closes or
    /// resets.
    MidLine,
    /// Sends a few commands and resets at once.
    Burst,
}

impl Leave {
    pub(super) const ALL: [Leave; 6] = [
        Leave::Logout,
        Leave::HalfClose,
        Leave::Close,
        Leave::Reset,
        Leave::MidLine,
        Leave::Burst,
    ];

    /// Relative chance of each, in the order of [`Leave::ALL`].
    pub(super) const WEIGHTS: [usize; 6] = [30, 15, 15, 15, 12, 13];

    pub(super) fn name(self) -> &'static str {
        match self {
            Leave::Logout => "logout",
            Leave::HalfClose => "half-close",
            Leave::Close => "close",
            Leave::Reset => "reset",
            Leave::MidLine => "mid-line",
            Leave::Burst => "burst+reset",
        }
    }
}

/// Where a client's connection is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Phase {
    /// No connection.
    Offline,
    /// Waiting for `Username: `.
    UserPrompt,
    /// Waiting for `Password: `.
    PassPrompt,
    /// Waiting for the welcome.
    Welcome,
    /// Logged in.
    Online,
    /// Sent `block <itself>` and waits for the error before leaving so.
    Quiescing(Leave),
    /// Sent `logout`.
    LoggingOut,
    /// Shut its writing side.
    HalfClosed,
    /// Given up on after something went wrong; never used again.
    Failed,
}

/// A churner's login that is abandoned at a prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Abort {
    AtUsername,
    AtPassword,
}

/// Where a client is in blocking its enemy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Block {
    Unblocked,
    Blocking,
    Blocked,
    Unblocking,
}

/// One client.
pub(super) struct Client {
    pub(super) steady: bool,
    pub(super) garbage: bool,
    /// The one user this client blocks and unblocks.
    pub(super) enemy: usize,
    pub(super) block: Block,
    pub(super) phase: Phase,
    pub(super) wire: Wire,
    pub(super) next_action: Instant,
    pub(super) leave_at: Instant,
    /// An answer is awaited until then (see [`WAIT_LIMIT`]).
    pub(super) deadline: Option<Instant>,
    pub(super) abort: Option<Abort>,
    /// Required messages from the enemy not known to be received.
    pub(super) guard_must: Vec<Ref>,
    /// Messages from the enemy that must not arrive.
    pub(super) guard_must_not: Vec<Ref>,
    /// Messages this client sent to offline users, awaiting the answer.
    pub(super) waits: VecDeque<(usize, u32)>,
    /// Messages for this client awaiting their sender's answer; it does not
    /// log in while there are any.
    pub(super) held: u32,
    /// Messages stored for this client.
    pub(super) mailbox: Vec<u32>,
    /// Stored messages that come after the current welcome.
    pub(super) due: Vec<u32>,
    /// Sessions that ended or are ending.
    pub(super) sessions_ended: u32,
    /// The server has this client offline (a witness saw it leave).
    pub(super) server_offline: bool,
    pub(super) goodbye: bool,
    /// Garbage lines not answered yet.
    pub(super) garbage_pending: u64,
}

impl Soak {
    // ----- connections --------------------------------------------------

    pub(super) fn connect(&mut self, i: usize, now: Instant) -> io::Result<()> {
        let target = self.config.target;
        let stream = TcpStream::connect(target)
            .map_err(|e| io::Error::new(e.kind(), format!("connect to {target}: {e}")))?;
        let registry = self.poll.registry();
        self.clients[i]
            .wire
            .open(stream, registry, Token(i), false)?;
        let abort = if self.stage == Stage::Run && self.rng.chance(5) {
            Some(if self.rng.chance(50) {
                Abort::AtUsername
            } else {
                Abort::AtPassword
            })
        } else {
            None
        };
        let client = &mut self.clients[i];
        client.phase = Phase::UserPrompt;
        client.deadline = Some(now + WAIT_LIMIT);
        client.abort = abort;
        client.goodbye = false;
        client.due = std::mem::take(&mut client.mailbox);
        for &id in &client.due {
            self.directs[id as usize].expect = Expect::Offline(Mail::Due);
        }
        Ok(())
    }

    /// Closes client `i`'s socket, resetting the connection if `reset`.
    pub(super) fn hang_up(&mut self, i: usize, reset: bool) -> io::Result<()> {
        let link = self.clients[i].wire.close(self.poll.registry())?;
        if let Some(link) = link.filter(|_| reset) {
            set_linger_zero(link.transport().socket())?;
        }
        Ok(())
    }

    /// A session of client `i` ended; `clean` if the client read everything
    /// the server sent it.
    fn end_session(&mut self, i: usize, clean: bool, now: Instant) -> io::Result<()> {
        self.hang_up(i, false)?;
        let due = std::mem::take(&mut self.clients[i].due);
        for &id in &due {
            let mail = if clean { Mail::Lost } else { Mail::Dropped };
            self.directs[id as usize].expect = Expect::Offline(mail);
        }
        if clean && !due.is_empty() {
            self.stats.offline_lost += due.len() as u64;
            self.violation(i, format!("{} stored messages missing", due.len()));
        } else {
            self.stats.offline_dropped += due.len() as u64;
        }
        let waits = std::mem::take(&mut self.clients[i].waits);
        if !waits.is_empty() {
            self.stats.offline_unanswered += waits.len() as u64;
            self.violation(i, format!("{} offline messages unanswered", waits.len()));
        }
        for (to, id) in waits {
            self.directs[id as usize].expect = Expect::Offline(Mail::Unanswered);
            self.clients[to].held -= 1;
        }
        let away = self.rng.millis(AWAY_MS);
        let waiting = self.stage != Stage::Closing;
        let client = &mut self.clients[i];
        client.phase = Phase::Offline;
        client.next_action = now + away;
        client.deadline = (waiting && !client.server_offline).then_some(now + WAIT_LIMIT);
        Ok(())
    }

    /// The server closed client `i`'s connection (or reset it).
    pub(super) fn on_closed(&mut self, i: usize, how: String) -> io::Result<()> {
        let now = Instant::now();
        match self.clients[i].phase {
            Phase::HalfClosed => self.end_session(i, true, now),
            Phase::LoggingOut if self.clients[i].goodbye => self.end_session(i, true, now),
            _ => {
                self.stats.unexpected_closes += 1;
                let last = String::from_utf8_lossy(self.clients[i].wire.partial()).into_owned();
                self.fail(i, format!("server {how} (partial line {last:?})"))
            }
        }
    }

    // ----- reading ------------------------------------------------------

    /// Reads client `i` into `scratch` until `WouldBlock`, handling every
    /// line.
    pub(super) fn read(&mut self, i: usize, scratch: &mut [u8]) -> io::Result<()> {
        loop {
            match self.clients[i].wire.read(scratch) {
                Ok(Some(received)) => self.on_bytes(i, received.text)?,
                Ok(None) => return Ok(()),
                Err(Broken::Closed) => return self.on_closed(i, "closed the connection".into()),
                Err(Broken::Failed(e)) => return self.on_closed(i, format!("read failed: {e}")),
            }
        }
    }

    /// Handles the lines of `text` (which starts with what was left from
    /// before) and keeps what follows the last one; that may be a prompt.
    fn on_bytes(&mut self, i: usize, mut text: &[u8]) -> io::Result<()> {
        while let Some(end) = find_newline(text) {
            self.on_line(i, &text[..end])?;
            text = &text[end + 1..];
            if !self.clients[i].wire.is_open() {
                return Ok(());
            }
        }
        let client = &mut self.clients[i];
        let Ok(partial) = client.wire.keep_partial(text) else {
            self.violation(i, "a line longer than 8 KiB".into());
            return self.fail(i, "line too long".into());
        };
        let (reply, next, abort_at) = match client.phase {
            Phase::UserPrompt if partial == protocol::USERNAME_PROMPT.as_bytes() => {
                (&self.names[i], Phase::PassPrompt, Abort::AtUsername)
            }
            Phase::PassPrompt if partial == protocol::PASSWORD_PROMPT.as_bytes() => {
                (&self.passwords[i], Phase::Welcome, Abort::AtPassword)
            }
            _ => return Ok(()),
        };
        if client.abort == Some(abort_at) {
            return self.abort_login(i);
        }
        client.wire.answer_prompt(reply);
        client.phase = next;
        self.dirty.mark(i, &mut self.clients[i].wire);
        Ok(())
    }

    /// Abandons a login at a prompt, so the server never logged it in.
    fn abort_login(&mut self, i: usize) -> io::Result<()> {
        let reset = self.rng.chance(50);
        self.hang_up(i, reset)?;
        self.stats.login_aborts += 1;
        let away = self.rng.millis(AWAY_MS);
        let client = &mut self.clients[i];
        client.mailbox = std::mem::take(&mut client.due);
        for &id in &client.mailbox {
            self.directs[id as usize].expect = Expect::Offline(Mail::Stored);
        }
        client.phase = Phase::Offline;
        client.deadline = None;
        client.next_action = Instant::now() + away;
        Ok(())
    }

    fn on_line(&mut self, i: usize, line: &[u8]) -> io::Result<()> {
        let Ok(line) = std::str::from_utf8(line) else {
            self.violation(i, format!("invalid UTF-8 from the server: {line:?}"));
            return Ok(());
        };
        match self.clients[i].phase {
            Phase::Welcome if line == protocol::WELCOME => {
                let now = Instant::now();
                let gap = self.rng.millis(GAP_MS);
                let session = self.rng.millis(SESSION_MS);
                self.stats.logins += 1;
                let client = &mut self.clients[i];
                client.phase = Phase::Online;
                client.server_offline = false;
                client.deadline = None;
                client.next_action = now + gap;
                client.leave_at = now + session;
                Ok(())
            }
            Phase::UserPrompt | Phase::PassPrompt | Phase::Welcome => {
                self.violation(i, format!("login answered {line:?}"));
                self.fail(i, "login refused".into())
            }
            Phase::Online | Phase::Quiescing(_) | Phase::LoggingOut | Phase::HalfClosed => {
                self.on_session_line(i, line)
            }
            Phase::Offline | Phase::Failed => Ok(()),
        }
    }

    fn user(&self, name: &str) -> Option<usize> {
        let number: usize = name.strip_prefix("user")?.parse().ok()?;
        let i = number.checked_sub(1)?;
        (self.names.get(i)? == name).then_some(i)
    }

    /// Handles one line received by logged-in client `i`.
    fn on_session_line(&mut self, i: usize, line: &str) -> io::Result<()> {
        if let Some((from, text)) = Reply::read_message(line) {
            if let Some(from) = self.user(from) {
                self.on_message(i, from, text);
                return Ok(());
            }
        }
        let about = |shape: AboutUser| Reply::read_user(line, shape);
        if let Some(who) = about(|user| Reply::LoggedIn { user }) {
            if self.user(who).is_some() {
                self.stats.presence += 1;
                return Ok(());
            }
        }
        if let Some(who) = about(|user| Reply::LoggedOut { user }).and_then(|w| self.user(w)) {
            self.stats.presence += 1;
            self.on_logged_out(i, who);
            return Ok(());
        }
        if let Some(to) = about(|user| Reply::Offline { user }).and_then(|w| self.user(w)) {
            self.on_stored(i, to);
            return Ok(());
        }
        if let Some(name) = about(|user| Reply::Blocked { user }) {
            self.on_block_answer(i, name, Block::Blocking, Block::Blocked);
            return Ok(());
        }
        if let Some(name) = about(|user| Reply::Unblocked { user }) {
            self.on_block_answer(i, name, Block::Unblocking, Block::Unblocked);
            return Ok(());
        }
        match line {
            protocol::MESSAGE_BLOCKED => self.stats.refused += 1,
            protocol::BROADCAST_PARTIAL => self.stats.refused_broadcasts += 1,
            protocol::NO_OTHER_USERS | protocol::NO_OTHER_USERS_SINCE => self.stats.info += 1,
            protocol::CANNOT_BLOCK_SELF => return self.on_sync(i),
            protocol::GOODBYE if self.clients[i].phase == Phase::LoggingOut => {
                self.clients[i].goodbye = true;
            }
            protocol::LINE_TOO_LONG | protocol::INVALID_ENCODING | protocol::INVALID_COMMAND
                if self.clients[i].garbage_pending > 0 =>
            {
                self.clients[i].garbage_pending -= 1;
                self.stats.garbage_answered += 1;
            }
            _ if self.user(line).is_some() || protocol::HELP.contains(&line) => {
                self.stats.info += 1;
            }
            _ => self.violation(i, format!("unexpected line {line:?}")),
        }
        Ok(())
    }

    /// Client `i` heard that `who` logged out.
    fn on_logged_out(&mut self, i: usize, who: usize) {
        let Some(w) = self.witnesses.iter().position(|&w| w == i) else {
            return;
        };
        if self.clients[who].enemy == i {
            // Who may have blocked this witness: it proves nothing.
            return;
        }
        self.seen_out[w][who] += 1;
        let seen = self.seen_out[w][who];
        let client = &mut self.clients[who];
        if seen > client.sessions_ended && client.phase != Phase::Failed {
            self.violation(i, format!("{who} logged out more often than it left"));
            return;
        }
        let leaving = matches!(
            client.phase,
            Phase::Offline | Phase::Quiescing(_) | Phase::LoggingOut | Phase::HalfClosed
        );
        if seen == client.sessions_ended && leaving && !client.server_offline {
            client.server_offline = true;
            if client.phase == Phase::Offline {
                client.deadline = None;
            }
        }
    }

    fn on_block_answer(&mut self, i: usize, name: &str, from: Block, to: Block) {
        let client = &mut self.clients[i];
        if client.block == from && self.names[client.enemy] == name {
            client.block = to;
        } else {
            self.violation(i, format!("unexpected answer about {name}"));
        }
    }

    /// The answer to `block <itself>`: everything sent before is handled.
    fn on_sync(&mut self, i: usize) -> io::Result<()> {
        let Phase::Quiescing(leave) = self.clients[i].phase else {
            self.violation(i, "unexpected sync answer".into());
            return Ok(());
        };
        let reset = match leave {
            Leave::Close => false,
            Leave::Reset => true,
            Leave::MidLine => {
                let to = self.rng.pick(&self.steady);
                let start = format!("message {} unfinished", self.names[to]);
                self.write_now(i, start.as_bytes());
                self.rng.chance(50)
            }
            Leave::Burst => {
                let to = self.rng.pick(&self.steady);
                let (_, text) = self.new_direct(i, to, Expect::Maybe);
                let broadcast = self.new_broadcast(i);
                let burst = format!(
                    "whoelse\nmessage {} {text}\nwhoelsesince 60\nbroadcast {broadcast}\n",
                    self.names[to],
                );
                self.write_now(i, burst.as_bytes());
                true
            }
            Leave::Logout | Leave::HalfClose => {
                self.violation(i, "sync answer while leaving cleanly".into());
                return Ok(());
            }
        };
        self.hang_up(i, reset)?;
        self.end_session(i, false, Instant::now())
    }

    /// Writes `bytes` at once, as far as the socket takes them.
    fn write_now(&mut self, i: usize, bytes: &[u8]) {
        // Best effort: the connection is dropped right after.
        self.clients[i].wire.write_now(bytes);
    }

    // ----- leaving ------------------------------------------------------

    /// Starts client `i`'s departure in a random way.
    pub(super) fn leave(&mut self, i: usize, now: Instant) -> io::Result<()> {
        if self.clients[i].wire.pending() > 0 {
            // Leave once what is queued is written.
            return Ok(());
        }
        let mut roll = self.rng.below(Leave::WEIGHTS.iter().sum());
        let mut way = 0;
        while roll >= Leave::WEIGHTS[way] {
            roll -= Leave::WEIGHTS[way];
            way += 1;
        }
        let leave = Leave::ALL[way];
        self.stats.leaves[way] += 1;
        self.clients[i].sessions_ended += 1;
        self.clients[i].deadline = Some(now + WAIT_LIMIT);
        match leave {
            Leave::Logout => {
                self.queue(i, "logout");
                self.clients[i].phase = Phase::LoggingOut;
            }
            Leave::HalfClose => {
                let shut = match self.clients[i].wire.stream() {
                    Some(stream) => stream.shutdown(Shutdown::Write),
                    None => Ok(()),
                };
                if let Err(e) = shut {
                    self.stats.unexpected_closes += 1;
                    return self.fail(i, format!("half-close failed: {e}"));
                }
                self.clients[i].phase = Phase::HalfClosed;
            }
            _ => {
                let sync = format!("block {}", self.names[i]);
                self.queue(i, &sync);
                self.clients[i].phase = Phase::Quiescing(leave);
            }
        }
        Ok(())
    }

    /// Sends `logout` at the end of the run.
    pub(super) fn start_logout(&mut self, i: usize) {
        self.clients[i].sessions_ended += 1;
        self.clients[i].deadline = None;
        self.queue(i, "logout");
        self.clients[i].phase = Phase::LoggingOut;
    }
}
