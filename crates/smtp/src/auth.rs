//! SMTP AUTH (RFC 4954) for submission: PLAIN, LOGIN, SCRAM-SHA-256 and, over TLS 1.3,
//! SCRAM-SHA-256-PLUS with `tls-exporter` channel binding. Failed attempts are slowed down and
//! counted per address together with IMAP and POP3; a banned address is told `421 4.7.0`.

use crate::session::{Flow, Session, State, reply};
use tern_sasl::{Conversation, Interrupted, Mechanism};
use tern_smtp_proto::Reply;
use tokio::io::{AsyncRead, AsyncWrite};

impl<S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Session<S> {
    /// Mechanisms offered now (nothing without TLS, except from loopback when allowed).
    pub(crate) fn auth_mechanisms(&self) -> Vec<&'static str> {
        if !self.server.settings.submission || !self.may_authenticate() {
            return Vec::new();
        }
        tern_sasl::offered(self.conn.tls_exporter().is_some()).into_iter().map(Mechanism::name).collect()
    }

    fn may_authenticate(&self) -> bool {
        self.conn.is_tls() || (self.server.settings.plaintext_on_loopback && self.peer.ip().is_loopback())
    }

    pub(crate) async fn auth(&mut self, mechanism: &str, initial: Option<String>) -> Flow {
        if !self.server.settings.submission {
            self.send(reply(502, (5, 5, 1), "AUTH not available on this port; use submission (587 or 465)"));
            return Flow::Continue;
        }
        let refusal = match self.state {
            State::Connected => Some("Send EHLO first"),
            _ if self.authenticated.is_some() => Some("Already authenticated"),
            State::Transaction(..) | State::Chunking(..) => Some("AUTH not allowed during a mail transaction"),
            State::Greeted(_) => None,
        };
        if let Some(text) = refusal {
            self.send(reply(503, (5, 5, 1), text));
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
        let directory = self.server.directory.clone();
        let binding = self.conn.tls_exporter();
        match tern_sasl::authenticate(&mut Challenges(self), &directory, mech, initial, binding).await {
            tern_sasl::Outcome::Authenticated(account) => {
                self.server.auth.succeeded(ip);
                tracing::info!(user = %account.address, mechanism, tls = self.conn.is_tls(), "authenticated");
                metrics::counter!("tern_smtp_auth_total", "result" => "success").increment(1);
                self.authenticated = Some(account);
                self.send(reply(235, (2, 7, 0), "Authentication successful"));
                Flow::Continue
            }
            tern_sasl::Outcome::Failed { user } => self.auth_failed(user.as_deref(), mechanism).await,
            // Acting as another user is answered (and counted) as a wrong password.
            tern_sasl::Outcome::NotAuthorized { user } => self.auth_failed(Some(&user), mechanism).await,
            tern_sasl::Outcome::Cancelled => {
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
            tern_sasl::Outcome::Malformed(m) => {
                self.send(reply(501, (5, 5, 2), m));
                Flow::Continue
            }
            tern_sasl::Outcome::Unavailable(e) => {
                tracing::error!(error = %e, "authentication lookup failed");
                self.send(reply(454, (4, 7, 0), "Temporary authentication failure"));
                Flow::Continue
            }
            tern_sasl::Outcome::Lost => Flow::Close,
        }
    }

    /// Wrong credentials: counted against the address, answered after the guard's delay,
    /// and the connection closed once the address is banned.
    async fn auth_failed(&mut self, user: Option<&str>, mechanism: &str) -> Flow {
        let ip = self.peer.ip();
        let delay = self.server.auth.failed(ip, "submission");
        tracing::info!(user = ?user, mechanism, "authentication failed");
        metrics::counter!("tern_smtp_auth_total", "result" => "failure").increment(1);
        tokio::time::sleep(delay).await;
        self.send(reply(535, (5, 7, 8), "Authentication credentials invalid"));
        if let tern_guard::AuthVerdict::Banned(_) = self.server.auth.check(ip) {
            let host = self.server.settings.hostname.clone();
            self.send(reply(421, (4, 7, 0), format!("{host} Too many failed logins, try again later")));
            return Flow::Close;
        }
        Flow::Continue
    }
}

/// SMTP's side of a SASL exchange: `334` challenges (RFC 4954 §4).
struct Challenges<'a, S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static>(&'a mut Session<S>);

impl<S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Conversation for Challenges<'_, S> {
    async fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, Interrupted> {
        let text = if data.is_empty() { String::new() } else { tern_sasl::encode(data) };
        self.0.send(Reply::plain(334, vec![text]));
        let Some(line) = self.0.read_line().await else { return Err(Interrupted::Lost) };
        let line = String::from_utf8_lossy(&line).trim().to_string();
        if line == "*" {
            return Err(Interrupted::Cancelled);
        }
        tern_sasl::decode(&line).ok_or_else(|| Interrupted::Malformed("Invalid base64".into()))
    }
}
