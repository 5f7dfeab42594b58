//! The ledger of a lone server (no Redis): its answers counted under one lock.
//! There are no other servers, so no heartbeats and no dead servers: when
//! this one dies its clients go with it.

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use async_trait::async_trait;

use super::ledger::{Answer, AnswerLedger, Busy, Caps};
use crate::store::StoreError;

#[derive(Default)]
pub struct MemoryLedger {
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    by_user: HashMap<String, HashSet<String>>,
    by_room: HashMap<String, HashSet<String>>,
}

fn count(map: &HashMap<String, HashSet<String>>, key: &str) -> usize {
    map.get(key).map_or(0, HashSet::len)
}

fn forget(map: &mut HashMap<String, HashSet<String>>, key: &str, id: &str) {
    if let Some(ids) = map.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            map.remove(key);
        }
    }
}

impl MemoryLedger {
    fn running(&self) -> std::sync::MutexGuard<'_, Running> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[async_trait]
impl AnswerLedger for MemoryLedger {
    async fn reserve(
        &self,
        _: &str,
        answer: &Answer,
        caps: Caps,
    ) -> Result<Result<(), Busy>, StoreError> {
        let mut running = self.running();
        if count(&running.by_user, &answer.user) >= caps.per_user as usize {
            return Ok(Err(Busy::User));
        }
        if count(&running.by_room, &answer.room) >= caps.per_room as usize {
            return Ok(Err(Busy::Room));
        }
        let Running { by_user, by_room } = &mut *running;
        for (map, key) in [(by_user, &answer.user), (by_room, &answer.room)] {
            map.entry(key.clone())
                .or_default()
                .insert(answer.id.clone());
        }
        Ok(Ok(()))
    }

    async fn release(&self, _: &str, answer: &Answer) -> Result<(), StoreError> {
        let mut running = self.running();
        forget(&mut running.by_user, &answer.user, &answer.id);
        forget(&mut running.by_room, &answer.room, &answer.id);
        Ok(())
    }

    async fn heartbeat(&self, _: &str) -> Result<Vec<String>, StoreError> {
        Ok(Vec::new())
    }

    async fn answers_of(&self, _: &str) -> Result<Vec<Answer>, StoreError> {
        Ok(Vec::new())
    }

    async fn forget_server(&self, _: &str) -> Result<(), StoreError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(user: &str, room: &str, id: &str) -> Answer {
        Answer {
            user: user.into(),
            room: room.into(),
            id: id.into(),
        }
    }

    #[tokio::test]
    async fn answers_count_per_user_and_per_room_and_come_back() {
        let ledger = MemoryLedger::default();
        let caps = Caps {
            per_user: 2,
            per_room: 3,
        };
        let reserve = async |a: &Answer| ledger.reserve("me", a, caps).await.unwrap();
        let a1 = answer("ann", "r1", "1");
        assert_eq!(reserve(&a1).await, Ok(()));
        assert_eq!(reserve(&answer("ann", "r2", "2")).await, Ok(()));
        assert_eq!(reserve(&answer("ann", "r3", "3")).await, Err(Busy::User));
        assert_eq!(reserve(&answer("bob", "r1", "4")).await, Ok(()));
        assert_eq!(reserve(&answer("cat", "r1", "5")).await, Ok(()));
        assert_eq!(reserve(&answer("dan", "r1", "6")).await, Err(Busy::Room));
        ledger.release("me", &a1).await.unwrap();
        assert_eq!(reserve(&answer("ann", "r3", "7")).await, Ok(()));
        assert_eq!(reserve(&answer("dan", "r1", "8")).await, Ok(()));
    }
}
