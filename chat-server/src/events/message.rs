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
    protocol::{ChatError, ChatMessage, MessageKind, MessageRequest, RoomEvent, now_ms},
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

    let message = post(
        socket,
        io,
        state,
        request.room,
        request.text,
        MessageKind::Chat,
        request.client_id,
    )
    .await;
    Ok(json!({"id": message.id, "roomSeq": message.room_seq}))
}

/// Publishes a line from `socket` to `room` and adds it to the room's
/// conversation history. Chat lines are attributed to their sender in the
/// history; AI prompts go in as they are, since they are what the model answers.
pub(super) async fn post<A: Adapter>(
    socket: &SocketRef<A>,
    io: &SocketIo<A>,
    state: &AppState,
    room: String,
    text: String,
    kind: MessageKind,
    client_id: Option<String>,
) -> ChatMessage {
    let from = socket.id.to_string();
    let turn = Turn {
        role: Role::User,
        text: match kind {
            MessageKind::Chat => format!("{from}: {text}"),
            MessageKind::AiPrompt => text.clone(),
        },
    };
    let message = ChatMessage {
        room,
        room_seq: None,
        id: uuid::Uuid::new_v4().to_string(),
        from,
        text,
        ts: now_ms(),
        kind,
        client_id,
    };
    let Some(RoomEvent::Message(message)) = state
        .publisher
        .publish(io, RoomEvent::Message(message))
        .await
    else {
        unreachable!("a message is always published, as a message")
    };
    state.metrics.messages_total.inc();
    if let Err(error) = state.store.push_turn(&message.room, turn).await {
        state.metrics.store_errors_total.inc();
        tracing::warn!(%error, room = message.room, "a line could not be added to the history");
    }
    message
}
