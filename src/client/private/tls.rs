//! TLS for private sessions, when the client's link to the server is TLS:
//! this client's own certificate, made in memory at start and registered
//! with the server by its fingerprint (`privateport <port> <fingerprint>`),
//! and the sessions made with it. The side that connects pins the
//! certificate the server's introduction named and shows its own; the
//! side that accepts asks for the peer's certificate and, once `hello`
//! says which introduction the connection belongs to, checks that it is
//! the one that introduction named (before it says `ok`). The one-time
//! token is still checked.

use std::sync::Arc;

use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{ClientConnection, DigitallySignedStruct, DistinguishedName, ServerConnection};
use rustls::{ServerConfig, SignatureScheme};

use crate::fingerprint::Fingerprint;
use crate::identity::provider;
use crate::net::stream::Stream;
use crate::net::trust::Trust;

/// This client's private certificate and the configuration accepting
/// sessions with it.
pub(super) struct PrivateTls {
    fingerprint: Fingerprint,
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    accepting: Arc<ServerConfig>,
}

impl PrivateTls {
    /// Makes a new certificate (ECDSA P-256, self-signed, in memory).
    pub(super) fn new() -> Result<PrivateTls, String> {
        let made = rcgen::generate_simple_self_signed(vec!["confab-private".to_string()])
            .map_err(|e| format!("cannot make a certificate: {e}"))?;
        let chain = vec![made.cert.der().clone()];
        let key = PrivateKeyDer::try_from(made.key_pair.serialize_der())
            .map_err(|e| format!("cannot use the key: {e}"))?;
        let verifier = Arc::new(AnyCertificate {
            algorithms: provider().signature_verification_algorithms,
        });
        let accepting = ServerConfig::builder_with_provider(provider())
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| e.to_string())?
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| e.to_string())?;
        Ok(PrivateTls {
            fingerprint: Fingerprint::of(chain[0].as_ref()),
            chain,
            key,
            accepting: Arc::new(accepting),
        })
    }

    /// The fingerprint registered with the server.
    pub(super) fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// The session of an accepted connection.
    pub(super) fn accept(&self, socket: mio::net::TcpStream) -> Result<Stream, rustls::Error> {
        let session = ServerConnection::new(Arc::clone(&self.accepting))?;
        Ok(Stream::from(crate::net::tls::TlsStream::new(
            socket, session,
        )))
    }

    /// The session of a connection to the peer whose certificate is
    /// `peer` (pinned: its names and issuer do not matter).
    pub(super) fn connect(
        &self,
        socket: mio::net::TcpStream,
        peer: Fingerprint,
        ip: std::net::IpAddr,
    ) -> Result<Stream, rustls::Error> {
        let trust = Arc::new(Trust::pinned(&peer.to_string()));
        let config =
            Trust::client_config_with_cert(trust, self.chain.clone(), self.key.clone_key())?;
        let session = ClientConnection::new(config, ServerName::from(ip))?;
        Ok(Stream::from(crate::net::tls::TlsStream::new(
            socket, session,
        )))
    }
}

/// Whether the peer of `stream` showed the certificate of `expected`, or,
/// for a plaintext session, whether none was expected.
pub(super) fn shows(stream: &Stream, expected: Option<Fingerprint>) -> bool {
    match (stream.tls(), expected) {
        (None, None) => true,
        (Some(tls), Some(expected)) => tls
            .session()
            .peer_certificates()
            .and_then(|chain| chain.first())
            .is_some_and(|cert| Fingerprint::of(cert.as_ref()) == expected),
        _ => false,
    }
}

/// Asks every connecting peer for a certificate and takes any whose
/// handshake signatures check: which one is expected is only known once
/// its `hello` names the introduction ([`shows`] then checks it).
#[derive(Debug)]
struct AnyCertificate {
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
}

impl ClientCertVerifier for AnyCertificate {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}
