//! What the client does in its terminal UI: keys edit the input line and
//! Enter sends it the way a typed line goes; your own messages are shown
//! as sent; `help` is answered here; Tab completes; a server that closes
//! the connection leaves the screen as it was and an offer to reconnect;
//! and `private` lines typed while a session is being started wait for
//! it.

use std::collections::HashMap;
use std::time::Instant;

use super::editor::Edit;
use super::failure::Failure;
use super::keys::Key;
use super::private::START_TIMEOUT;
use super::ui::Prompt;
use super::{connect, display, target, Client, End, LEAVE_TIMEOUT};
use crate::net::link::Link;
use crate::protocol::{self, Command, Reply};

/// `private` lines held at most while sessions are being started.
const MAX_HELD: usize = 64;
/// Bytes of a server line kept to recognise a refusal of `startprivate`.
const MAX_REFUSAL: usize = 256;

/// Private sessions asked for with `startprivate` and not open yet, and
/// the `private` lines typed for them meanwhile: sent once the session
/// opens, refused when the server refuses the start (its refusals that
/// name the user) or when it has not opened within [`START_TIMEOUT`].
#[derive(Debug, Default)]
pub(super) struct Starting {
    /// The users asked for, and until when a session is awaited.
    asked: HashMap<String, Instant>,
    /// Lines typed for them, in order.
    held: Vec<(String, String)>,
    /// The start of the server's current line.
    line: Vec<u8>,
    /// Users whose start the server refused.
    refused: Vec<String>,
}

impl Starting {
    /// `startprivate <user>` went to the server at `now`.
    pub(super) fn asked(&mut self, user: &str, now: Instant) {
        self.asked.insert(user.to_owned(), now + START_TIMEOUT);
    }

    /// Keeps `line` (a `private` line to `user`) until the session with
    /// `user` opens; false if none is being started (or too much waits).
    pub(super) fn hold(&mut self, user: &str, line: &str) -> bool {
        if !self.asked.contains_key(user) || self.held.len() >= MAX_HELD {
            return false;
        }
        self.held.push((user.to_owned(), line.to_owned()));
        true
    }

    /// The earliest moment a start gives up.
    pub(super) fn deadline(&self) -> Option<Instant> {
        self.asked.values().min().copied()
    }

    /// Follows the server's output for refusals of the starts asked for.
    pub(super) fn observe(&mut self, bytes: &[u8]) {
        for &byte in bytes {
            if byte != b'\n' {
                if self.line.len() < MAX_REFUSAL {
                    self.line.push(byte);
                }
                continue;
            }
            let line = std::mem::take(&mut self.line);
            let Ok(line) = std::str::from_utf8(&line) else {
                continue;
            };
            let everyone = line == protocol::PRIVATE_NEEDS_CLIENT;
            for user in self.asked.keys() {
                let refusals = [
                    Reply::PrivateOffline { user },
                    Reply::PrivateBlocked { user },
                    Reply::PrivateNotAccepted { user },
                ];
                if everyone || refusals.iter().any(|r| r.to_string() == line) {
                    self.refused.push(user.clone());
                }
            }
        }
    }
}

impl Client {
    /// Whether the client is on its way out: input ended, or the user
    /// asked to leave.
    pub(super) fn is_leaving(&self) -> bool {
        self.input.ended || self.leaving
    }

    /// Handles keys read from the terminal; returns the end of the
    /// session if one ended it.
    pub(super) fn keys(&mut self, bytes: &[u8]) -> Result<Option<End>, Failure> {
        let Some(ui) = &mut self.ui else {
            return Ok(None);
        };
        let mut keys = Vec::new();
        ui.keys.feed(bytes, &mut keys);
        for key in keys {
            if let Some(end) = self.key(key)? {
                return Ok(Some(end));
            }
        }
        Ok(None)
    }

    /// Handles one key.
    fn key(&mut self, key: Key) -> Result<Option<End>, Failure> {
        let interrupted = || Ok(Some(End::Signalled(libc::SIGINT)));
        if self.disconnected {
            match key {
                Key::Enter => self.reconnect()?,
                Key::Ctrl('d') => return Ok(Some(End::Finished)),
                Key::Ctrl('c') => return interrupted(),
                _ => {}
            }
            return Ok(None);
        }
        if self.leaving {
            return if key == Key::Ctrl('c') {
                interrupted()
            } else {
                Ok(None)
            };
        }
        let Some(ui) = &mut self.ui else {
            return Ok(None);
        };
        match ui.editor.key(key) {
            Edit::Entered(line) => self.enter(line),
            Edit::Leave => self.leaving = true,
            Edit::Complete => self.complete(),
            Edit::Interrupt => {
                self.finish_display()?;
                return interrupted();
            }
            Edit::Redraw => ui.redraw(),
            Edit::Changed => {}
        }
        Ok(None)
    }

    /// A line was entered: sent as a typed line would be, after showing it
    /// as sent; `help` is answered here.
    fn enter(&mut self, line: String) {
        let prompt = self.prompt();
        let Some(ui) = &mut self.ui else { return };
        let command = line.trim();
        if self.view.logged_in {
            ui.editor.remember(&line);
            match protocol::parse(command) {
                Ok(Command::Help) => return ui.help(),
                Ok(Command::Message { to, text }) => ui.sent(Some(to), text, false),
                Ok(Command::Broadcast { text }) => ui.sent(None, text, false),
                Ok(Command::Logout) => {
                    // Typed here: say_goodbye need not send another.
                    self.leaving = true;
                    self.leave_by = Some(Instant::now() + LEAVE_TIMEOUT);
                }
                _ => {}
            }
        } else if prompt == Prompt::Username && !command.is_empty() {
            ui.typed_username(command, self.view.prompts);
        }
        self.typed_ahead.extend_from_slice(line.as_bytes());
        self.typed_ahead.push(b'\n');
        self.route_typed();
    }

    /// Tab: completes a command as the first word, a name seen after it.
    fn complete(&mut self) {
        let Some(ui) = &mut self.ui else { return };
        if !self.view.logged_in {
            return;
        }
        let (_, first) = ui.editor.word_before_cursor();
        // The listing of several matches, if there are several.
        let several = if first {
            // The commands: the first words of the server's usage lines
            // and of the client's own.
            let usages = protocol::HELP.iter().chain(protocol::PRIVATE_HELP);
            let commands = usages.filter_map(|usage| usage.split(' ').next());
            ui.editor.complete(commands).join("  ")
        } else {
            // Owned: the editor is borrowed while they are offered.
            let names: Vec<String> = ui.names().map(str::to_owned).collect();
            ui.editor
                .complete(names.iter().map(String::as_str))
                .join("  ")
        };
        if !several.is_empty() {
            ui.notice(&several);
        }
    }

    /// The server closed the connection: say so, keep the screen, and
    /// wait for Enter to reconnect.
    pub(super) fn lost_server(&mut self) {
        if let Err(error) = self.server.deregister(self.poll.registry()) {
            log::debug!("cannot stop watching the connection: {error}");
        }
        if let Some(mut private) = self.private.take() {
            private.stop_all(self.poll.registry());
        }
        self.disconnected = true;
        if let Some(ui) = &mut self.ui {
            ui.notice("Connection closed by server");
            ui.editor.clear();
        }
    }

    /// Enter after the server closed: connects again and starts a new
    /// session (the user logs in again), or says why it could not.
    fn reconnect(&mut self) -> Result<(), Failure> {
        let Some(ui) = &mut self.ui else {
            return Ok(());
        };
        let to = target(&self.target.host, self.target.port);
        ui.notice(&format!("Reconnecting to {to}"));
        self.render()?;
        match connect(&self.target, true) {
            Ok(stream) => {
                self.server = Link::new(stream);
                self.close_when_flushed = false;
                self.typed_ahead.clear();
                self.leave_by = None;
                self.view = Default::default();
                self.sanitizer = Default::default();
                self.router = Default::default();
                self.registered = false;
                self.introductions = Default::default();
                self.mid_line = false;
                self.starting = Starting::default();
                self.disconnected = false;
                self.start_session()?;
                // A TLS handshake may have brought the first prompt with it.
                self.read_server()?;
            }
            Err(failure) => {
                if let Some(ui) = &mut self.ui {
                    ui.error(&display::escape(&failure.to_string()));
                }
            }
        }
        Ok(())
    }

    /// Sends the `private` lines held for sessions that have opened, and
    /// refuses those whose session did not open in time.
    pub(super) fn release_private(&mut self, now: Instant) {
        if self.starting.asked.is_empty() {
            self.starting.refused.clear();
            return;
        }
        let private = self.private.as_ref();
        let open = |user: &str| private.is_some_and(|p| p.has_session(user));
        let (ready, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.starting.held)
            .into_iter()
            .partition(|(user, _)| open(user));
        let mut expired = Vec::new();
        let refused = std::mem::take(&mut self.starting.refused);
        self.starting.asked.retain(|user, until| {
            let keep = !open(user) && *until > now && !refused.contains(user);
            if !keep && !open(user) {
                expired.push(user.clone());
            }
            keep
        });
        for (user, line) in waiting {
            if expired.contains(&user) {
                self.notes.push(protocol::private_not_enabled(&user));
            } else {
                self.starting.held.push((user, line));
            }
        }
        for (_, line) in ready {
            self.typed(format!("{line}\n").as_bytes());
        }
    }

    /// What the input line is for. After a username is entered, what is
    /// typed is a password (not shown) until the server says otherwise.
    fn prompt(&self) -> Prompt {
        let password_next = self
            .ui
            .as_ref()
            .is_some_and(|ui| ui.answered_prompt() == Some(self.view.prompts));
        if self.disconnected {
            Prompt::Reconnect
        } else if self.view.logged_in {
            Prompt::Chat
        } else if self.view.asked_password || password_next {
            Prompt::Password
        } else {
            Prompt::Username
        }
    }

    /// Draws the input line and writes what the UI composed.
    pub(super) fn render(&mut self) -> Result<(), Failure> {
        let prompt = self.prompt();
        let Some(ui) = &mut self.ui else {
            return Ok(());
        };
        ui.draw(prompt);
        let out = ui.take_output();
        self.write_out(out.as_bytes())
    }
}
