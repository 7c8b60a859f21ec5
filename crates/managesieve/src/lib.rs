//! ManageSieve (RFC 5804) on port 4190: users upload, check, list, activate, rename and
//! delete their Sieve scripts. Scripts are compiled on upload, so an error is answered with
//! its line and column and a broken script is never stored. Logins go through the shared
//! SASL driver and count against the same bans as the mail protocols.
//!
//! [`proto`] is the command codec (bytes in, commands out, no I/O); the session is a state
//! machine over it: not authenticated → authenticated.

pub mod proto;
mod session;

pub use proto::{Command, Parse, literal, parse, parse_sasl_line, quoted};

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tern_directory::Directory;
use tern_guard::{AuthGuard, ConnectionLimits};
use tern_store::Store;
use tern_tls::TlsAcceptor;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone)]
pub struct ManageSieveSettings {
    pub hostname: String,
    pub timeout: Duration,
    pub login_timeout: Duration,
    pub plaintext_on_loopback: bool,
    pub proxy_from: Vec<tern_config::Cidr>,
    /// Largest script accepted, in bytes.
    pub max_script_bytes: usize,
    /// Scripts per user at most.
    pub max_scripts: usize,
}

impl ManageSieveSettings {
    pub fn from_config(config: &tern_config::Config) -> ManageSieveSettings {
        ManageSieveSettings {
            hostname: config.hostname.clone(),
            timeout: Duration::from_secs(config.managesieve.timeout_seconds),
            login_timeout: Duration::from_secs(config.managesieve.login_timeout_seconds),
            plaintext_on_loopback: config.auth.plaintext_on_loopback,
            proxy_from: config.proxy_from(),
            max_script_bytes: config.managesieve.max_script_bytes,
            max_scripts: config.managesieve.max_scripts,
        }
    }
}

pub struct ManageSieveServer {
    pub(crate) settings: ManageSieveSettings,
    pub(crate) directory: Directory,
    pub(crate) store: Arc<dyn Store>,
    pub(crate) tls: Option<TlsAcceptor>,
    limits: Arc<ConnectionLimits>,
    pub(crate) auth: Arc<AuthGuard>,
    pub(crate) shutdown: CancellationToken,
    tracker: TaskTracker,
    next_session: AtomicU64,
}

impl ManageSieveServer {
    pub fn new(
        settings: ManageSieveSettings,
        directory: Directory,
        tls: Option<TlsAcceptor>,
        limits: Arc<ConnectionLimits>,
        auth: Arc<AuthGuard>,
        shutdown: CancellationToken,
    ) -> Arc<ManageSieveServer> {
        Arc::new(ManageSieveServer {
            store: Arc::clone(directory.store()),
            settings,
            directory,
            tls,
            limits,
            auth,
            shutdown,
            tracker: TaskTracker::new(),
            next_session: AtomicU64::new(1),
        })
    }

    /// Accepts connections until shutdown (ManageSieve has no implicit-TLS port).
    pub async fn serve(self: Arc<Self>, listener: TcpListener) {
        tern_guard::accept_until_shutdown(&listener, "managesieve", &self.shutdown, &self.tracker, |stream, peer| {
            let server = Arc::clone(&self);
            async move { server.connection(stream, peer).await }
        })
        .await
    }

    pub async fn drain(&self) {
        self.tracker.close();
        self.tracker.wait().await;
    }

    async fn connection(self: Arc<Self>, stream: tokio::net::TcpStream, peer: SocketAddr) {
        let refusals = tern_guard::Refusals {
            busy: b"BYE (TRYLATER) \"Too many connections\"\r\n"[..].into(),
            banned: b"BYE (TRYLATER) \"Too many failed logins, try later\"\r\n"[..].into(),
        };
        let gate = tern_guard::Gate {
            protocol: tern_guard::Protocol::ManageSieve,
            service: "managesieve",
            implicit_tls: None,
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
        let id = format!("{:x}", self.next_session.fetch_add(1, Ordering::Relaxed));
        let span = tracing::info_span!("managesieve", sid = %id, client = %client);
        let session = session::Session::new(Arc::clone(&self), stream, client);
        tracing::Instrument::instrument(session.run(), span).await;
        drop(ticket);
    }
}
