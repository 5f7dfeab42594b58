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

use serde::Serialize;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef},
};

use crate::{
    admin::metrics::Metrics,
    protocol::{Ack, ChatError},
};

/// Registers the handlers on each new socket.
pub async fn on_connect<A: Adapter>(socket: SocketRef<A>) {
    tracing::debug!(sid = %socket.id, "socket connected");
    socket.on("join", join::handle::<A>);
    socket.on("leave", leave::handle::<A>);
    socket.on("message", message::handle::<A>);
    socket.on("ai-query", ai_query::handle::<A>);
    socket.on("resume", resume::handle::<A>);
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
