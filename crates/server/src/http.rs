//! The HTTP listener: `/metrics` (Prometheus text format), `/healthz` (the process answers),
//! `/readyz` (listeners up, store writable, not shutting down).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use metrics_exporter_prometheus::PrometheusHandle;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tern_store::Store;

#[derive(Clone)]
pub struct HttpState {
    pub metrics: PrometheusHandle,
    pub store: Arc<dyn Store>,
    pub ready: Arc<AtomicBool>,
}

pub fn router(state: HttpState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .with_state(state)
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
