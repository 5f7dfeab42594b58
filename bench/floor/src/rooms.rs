//! Rooms: a name to its members' outboxes. A member is one connection's
//! unbounded queue of frames; a broadcast clones the frame (a reference count,
//! not the bytes) into every member's queue under the room's lock.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
};

use tokio::sync::mpsc::UnboundedSender;
use tokio_tungstenite::tungstenite::Utf8Bytes;

/// One room's members: (connection id, outbox).
#[derive(Default)]
pub struct Room(Mutex<Vec<(u64, UnboundedSender<Utf8Bytes>)>>);

impl Room {
    /// Queues `line` for every member, the sender included.
    pub fn broadcast(&self, line: &Utf8Bytes) {
        for (_, outbox) in self.0.lock().unwrap().iter() {
            // A member that is closing has dropped its receiver: skip it.
            let _ = outbox.send(line.clone());
        }
    }

    fn leave(&self, id: u64) -> bool {
        let mut members = self.0.lock().unwrap();
        members.retain(|(member, _)| *member != id);
        members.is_empty()
    }
}

/// Every room of this process.
#[derive(Default)]
pub struct Rooms {
    rooms: Mutex<HashMap<String, Arc<Room>>>,
    next_id: std::sync::atomic::AtomicU64,
}

impl Rooms {
    /// Adds `outbox` to room `name` (created on first use) and returns the room
    /// and the member's id for [`Rooms::leave`].
    pub fn join(&self, name: &str, outbox: UnboundedSender<Utf8Bytes>) -> (Arc<Room>, u64) {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let room = self
            .rooms
            .lock()
            .unwrap()
            .entry(name.to_owned())
            .or_default()
            .clone();
        room.0.lock().unwrap().push((id, outbox));
        (room, id)
    }

    /// Removes member `id` from room `name`, and the room once it is empty.
    pub fn leave(&self, name: &str, room: &Room, id: u64) {
        if room.leave(id) {
            let mut rooms = self.rooms.lock().unwrap();
            // Someone may have joined in between: only drop a room still empty.
            if rooms
                .get(name)
                .is_some_and(|r| r.0.lock().unwrap().is_empty())
            {
                rooms.remove(name);
            }
        }
    }
}
