//! `leave {room}`: stop receiving a room's events. Ack `{ok: {room}}`.

use serde_json::{Value, json};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
};

use super::{admit::Admitted, client_event::ClientEvent, in_order::InOrder, validate};
use crate::{
    protocol::{ChatError, LeaveRequest},
    state::AppState,
};

/// The `leave` event.
pub struct Leave;

impl ClientEvent for Leave {
    const NAME: &'static str = "leave";
    type Request = LeaveRequest;

    fn validate<E: std::fmt::Display>(data: Result<Value, E>) -> Result<LeaveRequest, ChatError> {
        validate::leave(data)
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
    let work = async |_: &crate::auth::Session| leave(&socket, &state, data);
    admitted
        .run(&socket, &state.metrics, Leave::NAME, ack, in_order, work)
        .await;
}

fn leave<A: Adapter, E: std::fmt::Display>(
    socket: &SocketRef<A>,
    state: &AppState,
    data: Result<Value, E>,
) -> Result<Value, ChatError> {
    let LeaveRequest { room } = Leave::validate(data)?;
    validate::joined(socket, &room)?;
    socket.leave(room.clone());
    state.room_subscriptions.left(&room, socket.id);
    Ok(json!({"room": room}))
}
