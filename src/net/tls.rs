//! A TLS session over a non-blocking socket, as a [`Transport`]: rustls
//! does the protocol, this moves its records between it and the socket
//! under edge-triggered readiness.
//!
//! Reading takes the plaintext rustls has already decrypted; when it has
//! none, it reads records from the socket until the socket would block,
//! decrypting as it goes, and writes whatever the session wants to send
//! back (handshake messages, alerts, tickets) at once. Writing hands the
//! protocol's bytes to rustls, which encrypts them into records (at most
//! [`BUFFER_LIMIT`] waiting), and writes the records until the socket
//! would block; what is left waits in rustls and goes out in
//! [`Transport::flush_layer`]. A session whose peer sends something that
//! is not TLS is broken: the read fails with `InvalidData`, after the
//! alert rustls wrote for it was offered to the socket.
//!
//! The same type carries the server's sessions with its clients, the
//! client's with its server, and private peers' with each other
//! ([`rustls::Connection`] is either side).

use std::fmt;
use std::io::{self, Read, Write};
use std::net::Shutdown;

use mio::event::Source;
use mio::net::TcpStream;
use mio::{Interest, Registry, Token};
use rustls::pki_types::CertificateDer;
use rustls::Connection;

use super::link::Transport;

/// Most encrypted bytes that wait in a session for the socket; past it a
/// write takes nothing more and the rest waits in the link's buffer, which
/// is bounded by the server's backlog limit.
pub const BUFFER_LIMIT: usize = 64 * 1024;

/// A TLS session and its socket.
pub struct TlsStream {
    socket: TcpStream,
    session: Connection,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("socket", &self.socket)
            .field("handshaking", &self.session.is_handshaking())
            .finish()
    }
}

impl TlsStream {
    /// Runs `session` over `socket`, a connected non-blocking stream.
    pub fn new(socket: TcpStream, session: impl Into<Connection>) -> TlsStream {
        let mut session = session.into();
        session.set_buffer_limit(Some(BUFFER_LIMIT));
        TlsStream { socket, session }
    }

    /// The socket under the session, for its options.
    pub fn socket(&self) -> &TcpStream {
        &self.socket
    }

    /// The session, for what it learnt (the peer's certificate).
    pub fn session(&self) -> &Connection {
        &self.session
    }

    /// Whether the handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        self.session.is_handshaking()
    }

    /// Reads what the socket has into the session and processes it; `Ok(0)`
    /// is the end of the socket's stream.
    fn read_records(&mut self) -> io::Result<usize> {
        let n = loop {
            match self.session.read_tls(&mut self.socket) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                result => break result?,
            }
        };
        if let Err(e) = self.session.process_new_packets() {
            // Offer the alert rustls queued; the session is over anyway.
            let _ = self.flush_layer();
            return Err(io::Error::new(io::ErrorKind::InvalidData, e));
        }
        Ok(n)
    }
}

impl Transport for TlsStream {
    fn read_bytes(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.session.reader().read(buf) {
                Ok(n) => return Ok(n),
                // The peer closed the socket without a close_notify: for
                // a line protocol that is an end like any other.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => return Ok(0),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            let n = self.read_records()?;
            // Handshake messages and alerts go out as soon as they exist.
            self.flush_layer()?;
            if n == 0 {
                return match self.session.reader().read(buf) {
                    Ok(n) => Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => Ok(0),
                    Err(e) => Err(e),
                };
            }
        }
    }

    /// Encrypts `bytes` into records and writes them, as much as the
    /// session's buffer takes at a time, until all are taken or the socket
    /// would block. Less than all taken means the socket is full (or the
    /// handshake is not done: then the first read that finishes it lets the
    /// rest go), as a [`Link`](super::link::Link) expects.
    fn write_bytes(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut taken = 0;
        while taken < bytes.len() {
            let n = self.session.writer().write(&bytes[taken..])?;
            taken += n;
            if self.flush_layer()? || n == 0 {
                break;
            }
        }
        Ok(taken)
    }

    fn flush_layer(&mut self) -> io::Result<bool> {
        while self.session.wants_write() {
            match self.session.write_tls(&mut self.socket) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(false)
    }

    fn layer_pending(&self) -> bool {
        self.session.wants_write()
    }

    /// Sends a close_notify, writes what it can of it, and ends the
    /// socket's sending side.
    fn shutdown_write(&mut self) -> io::Result<()> {
        self.session.send_close_notify();
        self.flush_layer()?;
        self.socket.shutdown(Shutdown::Write)
    }
}

impl Source for TlsStream {
    fn register(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.register(registry, token, interests)
    }

    fn reregister(
        &mut self,
        registry: &Registry,
        token: Token,
        interests: Interest,
    ) -> io::Result<()> {
        self.socket.reregister(registry, token, interests)
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        self.socket.deregister(registry)
    }
}

/// A certificate's fingerprint as confab shows it (see
/// [`crate::fingerprint`]): `SHA256:<base64>`.
pub fn fingerprint(cert: &CertificateDer<'_>) -> String {
    crate::fingerprint::Fingerprint::of(cert.as_ref()).to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use rustls::pki_types::ServerName;
    use rustls::{ClientConnection, ServerConnection};

    use super::*;
    use crate::identity::{Identity, IdentitySource};
    use crate::net::link::Link;
    use crate::net::trust::Trust;

    /// Whether `e` says only that nothing is there yet.
    fn would_block(e: &io::Error) -> bool {
        matches!(
            e.kind(),
            io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
        )
    }

    /// A server's link over a TLS session whose handshake is done, its
    /// socket's send buffer `send_buffer` bytes, and the client's session
    /// over a blocking socket that waits at most 10 ms for a read.
    fn handshaken(send_buffer: usize) -> (Link<TlsStream>, ClientConnection, std::net::TcpStream) {
        let identity = Identity::load(&IdentitySource::Generated, None).expect("identity");
        let (accepted, mut socket) = crate::net::socket_pair(send_buffer);
        let addr = socket.peer_addr().expect("addr");
        let session = ServerConnection::new(identity.config()).expect("server session");
        let mut link = Link::new(TlsStream::new(accepted, session));
        let trust = Arc::new(Trust::pinned(&identity.fingerprint()));
        let config = Trust::client_config(trust).expect("client config");
        let mut client =
            ClientConnection::new(config, ServerName::from(addr.ip())).expect("client");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut scratch = [0u8; 256];
        while client.is_handshaking() || link.transport().is_handshaking() {
            assert!(Instant::now() < deadline, "the handshake did not finish");
            while client.wants_write() {
                client.write_tls(&mut socket).expect("client write");
            }
            match link.read(&mut scratch) {
                Ok(_) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => panic!("server read: {e}"),
            }
            if client.is_handshaking() {
                match client.read_tls(&mut socket) {
                    Ok(_) => {
                        client.process_new_packets().expect("client handshake");
                    }
                    Err(e) if would_block(&e) => {}
                    Err(e) => panic!("client read: {e}"),
                }
            }
        }
        (link, client, socket)
    }

    #[test]
    fn a_session_that_keeps_records_the_socket_did_not_take_wants_writable() {
        let (mut link, mut client, mut socket) = handshaken(4096);
        // Far more than the socket and the peer's buffers hold while the
        // peer reads nothing.
        let bytes = vec![b'x'; 4 << 20];
        let taken = link.write_now(&bytes).expect("write");
        assert!(taken > 0 && taken < bytes.len(), "took {taken}");
        assert!(link.has_output(), "the records the socket refused are lost");
        assert_eq!(link.interest(), Interest::READABLE | Interest::WRITABLE);
        // Once the peer reads, everything the session took arrives.
        let reader = std::thread::spawn(move || {
            let mut got = 0;
            let mut buf = vec![0u8; 1 << 16];
            let deadline = Instant::now() + Duration::from_secs(10);
            while got < taken && Instant::now() < deadline {
                match client.reader().read(&mut buf) {
                    Ok(n) => got += n,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        match client.read_tls(&mut socket) {
                            Ok(_) => {
                                client.process_new_packets().expect("records");
                            }
                            Err(e) if would_block(&e) => {}
                            Err(e) => panic!("client read: {e}"),
                        }
                    }
                    Err(e) => panic!("plaintext: {e}"),
                }
            }
            got
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while link.has_output() {
            assert!(Instant::now() < deadline, "the records never left");
            link.flush().expect("flush");
            std::thread::sleep(Duration::from_millis(1));
        }
        assert_eq!(reader.join().expect("reader"), taken);
    }
}
