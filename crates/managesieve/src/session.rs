//! One ManageSieve session: not authenticated → authenticated (RFC 5804 §1.1, §2).

use crate::ManageSieveServer;
use crate::proto::{self, Command, Parse};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tern_guard::{InputEnd, SessionIo};
use tern_store::{Account, StoreError};
use tern_tls::Stream;
use tokio::io::AsyncWriteExt;

const MAX_ERRORS: u32 = 30;

/// The session's state: who is logged in, if anyone.
enum State {
    NotAuthenticated,
    Authenticated(Account),
}

enum Next {
    Continue,
    Close,
}

pub(crate) struct Session<S> {
    server: Arc<ManageSieveServer>,
    io: SessionIo<Stream<S>>,
    peer: SocketAddr,
    state: State,
    errors: u32,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync + 'static> Session<S> {
    pub(crate) fn new(server: Arc<ManageSieveServer>, conn: Stream<S>, peer: SocketAddr) -> Session<S> {
        let login = server.settings.login_timeout;
        let deadlines = tern_guard::Deadlines::new(login.min(server.settings.timeout), Some(login));
        let io = SessionIo::new(conn, deadlines, server.settings.timeout, server.shutdown.clone());
        Session { server, io, peer, state: State::NotAuthenticated, errors: 0 }
    }

    /// `OK`/`NO`/`BYE` with an optional response code and text (RFC 5804 §1.3).
    fn reply(&mut self, kind: &str, code: Option<&str>, text: &str) {
        if kind != "OK" {
            self.errors += 1;
        }
        self.io.out.extend_from_slice(kind.as_bytes());
        if let Some(code) = code {
            self.io.out.extend_from_slice(format!(" ({code})").as_bytes());
        }
        if !text.is_empty() {
            self.io.out.push(b' ');
            if text.contains(['\r', '\n']) || text.len() > 1024 {
                self.io.out.extend_from_slice(&proto::literal(text.as_bytes()));
            } else {
                self.io.out.extend_from_slice(proto::quoted(text).as_bytes());
            }
        }
        self.io.out.extend_from_slice(b"\r\n");
    }

    fn ok(&mut self, text: &str) {
        self.reply("OK", None, text);
    }

    fn no(&mut self, code: Option<&str>, text: &str) {
        self.reply("NO", code, text);
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.io.flush().await
    }

    /// What the client is told when its input ends on our side.
    async fn farewell(&mut self, end: InputEnd) {
        match end {
            InputEnd::Shutdown => self.reply("BYE", Some("TRYLATER"), "Server shutting down"),
            InputEnd::TimedOut => self.reply("BYE", None, "Idle for too long"),
            InputEnd::Closed => return,
        }
        let _ = self.flush().await;
    }

    /// More bytes into the input buffer; `None` when the session must end.
    async fn fill(&mut self) -> Option<()> {
        match self.io.fill().await {
            Ok(_) => Some(()),
            Err(end) => {
                self.farewell(end).await;
                None
            }
        }
    }

    /// Drops a refused literal of `n` bytes and the rest of its line; `None` when the
    /// session must end.
    async fn discard(&mut self, n: usize) -> Option<()> {
        match self.io.discard(n).await {
            Ok(()) => Some(()),
            Err(end) => {
                self.farewell(end).await;
                None
            }
        }
    }

    fn max_literal(&self) -> usize {
        // A script, or a SASL message; before login only the latter.
        match self.state {
            State::Authenticated(_) => self.server.settings.max_script_bytes,
            State::NotAuthenticated => 16 * 1024,
        }
    }

    fn may_login(&self) -> bool {
        self.io.conn.is_tls() || (self.server.settings.plaintext_on_loopback && tern_config::is_loopback(&self.peer))
    }

    /// The capability response (RFC 5804 §1.7), without the final OK.
    fn capabilities(&mut self) {
        let mut lines = vec![
            ("IMPLEMENTATION".to_string(), format!("Tern {}", env!("CARGO_PKG_VERSION"))),
            (
                "SIEVE".to_string(),
                tern_sieve::EXTENSIONS
                    .iter()
                    .filter(|e| !e.starts_with("comparator-i;o") && !e.starts_with("comparator-i;ascii-c"))
                    .copied()
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
        ];
        // Mechanisms only where a login may happen (RFC 5804 §2.1: none before TLS).
        let sasl = if self.may_login() {
            tern_sasl::offered(self.io.conn.tls_exporter().is_some())
                .iter()
                .map(|m| m.name())
                .collect::<Vec<_>>()
                .join(" ")
        } else {
            String::new()
        };
        lines.push(("SASL".into(), sasl));
        if self.server.tls.is_some() && !self.io.conn.is_tls() {
            lines.push(("STARTTLS".into(), String::new()));
        }
        lines.push(("MAXREDIRECTS".into(), tern_sieve::Limits::default().redirects.to_string()));
        lines.push(("VERSION".into(), "1.0".into()));
        lines.push(("UNAUTHENTICATE".into(), String::new()));
        for (name, value) in lines {
            self.io.out.extend_from_slice(proto::quoted(&name).as_bytes());
            if !value.is_empty() || name == "SASL" {
                self.io.out.push(b' ');
                self.io.out.extend_from_slice(proto::quoted(&value).as_bytes());
            }
            self.io.out.extend_from_slice(b"\r\n");
        }
    }

    pub(crate) async fn run(mut self) {
        self.capabilities();
        let host = self.server.settings.hostname.clone();
        self.ok(&format!("{host} Tern ManageSieve ready"));
        loop {
            if self.errors >= MAX_ERRORS {
                self.reply("BYE", None, "Too many errors");
                break;
            }
            let parsed = proto::parse(&self.io.inbuf, self.max_literal());
            let command = match parsed {
                Parse::Done(command, n) => {
                    self.io.inbuf.drain(..n);
                    command
                }
                Parse::Incomplete => {
                    if self.fill().await.is_none() {
                        break;
                    }
                    continue;
                }
                Parse::Bad(why, n) => {
                    let n = n.min(self.io.inbuf.len());
                    self.io.inbuf.drain(..n);
                    tracing::debug!(why = ?why, "bad command");
                    self.no(None, &why);
                    continue;
                }
                Parse::TooLarge(skip) => {
                    if self.discard(skip).await.is_none() {
                        break;
                    }
                    self.no(Some("QUOTA/MAXSIZE"), "Script too large");
                    continue;
                }
            };
            let next = match command {
                Command::Capability => {
                    self.capabilities();
                    self.ok("Capability completed");
                    Next::Continue
                }
                Command::Noop { tag } => {
                    match tag {
                        Some(tag) => {
                            let tag = String::from_utf8_lossy(&tag).into_owned();
                            self.reply("OK", Some(&format!("TAG {}", proto::quoted(&tag))), "Done");
                        }
                        None => self.ok("Done"),
                    }
                    Next::Continue
                }
                Command::Logout => {
                    self.ok("Logout completed");
                    Next::Close
                }
                other => match std::mem::replace(&mut self.state, State::NotAuthenticated) {
                    State::NotAuthenticated => self.not_authenticated(other).await,
                    State::Authenticated(account) => {
                        self.state = State::Authenticated(account.clone());
                        self.authenticated(&account, other).await
                    }
                },
            };
            if let Next::Close = next {
                break;
            }
            self.io.deadlines.command_done();
        }
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.io.conn.shutdown()).await;
    }

    async fn not_authenticated(&mut self, command: Command) -> Next {
        match command {
            Command::StartTls => self.starttls().await,
            Command::Authenticate { mechanism, initial } => self.authenticate(&mechanism, initial).await,
            _ => {
                self.no(None, "Log in first");
                Next::Continue
            }
        }
    }

    async fn starttls(&mut self) -> Next {
        let Some(acceptor) = self.server.tls.clone() else {
            self.no(None, "STARTTLS is not available");
            return Next::Continue;
        };
        if self.io.conn.is_tls() {
            self.no(None, "Already using TLS");
            return Next::Continue;
        }
        self.ok("Begin TLS negotiation now");
        if self.flush().await.is_err() {
            return Next::Close;
        }
        if !self.io.inbuf.is_empty() {
            tracing::warn!(bytes = self.io.inbuf.len(), "discarding plaintext pipelined after STARTTLS");
            self.io.inbuf.clear();
        }
        let Stream::Plain(plain) = std::mem::replace(&mut self.io.conn, Stream::Upgrading) else { return Next::Close };
        match tern_tls::handshake(&acceptor, plain, self.peer).await {
            Some(tls) => {
                self.io.conn = Stream::Tls(Box::new(tls));
                // RFC 5804 §2.2: the capabilities again, over TLS.
                self.capabilities();
                self.ok("TLS negotiation successful");
                Next::Continue
            }
            None => Next::Close,
        }
    }

    async fn authenticate(&mut self, mechanism: &str, initial: Option<Vec<u8>>) -> Next {
        let binding = self.io.conn.tls_exporter();
        let Some(mech) = tern_sasl::Mechanism::parse(mechanism) else {
            self.no(None, "Unsupported mechanism");
            return Next::Continue;
        };
        if !self.may_login() {
            self.no(Some("ENCRYPT-NEEDED"), "Authentication is not allowed without TLS; use STARTTLS");
            return Next::Continue;
        }
        if mech == tern_sasl::Mechanism::ScramSha256Plus && binding.is_none() {
            self.no(None, "SCRAM-SHA-256-PLUS needs TLS 1.3");
            return Next::Continue;
        }
        let initial = match initial {
            None => None,
            Some(text) => match tern_sasl::decode(&String::from_utf8_lossy(&text)) {
                Some(bytes) => Some(bytes),
                None => {
                    self.no(None, "Invalid base64");
                    return Next::Continue;
                }
            },
        };
        let ip = self.peer.ip();
        if let tern_guard::AuthVerdict::Banned(_) = self.server.auth.check(ip) {
            self.reply("BYE", Some("TRYLATER"), "Too many failed logins, try later");
            return Next::Close;
        }
        let directory = self.server.directory.clone();
        match tern_sasl::authenticate(&mut Challenges(self), &directory, mech, initial, binding).await {
            tern_sasl::Outcome::Authenticated(account) => {
                self.server.auth.succeeded(ip);
                tracing::info!(user = %account.address, "ManageSieve login");
                self.state = State::Authenticated(account);
                self.ok("Logged in");
                Next::Continue
            }
            tern_sasl::Outcome::Failed { user } => {
                let delay = self.server.auth.failed(ip, "managesieve");
                tracing::info!(user = ?user, "ManageSieve login failed");
                tokio::time::sleep(delay).await;
                self.no(None, "Authentication failed");
                Next::Continue
            }
            tern_sasl::Outcome::NotAuthorized { .. } => {
                self.no(None, "Acting as another user is not allowed");
                Next::Continue
            }
            tern_sasl::Outcome::Cancelled => {
                let delay = self.server.auth.failed(ip, "managesieve");
                tokio::time::sleep(delay).await;
                self.no(None, "Authentication cancelled");
                Next::Continue
            }
            tern_sasl::Outcome::Malformed(m) => {
                self.no(None, &m);
                Next::Continue
            }
            tern_sasl::Outcome::Unavailable(e) => {
                tracing::error!(error = %e, "authentication error");
                self.no(Some("TRYLATER"), "Temporary failure, try later");
                Next::Continue
            }
            tern_sasl::Outcome::Lost => Next::Close,
        }
    }

    /// A store failure as a reply: a temporary one for an unreachable store.
    fn store_failed(&mut self, e: &StoreError) {
        match e {
            StoreError::NotFound(_) => self.no(Some("NONEXISTENT"), "There is no such script"),
            StoreError::Exists(_) => self.no(Some("ALREADYEXISTS"), "A script of that name exists"),
            StoreError::Active(_) => self.no(Some("ACTIVE"), "The active script cannot be deleted"),
            other => {
                tracing::error!(error = %other, "ManageSieve store error");
                self.no(Some("TRYLATER"), "Temporary failure, try later");
            }
        }
    }

    /// The script checked: `Ok` or the error with its line and column.
    fn check(script: &[u8]) -> Result<(), String> {
        let source = std::str::from_utf8(script).map_err(|_| "the script is not UTF-8".to_string())?;
        tern_sieve::compile(source).map(|_| ()).map_err(|e| e.to_string())
    }

    /// Whether `size` more bytes fit, as `name`: size and count limits (RFC 5804 §2.5).
    async fn has_space(
        &mut self,
        account: &Account,
        name: &str,
        size: u64,
    ) -> Result<Option<&'static str>, StoreError> {
        if size > self.server.settings.max_script_bytes as u64 {
            return Ok(Some("QUOTA/MAXSIZE"));
        }
        let list = self.server.store.sieve_list(account.id).await?;
        if !list.iter().any(|s| s.name == name) && list.len() >= self.server.settings.max_scripts {
            return Ok(Some("QUOTA/MAXSCRIPTS"));
        }
        Ok(None)
    }

    async fn authenticated(&mut self, account: &Account, command: Command) -> Next {
        let store = Arc::clone(&self.server.store);
        match command {
            Command::HaveSpace { name, size } => match self.has_space(account, &name, size).await {
                Ok(None) => self.ok("Putscript would succeed"),
                Ok(Some(code)) => self.no(Some(code), "Not enough space"),
                Err(e) => self.store_failed(&e),
            },
            Command::PutScript { name, script } => {
                match self.has_space(account, &name, script.len() as u64).await {
                    Ok(None) => {}
                    Ok(Some(code)) => {
                        self.no(Some(code), "Not enough space");
                        return Next::Continue;
                    }
                    Err(e) => {
                        self.store_failed(&e);
                        return Next::Continue;
                    }
                }
                if let Err(why) = Self::check(&script) {
                    tracing::info!(script = ?name, error = ?why, "script refused");
                    self.no(None, &why);
                    return Next::Continue;
                }
                let source = String::from_utf8_lossy(&script).into_owned();
                match store.sieve_put(account.id, &name, &source).await {
                    Ok(()) => self.ok("Putscript completed"),
                    Err(e) => self.store_failed(&e),
                }
            }
            Command::CheckScript { script } => match Self::check(&script) {
                Ok(()) => self.ok("Script is valid"),
                Err(why) => self.no(None, &why),
            },
            Command::ListScripts => match store.sieve_list(account.id).await {
                Ok(list) => {
                    for s in list {
                        self.io.out.extend_from_slice(proto::quoted(&s.name).as_bytes());
                        if s.active {
                            self.io.out.extend_from_slice(b" ACTIVE");
                        }
                        self.io.out.extend_from_slice(b"\r\n");
                    }
                    self.ok("Listscripts completed");
                }
                Err(e) => self.store_failed(&e),
            },
            Command::SetActive { name } => {
                let name = (!name.is_empty()).then_some(name);
                match store.sieve_activate(account.id, name.as_deref()).await {
                    Ok(()) => self.ok("Setactive completed"),
                    Err(e) => self.store_failed(&e),
                }
            }
            Command::GetScript { name } => match store.sieve_get(account.id, &name).await {
                Ok(Some(source)) => {
                    self.io.out.extend_from_slice(&proto::literal(source.as_bytes()));
                    self.io.out.extend_from_slice(b"\r\n");
                    self.ok("Getscript completed");
                }
                Ok(None) => self.no(Some("NONEXISTENT"), "There is no such script"),
                Err(e) => self.store_failed(&e),
            },
            Command::DeleteScript { name } => match store.sieve_delete(account.id, &name).await {
                Ok(()) => self.ok("Deletescript completed"),
                Err(e) => self.store_failed(&e),
            },
            Command::RenameScript { from, to } => match store.sieve_rename(account.id, &from, &to).await {
                Ok(()) => self.ok("Renamescript completed"),
                Err(e) => self.store_failed(&e),
            },
            Command::Unauthenticate => {
                self.state = State::NotAuthenticated;
                self.ok("Unauthenticate completed");
            }
            Command::StartTls | Command::Authenticate { .. } => self.no(None, "Already logged in"),
            Command::Capability | Command::Noop { .. } | Command::Logout => {}
        }
        Next::Continue
    }
}

/// ManageSieve's side of a SASL exchange: challenges as quoted base64 strings, responses as
/// strings (quoted or literal), `"*"` to cancel (RFC 5804 §2.1).
struct Challenges<'a, S>(&'a mut Session<S>);

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync + 'static> tern_sasl::Conversation
    for Challenges<'_, S>
{
    async fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, tern_sasl::Interrupted> {
        let session = &mut *self.0;
        session.io.out.extend_from_slice(proto::quoted(&tern_sasl::encode(data)).as_bytes());
        session.io.out.extend_from_slice(b"\r\n");
        loop {
            match proto::parse_sasl_line(&session.io.inbuf, 16 * 1024) {
                Parse::Done(response, n) => {
                    session.io.inbuf.drain(..n);
                    let Some(response) = response else { return Err(tern_sasl::Interrupted::Cancelled) };
                    let text = String::from_utf8_lossy(&response).trim().to_string();
                    if text == "*" {
                        return Err(tern_sasl::Interrupted::Cancelled);
                    }
                    return tern_sasl::decode(&text)
                        .ok_or_else(|| tern_sasl::Interrupted::Malformed("Invalid base64".into()));
                }
                Parse::Incomplete => {
                    if session.fill().await.is_none() {
                        return Err(tern_sasl::Interrupted::Lost);
                    }
                }
                Parse::Bad(why, n) => {
                    let n = n.min(session.io.inbuf.len());
                    session.io.inbuf.drain(..n);
                    return Err(tern_sasl::Interrupted::Malformed(why));
                }
                Parse::TooLarge(_) => return Err(tern_sasl::Interrupted::Malformed("Response too long".into())),
            }
        }
    }
}
