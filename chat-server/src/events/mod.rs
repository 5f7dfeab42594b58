//! Socket.IO event handlers of namespace `/`. Each client event has its own
//! file; every one answers its ack with `{ok: ...}` or `{error: {code, message}}`.
//! Events without a handler are ignored by socketioxide.

mod admit;
mod ai_query;
mod in_order;
mod join;
mod leave;
mod message;
mod resume;
pub mod validate;

use std::{sync::Arc, time::SystemTime};

use serde::Serialize;
use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
};
use tokio_util::sync::CancellationToken;

use crate::{
    admin::metrics::Metrics,
    auth::{AUTH_EXPIRED_EVENT, Refusal},
    protocol::{Ack, ChatError},
    state::AppState,
};

/// The namespace's connect handler: use as `on_connect.with(register_handlers)`.
pub async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    tracing::debug!(sid = %socket.id, "socket connected");
}

/// Admits a new socket and registers its event handlers. It runs as a connect
/// middleware, before the CONNECT answer goes out: a refused handshake (too many
/// connections from its address, a missing or invalid token) gets a
/// CONNECT_ERROR whose message says why (`unauthorized: token expired`), and
/// socketioxide runs the connect handler only after the CONNECT answer, so an
/// event a client sends right after connecting could otherwise arrive before its
/// handler and be dropped.
pub async fn register_handlers<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    State(state): State<AppState>,
    TryData(auth): TryData<Value>,
) -> Result<(), Refusal> {
    if let Some(ip) = state.client_addr.of(socket.req_parts())
        && let Err(wait) = state.limits.connection(ip, tokio::time::Instant::now())
    {
        state
            .metrics
            .events_rejected_total
            .with_label_values(&["connect", "rate_limited"])
            .inc();
        return Err(Refusal::Connections(wait));
    }
    let session = state
        .auth
        .authenticate(
            auth.ok().as_ref(),
            &socket.req_parts().headers,
            &state.limits,
        )
        .inspect_err(|refusal| {
            tracing::info!(sid = %socket.id, %refusal, "handshake refused");
            state
                .metrics
                .events_rejected_total
                .with_label_values(&["connect", "unauthorized"])
                .inc();
        })?;
    if let Some(expires) = session.expires {
        disconnect_at_expiry(&socket, io, expires);
    }
    socket.extensions.insert(Arc::new(session));
    socket.on("join", join::handle::<A>);
    socket.on("leave", leave::handle::<A>);
    socket.on("message", message::handle::<A>);
    socket.on("ai-query", ai_query::handle::<A>);
    socket.on("resume", resume::handle::<A>);
    Ok(())
}

/// When the token runs out: emit `auth-expired {message}`, then disconnect.
/// Cancelled when the socket goes away first.
fn disconnect_at_expiry<A: Adapter>(socket: &SocketRef<A>, io: SocketIo<A>, expires: SystemTime) {
    let gone = CancellationToken::new();
    let on_gone = gone.clone();
    socket.on_disconnect(move || async move { on_gone.cancel() });
    let sid = socket.id;
    let left = expires
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    tokio::spawn(async move {
        tokio::select! {
            () = gone.cancelled() => {}
            () = tokio::time::sleep(left) => {
                if let Some(socket) = io.get_socket(sid) {
                    tracing::info!(%sid, "token expired: disconnecting");
                    let _ = socket.emit(
                        AUTH_EXPIRED_EVENT,
                        &json!({"message": "the token expired; reconnect with a new one"}),
                    );
                    let _ = socket.disconnect();
                }
            }
        }
    });
}

/// Sends the ack for `event` and counts refusals.
fn reply<A: Adapter, T: Serialize>(
    ack: AckSender<A>,
    metrics: &Metrics,
    event: &str,
    result: Result<T, ChatError>,
) {
    if let Err(error) = &result {
        metrics
            .events_rejected_total
            .with_label_values(&[event, error.code.as_str()])
            .inc();
    }
    // The client may have sent the event without asking for an ack: nothing to do then.
    let _ = ack.send(&Ack::from(result));
}
