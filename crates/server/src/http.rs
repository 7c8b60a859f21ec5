//! The HTTP listener: `/metrics` (Prometheus text format), `/healthz` (the process answers),
//! `/readyz` (listeners up, store writable, not shutting down), and mail client
//! autoconfiguration (`crate::autoconfig`), the REST API (`crate::api`, `/api/v1`) and the web
//! admin (`crate::web`, `/admin`).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tern_config::Cidr;
use tern_store::Store;

/// The address of the client of an HTTP request: the connection's peer, or the client a
/// trusted balancer or proxy (`[listen] proxy_from`) names (see [`Arrival`]).
#[derive(Debug, Clone, Copy)]
pub struct ClientAddr(pub std::net::SocketAddr);

/// How a connection reached an HTTP listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arrival {
    /// From the client itself, or from a balancer that named the client in a PROXY header.
    Client(SocketAddr),
    /// From a trusted address without a PROXY header: an HTTP proxy, whose `X-Forwarded-For`
    /// names the client (or the balancer's own health check, which has none).
    Proxy(SocketAddr),
}

/// The client of one request. Behind a trusted HTTP proxy: the last address in
/// `X-Forwarded-For` that is not itself one of `proxy_from` (each proxy appends the address
/// it was reached from, so the entries before those are whatever the client claimed). The
/// proxy's own address when the header is missing or an entry does not parse.
fn client_of(arrival: Arrival, headers: &axum::http::HeaderMap, proxy_from: &[Cidr]) -> SocketAddr {
    let proxy = match arrival {
        Arrival::Client(client) => return client,
        Arrival::Proxy(proxy) => proxy,
    };
    let entries = headers.get_all("x-forwarded-for").iter().flat_map(|v| v.to_str().unwrap_or("?").split(','));
    for entry in entries.rev().map(str::trim) {
        let ip = match entry.parse::<IpAddr>() {
            Ok(ip) => ip,
            // Some proxies add the port (`192.0.2.7:4711`, `[2001:db8::7]:4711`).
            Err(_) => match entry.parse::<SocketAddr>() {
                Ok(addr) => addr.ip(),
                Err(_) => return proxy,
            },
        };
        if !proxy_from.iter().any(|net| net.contains(ip)) {
            return SocketAddr::new(ip, 0);
        }
    }
    proxy
}

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
/// [`CONNECTION_LIFETIME`]. Connections from `proxy_from` may start with a PROXY header (v1
/// or v2) naming the client; without one, their requests' `X-Forwarded-For` does.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    tls: Option<tern_tls::TlsAcceptor>,
    proxy_from: Arc<[Cidr]>,
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
        let proxy_from = Arc::clone(&proxy_from);
        tokio::spawn(async move {
            let mut stream = stream;
            let arrival = if proxy_from.iter().any(|net| net.contains(peer.ip())) {
                // Optional here: an HTTP request or a TLS record never starts like a header, and
                // the balancer's health checks and HTTP proxies send none.
                match tern_guard::proxy::read_optional_header(&mut stream, HEADER_TIMEOUT).await {
                    Ok(Some(client)) => Arrival::Client(client),
                    Ok(None) => Arrival::Proxy(peer),
                    // A TCP health check connects and closes: nothing to report.
                    Err(tern_guard::proxy::ProxyError::Closed) => return,
                    Err(e) => {
                        tracing::warn!(proxy = %peer, error = %e, "HTTP connection refused: bad PROXY header");
                        return;
                    }
                }
            } else {
                Arrival::Client(peer)
            };
            match tls {
                None => serve_connection(stream, arrival, proxy_from, router, shutdown).await,
                Some(tls) => match tokio::time::timeout(HEADER_TIMEOUT, tls.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(stream, arrival, proxy_from, router, shutdown).await,
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
    arrival: Arrival,
    proxy_from: Arc<[Cidr]>,
    router: Router,
    shutdown: tokio_util::sync::CancellationToken,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    use hyper_util::rt::{TokioIo, TokioTimer};
    use hyper_util::service::TowerToHyperService;
    let peer = match arrival {
        Arrival::Client(a) | Arrival::Proxy(a) => a,
    };
    // Handlers that guard logins (the REST API's tokens, the web admin's sign-in) need the
    // client's address: each request's, as a proxy's connection carries many clients.
    let router = router.layer(axum::middleware::from_fn(
        move |mut request: axum::extract::Request, next: axum::middleware::Next| {
            let client = client_of(arrival, request.headers(), &proxy_from);
            request.extensions_mut().insert(ClientAddr(client));
            next.run(request)
        },
    ));
    let service = TowerToHyperService::new(router);
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

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;

    fn headers(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append("x-forwarded-for", v.parse().unwrap());
        }
        h
    }

    #[test]
    fn the_client_behind_trusted_proxies() {
        let trusted = [Cidr::parse("10.0.0.0/8").unwrap(), Cidr::parse("2001:db8:ff::/48").unwrap()];
        let proxy: SocketAddr = "10.0.0.2:5000".parse().unwrap();
        let ip = |h: &[&str]| client_of(Arrival::Proxy(proxy), &headers(h), &trusted).ip().to_string();
        // The address the proxy appended, not what the client put before it.
        assert_eq!(ip(&["198.51.100.1, 192.0.2.7"]), "192.0.2.7");
        assert_eq!(ip(&["198.51.100.1", "192.0.2.7"]), "192.0.2.7");
        // A chain of trusted proxies is walked back to the first address that is not one.
        assert_eq!(ip(&["198.51.100.1, 192.0.2.7, 10.1.1.1"]), "192.0.2.7");
        assert_eq!(ip(&["2001:db8::7, 2001:db8:ff::1"]), "2001:db8::7");
        assert_eq!(ip(&["192.0.2.7:4711"]), "192.0.2.7");
        assert_eq!(ip(&["[2001:db8::7]:4711"]), "2001:db8::7");
        // Nothing usable: the proxy itself.
        assert_eq!(ip(&[]), "10.0.0.2");
        assert_eq!(ip(&["10.1.1.1"]), "10.0.0.2");
        assert_eq!(ip(&["192.0.2.7, unknown"]), "10.0.0.2");
        assert_eq!(ip(&[""]), "10.0.0.2");
        // A connection from the client itself, or named by a PROXY header: the header is the
        // client's own claim and counts for nothing.
        let client: SocketAddr = "192.0.2.9:4000".parse().unwrap();
        assert_eq!(client_of(Arrival::Client(client), &headers(&["203.0.113.1"]), &trusted), client);
    }
}
