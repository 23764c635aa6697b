//! `confab`: the terminal client of the confab chat server.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use confab::client::TlsOptions;

/// Terminal client for a confab chat server. On a terminal, you type on the
/// bottom line (Tab completes, Up/Down recall) and the conversation scrolls
/// above it; `help` lists the commands. Through pipes, lines are sent as
/// they come and everything the server sends is shown as it arrives. Ctrl-D
/// on an empty line logs out and quits.
#[derive(Parser)]
#[command(name = "confab", version)]
struct Args {
    /// Server host name or address
    host: String,
    /// Server TCP port (1 to 65535)
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
    /// Speak TLS to the server. Its certificate must verify against the
    /// system's roots or --ca; otherwise, on a terminal, you are shown its
    /// fingerprint and asked whether to trust it (remembered in
    /// $XDG_CONFIG_HOME/confab/known_servers), and without one it must be
    /// known or given with --fingerprint.
    #[arg(long)]
    tls: bool,
    /// PEM certificates to verify the server's against, besides the
    /// system's (with --tls).
    #[arg(long, value_name = "FILE", requires = "tls")]
    ca: Option<PathBuf>,
    /// The fingerprint of the server's certificate, `SHA256:<base64>` as
    /// confab-server prints it at start (with --tls).
    #[arg(long, value_name = "SHA256:...", requires = "tls")]
    fingerprint: Option<String>,
    /// Show no colours in the terminal UI (as the NO_COLOR variable does).
    #[arg(long)]
    no_color: bool,
}

fn main() -> ExitCode {
    env_logger::init();
    let args = Args::parse();
    let tls = args.tls.then(|| TlsOptions {
        ca: args.ca.clone(),
        fingerprint: args.fingerprint.clone(),
    });
    confab::client::run(&args.host, args.port, tls.as_ref(), !args.no_color)
}
