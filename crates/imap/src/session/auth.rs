//! STARTTLS, LOGIN and AUTHENTICATE PLAIN (RFC 4616, with SASL-IR, RFC 4959).

use super::{Done, Session};
use std::time::Duration;
use tern_imap_proto::Limits;
use tern_store::StoreError;
use tern_tls::Stream;

/// Strict base64 (RFC 4648) of a SASL response.
fn base64_decode(s: &str) -> Option<Vec<u8>> {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.decode(s.trim()).ok()
}

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
        match tokio::time::timeout(Duration::from_secs(30), acceptor.accept(plain)).await {
            Ok(Ok(tls)) => self.conn = Stream::Tls(Box::new(tls)),
            _ => {
                tracing::info!("TLS handshake failed");
                self.closing = true;
            }
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
        if mechanism != "PLAIN" {
            return Ok(Done::no("Unsupported mechanism; use PLAIN").code("CANNOT"));
        }
        if !self.may_login() {
            return Ok(Done::no("Authenticate over TLS: use STARTTLS or port 993").code("PRIVACYREQUIRED"));
        }
        let response = match initial {
            // SASL-IR: "=" is an empty initial response.
            Some(r) if r == "=" => Vec::new(),
            Some(r) => match base64_decode(&r) {
                Some(d) => d,
                None => return Ok(Done::bad("Invalid base64")),
            },
            None => {
                self.line("+ ");
                let line = match self.read_line().await {
                    Ok(l) => l,
                    Err(_) => {
                        self.closing = true;
                        return Ok(Done::no("Connection lost"));
                    }
                };
                let text = String::from_utf8_lossy(&line).trim().to_string();
                if text == "*" {
                    return Ok(Done::bad("Authentication cancelled"));
                }
                match base64_decode(&text) {
                    Some(d) => d,
                    None => return Ok(Done::bad("Invalid base64")),
                }
            }
        };
        // PLAIN: authzid NUL authcid NUL password.
        let parts: Vec<&[u8]> = response.split(|&b| b == 0).collect();
        let [authz, user, password] = parts.as_slice() else {
            return Ok(Done::bad("Malformed PLAIN response"));
        };
        let (Ok(authz), Ok(user), Ok(password)) =
            (std::str::from_utf8(authz), std::str::from_utf8(user), std::str::from_utf8(password))
        else {
            return Ok(Done::bad("Malformed PLAIN response"));
        };
        if !authz.is_empty() && !authz.eq_ignore_ascii_case(user) {
            return Ok(Done::no("Acting as another user is not allowed").code("AUTHORIZATIONFAILED"));
        }
        self.check_credentials(user, password).await
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
                self.framer.set_limits(Limits::authenticated(self.server.settings.append_limit as usize));
                self.account = Some(account);
                let caps = self.capabilities();
                Ok(Done::ok("Logged in").code(format!("CAPABILITY {caps}")))
            }
            None => {
                let delay = self.server.auth.failed(ip, "imap");
                tracing::info!(user = %user, "login failed");
                tokio::time::sleep(delay).await;
                Ok(Done::no("Invalid credentials").code("AUTHENTICATIONFAILED"))
            }
        }
    }
}
