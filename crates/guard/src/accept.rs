//! The accept loop every listener runs.

use std::borrow::Cow;
use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Accepts connections on `listener` until `shutdown`, each (with `TCP_NODELAY`) handed to
/// `session` and run on `tracker`. A failed accept (EMFILE and friends) backs off for 100 ms
/// instead of spinning.
pub async fn accept_until_shutdown<F, Fut>(
    listener: &TcpListener,
    service: &'static str,
    shutdown: &CancellationToken,
    tracker: &TaskTracker,
    mut session: F,
) where
    F: FnMut(TcpStream, SocketAddr) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                tracker.spawn(session(stream, peer));
            }
            Err(e) => {
                tracing::warn!(service, error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

/// What a protocol tells a client it turns away, as one line of its own syntax.
#[derive(Debug, Clone)]
pub struct Refusals {
    /// Too many connections (in total or from the address): said only in plain text (on an
    /// implicit-TLS port before the handshake there is nobody to read it).
    pub busy: Cow<'static, [u8]>,
    /// The address is banned for failed logins: said after the TLS handshake on implicit-TLS
    /// ports, so the client shows the reason instead of a broken connection.
    pub banned: Cow<'static, [u8]>,
}

/// The mail protocols, each with its own connection metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    Smtp,
    Imap,
    Pop3,
    ManageSieve,
}

impl Protocol {
    /// `tern_<protocol>_connections_{total,refused_total,active}`, named once rather than
    /// formatted for every connection.
    fn metric_names(self) -> (&'static str, &'static str, &'static str) {
        match self {
            Protocol::Smtp => {
                ("tern_smtp_connections_total", "tern_smtp_connections_refused_total", "tern_smtp_connections_active")
            }
            Protocol::Imap => {
                ("tern_imap_connections_total", "tern_imap_connections_refused_total", "tern_imap_connections_active")
            }
            Protocol::Pop3 => {
                ("tern_pop3_connections_total", "tern_pop3_connections_refused_total", "tern_pop3_connections_active")
            }
            Protocol::ManageSieve => (
                "tern_managesieve_connections_total",
                "tern_managesieve_connections_refused_total",
                "tern_managesieve_connections_active",
            ),
        }
    }
}

/// A listener's way in: who it is, its limits and guards.
pub struct Gate<'a> {
    /// Whose connection metrics count it.
    pub protocol: Protocol,
    /// The listener: `smtp`, `submission`, `imaps`...
    pub service: &'static str,
    /// The acceptor of an implicit-TLS port.
    pub implicit_tls: Option<&'a tern_tls::TlsAcceptor>,
    pub limits: &'a std::sync::Arc<crate::ConnectionLimits>,
    pub auth: &'a crate::AuthGuard,
    pub refusals: &'a Refusals,
    /// Load balancers whose connections start with a PROXY header (`[listen] proxy_from`).
    pub proxy_from: &'a [tern_config::Cidr],
}

/// Checks a protocol runs on the plain connection before TLS and its greeting (SMTP's
/// connection rate, DNS blocklists and early talkers on port 25).
pub trait Screen: Sync {
    /// What the checks learned, kept with the session.
    type Notes: Send;
    /// `Err` is the refusal to send before closing.
    fn screen(
        &self,
        stream: &TcpStream,
        client: SocketAddr,
    ) -> impl Future<Output = Result<Self::Notes, Vec<u8>>> + Send;
}

/// No checks beyond the gate's own.
pub struct NoScreen;

impl Screen for NoScreen {
    type Notes = ();
    async fn screen(&self, _: &TcpStream, _: SocketAddr) -> Result<(), Vec<u8>> {
        Ok(())
    }
}

/// How long a trusted balancer has to send its PROXY header.
const PROXY_HEADER_WAIT: Duration = Duration::from_secs(5);

/// A connection let in: its stream (TLS done on implicit-TLS ports), the client's address
/// (from the PROXY header when a trusted balancer sent one), what the screen noted, its ticket.
pub struct Admitted<N> {
    pub stream: tern_tls::Stream<TcpStream>,
    pub client: SocketAddr,
    pub notes: N,
    pub ticket: Ticket,
}

/// A connection's place among the connection limits and its count in
/// `tern_<protocol>_connections_active`: kept for the session's life, given back on drop.
pub struct Ticket {
    _slot: crate::ConnectionSlot,
    gauge: metrics::Gauge,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.gauge.decrement(1.0);
    }
}

/// The way in for every mail protocol's connection, in one place: the PROXY header from
/// trusted balancers, counted (`tern_<protocol>_connections_total{service}`), the connection
/// limits (total and per address), the failed-login ban, the protocol's own screen, the TLS
/// handshake on implicit-TLS ports; each refusal said in the protocol's words and logged.
pub async fn admit<S: Screen>(
    gate: Gate<'_>,
    mut stream: TcpStream,
    peer: SocketAddr,
    screen: &S,
) -> Option<Admitted<S::Notes>> {
    use tokio::io::AsyncWriteExt;
    let service = gate.service;
    let client = if gate.proxy_from.iter().any(|net| net.contains(peer.ip())) {
        match crate::proxy::read_header(&mut stream, PROXY_HEADER_WAIT).await {
            Ok(Some(client)) => client,
            Ok(None) => peer,
            Err(e) => {
                tracing::warn!(proxy = %peer, service, error = %e, "connection refused: bad PROXY header");
                return None;
            }
        }
    } else {
        peer
    };
    let (total, refused_total, active) = gate.protocol.metric_names();
    metrics::counter!(total, "service" => service).increment(1);
    let refused = |reason: &'static str| {
        metrics::counter!(refused_total, "service" => service, "reason" => reason).increment(1);
    };
    let slot = match gate.limits.acquire(client.ip()) {
        Ok(slot) => slot,
        Err(why) => {
            let reason = if why == crate::LimitExceeded::Total { "total" } else { "per_ip" };
            refused(reason);
            tracing::info!(client = %client, service, reason, "connection refused: too many connections");
            if gate.implicit_tls.is_none() {
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&gate.refusals.busy)).await;
            }
            return None;
        }
    };
    let banned = matches!(gate.auth.check(client.ip()), crate::AuthVerdict::Banned(_));
    let notes = if banned {
        None
    } else {
        match screen.screen(&stream, client).await {
            Ok(notes) => Some(notes),
            Err(refusal) => {
                // The screen counts its refusals by their reasons.
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(&refusal)).await;
                return None;
            }
        }
    };
    let mut stream = match gate.implicit_tls {
        Some(acceptor) => tern_tls::Stream::Tls(Box::new(tern_tls::handshake(acceptor, stream, client).await?)),
        None => tern_tls::Stream::Plain(stream),
    };
    let Some(notes) = notes else {
        refused("banned");
        tracing::info!(client = %client, service, "connection refused: address banned");
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            stream.write_all(&gate.refusals.banned).await?;
            stream.shutdown().await
        })
        .await;
        return None;
    };
    let gauge = metrics::gauge!(active, "service" => service);
    gauge.increment(1.0);
    Some(Admitted { stream, client, notes, ticket: Ticket { _slot: slot, gauge } })
}
