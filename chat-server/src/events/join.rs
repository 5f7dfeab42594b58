//! `join {room}`: become a member of a room. Ack `{ok: {room, roomSeq}}` where
//! `roomSeq` is the room's latest sequence number when the socket joined; every
//! later room event reaches the socket live (on every server: the join waits
//! until this server listens on the room's channel, crate::fanout).

use serde_json::{Value, json};
use socketioxide::{
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
};

use super::{admit::Admitted, client_event::ClientEvent, in_order::InOrder, validate};
use crate::{
    auth::Session,
    protocol::{ChatError, ErrorCode, JoinRequest},
    state::AppState,
    store::StoreError,
};

/// The `join` event.
pub struct Join;

impl ClientEvent for Join {
    const NAME: &'static str = "join";
    type Request = JoinRequest;

    fn validate<E: std::fmt::Display>(data: Result<Value, E>) -> Result<JoinRequest, ChatError> {
        validate::join(data)
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
    let work = async |session: &Session| join(&socket, &state, session, data).await;
    admitted
        .run(&socket, &state.metrics, Join::NAME, ack, in_order, work)
        .await;
}

async fn join<A: Adapter, E: std::fmt::Display>(
    socket: &SocketRef<A>,
    state: &AppState,
    session: &Session,
    data: Result<Value, E>,
) -> Result<Value, ChatError> {
    let JoinRequest { room } = Join::validate(data)?;
    session.may_use(&room)?;
    let room_seq = enter_then(socket, state, &room, state.store.last_seq(&room)).await?;
    Ok(json!({"room": room, "roomSeq": room_seq}))
}

/// Joins `room`, then runs `read`: whatever is published in between arrives
/// live, so a read of the room's state misses nothing. A socket new to the
/// room waits, before the read, until this server listens on the room's
/// channel (crate::fanout::RoomSubscriptions). If that or the read fails, a
/// socket that was not in the room before leaves it again: nothing happened.
pub(super) async fn enter_then<A: Adapter, T, E: Into<ChatError>>(
    socket: &SocketRef<A>,
    state: &AppState,
    room: &str,
    read: impl Future<Output = Result<T, E>>,
) -> Result<T, ChatError> {
    let max_rooms = state.limits.config.max_rooms_per_socket;
    let newly_joined = enter(socket, room, max_rooms)?;
    let subscriptions = &state.room_subscriptions;
    let entered = async {
        if newly_joined {
            let listening = subscriptions.joined(room, socket.id);
            // Gone already: its disconnect handler may have missed this room.
            if !socket.connected() {
                return Err(ChatError::new(
                    ErrorCode::Unavailable,
                    "the socket disconnected while joining",
                ));
            }
            listening.await.map_err(StoreError::unavailable)?;
        }
        read.await.map_err(Into::into)
    };
    entered.await.inspect_err(|_| {
        if newly_joined {
            socket.leave(room.to_owned());
            subscriptions.left(room, socket.id);
        }
    })
}

/// Joins `room` unless the socket is already in it; refuses a room past the
/// per-socket limit. Returns whether the socket was newly joined.
fn enter<A: Adapter>(
    socket: &SocketRef<A>,
    room: &str,
    max_rooms: usize,
) -> Result<bool, ChatError> {
    let rooms = socket.rooms();
    if rooms.iter().any(|r| r == room) {
        return Ok(false);
    }
    if rooms.len() >= max_rooms {
        return Err(ChatError::new(
            ErrorCode::TooManyRooms,
            format!("a socket may be in at most {max_rooms} rooms"),
        ));
    }
    socket.join(room.to_owned());
    Ok(true)
}
