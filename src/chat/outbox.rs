//! What the domain answers with: the [`Effect`]s of the calls since the
//! server last drained them, the one buffer their text is rendered into,
//! and the journal records of the durable changes they promise.
//!
//! Every line is rendered once, whatever the number of recipients: a
//! broadcast to a thousand users is one line of text and a thousand
//! `Send` effects naming it, and costs no allocation per recipient. The
//! domain writes only the texts of [`crate::protocol`] here: its constants
//! ([`Outbox::line`]), its typed replies ([`Outbox::reply`],
//! [`Outbox::render`]) and the login prompts ([`Outbox::prompt`]).

use std::ops::Range;

use super::{SessionId, WallClock};
use crate::journal::record::{self, Record};
use crate::protocol::Reply;

/// One thing the server must do on behalf of the domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Effect {
    /// Append the bytes `text` of [`Outbox::text`] to the session's output.
    Send {
        /// The recipient.
        to: SessionId,
        /// Where the bytes are in the outbox's text.
        text: Range<usize>,
    },
    /// Append the bytes `text` of [`Outbox::text`] to the session's output,
    /// like `Send`, but nobody waits for them (presence lines): the server
    /// may hold them for a short, bounded time so that several go out in
    /// one write, as long as they stay in order with everything else sent
    /// to the session (whatever is sent to it later goes after them).
    Notice {
        /// The recipient.
        to: SessionId,
        /// Where the bytes are in the outbox's text.
        text: Range<usize>,
    },
    /// Flush the session's pending output, then close its connection. The
    /// session is already over in the domain.
    Close(SessionId),
    /// The session just logged in and has offline mail, or sent `!stamps`
    /// (its backlog then ends with `!queued end`, mail or not): write it
    /// from [`Chat::backlog`](super::Chat::backlog) at the pace the client
    /// reads, reporting what was written with
    /// [`Chat::backlog_written`](super::Chat::backlog_written), and keep
    /// everything sent to the session after this effect until the backlog
    /// is written.
    Backlog(SessionId),
}

/// A password to check against its Argon2 hash, which the domain leaves to
/// the server: verifying costs tens of milliseconds of CPU, too long for
/// the loop. The server answers with [`Chat::verified`](super::Chat::verified);
/// until then the session reads nothing more.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    /// The session that gave the password.
    pub session: SessionId,
    /// Which connection of that id it was (the answer must name it).
    pub epoch: u64,
    /// The password given.
    pub given: String,
    /// The hash it must match (a PHC string).
    pub stored: Box<str>,
}

/// The effects of the calls since the server last drained it. The text of
/// every `Send` lives in one shared buffer, so a line sent to a thousand
/// users is rendered once and costs no allocation per recipient.
#[derive(Debug, Default)]
pub struct Outbox {
    text: Vec<u8>,
    effects: Vec<Effect>,
    /// Set once changes to durable state produce records: converts ban
    /// expiries to wall-clock time for them.
    recording: Option<WallClock>,
    /// Framed journal records of the changes, in order.
    records: Vec<u8>,
    /// Sessions whose output must wait until `records` are durable.
    held: Vec<SessionId>,
    /// Passwords for the server to verify, oldest first.
    verifications: Vec<Verification>,
}

impl Outbox {
    /// The effects in the order they happened.
    pub fn effects(&self) -> &[Effect] {
        &self.effects
    }

    /// The bytes of a `Send` or `Notice` effect.
    pub fn text(&self, range: Range<usize>) -> &[u8] {
        &self.text[range]
    }

    /// The journal records of the changes made (framed, see
    /// [`record::encode`]); empty unless
    /// [`Chat::record_changes`](super::Chat::record_changes) was called.
    pub fn records(&self) -> &[u8] {
        &self.records
    }

    /// Sessions that were sent a reply promising a change recorded in
    /// [`Outbox::records`]: none of their output may be written before
    /// those records are durable. A session may be listed more than once.
    pub fn held(&self) -> &[SessionId] {
        &self.held
    }

    /// Whether passwords wait to be verified.
    #[inline]
    pub fn has_verifications(&self) -> bool {
        !self.verifications.is_empty()
    }

    /// Takes the passwords to verify; each is answered with
    /// [`Chat::verified`](super::Chat::verified).
    pub fn take_verifications(&mut self) -> Vec<Verification> {
        std::mem::take(&mut self.verifications)
    }

    /// Asks the server to verify a password.
    pub(super) fn verify(&mut self, verification: Verification) {
        self.verifications.push(verification);
    }

    /// Forgets every effect, its text, the records and the held sessions,
    /// keeping the buffers' capacity for reuse.
    pub fn clear(&mut self) {
        self.text.clear();
        self.clear_effects();
    }

    /// Forgets the effects, records and held sessions but keeps the text,
    /// so that the server can still copy ranges it has not copied yet (it
    /// coalesces consecutive lines for one recipient into one copy).
    pub fn clear_effects(&mut self) {
        self.effects.clear();
        self.records.clear();
        self.held.clear();
    }

    /// Renames the recipient of every effect, held session and
    /// verification with `to`, dropping those it maps to `None`: in a
    /// cluster every replica produces every effect, and a node keeps only
    /// those for its own connections, under its own names for them.
    pub fn retarget(&mut self, mut to: impl FnMut(SessionId) -> Option<SessionId>) {
        self.effects.retain_mut(|effect| {
            let sid = match effect {
                Effect::Send { to, .. } | Effect::Notice { to, .. } => to,
                Effect::Close(sid) | Effect::Backlog(sid) => sid,
            };
            match to(*sid) {
                Some(renamed) => {
                    *sid = renamed;
                    true
                }
                None => false,
            }
        });
        self.held
            .retain_mut(|sid| to(*sid).map(|renamed| *sid = renamed).is_some());
        self.verifications
            .retain_mut(|v| to(v.session).map(|renamed| v.session = renamed).is_some());
    }

    /// Bytes of text held.
    pub fn text_len(&self) -> usize {
        self.text.len()
    }

    /// From now on, changes to durable state produce records and hold the
    /// replies that promise them; `clock` converts ban expiries.
    pub(super) fn start_recording(&mut self, clock: WallClock) {
        self.recording = Some(clock);
    }

    /// The clock for ban records, if changes are recorded.
    pub(super) fn recording(&self) -> Option<WallClock> {
        self.recording
    }

    /// Renders `reply` once, ending it with a newline, and returns where it
    /// is, ready to be sent to any number of sessions.
    #[inline]
    pub(super) fn render(&mut self, reply: Reply<'_>) -> Range<usize> {
        let start = self.text.len();
        reply.append_to(&mut self.text);
        self.text.push(b'\n');
        start..self.text.len()
    }

    /// Sends text already rendered.
    #[inline]
    pub(super) fn send(&mut self, to: SessionId, text: Range<usize>) {
        self.effects.push(Effect::Send { to, text });
    }

    /// Sends text already rendered that nobody waits for (see
    /// [`Effect::Notice`]).
    #[inline]
    pub(super) fn notice(&mut self, to: SessionId, text: Range<usize>) {
        self.effects.push(Effect::Notice { to, text });
    }

    /// Renders and sends one reply (a newline is added).
    #[inline]
    pub(super) fn reply(&mut self, to: SessionId, reply: Reply<'_>) {
        let range = self.render(reply);
        self.send(to, range);
    }

    /// Sends one fixed line of [`crate::protocol`] (a newline is added).
    pub(super) fn line(&mut self, to: SessionId, line: &str) {
        let start = self.text.len();
        self.text.extend_from_slice(line.as_bytes());
        self.text.push(b'\n');
        self.send(to, start..self.text.len());
    }

    /// Sends text with no newline: the login prompts.
    pub(super) fn prompt(&mut self, to: SessionId, prompt: &str) {
        let start = self.text.len();
        self.text.extend_from_slice(prompt.as_bytes());
        self.send(to, start..self.text.len());
    }

    /// Asks the server to close the session's connection once what was
    /// queued for it is flushed.
    pub(super) fn close(&mut self, sid: SessionId) {
        self.effects.push(Effect::Close(sid));
    }

    /// Asks the server to write the session's offline mail.
    pub(super) fn backlog(&mut self, sid: SessionId) {
        self.effects.push(Effect::Backlog(sid));
    }

    /// Appends the record of a change, if changes are recorded.
    pub(super) fn record(&mut self, change: &Record<'_>) {
        if self.recording.is_some() {
            record::encode(change, &mut self.records);
        }
    }

    /// Keeps `sid`'s output until the records are durable, if changes are
    /// recorded.
    pub(super) fn hold(&mut self, sid: SessionId) {
        if self.recording.is_some() {
            self.held.push(sid);
        }
    }
}
