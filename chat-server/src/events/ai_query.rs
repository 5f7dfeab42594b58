//! `ai-query {room, prompt}`: ask the AI in a room. The prompt goes to the room
//! as a `message` of kind `ai-prompt`; the answer follows as
//! `ai-response-stream` events. Ack `{ok: {streamId, roomSeq}}` right away, with
//! the prompt's `roomSeq`; the answer streams in the background.

use serde_json::{Value, json};
use socketioxide::{
    SocketIo,
    adapter::Adapter,
    extract::{AckSender, SocketRef, State, TryData},
};
use tokio::time::Instant;

use super::{in_order::InOrder, reply, validate};
use crate::{
    ai::{AiRequest, answer},
    protocol::{AiQueryRequest, ChatError, ChatMessage, ErrorCode, MessageKind, RoomEvent, now_ms},
    state::AppState,
    store::{Role, StoreError, Turn},
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
    let result = ask(&socket, io, &state, data, received).await;
    reply(ack, &state.metrics, "ai-query", result);
}

async fn ask<A: Adapter, E: std::fmt::Display>(
    socket: &SocketRef<A>,
    io: SocketIo<A>,
    state: &AppState,
    data: Result<Value, E>,
    received: Instant,
) -> Result<Value, ChatError> {
    let AiQueryRequest { room, prompt } =
        validate::payload(data, "{room: string, prompt: string}")?;
    validate::room_name(&room)?;
    validate::text("prompt", &prompt, validate::MAX_PROMPT_BYTES)?;
    validate::joined(socket, &room)?;

    let unavailable = |e: StoreError| ChatError::new(ErrorCode::Unavailable, e.to_string());
    let history = state.store.recent_turns(&room).await.map_err(unavailable)?;
    let question = ChatMessage {
        room: room.clone(),
        room_seq: 0,
        id: uuid::Uuid::new_v4().to_string(),
        from: socket.id.to_string(),
        text: prompt.clone(),
        ts: now_ms(),
        kind: MessageKind::AiPrompt,
        client_id: None,
    };
    let sent = state
        .publisher
        .publish(&io, RoomEvent::Message(question))
        .await
        .map_err(unavailable)?;
    state.metrics.messages_total.inc();
    let turn = Turn {
        role: Role::User,
        text: prompt.clone(),
    };
    state
        .store
        .push_turn(&room, turn)
        .await
        .map_err(unavailable)?;

    let stream_id = uuid::Uuid::new_v4().to_string();
    let request = AiRequest { history, prompt };
    tokio::spawn(answer::stream(
        io,
        state.clone(),
        room,
        stream_id.clone(),
        request,
        received,
    ));
    Ok(json!({"streamId": stream_id, "roomSeq": sent.room_seq()}))
}
