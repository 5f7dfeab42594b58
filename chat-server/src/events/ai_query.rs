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

use super::{admit::Admitted, client_event::ClientEvent, in_order::InOrder, message, validate};
use crate::{
    ai::AiRequest,
    answers::{Answer, deliver},
    auth::Session,
    protocol::{AiQueryRequest, ChatError, MessageKind},
    state::AppState,
};

/// The `ai-query` event.
pub struct AiQuery;

impl ClientEvent for AiQuery {
    const NAME: &'static str = "ai-query";
    type Request = AiQueryRequest;

    fn validate<E: std::fmt::Display>(data: Result<Value, E>) -> Result<AiQueryRequest, ChatError> {
        validate::ai_query(data)
    }

    fn register<A: Adapter>(self, socket: &SocketRef<A>) {
        socket.on(Self::NAME, handle::<A>);
    }
}

async fn handle<A: Adapter>(
    socket: SocketRef<A>,
    io: SocketIo<A>,
    State(state): State<AppState>,
    TryData(data): TryData<Value>,
    ack: AckSender<A>,
    admitted: Admitted,
    in_order: InOrder,
) {
    let received = Instant::now();
    let work = async |session: &Session| ask(&socket, io, &state, session, data, received).await;
    admitted
        .run(&socket, &state.metrics, AiQuery::NAME, ack, in_order, work)
        .await;
}

async fn ask<A: Adapter, E: std::fmt::Display>(
    socket: &SocketRef<A>,
    io: SocketIo<A>,
    state: &AppState,
    session: &Session,
    data: Result<Value, E>,
    received: Instant,
) -> Result<Value, ChatError> {
    let AiQueryRequest { room, prompt } = AiQuery::validate(data)?;
    session.may_use(&room)?;
    validate::joined(socket, &room)?;
    let history = state.store.recent_turns(&room).await?;
    let sender = session.sender(socket.id.as_str());
    let stream_id = uuid::Uuid::new_v4().to_string();
    let reservation = state
        .answers
        .reserve(Answer {
            user: sender.clone(),
            room: room.clone(),
            id: stream_id.clone(),
        })
        .await?;

    let question = message::post(
        sender,
        &io,
        state,
        room,
        prompt.clone(),
        MessageKind::AiPrompt,
        None,
    )
    .await;

    let request = AiRequest { history, prompt };
    tokio::spawn(deliver(io, state.clone(), reservation, request, received));
    Ok(json!({"streamId": stream_id, "roomSeq": question.room_seq}))
}
