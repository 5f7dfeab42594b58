//! The Redis room store: many servers share one sequence counter, event log
//! and conversation history per room. Keys live under a prefix so that two
//! clusters can share one Redis; the room name is the hash tag, so a room's
//! keys sit in one Redis Cluster slot and the append script may touch both.
//!
//! Keys of room R under prefix P:
//! - `P:{R}:seq`  the last roomSeq (INCR)
//! - `P:{R}:log`  a stream whose entry ids are `roomSeq-0`, trimmed to about
//!   `log_len` entries (XADD MAXLEN ~), field `e` = the event as JSON
//! - `P:{R}:history`  a list of conversation turns as JSON, trimmed to `history_turns`
//! - `P:{R}:streams`  hash: AI answer id -> its last chunk's seq, while it runs
//! - `P:{R}:closed`   hash: ids of answers closed as interrupted (expires after a day)

use async_trait::async_trait;
use redis::{AsyncCommands, Script, streams::StreamRangeReply};

use super::{ReplayError, RoomStore, StoreError, Turn, replay};
use crate::{adapter::RedisConnection, fanout::Fanout, protocol::RoomEvent};

/// INCR the counter and XADD the event under id `seq-0`, in one round trip.
/// For an AI chunk (ARGV[3] = answer id, ARGV[4] = its seq, ARGV[5] = done):
/// refuse it (-1) if another server closed the answer, else record its seq.
/// With a fan-out channel (ARGV[6], origin ARGV[7]), also publish the event
/// to the other servers in the fan-out format (crate::fanout), with the
/// command ARGV[8] (PUBLISH, or SPUBLISH to the room's own shard channel).
const APPEND: &str = r"
local answer = ARGV[3]
if answer ~= '' and redis.call('HEXISTS', KEYS[4], answer) == 1 then return -1 end
local seq = redis.call('INCR', KEYS[1])
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'e', ARGV[1])
if answer ~= '' then
  if ARGV[5] == '1' then redis.call('HDEL', KEYS[3], answer)
  else redis.call('HSET', KEYS[3], answer, ARGV[4]) end
end
if ARGV[6] ~= '' then redis.call(ARGV[8], ARGV[6], ARGV[7] .. ' ' .. seq .. ' ' .. ARGV[1]) end
return seq
";

/// Closes an orphaned answer once: if it still runs (has a last seq), mark it
/// closed and append the final chunk (ARGV[1]) with the next seq.
/// Returns {roomSeq, seq}, or nil when there was nothing to close. Publishes
/// the final chunk as APPEND does (channel ARGV[4], origin ARGV[5], command
/// ARGV[6]).
const CLOSE: &str = r"
local last = redis.call('HGET', KEYS[3], ARGV[3])
if not last then return nil end
redis.call('HDEL', KEYS[3], ARGV[3])
redis.call('HSET', KEYS[4], ARGV[3], '1')
redis.call('EXPIRE', KEYS[4], 86400)
local event = cjson.decode(ARGV[1])
local next_seq = tonumber(last) + 1
event['data']['seq'] = next_seq
local seq = redis.call('INCR', KEYS[1])
local stored = cjson.encode(event)
redis.call('XADD', KEYS[2], 'MAXLEN', '~', ARGV[2], seq .. '-0', 'e', stored)
if ARGV[4] ~= '' then redis.call(ARGV[6], ARGV[4], ARGV[5] .. ' ' .. seq .. ' ' .. stored) end
return {seq, next_seq}
";

pub struct RedisStore {
    conn: RedisConnection,
    prefix: String,
    log_len: usize,
    history_turns: usize,
    append: Script,
    close: Script,
    /// Where appends publish their events; `None` leaves delivery to the
    /// other servers to the adapter.
    fanout: Option<Fanout>,
}

impl RedisStore {
    pub fn new(
        conn: RedisConnection,
        prefix: &str,
        log_len: usize,
        history_turns: usize,
        fanout: Option<Fanout>,
    ) -> Self {
        Self {
            conn,
            prefix: prefix.to_owned(),
            log_len,
            history_turns,
            append: Script::new(APPEND),
            close: Script::new(CLOSE),
            fanout,
        }
    }

    /// `room`'s fan-out channel, the origin and the publish command as
    /// script arguments (empty: none).
    fn fanout_args(&self, room: &str) -> (String, &str, &'static str) {
        self.fanout.as_ref().map_or((String::new(), "", ""), |f| {
            (f.channel(room), f.origin.as_str(), f.publish_command())
        })
    }

    fn key(&self, room: &str, what: &str) -> String {
        format!("{}:{{{room}}}:{what}", self.prefix)
    }
}

#[async_trait]
impl RoomStore for RedisStore {
    fn fans_out(&self) -> bool {
        self.fanout.is_some()
    }

    async fn append(&self, mut event: RoomEvent) -> Result<RoomEvent, StoreError> {
        let json = serde_json::to_string(&event).map_err(StoreError::unavailable)?;
        let (answer, seq, done) = match &event {
            RoomEvent::AiChunk(chunk) => (chunk.stream_id.as_str(), chunk.seq, chunk.done),
            RoomEvent::Message(_) => ("", 0, false),
        };
        let room = event.room();
        let (channel, origin, command) = self.fanout_args(room);
        let room_seq: i64 = self
            .append
            .key(self.key(room, "seq"))
            .key(self.key(room, "log"))
            .key(self.key(room, "streams"))
            .key(self.key(room, "closed"))
            .arg(json)
            .arg(self.log_len)
            .arg(answer)
            .arg(seq)
            .arg(if done { "1" } else { "0" })
            .arg(channel)
            .arg(origin)
            .arg(command)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::unavailable)?;
        if room_seq < 0 {
            return Err(StoreError::AnswerClosed);
        }
        event.set_room_seq(room_seq as u64);
        Ok(event)
    }

    async fn last_seq(&self, room: &str) -> Result<u64, StoreError> {
        let seq: Option<u64> = self
            .conn
            .clone()
            .get(self.key(room, "seq"))
            .await
            .map_err(StoreError::unavailable)?;
        Ok(seq.unwrap_or(0))
    }

    async fn events_after(&self, room: &str, after: u64) -> Result<Vec<RoomEvent>, ReplayError> {
        let mut conn = self.conn.clone();
        // The counter first: anything appended after this read shows up in the range.
        let last_seq = self.last_seq(room).await?;
        let reply: StreamRangeReply = conn
            .xrange(self.key(room, "log"), format!("{}-0", after + 1), "+")
            .await
            .map_err(StoreError::unavailable)?;
        let mut events = Vec::with_capacity(reply.ids.len());
        for entry in reply.ids {
            let seq = entry
                .id
                .split_once('-')
                .and_then(|(ms, _)| ms.parse::<u64>().ok())
                .ok_or_else(|| {
                    StoreError::unavailable(format!("unexpected log entry id {}", entry.id))
                })?;
            let json: String = entry
                .get("e")
                .ok_or_else(|| StoreError::unavailable("log entry without event"))?;
            let mut event: RoomEvent =
                serde_json::from_str(&json).map_err(StoreError::unavailable)?;
            event.set_room_seq(seq);
            events.push(event);
        }
        replay(after, last_seq, events)
    }

    async fn push_turn(&self, room: &str, turn: Turn) -> Result<(), StoreError> {
        if self.history_turns == 0 {
            return Ok(());
        }
        let key = self.key(room, "history");
        let json = serde_json::to_string(&turn).map_err(StoreError::unavailable)?;
        // Not a transaction: whatever interleaves, the last LTRIM keeps the
        // newest turns.
        redis::pipe()
            .rpush(&key, json)
            .ignore()
            .ltrim(&key, -(self.history_turns as isize), -1)
            .ignore()
            .query_async::<()>(&mut self.conn.clone())
            .await
            .map_err(StoreError::unavailable)
    }

    async fn open_answer(&self, room: &str, id: &str) -> Result<(), StoreError> {
        self.conn
            .clone()
            .hset_nx(self.key(room, "streams"), id, 0)
            .await
            .map_err(StoreError::unavailable)
    }

    async fn close_answer(&self, mut last: RoomEvent) -> Result<Option<RoomEvent>, StoreError> {
        let RoomEvent::AiChunk(chunk) = &last else {
            return Ok(None);
        };
        let room = chunk.room.clone();
        let json = serde_json::to_string(&last).map_err(StoreError::unavailable)?;
        let (channel, origin, command) = self.fanout_args(&room);
        let closed: Option<(u64, u32)> = self
            .close
            .key(self.key(&room, "seq"))
            .key(self.key(&room, "log"))
            .key(self.key(&room, "streams"))
            .key(self.key(&room, "closed"))
            .arg(json)
            .arg(self.log_len)
            .arg(&chunk.stream_id)
            .arg(channel)
            .arg(origin)
            .arg(command)
            .invoke_async(&mut self.conn.clone())
            .await
            .map_err(StoreError::unavailable)?;
        Ok(closed.map(|(room_seq, seq)| {
            if let RoomEvent::AiChunk(chunk) = &mut last {
                chunk.seq = seq;
            }
            last.set_room_seq(room_seq);
            last
        }))
    }

    async fn recent_turns(&self, room: &str) -> Result<Vec<Turn>, StoreError> {
        let items: Vec<String> = self
            .conn
            .clone()
            .lrange(self.key(room, "history"), 0, -1)
            .await
            .map_err(StoreError::unavailable)?;
        items
            .iter()
            .map(|json| serde_json::from_str(json).map_err(StoreError::unavailable))
            .collect()
    }
}
