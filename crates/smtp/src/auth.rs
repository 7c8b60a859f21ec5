//! SMTP AUTH (RFC 4954) for submission: PLAIN, LOGIN, SCRAM-SHA-256 and, over TLS 1.3,
//! SCRAM-SHA-256-PLUS with `tls-exporter` channel binding. Failed attempts are slowed down and
//! counted per address together with IMAP and POP3; a banned address is told `421 4.7.0`.

use crate::session::{Flow, Session, reply};
use tern_sasl::{Mechanism, ScramServer, ScramStep};
use tern_smtp_proto::Reply;
use tokio::io::{AsyncRead, AsyncWrite};

/// What the exchange came to.
enum Exchange {
    /// Credentials checked out for this user.
    Authenticated(tern_store::Account),
    /// Wrong credentials (counted against the address).
    Failed(Option<String>),
    /// The client cancelled with `*` (counted as a failure, answered `501`).
    Cancelled,
    /// The client spoke nonsense (`501`) or the lookup failed (`454`); not counted.
    Aborted(Reply),
    /// The connection is gone.
    Lost,
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Session<S> {
    /// Mechanisms offered now (nothing without TLS, except from loopback when allowed).
    pub(crate) fn auth_mechanisms(&self) -> Vec<&'static str> {
        if !self.server.settings.submission || !self.may_authenticate() {
            return Vec::new();
        }
        let mut list = vec!["PLAIN", "LOGIN", "SCRAM-SHA-256"];
        if self.conn.tls_exporter().is_some() {
            list.push("SCRAM-SHA-256-PLUS");
        }
        list
    }

    fn may_authenticate(&self) -> bool {
        self.conn.is_tls() || (self.server.settings.plaintext_on_loopback && self.peer.ip().is_loopback())
    }

    pub(crate) async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> Flow {
        if !self.server.settings.submission {
            self.send(reply(502, (5, 5, 1), "AUTH not available on this port; use submission (587 or 465)"));
            return Flow::Continue;
        }
        if self.helo.is_none() {
            self.send(reply(503, (5, 5, 1), "Send EHLO first"));
            return Flow::Continue;
        }
        if self.authenticated.is_some() {
            self.send(reply(503, (5, 5, 1), "Already authenticated"));
            return Flow::Continue;
        }
        if self.tx.is_some() {
            self.send(reply(503, (5, 5, 1), "AUTH not allowed during a mail transaction"));
            return Flow::Continue;
        }
        if !self.may_authenticate() {
            // RFC 4954 §6
            self.send(reply(538, (5, 7, 11), "Encryption required for requested authentication mechanism"));
            return Flow::Continue;
        }
        let ip = self.peer.ip();
        if let tern_guard::AuthVerdict::Banned(_) = self.server.auth.check(ip) {
            let host = self.server.settings.hostname.clone();
            self.send(reply(421, (4, 7, 0), format!("{host} Too many failed logins, try again later")));
            return Flow::Close;
        }
        let Some(mech) = Mechanism::parse(mechanism) else {
            self.send(reply(504, (5, 5, 4), "Unrecognized authentication type"));
            return Flow::Continue;
        };
        if mech == Mechanism::ScramSha256Plus && self.conn.tls_exporter().is_none() {
            self.send(reply(504, (5, 5, 4), "SCRAM-SHA-256-PLUS needs TLS 1.3"));
            return Flow::Continue;
        }
        let initial = match initial.as_deref() {
            None => None,
            Some(text) => match tern_sasl::decode(text) {
                Some(bytes) => Some(bytes),
                None => {
                    self.send(reply(501, (5, 5, 2), "Invalid base64 in initial response"));
                    return Flow::Continue;
                }
            },
        };
        let outcome = match mech {
            Mechanism::Plain => self.auth_plain(initial).await,
            Mechanism::Login => self.auth_login(initial).await,
            Mechanism::ScramSha256 | Mechanism::ScramSha256Plus => {
                self.auth_scram(mech == Mechanism::ScramSha256Plus, initial).await
            }
        };
        match outcome {
            Exchange::Authenticated(account) => {
                self.server.auth.succeeded(ip);
                tracing::info!(user = %account.address, mechanism, tls = self.conn.is_tls(), "authenticated");
                metrics::counter!("tern_smtp_auth_total", "result" => "success").increment(1);
                self.authenticated = Some(account);
                self.send(reply(235, (2, 7, 0), "Authentication successful"));
                Flow::Continue
            }
            Exchange::Failed(user) => {
                let delay = self.server.auth.failed(ip, "submission");
                tracing::info!(user = user.as_deref().unwrap_or("-"), mechanism, "authentication failed");
                metrics::counter!("tern_smtp_auth_total", "result" => "failure").increment(1);
                tokio::time::sleep(delay).await;
                if let tern_guard::AuthVerdict::Banned(_) = self.server.auth.check(ip) {
                    let host = self.server.settings.hostname.clone();
                    self.send(reply(535, (5, 7, 8), "Authentication credentials invalid"));
                    self.send(reply(421, (4, 7, 0), format!("{host} Too many failed logins, try again later")));
                    return Flow::Close;
                }
                self.send(reply(535, (5, 7, 8), "Authentication credentials invalid"));
                Flow::Continue
            }
            Exchange::Cancelled => {
                // A cancelled exchange counts as a failure: cancelling after the server's
                // first SCRAM message would otherwise probe user names for free.
                let delay = self.server.auth.failed(ip, "submission");
                tracing::info!(mechanism, "authentication cancelled");
                metrics::counter!("tern_smtp_auth_total", "result" => "cancelled").increment(1);
                tokio::time::sleep(delay).await;
                // RFC 4954 §4: a cancelled exchange is answered 501.
                self.send(reply(501, (5, 7, 0), "Authentication cancelled"));
                if let tern_guard::AuthVerdict::Banned(_) = self.server.auth.check(ip) {
                    let host = self.server.settings.hostname.clone();
                    self.send(reply(421, (4, 7, 0), format!("{host} Too many failed logins, try again later")));
                    return Flow::Close;
                }
                Flow::Continue
            }
            Exchange::Aborted(r) => {
                self.send(r);
                Flow::Continue
            }
            Exchange::Lost => Flow::Close,
        }
    }

    /// Sends a `334` challenge and reads the client's line: `Ok(None)` when it cancelled.
    async fn challenge(&mut self, data: &[u8]) -> Result<Option<Vec<u8>>, Exchange> {
        let text = if data.is_empty() { String::new() } else { tern_sasl::encode(data) };
        self.send(Reply::plain(334, vec![text]));
        let line = match self.read_line().await {
            Some(l) => l,
            None => return Err(Exchange::Lost),
        };
        let line = String::from_utf8_lossy(&line).trim().to_string();
        if line == "*" {
            return Ok(None);
        }
        match tern_sasl::decode(&line) {
            Some(bytes) => Ok(Some(bytes)),
            None => Err(Exchange::Aborted(reply(501, (5, 5, 2), "Invalid base64"))),
        }
    }

    fn cancelled() -> Exchange {
        Exchange::Cancelled
    }

    async fn verify_password(&self, user: &str, password: &str) -> Exchange {
        match self.server.directory.authenticate(user, password).await {
            Ok(Some(account)) => Exchange::Authenticated(account),
            Ok(None) => Exchange::Failed(Some(user.to_string())),
            Err(e) => {
                tracing::error!(error = %e, "authentication lookup failed");
                Exchange::Aborted(reply(454, (4, 7, 0), "Temporary authentication failure"))
            }
        }
    }

    async fn auth_plain(&mut self, initial: Option<Vec<u8>>) -> Exchange {
        let response = match initial {
            Some(r) => r,
            None => match self.challenge(b"").await {
                Ok(Some(r)) => r,
                Ok(None) => return Self::cancelled(),
                Err(e) => return e,
            },
        };
        let Some(creds) = tern_sasl::parse_plain(&response) else {
            return Exchange::Aborted(reply(501, (5, 5, 2), "Malformed PLAIN response"));
        };
        if !creds.acts_as_self() {
            return Exchange::Failed(Some(creds.user));
        }
        self.verify_password(&creds.user, &creds.password).await
    }

    async fn auth_login(&mut self, initial: Option<Vec<u8>>) -> Exchange {
        let user = match initial {
            Some(u) => u,
            None => match self.challenge(b"Username:").await {
                Ok(Some(u)) => u,
                Ok(None) => return Self::cancelled(),
                Err(e) => return e,
            },
        };
        let password = match self.challenge(b"Password:").await {
            Ok(Some(p)) => p,
            Ok(None) => return Self::cancelled(),
            Err(e) => return e,
        };
        let (Ok(user), Ok(password)) = (String::from_utf8(user), String::from_utf8(password)) else {
            return Exchange::Aborted(reply(501, (5, 5, 2), "Credentials must be UTF-8"));
        };
        self.verify_password(&user, &password).await
    }

    async fn auth_scram(&mut self, plus: bool, initial: Option<Vec<u8>>) -> Exchange {
        let mut server = ScramServer::new(plus, self.conn.tls_exporter());
        let first = match initial {
            Some(f) if !f.is_empty() => f,
            _ => match self.challenge(b"").await {
                Ok(Some(f)) => f,
                Ok(None) => return Self::cancelled(),
                Err(e) => return e,
            },
        };
        let user = match server.client_first(&first) {
            Ok(ScramStep::LookUp { user }) => user,
            Ok(_) => return Exchange::Aborted(reply(501, (5, 5, 2), "Unexpected SCRAM message")),
            Err(e) => return Exchange::Aborted(reply(501, (5, 5, 2), format!("{e}"))),
        };
        // An unknown user runs the whole exchange on made-up keys and fails at the end.
        let (account, creds) = match self.server.directory.scram_lookup(&user).await {
            Ok(found) => (found.account, found.credentials),
            Err(e) => {
                tracing::error!(error = %e, "authentication lookup failed");
                return Exchange::Aborted(reply(454, (4, 7, 0), "Temporary authentication failure"));
            }
        };
        let server_first = match server.server_first(creds) {
            Ok(s) => s,
            Err(e) => return Exchange::Aborted(reply(501, (5, 5, 2), format!("{e}"))),
        };
        let last = match self.challenge(server_first.as_bytes()).await {
            Ok(Some(l)) => l,
            Ok(None) => return Self::cancelled(),
            Err(e) => return e,
        };
        match server.client_final(&last) {
            Ok(ScramStep::Success { server_final }) => {
                let Some(account) = account else { return Exchange::Failed(Some(user)) };
                // RFC 4954 §4: additional data with success goes in a 334, answered empty.
                match self.challenge(server_final.as_bytes()).await {
                    Ok(_) => Exchange::Authenticated(account),
                    Err(e) => e,
                }
            }
            Ok(_) => Exchange::Aborted(reply(501, (5, 5, 2), "Unexpected SCRAM message")),
            Err(tern_sasl::ScramError::Malformed(m)) => Exchange::Aborted(reply(501, (5, 5, 2), m)),
            Err(_) => Exchange::Failed(Some(user)),
        }
    }
}
