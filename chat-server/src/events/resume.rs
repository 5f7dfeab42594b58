//! `resume {room, after}`: a client that reconnected (to any server) catches up.
//! The socket joins the room, then receives every logged event with
//! `roomSeq > after`, oldest first, and live events after that. Live events
//! can overtake replayed ones, so clients apply events in `roomSeq` order and
//! drop duplicates. Ack `{ok: {room, replayed, roomSeq}}`, or `resume_too_old`
//! with `oldestRoomSeq` when the log no longer reaches back to `after`. The
//! ack's `roomSeq` is the room's latest; if it is below `after`, the room's
//! numbering started again and the client should reset its counter.

use serde_json::{Value, json};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
};

use super::{admit::Admitted, client_event::ClientEvent, in_order::InOrder, join, validate};
use crate::{
    auth::Session,
    protocol::{ChatError, ResumeRequest},
    state::AppState,
};

/// The `resume` event.
pub struct Resume;

impl ClientEvent for Resume {
    const NAME: &'static str = "resume";
    type Request = ResumeRequest;

    fn validate<E: std::fmt::Display>(data: Result<Value, E>) -> Result<ResumeRequest, ChatError> {
        validate::resume(data)
    }

    fn register<A: Adapter>(self, socket: &SocketRef<A>) {
        socket.on(Self::NAME, handle::<A>);
    }
}

async fn handle<A: Adapter>(
    socket: SocketRef<A>,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    admitted: Admitted,
    in_order: InOrder,
) {
    let work = async |session: &Session| resume(&socket, &state, session, data).await;
    admitted
        .run(&socket, &state.metrics, Resume::NAME, ack, in_order, work)
        .await;
}

async fn resume<A: Adapter, E: std::fmt::Display>(
    socket: &SocketRef<A>,
    state: &AppState,
    session: &Session,
    data: Result<Value, E>,
) -> Result<Value, ChatError> {
    let ResumeRequest { room, after } = Resume::validate(data)?;
    session.may_use(&room)?;
    let events =
        join::enter_then(socket, state, &room, state.store.events_after(&room, after)).await?;
    let replayed_to = events.last().and_then(|e| e.room_seq()).unwrap_or(after);
    // The room's head: lower than `after` tells the client the room's numbering
    // started again (a restarted in-memory server, or Redis that restarted empty).
    let head = state.store.last_seq(&room).await.unwrap_or(replayed_to);
    for event in &events {
        if let Err(error) = event.emit_to_socket(socket) {
            tracing::debug!(%error, "a replayed event did not reach the socket");
        }
    }
    Ok(json!({"room": room, "replayed": events.len(), "roomSeq": head}))
}
