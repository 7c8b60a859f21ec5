//! The accept loop every listener runs.

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
#[derive(Debug, Clone, Copy)]
pub struct Refusals {
    /// Too many connections (in total or from the address): said only in plain text (on an
    /// implicit-TLS port before the handshake there is nobody to read it).
    pub busy: &'static [u8],
    /// The address is banned for failed logins: said after the TLS handshake on implicit-TLS
    /// ports, so the client shows the reason instead of a broken connection.
    pub banned: &'static [u8],
}

/// A connection let in: its stream (TLS done on implicit-TLS ports) and its ticket.
pub struct Admitted {
    pub stream: tern_tls::Stream<TcpStream>,
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

/// The way in for every mail protocol's connection, in one place: counted
/// (`tern_<protocol>_connections_total{service}`), the connection limits (total and per
/// address), the failed-login ban, the TLS handshake on implicit-TLS ports; each refusal said
/// in the protocol's words and logged.
#[allow(clippy::too_many_arguments)]
pub async fn admit(
    mut stream: TcpStream,
    peer: SocketAddr,
    protocol: &'static str,
    service: &'static str,
    implicit_tls: Option<&tern_tls::TlsAcceptor>,
    limits: &std::sync::Arc<crate::ConnectionLimits>,
    auth: &crate::AuthGuard,
    refusals: Refusals,
) -> Option<Admitted> {
    use tokio::io::AsyncWriteExt;
    metrics::counter!(format!("tern_{protocol}_connections_total"), "service" => service).increment(1);
    let slot = match limits.acquire(peer.ip()) {
        Ok(slot) => slot,
        Err(why) => {
            let reason = if why == crate::LimitExceeded::Total { "total" } else { "per_ip" };
            tracing::info!(client = %peer, service, reason, "connection refused: too many connections");
            if implicit_tls.is_none() {
                let _ = tokio::time::timeout(Duration::from_secs(5), stream.write_all(refusals.busy)).await;
            }
            return None;
        }
    };
    let banned = matches!(auth.check(peer.ip()), crate::AuthVerdict::Banned(_));
    let mut stream = match implicit_tls {
        Some(acceptor) => tern_tls::Stream::Tls(Box::new(tern_tls::handshake(acceptor, stream, peer).await?)),
        None => tern_tls::Stream::Plain(stream),
    };
    if banned {
        tracing::info!(client = %peer, service, "connection refused: address banned");
        let _ = tokio::time::timeout(Duration::from_secs(5), async {
            stream.write_all(refusals.banned).await?;
            stream.shutdown().await
        })
        .await;
        return None;
    }
    let gauge = metrics::gauge!(format!("tern_{protocol}_connections_active"), "service" => service);
    gauge.increment(1.0);
    Some(Admitted { stream, ticket: Ticket { _slot: slot, gauge } })
}
