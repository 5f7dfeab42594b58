//! Shared room state behind one interface, so any server can serve any client:
//! the room sequence counter with its bounded event log, and the bounded
//! conversation history that AI prompts are built from. The in-memory store
//! serves a single server; a Redis store implements the same trait for many.

mod memory;

pub use memory::MemoryStore;

use async_trait::async_trait;

use crate::protocol::{ChatError, ErrorCode, RoomEvent};

/// Who said a turn of a conversation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    User,
    Assistant,
}

/// One turn of a room's conversation, as the AI sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Turn {
    pub role: Role,
    pub text: String,
}

/// Shared state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[error("room store unavailable: {0}")]
pub struct StoreError(pub String);

/// Clients see a store failure as `unavailable`: try again.
impl From<StoreError> for ChatError {
    fn from(error: StoreError) -> Self {
        ChatError::new(ErrorCode::Unavailable, error.to_string())
    }
}

#[async_trait]
pub trait RoomStore: Send + Sync + 'static {
    /// Gives the event the room's next `roomSeq` and appends it to the room's
    /// bounded log, as one atomic step. Returns the event with its `roomSeq`.
    async fn append(&self, event: RoomEvent) -> Result<RoomEvent, StoreError>;

    /// The highest `roomSeq` given out in the room so far (0 for a new room).
    async fn last_seq(&self, room: &str) -> Result<u64, StoreError>;

    /// Adds a turn to the room's conversation, dropping the oldest past the bound.
    async fn push_turn(&self, room: &str, turn: Turn) -> Result<(), StoreError>;

    /// The room's most recent turns, oldest first.
    async fn recent_turns(&self, room: &str) -> Result<Vec<Turn>, StoreError>;
}
