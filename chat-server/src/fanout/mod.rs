//! Room events reach the other servers in the same Redis call that sequences
//! them: the room store's append script publishes each sequenced event, so
//! an event costs one command sent instead of two (the append, then a
//! PUBLISH). The server that published an event emits it to its own members
//! itself and skips its copy; the others emit what they receive to their
//! members of the event's room, in the order Redis ran the appends.
//!
//! Where the events go depends on `--room-channels`:
//! - `per-room` (the default): each room has a channel of its own,
//!   `PREFIX:{room}:events`, and a server subscribes to it only while it has
//!   a member of the room (subscriptions.rs). A server receives the events
//!   of its rooms and no others. The room name is the hash tag, so on a
//!   Redis Cluster the channel lives in the slot of the room's keys: the
//!   script publishes it with SPUBLISH and rooms spread over the shards.
//!   On standalone Redis the server listens on the shared channel below as
//!   well, which carries nothing once every server uses per-room channels:
//!   during an upgrade from a release that published on it, the older
//!   servers' events still reach this server's members live (on a Redis
//!   Cluster those releases used the adapter, which every server still
//!   listens to). (The older servers' members receive
//!   the newer servers' events when they resume, as they move off a
//!   draining pod: the recipe resumes from the highest contiguous roomSeq.)
//! - `shared`: one channel, `PREFIX:room-events`, that every server
//!   subscribes to, so every server receives every room event. On a Redis
//!   Cluster a script may only publish to a shard channel of its own slot,
//!   so there the adapter's single sharded channel carries room events
//!   instead (no [`Fanout`] at all).
//!
//! This module is the one home of the message format, which the Lua scripts
//! in `store/redis.rs` build by concatenation: `<origin> <roomSeq> <event>`,
//! where `origin` is the publishing server's id (no spaces) and `event` the
//! room event as stored in the log (`{"event": name, "data": payload}`,
//! without its `roomSeq`).

mod receive;
mod subscriptions;

pub use receive::{DriverListener, receive};
pub use subscriptions::{Listen, RoomSubscriptions};

use crate::{config::RoomChannels, protocol::RoomEvent};

/// Messages waiting for the receiving task; past this a message is dropped
/// with a warning, as on the adapter's own streams, rather than blocking the
/// connection every Redis reply arrives on.
pub const BUFFER: usize = 65_536;

/// Where this server publishes room events, and under which origin id.
#[derive(Clone, Debug)]
pub struct Fanout {
    prefix: String,
    pub origin: String,
    per_room: bool,
    /// Redis Cluster: shard channels (SPUBLISH), one room per slot.
    sharded: bool,
}

impl Fanout {
    /// How room events of the servers with key prefix `prefix` (one
    /// cluster) travel, with a fresh origin id; `None` when the adapter
    /// carries them (`shared` on a Redis Cluster).
    pub fn new(prefix: &str, channels: RoomChannels, cluster: bool) -> Option<Self> {
        let per_room = channels == RoomChannels::PerRoom;
        (per_room || !cluster).then(|| Self {
            prefix: prefix.to_owned(),
            origin: uuid::Uuid::new_v4().simple().to_string(),
            per_room,
            sharded: cluster,
        })
    }

    /// Whether each room has a channel of its own.
    pub fn per_room(&self) -> bool {
        self.per_room
    }

    /// The channel that carries `room`'s events.
    pub fn channel(&self, room: &str) -> String {
        if self.per_room {
            format!("{}:{{{room}}}:events", self.prefix)
        } else {
            self.shared_channel()
        }
    }

    /// The one channel of every room, in `shared` mode.
    pub fn shared_channel(&self) -> String {
        format!("{}:room-events", self.prefix)
    }

    /// Whether this server listens on the shared channel: in `shared` mode,
    /// and with per-room channels on standalone Redis, where servers of a
    /// release before per-room channels may still publish on it (on a Redis
    /// Cluster those used the adapter, which every server still listens to).
    pub fn listens_on_shared_channel(&self) -> bool {
        !self.per_room || !self.sharded
    }

    /// The command the scripts publish with.
    pub fn publish_command(&self) -> &'static str {
        if self.sharded { "SPUBLISH" } else { "PUBLISH" }
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
        let new = || Fanout::new("chat", RoomChannels::PerRoom, false).unwrap();
        let (a, b) = (new(), new());
        assert_ne!(a.origin, b.origin);
        assert!(!a.origin.contains(' '));
    }

    #[test]
    fn per_room_channels_carry_the_room_as_hash_tag_of_its_keys() {
        let standalone = Fanout::new("chat", RoomChannels::PerRoom, false).unwrap();
        assert_eq!(standalone.channel("lobby"), "chat:{lobby}:events");
        assert_eq!(standalone.publish_command(), "PUBLISH");
        assert!(standalone.listens_on_shared_channel(), "for older servers");
        let cluster = Fanout::new("chat", RoomChannels::PerRoom, true).unwrap();
        assert_eq!(cluster.channel("lobby"), "chat:{lobby}:events");
        assert_eq!(cluster.publish_command(), "SPUBLISH");
        assert!(cluster.per_room() && !cluster.listens_on_shared_channel());
    }

    #[test]
    fn the_shared_channel_is_one_for_every_room_and_left_to_the_adapter_on_a_cluster() {
        let shared = Fanout::new("chat", RoomChannels::Shared, false).unwrap();
        assert!(!shared.per_room() && shared.listens_on_shared_channel());
        assert_eq!(shared.channel("a"), "chat:room-events");
        assert_eq!(shared.channel("b"), shared.shared_channel());
        assert!(Fanout::new("chat", RoomChannels::Shared, true).is_none());
    }
}
