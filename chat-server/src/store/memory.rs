//! The in-memory room store: the default when no Redis is configured. One lock
//! around a map of rooms makes "next roomSeq + append" atomic.

use std::collections::{HashMap, VecDeque};

use async_trait::async_trait;
use std::sync::Mutex;

use super::{ReplayError, RoomStore, StoreError, Turn, replay};
use crate::protocol::RoomEvent;

#[derive(Default)]
struct Room {
    last_seq: u64,
    log: VecDeque<RoomEvent>,
    turns: VecDeque<Turn>,
}

pub struct MemoryStore {
    log_len: usize,
    history_turns: usize,
    rooms: Mutex<HashMap<String, Room>>,
}

impl MemoryStore {
    /// `log_len` events and `history_turns` conversation turns are kept per room.
    pub fn new(log_len: usize, history_turns: usize) -> Self {
        Self {
            log_len,
            history_turns,
            rooms: Mutex::new(HashMap::new()),
        }
    }
}

#[async_trait]
impl RoomStore for MemoryStore {
    async fn append(&self, mut event: RoomEvent) -> Result<RoomEvent, StoreError> {
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let room = rooms.entry(event.room().to_owned()).or_default();
        room.last_seq += 1;
        event.set_room_seq(room.last_seq);
        if room.log.len() == self.log_len {
            room.log.pop_front();
        }
        room.log.push_back(event.clone());
        Ok(event)
    }

    async fn last_seq(&self, room: &str) -> Result<u64, StoreError> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        Ok(rooms.get(room).map_or(0, |r| r.last_seq))
    }

    async fn events_after(&self, room: &str, after: u64) -> Result<Vec<RoomEvent>, ReplayError> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let Some(room) = rooms.get(room) else {
            return replay(after, 0, Vec::new());
        };
        let events = room
            .log
            .iter()
            .filter(|e| e.room_seq() > Some(after))
            .cloned()
            .collect();
        replay(after, room.last_seq, events)
    }

    async fn push_turn(&self, room: &str, turn: Turn) -> Result<(), StoreError> {
        if self.history_turns == 0 {
            return Ok(());
        }
        let mut rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        let room = rooms.entry(room.to_owned()).or_default();
        if room.turns.len() == self.history_turns {
            room.turns.pop_front();
        }
        room.turns.push_back(turn);
        Ok(())
    }

    async fn recent_turns(&self, room: &str) -> Result<Vec<Turn>, StoreError> {
        let rooms = self.rooms.lock().unwrap_or_else(|e| e.into_inner());
        Ok(rooms
            .get(room)
            .map(|r| r.turns.iter().cloned().collect())
            .unwrap_or_default())
    }

    // One server: when it dies its clients go with it, so there are no orphans.
    async fn open_answer(&self, _: &str, _: &str) -> Result<(), StoreError> {
        Ok(())
    }

    async fn close_answer(&self, _: RoomEvent) -> Result<Option<RoomEvent>, StoreError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ChatMessage, MessageKind};
    use crate::store::Role;

    fn message(room: &str, text: &str) -> RoomEvent {
        RoomEvent::Message(ChatMessage {
            room: room.into(),
            room_seq: None,
            id: text.into(),
            from: "u".into(),
            text: text.into(),
            ts: 0,
            kind: MessageKind::Chat,
            client_id: None,
        })
    }

    #[tokio::test]
    async fn room_seq_is_contiguous_per_room() {
        let store = MemoryStore::new(10, 10);
        let seqs: Vec<u64> = [("a", "1"), ("b", "1"), ("a", "2"), ("a", "3"), ("b", "2")]
            .into_iter()
            .map(|(room, text)| futures::executor::block_on(store.append(message(room, text))))
            .map(|e| e.unwrap().room_seq().unwrap())
            .collect();
        assert_eq!(seqs, vec![1, 1, 2, 3, 2]);
        assert_eq!(store.last_seq("a").await.unwrap(), 3);
        assert_eq!(store.last_seq("never").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn concurrent_appends_never_share_a_seq() {
        let store = std::sync::Arc::new(MemoryStore::new(1000, 0));
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move { store.append(message("r", &i.to_string())).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for task in tasks {
            seqs.push(task.await.unwrap().unwrap().room_seq().unwrap());
        }
        seqs.sort();
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>());
    }

    #[tokio::test]
    async fn log_and_history_are_bounded() {
        let store = MemoryStore::new(3, 2);
        for i in 0..5 {
            store.append(message("r", &i.to_string())).await.unwrap();
            let turn = Turn {
                role: Role::User,
                text: i.to_string(),
            };
            store.push_turn("r", turn).await.unwrap();
        }
        let kept: Vec<Option<u64>> = store
            .events_after("r", 2)
            .await
            .unwrap()
            .iter()
            .map(RoomEvent::room_seq)
            .collect();
        assert_eq!(kept, vec![Some(3), Some(4), Some(5)]);
        match store.events_after("r", 1).await {
            Err(ReplayError::TooOld { oldest }) => assert_eq!(oldest, 3),
            other => panic!("expected TooOld, got {other:?}"),
        }
        assert!(store.events_after("r", 5).await.unwrap().is_empty());
        let turns: Vec<String> = store
            .recent_turns("r")
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.text)
            .collect();
        assert_eq!(turns, vec!["3", "4"]);
    }
}
