//! What confab's tests, benches, fuzz targets and load tools share, so that
//! each exists once: an in-process server ([`TestServer`]), a line client
//! whose every wait is bounded ([`Client`]), the server and the terminal
//! client as child processes ([`ServerProcess`], [`client_process`]), a
//! program on a pseudo-terminal whose screen a test reads ([`pty`]), a
//! headless Chromium for the web page (`browser`, with the feature of that
//! name), one reader of `/proc` ([`procfs`]), one seeded random number
//! generator ([`Rng`]), temporary directories ([`TempDir`]), a WebSocket
//! client and raw HTTP for the web port ([`web`]), a real `nats-server`
//! with JetStream that can be killed and restarted ([`NatsServer`], for
//! cluster mode's NATS bridge), a TCP proxy that can lose a server's
//! replies or cut its connections ([`TcpProxy`]), and the reference model
//! and checker of the chat domain ([`chat_model`]).
//!
//! Everything here is for tests and measurements, never for the product:
//! the helpers named for tests panic with a message when something they
//! wait for does not happen, so that a broken server fails a test instead
//! of hanging it; [`procfs`], [`artifacts`], [`Rng`] and the `try_`
//! constructors return errors instead, for the load tools.

pub mod accounts;
pub mod artifacts;
#[cfg(feature = "browser")]
pub mod browser;
pub mod chat_model;
pub mod client;
pub mod client_process;
pub mod isolated;
pub mod nats;
pub mod probe;
pub mod process;
pub mod procfs;
pub mod proxy;
pub mod pty;
pub mod replies;
pub mod rng;
pub mod server;
pub mod stamps;
pub mod temp;
pub mod wait;
pub mod web;

pub use accounts::{accounts, password, ACCOUNTS};
pub use client::{show, three_users, two_users, Client};
pub use isolated::isolated;
pub use nats::NatsServer;
pub use probe::{open_descriptors, status_kib};
pub use process::{exit_within, run_to_end, ProcessOptions, ServerProcess};
pub use proxy::TcpProxy;
pub use replies::{
    ACCOUNT_BANNED, HELP, INVALID_PASSWORD, INVALID_USERNAME, PASSWORD, PASSWORD_BANNED, USERNAME,
    WELCOME,
};
pub use rng::Rng;
pub use server::{journal_in, newest_journal, store_mail, Options, TestServer};
pub use temp::TempDir;
pub use wait::{wait_until, FailOnPanic, IO_TIMEOUT};
pub use web::{WebClient, WebSocketStream};
