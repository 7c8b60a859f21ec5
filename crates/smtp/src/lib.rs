//! SMTP service: accepts connections, enforces connection limits, and runs one
//! [`session`] state machine per connection. The session hands complete messages to the
//! pipeline and commits them to the store before answering `250`.

mod auth;
pub mod inbound;
mod session;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tern_directory::Directory;
use tern_guard::{AuthGuard, ConnectionLimits};
use tern_pipeline::Pipeline;
use tern_store::Store;
use tern_tls::TlsAcceptor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Per-service SMTP settings.
#[derive(Debug, Clone)]
pub struct SmtpSettings {
    pub hostname: String,
    /// `smtp` (port 25: mail for local domains) or `submission` (ports 587 and 465: mail
    /// from authenticated users to anywhere).
    pub service: &'static str,
    /// Submission rules: AUTH offered (after TLS), MAIL needs it, senders must be owned.
    pub submission: bool,
    /// Allow AUTH without TLS from loopback (`auth.plaintext_on_loopback`).
    pub plaintext_on_loopback: bool,
    pub max_message_size: u64,
    pub max_recipients: usize,
    pub max_line_length: usize,
    pub timeout: Duration,
    /// The whole session's limit.
    pub session_max: Duration,
    pub max_errors: u32,
    /// How long a quarantined message is kept (`quarantine.retention_days`).
    pub quarantine_retention_seconds: i64,
    /// Load balancers that send PROXY headers (`listen.proxy_from`).
    pub proxy_from: Vec<tern_config::Cidr>,
}

impl SmtpSettings {
    pub fn from_config(config: &tern_config::Config, service: &'static str) -> SmtpSettings {
        SmtpSettings {
            proxy_from: config.proxy_from(),
            hostname: config.hostname.clone(),
            service,
            submission: service != "smtp",
            plaintext_on_loopback: config.auth.plaintext_on_loopback,
            max_message_size: config.smtp.max_message_size,
            max_recipients: config.smtp.max_recipients,
            max_line_length: config.smtp.max_line_length,
            timeout: Duration::from_secs(config.smtp.timeout_seconds),
            session_max: Duration::from_secs(config.smtp.session_max_seconds),
            max_errors: config.smtp.max_errors,
            quarantine_retention_seconds: i64::try_from(config.quarantine.retention_days)
                .unwrap_or(i64::MAX / 86_400)
                .saturating_mul(86_400),
        }
    }
}

/// State shared by all SMTP sessions of one service.
pub struct SmtpServer {
    pub(crate) settings: SmtpSettings,
    pub(crate) directory: Directory,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) pipeline: Pipeline,
    pub(crate) tls: Option<TlsAcceptor>,
    pub(crate) limits: Arc<ConnectionLimits>,
    /// Failed-login accounting shared with IMAP and POP3.
    pub(crate) auth: Arc<AuthGuard>,
    /// Anti-abuse checks (port 25).
    pub(crate) inbound: Option<Arc<inbound::InboundChecks>>,
    /// Message bytes held by all sessions, in KiB permits.
    /// Message data in memory, shared by every SMTP service (`smtp.max_inflight_bytes`).
    pub(crate) memory: Arc<tern_guard::MessageMemory>,
    pub(crate) shutdown: CancellationToken,
    /// What a client turned away at connect is told.
    refusals: tern_guard::Refusals,
    tracker: TaskTracker,
    next_session: AtomicU64,
}

impl SmtpServer {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        settings: SmtpSettings,
        directory: Directory,
        pipeline: Pipeline,
        tls: Option<TlsAcceptor>,
        limits: Arc<ConnectionLimits>,
        auth: Arc<AuthGuard>,
        inbound: Option<Arc<inbound::InboundChecks>>,
        memory: Arc<tern_guard::MessageMemory>,
        shutdown: CancellationToken,
    ) -> Arc<SmtpServer> {
        let host = &settings.hostname;
        let refusals = tern_guard::Refusals {
            busy: format!("421 4.7.0 {host} Too many connections, try again later\r\n").into_bytes().into(),
            banned: format!("421 4.7.0 {host} Your address is temporarily blocked, try again later\r\n")
                .into_bytes()
                .into(),
        };
        Arc::new(SmtpServer {
            refusals,
            store: Arc::clone(directory.store()),
            settings,
            directory,
            pipeline,
            tls,
            limits,
            auth,
            inbound,
            memory,
            shutdown,
            tracker: TaskTracker::new(),
            next_session: AtomicU64::new(1),
        })
    }

    /// Accepts connections until shutdown; `implicit_tls` for port 465 (RFC 8314).
    pub async fn serve(self: Arc<Self>, listener: TcpListener, implicit_tls: bool) {
        tern_guard::accept_until_shutdown(
            &listener,
            self.settings.service,
            &self.shutdown,
            &self.tracker,
            |stream, peer| {
                let server = Arc::clone(&self);
                async move { server.connection(stream, peer, implicit_tls).await }
            },
        )
        .await
    }

    /// Waits until every session has ended (after shutdown was signalled).
    pub async fn drain(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream, peer: SocketAddr, implicit_tls: bool) {
        let service = self.settings.service;
        let tls = match (implicit_tls, &self.tls) {
            (false, _) => None,
            (true, Some(acceptor)) => Some(acceptor.clone()),
            (true, None) => return,
        };
        let gate = tern_guard::Gate {
            protocol: tern_guard::Protocol::Smtp,
            service,
            implicit_tls: tls.as_ref(),
            limits: &self.limits,
            auth: &self.auth,
            refusals: &self.refusals,
            proxy_from: &self.settings.proxy_from,
        };
        let screen = Port25Checks(self.inbound.as_deref());
        let Some(tern_guard::Admitted { stream, client, notes: dnsbl, ticket }) =
            tern_guard::admit(gate, stream, peer, &screen).await
        else {
            return;
        };
        self.run_session(stream, client, dnsbl).await;
        drop(ticket);
    }

    /// One SMTP session on any byte stream, from the greeting to the end: what every
    /// admitted connection runs, and what tests run over an in-memory duplex stream.
    /// `dnsbl` names the blocklists that list the client (port 25's screen).
    pub async fn run_session<S>(self: Arc<Self>, stream: tern_tls::Stream<S>, client: SocketAddr, dnsbl: Vec<String>)
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + Sync + 'static,
    {
        let id = format!("{:x}", self.next_session.fetch_add(1, Ordering::Relaxed));
        let span = tracing::info_span!("smtp", sid = %id, client = %client, service = self.settings.service);
        let mut session = session::Session::new(Arc::clone(&self), stream, client, id);
        session.dnsbl = dnsbl;
        tracing::Instrument::instrument(session.run(), span).await;
    }
}

/// Port 25's checks before the greeting, for clients outside the exempt networks: the
/// connection rate, DNS blocklists (their names are noted for the headers), early talkers.
struct Port25Checks<'a>(Option<&'a inbound::InboundChecks>);

impl tern_guard::Screen for Port25Checks<'_> {
    type Notes = Vec<String>;

    async fn screen(&self, stream: &tokio::net::TcpStream, client: SocketAddr) -> Result<Vec<String>, Vec<u8>> {
        match self.0 {
            Some(checks) if checks.applies(client.ip()) => {
                checks.at_connect(stream, client).await.map_err(|r| r.to_bytes())
            }
            _ => Ok(Vec::new()),
        }
    }
}

/// A transaction id for logs and Received headers: time-ordered and unique per process.
pub fn new_queue_id() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let millis =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_millis() as u64).unwrap_or(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{:011X}{:05X}", millis & 0xFFF_FFFF_FFFF, n & 0xFFFFF)
}
