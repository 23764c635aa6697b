//! `confab`: the terminal client of the confab chat server.

use std::process::ExitCode;

use clap::Parser;

/// Terminal client for a confab chat server. Lines you type are sent to the
/// server; everything it sends is shown as it arrives. Ctrl-D logs out and
/// quits.
#[derive(Parser)]
#[command(name = "confab", version)]
struct Args {
    /// Server host name or address
    host: String,
    /// Server TCP port (1 to 65535)
    #[arg(value_parser = clap::value_parser!(u16).range(1..))]
    port: u16,
}

fn main() -> ExitCode {
    env_logger::init();
    let args = Args::parse();
    confab::client::run(&args.host, args.port)
}
