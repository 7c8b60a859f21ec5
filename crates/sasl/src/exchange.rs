//! One SASL exchange (RFC 4422 §3), the same for SMTP AUTH (RFC 4954), IMAP AUTHENTICATE
//! (RFC 9051 §6.2.2) and POP3 AUTH (RFC 5034). The protocol session supplies a
//! [`Conversation`]: how a challenge is framed (`334`, `+ `, `+ `) and how the client's line
//! is read. The account store supplies a [`CredentialStore`]. The driver runs the mechanism
//! and says what came of it; the session words the answer and counts failures.

use crate::{Mechanism, ScramCredentials, ScramError, ScramServer, ScramStep};
use std::future::Future;

/// Why a challenge got no usable response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Interrupted {
    /// The client sent `*` (RFC 4422 §3.5).
    Cancelled,
    /// The response was not base64, or too long.
    Malformed(String),
    /// The connection is gone.
    Lost,
}

/// The protocol's side of an exchange.
pub trait Conversation: Send {
    /// Sends a challenge carrying `data` (the session encodes and frames it) and returns the
    /// client's response, decoded.
    fn challenge(&mut self, data: &[u8]) -> impl Future<Output = Result<Vec<u8>, Interrupted>> + Send;
}

/// Where credentials are checked.
pub trait CredentialStore: Sync {
    type Account: Send;
    type Error: Send;
    /// The account when `password` is right for `user`, `None` when it is not (or there is no
    /// such user: the two must not be told apart).
    fn verify_password(
        &self,
        user: &str,
        password: &str,
    ) -> impl Future<Output = Result<Option<Self::Account>, Self::Error>> + Send;
    /// SCRAM keys for `user`, and the account if it exists; an unknown user gets made-up,
    /// stable keys so that the exchange runs to its end and fails there.
    fn scram_keys(
        &self,
        user: &str,
    ) -> impl Future<Output = Result<(Option<Self::Account>, ScramCredentials), Self::Error>> + Send;
}

/// What an exchange came to.
#[derive(Debug)]
pub enum Outcome<A, E> {
    /// The credentials are right for this account.
    Authenticated(A),
    /// Wrong credentials: a failed login, to be counted.
    Failed { user: Option<String> },
    /// The client asked to act as another user (an authorization identity other than its
    /// own, RFC 4616 §2); Tern allows no proxy logins. The password was not checked.
    NotAuthorized { user: String },
    /// The client cancelled (counted as a failure: cancelling after SCRAM's first server
    /// message would otherwise probe user names for free).
    Cancelled,
    /// The client broke the mechanism's syntax: a protocol error, not counted.
    Malformed(String),
    /// The credential store failed: a temporary error.
    Unavailable(E),
    /// The connection is gone.
    Lost,
}

/// The mechanisms to offer: SCRAM-SHA-256-PLUS only where a `tls-exporter` channel binding
/// exists (TLS 1.3, RFC 9266). Every protocol offers the same list.
pub fn offered(channel_binding: bool) -> Vec<Mechanism> {
    let mut list = vec![Mechanism::Plain, Mechanism::Login, Mechanism::ScramSha256];
    if channel_binding {
        list.push(Mechanism::ScramSha256Plus);
    }
    list
}

/// Runs one exchange. `initial` is the decoded initial response (SASL-IR), `channel_binding`
/// the session's `tls-exporter` value.
pub async fn authenticate<C: Conversation, S: CredentialStore>(
    conversation: &mut C,
    store: &S,
    mechanism: Mechanism,
    initial: Option<Vec<u8>>,
    channel_binding: Option<Vec<u8>>,
) -> Outcome<S::Account, S::Error> {
    match run(conversation, store, mechanism, initial, channel_binding).await {
        Ok(outcome) => outcome,
        Err(Interrupted::Cancelled) => Outcome::Cancelled,
        Err(Interrupted::Malformed(m)) => Outcome::Malformed(m),
        Err(Interrupted::Lost) => Outcome::Lost,
    }
}

async fn run<C: Conversation, S: CredentialStore>(
    conversation: &mut C,
    store: &S,
    mechanism: Mechanism,
    initial: Option<Vec<u8>>,
    channel_binding: Option<Vec<u8>>,
) -> Result<Outcome<S::Account, S::Error>, Interrupted> {
    let password = |user: String, password: String| async move {
        match store.verify_password(&user, &password).await {
            Ok(Some(account)) => Outcome::Authenticated(account),
            Ok(None) => Outcome::Failed { user: Some(user) },
            Err(e) => Outcome::Unavailable(e),
        }
    };
    match mechanism {
        // RFC 4616: one message, `authzid NUL authcid NUL passwd`.
        Mechanism::Plain => {
            let response = match initial {
                Some(r) => r,
                None => conversation.challenge(b"").await?,
            };
            let Some(creds) = crate::parse_plain(&response) else {
                return Ok(Outcome::Malformed("Malformed PLAIN response".into()));
            };
            if !creds.acts_as_self() {
                return Ok(Outcome::NotAuthorized { user: creds.user });
            }
            Ok(password(creds.user, creds.password).await)
        }
        // draft-murchison-sasl-login: the user name, then the password, each prompted.
        Mechanism::Login => {
            let user = match initial {
                Some(u) => u,
                None => conversation.challenge(b"Username:").await?,
            };
            let pass = conversation.challenge(b"Password:").await?;
            let (Ok(user), Ok(pass)) = (String::from_utf8(user), String::from_utf8(pass)) else {
                return Ok(Outcome::Malformed("Credentials must be UTF-8".into()));
            };
            Ok(password(user, pass).await)
        }
        // RFC 5802 §5, RFC 7677.
        Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => {
            let mut server = ScramServer::new(mechanism == Mechanism::ScramSha256Plus, channel_binding);
            let first = match initial {
                Some(f) if !f.is_empty() => f,
                _ => conversation.challenge(b"").await?,
            };
            let user = match server.client_first(&first) {
                Ok(ScramStep::LookUp { user }) => user,
                Ok(_) => return Ok(Outcome::Malformed("Unexpected SCRAM message".into())),
                Err(e) => return Ok(Outcome::Malformed(e.to_string())),
            };
            let (account, keys) = match store.scram_keys(&user).await {
                Ok(found) => found,
                Err(e) => return Ok(Outcome::Unavailable(e)),
            };
            let server_first = match server.server_first(keys) {
                Ok(s) => s,
                Err(e) => return Ok(Outcome::Malformed(e.to_string())),
            };
            let last = conversation.challenge(server_first.as_bytes()).await?;
            match server.client_final(&last) {
                Ok(ScramStep::Success { server_final }) => {
                    let Some(account) = account else { return Ok(Outcome::Failed { user: Some(user) }) };
                    // None of the three protocols sends data with its success reply (RFC 4954
                    // §4, RFC 5034 §4; IMAP may, but clients take the challenge as well): the
                    // server's final message is a last challenge, answered empty.
                    conversation.challenge(server_final.as_bytes()).await?;
                    Ok(Outcome::Authenticated(account))
                }
                Ok(_) => Ok(Outcome::Malformed("Unexpected SCRAM message".into())),
                Err(ScramError::Malformed(m)) => Ok(Outcome::Malformed(m.to_string())),
                Err(_) => Ok(Outcome::Failed { user: Some(user) }),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A client scripted in advance; records the challenges it saw.
    struct Script {
        responses: VecDeque<Result<Vec<u8>, Interrupted>>,
        challenges: Vec<Vec<u8>>,
    }

    impl Script {
        fn new(responses: Vec<Result<&[u8], Interrupted>>) -> Script {
            Script { responses: responses.into_iter().map(|r| r.map(<[u8]>::to_vec)).collect(), challenges: vec![] }
        }
    }

    impl Conversation for Script {
        async fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, Interrupted> {
            self.challenges.push(data.to_vec());
            self.responses.pop_front().unwrap_or(Err(Interrupted::Lost))
        }
    }

    struct Users;

    impl CredentialStore for Users {
        type Account = String;
        type Error = String;
        async fn verify_password(&self, user: &str, password: &str) -> Result<Option<String>, String> {
            match (user, password) {
                ("down@example.org", _) => Err("store down".into()),
                ("alice@example.org", "secret") => Ok(Some(user.to_string())),
                _ => Ok(None),
            }
        }
        async fn scram_keys(&self, user: &str) -> Result<(Option<String>, ScramCredentials), String> {
            let keys = ScramCredentials::derive_with("secret", b"salt-of-alice".to_vec(), 4096);
            Ok(((user == "alice@example.org").then(|| user.to_string()), keys))
        }
    }

    async fn drive(
        mechanism: Mechanism,
        initial: Option<&[u8]>,
        responses: Vec<Result<&[u8], Interrupted>>,
    ) -> (Outcome<String, String>, Vec<Vec<u8>>) {
        let mut script = Script::new(responses);
        let outcome = authenticate(&mut script, &Users, mechanism, initial.map(<[u8]>::to_vec), None).await;
        (outcome, script.challenges)
    }

    #[tokio::test]
    async fn plain_with_and_without_an_initial_response() {
        let (o, c) = drive(Mechanism::Plain, Some(b"\0alice@example.org\0secret"), vec![]).await;
        assert!(matches!(o, Outcome::Authenticated(ref a) if a == "alice@example.org"), "{o:?}");
        assert!(c.is_empty());
        let (o, c) = drive(Mechanism::Plain, None, vec![Ok(b"\0alice@example.org\0wrong")]).await;
        assert!(matches!(o, Outcome::Failed { user: Some(ref u) } if u == "alice@example.org"), "{o:?}");
        assert_eq!(c, vec![b"".to_vec()]);
        let (o, _) = drive(Mechanism::Plain, Some(b"bob\0alice@example.org\0secret"), vec![]).await;
        assert!(matches!(o, Outcome::NotAuthorized { .. }), "acting as another user: {o:?}");
        let (o, _) = drive(Mechanism::Plain, Some(b"no nul bytes"), vec![]).await;
        assert!(matches!(o, Outcome::Malformed(_)), "{o:?}");
        let (o, _) = drive(Mechanism::Plain, Some(b"\0down@example.org\0x"), vec![]).await;
        assert!(matches!(o, Outcome::Unavailable(_)), "{o:?}");
        let (o, _) = drive(Mechanism::Plain, None, vec![Err(Interrupted::Cancelled)]).await;
        assert!(matches!(o, Outcome::Cancelled), "{o:?}");
        let (o, _) = drive(Mechanism::Plain, None, vec![]).await;
        assert!(matches!(o, Outcome::Lost), "{o:?}");
    }

    #[tokio::test]
    async fn login_prompts_for_what_it_lacks() {
        let (o, c) = drive(Mechanism::Login, None, vec![Ok(b"alice@example.org"), Ok(b"secret")]).await;
        assert!(matches!(o, Outcome::Authenticated(_)), "{o:?}");
        assert_eq!(c, vec![b"Username:".to_vec(), b"Password:".to_vec()]);
        let (o, c) = drive(Mechanism::Login, Some(b"alice@example.org"), vec![Ok(b"secret")]).await;
        assert!(matches!(o, Outcome::Authenticated(_)), "{o:?}");
        assert_eq!(c, vec![b"Password:".to_vec()]);
        let (o, _) = drive(Mechanism::Login, Some(b"alice@example.org"), vec![Ok(b"\xff")]).await;
        assert!(matches!(o, Outcome::Malformed(_)), "{o:?}");
    }

    /// A SCRAM-SHA-256 client (RFC 5802 §3) on the same primitives the server uses.
    fn client_final(password: &str, client_first_bare: &str, server_first: &str) -> Vec<u8> {
        use aws_lc_rs::{digest, hmac, pbkdf2};
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let attrs: std::collections::HashMap<&str, &str> =
            server_first.split(',').filter_map(|kv| kv.split_once('=')).collect();
        let salt = b64.decode(attrs["s"]).unwrap();
        let iterations: u32 = attrs["i"].parse().unwrap();
        let mut salted = [0u8; 32];
        pbkdf2::derive(
            pbkdf2::PBKDF2_HMAC_SHA256,
            std::num::NonZeroU32::new(iterations).unwrap(),
            &salt,
            password.as_bytes(),
            &mut salted,
        );
        let client_key = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, &salted), b"Client Key");
        let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
        let without_proof = format!("c=biws,r={}", attrs["r"]);
        let auth_message = format!("{client_first_bare},{server_first},{without_proof}");
        let signature = hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, stored_key.as_ref()), auth_message.as_bytes());
        let proof: Vec<u8> = client_key.as_ref().iter().zip(signature.as_ref()).map(|(a, b)| a ^ b).collect();
        format!("{without_proof},p={}", b64.encode(proof)).into_bytes()
    }

    /// Plays the client's side of SCRAM inside the conversation.
    struct ScramClient {
        user: &'static str,
        password: &'static str,
        step: usize,
        challenges: Vec<Vec<u8>>,
    }

    impl Conversation for ScramClient {
        async fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, Interrupted> {
            self.challenges.push(data.to_vec());
            self.step += 1;
            let bare = format!("n={},r=clientnonce", self.user);
            match self.step {
                1 => Ok(format!("n,,{bare}").into_bytes()),
                2 => Ok(client_final(self.password, &bare, std::str::from_utf8(data).unwrap())),
                _ => Ok(Vec::new()),
            }
        }
    }

    #[tokio::test]
    async fn scram_runs_to_the_end_for_known_and_unknown_users() {
        let mut client = ScramClient { user: "alice@example.org", password: "secret", step: 0, challenges: vec![] };
        let o = authenticate(&mut client, &Users, Mechanism::ScramSha256, None, None).await;
        assert!(matches!(o, Outcome::Authenticated(_)), "{o:?}");
        // Empty first challenge, server-first, then the server's signature as a last one.
        assert_eq!(client.challenges.len(), 3);
        assert!(client.challenges[2].starts_with(b"v="));

        let mut client = ScramClient { user: "alice@example.org", password: "wrong", step: 0, challenges: vec![] };
        let o = authenticate(&mut client, &Users, Mechanism::ScramSha256, None, None).await;
        assert!(matches!(o, Outcome::Failed { .. }), "{o:?}");
        assert_eq!(client.challenges.len(), 2, "no server signature after a wrong proof");

        // An unknown user with the right password for the made-up keys still fails.
        let mut client = ScramClient { user: "nobody@example.org", password: "secret", step: 0, challenges: vec![] };
        let o = authenticate(&mut client, &Users, Mechanism::ScramSha256, None, None).await;
        assert!(matches!(o, Outcome::Failed { .. }), "{o:?}");
        assert_eq!(client.challenges.len(), 2);
    }

    #[test]
    fn the_plus_variant_is_offered_only_with_a_channel_binding() {
        assert_eq!(offered(false), vec![Mechanism::Plain, Mechanism::Login, Mechanism::ScramSha256]);
        assert_eq!(offered(true).last(), Some(&Mechanism::ScramSha256Plus));
    }
}
