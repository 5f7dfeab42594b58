//! `leave {room}`: stop receiving a room's events. Ack `{ok: {room}}`.

use serde_json::{Value, json};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
};

use super::{in_order::InOrder, reply, validate};
use crate::{
    protocol::{ChatError, LeaveRequest},
    state::AppState,
};

pub async fn handle<A: Adapter>(
    socket: SocketRef<A>,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    in_order: InOrder,
) {
    let _turn = in_order.wait().await;
    let result = leave(&socket, data);
    reply(ack, &state.metrics, "leave", result);
}

fn leave<A: Adapter, E: std::fmt::Display>(
    socket: &SocketRef<A>,
    data: Result<Value, E>,
) -> Result<Value, ChatError> {
    let LeaveRequest { room } = validate::payload(data, "{room: string}")?;
    validate::room_name(&room)?;
    validate::joined(socket, &room)?;
    socket.leave(room.clone());
    Ok(json!({"room": room}))
}
