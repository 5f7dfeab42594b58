//! Decides, on the public port, which Socket.IO requests this server turns
//! away with 503 (so that a load balancer retries another server) while it
//! drains or sheds: new sessions, and requests for sessions it does not hold
//! (a sticky balancer keeps sending a moved client's requests here first).
//! Requests for the sessions it holds always pass.

use std::sync::Arc;

use axum::{
    extract::{Request, State},
    http::{StatusCode, header},
    middleware::Next,
    response::{IntoResponse, Response},
};

use super::{drain::Drain, shed::Shed};

#[derive(Clone)]
pub struct SessionGate {
    pub drain: Arc<Drain>,
    pub shed: Arc<Shed>,
    /// True when this server holds the Engine.IO session with that id.
    pub holds: Arc<dyn Fn(&str) -> bool + Send + Sync>,
}

impl SessionGate {
    /// Why this server refuses new sessions now, if it does.
    fn refusal(&self) -> Option<&'static str> {
        if self.drain.refuses_new_sessions() {
            Some("this server is draining; connect to another one\n")
        } else if self.shed.shedding() {
            Some("this server is shedding connections; connect to another one\n")
        } else {
            None
        }
    }
}

pub async fn gate_sessions(
    State(gate): State<SessionGate>,
    request: Request,
    next: Next,
) -> Response {
    if request.uri().path().starts_with("/socket.io")
        && let Some(why) = gate.refusal()
    {
        let sid = request
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|pair| pair.strip_prefix("sid="));
        if !sid.is_some_and(|sid| (gate.holds)(sid)) {
            return (
                StatusCode::SERVICE_UNAVAILABLE,
                [(header::RETRY_AFTER, "1")],
                why,
            )
                .into_response();
        }
    }
    next.run(request).await
}
