//! The daemon's HTTP endpoints (loopback by default): `GET /metrics` (Prometheus text 0.0.4),
//! `GET /healthz` (200 while the daemon's loop goes round), `GET /status` (the `status --json`
//! document of the kept sessions).

use super::{HEALTHY_WITHIN, Shared};
use crate::metrics::CONTENT_TYPE;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use chrono::Utc;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::Ordering;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(healthz))
        .route("/status", get(status))
        .with_state(shared)
}

pub(super) async fn serve(
    listener: tokio::net::TcpListener,
    shared: Arc<Shared>,
    stop: impl Future<Output = ()> + Send + 'static,
) {
    if let Err(e) = axum::serve(listener, router(shared))
        .with_graceful_shutdown(stop)
        .await
    {
        tracing::error!(error = %e, "the HTTP server stopped");
    }
}

fn unavailable(what: &str) -> Response {
    (
        StatusCode::SERVICE_UNAVAILABLE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{what}\n"),
    )
        .into_response()
}

async fn metrics(State(shared): State<Arc<Shared>>) -> Response {
    let cache = match shared.cache().await {
        Ok(cache) => cache,
        Err(e) => return unavailable(&format!("cannot read the token cache: {e}")),
    };
    let kept = shared.kept();
    let in_file = shared.file().profiles.len();
    let latencies = shared.latencies.lock().expect("latencies lock").clone();
    let text = shared
        .metrics
        .render(&kept, in_file, &cache, Utc::now(), &latencies);
    ([(header::CONTENT_TYPE, CONTENT_TYPE)], text).into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let now = shared.started.elapsed().as_millis() as u64;
    let age =
        std::time::Duration::from_millis(now - shared.heartbeat.load(Ordering::Relaxed).min(now));
    if age <= HEALTHY_WITHIN {
        (
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "ok\n",
        )
            .into_response()
    } else {
        unavailable(&format!(
            "the daemon's loop last ran {} s ago",
            age.as_secs()
        ))
    }
}

async fn status(State(shared): State<Arc<Shared>>) -> Response {
    let cache = match shared.cache().await {
        Ok(cache) => cache,
        Err(e) => return unavailable(&format!("cannot read the token cache: {e}")),
    };
    let kept = shared.kept();
    let empty = crate::session::Entry::default();
    let rows: Vec<(&crate::config::Profile, &crate::session::Entry)> = kept
        .iter()
        .map(|p| (&**p, cache.entry(&p.session_key()).unwrap_or(&empty)))
        .collect();
    let body = crate::cli::status_document(&rows, Utc::now());
    ([(header::CONTENT_TYPE, "application/json")], body).into_response()
}
