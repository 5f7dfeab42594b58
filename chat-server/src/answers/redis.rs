//! The ledger in Redis, shared by every server with the same key prefix.
//! Each answer is written when it starts and removed when it ends; while it
//! runs nothing is renewed per answer. Each server renews one heartbeat per
//! second instead, and reads the servers whose heartbeat lapsed in the same
//! round trip (both commands touch one key).
//!
//! Keys under prefix P (a user's, a room's and a server's keys each carry
//! their own hash tag, so no command spans two Redis Cluster slots):
//! - `P:{U}:user-answers`    sorted set: the answers user U has running -> lapse (ms)
//! - `P:{R}:answers`         sorted set: the answers running in room R -> lapse (ms)
//! - `P:{S}:server-answers`  set: the answers server S runs, as `room|id|user`
//! - `P:servers`             sorted set: server id -> heartbeat deadline (ms)
//!
//! The lapse of an answer's place is a safety net only (an hour): the places
//! of a dead server's answers are released by the survivor that closes them.

use async_trait::async_trait;
use redis::{AsyncCommands, Script};

use super::ledger::{Answer, AnswerLedger, Busy, Caps};
use crate::{adapter::RedisConnection, protocol::now_ms, store::StoreError};

/// Drops lapsed places, then adds the answer (ARGV[1]) with lapse ARGV[4]
/// unless the set already holds ARGV[2] live answers. ARGV[3] is now, ARGV[5]
/// the key's lifetime. Returns 1 when added.
const RESERVE: &str = r"
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[3])
if redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[4], ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[5])
return 1
";

/// A place nobody released (its record was lost) stops counting this late.
const PLACE_LAPSES_MS: u64 = 3_600_000;

/// A server is dead once its heartbeat is this late.
const SERVER_DEADLINE_MS: u64 = 3_000;

/// Dead servers reported per heartbeat; the rest come in the next ones.
const DEAD_PER_HEARTBEAT: isize = 10;

/// A dead server's answers read at once; the rest come once these are released.
const ANSWERS_PER_READ: isize = 100;

pub struct RedisLedger {
    conn: RedisConnection,
    prefix: String,
    reserve: Script,
}

impl RedisLedger {
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

    fn server_key(&self, server: &str) -> String {
        format!("{}:{{{server}}}:server-answers", self.prefix)
    }

    fn servers_key(&self) -> String {
        format!("{}:servers", self.prefix)
    }

    /// Adds the answer to one count (user or room) unless it is full.
    async fn take_place(&self, key: String, id: &str, cap: u32) -> Result<bool, StoreError> {
        let now = now_ms();
        let added: i64 = self
            .reserve
            .key(key)
            .arg(id)
            .arg(cap)
            .arg(now)
            .arg(now + PLACE_LAPSES_MS)
            .arg(PLACE_LAPSES_MS)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::unavailable)?;
        Ok(added == 1)
    }
}

/// Room names and answer ids never contain `|`; the user comes last, whole.
fn member(answer: &Answer) -> String {
    format!("{}|{}|{}", answer.room, answer.id, answer.user)
}

fn parse_member(member: &str) -> Option<Answer> {
    let mut parts = member.splitn(3, '|');
    Some(Answer {
        room: parts.next()?.to_owned(),
        id: parts.next()?.to_owned(),
        user: parts.next()?.to_owned(),
    })
}

#[async_trait]
impl AnswerLedger for RedisLedger {
    /// Three round trips, in this order: the server's record first, so that
    /// whatever this server holds when it dies is found by a survivor; then
    /// the user's place, then the room's (each in its own Cluster slot). A
    /// refusal gives back what it took, as a release does.
    async fn reserve(
        &self,
        server: &str,
        answer: &Answer,
        caps: Caps,
    ) -> Result<Result<(), Busy>, StoreError> {
        let () = self
            .conn
            .clone()
            .sadd(self.server_key(server), member(answer))
            .await
            .map_err(StoreError::unavailable)?;
        if !self
            .take_place(self.user_key(&answer.user), &answer.id, caps.per_user)
            .await?
        {
            self.release(server, answer).await?;
            return Ok(Err(Busy::User));
        }
        if !self
            .take_place(self.room_key(&answer.room), &answer.id, caps.per_room)
            .await?
        {
            self.release(server, answer).await?;
            return Ok(Err(Busy::Room));
        }
        Ok(Ok(()))
    }

    /// Three commands on three keys (three Cluster slots), sent at once: one
    /// round trip's wait.
    async fn release(&self, server: &str, answer: &Answer) -> Result<(), StoreError> {
        let (mut user, mut room, mut record) =
            (self.conn.clone(), self.conn.clone(), self.conn.clone());
        let (a, b, c): (
            redis::RedisResult<()>,
            redis::RedisResult<()>,
            redis::RedisResult<()>,
        ) = tokio::join!(
            user.zrem(self.user_key(&answer.user), &answer.id),
            room.zrem(self.room_key(&answer.room), &answer.id),
            record.srem(self.server_key(server), member(answer)),
        );
        a.and(b).and(c).map_err(StoreError::unavailable)
    }

    /// One pipeline on one key: renew this server's deadline, read the lapsed ones.
    async fn heartbeat(&self, server: &str) -> Result<Vec<String>, StoreError> {
        let now = now_ms();
        let key = self.servers_key();
        let (dead,): (Vec<String>,) = redis::pipe()
            .zadd(&key, server, now + SERVER_DEADLINE_MS)
            .ignore()
            .zrangebyscore_limit(&key, "-inf", now, 0, DEAD_PER_HEARTBEAT)
            .query_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::unavailable)?;
        // This server's own deadline was just moved past `now`.
        Ok(dead)
    }

    async fn answers_of(&self, server: &str) -> Result<Vec<Answer>, StoreError> {
        let members: Vec<String> = self
            .conn
            .clone()
            .srandmember_multiple(self.server_key(server), ANSWERS_PER_READ)
            .await
            .map_err(StoreError::unavailable)?;
        Ok(members.iter().filter_map(|m| parse_member(m)).collect())
    }

    async fn forget_server(&self, server: &str) -> Result<(), StoreError> {
        self.conn
            .clone()
            .zrem(self.servers_key(), server)
            .await
            .map_err(StoreError::unavailable)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_member_names_its_answer_even_when_the_user_holds_bars() {
        let answer = Answer {
            user: "ann|admin".into(),
            room: "r1".into(),
            id: "0b7c".into(),
        };
        assert_eq!(parse_member(&member(&answer)), Some(answer));
        assert_eq!(parse_member("room-only"), None);
    }
}
