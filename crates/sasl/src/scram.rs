//! SCRAM-SHA-256 server side (RFC 5802 §5, §7; RFC 7677).

use aws_lc_rs::{constant_time, digest, hmac, pbkdf2};
use base64::Engine;
use rand::Rng;
use std::num::NonZeroU32;

/// PBKDF2 rounds of newly derived keys (RFC 7677 §4 asks for at least 4096).
pub const ITERATIONS: u32 = 4096;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    #[error("channel binding does not match")]
    ChannelBinding,
    #[error("authentication failed")]
    Failed,
}

/// What the server keeps of a password: salt, iterations, StoredKey, ServerKey.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScramCredentials {
    pub iterations: u32,
    pub salt: Vec<u8>,
    pub stored_key: Vec<u8>,
    pub server_key: Vec<u8>,
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), data).as_ref().to_vec()
}

impl ScramCredentials {
    /// Derives the keys from a password with a fresh salt.
    pub fn derive(password: &str) -> ScramCredentials {
        let mut salt = vec![0u8; 16];
        rand::rng().fill(&mut salt[..]);
        ScramCredentials::derive_with(password, salt, ITERATIONS)
    }

    pub fn derive_with(password: &str, salt: Vec<u8>, iterations: u32) -> ScramCredentials {
        let mut salted = [0u8; 32];
        let rounds = NonZeroU32::new(iterations.max(1)).unwrap_or(NonZeroU32::MIN);
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, rounds, &salt, password.as_bytes(), &mut salted);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, &client_key).as_ref().to_vec();
        let server_key = hmac_sha256(&salted, b"Server Key");
        ScramCredentials { iterations, salt, stored_key, server_key }
    }

    /// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>` (base64 parts), the form
    /// Dovecot and Stalwart use too.
    pub fn to_text(&self) -> String {
        format!(
            "SCRAM-SHA-256${}:{}${}:{}",
            self.iterations,
            B64.encode(&self.salt),
            B64.encode(&self.stored_key),
            B64.encode(&self.server_key)
        )
    }

    pub fn parse(text: &str) -> Option<ScramCredentials> {
        let rest = text.strip_prefix("SCRAM-SHA-256$")?;
        let (params, keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        let (stored, server) = keys.split_once(':')?;
        Some(ScramCredentials {
            iterations: iterations.parse().ok()?,
            salt: B64.decode(salt).ok()?,
            stored_key: B64.decode(stored).ok()?,
            server_key: B64.decode(server).ok()?,
        })
    }
}

/// Where the exchange stands.
#[derive(Debug)]
enum State {
    Start,
    /// Waiting for the credentials of `user`.
    NeedCredentials {
        gs2_header: String,
        client_first_bare: String,
        client_nonce: String,
    },
    /// Sent server-first, waiting for client-final.
    Final {
        gs2_header: String,
        auth_prefix: String,
        nonce: String,
        creds: ScramCredentials,
    },
    Done,
}

/// What to do after feeding a message.
#[derive(Debug, PartialEq, Eq)]
pub enum ScramStep {
    /// Look up this user's credentials and call [`ScramServer::server_first`].
    LookUp { user: String },
    /// Send this server-final message; the user is authenticated.
    Success { server_final: String },
}

pub struct ScramServer {
    state: State,
    /// tls-exporter data when SCRAM-SHA-256-PLUS is in use.
    channel_binding: Option<Vec<u8>>,
    plus: bool,
}

impl ScramServer {
    /// `channel_binding`: the 32-byte tls-exporter value of the session, when the session
    /// is TLS (needed for -PLUS, and to detect a downgrade on plain SCRAM).
    pub fn new(plus: bool, channel_binding: Option<Vec<u8>>) -> ScramServer {
        ScramServer { state: State::Start, channel_binding, plus }
    }

    /// client-first-message.
    pub fn client_first(&mut self, message: &[u8]) -> Result<ScramStep, ScramError> {
        let State::Start = self.state else { return Err(ScramError::Malformed("unexpected message")) };
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header = gs2-cbind-flag "," [authzid] ","
        let mut parts = text.splitn(3, ',');
        let cbind = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let authzid = parts.next().ok_or(ScramError::Malformed("no gs2 header"))?;
        let bare = parts.next().ok_or(ScramError::Malformed("no client-first-bare"))?;
        match (cbind, self.plus) {
            ("p=tls-exporter", true) if self.channel_binding.is_some() => {}
            (c, true) if c.starts_with("p=") => return Err(ScramError::ChannelBinding),
            (_, true) => return Err(ScramError::Malformed("SCRAM-SHA-256-PLUS needs p=tls-exporter")),
            ("n", false) => {}
            // "y": the client could bind but thinks we cannot; we advertise -PLUS over TLS,
            // so this is a downgrade attempt (RFC 5802 §6).
            ("y", false) if self.channel_binding.is_some() => return Err(ScramError::ChannelBinding),
            ("y", false) => {}
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let gs2_header = format!("{cbind},{authzid},");
        let mut user = None;
        let mut nonce = None;
        for attr in bare.split(',') {
            if let Some(u) = attr.strip_prefix("n=") {
                user = Some(u.replace("=2C", ",").replace("=3D", "="));
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce = Some(r.to_string());
            } else if attr.starts_with("m=") {
                return Err(ScramError::Malformed("mandatory extension not supported"));
            }
        }
        let user = user.ok_or(ScramError::Malformed("no user name"))?;
        let client_nonce = nonce
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or(ScramError::Malformed("bad nonce"))?;
        if let Some(a) = authzid.strip_prefix("a=")
            && !a.eq_ignore_ascii_case(&user)
        {
            return Err(ScramError::Failed);
        }
        self.state = State::NeedCredentials { gs2_header, client_first_bare: bare.to_string(), client_nonce };
        Ok(ScramStep::LookUp { user })
    }

    /// server-first-message for the user's credentials. For an unknown user pass made-up
    /// credentials ([`ScramCredentials::derive`] of a random password): the exchange then
    /// fails at the end like a wrong password, without telling which.
    pub fn server_first(&mut self, creds: ScramCredentials) -> Result<String, ScramError> {
        let State::NeedCredentials { gs2_header, client_first_bare, client_nonce } =
            std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::Malformed("unexpected step"));
        };
        let mut server_nonce = [0u8; 18];
        rand::rng().fill(&mut server_nonce);
        let nonce = format!("{client_nonce}{}", B64.encode(server_nonce));
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&creds.salt), creds.iterations);
        let auth_prefix = format!("{client_first_bare},{server_first}");
        self.state = State::Final { gs2_header, auth_prefix, nonce, creds };
        Ok(server_first)
    }

    /// client-final-message: checks the proof.
    pub fn client_final(&mut self, message: &[u8]) -> Result<ScramStep, ScramError> {
        let State::Final { gs2_header, auth_prefix, nonce, creds } = std::mem::replace(&mut self.state, State::Done)
        else {
            return Err(ScramError::Malformed("unexpected step"));
        };
        let text = std::str::from_utf8(message).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut cbind_b64 = None;
        let mut got_nonce = None;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                cbind_b64 = Some(c);
            } else if let Some(r) = attr.strip_prefix("r=") {
                got_nonce = Some(r);
            }
        }
        if got_nonce != Some(nonce.as_str()) {
            return Err(ScramError::Failed);
        }
        let cbind = B64
            .decode(cbind_b64.ok_or(ScramError::Malformed("no channel binding"))?)
            .map_err(|_| ScramError::Malformed("bad base64"))?;
        let mut expected = gs2_header.into_bytes();
        if self.plus {
            expected.extend_from_slice(self.channel_binding.as_deref().unwrap_or_default());
        }
        if constant_time::verify_slices_are_equal(&cbind, &expected).is_err() {
            return Err(ScramError::ChannelBinding);
        }
        let proof = B64.decode(proof).map_err(|_| ScramError::Malformed("bad base64"))?;
        let auth_message = format!("{auth_prefix},{without_proof}");
        let signature = hmac_sha256(&creds.stored_key, auth_message.as_bytes());
        if proof.len() != signature.len() {
            return Err(ScramError::Failed);
        }
        let client_key: Vec<u8> = proof.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        let stored = digest::digest(&digest::SHA256, &client_key);
        if constant_time::verify_slices_are_equal(stored.as_ref(), &creds.stored_key).is_err() {
            return Err(ScramError::Failed);
        }
        let server_signature = hmac_sha256(&creds.server_key, auth_message.as_bytes());
        Ok(ScramStep::Success { server_final: format!("v={}", B64.encode(server_signature)) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A client, written from the RFC, to test against.
    fn client_proof(password: &str, salt: &[u8], i: u32, auth_message: &str) -> (String, Vec<u8>) {
        let creds = ScramCredentials::derive_with(password, salt.to_vec(), i);
        let mut salted = [0u8; 32];
        pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, NonZeroU32::new(i).unwrap(), salt, password.as_bytes(), &mut salted);
        let client_key = hmac_sha256(&salted, b"Client Key");
        let signature = hmac_sha256(&creds.stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = client_key.iter().zip(&signature).map(|(a, b)| a ^ b).collect();
        (B64.encode(proof), hmac_sha256(&creds.server_key, auth_message.as_bytes()))
    }

    #[test]
    fn rfc7677_example() {
        // RFC 7677 §3: user "user", password "pencil".
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let creds = ScramCredentials::derive_with("pencil", salt, 4096);
        let mut s = ScramServer::new(false, None);
        assert_eq!(
            s.client_first(b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO").unwrap(),
            ScramStep::LookUp { user: "user".into() }
        );
        // Force the RFC's server nonce for the comparison.
        let first = s.server_first(creds.clone()).unwrap();
        assert!(first.starts_with("r=rOprNGfwEbeRWgbNEkqO") && first.ends_with(",s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096"));
        let State::Final { nonce, .. } = &mut s.state else { panic!() };
        *nonce = "rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0".into();
        let State::Final { auth_prefix, .. } = &mut s.state else { panic!() };
        *auth_prefix = "n=user,r=rOprNGfwEbeRWgbNEkqO,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096".into();
        let r = s.client_final(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=").unwrap();
        assert_eq!(r, ScramStep::Success { server_final: "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=".into() });
        assert_eq!(ScramCredentials::parse(&creds.to_text()), Some(creds));
    }

    fn run(
        plus: bool,
        cb_server: Option<&[u8]>,
        gs2: &str,
        cb_client: &[u8],
        password: &str,
    ) -> Result<ScramStep, ScramError> {
        let creds = ScramCredentials::derive("right");
        let mut s = ScramServer::new(plus, cb_server.map(<[u8]>::to_vec));
        let bare = "n=alice,r=abcdef";
        s.client_first(format!("{gs2}{bare}").as_bytes())?;
        let first = s.server_first(creds.clone())?;
        let nonce = first.split(',').next().unwrap().strip_prefix("r=").unwrap();
        let c = B64.encode([gs2.as_bytes(), cb_client].concat());
        let without = format!("c={c},r={nonce}");
        let auth = format!("{bare},{first},{without}");
        let (proof, _) = client_proof(password, &creds.salt, creds.iterations, &auth);
        s.client_final(format!("{without},p={proof}").as_bytes())
    }

    #[test]
    fn exchanges() {
        assert!(matches!(run(false, None, "n,,", b"", "right"), Ok(ScramStep::Success { .. })));
        assert_eq!(run(false, None, "n,,", b"", "wrong"), Err(ScramError::Failed));
        let cb = [7u8; 32];
        assert!(matches!(run(true, Some(&cb), "p=tls-exporter,,", &cb, "right"), Ok(ScramStep::Success { .. })));
        assert_eq!(run(true, Some(&cb), "p=tls-exporter,,", &[8u8; 32], "right"), Err(ScramError::ChannelBinding));
        assert_eq!(run(false, Some(&cb), "y,,", b"", "right"), Err(ScramError::ChannelBinding), "downgrade detected");
        assert!(matches!(run(false, None, "y,,", b"", "right"), Ok(ScramStep::Success { .. })));
        let mut s = ScramServer::new(false, None);
        assert!(s.client_first(b"n,,n=alice").is_err());
        assert!(s.client_first(b"garbage").is_err());
    }
}
