//! `join {room}`: become a member of a room. Ack `{ok: {room, roomSeq}}` where
//! `roomSeq` is the room's latest sequence number when the socket joined; every
//! later room event reaches the socket live.

use serde_json::{Value, json};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
};

use super::{in_order::InOrder, reply, validate};
use crate::{
    protocol::{ChatError, ErrorCode, JoinRequest},
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
    let result = join(&socket, &state, data).await;
    reply(ack, &state.metrics, "join", result);
}

async fn join<A: Adapter, E: std::fmt::Display>(
    socket: &SocketRef<A>,
    state: &AppState,
    data: Result<Value, E>,
) -> Result<Value, ChatError> {
    let JoinRequest { room } = validate::payload(data, "{room: string}")?;
    validate::room_name(&room)?;
    let rooms = socket.rooms();
    let already = rooms.iter().any(|r| *r == room);
    if !already && rooms.len() >= validate::MAX_ROOMS_PER_SOCKET {
        return Err(ChatError::new(
            ErrorCode::TooManyRooms,
            format!(
                "a socket may be in at most {} rooms",
                validate::MAX_ROOMS_PER_SOCKET
            ),
        ));
    }
    // Join first, then read the sequence: nothing published in between is missed.
    socket.join(room.clone());
    match state.store.last_seq(&room).await {
        Ok(room_seq) => Ok(json!({"room": room, "roomSeq": room_seq})),
        Err(error) => {
            if !already {
                socket.leave(room);
            }
            Err(error.into())
        }
    }
}
