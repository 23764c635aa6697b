//! The server's TLS identity: a certificate chain and its private key,
//! from PEM files (`--tls-cert`, `--tls-key`) or made by the server itself.
//!
//! Without files, a self-signed certificate for the host's names
//! (its host name, `localhost`, 127.0.0.1 and ::1) is made at the first
//! start and kept in the data directory as [`CERT_FILE`] and [`KEY_FILE`]
//! (the key readable by its owner only), then reused at every start, so
//! its fingerprint stays what users were told; an ephemeral server makes a
//! new one in memory each time. Users check a self-signed certificate by
//! its fingerprint ([`fingerprint`]), which the server prints at start.

use std::fmt;
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;

pub use crate::net::tls::fingerprint;

/// The generated certificate's file in the data directory.
pub const CERT_FILE: &str = "tls-cert.pem";
/// The generated key's file in the data directory (mode 0600).
pub const KEY_FILE: &str = "tls-key.pem";

/// Where the server's identity comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdentitySource {
    /// PEM files: the chain (leaf first) and its key.
    Files {
        /// `--tls-cert`.
        cert: PathBuf,
        /// `--tls-key`.
        key: PathBuf,
    },
    /// Made by the server: kept in the data directory, or in memory only
    /// for an ephemeral server.
    Generated,
}

/// Why an identity could not be loaded or made.
#[derive(Debug)]
pub struct IdentityError {
    /// The file concerned, if any.
    pub file: Option<PathBuf>,
    /// What went wrong.
    pub reason: String,
}

impl fmt::Display for IdentityError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}: {}", file.display(), self.reason),
            None => write!(f, "{}", self.reason),
        }
    }
}

impl std::error::Error for IdentityError {}

fn error(file: Option<&Path>, reason: impl fmt::Display) -> IdentityError {
    IdentityError {
        file: file.map(Path::to_path_buf),
        reason: reason.to_string(),
    }
}

/// A certificate chain, its key, and the rustls configuration serving them.
#[derive(Debug, Clone)]
pub struct Identity {
    chain: Vec<CertificateDer<'static>>,
    config: Arc<ServerConfig>,
}

impl Identity {
    /// Loads the identity `source` names: `dir` is the data directory
    /// (`None` for an ephemeral server), where a generated one is kept.
    pub fn load(source: &IdentitySource, dir: Option<&Path>) -> Result<Identity, IdentityError> {
        match source {
            IdentitySource::Files { cert, key } => Identity::from_files(cert, key),
            IdentitySource::Generated => match dir {
                Some(dir) => Identity::kept_in(dir),
                None => {
                    let (cert, key) = generate()?;
                    Identity::from_pem(cert.as_bytes(), key.as_bytes(), None, None)
                }
            },
        }
    }

    /// The identity of PEM files `cert` (the chain, leaf first) and `key`.
    pub fn from_files(cert: &Path, key: &Path) -> Result<Identity, IdentityError> {
        let cert_pem = fs::read(cert).map_err(|e| error(Some(cert), e))?;
        let key_pem = fs::read(key).map_err(|e| error(Some(key), e))?;
        Identity::from_pem(&cert_pem, &key_pem, Some(cert), Some(key))
    }

    /// The generated identity kept in `dir`, made now if it is not there
    /// (or only half of it is: the key is written first, so a key without
    /// its certificate was never used).
    fn kept_in(dir: &Path) -> Result<Identity, IdentityError> {
        let cert = dir.join(CERT_FILE);
        let key = dir.join(KEY_FILE);
        if !(cert.exists() && key.exists()) {
            let (cert_pem, key_pem) = generate()?;
            crate::atomic::write(&key, key_pem.as_bytes(), 0o600)
                .map_err(|e| error(Some(&key), e))?;
            crate::atomic::write(&cert, cert_pem.as_bytes(), 0o644)
                .map_err(|e| error(Some(&cert), e))?;
            log::info!("made a self-signed certificate in {}", cert.display());
        }
        Identity::from_files(&cert, &key)
    }

    fn from_pem(
        cert_pem: &[u8],
        key_pem: &[u8],
        cert_file: Option<&Path>,
        key_file: Option<&Path>,
    ) -> Result<Identity, IdentityError> {
        let chain = CertificateDer::pem_slice_iter(cert_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| error(cert_file, format!("not a PEM certificate: {e}")))?;
        if chain.is_empty() {
            return Err(error(cert_file, "holds no certificate"));
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| error(key_file, format!("not a PEM private key: {e}")))?;
        let config = server_config(chain.clone(), key)
            .map_err(|e| error(key_file, format!("does not fit the certificate: {e}")))?;
        Ok(Identity { chain, config })
    }

    /// The fingerprint of the leaf certificate (see [`fingerprint`]).
    pub fn fingerprint(&self) -> String {
        fingerprint(&self.chain[0])
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The rustls configuration of the server's TLS sessions.
    pub fn config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }
}

/// The TLS versions confab speaks with a server or a client: 1.3 and 1.2.
pub static VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The crypto of every TLS session confab makes: rustls' *ring* provider
/// (it builds with a C compiler alone).
pub fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// TLS 1.3 and 1.2, with the provider's safe defaults, serving `chain`
/// with `key`, no client certificates asked for.
fn server_config(
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
) -> Result<Arc<ServerConfig>, rustls::Error> {
    let config = ServerConfig::builder_with_provider(provider())
        .with_protocol_versions(VERSIONS)?
        .with_no_client_auth()
        .with_single_cert(chain, key)?;
    Ok(Arc::new(config))
}

/// A new self-signed certificate for this host's names and its key, as PEM.
fn generate() -> Result<(String, String), IdentityError> {
    let mut names = vec!["localhost".to_string()];
    if let Some(host) = host_name().filter(|h| h != "localhost") {
        names.insert(0, host);
    }
    names.extend(["127.0.0.1".to_string(), "::1".to_string()]);
    let made = || -> Result<(String, String), rcgen::Error> {
        let key = rcgen::KeyPair::generate()?;
        let mut params = rcgen::CertificateParams::new(names)?;
        let mut subject = rcgen::DistinguishedName::new();
        subject.push(rcgen::DnType::CommonName, "confab-server");
        params.distinguished_name = subject;
        let cert = params.self_signed(&key)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    made().map_err(|e| error(None, format!("cannot make a certificate: {e}")))
}

/// The host's name, if it has one that is valid in a certificate.
fn host_name() -> Option<String> {
    let name = fs::read_to_string("/proc/sys/kernel/hostname").ok()?;
    let name = name.trim();
    let valid = !name.is_empty()
        && name.len() <= 253
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| name.to_ascii_lowercase())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_dir(name: &str) -> PathBuf {
        let dir =
            std::env::temp_dir().join(format!("confab-identity-{name}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("temp dir");
        dir
    }

    #[test]
    fn a_generated_identity_is_kept_and_reused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = temp_dir("kept");
        let first = Identity::load(&IdentitySource::Generated, Some(&dir)).expect("make");
        let mode = fs::metadata(dir.join(KEY_FILE))
            .expect("key")
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the key is its owner's only");
        let again = Identity::load(&IdentitySource::Generated, Some(&dir)).expect("reuse");
        assert_eq!(first.fingerprint(), again.fingerprint());
        // Half an identity is made again.
        fs::remove_file(dir.join(CERT_FILE)).expect("remove");
        let remade = Identity::load(&IdentitySource::Generated, Some(&dir)).expect("remake");
        assert_ne!(remade.fingerprint(), first.fingerprint());
        fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn an_ephemeral_identity_is_new_each_time() {
        let a = Identity::load(&IdentitySource::Generated, None).expect("make");
        let b = Identity::load(&IdentitySource::Generated, None).expect("make");
        assert_ne!(a.fingerprint(), b.fingerprint());
        assert!(a.fingerprint().starts_with("SHA256:"));
        // 32 bytes in base64 without padding.
        assert_eq!(a.fingerprint().len(), "SHA256:".len() + 43);
    }

    #[test]
    fn files_that_are_not_pem_or_do_not_match_are_named() {
        let dir = temp_dir("files");
        let junk = dir.join("junk.pem");
        fs::write(&junk, "not pem\n").expect("write");
        let (cert, key) = generate().expect("make");
        let cert_file = dir.join("cert.pem");
        fs::write(&cert_file, cert).expect("write");
        let key_file = dir.join("key.pem");
        fs::write(&key_file, key).expect("write");
        let ok = Identity::from_files(&cert_file, &key_file).expect("load");
        assert!(ok.fingerprint().starts_with("SHA256:"));
        let e = Identity::from_files(&junk, &key_file).expect_err("junk certificate");
        assert_eq!(e.file.as_deref(), Some(junk.as_path()));
        let e = Identity::from_files(&cert_file, &junk).expect_err("junk key");
        assert_eq!(e.file.as_deref(), Some(junk.as_path()));
        let (_, other_key) = generate().expect("make");
        fs::write(&key_file, other_key).expect("write");
        let e = Identity::from_files(&cert_file, &key_file).expect_err("another key");
        assert!(e.reason.contains("does not fit"), "{e}");
        let missing = dir.join("missing.pem");
        let e = Identity::from_files(&missing, &key_file).expect_err("missing");
        assert_eq!(e.file.as_deref(), Some(missing.as_path()));
        fs::remove_dir_all(&dir).expect("clean up");
    }
}
