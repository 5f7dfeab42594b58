//! The admin listener: metrics and health for Prometheus and the kubelet, and
//! the drain and shed APIs for the operator. It is a separate port so that
//! nothing here is reachable through the user-facing Service.

pub mod drain;
pub mod gate;
pub mod metrics;
mod moving;
pub mod shed;

use std::sync::Arc;

use axum::{
    Json, Router,
    body::Bytes,
    extract::State,
    http::{HeaderMap, StatusCode, header},
    response::{IntoResponse, Response},
    routing::get,
};
use chatscale_contract::admin::{self as api, ShedRequest};
use socketioxide::{SocketIo, adapter::Adapter};

use crate::secret::Secret;
use drain::Drain;
use metrics::Metrics;
use shed::Shed;

struct AdminState<A: Adapter> {
    io: SocketIo<A>,
    metrics: Arc<Metrics>,
    drain: Arc<Drain>,
    shed: Arc<Shed>,
    token: Option<Secret>,
}

impl<A: Adapter> Clone for AdminState<A> {
    fn clone(&self) -> Self {
        Self {
            io: self.io.clone(),
            metrics: self.metrics.clone(),
            drain: self.drain.clone(),
            shed: self.shed.clone(),
            token: self.token.clone(),
        }
    }
}

pub fn router<A: Adapter>(
    io: SocketIo<A>,
    metrics: Arc<Metrics>,
    drain: Arc<Drain>,
    shed: Arc<Shed>,
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
        .route(
            api::SHED,
            get(shed_status::<A>)
                .post(shed_start::<A>)
                .delete(shed_stop::<A>),
        )
        .with_state(AdminState {
            io,
            metrics,
            drain,
            shed,
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
    // This server's rooms: asking every server (`io.rooms()`) would make
    // each scrape a request to the whole cluster.
    if let Ok(rooms) = state.io.local().rooms().await {
        state.metrics.rooms.set(rooms.len() as i64);
    }
    state.metrics.shedding.set(i64::from(state.shed.shedding()));
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.render(),
    )
}

/// Not ready while draining or shedding, so Services and load balancers stop
/// sending clients.
async fn readyz<A: Adapter>(State(state): State<AdminState<A>>) -> impl IntoResponse {
    if state.drain.refuses_new_sessions() {
        (StatusCode::SERVICE_UNAVAILABLE, "draining\n")
    } else if state.shed.shedding() {
        (StatusCode::SERVICE_UNAVAILABLE, "shedding\n")
    } else {
        (StatusCode::OK, "ready\n")
    }
}

// The statuses the operator reads as "too late to cancel" and "drains already".
const _: () = assert!(StatusCode::CONFLICT.as_u16() == api::CANCEL_TOO_LATE);
const _: () = assert!(StatusCode::CONFLICT.as_u16() == api::SHED_WHILE_DRAINING);

/// Why a drain or shed API request was refused.
enum Refusal {
    NoTokenConfigured,
    BadToken,
}

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        match self {
            Refusal::NoTokenConfigured => (
                StatusCode::FORBIDDEN,
                "the drain and shed APIs are disabled: no admin token configured (--admin-token-file or CHAT_ADMIN_TOKEN)\n",
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

/// The drain and shed APIs need `Authorization: Bearer <admin token>`.
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

async fn shed_status<A: Adapter>(
    State(state): State<AdminState<A>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused.into_response();
    }
    Json(state.shed.status(&state.io)).into_response()
}

/// The body as a [`ShedRequest`] that passes its checks, or why not.
fn shed_request(body: &[u8]) -> Result<ShedRequest, String> {
    let request: ShedRequest = serde_json::from_slice(body).map_err(|error| {
        format!(
            "the body must be {{\"connections\": N, \"perSecond\": R}} and nothing else: {error}"
        )
    })?;
    request.check()?;
    Ok(request)
}

async fn shed_start<A: Adapter>(
    State(state): State<AdminState<A>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused.into_response();
    }
    let request = match shed_request(&body) {
        Ok(request) => request,
        Err(why) => return (StatusCode::BAD_REQUEST, format!("{why}\n")).into_response(),
    };
    match state.shed.start(state.io.clone(), request) {
        Ok(()) => (StatusCode::ACCEPTED, Json(state.shed.status(&state.io))).into_response(),
        Err(shed::Draining) => (
            StatusCode::CONFLICT,
            "the server drains: it moves every client already\n",
        )
            .into_response(),
    }
}

async fn shed_stop<A: Adapter>(State(state): State<AdminState<A>>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&state, &headers) {
        return refused.into_response();
    }
    state.shed.stop();
    Json(state.shed.status(&state.io)).into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_shed_body_is_a_checked_request_or_a_reason() {
        assert_eq!(
            shed_request(br#"{"connections":8,"perSecond":20}"#),
            Ok(ShedRequest {
                connections: 8,
                per_second: 20
            })
        );
        // 0 connections: refuse new sessions only.
        assert!(shed_request(br#"{"connections":0,"perSecond":1}"#).is_ok());
        for (body, why) in [
            (&b"{}"[..], "missing field `connections`"),
            (br#"{"connections":"x","perSecond":1}"#, "invalid type"),
            (
                br#"{"connections":1,"perSecond":1,"force":true}"#,
                "unknown field `force`",
            ),
            (b"connections=1", "expected value"),
            (
                br#"{"connections":1,"perSecond":10001}"#,
                "perSecond must be 1..10000",
            ),
        ] {
            let refused = shed_request(body).unwrap_err();
            assert!(refused.contains(why), "{refused}");
        }
    }
}
