//! The operator's HTTP endpoint: `/healthz` (the process serves requests), `/readyz` (a
//! standby replica waiting for the Lease, or the leader once its caches are synced) and
//! `/metrics` (Prometheus text format).

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;

use crate::readiness::{Phase, Readiness};
use crate::telemetry::Metrics;
use crate::{Error, Result};

#[derive(Clone)]
struct AppState {
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
}

/// Binds `addr` and serves until the process ends. Returns the bound address (useful with
/// port 0) and the serving future.
pub async fn bind(
    addr: SocketAddr,
    metrics: Arc<Metrics>,
    readiness: Arc<Readiness>,
) -> Result<(SocketAddr, impl Future<Output = std::io::Result<()>>)> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| Error::Http { addr, source })?;
    let bound = listener.local_addr().map_err(|source| Error::Http { addr, source })?;
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(AppState { metrics, readiness });
    Ok((bound, axum::serve(listener, app).into_future()))
}

async fn readyz(State(state): State<AppState>) -> impl IntoResponse {
    match state.readiness.phase() {
        Phase::Standby => (StatusCode::OK, "ok: standby, waiting for the leader lease\n"),
        Phase::Leading => (StatusCode::OK, "ok: leading\n"),
        Phase::Starting => (StatusCode::SERVICE_UNAVAILABLE, "starting\n"),
        Phase::Syncing => (StatusCode::SERVICE_UNAVAILABLE, "leading, caches not synced yet\n"),
        Phase::Stopping => (StatusCode::SERVICE_UNAVAILABLE, "stopping\n"),
    }
}

/// OpenMetrics for a scraper that asks for it (Prometheus does); the Prometheus text format
/// (0.0.4) for everything else: `curl`, `promtool check metrics`, older scrapers.
async fn metrics_text(State(state): State<AppState>, headers: HeaderMap) -> impl IntoResponse {
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .any(|value| value.contains("application/openmetrics-text"));
    if openmetrics {
        (
            [(
                header::CONTENT_TYPE,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )],
            state.metrics.encode(),
        )
    } else {
        (
            [(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")],
            state.metrics.encode_text_format(),
        )
    }
}
