//! TLS client configurations for delivery.
//!
//! - opportunistic: STARTTLS when offered, any certificate (RFC 7435: better than cleartext;
//!   what Postfix's `smtp_tls_security_level = may` does);
//! - verified: the certificate must chain to a trusted root and name the MX host (MTA-STS
//!   `enforce`, REQUIRETLS, smarthosts);
//! - DANE: the certificate must match a TLSA record (RFC 7672 §3: DANE-EE(3) matches the
//!   server's own certificate or key, names and dates are not checked; DANE-TA(2) names a
//!   trust anchor in the chain, then the chain and the name are checked against it).

use crate::dns::Tlsa;
use rustls::DigitallySignedStruct;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls_pki_types::{CertificateDer, ServerName, UnixTime, pem::PemObject};
use std::path::Path;
use std::sync::Arc;

pub struct TlsConfigs {
    pub opportunistic: Arc<rustls::ClientConfig>,
    pub verified: Arc<rustls::ClientConfig>,
    roots: Arc<rustls::RootCertStore>,
    provider: Arc<CryptoProvider>,
}

fn provider() -> Arc<CryptoProvider> {
    CryptoProvider::get_default().cloned().unwrap_or_else(|| Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
}

impl TlsConfigs {
    /// Web PKI roots plus those in `extra_ca` (PEM).
    pub fn new(extra_ca: Option<&Path>) -> anyhow::Result<TlsConfigs> {
        let mut roots = rustls::RootCertStore::empty();
        roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
        if let Some(path) = extra_ca {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
                .map_err(|e| anyhow::anyhow!("delivery.ca_file {}: {e}", path.display()))?
                .collect::<Result<_, _>>()
                .map_err(|e| anyhow::anyhow!("delivery.ca_file {}: {e}", path.display()))?;
            let (added, _) = roots.add_parsable_certificates(certs);
            if added == 0 {
                anyhow::bail!("delivery.ca_file {}: no usable certificate", path.display());
            }
        }
        let roots = Arc::new(roots);
        let provider = provider();
        let verified = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .with_root_certificates(Arc::clone(&roots))
            .with_no_client_auth();
        let opportunistic = rustls::ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyCertificate { provider: Arc::clone(&provider) }))
            .with_no_client_auth();
        Ok(TlsConfigs { opportunistic: Arc::new(opportunistic), verified: Arc::new(verified), roots, provider })
    }

    /// A configuration that accepts exactly what `records` allow.
    pub fn dane(&self, records: Vec<Tlsa>, host: &str) -> anyhow::Result<Arc<rustls::ClientConfig>> {
        let verifier = DaneVerifier { records, host: host.to_string(), provider: Arc::clone(&self.provider) };
        let config = rustls::ClientConfig::builder_with_provider(Arc::clone(&self.provider))
            .with_safe_default_protocol_versions()?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// The trusted roots (for MTA-STS policy fetches).
    pub fn roots(&self) -> Arc<rustls::RootCertStore> {
        Arc::clone(&self.roots)
    }
}

fn signature_schemes(provider: &CryptoProvider) -> Vec<rustls::SignatureScheme> {
    provider.signature_verification_algorithms.supported_schemes()
}

/// Accepts any certificate (the handshake signature is still checked).
#[derive(Debug)]
struct AnyCertificate {
    provider: Arc<CryptoProvider>,
}

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        signature_schemes(&self.provider)
    }
}

#[derive(Debug)]
struct DaneVerifier {
    records: Vec<Tlsa>,
    host: String,
    provider: Arc<CryptoProvider>,
}

/// Whether `cert` matches a TLSA record's selector and matching type (RFC 6698 §2.1.2-3).
pub fn tlsa_matches(record: &Tlsa, cert: &CertificateDer<'_>) -> bool {
    let selected: Vec<u8> = match record.selector {
        0 => cert.as_ref().to_vec(),
        1 => match spki_of(cert) {
            Some(spki) => spki,
            None => return false,
        },
        _ => return false,
    };
    let digest = match record.matching {
        0 => selected,
        1 => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &selected).as_ref().to_vec(),
        2 => aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA512, &selected).as_ref().to_vec(),
        _ => return false,
    };
    digest == record.data
}

/// The DER SubjectPublicKeyInfo of a certificate, found by walking its ASN.1 structure:
/// Certificate ::= SEQUENCE { tbsCertificate SEQUENCE { [0] version?, serial, signature,
/// issuer, validity, subject, subjectPublicKeyInfo, ... }, ... }
fn spki_of(cert: &CertificateDer<'_>) -> Option<Vec<u8>> {
    let (_, cert_body, _) = der_element(cert.as_ref())?;
    let (_, tbs, _) = der_element(cert_body)?;
    let mut rest = tbs;
    let mut index = 0;
    loop {
        let (tag, _, next) = der_element(rest)?;
        let whole = &rest[..rest.len() - next.len()];
        // Skip the optional explicit version tag [0].
        if index == 0 && tag == 0xa0 {
            rest = next;
            continue;
        }
        if index == 5 {
            return Some(whole.to_vec());
        }
        index += 1;
        rest = next;
    }
}

/// (tag, content, rest) of the first DER element of `input`.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *input.first()?;
    let first_len = *input.get(1)?;
    let (len, header) = if first_len & 0x80 == 0 {
        (first_len as usize, 2)
    } else {
        let n = (first_len & 0x7f) as usize;
        if n == 0 || n > 4 {
            return None;
        }
        let mut len = 0usize;
        for i in 0..n {
            len = (len << 8) | *input.get(2 + i)? as usize;
        }
        (len, 2 + n)
    };
    let content = input.get(header..header.checked_add(len)?)?;
    Some((tag, content, &input[header + len..]))
}

impl ServerCertVerifier for DaneVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        // DANE-EE: the server's certificate itself; no name or date checks (RFC 7672 §3.1.1).
        if self.records.iter().any(|r| r.usage == 3 && tlsa_matches(r, end_entity)) {
            return Ok(ServerCertVerified::assertion());
        }
        // DANE-TA: a certificate of the chain is the trust anchor; the chain must lead to it
        // and the leaf must name the host (RFC 7672 §3.1.2).
        for anchor in intermediates {
            if self.records.iter().any(|r| r.usage == 2 && tlsa_matches(r, anchor)) {
                let mut roots = rustls::RootCertStore::empty();
                roots.add(anchor.clone().into_owned()).map_err(|e| rustls::Error::General(e.to_string()))?;
                let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&self.provider),
                )
                .build()
                .map_err(|e| rustls::Error::General(e.to_string()))?;
                return verifier.verify_server_cert(end_entity, intermediates, server_name, &[], now);
            }
        }
        tracing::warn!(host = %self.host, "DANE: no TLSA record matches the server's certificate");
        Err(rustls::Error::InvalidCertificate(rustls::CertificateError::ApplicationVerificationFailure))
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.provider.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        signature_schemes(&self.provider)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn der_walking_finds_the_public_key() {
        // A tiny hand-made structure: SEQ { SEQ { [0]{INT 2}, INT 1, SEQ{}, SEQ{}, SEQ{}, SEQ{}, SEQ{05 00} } }
        let tbs: Vec<u8> = vec![
            0xa0, 0x03, 0x02, 0x01, 0x02, // version
            0x02, 0x01, 0x01, // serial
            0x30, 0x00, // signature
            0x30, 0x00, // issuer
            0x30, 0x00, // validity
            0x30, 0x00, // subject
            0x30, 0x02, 0x05, 0x00, // spki
        ];
        let mut inner = vec![0x30, tbs.len() as u8];
        inner.extend(&tbs);
        let mut cert = vec![0x30, inner.len() as u8];
        cert.extend(&inner);
        let der = CertificateDer::from(cert);
        assert_eq!(spki_of(&der), Some(vec![0x30, 0x02, 0x05, 0x00]));
        let record = Tlsa {
            usage: 3,
            selector: 1,
            matching: 1,
            data: aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, &[0x30, 0x02, 0x05, 0x00]).as_ref().to_vec(),
        };
        assert!(tlsa_matches(&record, &der));
        assert!(!tlsa_matches(&Tlsa { data: vec![1, 2, 3], ..record }, &der));
        assert_eq!(spki_of(&CertificateDer::from(vec![0x30, 0x85])), None);
    }
}
