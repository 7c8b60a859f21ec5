//! One SMTP session: an explicit state machine over a (possibly upgraded) stream.
//!
//! The session's [`State`] follows RFC 5321 §4.1.4: connected, greeted, in a transaction
//! collecting recipients, receiving BDAT chunks; DATA is read to its end by its handler.
//! Replies are buffered and written when the session is about to wait for input, which gives
//! PIPELINING (RFC 2920) its batching for free.

use crate::SmtpServer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tern_directory::Resolution;
use tern_pipeline::{MessageContext, Outcome, Recipient, SessionInfo, TlsInfo};
use tern_smtp_proto::{
    Body, Command, DataDecoder, DataOutcome, ForwardPath, LineBuffer, LineEndingCheck, LineEvent, MailFrom, Mailbox,
    RcptTo, Reply, parse_command,
};
use tern_store::{Flags, MailboxSelector};
use tern_tls::Stream;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Read buffer per session. Small, so that thousands of idle sessions stay cheap.
const READ_CHUNK: usize = 16 * 1024;

/// What the main loop should do after a command.
#[derive(PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

/// Why reading stopped.
enum ReadEnd {
    Eof,
    Timeout(tern_guard::Expired),
    Shutdown,
    Error(std::io::Error),
}

/// Where an SMTP session stands. Each command's handler matches on it, so a command can
/// only act in the states that allow it; EHLO/HELO, RSET, STARTTLS and the end of a message
/// move between them.
#[expect(clippy::large_enum_variant, reason = "one per session, in place; boxing would cost an allocation per mail")]
pub(crate) enum State {
    /// Connected, or just upgraded to TLS (RFC 3207 §4.2): EHLO or HELO comes first.
    Connected,
    /// Greeted; no mail transaction. MAIL, AUTH and STARTTLS may come.
    Greeted(Greeting),
    /// MAIL accepted: recipients come, then the message by DATA or the first BDAT.
    Transaction(Greeting, Transaction),
    /// BDAT chunks arriving (RFC 3030): only more BDAT (or RSET) until the LAST one.
    Chunking(Greeting, Transaction, Chunked),
}

/// What the client said in EHLO or HELO.
#[derive(Clone)]
pub(crate) struct Greeting {
    name: String,
    /// EHLO (extensions may be used) rather than HELO.
    esmtp: bool,
}

pub(crate) struct Transaction {
    mail: MailFrom,
    recipients: Vec<Recipient>,
}

/// Message data arriving in BDAT chunks.
pub(crate) struct Chunked {
    data: tern_guard::Incoming,
    size: u64,
    check: LineEndingCheck,
}

/// How long a message spooled to disk may wait for memory after its end arrived (RFC 5321
/// §4.5.3.2.6 gives the client 10 minutes for the reply).
const SPOOL_WAIT: Duration = Duration::from_secs(300);

pub(crate) struct Session<S> {
    pub(crate) server: Arc<SmtpServer>,
    pub(crate) conn: Stream<S>,
    lines: LineBuffer,
    out: Vec<u8>,
    scratch: Vec<u8>,
    pub(crate) peer: SocketAddr,
    id: String,
    pub(crate) state: State,
    errors: u32,
    tls: Option<TlsInfo>,
    /// The user after a successful AUTH (submission).
    pub(crate) authenticated: Option<tern_store::Account>,
    /// DNS blocklists that list the client (when they only tag).
    pub(crate) dnsbl: Vec<String>,
    /// Banned for harvesting during this session: close after the reply.
    harvester: bool,
    /// When the next read must be done (see [`tern_guard::Deadlines`]).
    deadlines: tern_guard::Deadlines,
}

pub(crate) fn reply(code: u16, enhanced: (u8, u16, u16), text: impl Into<String>) -> Reply {
    Reply::new(code, enhanced, text)
}

impl<S: AsyncRead + AsyncWrite + Unpin + Send + Sync + 'static> Session<S> {
    pub(crate) fn new(server: Arc<SmtpServer>, conn: Stream<S>, peer: SocketAddr, id: String) -> Session<S> {
        let max_line = server.settings.max_line_length;
        let tls = conn.tls_info().map(|(version, cipher)| TlsInfo { version, cipher });
        let deadlines = tern_guard::Deadlines::new(server.settings.timeout, Some(server.settings.session_max));
        Session {
            deadlines,
            server,
            conn,
            lines: LineBuffer::new(max_line),
            out: Vec::with_capacity(512),
            scratch: vec![0; READ_CHUNK],
            peer,
            id,
            state: State::Connected,
            errors: 0,
            tls,
            authenticated: None,
            dnsbl: Vec::new(),
            harvester: false,
        }
    }

    pub(crate) fn send(&mut self, r: Reply) {
        if r.code >= 400 && r.code != 421 {
            self.errors += 1;
            tracing::debug!(reply = %r, "refused");
        }
        r.write_to(&mut self.out);
    }

    /// Whether a mail transaction is open (shutdown waits for it to end).
    fn in_transaction(&self) -> bool {
        matches!(self.state, State::Transaction(..) | State::Chunking(..))
    }

    /// Ends the transaction, if one is open, keeping the greeting.
    fn end_transaction(&mut self) {
        self.state = match std::mem::replace(&mut self.state, State::Connected) {
            State::Transaction(greeting, _) | State::Chunking(greeting, _, _) => State::Greeted(greeting),
            other => other,
        };
    }

    async fn flush(&mut self) -> std::io::Result<()> {
        if !self.out.is_empty() {
            let result = tokio::time::timeout(self.server.settings.timeout, self.conn.write_all(&self.out)).await;
            self.out.clear();
            match result {
                Ok(r) => r?,
                Err(_) => return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout")),
            }
            self.conn.flush().await?;
        }
        Ok(())
    }

    /// Flushes pending replies, then reads once into the scratch buffer.
    async fn read_some(&mut self, allow_shutdown: bool) -> Result<usize, ReadEnd> {
        self.flush().await.map_err(ReadEnd::Error)?;
        let shutdown = self.server.shutdown.clone();
        let read = self.deadlines.read(self.conn.read(&mut self.scratch));
        let result = if allow_shutdown {
            tokio::select! {
                r = read => r,
                _ = shutdown.cancelled() => return Err(ReadEnd::Shutdown),
            }
        } else {
            read.await
        };
        match result {
            Err(which) => Err(ReadEnd::Timeout(which)),
            Ok(Ok(0)) => Err(ReadEnd::Eof),
            Ok(Ok(n)) => {
                self.deadlines.received(n);
                metrics::counter!("tern_smtp_bytes_received_total", "service" => self.server.settings.service)
                    .increment(n as u64);
                Ok(n)
            }
            Ok(Err(e)) => Err(ReadEnd::Error(e)),
        }
    }

    /// The next command line (for SASL exchanges); `None` when the connection ended.
    pub(crate) async fn read_line(&mut self) -> Option<Vec<u8>> {
        loop {
            match self.lines.next_line() {
                Some(LineEvent::Line(line)) => return Some(line),
                Some(LineEvent::TooLong) => return Some(Vec::new()),
                None => match self.read_some(false).await {
                    Ok(n) => self.lines.extend(&self.scratch[..n]),
                    Err(end) => {
                        self.farewell(&end);
                        return None;
                    }
                },
            }
        }
    }

    /// Tells the client why the session ends (where it can still listen).
    fn farewell(&mut self, end: &ReadEnd) {
        let host = self.server.settings.hostname.clone();
        match end {
            ReadEnd::Timeout(tern_guard::Expired::Idle) => {
                tracing::info!("timeout: no command, or data too slow");
                self.send(reply(421, (4, 4, 2), format!("{host} Error: timeout exceeded")));
            }
            ReadEnd::Timeout(tern_guard::Expired::Session) => {
                tracing::info!("session too long");
                self.send(reply(421, (4, 4, 2), format!("{host} Error: session lasted too long")));
            }
            ReadEnd::Shutdown => {
                self.send(reply(421, (4, 3, 2), format!("{host} Service shutting down, try again later")))
            }
            ReadEnd::Eof => tracing::debug!("client closed the connection"),
            ReadEnd::Error(e) => tracing::debug!(error = %e, "connection error"),
        }
    }

    pub(crate) async fn run(mut self) {
        tracing::debug!("connected");
        let host = self.server.settings.hostname.clone();
        self.send(Reply::plain(220, vec![format!("{host} ESMTP Tern")]));
        loop {
            if self.errors >= self.server.settings.max_errors {
                tracing::info!(errors = self.errors, "too many errors; closing");
                self.send(reply(421, (4, 7, 0), format!("{host} Error: too many errors")));
                break;
            }
            let event = match self.lines.next_line() {
                Some(event) => event,
                None => match self.read_some(!self.in_transaction()).await {
                    Ok(n) => {
                        self.lines.extend(&self.scratch[..n]);
                        continue;
                    }
                    Err(end) => {
                        self.farewell(&end);
                        break;
                    }
                },
            };
            let flow = match event {
                LineEvent::TooLong => {
                    self.send(reply(500, (5, 5, 2), "Line too long"));
                    Flow::Continue
                }
                LineEvent::Line(line) => self.command(&line).await,
            };
            self.deadlines.command_done();
            if flow == Flow::Close {
                break;
            }
            if self.server.shutdown.is_cancelled() && !self.in_transaction() {
                self.send(reply(421, (4, 3, 2), format!("{host} Service shutting down, try again later")));
                break;
            }
        }
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.shutdown()).await;
        tracing::debug!("disconnected");
    }

    async fn command(&mut self, line: &[u8]) -> Flow {
        let command = match parse_command(line) {
            Ok(c) => c,
            Err(e) => {
                self.send(e.reply());
                return Flow::Continue;
            }
        };
        match command {
            Command::Ehlo(name) | Command::Helo(name) if !valid_helo(&name) => {
                self.send(reply(501, (5, 5, 4), "Invalid domain name"));
            }
            // RFC 5321 §4.1.4: EHLO or HELO anywhere resets the session to greeted.
            Command::Ehlo(name) => {
                self.state = State::Greeted(Greeting { name, esmtp: true });
                let ehlo = self.ehlo_lines();
                self.send(Reply::plain(250, ehlo));
            }
            Command::Helo(name) => {
                self.state = State::Greeted(Greeting { name, esmtp: false });
                let host = self.server.settings.hostname.clone();
                self.send(Reply::plain(250, vec![host]));
            }
            Command::Mail(mail) => self.mail(mail).await,
            Command::Rcpt(rcpt) => {
                self.rcpt(rcpt).await;
                if self.harvester {
                    return Flow::Close;
                }
            }
            Command::Data => return self.data().await,
            Command::Bdat { size, last } => return self.bdat(size, last).await,
            Command::Rset => {
                self.end_transaction();
                self.send(reply(250, (2, 0, 0), "Ok"));
            }
            Command::Noop => self.send(reply(250, (2, 0, 0), "Ok")),
            Command::Quit => {
                self.send(reply(221, (2, 0, 0), "Bye"));
                return Flow::Close;
            }
            Command::Help => self.send(reply(
                214,
                (2, 0, 0),
                "Commands: EHLO HELO MAIL RCPT DATA BDAT RSET NOOP QUIT VRFY STARTTLS (see RFC 5321)",
            )),
            // RFC 5321 §3.5.3: 252 when we will not verify but will accept.
            Command::Vrfy(_) => {
                self.send(reply(252, (2, 5, 2), "Cannot VRFY user, but will accept message and attempt delivery"))
            }
            Command::Expn(_) => self.send(reply(502, (5, 5, 1), "EXPN not available")),
            Command::StartTls => return self.starttls().await,
            Command::Auth { mechanism, initial } => return self.auth(&mechanism, initial).await,
        }
        Flow::Continue
    }

    fn ehlo_lines(&self) -> Vec<String> {
        let s = &self.server.settings;
        let mut lines = vec![
            s.hostname.clone(),
            "PIPELINING".into(),
            format!("SIZE {}", s.max_message_size),
            "8BITMIME".into(),
            "SMTPUTF8".into(),
            "ENHANCEDSTATUSCODES".into(),
        ];
        if self.server.tls.is_some() && !self.conn.is_tls() {
            lines.push("STARTTLS".into());
        }
        let mechanisms = self.auth_mechanisms();
        if !mechanisms.is_empty() {
            lines.push(format!("AUTH {}", mechanisms.join(" ")));
        }
        // RFC 8689 §4: offered only inside TLS.
        if self.conn.is_tls() {
            lines.push("REQUIRETLS".into());
        }
        lines.push("CHUNKING".into());
        lines.push("DSN".into());
        lines
    }

    async fn mail(&mut self, mail: MailFrom) {
        let esmtp = match &self.state {
            State::Connected => return self.send(reply(503, (5, 5, 1), "Send EHLO/HELO first")),
            State::Transaction(..) | State::Chunking(..) => {
                return self.send(reply(503, (5, 5, 1), "Nested MAIL command"));
            }
            State::Greeted(greeting) => greeting.esmtp,
        };
        if self.server.settings.submission && self.authenticated.is_none() {
            return self.send(reply(530, (5, 7, 0), "Authentication required"));
        }
        if let Some(size) = mail.size
            && size > self.server.settings.max_message_size
        {
            return self.send(reply(552, (5, 3, 4), "Message size exceeds fixed maximum message size"));
        }
        if mail.body == Some(Body::BinaryMime) {
            return self.send(reply(555, (5, 5, 4), "BODY=BINARYMIME is not supported"));
        }
        if !mail.smtputf8 && mail.sender.as_ref().is_some_and(Mailbox::is_utf8) {
            // RFC 6531 §3.5
            return self.send(reply(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8"));
        }
        if !esmtp
            && (mail.size.is_some()
                || mail.body.is_some()
                || mail.smtputf8
                || mail.ret.is_some()
                || mail.envid.is_some()
                || mail.requiretls)
        {
            return self.send(reply(555, (5, 5, 4), "Parameters require EHLO"));
        }
        if let Some(checks) = self.server.inbound.clone()
            && checks.applies(self.peer.ip())
        {
            let domain = mail.sender.as_ref().map(|m| m.domain.clone());
            if let Some(r) = checks.at_mail(self.peer.ip(), domain.as_deref()) {
                return self.send(r);
            }
        }
        if mail.requiretls && !self.conn.is_tls() {
            // RFC 8689 §4.1
            return self.send(reply(530, (5, 7, 10), "REQUIRETLS needs a TLS session"));
        }
        if self.server.settings.submission
            && let Some(account) = self.authenticated.clone()
        {
            let owned = match &mail.sender {
                None => Ok(false),
                Some(m) => self.server.directory.may_send_as(&account, &format!("{}@{}", m.local, m.domain)).await,
            };
            match owned {
                Ok(true) => {}
                Ok(false) => {
                    let sender = mail.sender.as_ref().map(|m| m.to_path_string()).unwrap_or_default();
                    tracing::info!(user = %account.address, sender, "envelope sender not owned by the user");
                    return self.send(reply(
                        553,
                        (5, 7, 1),
                        format!("Sender address rejected: <{sender}> not owned by {}", account.address),
                    ));
                }
                Err(e) => {
                    tracing::error!(error = %e, "sender lookup failed");
                    return self.send(reply(451, (4, 3, 0), "Temporary lookup failure, try again later"));
                }
            }
        }
        if let State::Greeted(greeting) = std::mem::replace(&mut self.state, State::Connected) {
            self.state = State::Transaction(greeting, Transaction { mail, recipients: Vec::new() });
        }
        self.send(reply(250, (2, 1, 0), "Ok"));
    }

    async fn rcpt(&mut self, rcpt: RcptTo) {
        let tx = match &self.state {
            State::Transaction(_, tx) => tx,
            State::Chunking(..) => return self.send(reply(503, (5, 5, 1), "RCPT not allowed during BDAT")),
            State::Connected | State::Greeted(_) => return self.send(reply(503, (5, 5, 1), "Need MAIL command")),
        };
        let declared = tx.mail.size.unwrap_or(0);
        if tx.recipients.len() >= self.server.settings.max_recipients {
            return self.send(reply(452, (4, 5, 3), "Too many recipients"));
        }
        let smtputf8 = tx.mail.smtputf8;
        let resolution = match &rcpt.recipient {
            ForwardPath::Postmaster => self.resolve_postmaster().await.map(|r| ("postmaster".to_string(), r)),
            ForwardPath::Mailbox(m) => {
                if !smtputf8 && m.is_utf8() {
                    return self.send(reply(553, (5, 6, 7), "Non-ASCII address requires SMTPUTF8"));
                }
                // No routing through us: address literals, and the %-hack, bang paths or an
                // @ inside a quoted local part (all old ways to ask for relaying) are refused
                // before any lookup.
                if m.domain_literal || m.local.contains(['%', '!', '@']) {
                    tracing::info!(rcpt = ?m.to_string(), "relay attempt refused");
                    metrics::counter!("tern_smtp_recipients_refused_total", "reason" => "relay").increment(1);
                    return self.send(reply(554, (5, 7, 1), "Relay access denied"));
                }
                let address = format!("{}@{}", m.local, m.domain);
                match self.server.directory.resolve(&address).await {
                    // RFC 5321 §4.5.1: postmaster at our host name, or at one of our domains
                    // that has none of its own, reaches the postmaster.
                    Ok(Resolution::NotLocal | Resolution::Unknown)
                        if m.local.eq_ignore_ascii_case("postmaster")
                            && (m.domain.eq_ignore_ascii_case(&self.server.settings.hostname)
                                || self.server.directory.is_local_domain(&m.domain).await.unwrap_or(false)) =>
                    {
                        self.resolve_postmaster().await.map(|r| (address, r))
                    }
                    other => other.map(|r| (address, r)),
                }
            }
        };
        let (address, resolution) = match resolution {
            Ok(r) => r,
            Err(e) => {
                tracing::error!(error = %e, "recipient lookup failed");
                return self.send(reply(451, (4, 3, 0), "Temporary lookup failure, try again later"));
            }
        };
        let submission = self.server.settings.submission;
        let (accounts, remote) = match resolution {
            // Submission relays for its authenticated users.
            Resolution::NotLocal if submission => (Vec::new(), vec![address.clone()]),
            Resolution::NotLocal => {
                tracing::info!(rcpt = ?address, "relay attempt refused");
                metrics::counter!("tern_smtp_recipients_refused_total", "reason" => "relay").increment(1);
                return self.send(reply(554, (5, 7, 1), "Relay access denied"));
            }
            Resolution::Unknown => {
                tracing::info!(rcpt = ?address, "unknown recipient");
                metrics::counter!("tern_smtp_recipients_refused_total", "reason" => "unknown").increment(1);
                if let Some(checks) = self.server.inbound.clone()
                    && checks.applies(self.peer.ip())
                    && checks.unknown_recipient(self.peer.ip())
                {
                    // Directory harvesting: the address is banned; this session ends.
                    self.harvester = true;
                    let host = self.server.settings.hostname.clone();
                    return self.send(reply(421, (4, 7, 0), format!("{host} Too many unknown recipients; closing")));
                }
                return self.send(reply(550, (5, 1, 1), "Recipient address rejected: User unknown"));
            }
            // Aliases may forward elsewhere: those copies go to the queue.
            Resolution::Deliver { accounts, external } => (accounts, external),
        };
        // RFC 3463 4.2.2: a mailbox that is full now (or cannot take the declared SIZE) is
        // refused for now, before any data; one that fills up later is refused at the end of
        // DATA (552 5.2.2).
        if remote.is_empty() && !accounts.is_empty() {
            let mut full = 0;
            for &account in &accounts {
                match self.server.directory.quota_of(account).await {
                    Ok(Some(q)) if q.used >= q.limit || !q.fits(declared) => full += 1,
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(error = %e, "quota lookup failed");
                        return self.send(reply(451, (4, 3, 0), "Temporary lookup failure, try again later"));
                    }
                }
            }
            if full == accounts.len() {
                tracing::info!(rcpt = ?address, "mailbox full");
                metrics::counter!("tern_smtp_recipients_refused_total", "reason" => "quota").increment(1);
                return self.send(reply(452, (4, 2, 2), "Mailbox full, try again later"));
            }
        }
        if let Some(checks) = self.server.inbound.clone()
            && checks.applies(self.peer.ip())
        {
            // Built only where greylisting may look at it, not for every RCPT.
            let sender = match &self.state {
                State::Transaction(_, tx) => tx.mail.sender.as_ref().map(|m| m.to_path_string()).unwrap_or_default(),
                _ => String::new(),
            };
            if let Some(r) = checks.greylist(self.peer.ip(), &sender, &address) {
                tracing::info!(rcpt = ?address, sender = ?sender, "greylisted");
                return self.send(r);
            }
        }
        // `user+name@`: into mailbox `name` if its owner lets anyone post there (RFC 4314 `p`).
        let mailbox = match self.server.directory.detail_of(&address) {
            Some(tag) if !accounts.is_empty() => MailboxSelector::Posted(tag),
            _ => MailboxSelector::Inbox,
        };
        if let State::Transaction(_, tx) = &mut self.state {
            tx.recipients.push(Recipient {
                address,
                orcpt: rcpt.orcpt,
                notify: rcpt.notify,
                accounts: accounts.iter().map(|a| a.id).collect(),
                remote,
                mailbox,
                flags: Flags::default(),
                keywords: vec![],
                filed: Vec::new(),
                forward_sender: None,
            });
        }
        self.send(reply(250, (2, 1, 5), "Ok"));
    }

    /// `<Postmaster>` must always be accepted (RFC 5321 §4.5.1): postmaster at our host name,
    /// else at any of our domains.
    async fn resolve_postmaster(&self) -> Result<Resolution, tern_directory::DirectoryError> {
        let d = &self.server.directory;
        let first = d.resolve(&format!("postmaster@{}", self.server.settings.hostname)).await?;
        if matches!(first, Resolution::Deliver { .. }) {
            return Ok(first);
        }
        for domain in d.domain_list().await? {
            let r = d.resolve(&format!("postmaster@{}", domain.name)).await?;
            if matches!(r, Resolution::Deliver { .. }) {
                return Ok(r);
            }
        }
        Ok(Resolution::Unknown)
    }

    /// Why the session cannot take message data (DATA, or BDAT when `bdat`) now, if it cannot.
    fn data_refusal(&self, bdat: bool) -> Option<Reply> {
        match &self.state {
            State::Connected | State::Greeted(_) => Some(reply(503, (5, 5, 1), "Need MAIL command")),
            State::Transaction(_, tx) if tx.recipients.is_empty() => Some(reply(554, (5, 5, 1), "No valid recipients")),
            State::Transaction(..) => None,
            State::Chunking(..) if bdat => None,
            State::Chunking(..) => Some(reply(503, (5, 5, 1), "DATA not allowed after BDAT")),
        }
    }

    async fn data(&mut self) -> Flow {
        if let Some(r) = self.data_refusal(false) {
            self.send(r);
            return Flow::Continue;
        }
        self.send(Reply::plain(354, vec!["End data with <CR><LF>.<CR><LF>".into()]));
        let limit = self.server.settings.max_message_size.min(usize::MAX as u64) as usize;
        let mut decoder = DataDecoder::new(limit);
        let mut data = tern_guard::Incoming::new(&self.server.memory);
        // Data may already be buffered (pipelined right behind DATA by a careless client).
        let used = decoder.feed(self.lines.buffered());
        self.lines.consume(used);
        data.push(&decoder.take_stored()).await;
        while !decoder.is_done() {
            match self.read_some(false).await {
                Ok(n) => {
                    let used = decoder.feed(&self.scratch[..n]);
                    self.lines.extend(&self.scratch[used..n]);
                    data.push(&decoder.take_stored()).await;
                }
                Err(end) => {
                    tracing::info!("connection lost during DATA; nothing was accepted");
                    self.farewell(&end);
                    return Flow::Close;
                }
            }
        }
        let r = match decoder.finish() {
            DataOutcome::Message(rest) => {
                data.push(&rest).await;
                drop(rest);
                match data.finish(tokio::time::Instant::now() + SPOOL_WAIT).await {
                    // The reservation covers the message until it is committed.
                    Ok((raw, _reservation)) => self.finish_message(raw).await,
                    Err(e) => {
                        tracing::warn!(error = %e, "message data could not be kept");
                        self.refused("memory", 0);
                        reply(452, (4, 3, 1), "Insufficient system storage, try again later")
                    }
                }
            }
            DataOutcome::TooLarge { size } => {
                self.refused("size", size);
                reply(552, (5, 3, 4), "Message size exceeds fixed maximum message size")
            }
            DataOutcome::BareLineEnding => {
                self.refused("bare_line_ending", 0);
                reply(554, (5, 6, 0), "Message refused: bare CR or LF in message data (RFC 5321 §2.3.8); use CRLF")
            }
        };
        self.end_transaction();
        self.send(r);
        Flow::Continue
    }

    fn refused(&mut self, reason: &'static str, size: u64) {
        tracing::info!(reason, size, "message refused");
        metrics::counter!("tern_smtp_messages_refused_total", "service" => self.server.settings.service, "reason" => reason)
            .increment(1);
        self.end_transaction();
    }

    async fn bdat(&mut self, size: u64, last: bool) -> Flow {
        let precheck = self.data_refusal(true);
        let max = self.server.settings.max_message_size;
        if precheck.is_none() {
            self.state = match std::mem::replace(&mut self.state, State::Connected) {
                State::Transaction(greeting, tx) => {
                    let data = tern_guard::Incoming::new(&self.server.memory);
                    State::Chunking(greeting, tx, Chunked { data, size: 0, check: LineEndingCheck::default() })
                }
                other => other,
            };
        }
        let accepting = precheck.is_none();
        // The chunk follows the command whatever we answer: read it (RFC 3030 §4.2) so that
        // its bytes can never be taken for commands. Buffered bytes come first.
        let mut remaining = size;
        let take = remaining.min(self.lines.buffered().len() as u64) as usize;
        if take > 0 {
            if accepting && let State::Chunking(_, _, chunk) = &mut self.state {
                store_chunk(chunk, &self.lines.buffered()[..take], max).await;
            }
            self.lines.consume(take);
            remaining -= take as u64;
        }
        while remaining > 0 {
            match self.read_some(false).await {
                Ok(n) => {
                    let take = remaining.min(n as u64) as usize;
                    if accepting && let State::Chunking(_, _, chunk) = &mut self.state {
                        store_chunk(chunk, &self.scratch[..take], max).await;
                    }
                    self.lines.extend(&self.scratch[take..n]);
                    remaining -= take as u64;
                }
                Err(end) => {
                    tracing::info!("connection lost during BDAT; nothing was accepted");
                    self.farewell(&end);
                    return Flow::Close;
                }
            }
        }
        if let Some(r) = precheck {
            self.send(r);
            return Flow::Continue;
        }
        let State::Chunking(_, _, chunk) = &mut self.state else {
            return Flow::Continue;
        };
        if chunk.size > max {
            // The transaction ends: later chunks get 503 until a new MAIL.
            let size = chunk.size;
            self.refused("size", size);
            self.send(reply(552, (5, 3, 4), "Message size exceeds fixed maximum message size"));
            return Flow::Continue;
        }
        if !last {
            let msg = format!("{size} octets received");
            self.send(reply(250, (2, 0, 0), msg));
            return Flow::Continue;
        }
        if chunk.check.has_bare() {
            self.refused("bare_line_ending", 0);
            self.send(reply(554, (5, 6, 0), "Message refused: bare CR or LF in message data; use CRLF"));
            return Flow::Continue;
        }
        let memory = &self.server.memory;
        let data = std::mem::replace(&mut chunk.data, tern_guard::Incoming::new(memory));
        let r = match data.finish(tokio::time::Instant::now() + SPOOL_WAIT).await {
            // The reservation covers the message until it is committed.
            Ok((raw, _reservation)) => self.finish_message(raw).await,
            Err(e) => {
                tracing::warn!(error = %e, "message data could not be kept");
                self.refused("memory", 0);
                reply(452, (4, 3, 1), "Insufficient system storage, try again later")
            }
        };
        self.end_transaction();
        self.send(r);
        Flow::Continue
    }

    /// Runs the pipeline and commits; the reply is positive only once the message is durable.
    async fn finish_message(&mut self, raw: Vec<u8>) -> Reply {
        let (greeting, tx) = match std::mem::replace(&mut self.state, State::Connected) {
            State::Transaction(greeting, tx) | State::Chunking(greeting, tx, _) => (greeting, tx),
            other => {
                self.state = other;
                return reply(503, (5, 5, 1), "Need MAIL command");
            }
        };
        let queue_id = crate::new_queue_id();
        let size = raw.len();
        let session = SessionInfo {
            session_id: self.id.clone(),
            client_ip: self.peer.ip(),
            client_port: self.peer.port(),
            helo: greeting.name.clone(),
            esmtp: greeting.esmtp,
            tls: self.tls.clone(),
            authenticated_as: self.authenticated.as_ref().map(|a| a.address.clone()),
            dnsbl: self.dnsbl.clone(),
            local_hostname: self.server.settings.hostname.clone(),
            service: self.server.settings.service,
        };
        self.state = State::Greeted(greeting);
        let mail_from = tx.mail.sender.as_ref().map(|m| m.to_path_string());
        let mut ctx =
            MessageContext::new(session, queue_id.clone(), mail_from, tx.recipients, raw, tern_store::now_unix());
        ctx.ret = tx.mail.ret;
        ctx.envid = tx.mail.envid.clone();
        ctx.body = tx.mail.body;
        ctx.smtputf8 = tx.mail.smtputf8;
        ctx.requiretls = tx.mail.requiretls;
        match self.server.pipeline.run(&mut ctx).await {
            Outcome::Deliver => {}
            Outcome::Reject { stage, refusal } | Outcome::Defer { stage, refusal } => {
                tracing::info!(queue_id, stage, code = refusal.code, text = %refusal.text, "message refused by pipeline");
                metrics::counter!("tern_smtp_messages_refused_total", "service" => self.server.settings.service, "reason" => stage).increment(1);
                return reply(refusal.code, refusal.enhanced, refusal.text);
            }
            Outcome::Discard { stage, reason } => {
                tracing::warn!(
                    queue_id,
                    stage,
                    reason = ?reason,
                    from = ctx.mail_from.as_deref().unwrap_or("<>"),
                    size,
                    "message accepted and discarded"
                );
                metrics::counter!("tern_smtp_messages_discarded_total", "service" => self.server.settings.service, "reason" => stage).increment(1);
                return reply(250, (2, 0, 0), format!("Ok: queued as {queue_id}"));
            }
            Outcome::Quarantine { stage, reason } => {
                let retention = self.server.settings.quarantine_retention_seconds;
                return match tern_pipeline::quarantine_message(&self.server.store, &mut ctx, &reason, retention).await {
                    Ok(id) => {
                        tracing::warn!(
                            queue_id,
                            stage,
                            quarantine_id = id,
                            reason = ?reason,
                            from = ctx.mail_from.as_deref().unwrap_or("<>"),
                            size,
                            "message quarantined"
                        );
                        metrics::counter!("tern_smtp_messages_quarantined_total", "service" => self.server.settings.service).increment(1);
                        reply(250, (2, 0, 0), format!("Ok: queued as {queue_id}"))
                    }
                    Err(e) => {
                        tracing::error!(queue_id, error = %e, "quarantine failed; message not accepted");
                        reply(451, (4, 3, 0), "Temporary local problem, try again later")
                    }
                };
            }
        }
        let started = std::time::Instant::now();
        // Read before the commit takes the message (for the log line).
        let message_id = ctx.message_id();
        match tern_pipeline::commit_message(&self.server.store, &mut ctx).await {
            Ok(receipt) if receipt.copies.is_empty() && receipt.queued.is_none() && !receipt.over_quota.is_empty() => {
                // Nothing was stored: every recipient's mailbox is over its quota.
                tracing::info!(queue_id, size, "message refused: mailboxes full");
                metrics::counter!("tern_smtp_messages_refused_total", "service" => self.server.settings.service, "reason" => "quota").increment(1);
                reply(552, (5, 2, 2), "Mailbox full: the message exceeds the recipient's storage quota")
            }
            Ok(receipt) => {
                let host = &self.server.settings.hostname;
                tern_pipeline::follow_up(&self.server.store, &self.server.directory, host, &mut ctx, &receipt).await;
                let rcpts: Vec<&str> = ctx.recipients.iter().map(|r| r.address.as_str()).collect();
                tracing::info!(
                    queue_id,
                    message_id = message_id.as_deref().unwrap_or("-"),
                    from = ctx.mail_from.as_deref().unwrap_or("<>"),
                    rcpts = ?rcpts,
                    size,
                    copies = receipt.copies.len(),
                    queued = receipt.queued.map(|q| q.to_string()).unwrap_or_default(),
                    tls = ctx.session.tls.as_ref().map(|t| t.version.as_str()).unwrap_or("none"),
                    commit_ms = started.elapsed().as_millis() as u64,
                    "message accepted"
                );
                metrics::counter!("tern_smtp_messages_accepted_total", "service" => self.server.settings.service)
                    .increment(1);
                metrics::counter!("tern_smtp_message_bytes_total", "service" => self.server.settings.service)
                    .increment(size as u64);
                reply(250, (2, 0, 0), format!("Ok: queued as {queue_id}"))
            }
            Err(e) => {
                tracing::error!(queue_id, error = %e, "commit failed; message not accepted");
                metrics::counter!("tern_smtp_messages_refused_total", "service" => self.server.settings.service, "reason" => "store").increment(1);
                reply(451, (4, 3, 0), "Temporary local problem, try again later")
            }
        }
    }

    async fn starttls(&mut self) -> Flow {
        let Some(acceptor) = self.server.tls.clone() else {
            self.send(reply(502, (5, 5, 1), "STARTTLS not available"));
            return Flow::Continue;
        };
        if self.conn.is_tls() {
            self.send(reply(503, (5, 5, 1), "Already using TLS"));
            return Flow::Continue;
        }
        self.send(reply(220, (2, 0, 0), "Ready to start TLS"));
        if self.flush().await.is_err() {
            return Flow::Close;
        }
        // CVE-2011-0411: anything the client sent after STARTTLS in plaintext must not be
        // executed inside the TLS session.
        if !self.lines.is_empty() {
            tracing::warn!(bytes = self.lines.buffered().len(), "discarding plaintext pipelined after STARTTLS");
            metrics::counter!("tern_smtp_starttls_injection_total").increment(1);
            self.lines.clear();
        }
        let Stream::Plain(plain) = std::mem::replace(&mut self.conn, Stream::Upgrading) else {
            return Flow::Close;
        };
        match tern_tls::handshake(&acceptor, plain, self.peer).await {
            Some(tls) => {
                self.conn = Stream::Tls(Box::new(tls));
                let (version, cipher) = self.conn.tls_info().unwrap_or_default();
                tracing::debug!(version, cipher, "TLS established");
                self.tls = Some(TlsInfo { version, cipher });
                // RFC 3207 §4.2: forget everything learned before TLS.
                self.state = State::Connected;
                self.authenticated = None;
                Flow::Continue
            }
            None => Flow::Close,
        }
    }
}

/// Appends BDAT content within the size limit and the memory budget.
async fn store_chunk(chunk: &mut Chunked, bytes: &[u8], max: u64) {
    chunk.size += bytes.len() as u64;
    chunk.check.feed(bytes);
    if chunk.size <= max {
        chunk.data.push(bytes).await;
    }
}

/// EHLO/HELO argument: a domain or an address literal (RFC 5321 §4.1.1.1). Lenient on the
/// domain's shape (many clients send bare host names), strict on characters.
fn valid_helo(name: &str) -> bool {
    if let Some(lit) = name.strip_prefix('[') {
        return lit.ends_with(']') && lit.len() > 1;
    }
    !name.is_empty()
        && name.len() <= 255
        && name.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '.' || c == '_')
}
