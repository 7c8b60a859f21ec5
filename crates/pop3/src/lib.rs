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

/// Releases a mailbox lock when the session ends, however it ends: this process's, and the
/// store's lock that keeps the sessions of other nodes out (cluster mode).
pub(crate) struct LockGuard {
    locks: Arc<Locks>,
    mailbox: MailboxId,
    shared: Option<SharedLock>,
}

/// The store's lock on a maildrop, renewed while the session lasts.
pub(crate) struct SharedLock {
    store: Arc<dyn Store>,
    holder: u64,
    seconds: u64,
    renew_at: std::time::Instant,
}

impl SharedLock {
    fn key(mailbox: MailboxId) -> String {
        format!("pop3:{mailbox}")
    }
}

impl Locks {
    /// Locks the maildrop in this process, then in the store (for the other nodes); `Ok(None)`
    /// when a session somewhere has it. `seconds`: how long the store's lock lasts unrenewed
    /// (a node that dies holding it frees the maildrop after that).
    pub(crate) async fn try_lock(
        self: &Arc<Self>,
        store: &Arc<dyn Store>,
        mailbox: MailboxId,
        seconds: u64,
    ) -> Result<Option<LockGuard>, tern_store::StoreError> {
        let mut guard = {
            let mut held = self.held.lock().unwrap_or_else(|p| p.into_inner());
            if !held.insert(mailbox) {
                return Ok(None);
            }
            LockGuard { locks: Arc::clone(self), mailbox, shared: None }
        };
        let holder = rand::random::<u64>() >> 1;
        if !store.lock_take(&SharedLock::key(mailbox), holder, seconds).await? {
            return Ok(None);
        }
        guard.shared = Some(SharedLock {
            store: Arc::clone(store),
            holder,
            seconds,
            renew_at: std::time::Instant::now() + std::time::Duration::from_secs(seconds / 3),
        });
        Ok(Some(guard))
    }
}

impl LockGuard {
    /// Renews the store's lock when a third of its time has passed.
    pub(crate) async fn keep(&mut self) {
        let mailbox = self.mailbox;
        let Some(shared) = self.shared.as_mut() else { return };
        if std::time::Instant::now() < shared.renew_at {
            return;
        }
        match shared.store.lock_take(&SharedLock::key(mailbox), shared.holder, shared.seconds).await {
            Ok(true) => {
                shared.renew_at = std::time::Instant::now() + std::time::Duration::from_secs(shared.seconds / 3)
            }
            Ok(false) => tracing::warn!(mailbox, "the maildrop's lock was taken by another session"),
            Err(e) => tracing::warn!(mailbox, error = %e, "cannot renew the maildrop's lock"),
        }
    }

    /// Gives the store's lock up now (the caller answers once the others may have it).
    pub(crate) async fn release(&mut self) {
        if let Some(shared) = self.shared.take()
            && let Err(e) = shared.store.lock_release(&SharedLock::key(self.mailbox), shared.holder).await
        {
            tracing::warn!(mailbox = self.mailbox, error = %e, "cannot release the maildrop's lock; it ends by itself");
        }
    }
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        self.locks.held.lock().unwrap_or_else(|p| p.into_inner()).remove(&self.mailbox);
        // A session that ended without QUIT: the store's lock goes in the background.
        if let Some(shared) = self.shared.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            let key = SharedLock::key(self.mailbox);
            runtime.spawn(async move {
                let _ = shared.store.lock_release(&key, shared.holder).await;
            });
        }
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
