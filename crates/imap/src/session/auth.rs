//! STARTTLS, LOGIN and AUTHENTICATE PLAIN, LOGIN, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS
//! (RFC 4616, RFC 7677, with SASL-IR, RFC 4959), the exchange run by [`tern_sasl::authenticate`].

use super::{Done, Session};
use tern_store::StoreError;
use tern_tls::Stream;

impl Session {
    pub(super) async fn starttls(&mut self, tag: &str) -> Done {
        let Some(acceptor) = self.server.tls.clone() else {
            return Done::bad("STARTTLS is not available");
        };
        if self.conn.is_tls() {
            return Done::bad("TLS is already active");
        }
        self.tagged(tag, Done::ok("Begin TLS negotiation now"));
        self.tagged_sent = true;
        if self.flush().await.is_err() {
            self.closing = true;
            return Done::ok("");
        }
        // Plaintext sent after STARTTLS must not be run inside TLS (like CVE-2011-0411).
        if !self.inbuf.is_empty() || self.framer.in_command() {
            tracing::warn!(bytes = self.inbuf.len(), "discarding plaintext pipelined after STARTTLS");
            self.inbuf.clear();
            self.framer.reset();
        }
        let Stream::Plain(plain) = std::mem::replace(&mut self.conn, Stream::Upgrading) else {
            self.closing = true;
            return Done::ok("");
        };
        match tern_tls::handshake(&acceptor, plain, self.peer).await {
            Some(tls) => self.conn = Stream::Tls(Box::new(tls)),
            None => self.closing = true,
        }
        Done::ok("")
    }

    pub(super) async fn login(&mut self, user: &str, password: &str) -> Result<Done, StoreError> {
        if !self.may_login() {
            return Ok(Done::no("Log in over TLS: use STARTTLS or port 993").code("PRIVACYREQUIRED"));
        }
        self.check_credentials(user, password).await
    }

    pub(super) async fn authenticate(&mut self, mechanism: &str, initial: Option<String>) -> Result<Done, StoreError> {
        let Some(mech) = tern_sasl::Mechanism::parse(mechanism) else {
            return Ok(Done::no("Unsupported mechanism").code("CANNOT"));
        };
        if !self.may_login() {
            return Ok(Done::no("Authenticate over TLS: use STARTTLS or port 993").code("PRIVACYREQUIRED"));
        }
        if mech == tern_sasl::Mechanism::ScramSha256Plus && self.conn.tls_exporter().is_none() {
            return Ok(Done::no("SCRAM-SHA-256-PLUS needs TLS 1.3").code("CANNOT"));
        }
        // SASL-IR: "=" is an empty initial response.
        let initial = match initial {
            None => None,
            Some(r) => match tern_sasl::decode(&r) {
                Some(d) => Some(d),
                None => return Ok(Done::bad("Invalid base64")),
            },
        };
        let ip = self.peer.ip();
        if let tern_guard::AuthVerdict::Banned(_) = self.server.auth.check(ip) {
            self.closing = true;
            self.untagged("BYE Too many failed logins, try later");
            return Ok(Done::no("Too many failed logins").code("UNAVAILABLE"));
        }
        let directory = self.server.directory.clone();
        let binding = self.conn.tls_exporter();
        match tern_sasl::authenticate(&mut Continuations(self), &directory, mech, initial, binding).await {
            tern_sasl::Outcome::Authenticated(account) => {
                self.server.auth.succeeded(ip);
                tracing::info!(user = %account.address, mechanism = mech.name(), tls = self.conn.is_tls(), "logged in");
                self.logged_in(account);
                let caps = self.capabilities();
                Ok(Done::ok("Logged in").code(format!("CAPABILITY {caps}")))
            }
            tern_sasl::Outcome::Failed { user } => Ok(self.login_failed(user.as_deref()).await),
            tern_sasl::Outcome::NotAuthorized { .. } => {
                Ok(Done::no("Acting as another user is not allowed").code("AUTHORIZATIONFAILED"))
            }
            tern_sasl::Outcome::Cancelled => {
                let delay = self.server.auth.failed(ip, "imap");
                tracing::info!("authentication cancelled");
                tokio::time::sleep(delay).await;
                Ok(Done::bad("Authentication cancelled"))
            }
            tern_sasl::Outcome::Malformed(m) => Ok(Done::bad(m)),
            tern_sasl::Outcome::Unavailable(tern_directory::DirectoryError::Store(e)) => Err(e),
            tern_sasl::Outcome::Unavailable(e) => {
                tracing::warn!(error = %e, "authentication error");
                Ok(Done::no("Temporary authentication failure").code("UNAVAILABLE"))
            }
            tern_sasl::Outcome::Lost => {
                self.closing = true;
                Ok(Done::no("Connection lost"))
            }
        }
    }

    /// A wrong password: counted against the address, answered after the guard's delay.
    async fn login_failed(&mut self, user: Option<&str>) -> Done {
        let delay = self.server.auth.failed(self.peer.ip(), "imap");
        tracing::info!(user = ?user, "login failed");
        tokio::time::sleep(delay).await;
        Done::no("Invalid credentials").code("AUTHENTICATIONFAILED")
    }

    async fn check_credentials(&mut self, user: &str, password: &str) -> Result<Done, StoreError> {
        let ip = self.peer.ip();
        if let tern_guard::AuthVerdict::Banned(_) = self.server.auth.check(ip) {
            self.closing = true;
            self.untagged("BYE Too many failed logins, try later");
            return Ok(Done::no("Too many failed logins").code("UNAVAILABLE"));
        }
        let account = match self.server.directory.authenticate(user, password).await {
            Ok(a) => a,
            Err(tern_directory::DirectoryError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "authentication error");
                None
            }
        };
        match account {
            Some(account) => {
                self.server.auth.succeeded(ip);
                tracing::info!(user = %account.address, tls = self.conn.is_tls(), "logged in");
                self.logged_in(account);
                let caps = self.capabilities();
                Ok(Done::ok("Logged in").code(format!("CAPABILITY {caps}")))
            }
            None => Ok(self.login_failed(Some(user)).await),
        }
    }
}

/// IMAP's side of a SASL exchange: `+ ` continuation requests (RFC 9051 §7.5).
struct Continuations<'a>(&'a mut Session);

impl tern_sasl::Conversation for Continuations<'_> {
    async fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, tern_sasl::Interrupted> {
        let session = &mut *self.0;
        let text = if data.is_empty() { String::new() } else { tern_sasl::encode(data) };
        session.line(&format!("+ {text}"));
        let Ok(line) = session.read_line().await else { return Err(tern_sasl::Interrupted::Lost) };
        let text = String::from_utf8_lossy(&line).trim().to_string();
        if text == "*" {
            return Err(tern_sasl::Interrupted::Cancelled);
        }
        tern_sasl::decode(&text).ok_or_else(|| tern_sasl::Interrupted::Malformed("Invalid base64".into()))
    }
}
