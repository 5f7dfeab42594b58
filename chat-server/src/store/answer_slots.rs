//! Running AI answers are counted per user and per room over every server
//! that shares the store, so `--max-ai-answers-per-user` holds for a user whose
//! sockets sit on three servers. In memory the count is this process's; in
//! Redis each answer holds a lease that its server renews every second, so the
//! answers of a server that died stop counting a few seconds later.
//!
//! Redis keys under prefix P (sorted sets: answer id -> lease deadline, ms):
//! - `P:{R}:answers`        the answers running in room R (room names hold no braces)
//! - `P:{U}:user-answers`   the answers user U has running

use std::{
    collections::{HashMap, HashSet},
    sync::Mutex,
};

use async_trait::async_trait;
use redis::Script;

use super::StoreError;
use crate::{adapter::RedisConnection, protocol::now_ms};

/// One AI answer: who asked, in which room, and its stream id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AnswerRef {
    pub user: String,
    pub room: String,
    pub id: String,
}

/// Why an answer could not start: this one is at its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    User,
    Room,
}

#[async_trait]
pub trait AnswerSlots: Send + Sync + 'static {
    /// Counts `answer` as running, unless its user already runs `per_user`
    /// answers or its room `per_room`.
    async fn reserve(
        &self,
        answer: &AnswerRef,
        per_user: u32,
        per_room: u32,
    ) -> Result<Result<(), Busy>, StoreError>;

    /// These answers still run here: keep counting them.
    async fn renew(&self, answers: &[AnswerRef]) -> Result<(), StoreError>;

    /// The answer ended: stop counting it.
    async fn release(&self, answer: &AnswerRef) -> Result<(), StoreError>;
}

/// This process's answers, counted under one lock.
#[derive(Default)]
pub struct MemoryAnswerSlots {
    running: Mutex<Running>,
}

#[derive(Default)]
struct Running {
    by_user: HashMap<String, HashSet<String>>,
    by_room: HashMap<String, HashSet<String>>,
}

fn forget(map: &mut HashMap<String, HashSet<String>>, key: &str, id: &str) {
    if let Some(ids) = map.get_mut(key) {
        ids.remove(id);
        if ids.is_empty() {
            map.remove(key);
        }
    }
}

#[async_trait]
impl AnswerSlots for MemoryAnswerSlots {
    async fn reserve(
        &self,
        answer: &AnswerRef,
        per_user: u32,
        per_room: u32,
    ) -> Result<Result<(), Busy>, StoreError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        let count = |map: &HashMap<String, HashSet<String>>, key: &str| {
            map.get(key).map_or(0, |ids| ids.len())
        };
        if count(&running.by_user, &answer.user) >= per_user as usize {
            return Ok(Err(Busy::User));
        }
        if count(&running.by_room, &answer.room) >= per_room as usize {
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

    async fn renew(&self, _: &[AnswerRef]) -> Result<(), StoreError> {
        Ok(())
    }

    async fn release(&self, answer: &AnswerRef) -> Result<(), StoreError> {
        let mut running = self.running.lock().unwrap_or_else(|e| e.into_inner());
        forget(&mut running.by_user, &answer.user, &answer.id);
        forget(&mut running.by_room, &answer.room, &answer.id);
        Ok(())
    }
}

/// Drops lapsed leases, then adds the answer (ARGV[1]) with deadline ARGV[4]
/// unless the set already holds ARGV[2] live answers. ARGV[3] is now, ARGV[5]
/// the key's lifetime. Returns 1 when added.
const RESERVE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
";

/// An answer stops counting this long after its server's last renewal.
const LEASE_MS: u64 = 5_000;

/// Answers counted in Redis, shared by every server with the same prefix.
pub struct RedisAnswerSlots {
    conn: RedisConnection,
    prefix: String,
    reserve: Script,
}

impl RedisAnswerSlots {
    pub fn new(conn: RedisConnection, prefix: &str) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            reserve: Script::new(RESERVE),
        }
    }

    fn user_key(&self, user: &str) -> String {
        format!("{}:{{{user}}}:user-answers", self.prefix)
    }

    fn room_key(&self, room: &str) -> String {
        format!("{}:{{{room}}}:answers", self.prefix)
    }

    /// One script call per key: a user's and a room's keys may live in
    /// different Redis Cluster slots.
    async fn reserve_in(&self, key: String, id: &str, max: u32) -> Result<bool, StoreError> {
        let now = now_ms();
        let added: i64 = self
            .reserve
            .key(key)
            .arg(id)
            .arg(max)
            .arg(now)
            .arg(now + LEASE_MS)
            .arg(LEASE_MS * 2)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(store_error)?;
        Ok(added == 1)
    }
}

fn store_error(error: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(error.to_string())
}

#[async_trait]
impl AnswerSlots for RedisAnswerSlots {
    async fn reserve(
        &self,
        answer: &AnswerRef,
        per_user: u32,
        per_room: u32,
    ) -> Result<Result<(), Busy>, StoreError> {
        let user_key = self.user_key(&answer.user);
        if !self
            .reserve_in(user_key.clone(), &answer.id, per_user)
            .await?
        {
            return Ok(Err(Busy::User));
        }
        let room = self.reserve_in(self.room_key(&answer.room), &answer.id, per_room);
        match room.await {
            Ok(true) => Ok(Ok(())),
            other => {
                // Give the user's place back; if that fails too, its lease lapses.
                let _: Result<(), _> =
                    redis::AsyncCommands::zrem(&mut self.conn.clone(), user_key, &answer.id).await;
                other.map(|_| Err(Busy::Room))
            }
        }
    }

    async fn renew(&self, answers: &[AnswerRef]) -> Result<(), StoreError> {
        if answers.is_empty() {
            return Ok(());
        }
        let deadline = now_ms() + LEASE_MS;
        let mut pipe = redis::pipe();
        for answer in answers {
            for key in [self.user_key(&answer.user), self.room_key(&answer.room)] {
                pipe.cmd("ZADD")
                    .arg(&key)
                    .arg("XX")
                    .arg(deadline)
                    .arg(&answer.id)
                    .ignore();
                pipe.cmd("PEXPIRE").arg(&key).arg(LEASE_MS * 2).ignore();
            }
        }
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(store_error)
    }

    async fn release(&self, answer: &AnswerRef) -> Result<(), StoreError> {
        let mut pipe = redis::pipe();
        pipe.zrem(self.user_key(&answer.user), &answer.id).ignore();
        pipe.zrem(self.room_key(&answer.room), &answer.id).ignore();
        pipe.query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(store_error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(user: &str, room: &str, id: &str) -> AnswerRef {
        AnswerRef {
            user: user.into(),
            room: room.into(),
            id: id.into(),
        }
    }

    #[tokio::test]
    async fn memory_slots_count_per_user_and_per_room_and_come_back() {
        let slots = MemoryAnswerSlots::default();
        let reserve = async |a: &AnswerRef| slots.reserve(a, 2, 3).await.unwrap();
        let a1 = answer("ann", "r1", "1");
        assert_eq!(reserve(&a1).await, Ok(()));
        assert_eq!(reserve(&answer("ann", "r2", "2")).await, Ok(()));
        assert_eq!(reserve(&answer("ann", "r3", "3")).await, Err(Busy::User));
        assert_eq!(reserve(&answer("bob", "r1", "4")).await, Ok(()));
        assert_eq!(reserve(&answer("cat", "r1", "5")).await, Ok(()));
        assert_eq!(reserve(&answer("dan", "r1", "6")).await, Err(Busy::Room));
        slots.release(&a1).await.unwrap();
        assert_eq!(reserve(&answer("ann", "r3", "7")).await, Ok(()));
        assert_eq!(reserve(&answer("dan", "r1", "8")).await, Ok(()));
    }
}
