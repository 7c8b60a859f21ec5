//! SASL as pure state machines: the protocol sessions move bytes, this crate decides. One
//! driver ([`authenticate`]) runs every exchange for SMTP, IMAP and POP3.
//!
//! - PLAIN (RFC 4616): `authzid NUL authcid NUL password`.
//! - LOGIN (draft-murchison-sasl-login): user name, then password, each prompted.
//! - SCRAM-SHA-256 (RFC 5802, RFC 7677) and SCRAM-SHA-256-PLUS with `tls-exporter` channel
//!   binding (RFC 9266): the server keeps only salted, derived keys, never the password.

mod exchange;
mod scram;

pub use exchange::{Conversation, CredentialStore, Interrupted, Outcome, authenticate, offered};

pub use scram::{ITERATIONS as SCRAM_ITERATIONS, ScramCredentials, ScramError, ScramServer, ScramStep};

use base64::Engine;

/// Mechanisms Tern offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mechanism {
    Plain,
    Login,
    ScramSha256,
    ScramSha256Plus,
}

impl Mechanism {
    pub fn parse(name: &str) -> Option<Mechanism> {
        Some(match name.to_ascii_uppercase().as_str() {
            "PLAIN" => Mechanism::Plain,
            "LOGIN" => Mechanism::Login,
            "SCRAM-SHA-256" => Mechanism::ScramSha256,
            "SCRAM-SHA-256-PLUS" => Mechanism::ScramSha256Plus,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            Mechanism::Plain => "PLAIN",
            Mechanism::Login => "LOGIN",
            Mechanism::ScramSha256 => "SCRAM-SHA-256",
            Mechanism::ScramSha256Plus => "SCRAM-SHA-256-PLUS",
        }
    }
}

/// Strict base64 (RFC 4648) as SASL uses it; `=` alone is the empty response.
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let text = text.trim();
    if text == "=" {
        return Some(Vec::new());
    }
    base64::engine::general_purpose::STANDARD.decode(text).ok()
}

pub fn encode(bytes: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// A decoded PLAIN response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlainCredentials {
    pub authzid: String,
    pub user: String,
    pub password: String,
}

/// Parses a PLAIN response; `None` when malformed.
pub fn parse_plain(response: &[u8]) -> Option<PlainCredentials> {
    let parts: Vec<&[u8]> = response.split(|&b| b == 0).collect();
    let [authz, user, password] = parts.as_slice() else { return None };
    Some(PlainCredentials {
        authzid: String::from_utf8(authz.to_vec()).ok()?,
        user: String::from_utf8(user.to_vec()).ok()?,
        password: String::from_utf8(password.to_vec()).ok()?,
    })
}

impl PlainCredentials {
    /// Tern does not let one user act as another: an authorization identity must be the
    /// user itself.
    pub fn acts_as_self(&self) -> bool {
        self.authzid.is_empty() || self.authzid.eq_ignore_ascii_case(&self.user)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain() {
        let c = parse_plain(b"\0alice@x.test\0pw with spaces").unwrap();
        assert_eq!((c.user.as_str(), c.password.as_str()), ("alice@x.test", "pw with spaces"));
        assert!(c.acts_as_self());
        assert!(!parse_plain(b"bob\0alice\0pw").unwrap().acts_as_self());
        assert!(parse_plain(b"no nuls").is_none());
        assert!(parse_plain(b"\0a\0b\0c").is_none());
        assert_eq!(decode("AGEAYg=="), Some(b"\0a\0b".to_vec()));
        assert_eq!(decode("="), Some(vec![]));
        assert_eq!(decode("!!"), None);
        assert_eq!(Mechanism::parse("scram-sha-256"), Some(Mechanism::ScramSha256));
    }
}
