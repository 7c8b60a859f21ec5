//! One IMAP session: the state machine of RFC 9051 §3 (not authenticated → authenticated →
//! selected → logout) over a plaintext, TLS or compressed stream.
//!
//! Every command returns a [`Done`]; before its tagged line is written, changes made by
//! other sessions are reported at the points the RFC allows (never EXPUNGE during FETCH,
//! STORE or SEARCH by sequence number).

mod acl;
mod append;
mod auth;
mod fetch;
mod idle;
mod mailboxes;
mod messages;
mod metadata;
mod notifications;
pub(crate) mod query;

use crate::ImapServer;
use crate::mailbox::View;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tern_imap_proto::render::Style;
use tern_imap_proto::{Command, CommandFramer, Frame, Limits, parse_command};
use tern_store::Account;
use tern_tls::Stream;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Reply buffer size above which output is written out during a long command.
const FLUSH_AT: usize = 256 * 1024;

/// How a command ended.
pub(crate) struct Done {
    status: Status,
    code: Option<String>,
    text: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    Ok,
    No,
    Bad,
}

impl Done {
    pub(crate) fn ok(text: impl Into<String>) -> Done {
        Done { status: Status::Ok, code: None, text: text.into() }
    }
    pub(crate) fn no(text: impl Into<String>) -> Done {
        Done { status: Status::No, code: None, text: text.into() }
    }
    pub(crate) fn bad(text: impl Into<String>) -> Done {
        Done { status: Status::Bad, code: None, text: text.into() }
    }
    pub(crate) fn code(mut self, code: impl Into<String>) -> Done {
        self.code = Some(code.into());
        self
    }
}

/// What the main loop does next.
#[derive(PartialEq, Eq)]
pub(crate) enum Flow {
    Continue,
    Close,
}

/// The IMAP connection states of RFC 9051 §3 (logout is the end of the session loop).
/// [`Session::execute`] admits each command by matching on it; a selected mailbox cannot
/// exist without the account that selected it.
pub(crate) enum State {
    NotAuthenticated,
    Authenticated(Account),
    Selected(Account, View),
}

impl State {
    pub(crate) fn account(&self) -> Option<&Account> {
        match self {
            State::NotAuthenticated => None,
            State::Authenticated(account) | State::Selected(account, _) => Some(account),
        }
    }

    pub(crate) fn view(&self) -> Option<&View> {
        match self {
            State::Selected(_, view) => Some(view),
            _ => None,
        }
    }

    pub(crate) fn view_mut(&mut self) -> Option<&mut View> {
        match self {
            State::Selected(_, view) => Some(view),
            _ => None,
        }
    }

    /// Leaves the selected state, handing the view out (commands that move it to a pool
    /// thread put it back with [`State::set_view`]).
    pub(crate) fn take_view(&mut self) -> Option<View> {
        match std::mem::replace(self, State::NotAuthenticated) {
            State::Selected(account, view) => {
                *self = State::Authenticated(account);
                Some(view)
            }
            other => {
                *self = other;
                None
            }
        }
    }

    /// Selects `view` (replacing any selected one). Only an authenticated session selects.
    pub(crate) fn set_view(&mut self, view: View) {
        *self = match std::mem::replace(self, State::NotAuthenticated) {
            State::Authenticated(account) | State::Selected(account, _) => State::Selected(account, view),
            State::NotAuthenticated => State::NotAuthenticated,
        };
    }
}

pub(crate) struct Session {
    pub(crate) server: Arc<ImapServer>,
    pub(crate) conn: Stream<TcpStream>,
    pub(crate) peer: SocketAddr,
    pub(crate) framer: CommandFramer,
    pub(crate) inbuf: Vec<u8>,
    pub(crate) out: Vec<u8>,
    pub(crate) state: State,
    pub(crate) condstore: bool,
    pub(crate) qresync: bool,
    pub(crate) rev2: bool,
    pub(crate) utf8: bool,
    /// RFC 9586 UIDONLY: no message sequence numbers either way.
    pub(crate) uidonly: bool,
    pub(crate) compressed: bool,
    /// RFC 5182 saved search result (UIDs, ascending).
    pub(crate) saved: Vec<u32>,
    /// Set when the session must end after the current command (BYE sent).
    pub(crate) closing: bool,
    /// The current command already wrote its tagged line (STARTTLS, COMPRESS switch layers
    /// right after it).
    pub(crate) tagged_sent: bool,
    /// When the next read must be done: before login the whole session has
    /// `login_timeout`; after it, the autologout time between commands, and a command that
    /// has begun must keep arriving (see [`tern_guard::Deadlines`]).
    pub(crate) deadlines: tern_guard::Deadlines,
    /// BAD answers in a row; too many end the session (Dovecot closes after 20, too).
    pub(crate) bad_in_a_row: u32,
    /// The memory of the APPEND being received (its announced literals).
    append_memory: tern_guard::Reservation,
    /// What the client asked NOTIFY (RFC 5465) to tell it.
    pub(crate) notifications: Option<Box<notifications::Notifications>>,
    /// Searches kept updated (RFC 5267 CONTEXT), and the mailbox as they last saw it.
    pub(crate) updating: Vec<query::UpdatingSearch>,
    pub(crate) updating_stamp: (usize, u32, u64),
}

/// How long an APPEND may wait for memory before its literal is refused (`NO [LIMIT]`).
const APPEND_MEMORY_WAIT: Duration = Duration::from_secs(30);

/// Consecutive BAD answers after which the session ends.
const MAX_BAD_IN_A_ROW: u32 = 20;

impl Session {
    pub(crate) fn new(server: Arc<ImapServer>, conn: Stream<TcpStream>, peer: SocketAddr) -> Session {
        let login = server.settings.login_timeout;
        Session {
            conn,
            peer,
            framer: CommandFramer::new(Limits::unauthenticated()),
            inbuf: Vec::new(),
            out: Vec::new(),
            state: State::NotAuthenticated,
            condstore: false,
            qresync: false,
            rev2: false,
            utf8: false,
            uidonly: false,
            compressed: false,
            saved: Vec::new(),
            closing: false,
            tagged_sent: false,
            deadlines: tern_guard::Deadlines::new(login, Some(login)),
            bad_in_a_row: 0,
            append_memory: tern_guard::Reservation::new(&server.memory),
            notifications: None,
            updating: Vec::new(),
            updating_stamp: (0, 0, 0),
            server,
        }
    }

    /// A CONDSTORE enabling command (RFC 7162 §3.1): the first one with a mailbox selected
    /// reports the mailbox's HIGHESTMODSEQ.
    pub(crate) fn enable_condstore(&mut self) {
        if self.condstore {
            return;
        }
        self.condstore = true;
        if let Some(view) = self.state.view() {
            let highest = view.highest_modseq;
            self.untagged(&format!("OK [HIGHESTMODSEQ {highest}] Highest"));
        }
    }

    /// The session is now `account`'s: larger command limits, the autologout time.
    pub(crate) fn logged_in(&mut self, account: tern_store::Account) {
        self.framer.set_limits(Limits::authenticated(self.server.settings.append_limit as usize));
        self.deadlines.set_session_limit(None);
        self.deadlines.set_idle(self.server.settings.timeout);
        self.state = State::Authenticated(account);
    }

    /// The start of a FETCH response for the message at `index` with `uid`: `* 3 FETCH (`,
    /// or `* 1042 UIDFETCH (` after ENABLE UIDONLY (RFC 9586 §3.3).
    pub(crate) fn fetch_head(&self, index: usize, uid: u32) -> String {
        if self.uidonly { format!("{uid} UIDFETCH (") } else { format!("{} FETCH (", index + 1) }
    }

    /// RFC 9585: a long command tells how far it got.
    pub(crate) fn progress(&mut self, tag: &str, done: usize, goal: usize) {
        // Tags hold no `"` or backslash (ASTRING-CHAR): quoted as they are.
        self.untagged(&format!("OK [INPROGRESS (\"{tag}\" {done} {goal})] Still working"));
    }

    pub(crate) fn style(&self) -> Style {
        Style { utf8: self.utf8 }
    }

    pub(crate) fn line(&mut self, text: &str) {
        self.out.extend_from_slice(text.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    pub(crate) fn untagged(&mut self, text: &str) {
        self.out.extend_from_slice(b"* ");
        self.line(text);
    }

    pub(crate) fn tagged(&mut self, tag: &str, done: Done) {
        if done.status == Status::Bad {
            self.bad_in_a_row += 1;
        } else {
            self.bad_in_a_row = 0;
        }
        let status = match done.status {
            Status::Ok => "OK",
            Status::No => "NO",
            Status::Bad => "BAD",
        };
        let text: String = done.text.chars().map(|c| if c.is_control() { ' ' } else { c }).collect();
        let line = match &done.code {
            Some(code) => format!("{tag} {status} [{code}] {text}"),
            None => format!("{tag} {status} {text}"),
        };
        self.line(&line);
    }

    pub(crate) async fn flush(&mut self) -> std::io::Result<()> {
        if self.out.is_empty() {
            return Ok(());
        }
        let out = std::mem::take(&mut self.out);
        let result = tokio::time::timeout(self.server.settings.timeout, async {
            self.conn.write_all(&out).await?;
            self.conn.flush().await
        })
        .await;
        // Keep a small buffer around, not the biggest response ever sent.
        self.out = out;
        self.out.clear();
        if self.out.capacity() > 64 * 1024 {
            self.out.shrink_to(4096);
        }
        match result {
            Ok(r) => r,
            Err(_) => Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "write timeout")),
        }
    }

    /// Writes out a large response in pieces.
    pub(crate) async fn maybe_flush(&mut self) -> std::io::Result<()> {
        if self.out.len() >= FLUSH_AT { self.flush().await } else { Ok(()) }
    }

    pub(crate) fn capabilities(&self) -> String {
        let mut caps = vec!["IMAP4rev1", "IMAP4rev2", "SASL-IR", "ID", "ENABLE"];
        if self.state.account().is_none() {
            caps.push("LITERAL-");
            if self.server.tls.is_some() && !self.conn.is_tls() {
                caps.push("STARTTLS");
            }
            if self.may_login() {
                caps.extend(tern_sasl::offered(self.conn.tls_exporter().is_some()).into_iter().map(|m| match m {
                    tern_sasl::Mechanism::Plain => "AUTH=PLAIN",
                    tern_sasl::Mechanism::Login => "AUTH=LOGIN",
                    tern_sasl::Mechanism::ScramSha256 => "AUTH=SCRAM-SHA-256",
                    tern_sasl::Mechanism::ScramSha256Plus => "AUTH=SCRAM-SHA-256-PLUS",
                }));
            } else {
                caps.push("LOGINDISABLED");
            }
            return caps.join(" ");
        }
        caps.extend([
            "LITERAL+",
            "IDLE",
            "NAMESPACE",
            "UIDPLUS",
            "MOVE",
            "UNSELECT",
            "CHILDREN",
            "SPECIAL-USE",
            "CREATE-SPECIAL-USE",
            "LIST-EXTENDED",
            "LIST-STATUS",
            "CONDSTORE",
            "QRESYNC",
            "ESEARCH",
            "SEARCHRES",
            "SORT",
            "SORT=DISPLAY",
            "THREAD=ORDEREDSUBJECT",
            "THREAD=REFERENCES",
            "STATUS=SIZE",
            "OBJECTID",
            "QUOTA",
            "QUOTA=RES-STORAGE",
            "BINARY",
            "UTF8=ACCEPT",
            "WITHIN",
            "SAVEDATE",
            "PREVIEW",
            "ESORT",
            "PARTIAL",
            "MULTIAPPEND",
            "CATENATE",
            "REPLACE",
            "UIDONLY",
            "INPROGRESS",
            "ACL",
            "RIGHTS=texk",
            "METADATA",
            "METADATA-SERVER",
            "NOTIFY",
            "CONTEXT=SEARCH",
            "CONTEXT=SORT",
        ]);
        let mut s = caps.join(" ");
        s.push_str(&format!(" APPENDLIMIT={}", self.server.settings.append_limit));
        if !self.compressed {
            s.push_str(" COMPRESS=DEFLATE");
        }
        s
    }

    /// Whether passwords may be sent now: over TLS, or from loopback when allowed.
    pub(crate) fn may_login(&self) -> bool {
        self.conn.is_tls() || (self.server.settings.plaintext_on_loopback && tern_config::is_loopback(&self.peer))
    }

    pub(crate) async fn run(mut self) {
        tracing::debug!("connected");
        let caps = self.capabilities();
        self.untagged(&format!("OK [CAPABILITY {caps}] Tern IMAP ready"));
        loop {
            if self.closing {
                break;
            }
            let frame = match self.framer.next(&mut self.inbuf) {
                Some(f) => f,
                None => match self.reserve_append().await {
                    Some(refused) => refused,
                    None => match self.read_more().await {
                        Ok(()) => continue,
                        Err(why) => {
                            if let Some(bye) = why {
                                self.untagged(&bye);
                            }
                            break;
                        }
                    },
                },
            };
            let frame = match frame {
                Frame::Continue => self.reserve_append().await.unwrap_or(Frame::Continue),
                other => other,
            };
            let flow = match frame {
                Frame::Continue => {
                    self.line("+ Ready for literal data");
                    Flow::Continue
                }
                Frame::Refused { tag } => {
                    let tag = tag.unwrap_or_else(|| "*".into());
                    self.tagged(&tag, Done::no("Server memory is busy, try again later").code("LIMIT"));
                    Flow::Continue
                }
                Frame::TooLong { tag } => {
                    let tag = tag.unwrap_or_else(|| "*".into());
                    self.tagged(&tag, Done::bad("Command line too long").code("TOOBIG"));
                    Flow::Continue
                }
                Frame::LiteralTooBig { tag, sync } => {
                    let tag = tag.unwrap_or_else(|| "*".into());
                    let done = if sync { Done::no("Literal too large") } else { Done::bad("Literal too large") };
                    self.tagged(&tag, done.code("TOOBIG"));
                    Flow::Continue
                }
                Frame::Fatal { .. } => {
                    self.untagged("BYE [TOOBIG] Literal too large");
                    Flow::Close
                }
                Frame::Command(bytes) => self.command(&bytes).await,
            };
            if !self.framer.in_command() {
                self.append_memory.release();
            }
            self.deadlines.command_done();
            if flow == Flow::Close {
                break;
            }
            if self.bad_in_a_row >= MAX_BAD_IN_A_ROW {
                tracing::info!(bad = self.bad_in_a_row, "too many invalid commands; closing");
                self.untagged("BYE Too many invalid commands");
                break;
            }
        }
        let _ = self.flush().await;
        let _ = tokio::time::timeout(Duration::from_secs(5), self.conn.shutdown()).await;
        tracing::debug!("disconnected");
    }

    /// Reserves memory for the APPEND message literals announced so far. A session holding
    /// none may wait for it (holding none while it waits, so waiters cannot block each other);
    /// one that already holds some and needs more, or a wait that runs out, refuses the
    /// literal: the frame to answer, if the answer is due now.
    async fn reserve_append(&mut self) -> Option<Frame> {
        let need = self.framer.append_bytes();
        if need == 0 || self.append_memory.try_cover(need) {
            return None;
        }
        if self.append_memory.bytes() == 0 {
            if self.flush().await.is_err() {
                return None;
            }
            let deadline = tokio::time::Instant::now() + APPEND_MEMORY_WAIT;
            tracing::info!(bytes = need, "APPEND waits for memory");
            if self.append_memory.cover_waiting(need as u64, deadline).await {
                // The client was kept waiting by us, not by its own slowness.
                self.deadlines.command_done();
                return None;
            }
        }
        tracing::info!(bytes = need, "no memory for an APPEND; refused");
        metrics::counter!("tern_imap_append_refused_total", "reason" => "memory").increment(1);
        self.append_memory.release();
        // None for a non-synchronizing literal: dropped as it arrives, answered at its end.
        self.framer.refuse_literal()
    }

    /// Reads more input. `Err(Some(text))` ends the session with that BYE.
    pub(crate) async fn read_more(&mut self) -> Result<(), Option<String>> {
        if self.flush().await.is_err() {
            return Err(None);
        }
        // Small reads while idle keep idle sessions cheap; grow while data flows.
        let want = if self.framer.in_command() { 64 * 1024 } else { 1024 };
        if self.inbuf.capacity() - self.inbuf.len() < want {
            self.inbuf.reserve(want);
        }
        let shutdown = self.server.shutdown.clone();
        let in_command = self.framer.in_command();
        // NOTIFY (RFC 5465): between commands, changes are pushed as they happen.
        let mut notifications = if in_command { None } else { self.notifications.take() };
        let selected = self.state.view().map(|v| v.id);
        let read = self.deadlines.read(self.conn.read_buf(&mut self.inbuf));
        let notified = async {
            match notifications.as_mut() {
                Some(n) => n.changed(selected).await,
                None => std::future::pending().await,
            }
        };
        let result = tokio::select! {
            r = read => Some(r),
            _ = shutdown.cancelled(), if !in_command => return Err(Some("BYE [UNAVAILABLE] Server shutting down".into())),
            _ = notified => None,
        };
        if notifications.is_some() {
            self.notifications = notifications;
        }
        let Some(result) = result else {
            if let Err(e) = self.push_notifications().await {
                tracing::warn!(error = %e, "NOTIFY could not read the watched mailboxes");
            }
            return Ok(());
        };
        match result {
            Err(tern_guard::Expired::Idle) if self.state.account().is_some() => {
                tracing::info!("autologout");
                Err(Some("BYE Autologout; idle for too long".into()))
            }
            Err(_) => {
                tracing::info!("timeout before login, or command too slow");
                Err(Some("BYE Timeout".into()))
            }
            Ok(Ok(0)) | Ok(Err(_)) => Err(None),
            Ok(Ok(n)) => {
                self.deadlines.received(n);
                if !self.framer.in_command() && self.inbuf.capacity() > 256 * 1024 && self.inbuf.len() < 1024 {
                    self.inbuf.shrink_to(4096);
                }
                Ok(())
            }
        }
    }

    /// Reads one raw line (AUTHENTICATE responses, DONE after IDLE).
    pub(crate) async fn read_line(&mut self) -> Result<Vec<u8>, Option<String>> {
        loop {
            match self.framer.next(&mut self.inbuf) {
                Some(Frame::Command(line)) => return Ok(line),
                Some(Frame::Continue) => {
                    // A literal where a plain line was expected: refuse it.
                    self.framer.reset();
                    return Ok(Vec::new());
                }
                Some(_) => return Ok(Vec::new()),
                None => self.read_more().await?,
            }
        }
    }

    async fn command(&mut self, bytes: &[u8]) -> Flow {
        let tagged = match parse_command(bytes) {
            Ok(t) => t,
            Err(e) => {
                let tag = e.tag.unwrap_or_else(|| "*".into());
                tracing::debug!(error = ?e.message, "bad command");
                self.tagged(&tag, Done::bad(format!("Syntax error: {}", e.message)));
                return Flow::Continue;
            }
        };
        let tag = tagged.tag;
        let command = tagged.command;
        let name = command.name();
        tracing::debug!(tag = %tag, command = name, "command");
        metrics::counter!("tern_imap_commands_total", "command" => name).increment(1);
        // EXPUNGE responses must wait during FETCH, STORE and SEARCH by sequence number.
        let allow_expunge = !matches!(
            command,
            Command::Fetch { uid: false, .. }
                | Command::Store { uid: false, .. }
                | Command::Search { uid: false, .. }
                | Command::Sort { uid: false, .. }
                | Command::Thread { uid: false, .. }
        );
        let logout = matches!(command, Command::Logout);
        if self.uidonly && uses_sequence_numbers(&command) {
            // RFC 9586 §3: after ENABLE UIDONLY, message numbers are refused.
            self.tagged(
                &tag,
                Done::bad("Message sequence numbers are not used after ENABLE UIDONLY").code("UIDREQUIRED"),
            );
            return Flow::Continue;
        }
        let result = Box::pin(self.execute(&tag, command)).await;
        let done = match result {
            Ok(done) => done,
            // RFC 5530: the store (a database in cluster mode) cannot be reached for now.
            Err(e @ tern_store::StoreError::Unavailable(_)) => {
                tracing::warn!(error = %e, "command failed: store unavailable");
                Done::no("Mail store unavailable, try again").code("UNAVAILABLE")
            }
            Err(e) => {
                tracing::error!(error = %e, "command failed");
                Done::no("Temporary server failure, try again").code("SERVERBUG")
            }
        };
        if !logout
            && done.status != Status::Bad
            && self.state.view().is_some()
            && let Err(e) = self.report_changes(allow_expunge, false).await
        {
            tracing::warn!(error = %e, "cannot report mailbox changes");
        }
        if !std::mem::take(&mut self.tagged_sent) {
            self.tagged(&tag, done);
        }
        if logout || self.closing { Flow::Close } else { Flow::Continue }
    }

    async fn execute(&mut self, tag: &str, command: Command) -> Result<Done, tern_store::StoreError> {
        // Commands valid in any state.
        match command {
            Command::Capability => {
                let caps = self.capabilities();
                self.untagged(&format!("CAPABILITY {caps}"));
                return Ok(Done::ok("CAPABILITY completed"));
            }
            Command::Noop => return Ok(Done::ok("NOOP completed")),
            Command::Logout => {
                self.untagged("BYE Tern logging out");
                return Ok(Done::ok("LOGOUT completed"));
            }
            Command::Id(params) => {
                if !params.is_empty() {
                    tracing::info!(client_id = ?params, "client identified itself");
                }
                self.untagged(&format!("ID (\"name\" \"Tern\" \"version\" \"{}\")", env!("CARGO_PKG_VERSION")));
                return Ok(Done::ok("ID completed"));
            }
            _ => {}
        }
        match (&self.state, command) {
            (State::NotAuthenticated, Command::StartTls) => Ok(self.starttls(tag).await),
            (State::NotAuthenticated, Command::Login { user, password }) => self.login(&user, &password).await,
            (State::NotAuthenticated, Command::Authenticate { mechanism, initial }) => {
                self.authenticate(&mechanism, initial).await
            }
            (State::NotAuthenticated, _) => Ok(Done::bad("Log in first")),
            (_, Command::StartTls | Command::Login { .. } | Command::Authenticate { .. }) => {
                Ok(Done::bad("Already logged in"))
            }
            // RFC 5161 §3.1: ENABLE is for the authenticated state.
            (State::Selected(..), Command::Enable(_)) => {
                Ok(Done::bad("ENABLE is not allowed while a mailbox is selected"))
            }
            (_, Command::Enable(caps)) => Ok(self.enable(caps)),
            (_, Command::Select { mailbox, read_only, condstore, qresync }) => {
                self.select(&mailbox, read_only, condstore, qresync).await
            }
            (_, Command::Create { mailbox, special_use }) => self.create(&mailbox, &special_use).await,
            (_, Command::Delete(mailbox)) => self.delete(&mailbox).await,
            (_, Command::Rename { from, to }) => self.rename(&from, &to).await,
            (_, Command::Subscribe(mailbox)) => self.subscribe(&mailbox, true).await,
            (_, Command::Unsubscribe(mailbox)) => self.subscribe(&mailbox, false).await,
            (_, Command::List { selection, reference, patterns, returns, lsub, extended }) => {
                self.list(&selection, &reference, &patterns, &returns, lsub, extended).await
            }
            (_, Command::Namespace) => {
                // RFC 2342: the user's own mailboxes, and those other users share.
                self.untagged(&format!(
                    "NAMESPACE ((\"\" \"/\")) ((\"{}/\" \"/\")) ((\"{}/\" \"/\"))",
                    acl::OTHER_USERS,
                    acl::PUBLIC
                ));
                Ok(Done::ok("NAMESPACE completed"))
            }
            (_, Command::SetAcl { mailbox, identifier, mode, rights }) => {
                self.set_acl(&mailbox, &identifier, mode, &rights, false).await
            }
            (_, Command::DeleteAcl { mailbox, identifier }) => {
                self.set_acl(&mailbox, &identifier, tern_imap_proto::StoreMode::Replace, "", true).await
            }
            (_, Command::GetAcl(mailbox)) => self.get_acl(&mailbox).await,
            (_, Command::ListRights { mailbox, identifier }) => self.list_rights(&mailbox, &identifier).await,
            (_, Command::MyRights(mailbox)) => self.my_rights(&mailbox).await,
            (_, Command::GetMetadata { mailbox, entries, max_size, depth }) => {
                self.get_metadata(&mailbox, &entries, max_size, depth).await
            }
            (_, Command::SetMetadata { mailbox, entries }) => self.set_metadata(&mailbox, entries).await,
            (_, Command::Status { mailbox, items }) => self.status(&mailbox, &items).await,
            (_, Command::Append { mailbox, messages }) => self.append(&mailbox, messages).await,
            (_, Command::Idle) => self.idle(tag).await,
            (_, Command::Notify(set)) => self.notify(set).await,
            (_, Command::GetQuotaRoot(mailbox)) => self.quota_root(&mailbox).await,
            (_, Command::GetQuota(root)) => self.quota(&root).await,
            (_, Command::SetQuota(_)) => Ok(Done::no("Quotas are set by the administrator").code("NOPERM")),
            (_, Command::Compress(algorithm)) => Ok(self.compress(tag, &algorithm).await),
            (State::Authenticated(_), _) => Ok(Done::bad("No mailbox selected")),
            (State::Selected(..), command) => self.execute_selected(tag, command).await,
        }
    }

    /// The commands of the selected state (RFC 9051 §6.4).
    async fn execute_selected(&mut self, tag: &str, command: Command) -> Result<Done, tern_store::StoreError> {
        self.refresh_rights().await?;
        match command {
            Command::Check => Ok(Done::ok("CHECK completed")),
            Command::CancelUpdate(tags) => Ok(self.cancel_update(&tags)),
            Command::Close => self.close(true).await,
            Command::Unselect => self.close(false).await,
            Command::Expunge { uids } => self.expunge(uids).await,
            Command::Search { uid, charset, key, returns } => self.search(tag, uid, charset, key, returns).await,
            Command::Fetch { uid, set, attrs, changed_since, vanished, partial } => {
                self.fetch(tag, uid, set, attrs, changed_since, vanished, partial).await
            }
            Command::Store { uid, set, mode, silent, flags, unchanged_since } => {
                self.store_flags(uid, set, mode, silent, flags, unchanged_since).await
            }
            Command::Copy { uid, set, mailbox } => self.copy(uid, set, &mailbox, false).await,
            Command::Move { uid, set, mailbox } => self.copy(uid, set, &mailbox, true).await,
            Command::Sort { uid, criteria, charset, key, returns } => {
                self.sort(tag, uid, criteria, &charset, key, returns).await
            }
            Command::Replace { uid, target, mailbox, message } => self.replace(uid, target, &mailbox, message).await,
            Command::Thread { uid, algorithm, charset, key } => self.thread(tag, uid, algorithm, &charset, key).await,
            // The commands of every state were answered by `execute`.
            _ => Ok(Done::bad("Command not valid in this state")),
        }
    }

    /// Another user's selected mailbox changed since this session last looked (its ACL among
    /// what may have): its rights are read again before a command uses them. Nothing is
    /// read for the user's own mailboxes, nor when nothing changed.
    async fn refresh_rights(&mut self) -> Result<(), tern_store::StoreError> {
        let Some(view) = self.state.view() else { return Ok(()) };
        if view.rights == tern_store::Rights::ALL || view.signal.version() == view.seen_version {
            return Ok(());
        }
        let id = view.id;
        let current = self.server.store.mailbox_get(id).await?;
        let rights = match (current, self.state.account()) {
            (Some(m), Some(me)) => tern_store::acl::rights_of(me, &m),
            _ => tern_store::Rights::NONE,
        };
        if let Some(view) = self.state.view_mut() {
            view.rights = rights;
            if !rights.contains(tern_store::Rights::READ) {
                // Everything is refused; the report after the command ends the session.
                view.read_only = true;
            }
        }
        Ok(())
    }

    fn enable(&mut self, caps: Vec<String>) -> Done {
        let mut enabled = Vec::new();
        for c in caps {
            let on = match c.as_str() {
                "CONDSTORE" => {
                    self.condstore = true;
                    true
                }
                "QRESYNC" => {
                    self.qresync = true;
                    self.condstore = true;
                    true
                }
                "IMAP4REV2" => {
                    self.rev2 = true;
                    self.utf8 = true;
                    true
                }
                "UTF8=ACCEPT" => {
                    self.utf8 = true;
                    true
                }
                "UIDONLY" => {
                    self.uidonly = true;
                    true
                }
                _ => false,
            };
            if on && !enabled.contains(&c) {
                enabled.push(c);
            }
        }
        let names: Vec<&str> = enabled
            .iter()
            .map(|c| match c.as_str() {
                "IMAP4REV2" => "IMAP4rev2",
                other => other,
            })
            .collect();
        self.untagged(format!("ENABLED {}", names.join(" ")).trim_end());
        Done::ok("ENABLE completed")
    }

    async fn compress(&mut self, tag: &str, algorithm: &str) -> Done {
        if self.compressed {
            return Done::no("Compression already active").code("COMPRESSIONACTIVE");
        }
        if algorithm != "DEFLATE" {
            return Done::bad("Only DEFLATE is supported");
        }
        // The OK goes out uncompressed; everything after it is compressed (RFC 4978 §3).
        self.tagged(tag, Done::ok("DEFLATE active"));
        self.tagged_sent = true;
        if self.flush().await.is_err() {
            self.closing = true;
            return Done::ok("DEFLATE active");
        }
        self.conn.wrap(|inner| Box::new(crate::compress::Deflate::new(inner)));
        self.compressed = true;
        self.tagged_sent = true;
        Done::ok("DEFLATE active")
    }
}

/// Whether a command names messages by sequence number (RFC 9586 §3): the non-UID forms, a
/// sequence set among SEARCH keys, QRESYNC's sequence match data.
fn uses_sequence_numbers(command: &Command) -> bool {
    fn in_key(key: &tern_imap_proto::SearchKey) -> bool {
        use tern_imap_proto::{SearchKey, SequenceSet};
        match key {
            SearchKey::SequenceSet(set) => *set != SequenceSet::Saved,
            SearchKey::Not(k) => in_key(k),
            SearchKey::Or(a, b) => in_key(a) || in_key(b),
            SearchKey::And(keys) => keys.iter().any(in_key),
            _ => false,
        }
    }
    match command {
        Command::Fetch { uid: false, .. }
        | Command::Store { uid: false, .. }
        | Command::Copy { uid: false, .. }
        | Command::Move { uid: false, .. }
        | Command::Replace { uid: false, .. }
        | Command::Search { uid: false, .. }
        | Command::Sort { uid: false, .. }
        | Command::Thread { uid: false, .. } => true,
        Command::Search { key, .. } | Command::Sort { key, .. } | Command::Thread { key, .. } => in_key(key),
        Command::Select { qresync: Some(q), .. } => q.seq_match.is_some(),
        _ => false,
    }
}
