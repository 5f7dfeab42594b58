//! Publishing to a room: the event gets its `roomSeq` from the store and is
//! emitted to every member. Per-room ordering locks make "append, then emit"
//! one step per room, so members of a room served by this server receive
//! its events in `roomSeq` order.

use std::{
    hash::{DefaultHasher, Hash, Hasher},
    sync::Arc,
};

use socketioxide::{SocketIo, adapter::Adapter};
use tokio::sync::Mutex;

use crate::{
    protocol::RoomEvent,
    store::{RoomStore, StoreError},
};

/// Rooms hash onto this many locks: bounded memory, rare sharing.
const ORDER_STRIPES: usize = 256;

pub struct Publisher {
    store: Arc<dyn RoomStore>,
    order: Vec<Mutex<()>>,
}

impl Publisher {
    pub fn new(store: Arc<dyn RoomStore>) -> Self {
        Self {
            store,
            order: (0..ORDER_STRIPES).map(|_| Mutex::new(())).collect(),
        }
    }

    /// Sequences `event` in its room and emits it to the room's members.
    /// Returns the event as sent, with its `roomSeq`.
    pub async fn publish<A: Adapter>(
        &self,
        io: &SocketIo<A>,
        event: RoomEvent,
    ) -> Result<RoomEvent, StoreError> {
        let _in_order = self.order[stripe(event.room())].lock().await;
        let event = self.store.append(event).await?;
        let room = event.room().to_owned();
        let sent = match &event {
            RoomEvent::Message(message) => io.to(room).emit(event.name(), message).await,
            RoomEvent::AiChunk(chunk) => io.to(room).emit(event.name(), chunk).await,
        };
        if let Err(error) = sent {
            tracing::warn!(%error, room = event.room(), "some members did not receive an event");
        }
        Ok(event)
    }
}

fn stripe(room: &str) -> usize {
    let mut hasher = DefaultHasher::new();
    room.hash(&mut hasher);
    (hasher.finish() % ORDER_STRIPES as u64) as usize
}
