//! Which server certificates a client trusts, as ssh trusts host keys.
//!
//! A certificate that verifies against the system's roots (and `--ca`)
//! for the host's name is trusted. One that does not (a server's own
//! self-signed certificate) is trusted if its fingerprint is the one
//! given (`--fingerprint`), or the one remembered for that `HOST:PORT`
//! (the client's known-servers file). Anything else is refused, and the
//! verifier keeps why ([`Untrusted`]) so that the client can say so, or
//! ask the user. The handshake's signatures are verified in every case.

use std::path::Path;
use std::sync::{Arc, Mutex};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::identity::{provider, VERSIONS};
use crate::net::tls::fingerprint;

/// Why a certificate was not trusted, as the verifier saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Untrusted {
    /// It does not verify, and nothing pins it.
    Unknown {
        /// Its fingerprint.
        fingerprint: String,
        /// Why it does not verify.
        reason: String,
    },
    /// It is not the one `--fingerprint` names.
    NotTheGiven {
        /// Its fingerprint.
        fingerprint: String,
    },
    /// It is not the one remembered for the server.
    Changed {
        /// Its fingerprint.
        fingerprint: String,
        /// The line of the known-servers file that remembers another.
        line: usize,
    },
}

/// What the client trusts for one server: the roots, and the pins.
#[derive(Debug)]
pub struct Trust {
    webpki: Option<Arc<WebPkiServerVerifier>>,
    /// `--fingerprint`.
    given: Option<String>,
    /// The fingerprint remembered for the server, and its line.
    known: Option<(String, usize)>,
    algorithms: rustls::crypto::WebPkiSupportedAlgorithms,
    /// What the last handshake was refused for.
    refused: Mutex<Option<Untrusted>>,
}

impl Trust {
    /// Trusts what verifies against the system's roots and the PEM
    /// certificates of `ca`, and the certificates of `given` or `known`
    /// (`(fingerprint, line)`).
    pub fn new(
        ca: Option<&Path>,
        given: Option<String>,
        known: Option<(String, usize)>,
    ) -> Result<Trust, String> {
        let mut roots = RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        roots.add_parsable_certificates(native.certs);
        if let Some(ca) = ca {
            let certs = CertificateDer::pem_file_iter(ca)
                .and_then(|iter| iter.collect::<Result<Vec<_>, _>>())
                .map_err(|e| format!("{}: {e}", ca.display()))?;
            if certs.is_empty() {
                return Err(format!("{}: holds no certificate", ca.display()));
            }
            for cert in certs {
                roots
                    .add(cert)
                    .map_err(|e| format!("{}: {e}", ca.display()))?;
            }
        }
        // No roots at all (a machine without CA certificates): only pins.
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider())
            .build()
            .ok();
        Ok(Trust {
            webpki,
            given,
            known,
            algorithms: provider().signature_verification_algorithms,
            refused: Mutex::new(None),
        })
    }

    /// Trusts only the certificate of `fingerprint` (the tests' and the
    /// load tools' clients of a server's own certificate).
    pub fn pinned(fingerprint: &str) -> Trust {
        Trust {
            webpki: None,
            given: Some(fingerprint.to_string()),
            known: None,
            algorithms: provider().signature_verification_algorithms,
            refused: Mutex::new(None),
        }
    }

    /// A client configuration (TLS 1.3 and 1.2) verifying with `trust`.
    pub fn client_config(trust: Arc<Trust>) -> Result<Arc<ClientConfig>, rustls::Error> {
        Ok(Arc::new(builder(trust)?.with_no_client_auth()))
    }

    /// A client configuration verifying with `trust` that shows the
    /// certificate `chain` (with `key`) when the server asks for one: a
    /// private session's connecting side.
    pub fn client_config_with_cert(
        trust: Arc<Trust>,
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
    ) -> Result<Arc<ClientConfig>, rustls::Error> {
        Ok(Arc::new(builder(trust)?.with_client_auth_cert(chain, key)?))
    }

    /// Why the last handshake's certificate was refused, if it was.
    pub fn refused(&self) -> Option<Untrusted> {
        self.refused.lock().map_or(None, |r| r.clone())
    }

    fn refuse(&self, why: Untrusted) -> rustls::Error {
        if let Ok(mut refused) = self.refused.lock() {
            *refused = Some(why);
        }
        rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure)
    }
}

/// A client configuration's versions, crypto and verifier, before its own
/// certificate (or none) is chosen.
fn builder(
    trust: Arc<Trust>,
) -> Result<rustls::ConfigBuilder<ClientConfig, rustls::client::WantsClientCert>, rustls::Error> {
    Ok(ClientConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .dangerous()
        .with_custom_certificate_verifier(trust))
}

impl ServerCertVerifier for Trust {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.webpki.as_ref().map(|webpki| {
            webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        });
        let reason = match verified {
            Some(Ok(verified)) => return Ok(verified),
            Some(Err(e)) => e.to_string(),
            None => "no root certificates to verify it with".to_string(),
        };
        let print = fingerprint(end_entity);
        if let Some(given) = &self.given {
            return if *given == print {
                Ok(ServerCertVerified::assertion())
            } else {
                Err(self.refuse(Untrusted::NotTheGiven { fingerprint: print }))
            };
        }
        match &self.known {
            Some((known, _)) if *known == print => Ok(ServerCertVerified::assertion()),
            Some((_, line)) => Err(self.refuse(Untrusted::Changed {
                fingerprint: print,
                line: *line,
            })),
            None => Err(self.refuse(Untrusted::Unknown {
                fingerprint: print,
                reason,
            })),
        }
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
