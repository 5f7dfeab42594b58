//! Who may connect: a connect middleware that admits a socket (connection
//! rate limit, then authentication) before the CONNECT answer goes out, so a
//! refused handshake gets a CONNECT_ERROR saying why, and an admitted socket
//! is disconnected when its token runs out.

use std::{sync::Arc, time::SystemTime};

use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{SocketRef, State, TryData},
};

use crate::{
    auth::{AUTH_EXPIRED_EVENT, Refusal},
    state::AppState,
};

/// Admits a new socket or refuses it: too many connections from its address,
/// or a missing or invalid token, get a CONNECT_ERROR whose message says why
/// (`unauthorized: token expired`). An admitted socket carries its session
/// and is disconnected when its token expires.
pub async fn admit_socket<A: Adapter>(
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
    Ok(())
}

/// When the token runs out: emit `auth-expired {message}`, then disconnect.
/// Cancelled when the socket goes away first.
fn disconnect_at_expiry<A: Adapter>(socket: &SocketRef<A>, io: SocketIo<A>, expires: SystemTime) {
    let departure = super::disconnect::Departure::default();
    let gone = departure.0.clone();
    socket.extensions.insert(departure);
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
