//! Shared room state behind one interface, so any server can serve any client:
//! the room sequence counter with its bounded event log (for replay on
//! reconnect), and the bounded conversation history that AI prompts are built
//! from. The log also keeps each AI answer's chunks whole: contiguous `seq`
//! and exactly one `done: true`, even when another server closes an answer
//! whose server died. The in-memory store serves a single server; the Redis
//! store serves many servers as one.

mod memory;
mod redis;

pub use memory::MemoryStore;
pub use redis::RedisStore;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

use crate::protocol::{ChatError, ErrorCode, RoomEvent};

/// Who said a turn of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    User,
    Assistant,
}

/// One turn of a room's conversation, as the AI sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// Shared state could not be read or written.
    #[error("room store unavailable: {0}")]
    Unavailable(String),
    /// An AI chunk of an answer that another server already closed as interrupted.
    #[error("the answer was closed as interrupted")]
    AnswerClosed,
}

impl StoreError {
    /// Redis (or the connection to it) failed.
    pub(crate) fn unavailable(error: impl std::fmt::Display) -> Self {
        Self::Unavailable(error.to_string())
    }
}

/// Clients see a store failure as `unavailable`: try again.
impl From<StoreError> for ChatError {
    fn from(error: StoreError) -> Self {
        ChatError::new(ErrorCode::Unavailable, error.to_string())
    }
}

/// Why a replay cannot be served.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Events after `after` were already trimmed from the log.
    #[error("the room log starts at roomSeq {oldest}")]
    TooOld { oldest: u64 },
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl From<ReplayError> for ChatError {
    fn from(error: ReplayError) -> Self {
        match error {
            ReplayError::TooOld { oldest } => ChatError {
                oldest_room_seq: Some(oldest),
                ..ChatError::new(
                    ErrorCode::ResumeTooOld,
                    format!(
                        "the room log no longer holds those events; it starts at roomSeq {oldest}"
                    ),
                )
            },
            ReplayError::Store(error) => error.into(),
        }
    }
}

#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Whether a successful `append` (or `close_answer`) has already
    /// published the event to the other servers (crate::fanout), so that it
    /// is emitted to this server's members only.
    fn fans_out(&self) -> bool {
        false
    }

    /// Gives the event the room's next `roomSeq` and appends it to the room's
    /// bounded log, as one atomic step. Returns the event with its `roomSeq`.
    async fn append(&self, event: RoomEvent) -> Result<RoomEvent, StoreError>;

    /// The highest `roomSeq` given out in the room so far (0 for a new room).
    async fn last_seq(&self, room: &str) -> Result<u64, StoreError>;

    /// Every logged event with `roomSeq > after`, oldest first; `TooOld` when
    /// some of them were already trimmed from the log.
    async fn events_after(&self, room: &str, after: u64) -> Result<Vec<RoomEvent>, ReplayError>;

    /// Adds a turn to the room's conversation, dropping the oldest past the bound.
    async fn push_turn(&self, room: &str, turn: Turn) -> Result<(), StoreError>;

    /// The room's most recent turns, oldest first.
    async fn recent_turns(&self, room: &str) -> Result<Vec<Turn>, StoreError>;

    /// Records that an AI answer runs in `room`, so that another server can
    /// close it (`close_answer`) even before its first chunk.
    async fn open_answer(&self, room: &str, id: &str) -> Result<(), StoreError>;

    /// Appends `last` (the answer's final chunk) with the next `seq` of its
    /// answer, unless the answer already ended or another server closed it
    /// first: each orphan is closed exactly once, cluster-wide.
    async fn close_answer(&self, last: RoomEvent) -> Result<Option<RoomEvent>, StoreError>;
}

/// The replay rule both stores follow, given the room's last `roomSeq` (read
/// first) and the logged events after `after` (read second).
fn replay(
    after: u64,
    last_seq: u64,
    events: Vec<RoomEvent>,
) -> Result<Vec<RoomEvent>, ReplayError> {
    match events.first().and_then(RoomEvent::room_seq) {
        Some(first) if first == after + 1 => Ok(events),
        Some(first) => Err(ReplayError::TooOld { oldest: first }),
        None if after >= last_seq => Ok(events),
        None => Err(ReplayError::TooOld {
            oldest: last_seq + 1,
        }),
    }
}
