//! Every client event is charged against its socket's and user's event budget
//! when it arrives (extractors run synchronously, in arrival order). An event
//! over budget is answered `rate_limited` and does nothing else; a socket that
//! keeps sending past its budget is disconnected.

use std::{convert::Infallible, sync::Arc};

use serde_json::json;
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef},
    handler::{FromMessageParts, Value},
    socket::Socket,
};
use tokio::time::Instant;

use super::in_order::InOrder;
use crate::{
    admin::metrics::Metrics,
    auth::Session,
    protocol::{Ack, ChatError, ErrorCode},
};

/// The socket's session, and whether this event was within its budget.
pub struct Admitted {
    session: Option<Arc<Session>>,
    charged: Result<(), ChatError>,
}

impl Admitted {
    /// The session when the event may go ahead, else the refusal to answer.
    pub fn session(&self) -> Result<&Session, ChatError> {
        self.charged.clone()?;
        self.session
            .as_deref()
            .ok_or_else(|| ChatError::new(ErrorCode::Forbidden, "this socket has no session"))
    }

    /// The session and what the handler needs next when the event may go
    /// ahead; `None` once a refusal was answered. A refused event is answered
    /// at once, without waiting for the socket's earlier events, so that a
    /// flood never queues up.
    fn admit<A: Adapter>(
        &self,
        socket: &SocketRef<A>,
        metrics: &Metrics,
        event: &str,
        ack: AckSender<A>,
        in_order: InOrder,
    ) -> Option<(&Session, AckSender<A>, InOrder)> {
        match self.session() {
            Ok(session) => Some((session, ack, in_order)),
            Err(refused) => {
                in_order.skip();
                reply(ack, metrics, event, Err::<(), _>(refused));
                self.enforce(socket);
                None
            }
        }
    }

    /// The whole life of an admitted event: refused events are answered at
    /// once (see [`Self::admit`]); an admitted one waits until the socket's
    /// earlier events are handled, runs `work` with the session, and is acked
    /// with its result.
    pub async fn run<A: Adapter, T: serde::Serialize>(
        self,
        socket: &SocketRef<A>,
        metrics: &Metrics,
        event: &str,
        ack: AckSender<A>,
        in_order: InOrder,
        work: impl AsyncFnOnce(&Session) -> Result<T, ChatError>,
    ) {
        let Some((session, ack, in_order)) = self.admit(socket, metrics, event, ack, in_order)
        else {
            return;
        };
        let _serving = in_order.wait().await;
        let result = work(session).await;
        reply(ack, metrics, event, result);
    }

    /// Disconnects the socket when it keeps flooding. Call after the ack.
    fn enforce<A: Adapter>(&self, socket: &SocketRef<A>) {
        if self.charged.is_err() && self.session.as_ref().is_some_and(|s| s.cut_off()) {
            tracing::info!(sid = %socket.id, "disconnecting a socket that kept sending past its rate limit");
            let _ = socket.emit(
                "error",
                &json!({"code": "rate_limited", "message": "disconnected: kept sending past the rate limit"}),
            );
            let _ = socket.clone().disconnect();
        }
    }
}

impl<A: Adapter> FromMessageParts<A> for Admitted {
    type Error = Infallible;

    fn from_message_parts(
        socket: &Arc<Socket<A>>,
        _: &mut Value,
        _: &Option<i64>,
    ) -> Result<Self, Infallible> {
        let session = socket.extensions.get::<Arc<Session>>();
        let charged = match &session {
            Some(session) => session.charge_event(Instant::now()),
            None => Ok(()),
        };
        Ok(Admitted { session, charged })
    }
}

/// Sends the ack for `event` and counts refusals.
fn reply<A: Adapter, T: serde::Serialize>(
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
