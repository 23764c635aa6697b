//! `confab-passwd`: hashes passwords for the server's credentials file and
//! edits that file. It reads passwords and arguments; the editing and the
//! atomic rewrite live in [`confab::credentials`] and [`confab::atomic`].

use std::fs;
use std::io::{self, BufRead, IsTerminal};
use std::mem;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use confab::{credentials, passwords};

/// Manage the hashed passwords of a confab credentials file. Passwords are
/// read without echo on a terminal, otherwise one line of standard input
/// each.
#[derive(Debug, Parser)]
#[command(name = "confab-passwd", version, long_about = None)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Print the Argon2id hash (a PHC string) of a password.
    Hash,
    /// Set USER's password in FILE (asked twice), adding USER if new and
    /// creating FILE (mode 0600) if missing.
    Add {
        /// The credentials file.
        file: PathBuf,
        /// The account's username.
        user: String,
    },
    /// Hash every clear password in FILE where it stands.
    Upgrade {
        /// The credentials file.
        file: PathBuf,
    },
}

fn main() -> ExitCode {
    match run(Args::parse().command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("confab-passwd: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<(), String> {
    match command {
        Command::Hash => {
            let [password] = read_passwords(["Password: "])?;
            println!("{}", hash_new(&password)?);
        }
        Command::Add { file, user } => {
            credentials::check_username(&user)?;
            let text = match fs::read(&file) {
                Ok(text) => text,
                Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
                Err(e) => return Err(cannot_read(&file, e)),
            };
            credentials::check_editable(&file, &text).map_err(|e| e.to_string())?;
            let [password, again] = read_passwords(["Password: ", "Again: "])?;
            if password != again {
                return Err("the passwords differ; nothing changed".into());
            }
            let stored = hash_new(&password)?;
            credentials::save(&file, &credentials::set_password(&text, &user, &stored))?;
        }
        Command::Upgrade { file } => {
            let text = fs::read(&file).map_err(|e| cannot_read(&file, e))?;
            credentials::parse(&file, &text).map_err(|e| e.to_string())?;
            let (upgraded, count) = credentials::hash_clear(&text, passwords::hash)?;
            if count > 0 {
                credentials::save(&file, &upgraded)?;
            }
            let plural = if count == 1 { "" } else { "s" };
            println!("hashed {count} password{plural}");
        }
    }
    Ok(())
}

/// The message for a file that cannot be read.
fn cannot_read(file: &Path, error: io::Error) -> String {
    format!("cannot read {}: {error}", file.display())
}

/// The hash of a new password, once it is one a user can log in with.
fn hash_new(password: &str) -> Result<String, String> {
    passwords::check_new(password)?;
    passwords::hash(password)
}

/// One password per prompt: on a terminal, each prompt is written to
/// standard error and the line typed after it is not echoed; otherwise
/// each is one line of standard input, and nothing is prompted.
fn read_passwords<const N: usize>(prompts: [&str; N]) -> Result<[String; N], String> {
    let stdin = io::stdin();
    let hidden = if stdin.is_terminal() {
        Some(NoEcho::start().map_err(|e| format!("cannot turn off the terminal's echo: {e}"))?)
    } else {
        None
    };
    let mut input = stdin.lock();
    let mut passwords = prompts.map(|_| String::new());
    for (prompt, password) in prompts.iter().zip(&mut passwords) {
        if hidden.is_some() {
            eprint!("{prompt}");
        }
        let line = read_line(&mut input);
        // The newline typed was echoed; one not typed (Ctrl-D) is written.
        if hidden.is_some() && !matches!(line, Ok((_, true))) {
            eprintln!();
        }
        *password = line?.0;
    }
    Ok(passwords)
}

/// One line of `input` without its `\n` and a `\r` before it, and whether
/// it had the `\n` (the last line may lack it).
fn read_line(input: &mut impl BufRead) -> Result<(String, bool), String> {
    let mut line = Vec::new();
    let read = input
        .read_until(b'\n', &mut line)
        .map_err(|e| format!("cannot read standard input: {e}"))?;
    if read == 0 {
        return Err("no password: standard input ended".into());
    }
    let ended = line.ends_with(b"\n");
    let text = line.strip_suffix(b"\n").unwrap_or(&line);
    let text = text.strip_suffix(b"\r").unwrap_or(text);
    let text = String::from_utf8(text.to_vec())
        .map_err(|_| "the password is not valid UTF-8".to_owned())?;
    Ok((text, ended))
}

/// Echo turned off on standard input, a terminal, while a password is
/// typed (the newline is still echoed, so what follows starts a fresh
/// line). Dropping it restores the settings, and so do the handlers it
/// installs for the signals that end a process at a keystroke or a hang-up
/// (SIGINT, SIGQUIT, SIGTERM, SIGHUP), before the signal's default action:
/// the shell must not be left without echo.
struct NoEcho {
    original: libc::termios,
}

impl NoEcho {
    /// Saves the settings, installs the signal handlers and turns echo off
    /// (discarding what was typed ahead, which was echoed).
    fn start() -> io::Result<Self> {
        // SAFETY: termios is plain data, for which all zeroes is valid.
        let mut original: libc::termios = unsafe { mem::zeroed() };
        // SAFETY: the pointer is to a live termios.
        if unsafe { libc::tcgetattr(libc::STDIN_FILENO, &mut original) } != 0 {
            return Err(io::Error::last_os_error());
        }
        for signal in [libc::SIGINT, libc::SIGQUIT, libc::SIGTERM, libc::SIGHUP] {
            // SAFETY: the action calls only tcsetattr and
            // emulate_default_handler, both async-signal-safe, on a copy
            // of the settings it owns.
            unsafe {
                signal_hook::low_level::register(signal, move || {
                    libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &original);
                    let _ = signal_hook::low_level::emulate_default_handler(signal);
                })
            }?;
        }
        let mut hidden = original;
        hidden.c_lflag &= !libc::ECHO;
        hidden.c_lflag |= libc::ECHONL;
        // SAFETY: the pointer is to a live termios.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSAFLUSH, &hidden) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { original })
    }
}

impl Drop for NoEcho {
    fn drop(&mut self) {
        // SAFETY: the pointer is to a live termios.
        if unsafe { libc::tcsetattr(libc::STDIN_FILENO, libc::TCSANOW, &self.original) } != 0 {
            eprintln!(
                "confab-passwd: cannot turn the terminal's echo back on: {}",
                io::Error::last_os_error()
            );
        }
    }
}
