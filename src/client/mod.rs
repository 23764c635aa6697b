//! The terminal client: lines typed on standard input go to the server, and
//! whatever the server sends is shown as it arrives.
//!
//! When standard input and output are both a terminal, the client runs its
//! terminal UI ([`ui`]): keys edit an input line pinned on the bottom row,
//! entered lines take the same path as typed lines, and the server's lines
//! are shown stamped and styled above it; a server that closes the
//! connection leaves an offer to reconnect instead of an exit. What
//! follows describes the client through pipes, which the UI keeps except
//! where it says otherwise.
//!
//! One edge-triggered `mio` poll watches standard input, the socket, the
//! stopping signals ([`signals`]) and the private-messaging sockets (a
//! listener and one connection per peer), so the client never waits on one
//! while another has something to say. Four choices shape what the user
//! sees:
//!
//! - **Display.** Server output is shown as it arrives, with control
//!   characters other than `\n` and `\t` escaped (`\x1b` for ASCII ones,
//!   `\u{9b}` for C1 controls and bidirectional overrides) so that another
//!   user's message cannot move the cursor, recolour or retitle the
//!   terminal, or disguise itself. Invalid UTF-8 is shown as U+FFFD.
//! - **Login.** Lines typed during login go out one per prompt, as a
//!   person answers: a line typed ahead of the server's reply waits for
//!   it (a blank line answers nothing, as the server ignores it). So a
//!   piped script's commands after the password are treated as commands,
//!   never sent while the server may still be asking for a password.
//! - **End of input.** Ctrl-D (or the end of a piped file), once what was
//!   typed has gone out, logs out when logged in and then waits, at most [`LEAVE_TIMEOUT`], for the server to
//!   close; before login it half-closes the connection and waits the same
//!   way, so replies to lines already sent are still shown. A close the
//!   client asked for is not reported; any other close prints
//!   `Connection closed by server`.
//! - **Passwords.** While the server's output ends with `Password: ` and
//!   standard input is a terminal, typed characters are not echoed (the
//!   newline still is) until the line is entered.
//!
//! Typed input waiting for the server is bounded by [`MAX_PENDING`]: past
//! it the client stops reading standard input until the server catches up,
//! so nothing typed is lost and memory stays bounded.
//!
//! Private messaging is the client's own: once logged in it registers a
//! listening port with the server (`privateport`), answers `private` and
//! `stopprivate` itself, and talks to peers over their own connections in
//! the same poll ([`private`]). The server's introductions are taken out
//! of what is shown; the client's own lines (private messages, session
//! changes, errors) are printed between server lines, never inside one.
//!
//! [`display`] decides what server output looks like and what it means,
//! [`terminal`] holds the changes made to standard input and output,
//! [`typed`] sorts typed lines between the server and the client,
//! [`interactive`] is what the UI does with keys and lost connections, and
//! this module runs the session.

mod display;
mod editor;
mod failure;
mod input;
mod interactive;
mod keys;
mod known;
mod private;
mod screen;
mod signals;
mod terminal;
mod transcript;
mod typed;
mod ui;

use std::io::{self, BufRead, ErrorKind, IsTerminal, Write};
use std::mem;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use libc::c_int;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use rustls::pki_types::ServerName;
use rustls::ClientConnection;
use signal_hook_mio::v1_0::Signals;

use crate::net::link::Link;
use crate::net::stream::Stream;
use crate::net::tls::TlsStream;
use crate::net::trust::{Trust, Untrusted};
use display::{Introductions, Sanitizer, ServerView};
use failure::{is_disconnect, Context, Failure};
use input::Input;
pub use known::{known_servers_path, KnownServers};
use private::Private;
use terminal::{Output, Terminal};
use typed::Router;
use ui::Ui;

/// How long the TLS handshake with the server may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a reconnect from the terminal UI may wait for one address to
/// accept.
pub const RECONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// TLS to the server (`confab --tls`), and what to trust besides the
/// system's roots (see [`trust`]).
#[derive(Debug, Clone, Default)]
pub struct TlsOptions {
    /// `--ca`: PEM certificates to verify the server's against.
    pub ca: Option<PathBuf>,
    /// `--fingerprint`: the server's certificate, if it does not verify.
    pub fingerprint: Option<String>,
}

/// Bytes typed but not yet accepted by the server past which standard input
/// is no longer read until the socket drains.
pub const MAX_PENDING: usize = 1 << 20;

/// How long to wait, once standard input has ended, for the server to close
/// the connection before leaving anyway.
pub const LEAVE_TIMEOUT: Duration = Duration::from_secs(2);

/// Poll token of the connection to the server.
const SERVER: Token = Token(0);
/// Poll token of standard input.
const STDIN: Token = Token(1);
/// Poll token of the stopping signals.
const SIGNALS: Token = Token(2);

/// Size of one read from the socket or standard input.
const READ_CHUNK: usize = 16 * 1024;

/// The client's own lines kept waiting for the server to finish a line,
/// past which they are shown on a new line anyway.
const MAX_WAITING_NOTES: usize = 256;

/// Connects to `host`:`port` and chats until the server closes the
/// connection, standard input ends, or the user interrupts.
///
/// Returns the process's exit status: success when the session ended
/// normally (the server closing it included); failure, after one line on
/// stderr, when the host cannot be resolved or reached or I/O fails; and
/// 128 + the signal number after SIGINT, SIGTERM or SIGHUP. Terminal
/// settings and standard input's flags are restored before it returns.
pub fn run(host: &str, port: u16, tls: Option<&TlsOptions>, colour: bool) -> ExitCode {
    let target = Target {
        host: host.to_owned(),
        port,
        tls: tls.cloned(),
    };
    let interactive = io::stdin().is_terminal() && io::stdout().is_terminal();
    let colour = colour && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    let ui = interactive.then_some(colour);
    let session = connect(&target, false).and_then(|server| Client::new(server, target, ui));
    match session.and_then(|mut client| client.chat()) {
        Ok(End::Finished) => ExitCode::SUCCESS,
        Ok(End::Signalled(signal)) => {
            ExitCode::from(u8::try_from(signal.saturating_add(128)).unwrap_or(u8::MAX))
        }
        Err(failure) => {
            eprintln!("confab: {failure}");
            ExitCode::FAILURE
        }
    }
}

/// The server to talk to, kept to reconnect.
struct Target {
    host: String,
    port: u16,
    tls: Option<TlsOptions>,
}

/// How a session ended without failing.
enum End {
    /// The server closed, or the client left after its input ended.
    Finished,
    /// The user or the system asked the client to stop with this signal.
    Signalled(c_int),
}

/// Connects to the target (over TLS with its options, the handshake
/// done), then makes the socket non-blocking for the poll loop.
/// Connecting blocks: there is nothing else to do until it is done. A
/// reconnect from the terminal UI (`again`) never asks the user about an
/// unknown certificate, and gives up on an address after
/// [`RECONNECT_TIMEOUT`] (the terminal is raw then: Ctrl-C is a key, not
/// a signal, and would wait for the kernel's own timeout).
fn connect(to: &Target, again: bool) -> Result<Stream, Failure> {
    let timeout = again.then_some(RECONNECT_TIMEOUT);
    let stream = match &to.tls {
        None => Stream::from(TcpStream::from_std(dial(&to.host, to.port, timeout)?)),
        Some(options) => handshake(&to.host, to.port, options, !again, timeout)?,
    };
    stream
        .socket()
        .set_nodelay(true)
        .context("cannot configure the connection")?;
    Ok(stream)
}

/// `host:port` as the user would write it (an IPv6 address in brackets).
fn target(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// Resolves `host` and connects, blocking (at most `timeout` for each
/// address, if given), to the first address that accepts; the socket is
/// left non-blocking.
fn dial(host: &str, port: u16, timeout: Option<Duration>) -> Result<std::net::TcpStream, Failure> {
    let addresses: Vec<SocketAddr> = (host, port)
        .to_socket_addrs()
        .map_err(|error| Failure::Resolve {
            host: host.to_owned(),
            error,
        })?
        .collect();
    let connected = match timeout {
        None => std::net::TcpStream::connect(&addresses[..]),
        Some(timeout) => {
            let mut result = Err(ErrorKind::AddrNotAvailable.into());
            for address in &addresses {
                result = std::net::TcpStream::connect_timeout(address, timeout);
                if result.is_ok() {
                    break;
                }
            }
            result
        }
    };
    let stream = connected.map_err(|error| Failure::Connect {
        target: target(host, port),
        error,
    })?;
    stream
        .set_nonblocking(true)
        .context("cannot configure the connection")?;
    Ok(stream)
}

/// Connects and runs the TLS handshake (blocking, at most
/// [`HANDSHAKE_TIMEOUT`]), trusting what [`Trust`] trusts; a certificate
/// nothing vouches for is shown on a terminal for the user to accept
/// (remembered in the known-servers file) when `may_ask`, refused
/// otherwise.
fn handshake(
    host: &str,
    port: u16,
    options: &TlsOptions,
    may_ask: bool,
    timeout: Option<Duration>,
) -> Result<Stream, Failure> {
    let server = target(host, port);
    let mut known = KnownServers::load(known_servers_path()).map_err(|error| Failure::Io {
        what: "cannot read the known-servers file",
        error,
    })?;
    let name = ServerName::try_from(host.to_owned())
        .map_err(|_| Failure::Refused(format!("{host} is not a name TLS can verify")))?;
    loop {
        let remembered = known
            .get(&server)
            .map(|(print, line)| (print.to_owned(), line));
        let trust = Trust::new(
            options.ca.as_deref(),
            options.fingerprint.clone(),
            remembered,
        )
        .map_err(Failure::Refused)?;
        let trust = Arc::new(trust);
        let config = Trust::client_config(Arc::clone(&trust))
            .map_err(|e| Failure::Refused(format!("TLS: {e}")))?;
        let mut session = ClientConnection::new(config, name.clone())
            .map_err(|e| Failure::Refused(format!("TLS: {e}")))?;
        let mut socket = dial(host, port, timeout)?;
        let error = match shake(&mut session, &mut socket) {
            Ok(()) => {
                let socket = TcpStream::from_std(socket);
                return Ok(Stream::from(TlsStream::new(socket, session)));
            }
            Err(error) => error,
        };
        let fingerprint = match trust.refused() {
            None => {
                return Err(Failure::Refused(format!(
                    "TLS handshake with {server} failed: {error}"
                )))
            }
            Some(Untrusted::NotTheGiven { fingerprint }) => {
                return Err(Failure::Refused(format!(
                    "the certificate of {server} is {fingerprint}, not the one given with \
                     --fingerprint"
                )))
            }
            Some(Untrusted::Changed { fingerprint, line }) => {
                let file = known
                    .path()
                    .map_or(String::new(), |p| p.display().to_string());
                return Err(Failure::Refused(format!(
                    "WARNING: the certificate of {server} has CHANGED to {fingerprint}; it may \
                     be an impostor. If the change is expected, remove line {line} of {file}"
                )));
            }
            Some(Untrusted::Unknown {
                fingerprint,
                reason,
            }) => {
                if !(may_ask && io::stdin().is_terminal() && io::stderr().is_terminal()) {
                    return Err(Failure::Refused(format!(
                        "the certificate of {server} is not trusted ({reason}); its \
                         fingerprint is {fingerprint}: check it with the server's operator, \
                         then give it with --fingerprint or accept it on a terminal"
                    )));
                }
                if !ask_trust(&server, &fingerprint, &reason) {
                    return Err(Failure::Refused(format!("{server} is not trusted")));
                }
                fingerprint
            }
        };
        known
            .remember(&server, &fingerprint)
            .map_err(|error| Failure::Io {
                what: "cannot remember the server",
                error,
            })?;
    }
}

/// Runs `session`'s handshake over `socket`, blocking for at most
/// [`HANDSHAKE_TIMEOUT`] at each step, and leaves the socket non-blocking.
fn shake(session: &mut ClientConnection, socket: &mut std::net::TcpStream) -> io::Result<()> {
    socket.set_nonblocking(false)?;
    socket.set_read_timeout(Some(HANDSHAKE_TIMEOUT))?;
    socket.set_write_timeout(Some(HANDSHAKE_TIMEOUT))?;
    while session.is_handshaking() {
        session.complete_io(socket)?;
    }
    socket.set_read_timeout(None)?;
    socket.set_write_timeout(None)?;
    socket.set_nonblocking(true)
}

/// Shows the certificate nothing vouches for and asks whether to trust it;
/// true for `y` or `yes`.
fn ask_trust(server: &str, fingerprint: &str, reason: &str) -> bool {
    let mut stderr = io::stderr();
    let _ = write!(
        stderr,
        "The certificate of {server} is not verified ({reason}).\n\
         Its fingerprint is {fingerprint}.\n\
         Trust it for {server} from now on? [y/N] "
    );
    let _ = stderr.flush();
    let mut answer = String::new();
    if io::stdin().lock().read_line(&mut answer).is_err() {
        return false;
    }
    matches!(answer.trim().to_ascii_lowercase().as_str(), "y" | "yes")
}

/// One session: the socket, standard input and output, and what is known
/// about the conversation so far.
struct Client {
    poll: Poll,
    /// The connection to the server, with the typed bytes it has not
    /// accepted yet.
    server: Link<Stream>,
    /// Half-close the connection once everything typed is sent.
    close_when_flushed: bool,
    /// Typed bytes not yet sent or handled: during login, lines wait here
    /// until the server asks for them.
    typed_ahead: Vec<u8>,
    /// Set once standard input ended and everything typed went out with a
    /// goodbye: leave if the server has not closed by then.
    leave_by: Option<Instant>,
    input: Input,
    terminal: Option<Terminal>,
    signals: Signals,
    view: ServerView,
    sanitizer: Sanitizer,
    stdout: Output,
    /// Sorts typed lines between the server and the client.
    router: Router,
    /// Private messaging, unless no port could be opened for it.
    private: Option<Private>,
    /// `privateport` has been sent.
    registered: bool,
    introductions: Introductions,
    /// The client's own lines waiting to be shown.
    notes: Vec<String>,
    /// What is on screen does not end with a newline.
    mid_line: bool,
    /// The terminal UI, when standard input and output are a terminal.
    ui: Option<Ui>,
    /// The user asked to leave (Ctrl-D on an empty line in the UI).
    leaving: bool,
    /// The server closed the connection and the UI offers to reconnect.
    disconnected: bool,
    /// Where to reconnect to.
    target: Target,
    /// Private sessions asked for and not started yet, with the `private`
    /// lines typed for them meanwhile.
    starting: interactive::Starting,
}

impl Client {
    /// Sets up the poll over the connected socket, the stopping signals and
    /// standard input; with `ui` (whether to use colours), the terminal UI.
    fn new(server: Stream, target: Target, ui: Option<bool>) -> Result<Self, Failure> {
        let poll = Poll::new().context("cannot create the event loop")?;
        let mut signals = signals::watch(ui.is_some()).context("cannot handle signals")?;
        poll.registry()
            .register(&mut signals, SIGNALS, Interest::READABLE)
            .context("cannot handle signals")?;
        let input = Input::open(poll.registry())?;
        let stdout = Output::open().context("cannot use standard output")?;
        let ui = match ui {
            Some(colour) => Some(Ui::open(colour).context("cannot set up the terminal")?),
            None => None,
        };
        let mut client = Self {
            poll,
            server: Link::new(server),
            close_when_flushed: false,
            typed_ahead: Vec::new(),
            leave_by: None,
            input,
            terminal: if ui.is_some() {
                None
            } else {
                Terminal::of_stdin()
            },
            signals,
            view: ServerView::default(),
            sanitizer: Sanitizer::default(),
            stdout,
            router: Router::default(),
            private: None,
            registered: false,
            introductions: Introductions::default(),
            notes: Vec::new(),
            mid_line: false,
            ui,
            leaving: false,
            disconnected: false,
            target,
            starting: interactive::Starting::default(),
        };
        client.start_session()?;
        Ok(client)
    }

    /// Starts the session over `self.server`, just connected: watches it,
    /// opens the private-messaging port, and in the UI asks for stamped
    /// offline mail.
    fn start_session(&mut self) -> Result<(), Failure> {
        self.server
            .register(self.poll.registry(), SERVER, false)
            .context("cannot watch the connection")?;
        let tls = self.server.transport().tls().is_some();
        let registry = self.poll.registry();
        self.private = self
            .server
            .transport()
            .socket()
            .local_addr()
            .and_then(|local| Private::listen(local.ip(), tls, registry))
            .map_err(|error| format!("confab: private messaging is off: {error}"))
            .map_err(|line| match self.ui {
                Some(_) => self.notes.push(line),
                None => eprintln!("{line}"),
            })
            .ok();
        if let Some(ui) = &mut self.ui {
            ui.connected();
            self.view = ServerView::superseding_first_prompt();
            self.server
                .queue(crate::protocol::STAMPS_REQUEST.as_bytes());
            self.server.queue(b"\n");
        }
        Ok(())
    }

    /// Runs the session, then ends every private session, telling the
    /// peers, however the session ended.
    fn chat(&mut self) -> Result<End, Failure> {
        let end = self.converse();
        if let Some(private) = &mut self.private {
            private.stop_all(self.poll.registry());
        }
        if let Some(ui) = &mut self.ui {
            ui.close();
            let out = ui.take_output();
            self.write_out(out.as_bytes())?;
        }
        end
    }

    /// Runs the poll loop until the session ends.
    fn converse(&mut self) -> Result<End, Failure> {
        let mut events = Events::with_capacity(16);
        // A TLS handshake may have brought the first prompt with it, into
        // the session rather than the socket: no edge announces it.
        if let Some(end) = self.read_server()? {
            return Ok(end);
        }
        loop {
            if !self.disconnected {
                self.register_private();
                self.route_typed();
            }
            if let Some(end) = self.read_input()? {
                return Ok(end);
            }
            if !self.disconnected {
                self.say_goodbye();
                if let Some(end) = self.flush_to_server()? {
                    return Ok(end);
                }
            }
            self.release_private(Instant::now());
            self.show_notes()?;
            self.update_echo()?;
            self.render()?;
            let now = Instant::now();
            if self.leave_by.is_some_and(|deadline| deadline <= now) {
                return self.give_up();
            }
            let private_deadline = match &self.private {
                Some(private) if private.has_unfinished() => Some(now),
                Some(private) => private.next_deadline(),
                None => None,
            };
            let timeout = [self.leave_by, private_deadline, self.starting.deadline()]
                .into_iter()
                .flatten()
                .min()
                .map(|deadline| deadline.saturating_duration_since(now));
            match self.poll.poll(&mut events, timeout) {
                Err(error) if error.kind() == ErrorKind::Interrupted => continue,
                result => result.context("cannot wait for events")?,
            }
            for event in &events {
                if let Some(end) = self.handle(event.token())? {
                    return Ok(end);
                }
            }
            if let Some(private) = &mut self.private {
                let now = Instant::now();
                private.resume(self.poll.registry(), now, &mut self.notes);
                private.expire(self.poll.registry(), now, &mut self.notes);
            }
        }
    }

    /// Reacts to one readiness event; returns the end of the session if it
    /// is over.
    fn handle(&mut self, token: Token) -> Result<Option<End>, Failure> {
        match token {
            token if Private::owns(token) => {
                if let Some(private) = &mut self.private {
                    let registry = self.poll.registry();
                    private.ready(token, registry, Instant::now(), &mut self.notes);
                }
                Ok(None)
            }
            SERVER if !self.disconnected => self.read_server(),
            STDIN => {
                self.input.ready = true;
                Ok(None)
            }
            SIGNALS => {
                let signals: Vec<c_int> = self.signals.pending().collect();
                for signal in signals {
                    if signal == libc::SIGWINCH {
                        if let Some(ui) = &mut self.ui {
                            ui.redraw();
                        }
                    } else {
                        self.finish_display()?;
                        return Ok(Some(End::Signalled(signal)));
                    }
                }
                Ok(None)
            }
            _ => Ok(None),
        }
    }

    /// Sends queued input until the socket is full, half-closes when asked
    /// to once everything is sent, and watches for writability only while
    /// something is left. Returns the end of the session if the server is
    /// gone.
    fn flush_to_server(&mut self) -> Result<Option<End>, Failure> {
        match self.server.flush() {
            Ok(()) => {}
            Err(error) if is_disconnect(&error) => return self.server_gone(),
            Err(error) => return Err(error).context("cannot send to the server"),
        }
        if !self.server.has_output() && mem::take(&mut self.close_when_flushed) {
            if let Err(error) = self.server.shutdown_write() {
                log::debug!("half-closing the connection failed: {error}");
            }
        }
        self.server
            .update_interest(self.poll.registry(), SERVER)
            .context("cannot watch the connection")?;
        Ok(None)
    }

    /// Reads and shows everything the server has sent so far. Returns the
    /// end of the session when the server has closed the connection.
    fn read_server(&mut self) -> Result<Option<End>, Failure> {
        let mut buf = [0; READ_CHUNK];
        loop {
            match self.server.read(&mut buf) {
                Ok(0) => return self.server_closed(),
                Ok(n) => self.show(&buf[..n])?,
                Err(error) if error.kind() == ErrorKind::WouldBlock => return Ok(None),
                Err(error) if is_disconnect(&error) => return self.server_closed(),
                Err(error) => return Err(error).context("cannot read from the server"),
            }
        }
    }

    /// Sending failed because the server is gone: show what it sent before
    /// leaving, then end.
    fn server_gone(&mut self) -> Result<Option<End>, Failure> {
        match self.read_server()? {
            Some(end) => Ok(Some(end)),
            None if self.disconnected => Ok(None),
            None => self.server_closed(),
        }
    }

    /// Ends the session after the server closed the connection, saying so
    /// unless the client was leaving and the close is the expected answer.
    /// The UI keeps the screen and offers to reconnect instead.
    fn server_closed(&mut self) -> Result<Option<End>, Failure> {
        self.finish_display()?;
        if self.ui.is_some() && !self.is_leaving() {
            self.lost_server();
            return Ok(None);
        }
        if !self.is_leaving() {
            self.write_out(b"Connection closed by server\n")?;
        }
        Ok(Some(End::Finished))
    }

    /// The server did not close in time after standard input ended.
    fn give_up(&mut self) -> Result<End, Failure> {
        log::debug!("the server did not close within {LEAVE_TIMEOUT:?}; leaving");
        self.finish_display()?;
        Ok(End::Finished)
    }

    /// Shows server output and learns from it; introductions to peers are
    /// acted on, not shown.
    fn show(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.view.observe(bytes);
        self.starting.observe(bytes);
        let mut shown = Vec::with_capacity(bytes.len());
        let registry = self.poll.registry();
        let private = &mut self.private;
        let notes = &mut self.notes;
        let now = Instant::now();
        self.introductions
            .split(bytes, self.registered, &mut shown, |line| {
                private
                    .as_mut()
                    .is_some_and(|p| p.introduction(line, registry, now, notes))
            });
        self.display(&shown)
    }

    /// Puts server bytes on screen, safely.
    fn display(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        let Some(&last) = bytes.last() else {
            return Ok(());
        };
        let text = self.sanitizer.decode(bytes);
        if let Some(ui) = &mut self.ui {
            ui.server_text(&text);
            return Ok(());
        }
        self.mid_line = last != b'\n';
        self.write_out(text.as_bytes())
    }

    /// Shows the client's own lines, once the server's output is at the
    /// end of a line (or too many are waiting).
    fn show_notes(&mut self) -> Result<(), Failure> {
        if let Some(ui) = &mut self.ui {
            for note in self.notes.drain(..) {
                ui.note(&display::escape(&note));
            }
            return Ok(());
        }
        if self.notes.is_empty() || (self.mid_line && self.notes.len() < MAX_WAITING_NOTES) {
            return Ok(());
        }
        let mut text = String::new();
        if mem::take(&mut self.mid_line) {
            text.push('\n');
        }
        for note in self.notes.drain(..) {
            text.push_str(&display::escape(&note));
            text.push('\n');
        }
        self.write_out(text.as_bytes())
    }

    /// Shows what the server's output was holding back, flushes an
    /// unfinished character and ends the last line, and shows the client's
    /// waiting lines, so that whatever is printed next starts on a line of
    /// its own.
    fn finish_display(&mut self) -> Result<(), Failure> {
        let held = self.introductions.finish();
        self.display(&held)?;
        let mut text = self.sanitizer.finish();
        if let Some(ui) = &mut self.ui {
            ui.server_text(&text);
            ui.server_ended();
            return self.show_notes();
        }
        if mem::take(&mut self.mid_line) {
            text.push('\n');
        }
        self.write_out(text.as_bytes())?;
        self.show_notes()
    }

    /// Writes to standard output.
    fn write_out(&mut self, bytes: &[u8]) -> Result<(), Failure> {
        self.stdout
            .write_all(bytes)
            .context("cannot write to standard output")
    }

    /// Hides typed input while a password is asked for on a terminal.
    fn update_echo(&mut self) -> Result<(), Failure> {
        let hide = self.view.awaiting_password && !self.input.ended;
        match &mut self.terminal {
            Some(terminal) => terminal
                .hide_input(hide)
                .context("cannot change terminal settings"),
            None => Ok(()),
        }
    }
}
