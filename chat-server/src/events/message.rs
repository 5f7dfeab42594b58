//! `message {room, text, clientId?}`: a chat line to every member of the room
//! (the sender included). Ack `{ok: {id, roomSeq}}`. The line also joins the
//! room's conversation history, so the AI sees what people said.

use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
};
use tokio::time::Instant;

use super::{in_order::InOrder, reply, validate};
use crate::{
    protocol::{ChatError, ChatMessage, ErrorCode, MessageKind, MessageRequest, RoomEvent, now_ms},
    state::AppState,
    store::{Role, Turn},
};

pub async fn handle<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    in_order: InOrder,
) {
    let received = Instant::now();
    let _turn = in_order.wait().await;
    let result = send(&socket, &io, &state, data).await;
    if result.is_ok() {
        state
            .metrics
            .message_handling_seconds
            .observe(received.elapsed().as_secs_f64());
    }
    reply(ack, &state.metrics, "message", result);
}

async fn send<A: Adapter, E: std::fmt::Display>(
    socket: &SocketRef<A>,
    io: &SocketIo<A>,
    state: &AppState,
    data: Result<Value, E>,
) -> Result<Value, ChatError> {
    let request: MessageRequest =
        validate::payload(data, "{room: string, text: string, clientId?: string}")?;
    validate::room_name(&request.room)?;
    validate::text("text", &request.text, validate::MAX_TEXT_BYTES)?;
    validate::client_id(request.client_id.as_deref())?;
    validate::joined(socket, &request.room)?;

    let from = socket.id.to_string();
    let turn = Turn {
        role: Role::User,
        text: format!("{from}: {}", request.text),
    };
    let message = ChatMessage {
        room: request.room,
        room_seq: 0,
        id: uuid::Uuid::new_v4().to_string(),
        from,
        text: request.text,
        ts: now_ms(),
        kind: MessageKind::Chat,
        client_id: request.client_id,
    };
    let unavailable =
        |e: crate::store::StoreError| ChatError::new(ErrorCode::Unavailable, e.to_string());
    let sent = state
        .publisher
        .publish(io, RoomEvent::Message(message))
        .await
        .map_err(unavailable)?;
    state.metrics.messages_total.inc();
    state
        .store
        .push_turn(sent.room(), turn)
        .await
        .map_err(unavailable)?;
    let RoomEvent::Message(message) = sent else {
        unreachable!("a message is published as a message")
    };
    Ok(json!({"id": message.id, "roomSeq": message.room_seq}))
}
