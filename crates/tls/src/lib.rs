//! TLS configuration shared by SMTP, submission, IMAP and POP3.
//!
//! One crypto provider (aws-lc-rs) for the whole process; TLS 1.2 and 1.3 only; TLS 1.2
//! cipher suites are ECDHE only (forward secrecy) — rustls offers nothing else, and
//! [`server_config`] checks it. Without a configured certificate, a self-signed one for the
//! host name is generated under `data_dir/tls/` on first start and reused afterwards.

use rustls::ServerConfig;
use rustls::crypto::CryptoProvider;
use rustls::sign::CertifiedKey;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;

mod stream;

pub use stream::{Io, Stream};
pub use tokio_rustls::{TlsAcceptor, server::TlsStream};

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {message}")]
    Read { path: PathBuf, message: String },
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
    #[error("no certificate found in {0}")]
    NoCertificate(PathBuf),
    #[error("no private key found in {0}")]
    NoKey(PathBuf),
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("TLS configuration rejected: {0}")]
    Config(String),
}

/// Longest a client may take over a TLS handshake (implicit TLS or STARTTLS/STLS).
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// The server side of a TLS handshake with `client`, bounded by [`HANDSHAKE_TIMEOUT`]. A
/// failure or timeout is logged and gives `None`: the caller closes the connection.
pub async fn handshake<S>(acceptor: &TlsAcceptor, stream: S, client: std::net::SocketAddr) -> Option<TlsStream<S>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin,
{
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
        Ok(Ok(tls)) => Some(tls),
        Ok(Err(e)) => {
            tracing::info!(%client, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::info!(%client, "TLS handshake timed out");
            None
        }
    }
}

/// Installs aws-lc-rs as the process-wide provider. Safe to call more than once.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// Paths of the certificate and key actually used, and whether they were generated now.
#[derive(Debug, Clone)]
pub struct CertPaths {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub generated: bool,
}

/// Returns the configured certificate paths, or the self-signed pair under `data_dir/tls`
/// (generating it for `hostname` when absent).
pub fn ensure_certificate(
    cert: Option<&Path>,
    key: Option<&Path>,
    data_dir: &Path,
    hostname: &str,
) -> Result<CertPaths, TlsError> {
    if let (Some(cert), Some(key)) = (cert, key) {
        return Ok(CertPaths { cert: cert.to_path_buf(), key: key.to_path_buf(), generated: false });
    }
    let dir = data_dir.join("tls");
    let cert = dir.join("cert.pem");
    let key = dir.join("key.pem");
    if cert.exists() && key.exists() && !due_for_renewal(&cert) {
        return Ok(CertPaths { cert, key, generated: false });
    }
    std::fs::create_dir_all(&dir).map_err(|source| TlsError::Write { path: dir.clone(), source })?;
    let mut names = vec![hostname.to_string()];
    if hostname != "localhost" {
        names.push("localhost".into());
    }
    let (cert_pem, key_pem) = self_signed(hostname, names).map_err(|e| TlsError::Generate(e.to_string()))?;
    write_private(&key, key_pem.as_bytes())?;
    std::fs::write(&cert, cert_pem).map_err(|source| TlsError::Write { path: cert.clone(), source })?;
    tracing::info!(cert = %cert.display(), "generated a self-signed certificate for {hostname}; configure [tls] cert/key for a real one");
    Ok(CertPaths { cert, key, generated: true })
}

/// How long a generated certificate is valid.
const SELF_SIGNED_DAYS: i64 = 365;
/// A generated certificate is made again at start once it is this old.
const RENEW_AFTER_DAYS: u64 = 335;

/// A self-signed certificate for `hostname` (subject CN and O say what it is; SANs for every
/// name), valid from a day ago for [`SELF_SIGNED_DAYS`]: (certificate PEM, key PEM).
fn self_signed(hostname: &str, names: Vec<String>) -> Result<(String, String), rcgen::Error> {
    let mut params = rcgen::CertificateParams::new(names)?;
    let mut dn = rcgen::DistinguishedName::new();
    dn.push(rcgen::DnType::CommonName, hostname);
    dn.push(rcgen::DnType::OrganizationName, "Tern (self-signed)");
    params.distinguished_name = dn;
    let now = time::OffsetDateTime::now_utc();
    params.not_before = now - time::Duration::days(1);
    params.not_after = now + time::Duration::days(SELF_SIGNED_DAYS);
    let key = rcgen::KeyPair::generate()?;
    let cert = params.self_signed(&key)?;
    Ok((cert.pem(), key.serialize_pem()))
}

/// Whether the generated certificate at `path` is old enough to be made again.
fn due_for_renewal(path: &Path) -> bool {
    std::fs::metadata(path)
        .and_then(|m| m.modified())
        .ok()
        .and_then(|t| t.elapsed().ok())
        .is_some_and(|age| age.as_secs() > RENEW_AFTER_DAYS * 86400)
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), TlsError> {
    use std::io::Write;
    #[cfg(unix)]
    use std::os::unix::fs::OpenOptionsExt;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    let mut f = options.open(path).map_err(|source| TlsError::Write { path: path.to_path_buf(), source })?;
    f.write_all(bytes).and_then(|_| f.sync_all()).map_err(|source| TlsError::Write { path: path.to_path_buf(), source })
}

/// Reads a certificate chain and its key from PEM files.
fn load_certified_key(paths: &CertPaths, provider: &CryptoProvider) -> Result<Arc<CertifiedKey>, TlsError> {
    let read_err =
        |path: &Path, e: &dyn std::fmt::Display| TlsError::Read { path: path.to_path_buf(), message: e.to_string() };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(&paths.cert)
        .map_err(|e| read_err(&paths.cert, &e))?
        .collect::<Result<_, _>>()
        .map_err(|e| read_err(&paths.cert, &e))?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate(paths.cert.clone()));
    }
    let key = PrivateKeyDer::from_pem_file(&paths.key).map_err(|e| match e {
        rustls_pki_types::pem::Error::NoItemsFound => TlsError::NoKey(paths.key.clone()),
        e => read_err(&paths.key, &e),
    })?;
    let certified = CertifiedKey::from_der(certs, key, provider).map_err(|e| TlsError::Config(e.to_string()))?;
    Ok(Arc::new(certified))
}

/// The certificate every TLS listener presents, replaceable while they run (on SIGHUP, and by
/// certificate renewal): new handshakes get the new one, sessions in progress keep theirs.
#[derive(Debug)]
pub struct ServerCertificate {
    current: std::sync::RwLock<Arc<CertifiedKey>>,
    provider: Arc<CryptoProvider>,
    /// ACME TLS-ALPN-01 challenge certificates by name (RFC 8737), presented only to a
    /// client that asks for the `acme-tls/1` protocol.
    challenges: std::sync::RwLock<std::collections::HashMap<String, Arc<CertifiedKey>>>,
}

/// The ALPN protocol of ACME TLS-ALPN-01 validation (RFC 8737 §6.2).
pub const ACME_TLS_ALPN: &[u8] = b"acme-tls/1";

impl ServerCertificate {
    /// Reads the files again and, when they hold a usable certificate and key, presents them
    /// from now on; on an error the certificate in use stays.
    pub fn reload(&self, paths: &CertPaths) -> Result<(), TlsError> {
        let fresh = load_certified_key(paths, &self.provider)?;
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    /// Presents a TLS-ALPN-01 challenge certificate for `name` (RFC 8737 §3): self-signed,
    /// naming `name` alone, with the acmeIdentifier extension holding `digest` (the SHA-256
    /// of the key authorization). `None` withdraws it.
    pub fn set_acme_challenge(&self, name: &str, digest: Option<&[u8]>) -> Result<(), TlsError> {
        let mut challenges = self.challenges.write().unwrap_or_else(|p| p.into_inner());
        let Some(digest) = digest else {
            challenges.remove(&name.to_ascii_lowercase());
            return Ok(());
        };
        let generate = || -> Result<(String, String), rcgen::Error> {
            let mut params = rcgen::CertificateParams::new(vec![name.to_string()])?;
            params.custom_extensions = vec![rcgen::CustomExtension::new_acme_identifier(digest)];
            let key = rcgen::KeyPair::generate()?;
            let cert = params.self_signed(&key)?;
            Ok((cert.pem(), key.serialize_pem()))
        };
        let (cert_pem, key_pem) = generate().map_err(|e| TlsError::Generate(e.to_string()))?;
        let cert =
            CertificateDer::from_pem_slice(cert_pem.as_bytes()).map_err(|e| TlsError::Generate(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| TlsError::Generate(e.to_string()))?;
        // Not `CertifiedKey::from_der`: its consistency check parses the certificate with
        // webpki, which refuses the critical acmeIdentifier extension.
        let signing_key =
            self.provider.key_provider.load_private_key(key).map_err(|e| TlsError::Config(e.to_string()))?;
        let certified = CertifiedKey::new(vec![cert], signing_key);
        challenges.insert(name.to_ascii_lowercase(), Arc::new(certified));
        Ok(())
    }
}

impl rustls::server::ResolvesServerCert for ServerCertificate {
    fn resolve(&self, hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let acme = hello.alpn().is_some_and(|mut protocols| protocols.any(|p| p == ACME_TLS_ALPN));
        if acme {
            // RFC 8737 §3: only the challenge certificate, and only for its name.
            let name = hello.server_name()?.to_ascii_lowercase();
            return self.challenges.read().unwrap_or_else(|p| p.into_inner()).get(&name).cloned();
        }
        Some(self.current.read().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

/// Loads PEM files into a server configuration whose certificate can be replaced later.
pub fn server_config(paths: &CertPaths) -> Result<(Arc<ServerConfig>, Arc<ServerCertificate>), TlsError> {
    let provider = Arc::new(forward_secret_provider());
    let certificate = Arc::new(ServerCertificate {
        current: std::sync::RwLock::new(load_certified_key(paths, &provider)?),
        provider: Arc::clone(&provider),
        challenges: Default::default(),
    });
    let config = config_with(&certificate, vec![])?;
    Ok((config, certificate))
}

/// The configuration of the HTTPS listener: the same certificate, with ALPN for HTTP/1.1 and
/// for ACME TLS-ALPN-01 validation (mail protocols offer no ALPN: a client that asks for one
/// must not be refused for it).
pub fn https_config(certificate: &Arc<ServerCertificate>) -> Result<Arc<ServerConfig>, TlsError> {
    config_with(certificate, vec![b"http/1.1".to_vec(), ACME_TLS_ALPN.to_vec()])
}

fn config_with(certificate: &Arc<ServerCertificate>, alpn: Vec<Vec<u8>>) -> Result<Arc<ServerConfig>, TlsError> {
    let mut config = ServerConfig::builder_with_provider(Arc::clone(&certificate.provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_cert_resolver(certificate.clone());
    config.alpn_protocols = alpn;
    Ok(Arc::new(config))
}

/// aws-lc-rs with only ECDHE suites for TLS 1.2 (TLS 1.3 is always forward secret).
fn forward_secret_provider() -> CryptoProvider {
    let mut provider = rustls::crypto::aws_lc_rs::default_provider();
    provider.cipher_suites.retain(|s| match s {
        rustls::SupportedCipherSuite::Tls13(_) => true,
        rustls::SupportedCipherSuite::Tls12(s12) => {
            let name = format!("{:?}", s12.common.suite);
            name.contains("_ECDHE_")
        }
    });
    provider
}

/// Version and cipher of an established session, as shown in Received headers and logs.
pub fn session_info(conn: &rustls::ServerConnection) -> (String, String) {
    let version = match conn.protocol_version() {
        Some(rustls::ProtocolVersion::TLSv1_3) => "TLSv1.3".to_string(),
        Some(rustls::ProtocolVersion::TLSv1_2) => "TLSv1.2".to_string(),
        Some(v) => format!("{v:?}"),
        None => "unknown".to_string(),
    };
    let cipher = conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_else(|| "unknown".into());
    (version, cipher)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generates_once_and_loads() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let first = ensure_certificate(None, None, dir.path(), "mx.example.org").unwrap();
        assert!(first.generated);
        let second = ensure_certificate(None, None, dir.path(), "mx.example.org").unwrap();
        assert!(!second.generated, "the generated pair is reused");
        server_config(&second).unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&second.key).unwrap().permissions().mode();
            assert_eq!(mode & 0o077, 0, "private key must not be readable by others");
        }
    }

    /// Issue 10: the generated certificate was "rcgen self signed cert", valid 1975-4096.
    #[test]
    fn the_generated_certificate_names_the_host_and_expires_in_a_year() {
        let dir = tempfile::tempdir().unwrap();
        let paths = ensure_certificate(None, None, dir.path(), "mx.example.org").unwrap();
        let out = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-subject", "-issuer", "-ext", "subjectAltName", "-checkend"])
            .arg((360 * 86400).to_string())
            .arg("-in")
            .arg(&paths.cert)
            .output()
            .expect("openssl (the test command installs it)");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains("CN = mx.example.org") || text.contains("CN=mx.example.org"), "{text}");
        assert!(text.contains("Tern (self-signed)"), "{text}");
        assert!(text.contains("DNS:mx.example.org") && text.contains("DNS:localhost"), "{text}");
        assert!(out.status.success(), "valid for 360 days more: {text}");
        let later = std::process::Command::new("openssl")
            .args(["x509", "-noout", "-checkend"])
            .arg((400 * 86400).to_string())
            .arg("-in")
            .arg(&paths.cert)
            .output()
            .unwrap();
        assert!(!later.status.success(), "not valid for 400 days");
    }

    #[test]
    fn only_forward_secret_suites() {
        let p = forward_secret_provider();
        assert!(!p.cipher_suites.is_empty());
        for s in &p.cipher_suites {
            let name = format!("{:?}", s.suite());
            assert!(name.starts_with("TLS13_") || name.contains("_ECDHE_"), "{name}");
        }
    }

    #[test]
    fn bad_files_are_reported() {
        install_crypto_provider();
        let dir = tempfile::tempdir().unwrap();
        let cert = dir.path().join("c.pem");
        let key = dir.path().join("k.pem");
        std::fs::write(&cert, "not pem").unwrap();
        std::fs::write(&key, "not pem").unwrap();
        let paths = CertPaths { cert, key, generated: false };
        assert!(matches!(server_config(&paths), Err(TlsError::NoCertificate(_))));
    }
}
