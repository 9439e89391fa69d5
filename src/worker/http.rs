//! The worker's HTTP listener: `/healthz` (the process answers), `/readyz` (mirror fresh,
//! a cycle completed recently, Google reachable; 503 with the failing checks otherwise),
//! `/metrics` (Prometheus text), and the ICS feeds at `/ics/<secret>.ics` (the
//! `ics::feed_router`, merged in). No layer logs request paths: a feed URL is a secret.

use super::metrics::Metrics;
use crate::ics::serve::Clock;
use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

#[derive(Clone)]
struct Probe {
    metrics: Arc<Metrics>,
    clock: Clock,
    /// How old the last mirror refresh and the last cycle may be for `/readyz`.
    window: Duration,
}

/// The listener's routes; `feeds` (the ICS router) is merged in when given.
pub fn router(
    metrics: Arc<Metrics>,
    clock: Clock,
    ready_window: Duration,
    feeds: Option<Router>,
) -> Router {
    let probe = Probe {
        metrics,
        clock,
        window: ready_window,
    };
    let routes = Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .with_state(probe);
    match feeds {
        Some(feeds) => routes.merge(feeds),
        None => routes,
    }
}

async fn healthz() -> &'static str {
    "ok\n"
}

async fn readyz(State(p): State<Probe>) -> Response {
    let verdict = p.metrics.readiness((p.clock)(), p.window);
    let status = if verdict.ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (status, axum::Json(verdict)).into_response()
}

async fn metrics_text(State(p): State<Probe>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        p.metrics.render((p.clock)()),
    )
        .into_response()
}

/// Serves `router` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
