//! Wire types of the chat protocol: the payloads clients send, the events the
//! server emits to rooms, and the shape of every ack. Field names here are the
//! public contract that every Socket.IO client relies on.

use serde::{Deserialize, Serialize};

/// `join {room}`
#[derive(Debug, Deserialize)]
pub struct JoinRequest {
    pub room: String,
}

/// `leave {room}`
#[derive(Debug, Deserialize)]
pub struct LeaveRequest {
    pub room: String,
}

/// `message {room, text, clientId?}`
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRequest {
    pub room: String,
    pub text: String,
    /// An id the client chose, echoed back so it can match its own messages.
    #[serde(default)]
    pub client_id: Option<String>,
}

/// `ai-query {room, prompt}`
#[derive(Debug, Deserialize)]
pub struct AiQueryRequest {
    pub room: String,
    pub prompt: String,
}

/// `resume {room, after}`
#[derive(Debug, Deserialize)]
pub struct ResumeRequest {
    pub room: String,
    /// The highest contiguous `roomSeq` the client has.
    pub after: u64,
}

/// What kind of utterance a `message` event carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum MessageKind {
    /// A chat line.
    Chat,
    /// A question to the AI; its answer follows as `ai-response-stream` events.
    AiPrompt,
}

/// Server to room: `message {room, roomSeq, id, from, text, ts, kind, clientId?}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatMessage {
    pub room: String,
    /// Absent while the shared store is unreachable: delivered live, not replayable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_seq: Option<u64>,
    pub id: String,
    pub from: String,
    pub text: String,
    /// Milliseconds since the Unix epoch when the origin server accepted it.
    pub ts: u64,
    pub kind: MessageKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// Server to room: `ai-response-stream {room, roomSeq, streamId, seq, chunk, done, error?, ts}`
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AiChunk {
    pub room: String,
    /// Absent while the shared store is unreachable: delivered live, not replayable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room_seq: Option<u64>,
    pub stream_id: String,
    /// Contiguous from 1 within one stream.
    pub seq: u32,
    pub chunk: String,
    /// True on exactly one event per stream: the last.
    pub done: bool,
    /// Set on the last event when the answer ended early.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Milliseconds since the Unix epoch when the origin server emitted it.
    pub ts: u64,
}

/// Every event delivered to a room; each carries the room's sequence number.
/// Stored in the room log as `{"event": name, "data": payload}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "event", content = "data")]
pub enum RoomEvent {
    #[serde(rename = "message")]
    Message(ChatMessage),
    #[serde(rename = "ai-response-stream")]
    AiChunk(AiChunk),
}

impl RoomEvent {
    /// The Socket.IO event name clients listen to.
    pub fn name(&self) -> &'static str {
        match self {
            RoomEvent::Message(_) => "message",
            RoomEvent::AiChunk(_) => "ai-response-stream",
        }
    }

    pub fn room(&self) -> &str {
        match self {
            RoomEvent::Message(m) => &m.room,
            RoomEvent::AiChunk(c) => &c.room,
        }
    }

    pub fn room_seq(&self) -> Option<u64> {
        match self {
            RoomEvent::Message(m) => m.room_seq,
            RoomEvent::AiChunk(c) => c.room_seq,
        }
    }

    /// When the origin server accepted or emitted it (ms since the epoch).
    pub fn ts(&self) -> u64 {
        match self {
            RoomEvent::Message(m) => m.ts,
            RoomEvent::AiChunk(c) => c.ts,
        }
    }

    pub fn set_room_seq(&mut self, room_seq: u64) {
        match self {
            RoomEvent::Message(m) => m.room_seq = Some(room_seq),
            RoomEvent::AiChunk(c) => c.room_seq = Some(room_seq),
        }
    }

    /// Sends the event to one socket.
    pub fn emit_to_socket<A: socketioxide::adapter::Adapter>(
        &self,
        socket: &socketioxide::extract::SocketRef<A>,
    ) -> Result<(), socketioxide::SendError> {
        match self {
            RoomEvent::Message(message) => socket.emit(self.name(), message),
            RoomEvent::AiChunk(chunk) => socket.emit(self.name(), chunk),
        }
    }

    /// Sends the event to whatever `operators` target (a room, one socket).
    pub async fn emit_to<A: socketioxide::adapter::Adapter>(
        &self,
        operators: socketioxide::operators::BroadcastOperators<A>,
    ) -> Result<(), socketioxide::BroadcastError> {
        match self {
            RoomEvent::Message(message) => operators.emit(self.name(), message).await,
            RoomEvent::AiChunk(chunk) => operators.emit(self.name(), chunk).await,
        }
    }
}

/// Machine-readable reason in an error ack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The payload is not the object this event takes.
    BadRequest,
    /// The room name is empty, too long or has characters outside `[A-Za-z0-9._:-]`.
    InvalidRoom,
    /// A text, prompt or client id is over its size limit.
    TooLarge,
    /// The socket is already in as many rooms as it may be.
    TooManyRooms,
    /// The event names a room this socket has not joined.
    NotJoined,
    /// Shared state could not be read or written; try again.
    Unavailable,
    /// `resume` asked for events older than the room log still holds.
    ResumeTooOld,
    /// The token does not grant this room.
    Forbidden,
    /// Over a rate or concurrency limit; `retryAfterMs` says when to try again.
    RateLimited,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::InvalidRoom => "invalid_room",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::TooManyRooms => "too_many_rooms",
            ErrorCode::NotJoined => "not_joined",
            ErrorCode::Unavailable => "unavailable",
            ErrorCode::ResumeTooOld => "resume_too_old",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::RateLimited => "rate_limited",
        }
    }
}

/// Why an event was refused: sent back as `{error: {code, message}}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChatError {
    pub code: ErrorCode,
    pub message: String,
    /// With `resume_too_old`: the oldest `roomSeq` the room log still holds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub oldest_room_seq: Option<u64>,
    /// With `rate_limited`: how long to wait before trying again.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl ChatError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        Self {
            code,
            message: message.into(),
            oldest_room_seq: None,
            retry_after_ms: None,
        }
    }
}

impl std::fmt::Display for ChatError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

impl std::error::Error for ChatError {}

/// Every ack: `{ok: T}` or `{error: {code, message}}`.
#[derive(Debug, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Ack<T> {
    Ok(T),
    Error(ChatError),
}

impl<T> From<Result<T, ChatError>> for Ack<T> {
    fn from(result: Result<T, ChatError>) -> Self {
        match result {
            Ok(value) => Ack::Ok(value),
            Err(error) => Ack::Error(error),
        }
    }
}

/// Milliseconds since the Unix epoch, the `ts` of every event.
pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn acks_have_the_documented_shape() {
        let ok: Ack<_> = Ok::<_, ChatError>(json!({"room": "a"})).into();
        assert_eq!(
            serde_json::to_value(ok).unwrap(),
            json!({"ok": {"room": "a"}})
        );
        let err: Ack<()> = Err(ChatError::new(ErrorCode::NotJoined, "join first")).into();
        assert_eq!(
            serde_json::to_value(err).unwrap(),
            json!({"error": {"code": "not_joined", "message": "join first"}})
        );
    }

    #[test]
    fn error_codes_serialize_as_their_names() {
        for code in [
            ErrorCode::BadRequest,
            ErrorCode::InvalidRoom,
            ErrorCode::TooLarge,
            ErrorCode::TooManyRooms,
            ErrorCode::NotJoined,
            ErrorCode::Unavailable,
            ErrorCode::ResumeTooOld,
            ErrorCode::Forbidden,
            ErrorCode::RateLimited,
        ] {
            assert_eq!(serde_json::to_value(code).unwrap(), json!(code.as_str()));
        }
    }

    #[test]
    fn events_use_camel_case_and_omit_absent_fields() {
        let chunk = AiChunk {
            room: "r".into(),
            room_seq: Some(7),
            stream_id: "s".into(),
            seq: 1,
            chunk: "hi".into(),
            done: false,
            error: None,
            ts: 5,
        };
        assert_eq!(
            serde_json::to_value(&chunk).unwrap(),
            json!({"room": "r", "roomSeq": 7, "streamId": "s", "seq": 1, "chunk": "hi", "done": false, "ts": 5})
        );
    }
}
