//! The HTTP listener: `/metrics` (Prometheus text format), `/healthz` (the process answers),
//! `/readyz` (listeners up, store writable, not shutting down), and mail client
//! autoconfiguration (`crate::autoconfig`), the REST API (`crate::api`, `/api/v1`) and the web
//! admin (`crate::web`, `/admin`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tern_store::Store;

/// The address of the client of an HTTP request.
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

#[derive(Clone)]
pub struct HttpState {
    /// What the REST API and the web admin act on (`crate::api`, `crate::web`).
    pub api: Arc<crate::api::ApiContext>,
    pub metrics: PrometheusHandle,
    pub store: Arc<dyn Store>,
    pub ready: Arc<AtomicBool>,
    pub autoconfig: crate::autoconfig::AutoconfigState,
    pub mta_sts: crate::mta_sts::MtaStsState,
    /// ACME HTTP-01 answers (empty unless an order is under way).
    pub acme_tokens: crate::acme::HttpTokens,
}

/// Time a client has to send a request's header (from the connection's start or the end of
/// the previous response), and the longest a connection may live: half-sent requests do not
/// hold connections open.
const HEADER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);
const CONNECTION_LIFETIME: std::time::Duration = std::time::Duration::from_secs(120);

/// Serves `router` on `listener` until `shutdown`, over TLS when `tls` is given, each
/// connection bounded by [`HEADER_TIMEOUT`] (the TLS handshake included) and
/// [`CONNECTION_LIFETIME`].
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tern_tls::TlsAcceptor>,
    shutdown: tokio_util::sync::CancellationToken,
) {
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        let router = router.clone();
        let shutdown = shutdown.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(stream, peer, router, shutdown).await,
                Some(tls) => match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, peer, router, shutdown).await,
                    Ok(Err(e)) => tracing::debug!(client = %peer, error = %e, "HTTPS: TLS handshake failed"),
                    Err(_) => tracing::debug!(client = %peer, "HTTPS: TLS handshake timed out"),
                },
            }
        });
    }
}

/// One HTTP/1.1 connection, until it ends, its lifetime is reached, or shutdown.
async fn serve_connection<S>(
    stream: S,
    peer: std::net::SocketAddr,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    // Handlers that guard logins (the REST API's tokens) need the client's address.
    let service = TowerToHyperService::new(router.layer(axum::Extension(ClientAddr(peer))));
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), service);
    let mut conn = std::pin::pin!(conn);
    let lifetime = tokio::time::sleep(CONNECTION_LIFETIME);
    tokio::pin!(lifetime);
    tokio::select! {
        r = conn.as_mut() => {
            if let Err(e) = r {
                tracing::debug!(client = %peer, error = %e, "HTTP connection ended");
            }
        }
        _ = &mut lifetime => tracing::debug!(client = %peer, "HTTP connection closed: lifetime reached"),
        _ = shutdown.cancelled() => {
            conn.as_mut().graceful_shutdown();
            let _ = tokio::time::timeout(std::time::Duration::from_secs(5), conn).await;
        }
    }
}

/// What the HTTPS listener serves to the world: mail client autoconfiguration and the
/// MTA-STS policy (no metrics or health: those stay on the `http` listener, loopback by
/// default).
pub fn public_router(state: &HttpState) -> Router {
    use crate::autoconfig::{autodiscover_handler, mobileconfig_handler, thunderbird_handler};
    use axum::routing::post;
    let autoconfig = Router::new()
        .route("/.well-known/autoconfig/mail/config-v1.1.xml", get(thunderbird_handler))
        .route("/mail/config-v1.1.xml", get(thunderbird_handler))
        .route("/autodiscover/autodiscover.xml", post(autodiscover_handler))
        .route("/Autodiscover/Autodiscover.xml", post(autodiscover_handler))
        .route("/apple/mail.mobileconfig", get(mobileconfig_handler))
        .with_state(state.autoconfig.clone());
    let mta_sts =
        Router::new().route("/.well-known/mta-sts.txt", get(crate::mta_sts::handler)).with_state(state.mta_sts.clone());
    let acme = Router::new()
        .route("/.well-known/acme-challenge/{token}", get(crate::acme::http_challenge))
        .with_state(state.acme_tokens.clone());
    autoconfig.merge(mta_sts).merge(acme)
}

/// The `http` listener: metrics, health, and everything [`public_router`] serves.
pub fn router(state: HttpState) -> Router {
    let public = public_router(&state);
    let api = crate::api::router(Arc::clone(&state.api));
    let web = crate::web::router(Arc::clone(&state.api));
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
        .merge(public)
        .merge(api)
        .merge(web)
}

async fn metrics(State(s): State<HttpState>) -> ([(axum::http::HeaderName, &'static str); 1], String) {
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], s.metrics.render())
}

async fn readyz(State(s): State<HttpState>) -> (StatusCode, &'static str) {
    if !s.ready.load(Ordering::Relaxed) {
        (StatusCode::SERVICE_UNAVAILABLE, "starting or shutting down\n")
    } else if !s.store.is_healthy() {
        (StatusCode::SERVICE_UNAVAILABLE, "store not writable\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}
