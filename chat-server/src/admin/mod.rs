//! The admin listener: metrics and health for Prometheus and the kubelet. It is
//! a separate port so that nothing here is reachable through the user-facing
//! Service.

pub mod metrics;

use std::sync::Arc;

use axum::{Router, extract::State, http::header, response::IntoResponse, routing::get};
use socketioxide::{SocketIo, adapter::Adapter};

use metrics::Metrics;

struct AdminState<A: Adapter> {
    io: SocketIo<A>,
    metrics: Arc<Metrics>,
}

impl<A: Adapter> Clone for AdminState<A> {
    fn clone(&self) -> Self {
        Self {
            io: self.io.clone(),
            metrics: self.metrics.clone(),
        }
    }
}

pub fn router<A: Adapter>(io: SocketIo<A>, metrics: Arc<Metrics>) -> Router {
    Router::new()
        .route("/metrics", get(metrics_text::<A>))
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(|| async { "ready\n" }))
        .with_state(AdminState { io, metrics })
}

/// Gauges that can be read off the live server are refreshed at scrape time,
/// so they can never drift from the truth.
async fn metrics_text<A: Adapter>(State(state): State<AdminState<A>>) -> impl IntoResponse {
    state
        .metrics
        .connected_sockets
        .set(state.io.sockets().len() as i64);
    if let Ok(rooms) = state.io.rooms().await {
        state.metrics.rooms.set(rooms.len() as i64);
    }
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}
