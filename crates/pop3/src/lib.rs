//! The POP3 service: the user's INBOX as a maildrop (RFC 1939), with CAPA (RFC 2449), STLS
//! (RFC 2595), AUTH PLAIN (RFC 5034) and implicit TLS (RFC 8314).
//!
//! A session snapshots the INBOX at login. DELE only marks; the messages are expunged in the
//! UPDATE state after QUIT, in one durable store operation, before `+OK` is sent — a dropped
//! connection removes nothing. One POP3 session per mailbox at a time (`[IN-USE]`); IMAP
//! sessions keep working and see the expunges.

pub mod proto;
mod session;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tern_directory::Directory;
use tern_guard::{AuthGuard, ConnectionLimits};
use tern_store::{MailboxId, Store};
use tern_tls::TlsAcceptor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone)]
pub struct Pop3Settings {
    pub hostname: String,
    /// Inactivity allowed (RFC 1939 §3: at least 10 minutes).
    pub timeout: Duration,
    /// Time to log in, from the connection's start.
    pub login_timeout: Duration,
    pub plaintext_on_loopback: bool,
    /// Load balancers that send PROXY headers (`listen.proxy_from`).
    pub proxy_from: Vec<tern_config::Cidr>,
}

impl Pop3Settings {
    pub fn from_config(config: &tern_config::Config) -> Pop3Settings {
        Pop3Settings {
            proxy_from: config.proxy_from(),
            hostname: config.hostname.clone(),
            timeout: Duration::from_secs(config.pop3.timeout_seconds),
            login_timeout: Duration::from_secs(config.pop3.login_timeout_seconds),
            plaintext_on_loopback: config.auth.plaintext_on_loopback,
        }
    }
}

/// Mailboxes held by a POP3 session.
#[derive(Default)]
pub(crate) struct Locks {
    held: Mutex<HashSet<MailboxId>>,
}

/// Releases a mailbox lock when the session ends, however it ends.
pub(crate) struct LockGuard {
    locks: Arc<Locks>,
    mailbox: MailboxId,
}

impl Locks {
    pub(crate) fn try_lock(self: &Arc<Self>, mailbox: MailboxId) -> Option<LockGuard> {
        let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
        held.insert(mailbox).then(|| LockGuard { locks: Arc::clone(self), mailbox })
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.locks.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.mailbox);
    }
}

pub struct Pop3Server {
    pub(crate) settings: Pop3Settings,
    pub(crate) directory: Directory,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tls: Option<TlsAcceptor>,
    limits: Arc<ConnectionLimits>,
    pub(crate) auth: Arc<AuthGuard>,
    pub(crate) locks: Arc<Locks>,
    pub(crate) shutdown: CancellationToken,
    tracker: TaskTracker,
    next_session: AtomicU64,
}

impl Pop3Server {
    pub fn new(
        settings: Pop3Settings,
        directory: Directory,
        tls: Option<TlsAcceptor>,
        limits: Arc<ConnectionLimits>,
        auth: Arc<AuthGuard>,
        shutdown: CancellationToken,
    ) -> Arc<Pop3Server> {
        Arc::new(Pop3Server {
            store: Arc::clone(directory.store()),
            settings,
            directory,
            tls,
            limits,
            auth,
            locks: Arc::new(Locks::default()),
            shutdown,
            tracker: TaskTracker::new(),
            next_session: AtomicU64::new(1),
        })
    }

    /// Accepts connections until shutdown; `implicit_tls` for port 995.
    pub async fn serve(self: Arc<Self>, listener: TcpListener, implicit_tls: bool) {
        tern_guard::accept_until_shutdown(
            &listener,
            if implicit_tls { "pop3s" } else { "pop3" },
            &self.shutdown,
            &self.tracker,
            |stream, peer| {
                let server = Arc::clone(&self);
                async move { server.connection(stream, peer, implicit_tls).await }
            },
        )
        .await
    }

    pub async fn drain(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    /// One POP3 session on any byte stream, from the greeting to the end: what every
    /// admitted connection runs, and what tests run over an in-memory duplex stream.
    pub async fn run_session<S>(self: Arc<Self>, stream: tern_tls::Stream<S>, client: SocketAddr)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync + 'static,
    {
        let id = format!("{:x}", self.next_session.fetch_add(1, Ordering::Relaxed));
        let span = tracing::info_span!("pop3", sid = %id, client = %client);
        let session = session::Session::new(self, stream, client);
        tracing::Instrument::instrument(session.run(), span).await;
    }

    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream, peer: SocketAddr, implicit_tls: bool) {
        let service = if implicit_tls { "pop3s" } else { "pop3" };
        let tls = if implicit_tls {
            let Some(acceptor) = self.tls.clone() else { return };
            Some(acceptor)
        } else {
            None
        };
        // RFC 3206 response codes: SYS/TEMP (try later), AUTH (the login side).
        let refusals = tern_guard::Refusals {
            busy: b"-ERR [SYS/TEMP] Too many connections\r\n"[..].into(),
            banned: b"-ERR [AUTH] Too many failed logins, try later\r\n"[..].into(),
        };
        let gate = tern_guard::Gate {
            protocol: tern_guard::Protocol::Pop3,
            service,
            implicit_tls: tls.as_ref(),
            limits: &self.limits,
            auth: &self.auth,
            refusals: &refusals,
            proxy_from: &self.settings.proxy_from,
        };
        let Some(tern_guard::Admitted { stream, client, ticket, .. }) =
            tern_guard::admit(gate, stream, peer, &tern_guard::NoScreen).await
        else {
            return;
        };
        Arc::clone(&self).run_session(stream, client).await;
        drop(ticket);
    }
}
