//! STARTTLS, LOGIN and AUTHENTICATE PLAIN, LOGIN, SCRAM-SHA-256 and SCRAM-SHA-256-PLUS
//! (RFC 4616, RFC 7677, with SASL-IR, RFC 4959).

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
        match mech {
            tern_sasl::Mechanism::Plain => {
                let response = match initial {
                    Some(r) => r,
                    None => match self.sasl_challenge(b"").await {
                        Ok(r) => r,
                        Err(done) => return Ok(done),
                    },
                };
                let Some(creds) = tern_sasl::parse_plain(&response) else {
                    return Ok(Done::bad("Malformed PLAIN response"));
                };
                if !creds.acts_as_self() {
                    return Ok(Done::no("Acting as another user is not allowed").code("AUTHORIZATIONFAILED"));
                }
                self.check_credentials(&creds.user, &creds.password).await
            }
            tern_sasl::Mechanism::Login => {
                let user = match initial {
                    Some(u) => u,
                    None => match self.sasl_challenge(b"Username:").await {
                        Ok(u) => u,
                        Err(done) => return Ok(done),
                    },
                };
                let password = match self.sasl_challenge(b"Password:").await {
                    Ok(p) => p,
                    Err(done) => return Ok(done),
                };
                let (Ok(user), Ok(password)) = (String::from_utf8(user), String::from_utf8(password)) else {
                    return Ok(Done::bad("Credentials must be UTF-8"));
                };
                self.check_credentials(&user, &password).await
            }
            tern_sasl::Mechanism::ScramSha256 | tern_sasl::Mechanism::ScramSha256Plus => {
                self.authenticate_scram(mech == tern_sasl::Mechanism::ScramSha256Plus, initial).await
            }
        }
    }

    /// Sends a continuation request with `data` and reads the client's answer; `Err` is the
    /// completion to send (cancelled, bad base64, connection lost).
    async fn sasl_challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, Done> {
        let text = if data.is_empty() { String::new() } else { tern_sasl::encode(data) };
        self.line(&format!("+ {text}"));
        let line = match self.read_line().await {
            Ok(l) => l,
            Err(_) => {
                self.closing = true;
                return Err(Done::no("Connection lost"));
            }
        };
        let text = String::from_utf8_lossy(&line).trim().to_string();
        if text == "*" {
            // Counted as a failed login: cancelling after the server's first SCRAM message
            // would otherwise probe user names for free.
            let delay = self.server.auth.failed(self.peer.ip(), "imap");
            tracing::info!("authentication cancelled");
            tokio::time::sleep(delay).await;
            return Err(Done::bad("Authentication cancelled"));
        }
        tern_sasl::decode(&text).ok_or_else(|| Done::bad("Invalid base64"))
    }

    async fn authenticate_scram(&mut self, plus: bool, initial: Option<Vec<u8>>) -> Result<Done, StoreError> {
        let ip = self.peer.ip();
        if let tern_guard::AuthVerdict::Banned(_) = self.server.auth.check(ip) {
            self.closing = true;
            self.untagged("BYE Too many failed logins, try later");
            return Ok(Done::no("Too many failed logins").code("UNAVAILABLE"));
        }
        let mut scram = tern_sasl::ScramServer::new(plus, self.conn.tls_exporter());
        let first = match initial {
            Some(f) if !f.is_empty() => f,
            _ => match self.sasl_challenge(b"").await {
                Ok(f) => f,
                Err(done) => return Ok(done),
            },
        };
        let user = match scram.client_first(&first) {
            Ok(tern_sasl::ScramStep::LookUp { user }) => user,
            Ok(_) => return Ok(Done::bad("Unexpected SCRAM message")),
            Err(e) => return Ok(Done::bad(e.to_string())),
        };
        // An unknown user runs the whole exchange on made-up keys and fails at the end.
        let (account, creds) = match self.server.directory.scram_lookup(&user).await {
            Ok(found) => (found.account, found.credentials),
            Err(tern_directory::DirectoryError::Store(e)) => return Err(e),
            Err(e) => {
                tracing::warn!(error = %e, "authentication error");
                return Ok(Done::no("Temporary authentication failure").code("UNAVAILABLE"));
            }
        };
        let server_first = match scram.server_first(creds) {
            Ok(s) => s,
            Err(e) => return Ok(Done::bad(e.to_string())),
        };
        let last = match self.sasl_challenge(server_first.as_bytes()).await {
            Ok(l) => l,
            Err(done) => return Ok(done),
        };
        match (scram.client_final(&last), account) {
            (Ok(tern_sasl::ScramStep::Success { server_final }), Some(account)) => {
                // RFC 9051 §6.2.2: server data with success goes in the tagged OK's
                // continuation; clients accept it as a final challenge answered empty.
                if let Err(done) = self.sasl_challenge(server_final.as_bytes()).await {
                    return Ok(done);
                }
                self.server.auth.succeeded(ip);
                tracing::info!(user = %account.address, mechanism = "SCRAM-SHA-256", "logged in");
                self.logged_in(account);
                let caps = self.capabilities();
                Ok(Done::ok("Logged in").code(format!("CAPABILITY {caps}")))
            }
            (Err(tern_sasl::ScramError::Malformed(m)), _) => Ok(Done::bad(m)),
            _ => {
                let delay = self.server.auth.failed(ip, "imap");
                tracing::info!(user = ?user, "login failed");
                tokio::time::sleep(delay).await;
                Ok(Done::no("Invalid credentials").code("AUTHENTICATIONFAILED"))
            }
        }
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
            None => {
                let delay = self.server.auth.failed(ip, "imap");
                tracing::info!(user = ?user, "login failed");
                tokio::time::sleep(delay).await;
                Ok(Done::no("Invalid credentials").code("AUTHENTICATIONFAILED"))
            }
        }
    }
}
