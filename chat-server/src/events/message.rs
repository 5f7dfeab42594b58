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

use super::{admit::Admitted, client_event::ClientEvent, in_order::InOrder, validate};
use crate::{
    auth::Session,
    protocol::{ChatError, ChatMessage, MessageKind, MessageRequest, RoomEvent, now_ms},
    state::AppState,
    store::{Role, Turn},
};

/// The `message` event.
pub struct Message;

impl ClientEvent for Message {
    const NAME: &'static str = "message";
    type Request = MessageRequest;

    fn validate<E: std::fmt::Display>(data: Result<Value, E>) -> Result<MessageRequest, ChatError> {
        validate::message(data)
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
    let work = async |session: &Session| {
        let result = send(&socket, &io, &state, session, data).await;
        if result.is_ok() {
            state
                .metrics
                .message_handling_seconds
                .observe(received.elapsed().as_secs_f64());
        }
        result
    };
    admitted
        .run(&socket, &state.metrics, Message::NAME, ack, in_order, work)
        .await;
}

async fn send<A: Adapter, E: std::fmt::Display>(
    socket: &SocketRef<A>,
    io: &SocketIo<A>,
    state: &AppState,
    session: &Session,
    data: Result<Value, E>,
) -> Result<Value, ChatError> {
    let request: MessageRequest = Message::validate(data)?;
    session.may_use(&request.room)?;
    validate::joined(socket, &request.room)?;

    let message = post(
        session.sender(socket.id.as_str()),
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

/// Publishes a line from `from` (the token's `sub`, or the socket id with
/// auth off) to `room` and adds it to the room's conversation history. Chat
/// lines are attributed to their sender in the history; AI prompts go in as
/// they are, since they are what the model answers.
pub(super) async fn post<A: Adapter>(
    from: String,
    io: &SocketIo<A>,
    state: &AppState,
    room: String,
    text: String,
    kind: MessageKind,
    client_id: Option<String>,
) -> ChatMessage {
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
