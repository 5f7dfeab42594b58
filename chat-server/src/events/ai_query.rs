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

use super::{in_order::InOrder, message, reply, validate};
use crate::{
    ai::{AiRequest, answer},
    protocol::{AiQueryRequest, ChatError, MessageKind},
    state::AppState,
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

    let history = state.store.recent_turns(&room).await?;
    let question = message::post(
        socket,
        &io,
        state,
        room.clone(),
        prompt.clone(),
        MessageKind::AiPrompt,
        None,
    )
    .await;

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
    Ok(json!({"streamId": stream_id, "roomSeq": question.room_seq}))
}
