//! Socket.IO event handlers of namespace `/`. Each client event has its own
//! file; every one answers its ack with `{ok: ...}` or `{error: {code, message}}`.
//! Events without a handler are ignored by socketioxide.

mod ai_query;
mod in_order;
mod join;
mod leave;
mod message;
mod resume;
pub mod validate;

use std::convert::Infallible;

use serde::Serialize;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef},
};

use crate::{
    admin::metrics::Metrics,
    protocol::{Ack, ChatError},
};

/// The namespace's connect handler: use as `on_connect.with(register_handlers)`.
pub async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    tracing::debug!(sid = %socket.id, "socket connected");
}

/// Registers the event handlers on a new socket. It runs as a connect
/// middleware, before the CONNECT answer goes out: socketioxide runs the connect
/// handler only after that answer, so an event a client sends right after
/// connecting could otherwise arrive before its handler and be dropped.
pub async fn register_handlers<A: Adapter>(socket: SocketRef<A>) -> Result<(), Infallible> {
    socket.on("join", join::handle::<A>);
    socket.on("leave", leave::handle::<A>);
    socket.on("message", message::handle::<A>);
    socket.on("ai-query", ai_query::handle::<A>);
    socket.on("resume", resume::handle::<A>);
    Ok(())
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
