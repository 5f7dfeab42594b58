//! The admin listener: metrics and health for Prometheus and the kubelet, and
//! the drain API for the operator. It is a separate port so that nothing here
//! is reachable through the user-facing Service.

pub mod drain;
pub mod gate;
pub mod metrics;
mod moving;

use std::sync::Arc;

use axum::{
    Json, Router,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chatscale_contract::admin as api;
use socketioxide::{SocketIo, adapter::Adapter};

use crate::secret::Secret;
use drain::Drain;
use metrics::Metrics;

struct AdminState<A: Adapter> {
    io: SocketIo<A>,
    metrics: Arc<Metrics>,
    drain: Arc<Drain>,
    token: Option<Secret>,
}

impl<A: Adapter> Clone for AdminState<A> {
    fn clone(&self) -> Self {
        Self {
            io: self.io.clone(),
            metrics: self.metrics.clone(),
            drain: self.drain.clone(),
            token: self.token.clone(),
        }
    }
}

pub fn router<A: Adapter>(
    io: SocketIo<A>,
    metrics: Arc<Metrics>,
    drain: Arc<Drain>,
    token: Option<Secret>,
) -> Router {
    Router::new()
        .route(api::METRICS, get(metrics_text::<A>))
        .route(api::HEALTHZ, get(|| async { "ok\n" }))
        .route(api::READYZ, get(readyz::<A>))
        .route(
            api::DRAIN,
            get(drain_status::<A>)
                .post(drain_start::<A>)
                .delete(drain_cancel::<A>),
        )
        .with_state(AdminState {
            io,
            metrics,
            drain,
            token,
        })
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

/// Not ready while draining, so Services and load balancers stop sending clients.
async fn readyz<A: Adapter>(State(state): State<AdminState<A>>) -> impl IntoResponse {
    if state.drain.refuses_new_sessions() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

// The status the operator reads as "too late to cancel".
const _: () = assert!(StatusCode::CONFLICT.as_u16() == api::CANCEL_TOO_LATE);

/// Why a drain API request was refused.
enum Refusal {
    NoTokenConfigured,
    BadToken,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NoTokenConfigured => (
                StatusCode::FORBIDDEN,
                "the drain API is disabled: no admin token configured (--admin-token-file or CHAT_ADMIN_TOKEN)\n",
            )
                .into_response(),
            Refusal::BadToken => (
                StatusCode::UNAUTHORIZED,
                [(header::WWW_AUTHENTICATE, "Bearer")],
                "a valid admin bearer token is required\n",
            )
                .into_response(),
        }
    }
}

/// The drain API needs `Authorization: Bearer <admin token>`.
fn authorize<A: Adapter>(state: &AdminState<A>, headers: &HeaderMap) -> Result<(), Refusal> {
    let token = state.token.as_ref().ok_or(Refusal::NoTokenConfigured)?;
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match presented {
        Some(candidate) if token.matches(candidate) => Ok(()),
        _ => Err(Refusal::BadToken),
    }
}

async fn drain_status<A: Adapter>(
    State(state): State<AdminState<A>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused.into_response();
    }
    Json(state.drain.status(&state.io)).into_response()
}

async fn drain_start<A: Adapter>(
    State(state): State<AdminState<A>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused.into_response();
    }
    state.drain.start(state.io.clone());
    (StatusCode::ACCEPTED, Json(state.drain.status(&state.io))).into_response()
}

async fn drain_cancel<A: Adapter>(
    State(state): State<AdminState<A>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused.into_response();
    }
    match state.drain.cancel() {
        Ok(()) => Json(state.drain.status(&state.io)).into_response(),
        Err(now) => (
            StatusCode::CONFLICT,
            format!(
                "nothing to cancel: the server is {}\n",
                serde_json::to_string(&now).unwrap_or_default()
            ),
        )
            .into_response(),
    }
}
