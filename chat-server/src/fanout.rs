//! Room events reach the other servers in the same Redis call that sequences
//! them. On standalone Redis the room store's append script publishes each
//! sequenced event on one channel, so an event costs one command sent
//! instead of two (the append, then the adapter's PUBLISH); every server
//! subscribes to that channel and emits what the others published to its own
//! members, in the order Redis ran the appends. The server that published an
//! event emits it to its own members itself and skips its copy.
//!
//! This module is the one home of the message format, which the Lua scripts
//! in `store/redis.rs` build by concatenation: `<origin> <roomSeq> <event>`,
//! where `origin` is the publishing server's id (no spaces) and `event` the
//! room event as stored in the log (`{"event": name, "data": payload}`,
//! without its `roomSeq`).
//!
//! Redis Cluster keeps the adapter's sharded pub/sub for room events (a
//! script may only publish to a shard channel of its own slot).

use std::sync::Arc;

use futures::StreamExt;
use socketioxide::{SocketIo, adapter::Adapter};

use crate::{
    adapter::ResilientDriver,
    admin::metrics::Metrics,
    protocol::{RoomEvent, now_ms},
};

/// Messages waiting for the subscriber task; past this a message is dropped
/// with a warning, as on the adapter's own streams, rather than blocking the
/// connection every Redis reply arrives on.
const BUFFER: usize = 65_536;

/// Where this server publishes room events, and under which origin id.
#[derive(Clone, Debug)]
pub struct Fanout {
    pub channel: String,
    pub origin: String,
}

impl Fanout {
    /// A fresh origin id on the channel of key prefix `prefix`: servers with
    /// the same prefix are one cluster.
    pub fn new(prefix: &str) -> Self {
        Self {
            channel: format!("{prefix}:room-events"),
            origin: uuid::Uuid::new_v4().simple().to_string(),
        }
    }

    /// Subscribes, then emits every event another server publishes to this
    /// server's members of its room, until the process ends. Redis restarts
    /// are the connection's business: it resubscribes by itself.
    pub async fn serve<A: Adapter>(
        &self,
        driver: &ResilientDriver,
        io: SocketIo<A>,
        metrics: Arc<Metrics>,
    ) -> Result<(), redis::RedisError> {
        let mut messages = driver.subscribe_own(self.channel.clone(), BUFFER).await?;
        let origin = self.origin.clone();
        tokio::spawn(async move {
            while let Some((_channel, payload)) = messages.next().await {
                let Some((from, event)) = decode(&payload) else {
                    tracing::warn!("a room event on the fan-out channel could not be read");
                    continue;
                };
                if from == origin {
                    continue;
                }
                metrics
                    .cross_server_delay_seconds
                    .observe(now_ms().saturating_sub(event.ts()) as f64 / 1000.0);
                let room = event.room().to_owned();
                if let Err(error) = event.emit_to(io.local().to(room.clone())).await {
                    tracing::warn!(%error, %room, "some members did not receive an event");
                }
            }
        });
        Ok(())
    }
}

/// The origin and the event, with its `roomSeq`, of a published message.
pub fn decode(payload: &[u8]) -> Option<(&str, RoomEvent)> {
    let text = std::str::from_utf8(payload).ok()?;
    let (origin, rest) = text.split_once(' ')?;
    let (room_seq, event) = rest.split_once(' ')?;
    let mut event: RoomEvent = serde_json::from_str(event).ok()?;
    event.set_room_seq(room_seq.parse().ok()?);
    Some((origin, event))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ChatMessage, MessageKind};

    fn message() -> RoomEvent {
        RoomEvent::Message(ChatMessage {
            room: "lobby".into(),
            room_seq: None,
            id: "m1".into(),
            from: "ann".into(),
            text: "hello there".into(),
            ts: 1_700_000_000_000,
            kind: MessageKind::Chat,
            client_id: None,
        })
    }

    // What the append script really publishes is read back in
    // tests/redis_store.rs, against a real redis-server.
    #[test]
    fn a_message_in_the_format_reads_back_with_its_origin_and_room_seq() {
        let stored = serde_json::to_string(&message()).unwrap();
        let payload = format!("a1b2 42 {stored}");
        let (origin, event) = decode(payload.as_bytes()).unwrap();
        assert_eq!(origin, "a1b2");
        let mut expected = message();
        expected.set_room_seq(42);
        assert_eq!(event, expected);
    }

    #[test]
    fn malformed_messages_are_refused() {
        let stored = serde_json::to_string(&message()).unwrap();
        for bad in [
            b"".to_vec(),
            b"origin-only".to_vec(),
            b"a1b2 notanumber {}".to_vec(),
            format!("a1b2 -1 {stored}").into_bytes(),
            b"a1b2 7 {\"event\":\"nope\",\"data\":{}}".to_vec(),
            vec![0xff, b' ', b'1', b' ', b'{'],
        ] {
            assert!(
                decode(&bad).is_none(),
                "{:?}",
                String::from_utf8_lossy(&bad)
            );
        }
    }

    #[test]
    fn origins_are_unique_and_hold_no_space() {
        let (a, b) = (Fanout::new("chat"), Fanout::new("chat"));
        assert_ne!(a.origin, b.origin);
        assert!(!a.origin.contains(' '));
        assert_eq!(a.channel, "chat:room-events");
    }
}
