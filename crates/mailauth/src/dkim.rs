//! DKIM signing.
//!
//! Signatures use `c=relaxed/relaxed`, no `l=`, SHA-256, and oversign From (listed twice in
//! `h=`, so a second From added on the way breaks the signature). mail-auth 0.13 canonicalizes
//! relaxed bodies wrongly when the body ends in whitespace-only lines (it keeps them as empty
//! lines; RFC 6376 §3.4.4 removes them). Tern therefore turns such trailing lines into empty
//! lines before signing: the message it sends is then canonicalized alike by every verifier,
//! and its meaning is unchanged.

use aws_lc_rs::encoding::{AsDer, Pkcs8V1Der, PublicKeyX509Der};
use aws_lc_rs::signature::KeyPair;
use base64::Engine;
use mail_auth::common::crypto::{Ed25519Key, RsaKey, Sha256};
use mail_auth::common::headers::HeaderWriter;
use mail_auth::dkim::{Canonicalization, DkimSigner};
use std::borrow::Cow;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A DKIM signing key of a domain: the private half signs, the public half is published at
/// `<selector>._domainkey.<domain>` (RFC 6376 §3.6.1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DkimKey {
    pub selector: String,
    pub algorithm: DkimAlgorithm,
    /// PKCS#8 DER, base64.
    pub private_key: String,
    /// The `p=` value of the DNS record (base64).
    pub public_key: String,
    pub created: i64,
}

/// `rsa-sha256` (RFC 6376) or `ed25519-sha256` (RFC 8463).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DkimAlgorithm {
    Ed25519,
    Rsa,
}

/// Header fields signed, in this order; absent ones are signed as absent (so they cannot be
/// added later), and From twice (oversigning).
pub const SIGNED_HEADERS: &[&str] = &[
    "From",
    "From",
    "Reply-To",
    "Subject",
    "Date",
    "Message-ID",
    "To",
    "Cc",
    "MIME-Version",
    "Content-Type",
    "Content-Transfer-Encoding",
    "In-Reply-To",
    "References",
    "List-Unsubscribe",
    "List-Unsubscribe-Post",
];

#[derive(Debug, thiserror::Error)]
pub enum DkimError {
    #[error("key generation failed")]
    Generate,
    #[error("stored DKIM key {selector} is unusable: {reason}")]
    BadKey { selector: String, reason: String },
    #[error("signing failed: {0}")]
    Sign(String),
}

/// Makes a new key. `selector` names it in DNS (`<selector>._domainkey.<domain>`).
pub fn generate(algorithm: DkimAlgorithm, selector: &str, now: i64) -> Result<DkimKey, DkimError> {
    let (private, public) = match algorithm {
        DkimAlgorithm::Ed25519 => {
            let rng = aws_lc_rs::rand::SystemRandom::new();
            let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8(&rng).map_err(|_| DkimError::Generate)?;
            let pair =
                aws_lc_rs::signature::Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).map_err(|_| DkimError::Generate)?;
            // RFC 8463 §4.2: p= is the raw 32-byte public key.
            (pkcs8.as_ref().to_vec(), pair.public_key().as_ref().to_vec())
        }
        DkimAlgorithm::Rsa => {
            let pair =
                aws_lc_rs::rsa::KeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).map_err(|_| DkimError::Generate)?;
            let pkcs8: Pkcs8V1Der = pair.as_der().map_err(|_| DkimError::Generate)?;
            // RFC 6376 §3.6.1: p= is the SubjectPublicKeyInfo.
            let spki: PublicKeyX509Der = pair.public_key().as_der().map_err(|_| DkimError::Generate)?;
            (pkcs8.as_ref().to_vec(), spki.as_ref().to_vec())
        }
    };
    Ok(DkimKey {
        selector: selector.to_string(),
        algorithm,
        private_key: B64.encode(private),
        public_key: B64.encode(public),
        created: now,
    })
}

/// Selector names for keys made now: `<yyyymm>e` (Ed25519) and `<yyyymm>r` (RSA).
pub fn selector_for(algorithm: DkimAlgorithm, now: i64) -> String {
    let date = time::OffsetDateTime::from_unix_timestamp(now).unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let suffix = match algorithm {
        DkimAlgorithm::Ed25519 => 'e',
        DkimAlgorithm::Rsa => 'r',
    };
    format!("{:04}{:02}{suffix}", date.year(), u8::from(date.month()))
}

/// The TXT record value for `<selector>._domainkey.<domain>`.
pub fn dns_record(key: &DkimKey) -> String {
    let k = match key.algorithm {
        DkimAlgorithm::Ed25519 => "ed25519",
        DkimAlgorithm::Rsa => "rsa",
    };
    format!("v=DKIM1; k={k}; h=sha256; p={}", key.public_key)
}

enum Prepared {
    Ed25519(DkimSigner<Ed25519Key, mail_auth::dkim::Done>),
    Rsa(DkimSigner<RsaKey<Sha256>, mail_auth::dkim::Done>),
}

/// A domain's signing keys, ready to sign.
pub struct Signer {
    keys: Vec<Prepared>,
}

impl Signer {
    pub fn new(domain: &str, keys: &[DkimKey]) -> Result<Signer, DkimError> {
        let mut out = Vec::new();
        for key in keys {
            let bad = |reason: String| DkimError::BadKey { selector: key.selector.clone(), reason };
            let der = B64.decode(&key.private_key).map_err(|e| bad(e.to_string()))?;
            let prepared = match key.algorithm {
                DkimAlgorithm::Ed25519 => {
                    let k = Ed25519Key::from_pkcs8_der(&der).map_err(|e| bad(e.to_string()))?;
                    Prepared::Ed25519(configure(DkimSigner::from_key(k), domain, &key.selector))
                }
                DkimAlgorithm::Rsa => {
                    let k = RsaKey::<Sha256>::from_key_der(rustls_pki_types::PrivateKeyDer::Pkcs8(der.into()))
                        .map_err(|e| bad(e.to_string()))?;
                    Prepared::Rsa(configure(DkimSigner::from_key(k), domain, &key.selector))
                }
            };
            out.push(prepared);
        }
        Ok(Signer { keys: out })
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Signs `message` with every key and puts the `DKIM-Signature` fields on top, in the
    /// message's own buffer (a large message is never held twice). Trailing whitespace-only
    /// lines are emptied first (see the module notes), also when signing fails.
    pub fn sign(&self, message: &mut Vec<u8>) -> Result<(), DkimError> {
        if let Cow::Owned(normalized) = normalize_trailing_blank_lines(message) {
            *message = normalized;
        }
        let mut fields = Vec::new();
        for key in &self.keys {
            let signature = match key {
                Prepared::Ed25519(s) => s.sign(message),
                Prepared::Rsa(s) => s.sign(message),
            }
            .map_err(|e| DkimError::Sign(e.to_string()))?;
            // mail-auth folds a long b= value right before its closing ';', but signs the field
            // with `b=;`: verifiers keep white space that follows a tag value (RFC 6376 §3.2),
            // so that fold would break the signature. The field is written without it.
            fields.push(signature.to_header().replace("\r\n\t;", ";"));
        }
        // The RSA signature goes on top, the Ed25519 one below it (both sign the same fields).
        let head: Vec<u8> = fields.iter().rev().flat_map(|f| f.as_bytes().iter().copied()).collect();
        message.splice(0..0, head);
        Ok(())
    }
}

fn configure<K: mail_auth::common::crypto::SigningKey<Hasher = Sha256>>(
    signer: DkimSigner<K, mail_auth::dkim::NeedDomain>,
    domain: &str,
    selector: &str,
) -> DkimSigner<K, mail_auth::dkim::Done> {
    signer
        .domain(domain)
        .selector(selector)
        .headers(SIGNED_HEADERS.iter().copied())
        .header_canonicalization(Canonicalization::Relaxed)
        .body_canonicalization(Canonicalization::Relaxed)
}

/// Empties whitespace-only lines at the end of the body (they are removed by relaxed body
/// canonicalization anyway: RFC 6376 §3.4.4).
pub fn normalize_trailing_blank_lines(message: &[u8]) -> Cow<'_, [u8]> {
    let body_start = match find(message, b"\r\n\r\n") {
        Some(i) => i + 4,
        None => return Cow::Borrowed(message),
    };
    let body = &message[body_start..];
    // Walk back over trailing lines made only of spaces and tabs.
    let mut end = body.len();
    let mut cut = body.len();
    let mut changed = false;
    loop {
        let line_end = end;
        let content_end = if body[..line_end].ends_with(b"\r\n") { line_end - 2 } else { line_end };
        let line_start = body[..content_end].iter().rposition(|&b| b == b'\n').map(|i| i + 1).unwrap_or(0);
        let line = &body[line_start..content_end];
        if line_start == content_end && line_end == content_end {
            break;
        }
        if !line.iter().all(|&b| b == b' ' || b == b'\t') {
            break;
        }
        if !line.is_empty() {
            changed = true;
        }
        cut = line_start;
        if line_start == 0 {
            break;
        }
        end = line_start;
    }
    if !changed {
        return Cow::Borrowed(message);
    }
    let trailing_lines = body[cut..].windows(2).filter(|w| w == b"\r\n").count();
    let mut out = Vec::with_capacity(message.len());
    out.extend_from_slice(&message[..body_start + cut]);
    for _ in 0..trailing_lines {
        out.extend_from_slice(b"\r\n");
    }
    Cow::Owned(out)
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trailing_whitespace_lines_are_emptied() {
        let m = b"Subject: x\r\n\r\n</html>\r\n    \r\n\t\r\n";
        assert_eq!(&*normalize_trailing_blank_lines(m), b"Subject: x\r\n\r\n</html>\r\n\r\n\r\n");
        let untouched = b"Subject: x\r\n\r\nbody  \r\ntext\r\n\r\n";
        assert!(matches!(normalize_trailing_blank_lines(untouched), Cow::Borrowed(_)));
        let only = b"Subject: x\r\n\r\n  \r\n";
        assert_eq!(&*normalize_trailing_blank_lines(only), b"Subject: x\r\n\r\n\r\n");
        assert!(matches!(normalize_trailing_blank_lines(b"no body"), Cow::Borrowed(_)));
    }

    #[test]
    fn keys_sign_and_name_themselves() {
        let now = 1_764_000_000; // 2025-11
        for alg in [DkimAlgorithm::Ed25519, DkimAlgorithm::Rsa] {
            let sel = selector_for(alg, now);
            let key = generate(alg, &sel, now).unwrap();
            assert!(dns_record(&key).starts_with("v=DKIM1; k="));
            let signer = Signer::new("example.org", std::slice::from_ref(&key)).unwrap();
            let mut signed = b"From: a@example.org\r\nTo: b@example.net\r\nSubject: hi\r\n\r\nbody\r\n  \r\n".to_vec();
            signer.sign(&mut signed).unwrap();
            let text = String::from_utf8(signed).unwrap();
            assert!(text.starts_with("DKIM-Signature: "), "{text}");
            assert!(text.contains(&format!("s={sel}")));
            assert!(text.contains("c=relaxed/relaxed"));
            assert!(text.to_ascii_lowercase().contains("from:from"), "From is oversigned: {text}");
            assert!(text.ends_with("body\r\n\r\n"));
        }
        assert_eq!(selector_for(DkimAlgorithm::Rsa, now), "202511r");
    }
}
