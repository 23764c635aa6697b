//! TLS for a run's clients: every connection is a session of its own
//! with the server, trusting exactly the certificate whose fingerprint the
//! run was given (`confab-load --tls-fingerprint`), as
//! `confab --fingerprint` does.
//!
//! Sessions are never resumed: each connection stands for a user arriving
//! for the first time, so every handshake is a full one (key exchange,
//! certificate, signature), the most the server pays for a connection.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;

use confab::net::stream::Stream;
use confab::net::tls::TlsStream;
use confab::net::trust::{Trust, Untrusted};
use mio::net::TcpStream;
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection};

/// What every client session of a run shares: the configuration, what it
/// trusts, and the name of the server.
#[derive(Debug, Clone)]
pub(super) struct TlsClient {
    config: Arc<ClientConfig>,
    trust: Arc<Trust>,
    name: ServerName<'static>,
}

impl TlsClient {
    /// Sessions with the server at `target` (named by its address) that
    /// trust only the certificate of `fingerprint`.
    pub(super) fn new(fingerprint: &str, target: SocketAddr) -> io::Result<TlsClient> {
        let trust = Arc::new(Trust::pinned(fingerprint));
        let pinned = Trust::client_config(Arc::clone(&trust)).map_err(io::Error::other)?;
        let mut config = ClientConfig::clone(&pinned);
        config.resumption = Resumption::disabled();
        Ok(TlsClient {
            config: Arc::new(config),
            trust,
            name: ServerName::from(target.ip()),
        })
    }

    /// Why the server's certificate was refused, for the error of a run
    /// that could not connect: the fingerprint the server showed.
    pub(super) fn refused(&self) -> Option<String> {
        match self.trust.refused()? {
            Untrusted::NotTheGiven { fingerprint }
            | Untrusted::Unknown { fingerprint, .. }
            | Untrusted::Changed { fingerprint, .. } => Some(format!(
                "the server's certificate is {fingerprint}, not the one given"
            )),
        }
    }

    /// A new session over `socket`, a connection (or a connect in
    /// progress) to the server; its client hello waits in the session
    /// for the first flush.
    pub(super) fn open(&self, socket: TcpStream) -> io::Result<Stream> {
        let session = ClientConnection::new(Arc::clone(&self.config), self.name.clone())
            .map_err(io::Error::other)?;
        Ok(Stream::from(TlsStream::new(socket, session)))
    }
}
