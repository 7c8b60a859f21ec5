//! One POP3 session: AUTHORIZATION → TRANSACTION → UPDATE (RFC 1939 §3).

use crate::proto::{self, Command, ParseError};
use crate::{LockGuard, Pop3Server};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tern_guard::{InputEnd, SessionIo};
use tern_store::{FlagMode, Flags, INBOX, MessageEntry};
use tern_tls::Stream;
use tokio::io::AsyncWriteExt;

/// Longest command line (RFC 2449 §4 allows 255 octets; AUTH initial responses can be
/// longer).
const MAX_LINE: usize = 2048;
const MAX_ERRORS: u32 = 50;
const FLUSH_AT: usize = 256 * 1024;

/// The snapshot of the INBOX a session works on.
struct Maildrop {
    mailbox: u64,
    uid_validity: u32,
    messages: Vec<MessageEntry>,
    deleted: Vec<bool>,
    retrieved: Vec<bool>,
    lock: LockGuard,
}

impl Maildrop {
    /// The message with this number, unless it does not exist or is marked deleted.
    fn get(&self, n: u32) -> Option<(usize, &MessageEntry)> {
        let i = (n as usize).checked_sub(1)?;
        let m = self.messages.get(i)?;
        (!self.deleted[i]).then_some((i, m))
    }

    /// RFC 1939 §7 unique-id: printable, at most 70 characters. Dovecot's default format
    /// (`%08Xu%08Xv`), so clients moving from Dovecot do not download everything again.
    fn uidl(&self, m: &MessageEntry) -> String {
        format!("{:08X}{:08X}", m.uid, self.uid_validity)
    }
}

enum Next {
    Continue,
    Close,
}

pub(crate) struct Session<S> {
    server: Arc<Pop3Server>,
    /// Before login the whole session has `login_timeout`; after it, the inactivity time
    /// between commands, and a command must keep arriving (see [`tern_guard::Deadlines`]).
    io: SessionIo<Stream<S>>,
    peer: SocketAddr,
    user: Option<String>,
    maildrop: Option<Maildrop>,
    errors: u32,
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync + 'static> Session<S> {
    pub(crate) fn new(server: Arc<Pop3Server>, conn: Stream<S>, peer: SocketAddr) -> Session<S> {
        let login = server.settings.login_timeout;
        let deadlines = tern_guard::Deadlines::new(login.min(server.settings.timeout), Some(login));
        let io = SessionIo::new(conn, deadlines, server.settings.timeout, server.shutdown.clone());
        Session { server, io, peer, user: None, maildrop: None, errors: 0 }
    }

    fn ok(&mut self, text: &str) {
        self.io.out.extend_from_slice(b"+OK ");
        self.io.out.extend_from_slice(text.as_bytes());
        self.io.out.extend_from_slice(b"\r\n");
    }

    fn err(&mut self, text: &str) {
        self.errors += 1;
        self.io.out.extend_from_slice(b"-ERR ");
        self.io.out.extend_from_slice(text.as_bytes());
        self.io.out.extend_from_slice(b"\r\n");
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        self.io.flush().await
    }

    fn may_login(&self) -> bool {
        self.io.conn.is_tls() || (self.server.settings.plaintext_on_loopback && tern_config::is_loopback(&self.peer))
    }

    /// The next line without its line ending; `None` when the session must end (said to
    /// the client when time ran out or the server stops).
    async fn next_line(&mut self) -> Option<Result<Vec<u8>, ()>> {
        match self.io.next_line(MAX_LINE).await {
            Ok(line) => Some(line.map_err(|_| ())),
            Err(end) => {
                match end {
                    InputEnd::Shutdown => self.err("[SYS/TEMP] Server shutting down"),
                    InputEnd::TimedOut => {
                        tracing::info!(logged_in = self.maildrop.is_some(), "timeout");
                        self.err("Autologout; idle for too long");
                    }
                    InputEnd::Closed => return None,
                }
                let _ = self.flush().await;
                None
            }
        }
    }

    pub(crate) async fn run(mut self) {
        let host = self.server.settings.hostname.clone();
        self.ok(&format!("{host} Tern POP3 ready"));
        loop {
            if self.errors >= MAX_ERRORS {
                self.err("Too many errors");
                break;
            }
            let Some(line) = self.next_line().await else { break };
            let Ok(line) = line else {
                self.err("Line too long");
                continue;
            };
            let command = match proto::parse(&line) {
                Ok(c) => c,
                Err(ParseError::Unknown(verb)) => {
                    self.err(&format!("Unknown command {}", verb.chars().take(20).collect::<String>()));
                    continue;
                }
                Err(ParseError::Syntax(why)) => {
                    self.err(why);
                    continue;
                }
            };
            let next = if self.maildrop.is_some() {
                self.transaction(command).await
            } else {
                self.authorization(command).await
            };
            if let Next::Close = next {
                break;
            }
            self.io.deadlines.command_done();
        }
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.io.conn.shutdown()).await;
    }

    fn capa(&mut self) {
        self.ok("Capability list follows");
        let mut caps =
            vec!["TOP", "UIDL", "RESP-CODES", "AUTH-RESP-CODE", "PIPELINING", "EXPIRE NEVER", "IMPLEMENTATION Tern"];
        if self.maildrop.is_none() {
            if self.may_login() {
                caps.push("USER");
            }
            if self.server.tls.is_some() && !self.io.conn.is_tls() {
                caps.push("STLS");
            }
        }
        let sasl = (self.maildrop.is_none() && self.may_login()).then(|| {
            let offered = tern_sasl::offered(self.io.conn.tls_exporter().is_some());
            format!("SASL {}", offered.iter().map(|m| m.name()).collect::<Vec<_>>().join(" "))
        });
        for c in caps.into_iter().chain(sasl.as_deref()) {
            self.io.out.extend_from_slice(c.as_bytes());
            self.io.out.extend_from_slice(b"\r\n");
        }
        self.io.out.extend_from_slice(b".\r\n");
    }

    async fn authorization(&mut self, command: Command) -> Next {
        match command {
            Command::Capa => self.capa(),
            Command::Quit => {
                self.ok("Bye");
                return Next::Close;
            }
            Command::Stls => return self.stls().await,
            Command::Apop => self.err("APOP is not supported; use USER/PASS or AUTH PLAIN"),
            Command::User(name) => {
                if !self.may_login() {
                    self.err("[AUTH] Plaintext authentication is not allowed without TLS; use STLS");
                } else {
                    self.user = Some(name);
                    self.ok("Send your password");
                }
            }
            Command::Pass(password) => match self.user.take() {
                None => self.err("Send USER first"),
                Some(user) => return self.login(&user, &password).await,
            },
            Command::Auth { mechanism, initial } => return self.auth(mechanism, initial).await,
            _ => self.err("Not allowed before login"),
        }
        Next::Continue
    }

    async fn stls(&mut self) -> Next {
        let Some(acceptor) = self.server.tls.clone() else {
            self.err("STLS is not available");
            return Next::Continue;
        };
        if self.io.conn.is_tls() {
            self.err("Already using TLS");
            return Next::Continue;
        }
        self.ok("Begin TLS negotiation");
        if self.flush().await.is_err() {
            return Next::Close;
        }
        // Plaintext pipelined behind STLS must not be read as commands inside TLS.
        if !self.io.inbuf.is_empty() {
            tracing::warn!(bytes = self.io.inbuf.len(), "discarding plaintext pipelined after STLS");
            self.io.inbuf.clear();
        }
        let Stream::Plain(plain) = std::mem::replace(&mut self.io.conn, Stream::Upgrading) else { return Next::Close };
        match tern_tls::handshake(&acceptor, plain, self.peer).await {
            Some(tls) => {
                self.io.conn = Stream::Tls(Box::new(tls));
                self.user = None;
                Next::Continue
            }
            None => Next::Close,
        }
    }

    /// AUTH (RFC 5034) with the mechanisms IMAP and submission offer.
    async fn auth(&mut self, mechanism: Option<String>, initial: Option<String>) -> Next {
        let binding = self.io.conn.tls_exporter();
        let Some(mechanism) = mechanism else {
            // The list of mechanisms (common practice, as in RFC 1734).
            self.ok("Mechanisms follow");
            for m in tern_sasl::offered(binding.is_some()) {
                self.io.out.extend_from_slice(m.name().as_bytes());
                self.io.out.extend_from_slice(b"\r\n");
            }
            self.io.out.extend_from_slice(b".\r\n");
            return Next::Continue;
        };
        let Some(mech) = tern_sasl::Mechanism::parse(&mechanism) else {
            self.err("Unsupported mechanism");
            return Next::Continue;
        };
        if !self.may_login() {
            self.err("[AUTH] Authentication is not allowed without TLS; use STLS");
            return Next::Continue;
        }
        if mech == tern_sasl::Mechanism::ScramSha256Plus && binding.is_none() {
            self.err("SCRAM-SHA-256-PLUS needs TLS 1.3");
            return Next::Continue;
        }
        // RFC 5034 §4: "=" is an empty initial response.
        let initial = match initial {
            None => None,
            Some(text) => match tern_sasl::decode(&text) {
                Some(bytes) => Some(bytes),
                None => {
                    self.err("Invalid base64");
                    return Next::Continue;
                }
            },
        };
        let ip = self.peer.ip();
        if let tern_guard::AuthVerdict::Banned(_) = self.server.auth.check(ip) {
            self.err("[SYS/TEMP] Too many failed logins, try later");
            return Next::Close;
        }
        let directory = self.server.directory.clone();
        match tern_sasl::authenticate(&mut Challenges(self), &directory, mech, initial, binding).await {
            tern_sasl::Outcome::Authenticated(account) => {
                self.server.auth.succeeded(ip);
                self.open_maildrop(account).await
            }
            tern_sasl::Outcome::Failed { user } => {
                self.login_failed(user.as_deref().unwrap_or("-")).await;
                Next::Continue
            }
            tern_sasl::Outcome::NotAuthorized { .. } => {
                self.err("[AUTH] Acting as another user is not allowed");
                Next::Continue
            }
            tern_sasl::Outcome::Cancelled => {
                // Counted as a failed login, like a wrong password.
                let delay = self.server.auth.failed(ip, "pop3");
                tracing::info!("authentication cancelled");
                tokio::time::sleep(delay).await;
                self.err("Authentication cancelled");
                Next::Continue
            }
            tern_sasl::Outcome::Malformed(m) => {
                self.err(&m);
                Next::Continue
            }
            tern_sasl::Outcome::Unavailable(e) => {
                tracing::error!(error = %e, "authentication error");
                self.err("[SYS/TEMP] Temporary failure, try later");
                Next::Continue
            }
            tern_sasl::Outcome::Lost => Next::Close,
        }
    }

    /// A wrong password: counted against the address, answered after the guard's delay.
    async fn login_failed(&mut self, user: &str) {
        let delay = self.server.auth.failed(self.peer.ip(), "pop3");
        tracing::info!(user = ?user, "POP3 login failed");
        tokio::time::sleep(delay).await;
        self.err("[AUTH] Authentication failed");
    }

    async fn login(&mut self, user: &str, password: &str) -> Next {
        let ip = self.peer.ip();
        if let tern_guard::AuthVerdict::Banned(_) = self.server.auth.check(ip) {
            self.err("[SYS/TEMP] Too many failed logins, try later");
            return Next::Close;
        }
        let account = match self.server.directory.authenticate(user, password).await {
            Ok(Some(a)) => a,
            Ok(None) => {
                self.login_failed(user).await;
                return Next::Continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "authentication error");
                self.err("[SYS/TEMP] Temporary failure, try later");
                return Next::Continue;
            }
        };
        self.server.auth.succeeded(ip);
        self.open_maildrop(account).await
    }

    /// The TRANSACTION state (RFC 1939 §5): the INBOX locked and listed.
    async fn open_maildrop(&mut self, account: tern_store::Account) -> Next {
        let store = &self.server.store;
        let inbox = match store.mailbox_by_name(account.id, INBOX).await {
            Ok(Some(m)) => m,
            Ok(None) => {
                self.err("[SYS/PERM] This account has no INBOX");
                return Next::Continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot open INBOX");
                self.err("[SYS/TEMP] Temporary failure, try later");
                return Next::Continue;
            }
        };
        // Held against every node's sessions for twice the inactivity timeout, renewed as
        // commands come.
        let seconds = self.server.settings.timeout.as_secs().saturating_mul(2).max(60);
        let lock = match self.server.locks.try_lock(store, inbox.id, seconds).await {
            Ok(Some(lock)) => lock,
            Ok(None) => {
                self.err("[IN-USE] Another POP3 session has this mailbox open");
                return Next::Continue;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot lock INBOX");
                self.err("[SYS/TEMP] Temporary failure, try later");
                return Next::Continue;
            }
        };
        let messages = match store.message_list(inbox.id).await {
            Ok(m) => m,
            Err(e) => {
                tracing::error!(error = %e, "cannot list INBOX");
                self.err("[SYS/TEMP] Temporary failure, try later");
                return Next::Continue;
            }
        };
        let n = messages.len();
        tracing::info!(user = %account.address, messages = n, tls = self.io.conn.is_tls(), "POP3 login");
        self.io.deadlines.set_session_limit(None);
        self.io.deadlines.set_idle(self.server.settings.timeout);
        self.maildrop = Some(Maildrop {
            mailbox: inbox.id,
            uid_validity: inbox.uid_validity,
            deleted: vec![false; n],
            retrieved: vec![false; n],
            messages,
            lock,
        });
        self.ok(&format!("Logged in, {n} messages"));
        Next::Continue
    }

    async fn transaction(&mut self, command: Command) -> Next {
        let Some(drop) = self.maildrop.as_mut() else { return Next::Close };
        drop.lock.keep().await;
        match command {
            Command::Capa => self.capa(),
            Command::Noop => self.ok(""),
            Command::Stat => {
                let (count, size) = drop
                    .messages
                    .iter()
                    .zip(&drop.deleted)
                    .filter(|(_, d)| !**d)
                    .fold((0u64, 0u64), |(c, s), (m, _)| (c + 1, s + m.size));
                self.ok(&format!("{count} {size}"));
            }
            Command::List(Some(n)) => match drop.get(n).map(|(_, m)| m.size) {
                Some(size) => self.ok(&format!("{n} {size}")),
                None => self.err("No such message"),
            },
            Command::List(None) => {
                let mut body = String::new();
                let mut count = 0;
                for (i, m) in drop.messages.iter().enumerate() {
                    if !drop.deleted[i] {
                        body.push_str(&format!("{} {}\r\n", i + 1, m.size));
                        count += 1;
                    }
                }
                self.ok(&format!("{count} messages"));
                self.io.out.extend_from_slice(body.as_bytes());
                self.io.out.extend_from_slice(b".\r\n");
            }
            Command::Uidl(Some(n)) => match drop.get(n).map(|(_, m)| drop.uidl(m)) {
                Some(uidl) => self.ok(&format!("{n} {uidl}")),
                None => self.err("No such message"),
            },
            Command::Uidl(None) => {
                let mut body = String::new();
                for (i, m) in drop.messages.iter().enumerate() {
                    if !drop.deleted[i] {
                        body.push_str(&format!("{} {}\r\n", i + 1, drop.uidl(m)));
                    }
                }
                self.ok("Unique-ID listing follows");
                self.io.out.extend_from_slice(body.as_bytes());
                self.io.out.extend_from_slice(b".\r\n");
            }
            Command::Dele(n) => match drop.get(n).map(|(i, _)| i) {
                Some(i) => {
                    drop.deleted[i] = true;
                    self.ok(&format!("Message {n} deleted"));
                }
                None => self.err("No such message"),
            },
            Command::Rset => {
                drop.deleted.iter_mut().for_each(|d| *d = false);
                self.ok("Deletions undone");
            }
            Command::Retr(n) | Command::Top(n, _) => {
                let top = if let Command::Top(_, lines) = command { Some(lines) } else { None };
                let Some((i, entry)) = drop.get(n).map(|(i, m)| (i, m.clone())) else {
                    self.err("No such message");
                    return Next::Continue;
                };
                match self.server.store.blob_get(entry.blob).await {
                    Ok(Some(raw)) => {
                        match top {
                            None => {
                                if let Some(d) = self.maildrop.as_mut() {
                                    d.retrieved[i] = true;
                                }
                                self.ok(&format!("{} octets", raw.len()));
                                proto::dot_stuff(&mut self.io.out, &raw);
                            }
                            Some(lines) => {
                                self.ok("Top of message follows");
                                proto::dot_stuff(&mut self.io.out, proto::top(&raw, lines));
                            }
                        }
                        metrics::counter!("tern_pop3_retrieved_total").increment(1);
                        if self.io.out.len() > FLUSH_AT && self.flush().await.is_err() {
                            return Next::Close;
                        }
                    }
                    Ok(None) => self.err("[SYS/TEMP] The message was removed meanwhile"),
                    Err(e) => {
                        tracing::error!(error = %e, "cannot read a message");
                        self.err("[SYS/TEMP] Temporary failure");
                    }
                }
            }
            Command::Quit => {
                self.update().await;
                return Next::Close;
            }
            Command::User(_) | Command::Pass(_) | Command::Auth { .. } | Command::Apop | Command::Stls => {
                self.err("Already logged in")
            }
        }
        Next::Continue
    }

    /// The UPDATE state (RFC 1939 §6): retrieved messages become \Seen, deleted ones are
    /// expunged in one durable operation, then +OK.
    async fn update(&mut self) {
        let Some(mut drop) = self.maildrop.take() else { return };
        self.update_maildrop(&drop).await;
        // Before the answer goes: once the client has it, any node may open the maildrop.
        drop.lock.release().await;
    }

    async fn update_maildrop(&mut self, drop: &Maildrop) {
        let store = &self.server.store;
        let seen: Vec<u32> = drop
            .messages
            .iter()
            .enumerate()
            .filter(|(i, m)| drop.retrieved[*i] && !drop.deleted[*i] && !m.flags.contains(Flags::SEEN))
            .map(|(_, m)| m.uid)
            .collect();
        let deleted: Vec<u32> =
            drop.messages.iter().enumerate().filter(|(i, _)| drop.deleted[*i]).map(|(_, m)| m.uid).collect();
        if !seen.is_empty()
            && let Err(e) = store.set_flags(drop.mailbox, seen, FlagMode::Add, Flags::SEEN, vec![], None).await
        {
            tracing::warn!(error = %e, "cannot mark retrieved messages seen");
        }
        if deleted.is_empty() {
            self.ok("Bye");
            return;
        }
        match store.expunge(drop.mailbox, deleted.clone()).await {
            Ok(removed) => {
                tracing::info!(deleted = removed.len(), "POP3 update");
                self.ok(&format!("Bye, {} messages deleted", deleted.len()));
            }
            Err(e) => {
                tracing::error!(error = %e, "POP3 update failed; nothing deleted");
                self.err("[SYS/TEMP] Could not delete the messages; they are still there");
            }
        }
    }
}

/// POP3's side of a SASL exchange: `+ ` continuations (RFC 5034 §4).
struct Challenges<'a, S>(&'a mut Session<S>);

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync + 'static> tern_sasl::Conversation
    for Challenges<'_, S>
{
    async fn challenge(&mut self, data: &[u8]) -> Result<Vec<u8>, tern_sasl::Interrupted> {
        let session = &mut *self.0;
        session.io.out.extend_from_slice(b"+ ");
        session.io.out.extend_from_slice(tern_sasl::encode(data).as_bytes());
        session.io.out.extend_from_slice(b"\r\n");
        let line = match session.next_line().await {
            Some(Ok(line)) => line,
            Some(Err(())) => return Err(tern_sasl::Interrupted::Malformed("Line too long".into())),
            None => return Err(tern_sasl::Interrupted::Lost),
        };
        let text = String::from_utf8_lossy(&line).trim().to_string();
        if text == "*" {
            return Err(tern_sasl::Interrupted::Cancelled);
        }
        tern_sasl::decode(&text).ok_or_else(|| tern_sasl::Interrupted::Malformed("Invalid base64".into()))
    }
}
